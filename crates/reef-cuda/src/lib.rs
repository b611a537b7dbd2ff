//! reef's CUDA backend: implements [`reef_exec::Device`] for NVIDIA GPUs
//! through the CUDA driver API (cudarc, loaded at run time).
//!
//! - One kernel module (`kernels/*.cu`) serves every model: generic kernels
//!   take a `#[repr(C)]` params struct by value ([`params`]); it is compiled
//!   once per GPU architecture with NVRTC and cached on disk ([`compile`]).
//! - Every kernel family has an RT entry point (one block per tile; only the
//!   task's last kernel and padded kernels count blocks and publish
//!   progress) and a BE entry point, built from one tile function, so both
//!   compute bit-identical results. A BE launch is direct (one block per
//!   tile, a flag check at entry, progress published at entry and completion
//!   known from the retired launch) when every tile fits on the GPU at once,
//!   else persistent blocks claim tiles from a cursor, polling the lane's
//!   preemption flag before each, count them done, and the block that
//!   completes the last one publishes `progress = index + 1`. GEMM tiles also
//!   check the flag between K steps. A BE kernel cut short marks its done
//!   word ([`launch::ABORTED_BIT`]) and `Lane::resume` runs that kernel again
//!   from its first tile.
//! - Convolutions and matmuls run in one of three [`Precision`]s, chosen by
//!   [`CudaOptions::precision`] (from `REEF_PRECISION`, default `tf32`):
//!   - `tf32`: TF32 tensor cores (`mma.sync m16n8k8`, operands rounded to
//!     10 mantissa bits with `cvt.rna`); fastest, relative L2 error about
//!     1e-4..1e-3 against f32 on whole models.
//!   - `tf32x3`: split TF32 ("3xTF32") on the same tensor cores: each operand
//!     is split into `hi = tf32(x)` and `lo = tf32(x - hi)` and every product
//!     is `a_hi*b_lo + a_lo*b_hi + a_hi*b_hi` (small terms first, summed per
//!     K step of 8 into a zeroed partial that is then added to the
//!     accumulator in IEEE f32), which keeps about 21 mantissa bits per
//!     product: close to f32 accuracy (whole models about 1e-6 against the
//!     CPU) for three tensor-core operations instead of one. On the H100 it
//!     costs 5-55 % over `tf32` and is only 2-10 % faster than `f32`.
//!   - `f32`: exact f32 FFMA (no tensor cores; `REEF_TF32=0` is an alias).
//!
//!   In `tf32`, weights that only TF32 GEMMs read are stored rounded to
//!   TF32, so those kernels skip their conversion, and matmul weights are
//!   stored K-major ([`weight_layout`]).
//!
//!   Each runs with a tile shape and a deterministic split of K chosen per
//!   kernel ([`geometry`]), or, with `REEF_TACTICS=tune`, measured per
//!   kernel at model load and cached on disk ([`tactics`]); split kernels
//!   use a per-context workspace and per-tile arrival counters (zeroed by
//!   `Lane::begin` like the done counters).

pub mod clocks;
mod compile;
mod context;
mod device;
mod error;
pub mod gather;
pub mod geometry;
pub mod ipc;
pub mod kernels;
mod lane;
pub mod launch;
mod mapped;
mod memory;
mod model;
pub mod params;
mod pinned;
pub mod precision;
mod probe;
mod relay;
mod resident;
pub mod tactic_cache;
pub mod tactics;
mod timer;
mod told;
mod tune;
mod weight_layout;

pub use compile::{cache_dir, cache_key, compile_cubin, nvrtc_available, SetCubin};
pub use context::CudaTaskContext;
pub use device::{cuda_available, precompile, CudaDevice, CudaOptions};
pub use kernels::KernelSet;
pub use lane::CudaLane;
pub use model::CudaModel;
pub use pinned::host_pool;
pub use precision::{Precision, PrecisionError};
pub use relay::RelayCounts;
pub use tactics::TacticMode;
pub use tune::TuneReport;
