//! `reef bench disb`: runs a DISB workload in each scheduling mode (plus RT
//! alone) on one device, each mode on a fresh scheduler with the workload's
//! models loaded, and writes JSON, a Markdown table and SVG plots.

use anyhow::{Context, Result};
use reef_bench::{plot, report, run_workload, RunOptions, Workload};
use reef_exec::Device;
use reef_sched::{GraphSource, Mode, Priority, SchedConfig, Scheduler, Service};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Options of one DISB run.
pub struct Options {
    /// Workload file.
    pub workload: PathBuf,
    /// Modes to run (RT alone is always run first when the workload has RT tasks).
    pub modes: Vec<Mode>,
    /// Override of the workload's duration, seconds.
    pub duration: Option<f64>,
    /// Override of the warm-up, seconds.
    pub warmup: Option<f64>,
    /// Output directory.
    pub out: PathBuf,
    /// BE kernels in flight per BE lane.
    pub be_depth: usize,
    /// Progress bar.
    pub progress: bool,
}

/// A scheduler in `mode` on `device` with the zoo models `models` loaded.
pub fn scheduler_with(
    device: &Arc<dyn Device>,
    mode: Mode,
    models: &[String],
    be_depth: usize,
) -> Result<Arc<Scheduler>> {
    let cfg = SchedConfig {
        mode,
        be_depth,
        be_queues: models.len().clamp(1, 32),
        ..SchedConfig::default()
    };
    let s = Scheduler::new(device.clone(), cfg)?;
    for m in models {
        let name = m.clone();
        let source: GraphSource =
            Arc::new(move |batch| reef_zoo::build(&name, batch, 0).map_err(|e| e.to_string()));
        s.load_model(m, source, Priority::Be)
            .with_context(|| format!("loading {m}"))?;
    }
    Ok(s)
}

/// Runs the workload; returns the Markdown table.
pub fn run(device: Arc<dyn Device>, opts: &Options) -> Result<String> {
    let mut w = Workload::load(&opts.workload)
        .with_context(|| format!("reading {}", opts.workload.display()))?;
    if let Some(d) = opts.duration {
        w.duration_s = d;
    }
    if let Some(wu) = opts.warmup {
        w.warmup_s = Some(wu);
    }
    w.validate()?;
    let models = w.models();
    let run_opts = RunOptions {
        warmup: opts.warmup.map(Duration::from_secs_f64),
        progress: opts.progress,
        ..RunOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dev = device.clone();
    let be_depth = opts.be_depth;
    let result = rt.block_on(async {
        run_workload(
            &w,
            &opts.modes,
            |mode| -> Result<Arc<dyn Service>, anyhow::Error> {
                let s =
                    tokio::task::block_in_place(|| scheduler_with(&dev, mode, &models, be_depth))?;
                Ok(s as Arc<dyn Service>)
            },
            &run_opts,
        )
        .await
    })?;
    let mut result = result;
    result.device = Some(device.name());
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let stem = w
        .name
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    let path = |ext: &str| -> PathBuf { Path::new(&opts.out).join(format!("disb-{stem}.{ext}")) };
    report::write_json(&result, &path("json"), false)?;
    report::write_markdown(&result, &path("md"))?;
    plot::rt_latency_cdf(
        &result,
        &Path::new(&opts.out).join(format!("disb-{stem}-cdf.svg")),
    )?;
    plot::throughput_bars(
        &result,
        &Path::new(&opts.out).join(format!("disb-{stem}-throughput.svg")),
    )?;
    Ok(report::markdown(&result))
}
