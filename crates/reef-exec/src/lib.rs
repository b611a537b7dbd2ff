//! reef's executors. A [`Device`] loads a [`Plan`] into a [`ModelHandle`]
//! (weights resident), makes [`Context`]s (one task's activation arena, input
//! and output buffers, progress record) and [`Lane`]s (a stream of kernel
//! launches with a priority and a preemption flag).
//!
//! Semantics every backend keeps (the scheduler relies on them):
//! - kernels enqueued on one lane run in order; lanes run concurrently;
//! - a kernel enqueued as [`Variant::Be`] checks its lane's preemption flag at
//!   entry and between tiles and exits early when it is set, leaving the task's
//!   progress at its index; a BE kernel that completes sets the context's
//!   progress to its index + 1 (so progress is exact: every kernel below it
//!   completed, none at or above it did);
//! - [`Variant::Rt`] kernels never check the flag;
//! - RT and BE variants of a kernel compute bit-identical results.

pub mod cpu;

pub mod error;
pub mod run;

pub use error::{ExecError, Result};
pub use reef_plan::Plan;

use std::any::Any;
use std::sync::Arc;

/// Which compiled variant of a kernel to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Real-time: fastest, never preempted.
    Rt,
    /// Best-effort: preemptible at tile granularity, resumable.
    Be,
}

/// Priority of a lane (a CUDA stream priority, or the CPU worker's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Highest priority (RT work).
    High,
    /// Lowest priority (BE work).
    Low,
}

/// The kind of device behind a [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The CPU backend.
    Cpu,
    /// An NVIDIA GPU through CUDA.
    Cuda,
}

/// A compute device: loads models and makes lanes.
pub trait Device: Send + Sync {
    /// Human-readable description (e.g. "NVIDIA H100 80GB HBM3, 132 SMs").
    fn name(&self) -> String;
    /// Backend kind.
    fn kind(&self) -> DeviceKind;
    /// Number of parallel compute units (SMs, or CPU worker threads).
    fn compute_units(&self) -> usize;
    /// Uploads the plan's weights and prepares its kernels.
    fn load(&self, plan: Arc<Plan>) -> Result<Arc<dyn ModelHandle>>;
    /// A new lane with its own preemption flag.
    fn lane(&self, priority: Priority) -> Result<Box<dyn Lane>>;
}

/// A model resident on a device.
pub trait ModelHandle: Send + Sync {
    /// The plan it runs.
    fn plan(&self) -> &Arc<Plan>;
    /// A fresh task context (arena, I/O, progress).
    fn context(&self) -> Result<Box<dyn Context>>;
    /// Downcasting support for backends.
    fn as_any(&self) -> &dyn Any;
}

/// One task's state on the device: activations, inputs, outputs, progress.
/// Contexts are reused across tasks of the same model.
pub trait Context: Send {
    /// The model it belongs to.
    fn model(&self) -> &Arc<dyn ModelHandle>;
    /// Copies input `index` (raw little-endian bytes, exact size) in.
    fn write_input(&mut self, index: usize, bytes: &[u8]) -> Result<()>;
    /// Copies output `index` out (raw little-endian bytes). Call only after
    /// the lane that ran the task synchronized.
    fn read_output(&mut self, index: usize) -> Result<Vec<u8>>;
    /// Fills the arena with a poison value (NaN bytes) to catch unwritten outputs.
    fn poison(&mut self) -> Result<()>;
    /// The first kernel not known complete (exact after the lane synchronized).
    fn progress(&mut self) -> Result<usize>;
    /// Downcasting support for backends.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// An in-order queue of kernel launches with its own preemption flag.
pub trait Lane: Send {
    /// Priority it was made with.
    fn priority(&self) -> Priority;
    /// Prepares `ctx` to run kernels from `from` on (resets the progress
    /// record to `from` and any per-kernel completion counters at or above it).
    fn begin(&mut self, ctx: &mut dyn Context, from: usize) -> Result<()>;
    /// Enqueues kernel `index` of the context's plan; returns without waiting.
    fn enqueue(&mut self, ctx: &mut dyn Context, index: usize, variant: Variant) -> Result<()>;
    /// How many enqueued kernels have retired (completed or exited), without blocking.
    fn retired(&mut self) -> Result<u64>;
    /// Total kernels enqueued so far.
    fn enqueued(&self) -> u64;
    /// Blocks until every enqueued kernel retired; reports a device fault.
    fn synchronize(&mut self) -> Result<()>;
    /// Raises (true) or clears (false) the lane's preemption flag. Raising
    /// makes queued and running BE kernels of this lane exit at their next check.
    fn set_preempt(&mut self, on: bool) -> Result<()>;
}
