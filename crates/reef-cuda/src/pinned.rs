//! Page-locking host memory for the input pool ([`reef_exec::host_pool`]):
//! `cuMemHostRegister` with `CU_MEMHOSTREGISTER_PORTABLE`, so that every
//! context of the process (one per device) uploads from it directly.

use crate::error::CudaCall;
use cudarc::driver::{sys, CudaContext};
use reef_exec::host_pool::Pinner;
use std::sync::Arc;

/// The smallest tensor a pool pins: below 64 KiB the staged copy costs
/// little more than a direct one.
pub(crate) const MIN_PINNED_BYTES: usize = 64 << 10;

/// Registers host ranges with the CUDA driver.
pub(crate) struct CudaPinner {
    pub ctx: Arc<CudaContext>,
}

impl Pinner for CudaPinner {
    fn pin(&self, addr: usize, bytes: usize) -> reef_exec::Result<()> {
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: the pool passes the start and pinned length of a buffer it
        // owns, and keeps that buffer alive (never reallocated) until it
        // calls `unpin` for it; page-locking does not touch the contents.
        unsafe {
            sys::cuMemHostRegister_v2(
                addr as *mut std::ffi::c_void,
                bytes,
                sys::CU_MEMHOSTREGISTER_PORTABLE,
            )
        }
        .result()
        .call("cuMemHostRegister(input pool)")
    }

    fn unpin(&self, addr: usize) {
        let r = self
            .ctx
            .bind_to_thread()
            .call("cuCtxSetCurrent")
            .and_then(|()| {
                // SAFETY: `addr` is the start of a range this pinner registered,
                // still allocated (the pool unpins before it drops its buffer).
                unsafe { sys::cuMemHostUnregister(addr as *mut std::ffi::c_void) }
                    .result()
                    .call("cuMemHostUnregister(input pool)")
            });
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    }
}

/// A pool of pinned host buffers (at most `max_bytes`, for tensors of 64
/// KiB and up) registered in device `ordinal`'s primary context: for a
/// process that is not serving on the device, such as a client that copies
/// its inputs into CUDA shared memory or a benchmark that holds its inputs
/// in pinned memory.
pub fn host_pool(
    ordinal: usize,
    max_bytes: usize,
) -> reef_exec::Result<Arc<reef_exec::host_pool::HostPool>> {
    crate::device::driver_ready()?;
    let ctx = CudaContext::new(ordinal).call("cuDevicePrimaryCtxRetain")?;
    Ok(Arc::new(reef_exec::host_pool::HostPool::new(
        Box::new(CudaPinner { ctx }),
        max_bytes,
        MIN_PINNED_BYTES,
    )))
}
