//! The load-time tactic tuner (`REEF_TACTICS=tune`) and the self-test's
//! tactic mixes (`REEF_TACTICS=random:SEED`, `round:R`): they replace a
//! freshly loaded model's GEMM tactics ([`crate::tactics`]).
//!
//! Tuning runs in rounds, after a warm-up pass over round 0 that is not
//! kept (clocks, lazily loaded functions): round `r` builds one trial
//! context whose every GEMM kernel with more than `r` candidates runs its
//! candidate `r` (round 0 the rules' choices), and times those kernels' RT
//! variants on a high-priority stream with device events, as the padding
//! profile does.
//! Each kernel then keeps its fastest candidate ([`pick_fastest`]). Trial
//! contexts hold their own split-K scratch and are dropped before the model
//! is rebuilt with the chosen tactics, so tuning costs load time only, and
//! the choices go to the device's tactic cache ([`crate::tactic_cache`]):
//! a kernel found there is not timed again.

use crate::context::CudaTaskContext;
use crate::lane::CudaLane;
use crate::model::probe;
use crate::model::CudaModel;
use crate::tactic_cache::{kernel_key, CachedTactic};
use crate::tactics::{candidates, pick_fastest, random_pick, GemmProblem, Tactic, TileLimits};
use reef_exec::{Context, ExecError, ModelHandle, Priority};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Back-to-back launches per timed group (three groups per candidate).
const REPS: usize = 5;

/// What tuning a model found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneReport {
    /// GEMM kernels with more than one candidate.
    pub tuned: usize,
    /// Kernels whose tactic changed from the rules' choice.
    pub changed: usize,
    /// Kernels whose choice came from the tactic cache (not timed).
    pub cached: usize,
    /// Sum over the tuned kernels of the rules' tactic's time, microseconds
    /// (as cached, for kernels from the cache).
    pub rule_us: f64,
    /// The same sum with the chosen tactics, microseconds.
    pub chosen_us: f64,
    /// Candidates timed, over all kernels.
    pub timed: usize,
    /// Wall time of the tuning.
    pub elapsed: Duration,
}

/// Each GEMM kernel's candidate tactics (empty for other kernels).
fn all_candidates(model: &CudaModel) -> Vec<Vec<Tactic>> {
    let limits = TileLimits {
        precision: model.shared.precision,
        wgmma: model.shared.wgmma,
    };
    model
        .gemms()
        .iter()
        .map(|g| match g {
            Some(c) => candidates(&c.problem, c.rule, &limits, model.shared.sms),
            None => vec![],
        })
        .collect()
}

/// Round `r`: a trial context with every kernel's candidate `r` (the rule
/// beyond its last), and the times of the kernels that have one, in
/// microseconds by kernel index.
fn time_round(
    model: &Arc<CudaModel>,
    lane: &mut CudaLane,
    cands: &[Vec<Tactic>],
    r: usize,
) -> Result<Vec<(usize, f64)>, ExecError> {
    let listed: Vec<usize> = (0..cands.len())
        .filter(|&k| cands[k].len() > r.max(1))
        .collect();
    if listed.is_empty() {
        return Ok(vec![]);
    }
    let tactics: Vec<Option<Tactic>> = cands.iter().map(|c| c.get(r).copied()).collect();
    let mut ctx = CudaTaskContext::with_tactics(model.clone(), Arc::new(tactics))?;
    ctx.poison()?;
    let t = lane.time_listed(&mut ctx, &listed, REPS)?;
    Ok(listed
        .into_iter()
        .zip(t)
        .map(|(k, d)| (k, d.as_secs_f64() * 1e6))
        .collect())
}

/// Each kernel's key in the device's tactic cache, from the launches the
/// rules build (at the probe build's placeholder addresses).
fn kernel_keys(model: &CudaModel) -> Result<Vec<String>, ExecError> {
    let (_, built) = probe(
        &model.shared,
        model.plan(),
        model.weight_layout(),
        Arc::default(),
    )?;
    Ok(built
        .launches
        .iter()
        .map(|l| kernel_key(&model.shared.tactic_scope, l))
        .collect())
}

/// What tuning decided for a model: per-kernel overrides, the report
/// (without its elapsed time) and the new choices for the cache.
#[derive(Debug, Clone, PartialEq)]
struct Decision {
    chosen: Vec<Option<Tactic>>,
    report: TuneReport,
    fresh: Vec<(String, CachedTactic)>,
}

