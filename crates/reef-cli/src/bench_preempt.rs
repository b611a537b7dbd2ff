//! `reef bench preempt`: the preemption microbenchmark. For each BE model
//! (closed loop, saturating) and each preemptive mode, RT requests of one RT
//! model arrive at random gaps; the scheduler's preemption-latency histogram
//! (RT noticed -> every BE lane idle), the RT latency against RT alone, the
//! RT tasks' first kernel on the device against RT alone (on a GPU: the
//! device's time from reaching the RT task to its first kernel's end, so the
//! excess is what RT waited for BE blocks to leave), the BE throughput and
//! the padding counters are reported. With `--time-drains` each drain is
//! also timed on the device, which splits the preemption latency into the
//! device's part and the host's.

use crate::cases::random_inputs;
use anyhow::{Context as _, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_exec::Device;
use reef_model::Tensor;
use reef_sched::{GraphSource, InferRequest, ModeSpec, Priority, SchedConfig, Scheduler, Service};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of the microbenchmark.
pub struct Options {
    /// BE models, one run each.
    pub be_models: Vec<String>,
    /// The RT model.
    pub rt_model: String,
    /// Modes.
    pub modes: Vec<ModeSpec>,
    /// RT requests per (BE model, mode).
    pub requests: usize,
    /// Largest random gap between RT requests (ms); the smallest is a quarter.
    pub max_gap_ms: f64,
    /// [`SchedConfig::time_drains`]: the drains timed on the device too.
    pub time_drains: bool,
    /// Where to write the JSON (optional).
    pub json: Option<std::path::PathBuf>,
}

#[derive(serde::Serialize)]
struct Row {
    be_model: String,
    mode: String,
    preemptions: u64,
    preempt_p50_us: f64,
    preempt_p99_us: f64,
    preempt_max_us: f64,
    /// The scheduler's raise (RT noticed -> flags handed to the driver),
    /// p50 / p99 (us).
    raise_p50_us: f64,
    raise_p99_us: f64,
    /// Per preemption the longest time between two of the scheduler's
    /// looks at the draining lanes, p50 / p99 (us).
    poll_gap_p50_us: f64,
    poll_gap_p99_us: f64,
    /// The drains as the device timed them (with `--time-drains`), p50 /
    /// p99 / max (us); NaN without.
    drain_device_p50_us: f64,
    drain_device_p99_us: f64,
    drain_device_max_us: f64,
    rt_alone_mean_ms: f64,
    rt_mean_ms: f64,
    rt_p99_ms: f64,
    rt_alone_p99_ms: f64,
    /// RT first kernel on the device, p50 / p99 (us), under BE load and
    /// alone; NaN where the device has no timer.
    first_kernel_p50_us: f64,
    first_kernel_p99_us: f64,
    first_kernel_alone_p50_us: f64,
    first_kernel_alone_p99_us: f64,
    /// RT arrival to its start on the device (queue, raise, inputs), p50 /
    /// p99 (us), under BE load and alone.
    rt_queued_p50_us: f64,
    rt_queued_p99_us: f64,
    rt_queued_alone_p50_us: f64,
    rt_queued_alone_p99_us: f64,
    /// The scheduling thread's write of a BE task's inputs and read of its
    /// outputs, mean per BE task (us): time in which it notices no RT
    /// arrival.
    be_input_mean_us: f64,
    be_output_mean_us: f64,
    be_per_s: f64,
    padded_kernels: u64,
    pad_launches: u64,
    kernels_rerun: u64,
    /// The slowest preemptions with the BE kernels they waited on.
    slowest_drains: Vec<reef_sched::SlowDrain>,
    /// The device's own counts during the row ([`Device::counters`]).
    device_counters: std::collections::BTreeMap<String, u64>,
    /// The device's own histograms during the row ([`Device::histograms`]:
    /// the drain probe, when compiled in).
    device_histograms: Vec<HistogramRow>,
}

/// One of the device's histograms over a row.
#[derive(Debug, serde::Serialize)]
struct HistogramRow {
    name: &'static str,
    count: u64,
    /// Upper bucket edges, us.
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    bucket_ns: u64,
    /// Counts by bucket.
    counts: Vec<u64>,
}

impl HistogramRow {
    fn new(h: reef_exec::DeviceHistogram) -> Self {
        let us = |q| h.quantile_ns(q).map_or(f64::NAN, |ns| ns as f64 / 1e3);
        HistogramRow {
            name: h.name,
            count: h.total(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            max_us: us(1.0),
            bucket_ns: h.bucket_ns,
            counts: h.counts,
        }
    }
}

/// A zoo model's graph source (weights of seed 7).
pub(crate) fn source(name: &str) -> GraphSource {
    let n = name.to_string();
    Arc::new(move |b| reef_zoo::build(&n, b, 7).map_err(|e| e.to_string()))
}

/// A request of `model` with `inputs`, arriving now.
pub(crate) fn request(model: &str, inputs: &[Tensor], p: Priority) -> InferRequest {
    InferRequest {
        model: model.into(),
        inputs: inputs.iter().cloned().map(Into::into).collect(),
        priority: Some(p),
        arrival: Instant::now(),
    }
}

fn mean_p99(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let i = ((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1;
    (mean, v[i])
}

/// p50 and p99 (nearest rank) of `v`; NaN for an empty one.
fn p50_p99(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99))
}

/// `v` from a summary of `count` samples; NaN for none.
fn summary_or_nan(count: u64, v: f64) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        v
    }
}

