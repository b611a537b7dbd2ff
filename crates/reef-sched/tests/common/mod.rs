//! Shared by the scheduler's single-model tests: a scheduler serving the
//! tiny ResNet as an RT model, random inputs for it, and a blocking call.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_exec::Device;
use reef_model::Tensor;
use reef_sched::{GraphSource, InferRequest, Priority, SchedConfig, Scheduler, Service};
use std::sync::Arc;
use std::time::Instant;

/// The model every test here serves.
pub const MODEL: &str = "resnet_tiny";

/// A scheduler on `dev` with `cfg`, serving [`MODEL`] as an RT model.
pub fn tiny_rt(dev: Arc<dyn Device>, cfg: SchedConfig) -> Arc<Scheduler> {
    let s = Scheduler::new(dev, cfg).expect("scheduler");
    let src: GraphSource = Arc::new(|b| reef_zoo::build(MODEL, b, 3).map_err(|e| e.to_string()));
    s.load_model(MODEL, src, Priority::Rt).expect("load");
    s
}

/// The shape of [`MODEL`]'s input at batch 1, and random values for it.
pub fn input_data(s: &Scheduler, seed: u64) -> (Vec<usize>, Vec<f32>) {
    let info = s.models().into_iter().next().expect("one model");
    let shape: Vec<usize> = info.inputs[0]
        .shape
        .iter()
        .map(|&d| d.max(1) as usize)
        .collect();
    let n = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    (shape, data)
}

/// Runs [`MODEL`] on `inputs` as an RT request and returns its outputs.
pub fn infer(s: &Scheduler, inputs: Vec<Tensor>) -> Vec<Tensor> {
    s.infer_blocking(InferRequest {
        model: MODEL.into(),
        inputs: inputs.into_iter().map(Into::into).collect(),
        priority: Some(Priority::Rt),
        arrival: Instant::now(),
    })
    .expect("answered")
    .outputs
}
