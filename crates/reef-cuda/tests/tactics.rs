//! Per-kernel GEMM tactics in the launch builder (no GPU needed): every
//! candidate of every zoo GEMM builds, the launches follow the tactic, the
//! split-K scratch is sized for it, and tactics a kernel cannot run are
//! rejected by name.

use reef_cuda::geometry::GemmTile;
use reef_cuda::kernels::Family;
use reef_cuda::launch::{Addresses, Builder, Built};
use reef_cuda::params::Params;
use reef_cuda::tactics::{candidates, random_pick, Tactic, TileLimits};
use reef_cuda::Precision;
use std::sync::Arc;

const ADDR: Addresses = Addresses::PROBE;

const SMS: u32 = 132;

fn build(plan: &reef_plan::Plan, p: Precision, tactics: Vec<Option<Tactic>>) -> Built {
    build_wg(plan, p, false, tactics)
}

fn build_wg(
    plan: &reef_plan::Plan,
    p: Precision,
    wgmma: bool,
    tactics: Vec<Option<Tactic>>,
) -> Built {
    Builder::new(plan, ADDR, p)
        .unwrap()
        .sms(SMS)
        .wgmma(wgmma)
        .tactics(Arc::new(tactics))
        .build_all()
        .unwrap()
}

/// (m_tiles, n_tiles, splits, ksplit) of a GEMM launch.
fn geometry_of(params: &Params) -> Option<(u32, u32, u32, i32)> {
    match params {
        Params::Conv(c) => Some((c.m_tiles, c.n_tiles, c.splits, c.ksplit)),
        Params::MatMul(m) => Some((m.m_tiles, m.n_tiles, m.splits, m.ksplit)),
        _ => None,
    }
}

/// Builds `plan` once per candidate round (every GEMM with more than `r`
/// candidates on its candidate `r`) and checks each launch against its
/// tactic's geometry.
fn every_candidate_builds(plan: &reef_plan::Plan, precision: Precision, wgmma: bool) -> usize {
    let limits = TileLimits { precision, wgmma };
    let rules = build_wg(plan, precision, wgmma, vec![]);
    let cands: Vec<Vec<Tactic>> = rules
        .gemms
        .iter()
        .map(|g| g.map_or(vec![], |c| candidates(&c.problem, c.rule, &limits, SMS)))
        .collect();
    let rounds = cands.iter().map(Vec::len).max().unwrap_or(0);
    assert!(rounds > 1, "{}: nothing to choose", plan.name);
    let mut checked = 0;
    for r in 0..rounds {
        let tactics: Vec<Option<Tactic>> = cands.iter().map(|c| c.get(r).copied()).collect();
        let built = build_wg(plan, precision, wgmma, tactics.clone());
        let mut counters = 0u32;
        let mut workspace = 0u64;
        for (k, l) in built.launches.iter().enumerate() {
            assert_eq!(built.counter_start[k], counters, "kernel {k}");
            let Some(g) = built.gemms[k] else {
                assert!(tactics[k].is_none(), "kernel {k} is no GEMM");
                continue;
            };
            assert_eq!(g.rule, cands[k][0]);
            let t = tactics[k].unwrap_or(g.rule);
            assert_eq!(g.used, t);
            let geom = t.geometry(&g.problem);
            assert_eq!(
                geometry_of(&l.params),
                Some((
                    geom.m_tiles as u32,
                    geom.n_tiles as u32,
                    geom.splits as u32,
                    geom.ksplit as i32
                )),
                "kernel {k} ({t})"
            );
            assert_eq!(u64::from(l.tiles), geom.items(), "kernel {k} ({t})");
            let wide = matches!(t.tile, GemmTile::Large | GemmTile::WgMat);
            assert_eq!(l.family.threads(), if wide { 256 } else { 128 });
            assert_eq!(
                matches!(
                    l.family,
                    Family::MatMulWg | Family::MatMulWgW | Family::ConvWgm | Family::ConvWgmW
                ),
                t.tile == GemmTile::WgMat,
                "kernel {k} ({t})"
            );
            assert_eq!(l.family.dynamic_smem() > 0, t.tile == GemmTile::WgMat);
            counters += geom.counters() as u32;
            workspace = workspace.max(geom.workspace_bytes());
            checked += 1;
        }
        assert_eq!(*built.counter_start.last().unwrap(), counters);
        assert_eq!(built.workspace_bytes, workspace);
    }
    checked
}

#[test]
fn every_candidate_of_every_zoo_gemm_builds_with_its_geometry() {
    for (model, batch) in [
        ("resnet50", 1),
        ("vgg19", 8),
        ("bert_base", 1),
        ("densenet201", 1),
    ] {
        let g = reef_zoo::build(model, batch, 1).unwrap();
        let plan = reef_plan::compile(&g).unwrap();
        for p in [Precision::Tf32, Precision::F32] {
            let n = every_candidate_builds(&plan, p, false);
            assert!(n > 0, "{model} {p}");
        }
        // With wgmma (sm_90): the conv wgmma tiles and the wgmma matmuls.
        assert!(every_candidate_builds(&plan, Precision::Tf32, true) > 0);
    }
}

