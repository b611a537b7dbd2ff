//! The DISB runner over two emulated CPU devices (one single-threaded CPU
//! device per scheduler, behind the multi-device router): every answer names
//! its device, and the per-device figures, their comparison with the same
//! device of "rt-alone" and the per-device Markdown table agree with the
//! per-request records, recomputed here independently. The same workload on
//! one device gets no per-device figures.

use reef_bench::report::markdown;
use reef_bench::{
    percentile_sorted, run_workload, DeviceResult, ModeResult, RequestRecord, RunOptions, Workload,
};
use reef_exec::cpu::CpuDevice;
use reef_exec::Device;
use reef_sched::multi::MultiScheduler;
use reef_sched::{GraphSource, Mode, Priority, SchedConfig, Scheduler, Service};
use std::path::Path;
use std::sync::Arc;

/// The tests share two cores; one at a time keeps them from starving each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// RT resnet_tiny at 40 req/s, BE bert_tiny from two closed-loop clients
/// (one per device when both are busy), 1.5 s with 0.3 s warm-up.
fn workload() -> Workload {
    let text = r#"{
      "name": "two-devices", "duration_s": 1.5, "warmup_s": 0.3,
      "tasks": [
        {"model": "resnet_tiny", "priority": "rt", "load": {"type": "periodic", "frequency": 40}, "seed": 1},
        {"model": "bert_tiny", "priority": "be", "load": {"type": "continuous"}, "seed": 2},
        {"model": "bert_tiny", "priority": "be", "load": {"type": "continuous"}, "seed": 3}
      ]}"#;
    Workload::from_json_str(text, Path::new("<devices_cpu>")).unwrap_or_else(|e| panic!("{e}"))
}

/// `devices` schedulers in `mode`, one single-threaded CPU device each, with
/// the workload's models; several are served by one router.
fn service(mode: Mode, devices: usize) -> Result<Arc<dyn Service>, String> {
    let mut scheds = Vec::new();
    for _ in 0..devices {
        let dev: Arc<dyn Device> = Arc::new(CpuDevice::new(Some(1)).map_err(|e| e.to_string())?);
        let cfg = SchedConfig {
            mode,
            be_queues: 2,
            ..SchedConfig::default()
        };
        let s = Scheduler::new(dev, cfg).map_err(|e| e.to_string())?;
        for m in ["resnet_tiny", "bert_tiny"] {
            let source: GraphSource =
                Arc::new(move |b| reef_zoo::build(m, b, 0).map_err(|e| e.to_string()));
            s.load_model(m, source, Priority::Be)
                .map_err(|e| e.to_string())?;
        }
        scheds.push(s);
    }
    if devices == 1 {
        return Ok(scheds.remove(0));
    }
    Ok(MultiScheduler::new(scheds).map_err(|e| e.to_string())?)
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: false,
        dynamic_dim: 16,
        ..RunOptions::default()
    }
}

