//! [`ToldWord`]: a lane's told word, one u32 of pinned host memory mapped
//! into the device's address space. The last block of each direct BE launch
//! to leave the GPU writes the launch's number there (`reef_tell` in
//! common.cu, a posted PCIe write), so the host learns that a lane's BE
//! kernels have left the SMs with a load, without a driver call
//! ([`reef_exec::Lane::drained`]). The device only ever writes it: kernels
//! never read host memory (that costs them a PCIe round trip each, Session
//! 22 in docs/PERF.md).

use crate::device::DeviceShared;
use crate::error::CudaCall;
use cudarc::driver::sys;
use reef_exec::ExecError;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// One host-mapped u32, zero when made.
pub(crate) struct ToldWord {
    shared: Arc<DeviceShared>,
    host: *mut u32,
    dev: u64,
}

// SAFETY: the pointer is to a pinned allocation this value owns and frees
// once (Drop); the host only loads it atomically, so any thread may hold it.
unsafe impl Send for ToldWord {}

impl ToldWord {
    /// Allocates the word for a lane of `shared`.
    pub fn new(shared: &Arc<DeviceShared>) -> Result<ToldWord, ExecError> {
        shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut host: *mut c_void = std::ptr::null_mut();
        // SAFETY: `host` is a valid out-pointer; the allocation is freed once
        // in Drop.
        unsafe {
            sys::cuMemHostAlloc(
                &mut host,
                64,
                sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE,
            )
        }
        .result()
        .call("cuMemHostAlloc(told word)")?;
        let mut word = ToldWord {
            shared: shared.clone(),
            host: host.cast::<u32>(),
            dev: 0,
        };
        // SAFETY: `host` is 64 live, 4-byte aligned bytes owned by `word`.
        unsafe { AtomicU32::from_ptr(word.host) }.store(0, Ordering::SeqCst);
        let mut dev: sys::CUdeviceptr = 0;
        // SAFETY: `host` is a live DEVICEMAP allocation of this process;
        // `dev` is a valid out-pointer.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host, 0) }
            .result()
            .call("cuMemHostGetDevicePointer(told word)")?;
        word.dev = dev;
        Ok(word)
    }

    /// The address kernels write it at.
    pub fn device_ptr(&self) -> u64 {
        self.dev
    }

    /// The last launch number a kernel wrote (acquire: a word seen is a
    /// write the device made before it).
    pub fn load(&self) -> u32 {
        // SAFETY: `host` is 64 live, 4-byte aligned bytes owned by `self`;
        // the device writes it whole (one aligned 4-byte store).
        unsafe { AtomicU32::from_ptr(self.host) }.load(Ordering::Acquire)
    }
}

impl Drop for ToldWord {
    fn drop(&mut self) {
        let r = self
            .shared
            .ctx
            .bind_to_thread()
            .call("cuCtxSetCurrent")
            .and_then(|()| {
                // SAFETY: `host` came from cuMemHostAlloc and is freed once,
                // here; the lane that owns the word synchronized its stream
                // before dropping it (no kernel still writes it).
                unsafe { sys::cuMemFreeHost(self.host.cast::<c_void>()) }
                    .result()
                    .call("cuMemFreeHost(told word)")
            });
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    }
}
