//! reef's CUDA backend: implements [`reef_exec::Device`] for NVIDIA GPUs
//! through the CUDA driver API (cudarc, loaded at run time).
//!
//! - One kernel module (`kernels/*.cu`) serves every model: generic kernels
//!   take a `#[repr(C)]` params struct by value ([`params`]); it is compiled
//!   once per GPU architecture with NVRTC and cached on disk ([`compile`]).
//! - Every kernel family has an RT entry point (one block per tile) and a BE
//!   entry point (persistent blocks polling the lane's preemption flag before
//!   every tile), built from one tile function, so both compute bit-identical
//!   results. A BE kernel that completes counts its blocks in a per-kernel
//!   done counter; the last block publishes `progress = index + 1`.
//! - Convolutions and matmuls run on TF32 tensor cores (`mma.sync m16n8k8`)
//!   unless `REEF_TF32=0` or [`CudaOptions::tf32`] is false (exact f32 FFMA),
//!   with a tile shape and a deterministic split of K chosen per kernel
//!   ([`geometry`]); split kernels use a per-context workspace and per-tile
//!   arrival counters (zeroed by `Lane::begin` like the done counters).

mod compile;
mod context;
mod device;
mod error;
pub mod geometry;
pub mod kernels;
mod lane;
pub mod launch;
mod memory;
mod model;
pub mod params;

pub use compile::{cache_dir, cache_key, compile_cubin, nvrtc_available};
pub use context::CudaTaskContext;
pub use device::{cuda_available, CudaDevice, CudaOptions};
pub use lane::CudaLane;
pub use model::CudaModel;