/// What `n` RT requests at random gaps measured.
struct RtRun {
    /// Latencies, ms.
    lat: Vec<f64>,
    /// First-kernel times of the tasks the scheduler timed, us.
    first: Vec<f64>,
    /// Arrival to start on the device (the scheduler's queue, the
    /// preemption's raise, the inputs' write), us.
    queued: Vec<f64>,
}

fn rt_run(
    s: &Scheduler,
    rt: &str,
    inputs: &[Tensor],
    n: usize,
    max_gap: f64,
    rng: &mut ChaCha8Rng,
) -> Result<RtRun> {
    let mut lat = Vec::with_capacity(n);
    let mut first = Vec::with_capacity(n);
    let mut queued = Vec::with_capacity(n);
    for _ in 0..n {
        let gap = rng.random_range(max_gap / 4.0..=max_gap);
        std::thread::sleep(Duration::from_secs_f64(gap / 1e3));
        let r = s
            .infer_blocking(request(rt, inputs, Priority::Rt))
            .with_context(|| format!("RT request to {rt}"))?;
        lat.push(r.stats.latency.as_secs_f64() * 1e3);
        first.extend(r.stats.first_kernel.map(|d| d.as_secs_f64() * 1e6));
        queued.push(r.stats.queued.as_secs_f64() * 1e6);
    }
    Ok(RtRun { lat, first, queued })
}