/// Which candidates still need timing: per kernel, its candidates, or none
/// when `lookup` holds a cached choice that is still one of them (returned
/// beside).
fn split_cached(
    cands: &[Vec<Tactic>],
    keys: &[String],
    lookup: impl Fn(&str) -> Option<CachedTactic>,
) -> (Vec<Vec<Tactic>>, Vec<Option<CachedTactic>>) {
    cands
        .iter()
        .zip(keys)
        .map(
            |(c, key)| match lookup(key).filter(|h| c.len() > 1 && c.contains(&h.tactic)) {
                Some(hit) => (vec![], Some(hit)),
                None => (c.clone(), None),
            },
        )
        .unzip()
}

/// The decision from cached choices and the times of the rest (`times[k][i]`
/// for `to_time[k][i]`, us): per kernel of two or more candidates, the
/// cached choice or the fastest timed one ([`pick_fastest`], ties to fewer
/// blocks of `problems[k]`); a timed
/// kernel whose rules' tactic got a time is new to the cache.
fn decide(
    cands: &[Vec<Tactic>],
    problems: &[Option<GemmProblem>],
    keys: &[String],
    to_time: &[Vec<Tactic>],
    cached: &[Option<CachedTactic>],
    times: &[Vec<Option<f64>>],
) -> Decision {
    let mut d = Decision {
        chosen: vec![None; cands.len()],
        report: TuneReport {
            tuned: 0,
            changed: 0,
            cached: 0,
            rule_us: 0.0,
            chosen_us: 0.0,
            timed: 0,
            elapsed: Duration::ZERO,
        },
        fresh: vec![],
    };
    for k in 0..cands.len() {
        let pick = if let Some(hit) = cached[k] {
            d.report.cached += 1;
            hit
        } else if to_time[k].len() > 1 {
            let (c, t) = (&to_time[k], &times[k]);
            let items: Vec<u64> = match problems[k] {
                Some(p) => c.iter().map(|t| t.geometry(&p).items()).collect(),
                None => vec![],
            };
            let i = pick_fastest(t, &items);
            let timed = CachedTactic {
                tactic: c[i],
                rule_us: t[0].unwrap_or(0.0),
                chosen_us: t[i].unwrap_or(0.0),
            };
            d.report.timed += t.iter().flatten().count();
            if t[0].is_some() {
                d.fresh.push((keys[k].clone(), timed));
            }
            timed
        } else {
            continue;
        };
        d.report.tuned += 1;
        d.report.rule_us += pick.rule_us;
        d.report.chosen_us += pick.chosen_us;
        if pick.tactic != cands[k][0] {
            d.report.changed += 1;
            d.chosen[k] = Some(pick.tactic);
            tracing::debug!(
                kernel = k,
                rule = %cands[k][0],
                rule_us = pick.rule_us,
                chosen = %pick.tactic,
                chosen_us = pick.chosen_us,
                "tactic changed"
            );
        }
    }
    d
}

/// `model` with each GEMM's fastest candidate tactic: from the device's
/// tactic cache where it holds the kernel, else timed on the GPU (and
/// cached).
pub(crate) fn tune(model: Arc<CudaModel>) -> Result<(Arc<CudaModel>, TuneReport), ExecError> {
    let t0 = Instant::now();
    let cands = all_candidates(&model);
    let problems: Vec<Option<GemmProblem>> =
        model.gemms().iter().map(|g| g.map(|c| c.problem)).collect();
    let keys = kernel_keys(&model)?;
    let cache = &model.shared.tactic_cache;
    let (to_time, cached) = split_cached(&cands, &keys, |k| cache.get(k));
    let rounds = to_time.iter().map(Vec::len).max().unwrap_or(0);
    let mut times: Vec<Vec<Option<f64>>> = to_time.iter().map(|c| vec![None; c.len()]).collect();
    if rounds > 1 {
        let mut lane = CudaLane::new(model.shared.clone(), Priority::High, Default::default())?;
        // A first pass over the rules' tactics, not kept: the GPU leaves
        // its idle clocks and the functions load before anything is timed,
        // so that round 0 (the baseline every candidate must beat) is not
        // measured on a cold GPU.
        time_round(&model, &mut lane, &to_time, 0)?;
        let mut by_round = Vec::with_capacity(rounds);
        for r in 0..rounds {
            by_round.push(match time_round(&model, &mut lane, &to_time, r) {
                Ok(timed) => timed,
                // A trial that cannot run (e.g. no memory for its scratch)
                // leaves its candidates untimed; they are never chosen.
                Err(e) if r > 0 => {
                    tracing::warn!(model = %model.plan().name, round = r, error = %e, "tactic trial failed");
                    vec![]
                }
                Err(e) => return Err(e),
            });
        }
        for (r, timed) in by_round.into_iter().enumerate() {
            for (k, us) in timed {
                times[k][r] = Some(us);
            }
        }
    }
    let Decision {
        chosen,
        mut report,
        fresh,
    } = decide(&cands, &problems, &keys, &to_time, &cached, &times);
    cache.insert_all(&fresh);
    report.elapsed = t0.elapsed();
    let model = model.with_tactics(chosen, Some(report))?;
    tracing::info!(
        model = %model.plan().name,
        tuned = report.tuned,
        changed = report.changed,
        cached = report.cached,
        candidates = report.timed,
        rule_us = format!("{:.1}", report.rule_us),
        chosen_us = format!("{:.1}", report.chosen_us),
        ms = report.elapsed.as_millis() as u64,
        "GEMM tactics tuned"
    );
    Ok((model, report))
}

