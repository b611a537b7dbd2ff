//! Test helpers: building small plans by hand, running them on the CPU
//! backend, random data and error measures.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reef_exec::cpu::CpuDevice;
use reef_exec::{run::run_to_end, Device, Priority, Variant};
use reef_model::DType;
use reef_plan::kernel::{Kernel, KernelOp};
use reef_plan::plan::{align_up, Buffer, BufferId, IoBinding, Loc};
use reef_plan::Plan;
use std::sync::{Arc, OnceLock};

/// A plan under construction; buffers are placed at 256-byte alignment.
#[derive(Default)]
pub struct PlanBuilder {
    plan: Plan,
}

impl PlanBuilder {
    pub fn new(name: &str) -> Self {
        let mut b = Self::default();
        b.plan.name = name.into();
        b.plan.batch = 1;
        b
    }

    /// A buffer in the weight blob holding `bytes`.
    pub fn weight(&mut self, name: &str, dtype: DType, bytes: &[u8]) -> BufferId {
        let weights = std::sync::Arc::make_mut(&mut self.plan.weights);
        let off = align_up(weights.len());
        weights.resize(off, 0);
        weights.extend_from_slice(bytes);
        self.push(name, dtype, bytes.len() / dtype.size(), Loc::Weight(off))
    }

    pub fn weight_f32(&mut self, name: &str, data: &[f32]) -> BufferId {
        self.weight(name, DType::F32, bytemuck::cast_slice(data))
    }

    /// An arena buffer of `len` elements.
    pub fn arena(&mut self, name: &str, dtype: DType, len: usize) -> BufferId {
        let off = align_up(self.plan.arena_bytes);
        self.plan.arena_bytes = off + len * dtype.size();
        self.push(name, dtype, len, Loc::Arena(off))
    }

    /// A graph input (an arena buffer bound as input).
    pub fn input(&mut self, name: &str, dtype: DType, shape: &[usize]) -> BufferId {
        let id = self.arena(name, dtype, shape.iter().product());
        self.plan.inputs.push(IoBinding {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            buffer: id,
        });
        id
    }

    /// Binds an arena buffer as a graph output.
    pub fn output(&mut self, id: BufferId, shape: &[usize]) {
        let b = &self.plan.buffers[id];
        self.plan.outputs.push(IoBinding {
            name: b.name.clone(),
            dtype: b.dtype,
            shape: shape.to_vec(),
            buffer: id,
        });
    }

    pub fn kernel(&mut self, op: KernelOp, inputs: &[BufferId], output: BufferId) {
        let name = format!("k{}", self.plan.kernels.len());
        self.plan.kernels.push(Kernel {
            name,
            op,
            inputs: inputs.to_vec(),
            output,
        });
    }

    pub fn build(mut self) -> Arc<Plan> {
        self.plan.arena_bytes = align_up(self.plan.arena_bytes);
        Arc::new(self.plan)
    }

    fn push(&mut self, name: &str, dtype: DType, len: usize, loc: Loc) -> BufferId {
        self.plan.buffers.push(Buffer {
            dtype,
            len,
            loc,
            name: name.into(),
        });
        self.plan.buffers.len() - 1
    }
}

/// A shared 2-thread CPU device.
pub fn device() -> &'static CpuDevice {
    static DEV: OnceLock<CpuDevice> = OnceLock::new();
    DEV.get_or_init(|| CpuDevice::new(Some(2)).expect("CPU device"))
}

/// A shared 2-thread CPU device that rounds GEMM operands to TF32.
pub fn device_tf32() -> &'static CpuDevice {
    static DEV: OnceLock<CpuDevice> = OnceLock::new();
    DEV.get_or_init(|| CpuDevice::new(Some(2)).expect("CPU device").with_tf32(true))
}

/// Runs a plan to the end with the given inputs; returns every output's bytes.
pub fn run_plan(plan: &Arc<Plan>, inputs: &[Vec<u8>], variant: Variant) -> Vec<Vec<u8>> {
    run_plan_on(device(), plan, inputs, variant)
}

/// [`run_plan`] on a given device.
pub fn run_plan_on(
    dev: &CpuDevice,
    plan: &Arc<Plan>,
    inputs: &[Vec<u8>],
    variant: Variant,
) -> Vec<Vec<u8>> {
    let model = dev.load(plan.clone()).expect("load");
    let mut ctx = model.context().expect("context");
    ctx.poison().expect("poison");
    for (i, bytes) in inputs.iter().enumerate() {
        ctx.write_input(i, bytes).expect("write input");
    }
    let mut lane = dev.lane(Priority::Low).expect("lane");
    let done = run_to_end(lane.as_mut(), ctx.as_mut(), 0, variant).expect("run");
    assert_eq!(done, plan.kernels.len());
    (0..plan.outputs.len())
        .map(|i| ctx.read_output(i).expect("read output"))
        .collect()
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` uniform values in `[-1, 1)`.
pub fn randn(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn bytes<T: bytemuck::Pod>(v: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

pub fn f32s(b: &[u8]) -> Vec<f32> {
    pod_vec(b)
}

/// Relative L2 error of `got` against the f64 reference `want`.
pub fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Asserts `got` matches `want` to rel L2 < 1e-5 (and has no NaN).
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert!(got.iter().all(|v| !v.is_nan()), "{what}: NaN in output");
    let e = rel_l2(got, want);
    assert!(e < 1e-5, "{what}: rel L2 error {e:e}");
}

/// Raw little-endian bytes as a vector of `T`.
pub fn pod_vec<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    b.chunks_exact(std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .collect()
}
