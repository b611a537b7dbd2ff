//! The relay on a GPU: its words in pinned host memory mapped into the
//! device ([`MappedHost`]) and its instances as `reef_relay` launches on
//! two streams of the highest priority ([`CudaSpawn`]).

use super::{Relay, RelayParams, Spawn, Words, SLOT_BYTES};
use crate::error::CudaCall;
use crate::mapped::MappedHost;
use cudarc::driver::{result, CudaContext, CudaFunction, CudaStream};
use reef_exec::ExecError;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

/// The relay of a CUDA device.
pub(crate) type CudaRelay = Relay<MappedHost, CudaSpawn>;

impl Words for MappedHost {
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        MappedHost::u32_at(self, offset)
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        MappedHost::u64_at(self, offset)
    }

    fn device_base(&self) -> u64 {
        self.device_ptr()
    }
}

/// The relay's words: `2 * SLOT_BYTES` host-mapped bytes on `ctx`. The
/// relay's Drop waits for its kernels before they are freed (it runs before
/// its fields' drops).
pub(crate) fn relay_words(ctx: &Arc<CudaContext>) -> Result<MappedHost, ExecError> {
    MappedHost::new(ctx, 2 * SLOT_BYTES, "relay words")
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
