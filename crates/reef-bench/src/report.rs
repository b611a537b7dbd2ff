//! Reports: the Markdown table (one row per mode; on several devices also one
//! row per mode and device, and the throughput of each device next to the
//! total) and the JSON file.

use crate::ceiling::BE_ALONE;
use crate::error::{BenchError, Result};
use crate::runner::RT_ALONE;
use crate::schema::{LatencyFigures, ModeResult, WorkloadResult};
use std::fmt::Write as _;
use std::path::Path;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:+.1}%"))
}

/// An increase with its 95% half-width where known: `+1.2% ±0.9`.
fn pct_ci(v: Option<f64>, ci: Option<f64>) -> String {
    match (v, ci) {
        (Some(x), Some(h)) => format!("{x:+.1}% ±{h:.1}"),
        _ => pct(v),
    }
}

/// The Markdown report: a header naming the workload and device, then one row
/// per mode with RT mean/p50/p95/p99/max (ms), the increase of the RT mean
/// (with its 95% confidence half-width, [`crate::spread`]) and p99 over RT
/// alone, BE and total throughput (req/s), preemptions and the
/// preemption latency p50/p99 (us), then any errors. When modes ran on
/// several devices, [`per_device_markdown`] follows.
pub fn markdown(result: &WorkloadResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### DISB {} ({})",
        result.workload.name,
        result.device.as_deref().unwrap_or("unknown device")
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| mode | RT mean ms | RT p50 | RT p95 | RT p99 | RT max | mean vs alone | p99 vs alone | BE req/s | total req/s | preemptions | preempt p50 us | preempt p99 us | pad launches |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for m in &result.modes {
        let cmp = result.comparison.iter().find(|c| c.mode == m.mode);
        let (pre, p50, p99) = match &m.sched {
            Some(sf) if sf.preempt_latency_us.count > 0 => (
                sf.preemptions,
                format!("{:.1}", sf.preempt_latency_us.p50),
                format!("{:.1}", sf.preempt_latency_us.p99),
            ),
            Some(sf) => (sf.preemptions.max(m.preemptions), "-".into(), "-".into()),
            None => (m.preemptions, "-".into(), "-".into()),
        };
        let pads = m.sched.as_ref().map_or(0, |sf| sf.pad_launches);
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |",
            m.mode,
            m.rt.mean_ms,
            m.rt.p50_ms,
            m.rt.p95_ms,
            m.rt.p99_ms,
            m.rt.max_ms,
            pct_ci(
                cmp.and_then(|c| c.rt_mean_increase_pct),
                cmp.and_then(|c| c.rt_mean_increase_ci95_pct)
            ),
            pct(cmp.and_then(|c| c.rt_p99_increase_pct)),
            m.be_throughput_rps,
            m.total_throughput_rps,
            pre,
            p50,
            p99,
            pads,
        );
    }
    let failing: Vec<_> = result
        .modes
        .iter()
        .filter(|m| !m.errors.is_empty())
        .collect();
    if !failing.is_empty() {
        let _ = writeln!(s);
        for m in failing {
            let list: Vec<String> = m.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "- {} errors: {}", m.mode, list.join(", "));
        }
    }
    let rt_first: Vec<&str> = result
        .modes
        .iter()
        .map(|m| m.mode.as_str())
        .filter(|label| launches_rt_first(label))
        .collect();
    if !rt_first.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "- {}: RT work launched before the BE drain; the preemption latency runs until the BE kernels queued behind the RT work have left (`:drain` modes wait for the drain first and measure it alone).",
            rt_first.join(", ")
        );
    }
    if let Some(note) = ceiling_note(result) {
        let _ = writeln!(s);
        let _ = writeln!(s, "{note}");
    }
    if let Some(note) = lag_note(&result.modes) {
        let _ = writeln!(s);
        let _ = writeln!(s, "{note}");
    }
    if let Some(note) = stall_note(&result.modes) {
        let _ = writeln!(s);
        let _ = writeln!(s, "{note}");
    }
    if let Some(note) = clock_note(&result.modes) {
        let _ = writeln!(s);
        let _ = writeln!(s, "{note}");
    }
    figure_lines(
        &mut s,
        result,
        |m| m.rt_service.as_ref(),
        |m, f| {
            format!(
            "RT inside the service mean {:.3} ms, p99 {:.3} ms ({} requests); {:.3} ms of the RT mean outside it",
            f.mean_ms,
            f.p99_ms,
            f.count,
            m.rt.mean_ms - f.mean_ms
        )
        },
    );
    figure_lines(
        &mut s,
        result,
        |m| m.rt_request.as_ref(),
        |m, f| {
            let mean = |x: Option<&LatencyFigures>| x.map_or(f64::NAN, |x| x.mean_ms);
            format!(
            "RT outside the server, means: client {:.3} ms (arrival to the call), request {:.3} ms (the call to the handler's start), response {:.3} ms (the handler's answer to the runner, of which {:.3} ms reading the outputs after the reply); request p99 {:.3} ms",
            mean(m.rt_client.as_ref()),
            f.mean_ms,
            mean(m.rt_response.as_ref()),
            mean(m.rt_readback.as_ref()),
            f.p99_ms
        )
        },
    );
    figure_lines(
        &mut s,
        result,
        |m| m.rt_queued.as_ref(),
        |m, f| {
            let input = m.rt_input.as_ref().map_or(String::new(), |i| {
                format!("; writing the inputs mean {:.3} ms", i.mean_ms)
            });
            format!(
            "RT queued (arrival to start on the device: queue, preemption, inputs) mean {:.3} ms, p99 {:.3} ms{input}",
            f.mean_ms, f.p99_ms
        )
        },
    );
    let alone_first = result
        .modes
        .iter()
        .find(|m| m.mode == RT_ALONE)
        .and_then(|m| m.rt_first_kernel.clone());
    figure_lines(
        &mut s,
        result,
        |m| m.rt_first_kernel.as_ref(),
        |m, f| {
            let against = alone_first.as_ref().filter(|_| m.mode != RT_ALONE);
            let wait = against.map_or(String::new(), |a| {
                format!(
                    "; over rt-alone's: p50 {:+.1} us, p99 {:+.1} us",
                    (f.p50_ms - a.p50_ms) * 1e3,
                    (f.p99_ms - a.p99_ms) * 1e3
                )
            });
            format!(
                "RT first kernel on the device (from the device reaching the task on an idle RT lane; {} tasks) p50 {:.1} us, p99 {:.1} us{wait}",
                f.count,
                f.p50_ms * 1e3,
                f.p99_ms * 1e3
            )
        },
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "RT latency from the scheduled arrival, {} s measured after {} s warm-up; {} RT requests in the first mode.",
        opt(result.modes.first().map(|m| m.measured_s), 1),
        opt(result.modes.first().map(|m| m.warmup_s), 1),
        result.modes.first().map_or(0, |m| m.rt.count)
    );
    s.push_str(&per_device_markdown(result));
    s
}