fn one(dev: &Arc<dyn Device>, opts: &Options, be: &str, mode: ModeSpec) -> Result<Row> {
    let s = Scheduler::new(
        dev.clone(),
        mode.apply(SchedConfig {
            be_queues: 1,
            time_drains: opts.time_drains,
            ..SchedConfig::default()
        }),
    )?;
    let counted = dev.counters();
    let histograms = dev.histograms()?;
    s.load_model(&opts.rt_model, source(&opts.rt_model), Priority::Rt)?;
    s.load_model(be, source(be), Priority::Be)?;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let rt_in = random_inputs(&reef_zoo::build(&opts.rt_model, 1, 7)?, &mut rng);
    let be_in = random_inputs(&reef_zoo::build(be, 1, 7)?, &mut rng);
    // Warm-up, then RT alone.
    for _ in 0..5 {
        s.infer_blocking(request(&opts.rt_model, &rt_in, Priority::Rt))?;
        s.infer_blocking(request(be, &be_in, Priority::Be))?;
    }
    let alone = rt_run(
        &s,
        &opts.rt_model,
        &rt_in,
        opts.requests / 2,
        opts.max_gap_ms,
        &mut rng,
    )?;
    let before = s.stats();
    let stop = AtomicBool::new(false);
    let be_done = AtomicU64::new(0);
    // The scheduling thread's host work per BE task: its inputs' write and
    // its outputs' read, ns summed.
    let be_io_ns = [AtomicU64::new(0), AtomicU64::new(0)];
    let t0 = Instant::now();
    let loaded = std::thread::scope(|scope| -> Result<RtRun> {
        let client = scope.spawn(|| -> Result<()> {
            while !stop.load(Ordering::Relaxed) {
                let r = s.infer_blocking(request(be, &be_in, Priority::Be))?;
                be_done.fetch_add(1, Ordering::Relaxed);
                be_io_ns[0].fetch_add(r.stats.input.as_nanos() as u64, Ordering::Relaxed);
                be_io_ns[1].fetch_add(r.stats.output.as_nanos() as u64, Ordering::Relaxed);
            }
            Ok(())
        });
        // Let the BE client saturate the device first.
        std::thread::sleep(Duration::from_millis(50));
        let r = rt_run(
            &s,
            &opts.rt_model,
            &rt_in,
            opts.requests,
            opts.max_gap_ms,
            &mut rng,
        );
        stop.store(true, Ordering::Relaxed);
        client
            .join()
            .map_err(|_| anyhow::anyhow!("BE client panicked"))??;
        r
    })?;
    let wall = t0.elapsed().as_secs_f64();
    let st = s.stats();
    s.shutdown();
    let ((am, ap), (fa50, fa99)) = (mean_p99(alone.lat), p50_p99(alone.first));
    let ((lm, lp), (fl50, fl99)) = (mean_p99(loaded.lat), p50_p99(loaded.first));
    let (qa50, qa99) = p50_p99(alone.queued);
    let (ql50, ql99) = p50_p99(loaded.queued);
    let be_n = be_done.load(Ordering::Relaxed).max(1) as f64;
    let be_io_us = |i: usize| be_io_ns[i].load(Ordering::Relaxed) as f64 / be_n / 1e3;
    Ok(Row {
        be_model: be.to_string(),
        mode: mode.to_string(),
        preemptions: st.preemptions - before.preemptions,
        preempt_p50_us: st.preempt_latency_us.p50,
        preempt_p99_us: st.preempt_latency_us.p99,
        preempt_max_us: st.preempt_latency_us.max,
        raise_p50_us: st.preempt_raise_us.p50,
        raise_p99_us: st.preempt_raise_us.p99,
        poll_gap_p50_us: st.drain_poll_gap_us.p50,
        poll_gap_p99_us: st.drain_poll_gap_us.p99,
        drain_device_p50_us: summary_or_nan(st.drain_device_us.count, st.drain_device_us.p50),
        drain_device_p99_us: summary_or_nan(st.drain_device_us.count, st.drain_device_us.p99),
        drain_device_max_us: summary_or_nan(st.drain_device_us.count, st.drain_device_us.max),
        rt_alone_mean_ms: am,
        rt_alone_p99_ms: ap,
        rt_mean_ms: lm,
        rt_p99_ms: lp,
        first_kernel_p50_us: fl50,
        first_kernel_p99_us: fl99,
        first_kernel_alone_p50_us: fa50,
        first_kernel_alone_p99_us: fa99,
        rt_queued_p50_us: ql50,
        rt_queued_p99_us: ql99,
        rt_queued_alone_p50_us: qa50,
        rt_queued_alone_p99_us: qa99,
        be_input_mean_us: be_io_us(0),
        be_output_mean_us: be_io_us(1),
        be_per_s: be_done.load(Ordering::Relaxed) as f64 / wall,
        padded_kernels: st.padded_kernels,
        pad_launches: st.pad_launches,
        kernels_rerun: st.kernels_rerun,
        slowest_drains: st.slowest_drains,
        device_counters: dev
            .counters()
            .into_iter()
            .map(|(name, v)| {
                let before = counted.iter().find(|c| c.0 == name).map_or(0, |c| c.1);
                (name.to_string(), v.saturating_sub(before))
            })
            .collect(),
        device_histograms: dev
            .histograms()?
            .into_iter()
            .map(|h| {
                let since = match histograms.iter().find(|b| b.name == h.name) {
                    Some(b) => h.since(b),
                    None => h,
                };
                HistogramRow::new(since)
            })
            .collect(),
    })
}

