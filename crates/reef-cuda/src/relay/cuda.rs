//! The relay on a GPU: its words in pinned host memory mapped into the
//! device ([`PinnedWords`]) and its instances as `reef_relay` launches on
//! two streams of the highest priority ([`CudaSpawn`]).

use super::{Relay, RelayParams, Spawn, Words, SLOT_BYTES};
use crate::error::CudaCall;
use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaStream};
use reef_exec::ExecError;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

/// The relay of a CUDA device.
pub(crate) type CudaRelay = Relay<PinnedWords, CudaSpawn>;

/// `2 * SLOT_BYTES` bytes of pinned host memory, mapped into the device.
pub(crate) struct PinnedWords {
    ctx: Arc<CudaContext>,
    host: *mut u8,
    dev: u64,
}

// SAFETY: `host` points to a pinned allocation this value owns and frees once
// (Drop); it is only accessed through atomics.
unsafe impl Send for PinnedWords {}

impl PinnedWords {
    /// Allocates the words on `ctx`.
    pub fn new(ctx: &Arc<CudaContext>) -> Result<PinnedWords, ExecError> {
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut host: *mut c_void = std::ptr::null_mut();
        // SAFETY: `host` is a valid out-pointer; the allocation is freed once
        // in Drop.
        unsafe {
            sys::cuMemHostAlloc(
                &mut host,
                2 * SLOT_BYTES,
                sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE,
            )
        }
        .result()
        .call("cuMemHostAlloc(relay words)")?;
        let mut words = PinnedWords {
            ctx: ctx.clone(),
            host: host.cast::<u8>(),
            dev: 0,
        };
        let mut dev: sys::CUdeviceptr = 0;
        // SAFETY: `host` is a live DEVICEMAP allocation of this process;
        // `dev` is a valid out-pointer.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host, 0) }
            .result()
            .call("cuMemHostGetDevicePointer(relay words)")?;
        words.dev = dev;
        Ok(words)
    }
}

impl Words for PinnedWords {
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= 2 * SLOT_BYTES);
        // SAFETY: in bounds of the live, page-aligned allocation and 4-byte
        // aligned (checked above); the device writes these words whole, the
        // host only through atomics.
        unsafe { AtomicU32::from_ptr(self.host.add(offset).cast::<u32>()) }
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= 2 * SLOT_BYTES);
        // SAFETY: as `u32_at`, 8-byte aligned; the device only reads it.
        unsafe { AtomicU64::from_ptr(self.host.add(offset).cast::<u64>()) }
    }

    fn device_base(&self) -> u64 {
        self.dev
    }
}

impl Drop for PinnedWords {
    fn drop(&mut self) {
        let r = self
            .ctx
            .bind_to_thread()
            .call("cuCtxSetCurrent")
            .and_then(|()| {
                // SAFETY: `host` came from cuMemHostAlloc and is freed once,
                // here; the relay that owned these words waited for its
                // kernels first (Relay's Drop runs before its fields').
                unsafe { sys::cuMemFreeHost(self.host.cast::<c_void>()) }
                    .result()
                    .call("cuMemFreeHost(relay words)")
            });
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    }
}

/// Launches `reef_relay` (one block of 32 threads; its thread 0 works) on
/// the slot's stream.
pub(crate) struct CudaSpawn {
    ctx: Arc<CudaContext>,
    func: CudaFunction,
    streams: [Arc<CudaStream>; 2],
}

impl CudaSpawn {
    /// Two streams at `priority` (the greatest) for `func` (`reef_relay`).
    pub fn new(
        ctx: &Arc<CudaContext>,
        func: CudaFunction,
        priority: i32,
    ) -> Result<CudaSpawn, ExecError> {
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let stream = || {
            ctx.new_stream_with_priority(priority)
                .call("cuStreamCreateWithPriority(relay)")
        };
        Ok(CudaSpawn {
            ctx: ctx.clone(),
            func,
            streams: [stream()?, stream()?],
        })
    }
}

impl Spawn for CudaSpawn {
    fn spawn(&mut self, slot: usize, params: &RelayParams) -> Result<(), ExecError> {
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut params = *params;
        let mut args = [(&mut params as *mut RelayParams).cast::<c_void>()];
        // SAFETY: reef_relay takes one by-value RelayParams, whose C layout
        // this struct mirrors (a test checks the size); the driver copies it
        // before returning. Its addresses are the relay's mapped words (live
        // until the relay's Drop has waited for both streams) and live lane
        // flags (a lane settles the relay before its flag is freed).
        unsafe {
            result::launch_kernel(
                self.func.cu_function(),
                (1, 1, 1),
                (32, 1, 1),
                0,
                self.streams[slot].cu_stream(),
                &mut args,
            )
        }
        .map_err(|e| ExecError::Cuda(format!("cuLaunchKernel(reef_relay): {e}")))
    }

    fn finish(&mut self) -> Result<(), ExecError> {
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        for s in &self.streams {
            s.synchronize().call("cuStreamSynchronize(relay)")?;
        }
        Ok(())
    }
}