/// The throughput ceiling of exclusive RT ([`crate::ceiling`]), set beside
/// `stream`'s total, and each measured mode's total as a share of it;
/// `None` without the ceiling.
fn ceiling_note(result: &WorkloadResult) -> Option<String> {
    let c = result.ceiling?;
    let stream = result
        .modes
        .iter()
        .find(|m| m.mode == "stream")
        .filter(|m| m.total_throughput_rps > 0.0)
        .map_or(String::new(), |m| {
            format!(
                " ({:.1}% of `stream`'s {:.1})",
                100.0 * c.total_rps / m.total_throughput_rps,
                m.total_throughput_rps
            )
        });
    let reached: Vec<String> = result
        .modes
        .iter()
        .filter(|m| m.mode != RT_ALONE && m.mode != BE_ALONE && c.total_rps > 0.0)
        .map(|m| {
            format!(
                "{} {:.1}%",
                m.mode,
                100.0 * m.total_throughput_rps / c.total_rps
            )
        })
        .collect();
    Some(format!(
        "- Exclusive-RT ceiling: RT alone held the device {:.1}% of its window and BE alone ran {:.1} req/s, so a mode that runs no BE work beside RT work reaches at most {:.1} + {:.1} x {:.3} = {:.1} req/s in total{stream}. Total throughput against it: {}.",
        100.0 * c.rt_occupancy,
        c.be_alone_rps,
        c.rt_rps,
        c.be_alone_rps,
        1.0 - c.rt_occupancy,
        c.total_rps,
        reached.join(", ")
    ))
}