/// Runs the microbenchmark and prints the table.
pub fn run(dev: Arc<dyn Device>, opts: &Options) -> Result<()> {
    println!(
        "device: {}; RT model {} ({} requests per run, gaps {:.2}-{:.2} ms)",
        dev.name(),
        opts.rt_model,
        opts.requests,
        opts.max_gap_ms / 4.0,
        opts.max_gap_ms
    );
    let mut rows = Vec::new();
    for be in &opts.be_models {
        for &mode in &opts.modes {
            let r = one(&dev, opts, be, mode).with_context(|| format!("BE {be}, mode {mode}"))?;
            eprintln!(
                "{be} {mode}: preemption p50 {:.0} us p99 {:.0} us; RT mean {:.3} ms vs {:.3} alone",
                r.preempt_p50_us, r.preempt_p99_us, r.rt_mean_ms, r.rt_alone_mean_ms
            );
            rows.push(r);
        }
    }
    println!(
        "\n| BE model | mode | preemptions | preempt p50 us | p99 us | max us | raise p50 / p99 us | poll gap p50 / p99 us | device drain p50 / p99 / max us | RT mean ms (alone) | RT p99 ms (alone) | RT first kernel p50 / p99 us (alone) | BE req/s | padded RT kernels | pad launches |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let drain = if r.drain_device_p50_us.is_nan() {
            "-".to_string()
        } else {
            format!(
                "{:.1} / {:.1} / {:.1}",
                r.drain_device_p50_us, r.drain_device_p99_us, r.drain_device_max_us
            )
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {:.3} ({:.3}) {:+.1}% | {:.3} ({:.3}) | {:.1} / {:.1} ({:.1} / {:.1}) | {:.1} | {} | {} |",
            r.be_model,
            r.mode,
            r.preemptions,
            r.preempt_p50_us,
            r.preempt_p99_us,
            r.preempt_max_us,
            r.raise_p50_us,
            r.raise_p99_us,
            r.poll_gap_p50_us,
            r.poll_gap_p99_us,
            drain,
            r.rt_mean_ms,
            r.rt_alone_mean_ms,
            (r.rt_mean_ms / r.rt_alone_mean_ms - 1.0) * 100.0,
            r.rt_p99_ms,
            r.rt_alone_p99_ms,
            r.first_kernel_p50_us,
            r.first_kernel_p99_us,
            r.first_kernel_alone_p50_us,
            r.first_kernel_alone_p99_us,
            r.be_per_s,
            r.padded_kernels,
            r.pad_launches
        );
    }
    println!(
        "\nSlowest preemptions per row: us (its raise and longest poll gap, us), then each flagged lane's oldest BE kernel in flight"
    );
    for r in &rows {
        let worst: Vec<String> = r
            .slowest_drains
            .iter()
            .take(4)
            .map(|d| {
                let lanes: Vec<String> = d
                    .lanes
                    .iter()
                    .map(|w| {
                        format!(
                            "{} #{} {} ({}, {} in flight)",
                            w.model, w.kernel, w.name, w.op, w.in_flight
                        )
                    })
                    .collect();
                format!(
                    "{:.0} ({:.1}, {:.1}): {}",
                    d.us,
                    d.raise_us,
                    d.max_poll_gap_us,
                    lanes.join(" + ")
                )
            })
            .collect();
        println!("- {} {}: {}", r.be_model, r.mode, worst.join("; "));
    }
    if rows.iter().any(|r| !r.device_counters.is_empty()) {
        println!("\nDevice counters per row");
        for r in &rows {
            let c: Vec<String> = r
                .device_counters
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!("- {} {}: {}", r.be_model, r.mode, c.join(", "));
        }
    }
    if rows.iter().any(|r| !r.device_histograms.is_empty()) {
        println!("\nDevice histograms per row: count, p50 / p99 / max us (bucket upper edges)");
        for r in &rows {
            for h in &r.device_histograms {
                println!(
                    "- {} {} {}: {}, {:.2} / {:.2} / {:.2}",
                    r.be_model, r.mode, h.name, h.count, h.p50_us, h.p99_us, h.max_us
                );
            }
        }
    }
    if let Some(p) = &opts.json {
        std::fs::write(p, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
