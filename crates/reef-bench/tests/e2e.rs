//! End to end: the runner against the simulated service, then reports and plots.

use reef_bench::report::{markdown, read_json, write_json, write_markdown};
use reef_bench::sim::SimService;
use reef_bench::{percentile_sorted, run_mode, run_workload, BenchError, RunOptions, Workload};
use reef_model::DType;
use reef_sched::{Mode, Priority, Service};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const RT_MS: u64 = 3;
const BE_MS: u64 = 20;

fn workload() -> Workload {
    let text = r#"{
      "name": "sim", "duration_s": 1.5, "warmup_s": 0.3,
      "tasks": [
        {"model": "resnet_tiny", "priority": "rt", "load": {"type": "periodic", "frequency": 40}},
        {"model": "bert_tiny", "priority": "rt", "load": {"type": "poisson", "rate": 30}, "seed": 5},
        {"model": "resnet_tiny", "priority": "rt", "load": {"type": "trace", "arrivals_ms": [100, 101, 102, 900, 1600]}},
        {"model": "bert_tiny", "priority": "be", "load": {"type": "continuous"}, "batch_size": 2},
        {"model": "resnet_tiny", "priority": "be", "load": {"type": "continuous"}}
      ]}"#;
    Workload::from_json_str(text, Path::new("<e2e>")).unwrap_or_else(|e| panic!("{e}"))
}