/// The per-device section of the Markdown report (empty when no mode ran on
/// several devices): one row per mode and device with its RT count,
/// mean/p50/p95/p99/max (ms), RT mean and p99 against "rt-alone" on the same
/// device, BE and total throughput (req/s) and the device's share of the
/// mode's total; then per mode the devices' total throughputs next to the
/// mode's total, and the balance (the mean device's total over the busiest
/// device's; linear scaling needs 1, then a single-device run to compare
/// with).
pub fn per_device_markdown(result: &WorkloadResult) -> String {
    let mut s = String::new();
    if result.modes.iter().all(|m| m.devices.is_empty()) {
        return s;
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "#### Per device");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| mode | device | RT count | RT mean ms | RT p50 | RT p95 | RT p99 | RT max | mean vs alone | p99 vs alone | BE req/s | total req/s | share of total |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for m in result.modes.iter().filter(|m| !m.devices.is_empty()) {
        for d in &m.devices {
            let cmp = result
                .device_comparison
                .iter()
                .find(|c| c.device == d.device && c.figures.mode == m.mode)
                .map(|c| &c.figures);
            let share = (m.total_throughput_rps > 0.0)
                .then(|| 100.0 * d.total_throughput_rps / m.total_throughput_rps);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {:.1} | {:.1} | {} |",
                m.mode,
                d.device,
                d.rt.count,
                d.rt.mean_ms,
                d.rt.p50_ms,
                d.rt.p95_ms,
                d.rt.p99_ms,
                d.rt.max_ms,
                pct(cmp.and_then(|c| c.rt_mean_increase_pct)),
                pct(cmp.and_then(|c| c.rt_p99_increase_pct)),
                d.be_throughput_rps,
                d.total_throughput_rps,
                share.map_or_else(|| "-".to_string(), |x| format!("{x:.1}%")),
            );
        }
    }
    let _ = writeln!(s);
    for m in result.modes.iter().filter(|m| !m.devices.is_empty()) {
        let each: Vec<String> = m
            .devices
            .iter()
            .map(|d| format!("{:.1}", d.total_throughput_rps))
            .collect();
        let n = m.devices.len() as f64;
        let busiest = m
            .devices
            .iter()
            .map(|d| d.total_throughput_rps)
            .fold(0.0, f64::max);
        let mean = m
            .devices
            .iter()
            .map(|d| d.total_throughput_rps)
            .sum::<f64>()
            / n;
        let _ = writeln!(
            s,
            "- {}: total {:.1} req/s (BE {:.1}) over {} devices = {} req/s per device; balance {} (mean device / busiest)",
            m.mode,
            m.total_throughput_rps,
            m.be_throughput_rps,
            m.devices.len(),
            each.join(" + "),
            opt((busiest > 0.0).then(|| mean / busiest), 2),
        );
    }
    let n = result
        .modes
        .iter()
        .map(|m| m.devices.len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Each device against the same device of rt-alone. Scaling needs a `--devices 1` run of the same workload to compare with: linear is {n} x its total req/s, 0.9 of linear {:.1} x.",
        0.9 * n as f64
    );
    s
}

