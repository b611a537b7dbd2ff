//! `reef tune`: times the GEMM tactics of zoo models on the GPU and fills the
//! tactic cache (`REEF_TACTICS=tune` for one run, whatever the environment
//! says), so that a server started with `REEF_TACTICS=tune` later loads the
//! same models without timing them. Prints what tuning found per model.

use anyhow::{bail, Context as _, Result};
use reef_cuda::{CudaDevice, CudaModel, CudaOptions, TacticMode};
use reef_exec::Device;
use std::sync::Arc;
use std::time::Instant;

/// Tunes `models` at each of `batches`; returns how many (model, batch)
/// pairs were tuned.
pub fn run(models: &[String], batches: &[usize]) -> Result<usize> {
    if batches.is_empty() || batches.contains(&0) {
        bail!("--batches must be sizes of at least 1");
    }
    let options = CudaOptions {
        tactics: TacticMode::Tune,
        ..CudaOptions::from_env()?
    };
    let dev = CudaDevice::with_options(0, options)
        .map_err(|e| anyhow::anyhow!("reef tune needs a CUDA GPU: {e}"))?;
    println!("device: {}", dev.name());
    println!(
        "tactic cache: {}",
        reef_cuda::cache_dir()
            .map(|d| d.join("tactics").display().to_string())
            .unwrap_or_else(|| "none (no cache folder: set REEF_CACHE_DIR)".into())
    );
    println!(
        "{:<20} {:>5} {:>6} {:>7} {:>8} {:>11} {:>11} {:>8} {:>9}",
        "model", "batch", "GEMMs", "cached", "changed", "rules us", "tuned us", "gain", "load ms"
    );
    let mut n = 0;
    for m in models {
        for &b in batches {
            let g = reef_zoo::build(m, b, 0).with_context(|| format!("building {m}"))?;
            let plan = Arc::new(reef_plan::compile(&g)?);
            let t0 = Instant::now();
            let h = dev
                .load(plan)
                .with_context(|| format!("loading {m} at batch {b}"))?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let report = h
                .as_any()
                .downcast_ref::<CudaModel>()
                .and_then(CudaModel::tune_report)
                .context("the CUDA device did not tune the model")?;
            println!(
                "{:<20} {:>5} {:>6} {:>7} {:>8} {:>11.1} {:>11.1} {:>7.1}% {:>9.0}",
                m,
                b,
                report.tuned,
                report.cached,
                report.changed,
                report.rule_us,
                report.chosen_us,
                100.0 * (report.rule_us - report.chosen_us) / report.rule_us.max(1e-9),
                ms
            );
            n += 1;
        }
    }
    Ok(n)
}