/// Latencies of the measured requests of `priority` that `device` answered, sorted.
fn latencies(m: &ModeResult, device: usize, priority: Priority) -> Vec<f64> {
    let mut v: Vec<f64> = m
        .records
        .iter()
        .filter(|r| r.ok && !r.warmup && r.priority == priority && r.device == Some(device))
        .map(|r| r.latency_ms)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Answers of `device` per second that completed in the measured window.
fn rate(m: &ModeResult, device: usize, keep: impl Fn(&RequestRecord) -> bool) -> f64 {
    let (lo, hi) = (m.warmup_s * 1000.0, m.duration_s * 1000.0);
    m.records
        .iter()
        .filter(|r| r.ok && r.device == Some(device) && keep(r))
        .filter(|r| (lo..=hi).contains(&(r.arrival_ms + r.latency_ms)))
        .count() as f64
        / m.measured_s
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

/// One device's figures against its records.
fn check_device(m: &ModeResult, d: &DeviceResult) {
    let tag = format!("{} device {}", m.mode, d.device);
    let rt = latencies(m, d.device, Priority::Rt);
    let n = rt.len();
    assert_eq!(d.rt.count as usize, n, "{tag}: RT count");
    assert!(n > 0, "{tag}: served no RT request");
    let mean = rt.iter().sum::<f64>() / n as f64;
    assert!(
        close(d.rt.mean_ms, mean),
        "{tag}: mean {} vs {mean}",
        d.rt.mean_ms
    );
    assert_eq!(d.rt.p50_ms, rt[n.div_ceil(2) - 1], "{tag}: p50");
    assert_eq!(d.rt.p95_ms, percentile_sorted(&rt, 0.95), "{tag}: p95");
    assert_eq!(d.rt.p99_ms, percentile_sorted(&rt, 0.99), "{tag}: p99");
    assert_eq!(d.rt.max_ms, rt[n - 1], "{tag}: max");
    assert_eq!(
        d.be.count as usize,
        latencies(m, d.device, Priority::Be).len(),
        "{tag}: BE count"
    );
    assert!(close(
        d.be_throughput_rps,
        rate(m, d.device, |r| r.priority == Priority::Be)
    ));
    assert!(close(d.total_throughput_rps, rate(m, d.device, |_| true)));
    let ok = m
        .records
        .iter()
        .filter(|r| r.ok && r.device == Some(d.device))
        .count();
    assert_eq!(d.completed_ok as usize, ok, "{tag}: completed");
    assert!(
        d.name.as_deref().is_some_and(|n| !n.is_empty()),
        "{tag}: name"
    );
    assert!(d.sched.is_some(), "{tag}: scheduler figures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_figures_match_the_records_on_two_cpu_devices() {
    let _serial = SERIAL.lock().await;
    let w = workload();
    let res = run_workload(&w, &[Mode::Reset], |m| service(m, 2), &quiet())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let table = markdown(&res);
    println!("{table}");
    let labels: Vec<&str> = res.modes.iter().map(|m| m.mode.as_str()).collect();
    assert_eq!(labels, ["rt-alone", "reset"]);
    for m in &res.modes {
        assert!(m.errors.is_empty(), "{}: {:?}", m.mode, m.errors);
        // Every answer names a device of the two.
        for r in &m.records {
            assert!(
                matches!(r.device, Some(0 | 1)),
                "{}: record names device {:?}",
                m.mode,
                r.device
            );
        }
        let idx: Vec<usize> = m.devices.iter().map(|d| d.device).collect();
        assert_eq!(idx, [0, 1], "{}: devices", m.mode);
        for d in &m.devices {
            check_device(m, d);
        }
        // The devices add up to the mode.
        let sum = |f: fn(&DeviceResult) -> f64| m.devices.iter().map(f).sum::<f64>();
        assert_eq!(
            m.devices.iter().map(|d| d.rt.count).sum::<u64>(),
            m.rt.count,
            "{}: RT counts",
            m.mode
        );
        assert!(close(
            sum(|d| d.total_throughput_rps),
            m.total_throughput_rps
        ));
        assert!(close(sum(|d| d.be_throughput_rps), m.be_throughput_rps));
        assert!(close(sum(|d| d.rt_throughput_rps), m.rt_throughput_rps));
        // The mode's mean is the devices' means weighted by their counts.
        let weighted = m
            .devices
            .iter()
            .map(|d| d.rt.mean_ms * d.rt.count as f64)
            .sum::<f64>()
            / m.rt.count as f64;
        assert!(close(weighted, m.rt.mean_ms), "{}: mean", m.mode);
    }
    let reset = &res.modes[1];
    assert!(
        reset.devices.iter().all(|d| d.be_throughput_rps > 0.0),
        "a device did no BE work: {:?}",
        reset
            .devices
            .iter()
            .map(|d| d.be_throughput_rps)
            .collect::<Vec<_>>()
    );
    // Each device against the same device of rt-alone.
    assert_eq!(res.device_comparison.len(), 4);
    let alone = &res.modes[0];
    for c in &res.device_comparison {
        let m = res
            .modes
            .iter()
            .find(|m| m.mode == c.figures.mode)
            .unwrap_or_else(|| panic!("no mode {}", c.figures.mode));
        let (mine, base) = (&m.devices[c.device].rt, &alone.devices[c.device].rt);
        assert_eq!(c.figures.rt_mean_ms, mine.mean_ms);
        assert_eq!(c.figures.baseline_rt_mean_ms, Some(base.mean_ms));
        assert_eq!(c.figures.baseline_rt_p99_ms, Some(base.p99_ms));
        let want = 100.0 * (mine.p99_ms / base.p99_ms - 1.0);
        assert!(close(
            c.figures.rt_p99_increase_pct.unwrap_or(f64::NAN),
            want
        ));
    }
    // The table: one row per mode and device, with the device's RT count.
    for m in &res.modes {
        for d in &m.devices {
            let row = format!("| {} | {} | {} | ", m.mode, d.device, d.rt.count);
            assert!(table.contains(&row), "no row {row:?} in\n{table}");
        }
    }
    assert!(table.contains("#### Per device"), "{table}");
    assert!(table.contains("- reset: total "), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cpu_device_gets_no_per_device_figures() {
    let _serial = SERIAL.lock().await;
    let mut w = workload();
    w.duration_s = 0.8;
    w.warmup_s = Some(0.2);
    let res = run_workload(&w, &[Mode::Reset], |m| service(m, 1), &quiet())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(res.device_comparison.is_empty());
    for m in &res.modes {
        assert!(m.rt.count > 0, "{}: no RT", m.mode);
        assert!(m.devices.is_empty(), "{}", m.mode);
        assert!(m.records.iter().all(|r| r.device.is_none()), "{}", m.mode);
    }
    let json = serde_json::to_string(&res).unwrap_or_else(|e| panic!("{e}"));
    assert!(!json.contains("device_comparison") && !json.contains("\"devices\""));
    assert!(!markdown(&res).contains("Per device"));
}