fn write(path: &Path, bytes: &[u8], action: &'static str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::Io {
            action,
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, bytes).map_err(|source| BenchError::Io {
        action,
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the Markdown report.
pub fn write_markdown(result: &WorkloadResult, path: &Path) -> Result<()> {
    write(path, markdown(result).as_bytes(), "writing Markdown report")
}

/// Whether a mode label (`reset`, `reef:drain:depth2`, `torch-seq-graph`,
/// ...) names a reef setup that launches RT work before the BE drain.
fn launches_rt_first(label: &str) -> bool {
    label.parse::<reef_sched::ModeSpec>().is_ok_and(|spec| {
        spec.apply(reef_sched::SchedConfig::default())
            .launches_rt_early()
    })
}

/// Dispatch lag (p99, us) above which the report warns: the benchmark's
/// own open-loop threads submit within a few microseconds of an arrival on
/// a quiet host.
pub const LAG_WARN_US: f64 = 100.0;

/// A line naming the modes whose open-loop dispatch lagged (p99 over
/// [`LAG_WARN_US`]); `None` when none did. The lag counts against RT
/// latency, so such a mode's comparison with RT alone says as much about
/// the host as about the scheduler.
pub fn lag_note(modes: &[ModeResult]) -> Option<String> {
    let lagging: Vec<String> = modes
        .iter()
        .filter(|m| m.dispatch_lag_us.count > 0 && m.dispatch_lag_us.p99_us > LAG_WARN_US)
        .map(|m| format!("{} {:.0} us", m.mode, m.dispatch_lag_us.p99_us))
        .collect();
    (!lagging.is_empty()).then(|| {
        format!(
            "- Dispatch lag p99 over {LAG_WARN_US:.0} us (the benchmark's own submit after the scheduled arrival, counted in RT latency): {}. The host delayed the benchmark's clients; compare these modes with care.",
            lagging.join(", ")
        )
    })
}

/// A scheduling pass (us) at least this long is named in the report: it
/// held every RT launch behind it.
pub const STALL_NOTE_US: f64 = 1000.0;

/// A line naming, per mode, the scheduling loop's slowest pass where it
/// took [`STALL_NOTE_US`] or more, with its longest phase, and the task
/// contexts made while serving; `None` when no mode had either.
pub fn stall_note(modes: &[ModeResult]) -> Option<String> {
    let held: Vec<String> = modes
        .iter()
        .filter_map(|m| {
            let sched = m.sched.as_ref()?;
            let mut parts = Vec::new();
            if let Some(t) = sched
                .slowest_steps
                .first()
                .filter(|t| t.us >= STALL_NOTE_US)
            {
                let phase = t.longest_phase().map_or(String::new(), |(p, us)| {
                    format!(", {p} {:.2} ms", us / 1000.0)
                });
                parts.push(format!(
                    "a {:.2} ms pass at {:.0} ms{phase}",
                    t.us / 1000.0,
                    t.at_ms
                ));
            }
            if sched.contexts_made > 0 {
                parts.push(format!("{} contexts made", sched.contexts_made));
            }
            (!parts.is_empty()).then(|| format!("{} {}", m.mode, parts.join(", ")))
        })
        .collect();
    (!held.is_empty()).then(|| {
        format!(
            "- The scheduling thread: its slowest pass where one took {:.0} ms or more, and the task contexts made while serving, warm-up included (each allocates device memory on the scheduling or BE I/O thread): {}.",
            STALL_NOTE_US / 1000.0,
            held.join("; ")
        )
    })
}

/// The GPU's SM clock over each mode's measured window, where sampled.
pub fn clock_note(modes: &[ModeResult]) -> Option<String> {
    let clocks: Vec<String> = modes
        .iter()
        .filter_map(|m| {
            let c = m.sm_clock.as_ref()?;
            Some(format!(
                "{} {:.0} / {:.0} / {:.0}",
                m.mode, c.mean_mhz, c.p10_mhz, c.min_mhz
            ))
        })
        .collect();
    (!clocks.is_empty()).then(|| {
        format!(
            "- SM clock over the measured window, MHz (mean / p10 / min of samples every {} ms): {}.",
            crate::clock::SAMPLE_PERIOD_MS,
            clocks.join("; ")
        )
    })
}

/// A paragraph with one line per mode that has the optional figures `of`,
/// worded by `line`; nothing when no mode has them.
fn figure_lines(
    s: &mut String,
    result: &WorkloadResult,
    of: impl Fn(&ModeResult) -> Option<&LatencyFigures>,
    line: impl Fn(&ModeResult, &LatencyFigures) -> String,
) {
    let with: Vec<_> = result
        .modes
        .iter()
        .filter_map(|m| of(m).map(|f| (m, f)))
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(s);
    for (m, f) in with {
        let _ = writeln!(s, "- {}: {}", m.mode, line(m, f));
    }
}

/// Writes the JSON result; per-request records only when `with_records`.
pub fn write_json(result: &WorkloadResult, path: &Path, with_records: bool) -> Result<()> {
    let text = if with_records {
        serde_json::to_string_pretty(result)?
    } else {
        let mut slim = result.clone();
        for m in &mut slim.modes {
            m.records.clear();
        }
        serde_json::to_string_pretty(&slim)?
    };
    write(path, text.as_bytes(), "writing JSON result")
}

/// Reads a JSON result (from `reef bench` or `torch_disb.py`).
pub fn read_json(path: &Path) -> Result<WorkloadResult> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        action: "reading JSON result",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| BenchError::Parse {
        what: "result",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::{clock_note, lag_note, launches_rt_first, stall_note};

    #[test]
    fn sampled_clocks_are_named_per_mode() {
        use crate::clock::ClockFigures;
        use crate::test_support::{one_rt_task, record};
        use reef_sched::Priority;
        let w = one_rt_task(1.0, 0.0);
        let mode = |name: &str, clock: Option<&[u32]>| {
            let mut m =
                crate::figures::summarize(name, &w, 0.0, vec![record(Priority::Rt, 0.0, 1.0)], 0);
            m.sm_clock = clock.and_then(ClockFigures::of);
            m
        };
        let unsampled = mode("reset", None);
        assert_eq!(clock_note(std::slice::from_ref(&unsampled)), None);
        let idle = mode("rt-alone", Some(&[1980, 345, 1980, 1980]));
        let note = clock_note(&[idle, unsampled]).expect("one mode sampled");
        assert!(
            note.contains("rt-alone 1571 / 345 / 345") && !note.contains("reset"),
            "{note}"
        );
    }

    #[test]
    fn modes_whose_dispatch_lagged_are_named_and_others_not() {
        use crate::schema::RequestRecord;
        use crate::test_support::{one_rt_task, record};
        use reef_sched::Priority;
        let w = one_rt_task(1.0, 0.0);
        let mode = |name: &str, lags: &[f64]| {
            let records = lags
                .iter()
                .enumerate()
                .map(|(i, &lag)| RequestRecord {
                    warmup: false,
                    dispatch_lag_us: Some(lag),
                    ..record(Priority::Rt, i as f64, 1.0)
                })
                .collect();
            crate::figures::summarize(name, &w, 0.0, records, 0)
        };
        let quiet = mode("reset", &[1.0, 3.0, 2.0]);
        let noisy = mode("reef", &[1.0, 2500.0, 2.0]);
        assert_eq!(lag_note(std::slice::from_ref(&quiet)), None);
        let note = lag_note(&[quiet, noisy]).expect("a lagging mode");
        assert!(
            note.contains("reef 2500 us") && !note.contains("reset"),
            "{note}"
        );
    }

    #[test]
    fn slow_scheduling_passes_and_contexts_made_are_named() {
        use crate::schema::{SchedFigures, SlowStepFigures};
        use crate::test_support::{one_rt_task, record};
        use reef_sched::Priority;
        let w = one_rt_task(1.0, 0.0);
        let mode = |name: &str, steps: Vec<SlowStepFigures>, made: u64| {
            let mut m =
                crate::figures::summarize(name, &w, 0.0, vec![record(Priority::Rt, 0.0, 1.0)], 0);
            m.sched = Some(SchedFigures {
                slowest_steps: steps,
                contexts_made: made,
                ..SchedFigures::default()
            });
            m
        };
        let step = |us: f64, phases: &[(&str, f64)]| SlowStepFigures {
            us,
            at_ms: 4200.0,
            phases: phases.iter().map(|(p, t)| (p.to_string(), *t)).collect(),
            ..SlowStepFigures::default()
        };
        let quick = mode("reset", vec![step(300.0, &[("poll_rt", 300.0)])], 0);
        assert_eq!(stall_note(std::slice::from_ref(&quick)), None);
        let held = mode(
            "reef",
            vec![step(
                21000.0,
                &[("start_rt", 20500.0), ("launch_rt", 500.0)],
            )],
            3,
        );
        let note = stall_note(&[quick, held]).expect("a held pass");
        assert!(
            note.contains("reef a 21.00 ms pass at 4200 ms, start_rt 20.50 ms, 3 contexts made")
                && !note.contains("reset"),
            "{note}"
        );
    }

    #[test]
    fn rt_first_labels_are_the_default_reset_and_reef_setups() {
        for (label, want) in [
            ("reset", true),
            ("reef", true),
            ("reset:depth4", true),
            ("reset:drain", false),
            ("reef:drain:depth2", false),
            ("reef:beside1", false),
            ("wait", false),
            ("stream", false),
            ("rt-alone", false),
            ("torch-stream-graph", false),
        ] {
            assert_eq!(launches_rt_first(label), want, "{label}");
        }
    }
}
