//! GEMM tactics: the tile configuration and K split of each convolution and
//! matmul. By default the load-time rules of [`crate::geometry`] choose
//! them from the problem size alone; with `REEF_TACTICS=tune` the model's
//! load times every candidate of every GEMM on the GPU and keeps the
//! fastest (the way TensorRT picks its tactics); `REEF_TACTICS=random[:SEED]`
//! draws one candidate per kernel, so that the self-test covers every mix,
//! and `round:R` runs every kernel's candidate R (the tuner's trial R; the
//! self-test sweeps it).
//!
//! Every candidate runs the same tile function with the same arithmetic, so
//! results change only by the order of the split-K sums (within TF32 noise);
//! RT and BE variants of one kernel always share a tactic, so they stay
//! bit-identical.

use crate::geometry::{split_bounds, split_k, split_k_fill, GemmGeom, GemmTile};
use crate::params::GEMM_K;
use crate::precision::{Precision, PrecisionError};
use std::fmt;

/// The environment variable choosing how GEMM tactics are chosen:
/// `tune` (default), `rules`, `random[:SEED]` or `round:R` ([`TacticMode`]).
pub const TACTICS_VAR: &str = "REEF_TACTICS";

/// A candidate must beat the rules' choice by this fraction of its time to
/// replace it: timing noise between launches of one kernel is about 1-2%.
pub const MIN_GAIN: f64 = 0.03;

/// Candidates within this fraction of the fastest count as tied; the one
/// with the fewest blocks wins ([`pick_fastest`]).
pub const TIE: f64 = 0.01;

/// How the GEMM tactics of a model are chosen at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TacticMode {
    /// The rules of [`crate::geometry`] (no measurement).
    Rules,
    /// Every candidate of every GEMM timed on the GPU at load; the fastest
    /// kept when it beats the rules' choice by [`MIN_GAIN`]. The default:
    /// on the H200 it made bert_base, vgg19, resnet50 and resnet152 0-12%
    /// faster than the rules and none slower beyond noise (docs/PERF.md,
    /// session 12); the choice is cached on disk, so a model is timed once
    /// per device and options.
    #[default]
    Tune,
    /// One candidate per kernel drawn with this seed (testing).
    Random(u64),
    /// Candidate R of every kernel that has one, the rules' choice
    /// elsewhere: what the tuner's trial R runs (testing).
    Round(usize),
}

impl TacticMode {
    /// Parses `REEF_TACTICS`'s value (`None` or empty: the default, `tune`):
    /// `rules`, `tune`, `random` (seed 0), `random:SEED` or `round:R`.
    pub fn from_var(v: Option<&str>) -> Result<Self, PrecisionError> {
        let bad = |t: &str| PrecisionError {
            var: TACTICS_VAR,
            value: t.to_string(),
            accepted: "rules, tune, random, random:SEED or round:R",
        };
        let Some(t) = v.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(TacticMode::default());
        };
        match t.to_ascii_lowercase().as_str() {
            "rules" => Ok(TacticMode::Rules),
            "tune" => Ok(TacticMode::Tune),
            "random" => Ok(TacticMode::Random(0)),
            other => {
                let number = |prefix: &str| {
                    other
                        .strip_prefix(prefix)
                        .and_then(|s| s.trim().parse::<u64>().ok())
                };
                number("random:")
                    .map(TacticMode::Random)
                    .or_else(|| {
                        number("round:")
                            .and_then(|r| usize::try_from(r).ok())
                            .map(TacticMode::Round)
                    })
                    .ok_or_else(|| bad(t))
            }
        }
    }
}

impl fmt::Display for TacticMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TacticMode::Rules => f.write_str("rules"),
            TacticMode::Tune => f.write_str("tune"),
            TacticMode::Random(seed) => write!(f, "random:{seed}"),
            TacticMode::Round(r) => write!(f, "round:{r}"),
        }
    }
}

