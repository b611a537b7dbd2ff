//! Owned device memory: one `cuMemAlloc` region freed on drop.

use crate::error::CudaCall;
use cudarc::driver::{result, sys, CudaContext};
use reef_exec::ExecError;
use std::sync::Arc;

/// A device allocation (at least [`reef_plan::plan::ALIGN`] bytes, 256-byte aligned).
pub(crate) struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    ctx: Arc<CudaContext>,
}

impl DeviceBuffer {
    /// Allocates `bytes` (rounded up to a non-empty multiple of 256) on `ctx`.
    pub fn alloc(ctx: &Arc<CudaContext>, bytes: usize) -> Result<Self, ExecError> {
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let bytes = reef_plan::plan::align_up(bytes.max(1));
        // SAFETY: the context is current; the returned region is owned by
        // this value and freed exactly once in Drop.
        let ptr = unsafe { result::malloc_sync(bytes) }.call("cuMemAlloc")?;
        Ok(DeviceBuffer {
            ptr,
            bytes,
            ctx: ctx.clone(),
        })
    }

    /// Device address of the first byte.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Allocated bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Err(e) = self.ctx.bind_to_thread() {
            tracing::error!(error = %e, "cuCtxSetCurrent before cuMemFree failed");
            return;
        }
        // SAFETY: `ptr` came from cuMemAlloc in this context and is freed once;
        // cuMemFree waits for work still using it.
        if let Err(e) = unsafe { result::free_sync(self.ptr) } {
            tracing::error!(error = %e, "cuMemFree failed");
        }
    }
}
