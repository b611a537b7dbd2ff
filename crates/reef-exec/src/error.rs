//! Errors of the executors.

use thiserror::Error;

/// Result alias for the executors.
pub type Result<T, E = ExecError> = std::result::Result<T, E>;

/// What can go wrong while loading or running a plan.
#[derive(Debug, Error)]
pub enum ExecError {
    /// No usable device of the requested kind.
    #[error("device unavailable: {0}")]
    Unavailable(String),
    /// A CUDA driver or NVRTC call failed (the call and its error).
    #[error("CUDA: {0}")]
    Cuda(String),
    /// Kernel source failed to compile (with the compiler log).
    #[error("kernel compilation failed: {0}")]
    Compile(String),
    /// Bad argument from the caller (wrong input size, index out of range).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A plan uses something this backend does not implement.
    #[error("unsupported by this backend: {0}")]
    Unsupported(String),
}
