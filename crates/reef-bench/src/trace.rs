//! Arrival traces: reading trace files and the synthetic bursty trace that
//! `workloads/trace.json` ships (modelled on the autonomous-driving trace REEF used).

use crate::error::{BenchError, Result};
use crate::workload::{Load, TaskSpec, Workload};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use reef_sched::Priority;
use std::path::Path;

/// Reads arrival offsets (ms) from a file: a JSON array of numbers, a JSON
/// object with an `arrivals_ms` array, or plain text with one number per line
/// (blank lines and lines starting with `#` are skipped).
pub fn read_trace_file(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        action: "reading trace",
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum TraceJson {
            List(Vec<f64>),
            Object { arrivals_ms: Vec<f64> },
        }
        let parsed: TraceJson =
            serde_json::from_str(&text).map_err(|source| BenchError::Parse {
                what: "trace",
                path: path.to_path_buf(),
                source,
            })?;
        return Ok(match parsed {
            TraceJson::List(v) | TraceJson::Object { arrivals_ms: v } => v,
        });
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: f64 = line.parse().map_err(|e| BenchError::Invalid {
            workload: path.display().to_string(),
            message: format!("trace line {}: '{line}' is not a number ({e})", n + 1),
        })?;
        out.push(v);
    }
    Ok(out)
}

/// One model of the synthetic trace and the chance a camera frame triggers it.
#[derive(Debug, Clone)]
pub struct TraceModel {
    /// Model name.
    pub model: String,
    /// Probability that a frame sends a request to this model.
    pub per_frame: f64,
}

/// Synthetic bursty RT trace: camera frames arrive every `frame_ms` (with a
/// frame-level jitter of `frame_jitter_ms` standard deviation); each frame sends
/// a burst of requests, one per model with that model's probability, each
/// offset from the frame by a small positive jitter (`request_jitter_ms` mean,
/// exponential) that models pre-processing. Every `hiccup_every` frames on
/// average a frame is delayed and lands together with the next one (sensor
/// hiccup), which makes double bursts. Deterministic for a seed.
pub fn synthetic_bursty_trace(
    models: &[TraceModel],
    duration_s: f64,
    frame_ms: f64,
    frame_jitter_ms: f64,
    request_jitter_ms: f64,
    hiccup_every: f64,
    seed: u64,
) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![Vec::new(); models.len()];
    if !(frame_ms.is_finite() && frame_ms > 0.0 && duration_s.is_finite()) {
        return out;
    }
    let frame_noise = Normal::new(0.0, frame_jitter_ms.max(1e-9)).ok();
    let end_ms = duration_s * 1000.0;
    for k in 0u64.. {
        let base = k as f64 * frame_ms;
        if base >= end_ms {
            break;
        }
        let mut t = base + frame_noise.map_or(0.0, |n| n.sample(&mut rng));
        if hiccup_every > 0.0 && rng.random::<f64>() < 1.0 / hiccup_every {
            // A late frame: it arrives right before the next one.
            t += frame_ms * 0.9;
        }
        if t >= end_ms {
            continue;
        }
        let t = t.max(0.0);
        for (m, spec) in models.iter().enumerate() {
            if rng.random::<f64>() < spec.per_frame {
                let delay = -request_jitter_ms * (1.0 - rng.random::<f64>()).ln();
                let at = t + delay;
                if at < end_ms {
                    out[m].push((at * 1000.0).round() / 1000.0);
                }
            }
        }
    }
    for v in &mut out {
        v.sort_by(f64::total_cmp);
    }
    out
}

/// The DISB "trace" workload reef ships: about 44 RT req/s over vgg19,
/// resnet152, densenet201, inception_v3 and bert_base from a synthetic bursty
/// camera-frame trace (10 Hz frames), plus the five models as BE clients.
pub fn disb_trace_workload(duration_s: f64, seed: u64) -> Workload {
    let five = [
        "vgg19",
        "resnet152",
        "densenet201",
        "inception_v3",
        "bert_base",
    ];
    let per_frame = [1.0, 1.0, 0.8, 0.8, 0.8];
    let models: Vec<TraceModel> = five
        .iter()
        .zip(per_frame)
        .map(|(m, p)| TraceModel {
            model: m.to_string(),
            per_frame: p,
        })
        .collect();
    let arrivals = synthetic_bursty_trace(&models, duration_s, 100.0, 3.0, 1.5, 20.0, seed);
    let mut tasks: Vec<TaskSpec> = five
        .iter()
        .zip(arrivals)
        .map(|(m, a)| TaskSpec {
            name: Some(format!("rt-{m}")),
            model: m.to_string(),
            priority: Priority::Rt,
            load: Load::Trace {
                arrivals_ms: Some(a),
                path: None,
            },
            batch_size: 1,
            seed: None,
        })
        .collect();
    tasks.extend(five.iter().map(|m| TaskSpec {
        name: Some(format!("be-{m}")),
        model: m.to_string(),
        priority: Priority::Be,
        load: Load::Continuous,
        batch_size: 1,
        seed: None,
    }));
    Workload {
        name: "trace".into(),
        notes: Some(format!(
            "Synthetic trace, not the recorded one: modelled on the autonomous-driving trace REEF used \
             (DISB REAL, about 44 RT req/s over five models). Camera frames every 100 ms \
             (3 ms jitter, 1 in 20 frames late so that two bursts land together); each frame sends \
             vgg19 and resnet152 always, densenet201, inception_v3 and bert_base with probability 0.8, \
             each request 1.5 ms (mean, exponential) after its frame. Generated by \
             reef_bench::trace::disb_trace_workload(duration_s = {duration_s}, seed = {seed})."
        )),
        duration_s,
        warmup_s: Some(5.0),
        tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_trace_is_deterministic_and_in_range() {
        let a = disb_trace_workload(10.0, 42);
        let b = disb_trace_workload(10.0, 42);
        assert_eq!(a, b);
        let c = disb_trace_workload(10.0, 43);
        assert_ne!(a, c);
        a.validate().unwrap_or_else(|e| panic!("{e}"));
        for t in &a.tasks {
            if let Load::Trace {
                arrivals_ms: Some(v),
                ..
            } = &t.load
            {
                assert!(v.windows(2).all(|p| p[0] <= p[1]));
                assert!(v.iter().all(|x| (0.0..10_000.0).contains(x)));
            }
        }
    }

    #[test]
    fn reads_trace_files_in_three_forms() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            ("a.json", "[1, 2.5, 10]"),
            ("b.json", r#"{"arrivals_ms": [1, 2.5, 10]}"#),
            ("c.txt", "# x\n1\n\n2.5\n10\n"),
        ];
        for (name, text) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                read_trace_file(&p).unwrap_or_else(|e| panic!("{e}")),
                vec![1.0, 2.5, 10.0]
            );
        }
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, "1\nabc\n").unwrap_or_else(|e| panic!("{e}"));
        let m = read_trace_file(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(m.contains("line 2"), "{m}");
    }

    /// Writes `workloads/trace.json`: `cargo test -p reef-bench -- --ignored regenerate`.
    #[test]
    #[ignore]
    fn regenerate_trace_workload() {
        let w = disb_trace_workload(60.0, 2022);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads/trace.json");
        let text = serde_json::to_string_pretty(&w).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(path, text + "\n").unwrap_or_else(|e| panic!("{e}"));
    }
}
