//! The self-test's tactic sweep (GPU only): every GEMM case again with each
//! kernel on its candidate tactic R, for R = 1, 2, ... until no case has a
//! kernel with that many candidates (`REEF_TACTICS=round:R`, the tuner's
//! trial R), so that every tile and K split the tuner may pick is checked
//! against the CPU, RT against BE bit for bit, whatever `REEF_TACTICS` says.

use crate::cases::Case;
use crate::selftest::{check_graph, Row};
use anyhow::{Context as _, Result};
use rand_chacha::ChaCha8Rng;
use reef_cuda::{CudaDevice, CudaModel, CudaOptions, TacticMode};
use reef_exec::Device;
use std::sync::Arc;

/// No kernel has more candidates than this (3 tiles and 2 wgmma tiles, 4
/// split counts each); the sweep stops earlier, at the first empty round.
const MAX_ROUNDS: usize = 20;

/// Kernels of `g` whose tactic on `dev` differs from the rules' choice.
fn changed_kernels(dev: &CudaDevice, g: &reef_model::Graph) -> Result<usize> {
    let h = dev.load(Arc::new(reef_plan::compile(g)?))?;
    let m = h
        .as_any()
        .downcast_ref::<CudaModel>()
        .context("a CUDA device loaded a model that is not a CudaModel")?;
    Ok(m.gemms()
        .iter()
        .flatten()
        .filter(|c| c.used != c.rule)
        .count())
}

/// One row per round: the worst error of the cases it changed, and which
/// failed.
pub fn run(
    cases: &[Case],
    cpu: &dyn Device,
    tol: &dyn Fn(&Case) -> f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Result<Row>> {
    let base = match CudaOptions::from_env() {
        Ok(o) => o,
        Err(e) => return vec![Err(e.into())],
    };
    let mut rows = vec![];
    for r in 1..=MAX_ROUNDS {
        let row = (|| -> Result<Option<Row>> {
            let options = CudaOptions {
                tactics: TacticMode::Round(r),
                ..base
            };
            let dev = CudaDevice::with_options(0, options)?;
            let (mut kernels, mut checked, mut worst, mut failed) = (0, 0, 0.0f64, vec![]);
            for c in cases.iter().filter(|c| c.tf32) {
                let n = changed_kernels(&dev, &c.graph)?;
                if n == 0 {
                    continue;
                }
                kernels += n;
                checked += 1;
                let row = check_graph(&c.name, &c.graph, &dev, cpu, None, tol(c), rng)?;
                worst = worst.max(row.err);
                if !row.ok {
                    failed.push(format!("{} ({})", c.name, row.note));
                }
            }
            if checked == 0 {
                return Ok(None);
            }
            let mut note = format!("{kernels} kernels on other tactics in {checked} cases");
            if !failed.is_empty() {
                note.push_str(&format!("; failed: {}", failed.join(", ")));
            }
            Ok(Some(Row {
                what: format!("tactic round {r}"),
                err: worst,
                ok: failed.is_empty(),
                note,
            }))
        })();
        match row {
            Ok(Some(row)) => rows.push(Ok(row)),
            Ok(None) => break,
            Err(e) => {
                rows.push(Err(e.context(format!("tactic round {r}"))));
                break;
            }
        }
    }
    rows
}
