//! From per-request records to figures: latency percentiles (exact and
//! HdrHistogram), throughput in the measured window, per-task breakdown, and
//! the comparison against the "rt-alone" baseline.

use crate::schema::{
    Comparison, LagFigures, LatencyFigures, ModeResult, RequestRecord, TaskResult,
};
use crate::workload::Workload;
use hdrhistogram::Histogram;
use reef_sched::Priority;
use std::collections::BTreeMap;

/// Nearest-rank percentile of sorted values: `v[ceil(q * n) - 1]`, `q` in [0, 1].
/// 0 for an empty slice.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Latency figures of a set of latencies in milliseconds.
pub fn latency_figures(latencies_ms: &[f64]) -> LatencyFigures {
    if latencies_ms.is_empty() {
        return LatencyFigures::default();
    }
    let mut v = latencies_ms.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // Microseconds, 1 us to 1 hour, 3 significant digits.
    let hdr = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .ok()
        .map(|mut h| {
            for &x in &v {
                h.saturating_record((x * 1000.0).round().max(1.0) as u64);
            }
            h
        });
    let q = |p: f64| hdr.as_ref().map(|h| h.value_at_quantile(p) as f64 / 1000.0);
    LatencyFigures {
        count: n as u64,
        mean_ms: v.iter().sum::<f64>() / n as f64,
        p50_ms: percentile_sorted(&v, 0.50),
        p95_ms: percentile_sorted(&v, 0.95),
        p99_ms: percentile_sorted(&v, 0.99),
        max_ms: v[n - 1],
        hdr_p50_ms: q(0.50),
        hdr_p95_ms: q(0.95),
        hdr_p99_ms: q(0.99),
        hdr_max_ms: hdr.as_ref().map(|h| h.max() as f64 / 1000.0),
    }
}

fn lag_figures(records: &[RequestRecord]) -> LagFigures {
    let mut v: Vec<f64> = records.iter().filter_map(|r| r.dispatch_lag_us).collect();
    if v.is_empty() {
        return LagFigures::default();
    }
    v.sort_by(f64::total_cmp);
    LagFigures {
        count: v.len() as u64,
        p50_us: percentile_sorted(&v, 0.5),
        p99_us: percentile_sorted(&v, 0.99),
        max_us: v[v.len() - 1],
    }
}

/// Whether a record counts towards latency figures: arrived after the warm-up, succeeded.
fn measured(r: &RequestRecord) -> bool {
    r.ok && !r.warmup
}

/// Whether a record counts towards throughput: succeeded, completed in `[warmup, duration]`.
fn in_window(r: &RequestRecord, warmup_ms: f64, duration_ms: f64) -> bool {
    let done = r.arrival_ms + r.latency_ms;
    r.ok && done >= warmup_ms && done <= duration_ms
}

/// Builds a mode's figures from its records (see [`crate::schema`] for the
/// definitions). `sched`, `scheduler` and `device` are left empty for the
/// caller; `drain_timeouts` counts requests that never answered.
pub fn summarize(
    mode: &str,
    workload: &Workload,
    warmup_s: f64,
    mut records: Vec<RequestRecord>,
    drain_timeouts: u64,
) -> ModeResult {
    records.sort_by(|a, b| {
        a.arrival_ms
            .total_cmp(&b.arrival_ms)
            .then(a.task.cmp(&b.task))
    });
    let duration_ms = workload.duration_s * 1000.0;
    let warmup_ms = warmup_s * 1000.0;
    let measured_s = (workload.duration_s - warmup_s).max(f64::MIN_POSITIVE);
    let lat_of = |f: &dyn Fn(&RequestRecord) -> bool| -> Vec<f64> {
        records
            .iter()
            .filter(|r| measured(r) && f(r))
            .map(|r| r.latency_ms)
            .collect()
    };
    let rps_of = |f: &dyn Fn(&RequestRecord) -> bool| -> f64 {
        records
            .iter()
            .filter(|r| in_window(r, warmup_ms, duration_ms) && f(r))
            .count() as f64
            / measured_s
    };
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.ok) {
        *errors
            .entry(r.error.clone().unwrap_or_else(|| "unknown".into()))
            .or_default() += 1;
    }
    if drain_timeouts > 0 {
        *errors.entry("drain_timeout".into()).or_default() += drain_timeouts;
    }
    let tasks = workload
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mine: Vec<&RequestRecord> = records.iter().filter(|r| r.task == i).collect();
            let mut errs: BTreeMap<String, u64> = BTreeMap::new();
            for r in mine.iter().filter(|r| !r.ok) {
                *errs
                    .entry(r.error.clone().unwrap_or_else(|| "unknown".into()))
                    .or_default() += 1;
            }
            TaskResult {
                task: i,
                name: t.label(),
                model: t.model.clone(),
                priority: t.priority,
                load: t.load.kind().to_string(),
                batch_size: t.batch_size,
                submitted: mine.len() as u64,
                completed_ok: mine.iter().filter(|r| r.ok).count() as u64,
                errors: errs,
                throughput_rps: rps_of(&|r| r.task == i),
                latency: latency_figures(&lat_of(&|r| r.task == i)),
            }
        })
        .collect();
    ModeResult {
        mode: mode.to_string(),
        scheduler: None,
        device: None,
        duration_s: workload.duration_s,
        warmup_s,
        measured_s,
        submitted: records.len() as u64 + drain_timeouts,
        completed_ok: records.iter().filter(|r| r.ok).count() as u64,
        errors,
        rt: latency_figures(&lat_of(&|r| r.priority == Priority::Rt)),
        be: latency_figures(&lat_of(&|r| r.priority == Priority::Be)),
        rt_throughput_rps: rps_of(&|r| r.priority == Priority::Rt),
        be_throughput_rps: rps_of(&|r| r.priority == Priority::Be),
        total_throughput_rps: rps_of(&|_| true),
        preemptions: records.iter().map(|r| u64::from(r.preemptions)).sum(),
        kernels_rerun: records.iter().map(|r| u64::from(r.kernels_rerun)).sum(),
        sched: None,
        dispatch_lag_us: lag_figures(&records),
        tasks,
        records,
    }
}

