//! A compiled model: the kernel schedule, its buffers, the packed weights and
//! the I/O bindings. A plan is immutable and shared by every task of a model.

use crate::kernel::Kernel;
use reef_model::DType;

/// Index of a buffer in [`Plan::buffers`].
pub type BufferId = usize;

/// Alignment of every buffer, in bytes (weights and arena).
pub const ALIGN: usize = 256;

/// Where a buffer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Loc {
    /// In the model's read-only weight blob, at this byte offset.
    Weight(usize),
    /// In a task's activation arena, at this byte offset.
    Arena(usize),
}

/// A typed region of memory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Buffer {
    /// Element type.
    pub dtype: DType,
    /// Elements.
    pub len: usize,
    /// Location.
    pub loc: Loc,
    /// Debug name (the value it holds first).
    pub name: String,
}

impl Buffer {
    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.len * self.dtype.size()
    }
}

/// A graph input or output bound to a buffer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IoBinding {
    /// Tensor name as the model declares it.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Buffer (always in the arena).
    pub buffer: BufferId,
}

/// A model compiled for one batch size.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Model name.
    pub name: String,
    /// Batch size it was compiled for.
    pub batch: usize,
    /// The schedule, in execution order.
    pub kernels: Vec<Kernel>,
    /// Every buffer the kernels touch.
    pub buffers: Vec<Buffer>,
    /// Packed weights (little-endian bytes, each buffer [`ALIGN`]ed).
    pub weights: Vec<u8>,
    /// Bytes of activation arena one task needs.
    pub arena_bytes: usize,
    /// Graph inputs.
    pub inputs: Vec<IoBinding>,
    /// Graph outputs.
    pub outputs: Vec<IoBinding>,
}

impl Plan {
    /// Total floating-point operations of one run.
    pub fn flops(&self) -> u64 {
        self.kernels.iter().map(|k| k.op.flops()).sum()
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} (batch {}): {} kernels, {:.1} MB weights, {:.1} MB arena, {:.2} GFLOP",
            self.name,
            self.batch,
            self.kernels.len(),
            self.weights.len() as f64 / 1e6,
            self.arena_bytes as f64 / 1e6,
            self.flops() as f64 / 1e9
        )
    }
}

/// Rounds `x` up to a multiple of [`ALIGN`].
pub fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}
