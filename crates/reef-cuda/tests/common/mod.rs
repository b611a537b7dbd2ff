//! Shared test helper: builds small plans by hand.
#![allow(dead_code)]

use reef_model::DType;
use reef_plan::kernel::{Kernel, KernelOp};
use reef_plan::plan::{align_up, Buffer, IoBinding, Loc};
use reef_plan::Plan;

/// A plan builder: buffers packed in the weight blob or the arena.
#[derive(Default)]
pub struct P {
    pub plan: Plan,
    arena: usize,
}

impl P {
    /// A zero-filled weight buffer.
    pub fn weight(&mut self, dtype: DType, len: usize) -> usize {
        let off = self.plan.weights.len();
        std::sync::Arc::make_mut(&mut self.plan.weights)
            .resize(off + align_up(len * dtype.size()), 0);
        self.push(dtype, len, Loc::Weight(off))
    }

    /// An f32 weight buffer holding `data`.
    pub fn weight_f32(&mut self, data: &[f32]) -> usize {
        let id = self.weight(DType::F32, data.len());
        if let Loc::Weight(off) = self.plan.buffers[id].loc {
            for (i, v) in data.iter().enumerate() {
                std::sync::Arc::make_mut(&mut self.plan.weights)[off + 4 * i..off + 4 * i + 4]
                    .copy_from_slice(&v.to_le_bytes());
            }
        }
        id
    }

    /// An arena buffer.
    pub fn act(&mut self, dtype: DType, len: usize) -> usize {
        let off = self.arena;
        self.arena += align_up(len * dtype.size());
        self.plan.arena_bytes = self.arena;
        self.push(dtype, len, Loc::Arena(off))
    }

    fn push(&mut self, dtype: DType, len: usize, loc: Loc) -> usize {
        self.plan.buffers.push(Buffer {
            dtype,
            len,
            loc,
            name: format!("b{}", self.plan.buffers.len()),
        });
        self.plan.buffers.len() - 1
    }

    /// Appends a kernel.
    pub fn kernel(&mut self, op: KernelOp, inputs: Vec<usize>, output: usize) {
        self.plan.kernels.push(Kernel {
            name: format!("k{}", self.plan.kernels.len()),
            op,
            inputs,
            output,
        });
    }

    fn binding(&self, id: usize) -> IoBinding {
        let b = &self.plan.buffers[id];
        IoBinding {
            name: b.name.clone(),
            dtype: b.dtype,
            shape: vec![b.len],
            buffer: id,
        }
    }

    /// Declares an arena buffer as a graph input.
    pub fn input(&mut self, id: usize) {
        let b = self.binding(id);
        self.plan.inputs.push(b);
    }

    /// Declares an arena buffer as a graph output.
    pub fn output(&mut self, id: usize) {
        let b = self.binding(id);
        self.plan.outputs.push(b);
    }

    /// Device address of a buffer at the given bases.
    pub fn addr_at(&self, id: usize, weights: u64, arena: u64) -> u64 {
        match self.plan.buffers[id].loc {
            Loc::Weight(o) => weights + o as u64,
            Loc::Arena(o) => arena + o as u64,
        }
    }
}
