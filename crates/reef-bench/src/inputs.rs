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