fn service(refuse_every: Option<u64>) -> Arc<dyn Service> {
    let models = vec![
        SimService::model("resnet_tiny", &[("input", DType::F32, &[-1, 3, 8, 8])]),
        SimService::model(
            "bert_tiny",
            &[
                ("input_ids", DType::I64, &[-1, -1]),
                ("attention_mask", DType::I64, &[-1, -1]),
            ],
        ),
    ];
    let sim = SimService::new(
        models,
        Duration::from_millis(RT_MS),
        Duration::from_millis(BE_MS),
        tokio::runtime::Handle::current(),
    );
    match refuse_every {
        Some(n) => Arc::new(sim.refusing_every(n)),
        None => Arc::new(sim),
    }
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: false,
        dynamic_dim: 16,
        ..RunOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_figures_reports_and_plots() {
    let w = workload();
    let res = run_workload(
        &w,
        &[Mode::Seq, Mode::Reef],
        |_m: Mode| Ok::<_, String>(service(None)),
        &quiet(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let labels: Vec<&str> = res.modes.iter().map(|m| m.mode.as_str()).collect();
    assert_eq!(labels, ["rt-alone", "seq", "reef"]);

    for m in &res.modes {
        assert!(m.errors.is_empty(), "{}: {:?}", m.mode, m.errors);
        assert_eq!(m.submitted, m.records.len() as u64);
        // Open-loop tasks submit exactly their schedule: 60 periodic + 4 trace (1600 ms is past the end).
        let count = |t: usize| m.records.iter().filter(|r| r.task == t).count();
        assert_eq!(count(0), 60, "{}", m.mode);
        assert_eq!(count(2), 4, "{}", m.mode);
        // The figures are those of the records, computed here independently.
        let mut rt: Vec<f64> = m
            .records
            .iter()
            .filter(|r| r.ok && !r.warmup && r.priority == Priority::Rt)
            .map(|r| r.latency_ms)
            .collect();
        rt.sort_by(f64::total_cmp);
        assert_eq!(m.rt.count as usize, rt.len());
        let n = rt.len();
        assert_eq!(m.rt.p50_ms, rt[n.div_ceil(2) - 1]);
        assert_eq!(m.rt.p99_ms, rt[((n * 99).div_ceil(100)).max(1) - 1]);
        assert_eq!(m.rt.p95_ms, percentile_sorted(&rt, 0.95));
        assert_eq!(m.rt.max_ms, rt[n - 1]);
        assert!((m.rt.mean_ms - rt.iter().sum::<f64>() / n as f64).abs() < 1e-9);
        // Latency is from the scheduled arrival: never below the service time.
        assert!(rt[0] >= RT_MS as f64 * 0.99, "min RT latency {}", rt[0]);
        assert!(
            m.rt.p50_ms < RT_MS as f64 + 20.0,
            "{} RT p50 {}",
            m.mode,
            m.rt.p50_ms
        );
        // Warm-up flags follow the arrival time.
        assert!(m.records.iter().all(|r| r.warmup == (r.arrival_ms < 300.0)));
        let lag = &m.dispatch_lag_us;
        assert!(lag.count > 0 && lag.p50_us < 5_000.0, "{lag:?}");
        let sched = m.sched.as_ref().unwrap_or_else(|| panic!("sched stats"));
        assert_eq!(sched.preempt_latency_us.p50, 10.0);
    }
    let alone = &res.modes[0];
    assert_eq!(alone.be.count, 0);
    assert_eq!(alone.be_throughput_rps, 0.0);
    for m in &res.modes[1..] {
        // Two closed-loop BE clients of 20 ms each: about 100 req/s in all.
        assert!(
            (60.0..110.0).contains(&m.be_throughput_rps),
            "{} BE {}",
            m.mode,
            m.be_throughput_rps
        );
        let in_window = m
            .records
            .iter()
            .filter(|r| r.ok && r.priority == Priority::Be)
            .filter(|r| (300.0..=1500.0).contains(&(r.arrival_ms + r.latency_ms)))
            .count();
        assert!((m.be_throughput_rps - in_window as f64 / 1.2).abs() < 1e-9);
        let bert = &m.tasks[3];
        assert_eq!(
            (bert.model.as_str(), bert.batch_size, bert.load.as_str()),
            ("bert_tiny", 2, "continuous")
        );
    }
    assert_eq!(res.comparison.len(), 3);
    assert!(res
        .comparison
        .iter()
        .all(|c| c.rt_mean_increase_pct.is_some()));

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // REEF_BENCH_OUT=folder keeps the outputs for a look.
    let root = std::env::var_os("REEF_BENCH_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().into());
    let md = root.join("out/report.md");
    let json = root.join("out/result.json");
    let slim = root.join("out/slim.json");
    let cdf = root.join("out/cdf.svg");
    let bars = root.join("out/throughput.svg");
    write_markdown(&res, &md).unwrap_or_else(|e| panic!("{e}"));
    write_json(&res, &json, true).unwrap_or_else(|e| panic!("{e}"));
    write_json(&res, &slim, false).unwrap_or_else(|e| panic!("{e}"));
    reef_bench::plot::rt_latency_cdf(&res, &cdf).unwrap_or_else(|e| panic!("{e}"));
    reef_bench::plot::throughput_bars(&res, &bars).unwrap_or_else(|e| panic!("{e}"));
    let table = markdown(&res);
    // `reef` launches RT work first: the table says what its preemption
    // latency covers, once, naming the mode.
    let note: Vec<&str> = table
        .lines()
        .filter(|l| l.contains("launched before the BE drain"))
        .collect();
    assert_eq!(note.len(), 1, "{table}");
    assert!(note[0].starts_with("- reef:"), "{}", note[0]);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| ")).count(),
        4,
        "{table}"
    );
    assert!(table.contains("| reef |") && table.contains("| rt-alone |"));
    // One device: no per-device figures anywhere.
    assert!(!table.contains("Per device"), "{table}");
    assert!(res.device_comparison.is_empty());
    for m in &res.modes {
        assert!(m.devices.is_empty(), "{}", m.mode);
        assert!(m.records.iter().all(|r| r.device.is_none()), "{}", m.mode);
    }
    for (p, needle) in [
        (&md, "RT p99"),
        (&cdf, "<svg"),
        (&bars, "<svg"),
        (&json, "\"records\""),
    ] {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.len() > 200 && text.contains(needle), "{}", p.display());
    }
    let svg = std::fs::read_to_string(&cdf).unwrap_or_default();
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "no curve in the CDF"
    );
    let back = read_json(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.modes[2].records.len(), res.modes[2].records.len());
    // JSON floats round-trip to within an ulp or so.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    assert!(close(back.modes[2].rt.p99_ms, res.modes[2].rt.p99_ms));
    assert_eq!(back.modes[2].rt.count, res.modes[2].rt.count);
    let back = read_json(&slim).unwrap_or_else(|e| panic!("{e}"));
    assert!(back.modes.iter().all(|m| m.records.is_empty()));
    for (a, b) in back.comparison.iter().zip(&res.comparison) {
        assert_eq!(a.mode, b.mode);
        assert!(close(
            a.rt_mean_increase_pct.unwrap_or(f64::NAN),
            b.rt_mean_increase_pct.unwrap_or(f64::NAN)
        ));
        assert!(close(a.be_throughput_rps, b.be_throughput_rps));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_and_unknown_models_refused() {
    let mut w = workload();
    w.duration_s = 0.6;
    w.warmup_s = Some(0.1);
    let m = run_mode(&w, "refusing", service(Some(4)), &quiet())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = m.errors.get("overloaded").copied().unwrap_or(0);
    assert!(
        refused > 0 && refused * 4 <= m.submitted + 3,
        "{refused} of {}",
        m.submitted
    );
    assert_eq!(m.records.iter().filter(|r| !r.ok).count() as u64, refused);
    assert_eq!(
        m.tasks
            .iter()
            .map(|t| t.errors.values().sum::<u64>())
            .sum::<u64>(),
        refused
    );

    w.tasks[0].model = "vgg19".into();
    match run_mode(&w, "x", service(None), &quiet()).await {
        Err(BenchError::UnknownModel {
            model, available, ..
        }) => {
            assert_eq!(model, "vgg19");
            assert!(available.contains("resnet_tiny"));
        }
        other => panic!("expected UnknownModel, got {:?}", other.map(|m| m.mode)),
    }
}

/// A clock source that answers with fixed samples and keeps the windows
/// it was asked for.
struct FakeClock(std::sync::Mutex<Vec<(std::time::Instant, std::time::Instant)>>);

impl reef_bench::clock::ClockSource for FakeClock {
    fn sm_mhz_between(&self, from: std::time::Instant, to: std::time::Instant) -> Vec<u32> {
        self.0.lock().unwrap().push((from, to));
        vec![1980, 1410, 1980]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_samples_the_clock_over_its_measured_window() {
    let mut w = workload();
    w.duration_s = 0.6;
    w.warmup_s = Some(0.2);
    let fake = Arc::new(FakeClock(std::sync::Mutex::new(Vec::new())));
    let opts = RunOptions {
        clock: Some(reef_bench::clock::Clock(fake.clone())),
        ..quiet()
    };
    let before = std::time::Instant::now();
    let m = run_mode(&w, "reset", service(None), &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let after = std::time::Instant::now();
    let c = m.sm_clock.expect("sampled");
    assert_eq!((c.samples, c.min_mhz, c.max_mhz), (3, 1410.0, 1980.0));
    let windows = fake.0.lock().unwrap().clone();
    assert_eq!(windows.len(), 1, "one window per mode");
    let (from, to) = windows[0];
    assert!(from >= before + Duration::from_millis(200) && to <= after);
    let measured = to - from;
    assert!(
        measured == Duration::from_millis(400),
        "the window is the duration less the warm-up: {measured:?}"
    );
    let unsampled = run_mode(&w, "reset", service(None), &quiet())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(unsampled.sm_clock.is_none());
}
