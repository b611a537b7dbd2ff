//! From per-request records to figures: latency percentiles (exact and
//! HdrHistogram), throughput in the measured window, per-task breakdown, the
//! per-device breakdown of a multi-device run, and the comparison against the
//! "rt-alone" baseline (per mode, and per device against the same device).

use crate::schema::{
    Comparison, DeviceComparison, DeviceResult, LagFigures, LatencyFigures, ModeResult,
    RequestRecord, TaskResult,
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

/// Figures of one optional per-request time (`field`, ms) over the measured
/// RT requests that reported it; `None` when none did.
fn rt_figures_of(
    records: &[RequestRecord],
    field: fn(&RequestRecord) -> Option<f64>,
) -> Option<LatencyFigures> {
    let v: Vec<f64> = records
        .iter()
        .filter(|r| r.priority == Priority::Rt && measured(r))
        .filter_map(field)
        .collect();
    (!v.is_empty()).then(|| latency_figures(&v))
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
        rt_service: rt_figures_of(&records, |r| r.service_ms),
        rt_queued: rt_figures_of(&records, |r| r.queued_ms),
        rt_input: rt_figures_of(&records, |r| r.input_ms),
        rt_first_kernel: rt_figures_of(&records, |r| r.first_kernel_ms),
        rt_client: rt_figures_of(&records, |r| r.client_ms),
        rt_request: rt_figures_of(&records, |r| r.request_ms),
        rt_response: rt_figures_of(&records, |r| r.response_ms),
        rt_readback: rt_figures_of(&records, |r| r.readback_ms),
        rt_throughput_rps: rps_of(&|r| r.priority == Priority::Rt),
        be_throughput_rps: rps_of(&|r| r.priority == Priority::Be),
        total_throughput_rps: rps_of(&|_| true),
        preemptions: records.iter().map(|r| u64::from(r.preemptions)).sum(),
        kernels_rerun: records.iter().map(|r| u64::from(r.kernels_rerun)).sum(),
        sched: None,
        sm_clock: None,
        dispatch_lag_us: lag_figures(&records),
        tasks,
        records,
        devices: Vec::new(),
    }
}

/// The figures of each device `0..devices` (more where a record names a
/// higher index) from a mode's records, with the definitions of
/// [`summarize`] applied to the records each device answered; `name` and
/// `sched` are left empty for the caller. Records without a device (failed
/// requests, single-device services) count for no device.
pub fn per_device(mode: &ModeResult, devices: usize) -> Vec<DeviceResult> {
    let duration_ms = mode.duration_s * 1000.0;
    let warmup_ms = mode.warmup_s * 1000.0;
    let measured_s = mode.measured_s.max(f64::MIN_POSITIVE);
    let n = mode
        .records
        .iter()
        .filter_map(|r| r.device)
        .map(|d| d + 1)
        .fold(devices, usize::max);
    (0..n)
        .map(|d| {
            let mine: Vec<&RequestRecord> = mode
                .records
                .iter()
                .filter(|r| r.device == Some(d))
                .collect();
            let lat = |p: Priority| -> Vec<f64> {
                mine.iter()
                    .filter(|r| measured(r) && r.priority == p)
                    .map(|r| r.latency_ms)
                    .collect()
            };
            let rps = |p: Option<Priority>| -> f64 {
                mine.iter()
                    .filter(|r| {
                        in_window(r, warmup_ms, duration_ms) && p.is_none_or(|p| r.priority == p)
                    })
                    .count() as f64
                    / measured_s
            };
            DeviceResult {
                device: d,
                name: None,
                completed_ok: mine.iter().filter(|r| r.ok).count() as u64,
                rt: latency_figures(&lat(Priority::Rt)),
                be: latency_figures(&lat(Priority::Be)),
                rt_throughput_rps: rps(Some(Priority::Rt)),
                be_throughput_rps: rps(Some(Priority::Be)),
                total_throughput_rps: rps(None),
                sched: None,
            }
        })
        .collect()
}