/// RT mean and p99 of every mode against the mode labelled `baseline`
/// (normally `"rt-alone"`). Increases are `None` when the baseline is missing
/// or measured no RT request. The baseline itself is listed too (0% increase).
pub fn compare(results: &[ModeResult], baseline: &str) -> Vec<Comparison> {
    let base = results
        .iter()
        .find(|m| m.mode == baseline)
        .filter(|m| m.rt.count > 0);
    let pct = |x: f64, b: f64| {
        if b > 0.0 {
            Some(100.0 * (x / b - 1.0))
        } else {
            None
        }
    };
    results
        .iter()
        .map(|m| Comparison {
            mode: m.mode.clone(),
            baseline: baseline.to_string(),
            rt_mean_ms: m.rt.mean_ms,
            rt_p99_ms: m.rt.p99_ms,
            baseline_rt_mean_ms: base.map(|b| b.rt.mean_ms),
            baseline_rt_p99_ms: base.map(|b| b.rt.p99_ms),
            rt_mean_increase_pct: base
                .filter(|_| m.rt.count > 0)
                .and_then(|b| pct(m.rt.mean_ms, b.rt.mean_ms)),
            rt_p99_increase_pct: base
                .filter(|_| m.rt.count > 0)
                .and_then(|b| pct(m.rt.p99_ms, b.rt.p99_ms)),
            be_throughput_rps: m.be_throughput_rps,
            total_throughput_rps: m.total_throughput_rps,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Independent percentile: the smallest value v with at least q*n values <= v.
    fn by_counting(v: &[f64], q: f64) -> f64 {
        let n = v.len() as f64;
        let mut c: Vec<f64> = v.to_vec();
        c.sort_by(f64::total_cmp);
        c.iter()
            .copied()
            .find(|x| v.iter().filter(|y| *y <= x).count() as f64 >= q * n)
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn percentiles_match_an_independent_count() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for n in [1usize, 2, 7, 100, 1001] {
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(0.1..50.0)).collect();
            let f = latency_figures(&v);
            for (q, got) in [
                (0.5, f.p50_ms),
                (0.95, f.p95_ms),
                (0.99, f.p99_ms),
                (1.0, f.max_ms),
            ] {
                assert_eq!(got, by_counting(&v, q), "n={n} q={q}");
            }
            let mean = v.iter().sum::<f64>() / n as f64;
            assert!((f.mean_ms - mean).abs() < 1e-9);
            // HdrHistogram with 3 significant digits: within 0.1% (+1 us of rounding).
            let hdr = f.hdr_p99_ms.unwrap_or(f64::NAN);
            assert!(
                (hdr - f.p99_ms).abs() <= f.p99_ms * 1e-3 + 2e-3,
                "{hdr} vs {}",
                f.p99_ms
            );
        }
        assert_eq!(latency_figures(&[]).count, 0);
    }

    #[test]
    fn compare_reports_increases_over_the_baseline() {
        let w = Workload {
            name: "x".into(),
            notes: None,
            duration_s: 1.0,
            warmup_s: Some(0.0),
            tasks: vec![crate::workload::TaskSpec {
                name: None,
                model: "m".into(),
                priority: Priority::Rt,
                load: crate::workload::Load::Continuous,
                batch_size: 1,
                seed: None,
            }],
        };
        let rec = |lat: f64| RequestRecord {
            task: 0,
            priority: Priority::Rt,
            arrival_ms: 1.0,
            latency_ms: lat,
            ok: true,
            error: None,
            warmup: false,
            queued_ms: None,
            preemptions: 0,
            kernels_rerun: 0,
            dispatch_lag_us: None,
        };
        let alone = summarize("rt-alone", &w, 0.0, vec![rec(2.0), rec(2.0)], 0);
        let busy = summarize("reef", &w, 0.0, vec![rec(2.0), rec(3.0)], 1);
        assert_eq!(busy.errors.get("drain_timeout"), Some(&1));
        let c = compare(&[alone, busy], "rt-alone");
        assert_eq!(c[0].rt_mean_increase_pct, Some(0.0));
        assert!((c[1].rt_mean_increase_pct.unwrap_or(0.0) - 25.0).abs() < 1e-9);
        assert!((c[1].rt_p99_increase_pct.unwrap_or(0.0) - 50.0).abs() < 1e-9);
        let none = compare(
            &c.iter()
                .map(|_| summarize("reef", &w, 0.0, vec![], 0))
                .collect::<Vec<_>>(),
            "rt-alone",
        );
        assert!(none.iter().all(|x| x.rt_mean_increase_pct.is_none()));
    }
}
