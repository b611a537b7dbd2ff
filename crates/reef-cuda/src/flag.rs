//! A lane's preemption flag: the i32 its BE kernels read at every block's
//! entry and between GEMM K steps, in one of two places
//! ([`CudaOptions::host_flags`](crate::CudaOptions::host_flags)):
//!
//! - device memory (the default), written by stream memory operations on the
//!   device's high-priority control stream: the kernels' reads hit the L2,
//!   and a raise reaches them once the GPU's front end runs the write;
//! - host-mapped pinned memory (`cuMemHostAlloc` with `DEVICEMAP`), written
//!   by a plain host store: a raise is visible as soon as the store leaves
//!   the CPU, and every kernel read crosses PCIe.

use crate::device::DeviceShared;
use crate::error::CudaCall;
use crate::memory::DeviceBuffer;
use cudarc::driver::sys;
use reef_exec::ExecError;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A preemption flag, down when made.
pub(crate) enum Flag {
    Device(DeviceBuffer),
    Mapped(MappedWord),
}

impl Flag {
    /// A flag for a lane of `shared`, in host-mapped memory when `mapped`.
    pub fn new(shared: &Arc<DeviceShared>, mapped: bool) -> Result<Flag, ExecError> {
        if mapped {
            return Ok(Flag::Mapped(MappedWord::new(shared)?));
        }
        let ctx = &shared.ctx;
        let flag = DeviceBuffer::alloc(ctx, 4)?;
        let control = &shared.control;
        // SAFETY: the flag allocation holds at least one u32.
        unsafe { sys::cuMemsetD32Async(flag.ptr(), 0, 1, control.cu_stream()).result() }
            .call("cuMemsetD32Async(flag)")?;
        control.synchronize().call("cuStreamSynchronize(control)")?;
        Ok(Flag::Device(flag))
    }

    /// The address kernels read it at.
    pub fn device_ptr(&self) -> u64 {
        match self {
            Flag::Device(b) => b.ptr(),
            Flag::Mapped(m) => m.dev,
        }
    }

    /// The device address a stream write raises it at (device flags only:
    /// a mapped flag is raised by the host).
    pub fn stream_address(&self) -> Option<u64> {
        match self {
            Flag::Device(b) => Some(b.ptr()),
            Flag::Mapped(_) => None,
        }
    }
}

/// One u32 of pinned host memory mapped into the device's address space.
pub(crate) struct MappedWord {
    shared: Arc<DeviceShared>,
    host: *mut u32,
    dev: u64,
}

// SAFETY: the pointer is to a pinned allocation this value owns and frees
// once (Drop); the word is only accessed through atomics, so any thread may
// hold and write it.
unsafe impl Send for MappedWord {}

impl MappedWord {
    fn new(shared: &Arc<DeviceShared>) -> Result<MappedWord, ExecError> {
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
        .call("cuMemHostAlloc(preemption flag)")?;
        let mut word = MappedWord {
            shared: shared.clone(),
            host: host.cast::<u32>(),
            dev: 0,
        };
        word.store(0);
        let mut dev: sys::CUdeviceptr = 0;
        // SAFETY: `host` is a live DEVICEMAP allocation of this context's
        // process; `dev` is a valid out-pointer.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host, 0) }
            .result()
            .call("cuMemHostGetDevicePointer(preemption flag)")?;
        word.dev = dev;
        Ok(word)
    }

    /// Writes the word: a sequentially consistent store, so it is globally
    /// visible (to the device's PCIe reads too) before any later launch of
    /// this thread reaches the GPU.
    pub fn store(&self, v: u32) {
        // SAFETY: `host` is 64 live, 4-byte aligned bytes owned by `self`,
        // accessed only atomically.
        let word = unsafe { AtomicU32::from_ptr(self.host) };
        word.store(v, Ordering::SeqCst);
    }
}

impl Drop for MappedWord {
    fn drop(&mut self) {
        let r = self
            .shared
            .ctx
            .bind_to_thread()
            .call("cuCtxSetCurrent")
            .and_then(|()| {
                // SAFETY: `host` came from cuMemHostAlloc and is freed once,
                // here; the lane that owns the flag synchronized its stream
                // before dropping (no kernel still reads it).
                unsafe { sys::cuMemFreeHost(self.host.cast::<c_void>()) }
                    .result()
                    .call("cuMemFreeHost(preemption flag)")
            });
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    }
}