/// RT mean and p99 of every mode against the mode labelled `baseline`
/// (normally `"rt-alone"`). Increases are `None` when the baseline is missing
/// or measured no RT request. The baseline itself is listed too (0% increase).
/// Each mean increase carries its 95% confidence half-width where both
/// sides kept their records ([`crate::spread`]).
pub fn compare(results: &[ModeResult], baseline: &str) -> Vec<Comparison> {
    let base_mode = results.iter().find(|m| m.mode == baseline);
    let base = base_mode.map(|b| &b.rt).filter(|rt| rt.count > 0);
    results
        .iter()
        .map(|m| {
            let mut c = comparison(
                &m.mode,
                baseline,
                &m.rt,
                base,
                m.be_throughput_rps,
                m.total_throughput_rps,
            );
            let spread = base_mode
                .filter(|_| m.mode != baseline)
                .and_then(|b| crate::spread::rt_mean_spread(&m.records, &b.records));
            if let (Some(s), Some(b)) = (spread, base) {
                if b.mean_ms > 0.0 {
                    c.rt_mean_increase_ci95_pct = Some(100.0 * s.half_width_ms / b.mean_ms);
                    c.rt_mean_pairs = s.pairs;
                }
            }
            c
        })
        .collect()
}

/// Per device of every mode that has per-device figures: its RT mean and p99
/// against the mode labelled `baseline` on the same device (device `i`
/// against device `i`). Increases are `None` when the baseline has no
/// figures for that device or measured no RT request there.
pub fn compare_devices(results: &[ModeResult], baseline: &str) -> Vec<DeviceComparison> {
    let base = results.iter().find(|m| m.mode == baseline);
    results
        .iter()
        .flat_map(|m| {
            m.devices.iter().map(move |d| {
                let b = base
                    .and_then(|b| b.devices.iter().find(|x| x.device == d.device))
                    .map(|x| &x.rt)
                    .filter(|rt| rt.count > 0);
                DeviceComparison {
                    device: d.device,
                    figures: comparison(
                        &m.mode,
                        baseline,
                        &d.rt,
                        b,
                        d.be_throughput_rps,
                        d.total_throughput_rps,
                    ),
                }
            })
        })
        .collect()
}

