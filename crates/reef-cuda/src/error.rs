//! Mapping CUDA driver and NVRTC errors to [`ExecError`], naming the call.

use cudarc::driver::DriverError;
use cudarc::nvrtc::result::NvrtcError;
use reef_exec::ExecError;

/// Attaches the name of the CUDA call to a driver or NVRTC error.
pub(crate) trait CudaCall<T> {
    /// Maps the error to [`ExecError::Cuda`] with `call` named.
    fn call(self, call: &str) -> Result<T, ExecError>;
}

impl<T> CudaCall<T> for Result<T, DriverError> {
    fn call(self, call: &str) -> Result<T, ExecError> {
        self.map_err(|e| ExecError::Cuda(format!("{call}: {e}")))
    }
}

impl<T> CudaCall<T> for Result<T, NvrtcError> {
    fn call(self, call: &str) -> Result<T, ExecError> {
        self.map_err(|e| ExecError::Cuda(format!("{call}: {e:?}")))
    }
}
