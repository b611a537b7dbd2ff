//! CPU backend: runs a [`Plan`](reef_plan::Plan)'s kernels on a rayon thread
//! pool whose worker threads play the role of a GPU's SMs.
//!
//! - [`CpuDevice`] owns the pool; [`CpuModel`] holds a plan's weights in 8-byte
//!   aligned storage; [`CpuContext`] owns one task's arena and progress record.
//! - Every kernel is split into independent tiles (pieces of its output) that
//!   run on the pool. Tiling and arithmetic order depend only on the kernel's
//!   spec, so RT and BE launches, and a kernel re-run after preemption, give
//!   bit-identical results.
//! - [`CpuLane`] is a dedicated OS thread draining a FIFO of launches. A BE
//!   launch checks the lane's preemption flag before it starts and before each
//!   tile; RT launches never check it. Rayon has no priorities, so RT work on a
//!   [`Priority::High`](crate::Priority::High) lane shares the pool fairly with
//!   BE work; BE tiles are kept small so a raised flag takes effect quickly.
//! - GEMMs compute in f32. [`CpuDevice::with_tf32`] rounds the operands of
//!   exactly the GEMMs that run on TF32 tensor cores on the GPU to TF32 first
//!   ([`round_tf32`]), so the GPU's default precision can be checked against
//!   a reference in the same arithmetic.

mod cores;
mod device;
mod kernels;
mod lane;
mod memory;
mod tf32;
mod tiles;
mod validate;

pub use device::{CpuContext, CpuDevice, CpuModel};
pub use lane::CpuLane;
pub use memory::{typed, typed_mut};
pub use tf32::round_tf32;