/// One row of a comparison: `rt` against `base` (the baseline's RT figures,
/// when it measured any).
fn comparison(
    mode: &str,
    baseline: &str,
    rt: &LatencyFigures,
    base: Option<&LatencyFigures>,
    be_throughput_rps: f64,
    total_throughput_rps: f64,
) -> Comparison {
    let pct = |x: f64, b: f64| {
        if b > 0.0 {
            Some(100.0 * (x / b - 1.0))
        } else {
            None
        }
    };
    let measured = base.filter(|_| rt.count > 0);
    Comparison {
        mode: mode.to_string(),
        baseline: baseline.to_string(),
        rt_mean_ms: rt.mean_ms,
        rt_p99_ms: rt.p99_ms,
        baseline_rt_mean_ms: base.map(|b| b.mean_ms),
        baseline_rt_p99_ms: base.map(|b| b.p99_ms),
        rt_mean_increase_pct: measured.and_then(|b| pct(rt.mean_ms, b.mean_ms)),
        rt_p99_increase_pct: measured.and_then(|b| pct(rt.p99_ms, b.p99_ms)),
        rt_mean_increase_ci95_pct: None,
        rt_mean_pairs: 0,
        be_throughput_rps,
        total_throughput_rps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{one_rt_task, record};
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

    /// A 1 s workload of one closed-loop RT task, with `warmup_s` of warm-up.
    #[test]
    fn compare_reports_increases_over_the_baseline() {
        let w = one_rt_task(1.0, 0.0);
        let rec = |lat: f64| RequestRecord {
            warmup: false,
            ..record(Priority::Rt, 1.0, lat)
        };
        let alone = summarize("rt-alone", &w, 0.0, vec![rec(2.0), rec(2.0)], 0);
        let busy = summarize("reef", &w, 0.0, vec![rec(2.0), rec(3.0)], 1);
        assert_eq!(busy.errors.get("drain_timeout"), Some(&1));
        let c = compare(&[alone, busy], "rt-alone");
        assert_eq!(c[0].rt_mean_increase_pct, Some(0.0));
        assert!((c[1].rt_mean_increase_pct.unwrap_or(0.0) - 25.0).abs() < 1e-9);
        assert!((c[1].rt_p99_increase_pct.unwrap_or(0.0) - 50.0).abs() < 1e-9);
        // The increase's 95% half-width: both requests pair with the
        // baseline's (same task and arrival), differences 0 and 1 ms
        // (variance 0.5): 1.96 * sqrt(0.5 / 2) ms of a 2 ms mean. None for
        // the baseline itself.
        assert_eq!(c[0].rt_mean_increase_ci95_pct, None);
        assert_eq!(c[1].rt_mean_pairs, 2);
        let want = 100.0 * 1.959_964 * (0.5f64 / 2.0).sqrt() / 2.0;
        let got = c[1].rt_mean_increase_ci95_pct.expect("an interval");
        assert!((got - want).abs() < 1e-6, "{got} against {want}");
        let none = compare(
            &c.iter()
                .map(|_| summarize("reef", &w, 0.0, vec![], 0))
                .collect::<Vec<_>>(),
            "rt-alone",
        );
        assert!(none.iter().all(|x| x.rt_mean_increase_pct.is_none()));
    }

    #[test]
    fn service_figures_cover_the_measured_rt_requests_that_reported_them() {
        let w = one_rt_task(1.0, 0.1);
        let rec = |p: Priority, arrival: f64, lat: f64, service: Option<f64>| RequestRecord {
            service_ms: service,
            ..record(p, arrival, lat)
        };
        use Priority::{Be, Rt};
        let m = summarize(
            "reset",
            &w,
            0.1,
            vec![
                rec(Rt, 50.0, 9.0, Some(8.0)),  // warm-up: left out
                rec(Rt, 200.0, 2.0, Some(1.5)), // counted
                rec(Rt, 300.0, 3.0, Some(2.5)), // counted
                rec(Rt, 400.0, 2.5, None),      // no account: left out
                rec(Be, 500.0, 7.0, Some(6.0)), // BE: left out
            ],
            0,
        );
        let s = m
            .rt_service
            .expect("two RT requests reported their service time");
        assert_eq!(s.count, 2);
        assert!((s.mean_ms - 2.0).abs() < 1e-9, "{}", s.mean_ms);
        assert!((s.max_ms - 2.5).abs() < 1e-9);
        // The client-side figures still cover every measured RT request.
        assert_eq!(m.rt.count, 3);
        let none = summarize("reset", &w, 0.1, vec![rec(Rt, 200.0, 2.0, None)], 0);
        assert!(none.rt_service.is_none());
    }

    #[test]
    fn queued_figures_cover_the_measured_rt_requests_that_reported_them() {
        let w = one_rt_task(1.0, 0.1);
        let rec = |p: Priority, arrival: f64, queued: Option<f64>| RequestRecord {
            queued_ms: queued,
            ..record(p, arrival, 4.0)
        };
        use Priority::{Be, Rt};
        let m = summarize(
            "reset",
            &w,
            0.1,
            vec![
                rec(Rt, 50.0, Some(3.0)),  // warm-up: left out
                rec(Rt, 200.0, Some(0.1)), // counted
                rec(Rt, 300.0, Some(0.3)), // counted
                rec(Rt, 400.0, None),      // no account: left out
                rec(Be, 500.0, Some(2.0)), // BE: left out
            ],
            0,
        );
        let q = m
            .rt_queued
            .expect("two RT requests reported their queueing");
        assert_eq!(q.count, 2);
        assert!((q.mean_ms - 0.2).abs() < 1e-9, "{}", q.mean_ms);
        assert!((q.max_ms - 0.3).abs() < 1e-9);
        assert!(m.rt_service.is_none());
    }

    #[test]
    fn per_device_figures_split_the_records_and_compare_like_devices() {
        let w = one_rt_task(1.0, 0.1);
        let rec = |p: Priority, arrival: f64, lat: f64, device: Option<usize>| RequestRecord {
            ok: device.is_some(),
            error: device.is_none().then(|| "internal".to_string()),
            device,
            ..record(p, arrival, lat)
        };
        use Priority::{Be, Rt};
        let busy = vec![
            rec(Rt, 50.0, 9.0, Some(0)), // warm-up: no latency; completes before the window
            rec(Rt, 200.0, 2.0, Some(0)), // device 0
            rec(Rt, 300.0, 4.0, Some(0)), // device 0
            rec(Rt, 250.0, 3.0, Some(1)), // device 1
            rec(Be, 400.0, 10.0, Some(1)), // device 1, BE
            rec(Be, 990.0, 20.0, Some(1)), // completes after the end: latency only
            rec(Rt, 500.0, 1.0, None),   // failed: no device
        ];
        let mut reset = summarize("reset", &w, 0.1, busy, 0);
        reset.devices = per_device(&reset, 2);
        let d = &reset.devices;
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].device, d[1].device), (0, 1));
        assert_eq!((d[0].rt.count, d[1].rt.count), (2, 1));
        assert_eq!(d[0].rt.count + d[1].rt.count, reset.rt.count);
        assert!((d[0].rt.mean_ms - 3.0).abs() < 1e-12);
        assert_eq!((d[0].rt.p99_ms, d[0].rt.max_ms), (4.0, 4.0));
        assert!((d[1].rt.mean_ms - 3.0).abs() < 1e-12);
        assert_eq!(d[1].be.count, 2);
        assert_eq!((d[0].completed_ok, d[1].completed_ok), (3, 3));
        // Throughput over 0.9 s: device 0 answered 2 in the window, device 1 two.
        assert!((d[0].total_throughput_rps - 2.0 / 0.9).abs() < 1e-9);
        assert!((d[1].be_throughput_rps - 1.0 / 0.9).abs() < 1e-9);
        let sum = |f: fn(&DeviceResult) -> f64| d.iter().map(f).sum::<f64>();
        assert!((sum(|x| x.total_throughput_rps) - reset.total_throughput_rps).abs() < 1e-9);
        assert!((sum(|x| x.be_throughput_rps) - reset.be_throughput_rps).abs() < 1e-9);
        // A record naming a device past the count adds that device.
        assert_eq!(per_device(&reset, 1).len(), 2);

        let mut alone = summarize(
            "rt-alone",
            &w,
            0.1,
            vec![rec(Rt, 200.0, 2.0, Some(0)), rec(Rt, 300.0, 1.5, Some(1))],
            0,
        );
        alone.devices = per_device(&alone, 2);
        let c = compare_devices(&[alone, reset], "rt-alone");
        assert_eq!(c.len(), 4);
        let of = |mode: &str, dev: usize| {
            c.iter()
                .find(|x| x.figures.mode == mode && x.device == dev)
                .map(|x| x.figures.clone())
                .unwrap_or_else(|| panic!("no row for {mode} on device {dev}"))
        };
        assert_eq!(of("rt-alone", 1).rt_mean_increase_pct, Some(0.0));
        // Device 0: 3 ms against 2 ms alone; device 1: 3 ms against 1.5 ms.
        assert!((of("reset", 0).rt_mean_increase_pct.unwrap_or(0.0) - 50.0).abs() < 1e-9);
        assert!((of("reset", 1).rt_mean_increase_pct.unwrap_or(0.0) - 100.0).abs() < 1e-9);
        assert!((of("reset", 0).rt_p99_increase_pct.unwrap_or(0.0) - 100.0).abs() < 1e-9);
        assert_eq!(of("reset", 1).baseline_rt_p99_ms, Some(1.5));
        // No per-device figures on one device.
        let one = summarize("reset", &w, 0.1, vec![rec(Rt, 200.0, 2.0, None)], 0);
        assert!(compare_devices(&[one], "rt-alone").is_empty());
    }
}
