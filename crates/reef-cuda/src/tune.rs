//! The load-time tactic tuner (`REEF_TACTICS=tune`) and the self-test's
//! tactic mixes (`REEF_TACTICS=random:SEED`, `round:R`): they replace a
//! freshly loaded model's GEMM tactics ([`crate::tactics`]).
//!
//! Tuning runs in rounds: round `r` builds one trial context whose every
//! GEMM kernel with more than `r` candidates runs its candidate `r` (round 0
//! the rules' choices), and times those kernels' RT variants on a
//! high-priority stream with device events, as the padding profile does.
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
use crate::tactics::{candidates, pick_fastest, random_pick, Tactic, TileLimits};
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
        model.tf32_weights(),
        Arc::default(),
    )?;
    Ok(built
        .launches
        .iter()
        .map(|l| kernel_key(&model.shared.tactic_scope, l))
        .collect())
}

/// `model` with each GEMM's fastest candidate tactic: from the device's
/// tactic cache where it holds the kernel, else timed on the GPU (and
/// cached).
pub(crate) fn tune(model: Arc<CudaModel>) -> Result<(Arc<CudaModel>, TuneReport), ExecError> {
    let t0 = Instant::now();
    let cands = all_candidates(&model);
    let keys = kernel_keys(&model)?;
    let cache = &model.shared.tactic_cache;
    let mut report = TuneReport {
        tuned: 0,
        changed: 0,
        cached: 0,
        rule_us: 0.0,
        chosen_us: 0.0,
        timed: 0,
        elapsed: Duration::ZERO,
    };
    let mut chosen = vec![None; cands.len()];
    // Cached choices that are still candidates; the rest is timed.
    let mut to_time = cands.clone();
    for (k, c) in cands.iter().enumerate() {
        if c.len() < 2 {
            continue;
        }
        let Some(hit) = cache.get(&keys[k]).filter(|h| c.contains(&h.tactic)) else {
            continue;
        };
        to_time[k].clear();
        report.tuned += 1;
        report.cached += 1;
        report.rule_us += hit.rule_us;
        report.chosen_us += hit.chosen_us;
        if hit.tactic != c[0] {
            report.changed += 1;
            chosen[k] = Some(hit.tactic);
        }
    }
    let rounds = to_time.iter().map(Vec::len).max().unwrap_or(0);
    let mut times: Vec<Vec<Option<f64>>> = to_time.iter().map(|c| vec![None; c.len()]).collect();
    if rounds > 1 {
        let mut lane = CudaLane::new(model.shared.clone(), Priority::High)?;
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
    let mut fresh = vec![];
    for (k, (c, t)) in to_time.iter().zip(&times).enumerate() {
        if c.len() < 2 {
            continue;
        }
        let i = pick_fastest(t);
        let (rule_us, chosen_us) = (t[0].unwrap_or(0.0), t[i].unwrap_or(0.0));
        report.tuned += 1;
        report.timed += t.iter().flatten().count();
        report.rule_us += rule_us;
        report.chosen_us += chosen_us;
        if t[0].is_some() {
            fresh.push((
                keys[k].clone(),
                CachedTactic {
                    tactic: c[i],
                    rule_us,
                    chosen_us,
                },
            ));
        }
        if i > 0 {
            report.changed += 1;
            chosen[k] = Some(c[i]);
            tracing::debug!(
                kernel = k,
                rule = %c[0],
                rule_us,
                chosen = %c[i],
                chosen_us,
                "tactic changed"
            );
        }
    }
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