#[test]
fn tuned_tactics_reach_tiles_the_rules_never_pick_at_batch_one() {
    // ResNet-50 at batch 1: the rules run 64 x 64 tiles everywhere (tall
    // tiles are off); the candidates offer 128 x 64 and 128 x 128 ones.
    let g = reef_zoo::build("resnet50", 1, 1).unwrap();
    let plan = reef_plan::compile(&g).unwrap();
    let limits = TileLimits {
        precision: Precision::Tf32,
        wgmma: false,
    };
    let rules = build(&plan, Precision::Tf32, vec![]);
    let mut tiles = std::collections::HashSet::new();
    for c in rules.gemms.iter().flatten() {
        for t in candidates(&c.problem, c.rule, &limits, SMS) {
            tiles.insert(format!("{:?}", t.tile));
        }
    }
    for t in ["Medium", "Tall", "Large"] {
        assert!(tiles.contains(t), "{t} missing from {tiles:?}");
    }
}

#[test]
fn a_random_mix_builds_and_bad_tactics_are_named() {
    let g = reef_zoo::build("resnet50", 2, 3).unwrap();
    let plan = reef_plan::compile(&g).unwrap();
    let limits = TileLimits {
        precision: Precision::Tf32,
        wgmma: false,
    };
    let rules = build(&plan, Precision::Tf32, vec![]);
    let mix: Vec<Option<Tactic>> = rules
        .gemms
        .iter()
        .enumerate()
        .map(|(k, g)| {
            g.map(|c| {
                let cands = candidates(&c.problem, c.rule, &limits, SMS);
                cands[random_pick(11, k, cands.len())]
            })
        })
        .collect();
    let built = build(&plan, Precision::Tf32, mix.clone());
    let changed = built
        .gemms
        .iter()
        .flatten()
        .filter(|c| c.used != c.rule)
        .count();
    assert!(changed > 0, "the mix changed nothing");

    // A 64-channel convolution cannot run 128-row tiles; a matmul or
    // convolution cannot run more K splits than its K allows.
    let (k64, c64) = rules
        .gemms
        .iter()
        .enumerate()
        .find_map(|(k, g)| {
            g.filter(|c| c.problem.conv && c.problem.m == 64)
                .map(|c| (k, c))
        })
        .expect("a 64-channel convolution");
    let mut bad = vec![None; plan.kernels.len()];
    bad[k64] = Some(Tactic {
        tile: GemmTile::Tall,
        splits: c64.rule.splits,
    });
    let err = Builder::new(&plan, ADDR, Precision::Tf32)
        .unwrap()
        .tactics(Arc::new(bad.clone()))
        .build_all()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("kernel {k64}")) && err.contains("Tall"),
        "{err}"
    );
    bad[k64] = Some(Tactic {
        tile: GemmTile::Medium,
        splits: 64,
    });
    let err = Builder::new(&plan, ADDR, Precision::Tf32)
        .unwrap()
        .tactics(Arc::new(bad))
        .build_all()
        .unwrap_err()
        .to_string();
    assert!(err.contains("64 K splits"), "{err}");
}

#[test]
fn with_wgmma_the_rules_run_bert_linear_layers_on_wgmma_matmuls() {
    let g = reef_zoo::build("bert_base", 1, 1).unwrap();
    let plan = reef_plan::compile(&g).unwrap();
    let off = build(&plan, Precision::Tf32, vec![]);
    let on = build_wg(&plan, Precision::Tf32, true, vec![]);
    let mut wg = 0;
    for (k, (a, b)) in off.launches.iter().zip(&on.launches).enumerate() {
        let Some(c) = on.gemms[k] else { continue };
        let big = !c.problem.conv && c.problem.m >= 128 && c.problem.n >= 128;
        assert_eq!(c.rule.tile == GemmTile::WgMat, big, "kernel {k}");
        if big {
            wg += 1;
            assert!(matches!(b.family, Family::MatMulWg | Family::MatMulWgW));
            assert!(matches!(a.family, Family::MatMulTc | Family::MatMulTcW));
            // The rounded-weights twin exactly where the 64 x 64 kernel has it.
            assert_eq!(
                b.family == Family::MatMulWgW,
                a.family == Family::MatMulTcW,
                "kernel {k}"
            );
        } else {
            assert_eq!(a.family, b.family, "kernel {k}");
        }
    }
    // Every encoder layer's Q/K/V, output and two FFN projections at least.
    assert!(wg >= 12 * 4, "{wg} wgmma matmuls");
}

#[test]
fn with_wgmma_the_rules_run_large_convolutions_on_shared_memory_wgmma_tiles() {
    let g = reef_zoo::build("vgg19", 1, 1).unwrap();
    let plan = reef_plan::compile(&g).unwrap();
    let on = build_wg(&plan, Precision::Tf32, true, vec![]);
    let mut wgm = 0;
    for (k, l) in on.launches.iter().enumerate() {
        let Some(c) = on.gemms[k] else { continue };
        if !c.problem.conv {
            continue;
        }
        let big = c.problem.m >= 128 && c.problem.n >= 128;
        assert_eq!(
            matches!(l.family, Family::ConvWgm | Family::ConvWgmW),
            big,
            "kernel {k} {:?}",
            c.problem
        );
        wgm += usize::from(big);
    }
    // Every 3x3 convolution from 128 channels on (at 224..14 pixels square).
    assert!(wgm >= 12, "{wgm}");
}
