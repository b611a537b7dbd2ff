//! A compiled model: the kernel schedule, its buffers, the packed weights and
//! the I/O bindings. A plan is immutable and shared by every task of a model.

use crate::kernel::Kernel;
use reef_model::DType;
use std::sync::Arc;

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
    /// Plans of one model compiled for different batch sizes hold the
    /// same bytes and may share one blob ([`Plan::share_weights`]);
    /// devices then keep one resident copy for all of them.
    pub weights: Arc<Vec<u8>>,
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

    /// Makes this plan hold `other`'s weight blob instead of its own copy
    /// when the two are byte for byte equal (as the plans of one model at
    /// different batch sizes are). Returns whether the plans now share it.
    pub fn share_weights(&mut self, other: &Plan) -> bool {
        if self.shares_weights(other) {
            return true;
        }
        if self.weights != other.weights {
            return false;
        }
        self.weights = other.weights.clone();
        true
    }

    /// Whether this plan and `other` hold one weight blob (not two copies).
    pub fn shares_weights(&self, other: &Plan) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(weights: &[u8]) -> Plan {
        Plan {
            weights: Arc::new(weights.to_vec()),
            ..Plan::default()
        }
    }

    #[test]
    fn equal_weights_are_shared_and_different_ones_are_not() {
        let a = plan(&[1, 2, 3, 4]);
        let mut b = plan(&[1, 2, 3, 4]);
        assert!(!b.shares_weights(&a), "two copies before");
        assert!(b.share_weights(&a));
        assert!(b.shares_weights(&a) && Arc::strong_count(&a.weights) == 2);
        assert!(b.share_weights(&a), "sharing again is a no-op");
        let mut c = plan(&[1, 2, 3, 5]);
        assert!(!c.share_weights(&a));
        assert!(!c.shares_weights(&a));
        assert_eq!(*c.weights, vec![1, 2, 3, 5], "left as it was");
        let mut d = plan(&[1, 2, 3]);
        assert!(!d.share_weights(&a), "a prefix is not equal");
    }
}
