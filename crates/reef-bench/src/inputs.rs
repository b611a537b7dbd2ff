//! Random request inputs shaped after what the service says a model takes.
//!
//! f32 inputs are standard normal; integer inputs named like a mask
//! (`attention_mask`, `*mask*`) are ones, other integer inputs (token ids,
//! token types) are uniform in `[0, 1000)`; bool inputs are `true`. The batch
//! dimension (-1 in `shape[0]`) becomes the task's batch size; any other -1 becomes
//! `dynamic_dim` (the sequence length for BERT-like models).

use crate::error::{BenchError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use reef_exec::host_pool::HostPool;
use reef_model::{DType, Tensor};
use reef_sched::{ModelInfo, TensorInfo};

/// Upper bound (exclusive) of random token ids.
pub const TOKEN_ID_RANGE: i64 = 1000;

/// The concrete shape of an input for a batch size.
pub fn concrete_shape(info: &TensorInfo, batch: usize, dynamic_dim: usize) -> Vec<usize> {
    info.shape
        .iter()
        .enumerate()
        .map(|(i, &d)| match d {
            d if d >= 0 => d as usize,
            _ if i == 0 => batch,
            _ => dynamic_dim,
        })
        .collect()
}

fn one_input(
    model: &str,
    info: &TensorInfo,
    shape: Vec<usize>,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let is_mask = info.name.to_ascii_lowercase().contains("mask");
    let made = match info.dtype {
        DType::F32 => Tensor::f32(shape, (0..n).map(|_| StandardNormal.sample(rng)).collect()),
        DType::I64 if is_mask => Tensor::i64(shape, vec![1; n]),
        DType::I64 => Tensor::i64(
            shape,
            (0..n)
                .map(|_| rng.random_range(0..TOKEN_ID_RANGE))
                .collect(),
        ),
        DType::I32 if is_mask => Tensor::i32(shape, vec![1; n]),
        DType::I32 => Tensor::i32(
            shape,
            (0..n)
                .map(|_| rng.random_range(0..TOKEN_ID_RANGE as i32))
                .collect(),
        ),
        DType::Bool => Tensor::bool(shape, vec![true; n]),
        other => {
            return Err(BenchError::Inputs {
                model: model.to_string(),
                input: info.name.clone(),
                message: format!("cannot make random {other} inputs"),
            })
        }
    };
    made.map_err(|e| BenchError::Inputs {
        model: model.to_string(),
        input: info.name.clone(),
        message: e.to_string(),
    })
}

/// `count` (at least 1) random input sets for `model` at batch size `batch`,
/// in the model's input order. Deterministic for a seed.
pub fn input_pool(
    model: &ModelInfo,
    batch: usize,
    dynamic_dim: usize,
    count: usize,
    seed: u64,
) -> Result<Vec<Vec<Tensor>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count.max(1))
        .map(|_| {
            model
                .inputs
                .iter()
                .map(|info| {
                    one_input(
                        &model.name,
                        info,
                        concrete_shape(info, batch, dynamic_dim),
                        &mut rng,
                    )
                })
                .collect()
        })
        .collect()
}

/// Moves every f32 tensor of `sets` that `host` takes (64 KiB and up on a
/// GPU's pool) into one of its pinned buffers, so that its uploads, in
/// process or by a client into CUDA shared memory, are direct DMA instead
/// of the driver's staged copy from pageable memory. Returns how many
/// tensors moved and how many f32 tensors stayed (the pool was full or the
/// tensor small).
pub fn pin_inputs(sets: &mut [Vec<Tensor>], host: &HostPool) -> (usize, usize) {
    let (mut moved, mut stayed) = (0, 0);
    for t in sets.iter_mut().flatten() {
        let Some(data) = t.as_f32() else { continue };
        match host.copied(data) {
            Some(buf) => {
                // Same shape, same elements: cannot fail.
                if let Ok(p) = Tensor::f32_shared(t.shape.clone(), buf) {
                    *t = p;
                    moved += 1;
                }
            }
            None => stayed += 1,
        }
    }
    (moved, stayed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reef_exec::host_pool::NoPin;

    #[test]
    fn large_f32_inputs_move_into_the_pool_with_their_values() {
        let host = HostPool::new(Box::new(NoPin), 1 << 20, 64 << 10);
        let big: Vec<f32> = (0..20_000).map(|i| (i as f32).sin()).collect();
        let mut sets = vec![
            vec![
                Tensor::f32(vec![1, 20_000], big.clone()).unwrap(),
                Tensor::f32(vec![4], vec![1.5, -2.0, 3.25, 0.5]).unwrap(),
                Tensor::i64(vec![2], vec![7, 9]).unwrap(),
            ],
            vec![Tensor::f32(vec![20_000], big.iter().map(|v| -v).collect()).unwrap()],
        ];
        let before = sets.clone();
        let (moved, stayed) = pin_inputs(&mut sets, &host);
        assert_eq!((moved, stayed), (2, 1), "two large f32 tensors, one small");
        assert_eq!(host.buffers(), 2);
        assert_eq!(sets, before, "shapes and values unchanged");
        // The tensors hold the pool's two buffers: another request for one
        // makes a third.
        assert!(host.copied(&big).is_some());
        assert_eq!(host.buffers(), 3, "the pinned buffers are in use");
        // 80 KB pin 128 KiB (64 KiB steps): a pool of 128 KiB holds one.
        let small_host = HostPool::new(Box::new(NoPin), 128 << 10, 64 << 10);
        let mut again = before.clone();
        let (moved, stayed) = pin_inputs(&mut again, &small_host);
        assert_eq!((moved, stayed), (1, 2), "the pool holds one buffer");
        assert_eq!(again, before);
    }
}
