//! `reef selftest`'s batch check: one request of several images through a
//! real [`Scheduler`], each row compared with that image's request at
//! batch 1. The model is compiled for the larger batch on the scheduler's
//! loader thread and shares the batch-1 plan's weight blob, so on a GPU the
//! batched model reads the weights the batch-1 model uploaded
//! (`reef_cuda`'s resident weights): a wrong sharing shows as wrong rows.

use crate::bench_preempt::{request, source};
use crate::cases::random_inputs;
use crate::selftest::Row;
use anyhow::{Context as _, Result};
use rand_chacha::ChaCha8Rng;
use reef_exec::Device;
use reef_model::tensor::rel_l2;
use reef_model::Tensor;
use reef_sched::{Priority, SchedConfig, Scheduler, Service};
use std::sync::Arc;

/// `batch` fresh inputs of `model` answered one by one and then as one
/// request; every output row of the batched answer must be within `tol`
/// (relative L2) of its single answer.
pub(crate) fn check_batches(
    dut: &Arc<dyn Device>,
    model: &str,
    batch: usize,
    tol: f64,
    rng: &mut ChaCha8Rng,
) -> Result<Row> {
    let s = Scheduler::new(dut.clone(), SchedConfig::default())?;
    s.load_model(model, source(model), Priority::Rt)?;
    let graph = reef_zoo::build(model, 1, 7).with_context(|| format!("building {model}"))?;
    let singles: Vec<Vec<Tensor>> = (0..batch).map(|_| random_inputs(&graph, rng)).collect();
    let answer = |inputs: &[Tensor]| -> Result<Vec<Tensor>> {
        Ok(s.infer_blocking(request(model, inputs, Priority::Rt))
            .with_context(|| format!("request to {model}"))?
            .outputs)
    };
    let want = singles
        .iter()
        .map(|i| answer(i))
        .collect::<Result<Vec<_>>>()?;
    let stacked = (0..singles[0].len())
        .map(|k| stack(singles.iter().map(|one| &one[k])))
        .collect::<Result<Vec<_>>>()?;
    let got = answer(&stacked)?;
    s.shutdown();
    anyhow::ensure!(
        got.len() == want[0].len(),
        "{} outputs at batch {batch}, {} at batch 1",
        got.len(),
        want[0].len()
    );
    let mut worst = 0.0f64;
    for (o, out) in got.iter().enumerate() {
        let rows = out
            .as_f32()
            .with_context(|| format!("output {o} is not FP32"))?;
        anyhow::ensure!(
            rows.len() % batch == 0,
            "output {o}: {} values for {batch} rows",
            rows.len()
        );
        for (r, row) in rows.chunks(rows.len() / batch).enumerate() {
            let one = want[r][o].as_f32().context("FP32 output at batch 1")?;
            anyhow::ensure!(
                one.len() == row.len(),
                "output {o}: row {r} has another size"
            );
            worst = worst.max(rel_l2(row, one));
        }
    }
    Ok(Row {
        what: format!("{model} batch {batch} vs batch 1"),
        err: worst,
        ok: worst <= tol,
        note: format!(
            "{batch} rows against {batch} single requests, tolerance {tol:.0e} \
             (weights shared with batch 1)"
        ),
    })
}

/// Tensors of one shape stacked along dimension 0.
fn stack<'a>(parts: impl Iterator<Item = &'a Tensor>) -> Result<Tensor> {
    let parts: Vec<&Tensor> = parts.collect();
    let first = parts.first().context("nothing to stack")?;
    let mut shape = first.shape.clone();
    anyhow::ensure!(!shape.is_empty(), "a scalar input has no batch dimension");
    shape[0] *= parts.len();
    let mut bytes = Vec::new();
    for p in &parts {
        anyhow::ensure!(
            p.dtype() == first.dtype() && p.shape == first.shape,
            "inputs of different shapes"
        );
        bytes.extend_from_slice(&p.bytes());
    }
    Ok(Tensor::from_bytes(first.dtype(), shape, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use reef_exec::cpu::CpuDevice;

    #[test]
    fn the_batch_check_passes_on_the_cpu_and_stacks_any_dtype() {
        let dev: Arc<dyn Device> = Arc::new(CpuDevice::new(Some(2)).unwrap());
        let mut rng = ChaCha8Rng::seed_from_u64(rand::random());
        for model in ["resnet_tiny", "bert_tiny"] {
            let row = check_batches(&dev, model, 3, 1e-5, &mut rng).unwrap();
            assert!(row.ok, "{model}: {} ({})", row.err, row.note);
        }
        let a = Tensor::from_bytes(reef_model::DType::I64, vec![1, 2], &[1u8; 16]).unwrap();
        let b = Tensor::from_bytes(reef_model::DType::I64, vec![1, 2], &[2u8; 16]).unwrap();
        let s = stack([&a, &b].into_iter()).unwrap();
        assert_eq!(s.shape, vec![2, 2]);
        assert_eq!(&s.bytes()[..16], &[1u8; 16][..]);
        assert_eq!(&s.bytes()[16..], &[2u8; 16][..]);
        let c = Tensor::from_bytes(reef_model::DType::I64, vec![1, 3], &[2u8; 24]).unwrap();
        assert!(stack([&a, &c].into_iter()).is_err(), "shapes differ");
    }
}