/// What a GEMM kernel computes, as far as its tactic is concerned: `outer`
/// independent (group or batch) products of `m` x `k` by `k` x `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmProblem {
    /// A convolution (true) or a matmul: only convolutions have the 128 x
    /// 64 tiles and the register-operand wgmma tiles.
    pub conv: bool,
    /// Independent products (groups or batch).
    pub outer: u64,
    /// Rows (output channels of a convolution).
    pub m: u64,
    /// Columns (batch x output pixels of a convolution).
    pub n: u64,
    /// Reduction length.
    pub k: u64,
}

/// The tile configuration and K split of one GEMM kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tactic {
    /// The tile configuration.
    pub tile: GemmTile,
    /// K splits (1: none).
    pub splits: u64,
}

impl fmt::Display for Tactic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (bm, bn) = self.tile.dims();
        let kind = match self.tile {
            GemmTile::Wg | GemmTile::WgS | GemmTile::WgMat => " wgmma",
            _ => "",
        };
        write!(f, "{bm}x{bn}{kind} / {} splits", self.splits)
    }
}

impl Tactic {
    /// The tactic of a geometry the rules chose.
    pub fn of(g: &GemmGeom) -> Self {
        Tactic {
            tile: g.tile,
            splits: g.splits,
        }
    }

    /// The launch geometry of this tactic on `p`.
    pub fn geometry(&self, p: &GemmProblem) -> GemmGeom {
        GemmGeom::with_splits(self.tile, p.outer, p.m, p.n, p.k, self.splits)
    }
}

/// What the GPU and the precision allow a GEMM's tiles to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileLimits {
    /// The GEMM precision ([`GemmTile::large_ok`]: 128-row tiles in TF32 only).
    pub precision: Precision,
    /// The wgmma kernels may run (sm_90 with `REEF_WGMMA=1`).
    pub wgmma: bool,
}

impl TileLimits {
    /// Whether `p` may run with `tile`: 64 x 64 always; 128 x 128 for TF32
    /// GEMMs of 128 or more rows and columns; 128 x 64 for TF32
    /// convolutions of 128 or more output channels; with
    /// [`TileLimits::wgmma`], wgmma tiles for TF32 convolutions (128-channel
    /// ones from 128 channels) and 128 x 128 wgmma tiles for TF32 GEMMs of
    /// 128 or more rows and columns.
    pub fn allows(&self, p: &GemmProblem, tile: GemmTile) -> bool {
        let tf32 = GemmTile::large_ok(self.precision);
        let tf32_conv = p.conv && tf32;
        match tile {
            GemmTile::Medium => true,
            GemmTile::Tall => tf32_conv && p.m >= 128,
            GemmTile::Large => tf32 && p.m >= 128 && p.n >= 128,
            GemmTile::WgS => tf32_conv && self.wgmma,
            GemmTile::Wg => tf32_conv && self.wgmma && p.m >= 128,
            GemmTile::WgMat => tf32 && self.wgmma && p.m >= 128 && p.n >= 128,
        }
    }

    /// Why `t` cannot run `p` (None: it can): a tile [`TileLimits::allows`]
    /// rejects, or a split count outside [`split_bounds`].
    pub fn check(&self, p: &GemmProblem, t: &Tactic) -> Option<String> {
        if !self.allows(p, t.tile) {
            let (bm, bn) = t.tile.dims();
            return Some(format!(
                "{bm} x {bn} {:?} tiles do not run a {} of {} x {} x {} in {}{}",
                t.tile,
                if p.conv { "convolution" } else { "matmul" },
                p.m,
                p.n,
                p.k,
                self.precision,
                if self.wgmma { "" } else { " without wgmma" }
            ));
        }
        let (lo, cap) = split_bounds(p.k);
        if t.splits < lo || t.splits > cap {
            return Some(format!(
                "{} K splits of K = {} (allowed {lo}..={cap})",
                t.splits, p.k
            ));
        }
        None
    }
}