/// `model` with every GEMM kernel on its candidate `r` where it has one
/// (the tactics of the tuner's trial `r`).
pub(crate) fn round(model: Arc<CudaModel>, r: usize) -> Result<Arc<CudaModel>, ExecError> {
    let chosen: Vec<Option<Tactic>> = all_candidates(&model)
        .iter()
        .map(|c| c.get(r).copied())
        .collect();
    model.with_tactics(chosen, None)
}

/// `model` with one candidate tactic per GEMM kernel drawn by `seed`.
pub(crate) fn randomize(model: Arc<CudaModel>, seed: u64) -> Result<Arc<CudaModel>, ExecError> {
    let chosen: Vec<Option<Tactic>> = all_candidates(&model)
        .iter()
        .enumerate()
        .map(|(k, c)| (c.len() > 1).then(|| c[random_pick(seed, k, c.len())]))
        .collect();
    let differ = model
        .gemms()
        .iter()
        .zip(&chosen)
        .filter(|(g, t)| matches!((g, t), (Some(g), Some(t)) if g.rule != *t))
        .count();
    tracing::info!(
        model = %model.plan().name,
        seed,
        changed = differ,
        "GEMM tactics drawn at random"
    );
    model.with_tactics(chosen, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::GemmTile;

    fn t(tile: GemmTile, splits: u64) -> Tactic {
        Tactic { tile, splits }
    }

    #[test]
    fn cached_kernels_skip_timing_and_timed_ones_are_cached() {
        use GemmTile::{Large, Medium, Tall};
        // Kernel 0: one candidate; 1: cached (Tall); 2: cached choice no
        // longer a candidate, so timed; 3: timed, Large wins; 4: timed, the
        // rule's tactic untimed (trial failed), nothing cached.
        let cands = vec![
            vec![t(Medium, 1)],
            vec![t(Medium, 2), t(Tall, 2)],
            vec![t(Medium, 4), t(Medium, 2)],
            vec![t(Medium, 1), t(Large, 1), t(Tall, 1)],
            vec![t(Medium, 3), t(Tall, 3)],
        ];
        let keys: Vec<String> = (0..5).map(|k| format!("k{k}")).collect();
        let hit = |tactic| CachedTactic {
            tactic,
            rule_us: 10.0,
            chosen_us: 8.0,
        };
        let (to_time, cached) = split_cached(&cands, &keys, |k| match k {
            "k0" => Some(hit(t(Medium, 1))),
            "k1" => Some(hit(t(Tall, 2))),
            "k2" => Some(hit(t(Large, 9))),
            _ => None,
        });
        assert_eq!(to_time[0], cands[0], "a lone candidate is never looked up");
        assert!(cached[0].is_none());
        assert!(to_time[1].is_empty() && cached[1] == Some(hit(t(Tall, 2))));
        assert_eq!(to_time[2], cands[2]);
        assert_eq!(to_time[3], cands[3]);
        let times = vec![
            vec![None],
            vec![],
            vec![Some(20.0), Some(20.1)],
            vec![Some(30.0), Some(24.0), Some(26.0)],
            vec![None, Some(1.0)],
        ];
        let problem = GemmProblem {
            conv: true,
            outer: 1,
            m: 512,
            n: 49,
            k: 4608,
        };
        let problems = vec![Some(problem); 5];
        let d = decide(&cands, &problems, &keys, &to_time, &cached, &times);
        assert_eq!(
            d.chosen,
            vec![None, Some(t(Tall, 2)), None, Some(t(Large, 1)), None]
        );
        assert_eq!(d.report.tuned, 4);
        assert_eq!(d.report.cached, 1);
        assert_eq!(d.report.changed, 2);
        assert_eq!(d.report.timed, 2 + 3 + 1);
        assert_eq!(d.report.rule_us, 10.0 + 20.0 + 30.0 + 0.0);
        assert_eq!(d.report.chosen_us, 8.0 + 20.0 + 24.0 + 0.0);
        let fresh: Vec<(&str, Tactic)> = d
            .fresh
            .iter()
            .map(|(k, c)| (k.as_str(), c.tactic))
            .collect();
        assert_eq!(fresh, vec![("k2", t(Medium, 4)), ("k3", t(Large, 1))]);
    }
}