/// The candidate tactics of `p`, the rules' choice `default` first and no
/// two alike: each allowed tile with the whole-wave split, the fill split,
/// half the whole-wave split (half the partial sums for the last block to
/// reduce, on half the SMs) and the fewest splits allowed, normalised to
/// whole-step ranges.
pub fn candidates(p: &GemmProblem, default: Tactic, limits: &TileLimits, sms: u32) -> Vec<Tactic> {
    let steps = p.k.div_ceil(GEMM_K).max(1);
    let (lo, _) = split_bounds(p.k);
    let mut out = vec![default];
    let tiles = [
        default.tile,
        GemmTile::Medium,
        GemmTile::Tall,
        GemmTile::Large,
        GemmTile::Wg,
        GemmTile::WgS,
        GemmTile::WgMat,
    ];
    for tile in tiles {
        if !limits.allows(p, tile) {
            continue;
        }
        let g = GemmGeom::with_splits(tile, p.outer, p.m, p.n, p.k, 1);
        let slots = tile.slots(sms);
        let wave = split_k(g.out_tiles, steps, slots).0;
        for splits in [
            wave,
            split_k_fill(g.out_tiles, steps, slots).0,
            (wave / 2).max(lo),
            lo,
        ] {
            let t = Tactic::of(&GemmGeom::with_splits(tile, p.outer, p.m, p.n, p.k, splits));
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// The index of the tactic to keep from per-candidate times (`times[0]` the
/// rules' choice; `None` a candidate that was not timed) and work items
/// (blocks of the RT launch): the fastest, or among those within [`TIE`] of
/// it the one with the fewest items (a kernel on fewer SMs leaves more room
/// for BE work beside it, at the same speed), unless it beats the rules'
/// choice by less than [`MIN_GAIN`].
pub fn pick_fastest(times: &[Option<f64>], items: &[u64]) -> usize {
    let Some(Some(base)) = times.first().copied() else {
        return 0;
    };
    let timed: Vec<(usize, f64)> = times
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.filter(|t| t.is_finite()).map(|t| (i, t)))
        .collect();
    let Some(fastest) = timed.iter().map(|&(_, t)| t).min_by(f64::total_cmp) else {
        return 0;
    };
    let items_of = |i: usize| items.get(i).copied().unwrap_or(u64::MAX);
    let pick = timed
        .iter()
        .filter(|&&(_, t)| t <= fastest * (1.0 + TIE))
        .min_by(|a, b| items_of(a.0).cmp(&items_of(b.0)).then(a.1.total_cmp(&b.1)));
    match pick {
        Some(&(i, t)) if t < base * (1.0 - MIN_GAIN) => i,
        _ => 0,
    }
}

/// The candidate that `Random(seed)` gives kernel `kernel` among `n`: a
/// SplitMix64 draw of (seed, kernel), so the same seed gives the same mix.
pub fn random_pick(seed: u64, kernel: usize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut z = seed ^ (kernel as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const TF32: TileLimits = TileLimits {
        precision: Precision::Tf32,
        wgmma: false,
    };

    fn conv(m: u64, n: u64, k: u64) -> GemmProblem {
        GemmProblem {
            conv: true,
            outer: 1,
            m,
            n,
            k,
        }
    }

    #[test]
    fn modes_parse_and_bad_values_name_the_variable() {
        assert_eq!(TacticMode::from_var(None), Ok(TacticMode::Tune));
        assert_eq!(TacticMode::from_var(Some(" ")), Ok(TacticMode::Tune));
        assert_eq!(TacticMode::from_var(Some("rules")), Ok(TacticMode::Rules));
        assert_eq!(TacticMode::from_var(Some("Tune")), Ok(TacticMode::Tune));
        assert_eq!(
            TacticMode::from_var(Some("random")),
            Ok(TacticMode::Random(0))
        );
        assert_eq!(
            TacticMode::from_var(Some("random:42")),
            Ok(TacticMode::Random(42))
        );
        assert_eq!(
            TacticMode::from_var(Some("round:3")),
            Ok(TacticMode::Round(3))
        );
        for bad in ["fast", "random:", "random:x", "tune:1", "round", "round:-1"] {
            let e = TacticMode::from_var(Some(bad)).unwrap_err();
            assert_eq!(e.var, TACTICS_VAR);
            assert!(e.to_string().contains(bad), "{e}");
        }
        for m in [
            TacticMode::Rules,
            TacticMode::Tune,
            TacticMode::Random(7),
            TacticMode::Round(2),
        ] {
            assert_eq!(TacticMode::from_var(Some(&m.to_string())), Ok(m));
        }
    }

    #[test]
    fn candidates_start_with_the_default_and_are_all_valid() {
        let problems = [
            conv(512, 49, 4608),
            conv(64, 224 * 224, 27),
            conv(256, 8 * 56 * 56, 576),
            conv(576, 49, 24),
            conv(96, 784, 864),
            GemmProblem {
                conv: false,
                outer: 12,
                m: 128,
                n: 128,
                k: 64,
            },
            GemmProblem {
                conv: false,
                outer: 1,
                m: 1,
                n: 4096,
                k: 25088,
            },
        ];
        for limits in [
            TF32,
            TileLimits {
                precision: Precision::Tf32,
                wgmma: true,
            },
            TileLimits {
                precision: Precision::F32,
                wgmma: false,
            },
        ] {
            for p in &problems {
                let default = Tactic::of(&GemmGeom::choose(
                    p.outer,
                    p.m,
                    p.n,
                    p.k,
                    p.conv && GemmTile::large_ok(limits.precision),
                    132,
                ));
                let c = candidates(p, default, &limits, 132);
                assert_eq!(c[0], default);
                for (i, t) in c.iter().enumerate() {
                    assert_eq!(limits.check(p, t), None, "{p:?} {t}");
                    assert!(!c[..i].contains(t), "duplicate {t}");
                    // The geometry is the tactic (counts are normalised).
                    assert_eq!(Tactic::of(&t.geometry(p)), *t);
                    let g = t.geometry(p);
                    assert!(g.splits * g.ksplit >= p.k && (g.splits - 1) * g.ksplit < p.k.max(1));
                }
                if limits.precision != Precision::Tf32 {
                    assert!(c.iter().all(|t| t.tile == GemmTile::Medium), "{p:?}");
                }
                if !p.conv {
                    assert!(c.iter().all(|t| matches!(
                        t.tile,
                        GemmTile::Medium | GemmTile::Large | GemmTile::WgMat
                    )));
                    // wgmma matmul tiles exactly where wgmma is on and the
                    // matmul has 128 rows and columns.
                    assert_eq!(
                        c.iter().any(|t| t.tile == GemmTile::WgMat),
                        limits.wgmma && p.m >= 128 && p.n >= 128,
                        "{p:?}"
                    );
                }
            }
        }
        // A deep 512-channel layer at batch 1 gets 64 x 64 and 128 x 64
        // tiles with several split counts each.
        let p = conv(512, 49, 4608);
        let c = candidates(
            &p,
            Tactic::of(&GemmGeom::choose(1, 512, 49, 4608, true, 132)),
            &TF32,
            132,
        );
        assert!(c.iter().any(|t| t.tile == GemmTile::Tall));
        assert!(
            c.iter().filter(|t| t.tile == GemmTile::Medium).count() >= 2,
            "{c:?}"
        );
        assert!(c.iter().all(|t| t.tile != GemmTile::Large), "49 columns");
    }

    #[test]
    fn checks_reject_tiles_and_splits_the_kernel_cannot_run() {
        let p = conv(96, 784, 864);
        let tall = Tactic {
            tile: GemmTile::Tall,
            splits: 1,
        };
        assert!(TF32.check(&p, &tall).unwrap().contains("Tall"));
        let m = GemmProblem {
            conv: false,
            ..conv(512, 512, 512)
        };
        assert!(TF32.check(&m, &tall).is_some(), "no 128 x 64 matmuls");
        let large = Tactic {
            tile: GemmTile::Large,
            splits: 1,
        };
        assert_eq!(TF32.check(&m, &large), None, "128 x 128 matmuls");
        let f32 = TileLimits {
            precision: Precision::F32,
            wgmma: false,
        };
        assert!(f32.check(&m, &large).is_some(), "no 128 x 128 f32 matmuls");
        let wg = Tactic {
            tile: GemmTile::WgS,
            splits: 1,
        };
        assert!(TF32.check(&p, &wg).unwrap().contains("without wgmma"));
        let split = |splits| Tactic {
            tile: GemmTile::Medium,
            splits,
        };
        // K = 864: 54 steps, at most 6 splits of 8+ steps.
        assert_eq!(TF32.check(&p, &split(6)), None);
        assert!(TF32.check(&p, &split(7)).unwrap().contains("1..=6"));
        assert!(TF32.check(&p, &split(0)).is_some());
        // K = 25088: 1568 steps need 13+ splits to keep items within bounds.
        let fc = GemmProblem {
            conv: false,
            outer: 1,
            m: 1,
            n: 4096,
            k: 25088,
        };
        assert!(TF32.check(&fc, &split(12)).is_some());
        assert_eq!(TF32.check(&fc, &split(13)), None);
    }

    #[test]
    fn the_fastest_wins_only_by_a_margin_and_ties_go_to_fewer_blocks() {
        let same = [100, 100, 100];
        assert_eq!(pick_fastest(&[Some(10.0), Some(9.0), Some(9.8)], &same), 1);
        assert_eq!(pick_fastest(&[Some(10.0), Some(9.8), Some(9.75)], &same), 0);
        assert_eq!(pick_fastest(&[Some(10.0), None, Some(12.0)], &same), 0);
        assert_eq!(pick_fastest(&[None, Some(1.0)], &same), 0);
        assert_eq!(
            pick_fastest(&[Some(10.0), Some(f64::NAN), Some(5.0)], &same),
            2
        );
        assert_eq!(pick_fastest(&[], &[]), 0);
        // 9.0 and 9.05 tie (within 1%): the one on fewer blocks wins.
        assert_eq!(
            pick_fastest(&[Some(10.0), Some(9.0), Some(9.05)], &[528, 528, 264]),
            2
        );
        assert_eq!(
            pick_fastest(&[Some(10.0), Some(9.0), Some(9.2)], &[528, 528, 264]),
            1
        );
        // A tie that does not beat the rule by the margin keeps the rule.
        assert_eq!(
            pick_fastest(&[Some(10.0), Some(9.75), Some(9.8)], &[528, 528, 64]),
            0
        );
        // The rule itself can be the tied one on fewest blocks only if it
        // is the fastest by the margin, which it cannot be: it stays.
        assert_eq!(
            pick_fastest(&[Some(9.0), Some(9.0), Some(9.05)], &[64, 528, 528]),
            0
        );
    }

    #[test]
    fn random_picks_cover_every_candidate_and_repeat_by_seed() {
        let picks: Vec<usize> = (0..200).map(|k| random_pick(3, k, 5)).collect();
        for i in 0..5 {
            assert!(picks.contains(&i), "candidate {i} never drawn");
        }
        assert_eq!(
            picks,
            (0..200).map(|k| random_pick(3, k, 5)).collect::<Vec<_>>()
        );
        assert_ne!(
            picks,
            (0..200).map(|k| random_pick(4, k, 5)).collect::<Vec<_>>()
        );
        assert_eq!(random_pick(9, 9, 1), 0);
        assert_eq!(random_pick(9, 9, 0), 0);
    }
}
