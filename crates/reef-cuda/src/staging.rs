//! Staged uploads of large inputs from pageable host memory.
//!
//! A request's input usually lives in ordinary (pageable) host memory, and
//! the driver copies such memory to the device through staging buffers of
//! its own: an image's 602 KB took 96-121 us on the H100 as the RT input
//! write (docs/PERF.md, Session 29), against 24-25 us from page-locked
//! memory. A context with [`Staging`] copies the input into a page-locked,
//! write-combined buffer of its own, chunk by chunk, and starts each
//! chunk's DMA as soon as it is in, so the host's copy of one chunk
//! overlaps the device's transfer of the one before. `REEF_STAGED_INPUTS`
//! switches it ([`crate::CudaOptions::staged_inputs`]).

use crate::error::CudaCall;
use cudarc::driver::{result, sys, CudaContext};
use reef_exec::ExecError;
use std::sync::Arc;

/// Inputs smaller than this go to the driver as they are (one small copy
/// costs the driver little, and the buffer would not pay).
pub(crate) const STAGE_MIN_BYTES: usize = 64 << 10;

/// Bytes per chunk: large enough that each DMA is efficient, small enough
/// that the first DMA starts early.
const CHUNK_BYTES: usize = 128 << 10;

/// A page-locked, write-combined host buffer owned by one context.
pub(crate) struct Staging {
    ctx: Arc<CudaContext>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is host memory that this value alone owns and that is
// only reached through `&mut self`; the driver calls on it name the
// context explicitly, so the value may move to another thread.
unsafe impl Send for Staging {}

impl Staging {
    /// Allocates `len` bytes of page-locked, write-combined host memory.
    pub(crate) fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<Staging, ExecError> {
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: a plain allocation; the memory is only written before it
        // is read (by `upload`), and freed once in `Drop`.
        let ptr = unsafe { result::malloc_host(len.max(1), sys::CU_MEMHOSTALLOC_WRITECOMBINED) }
            .call("cuMemHostAlloc(input staging)")?;
        Ok(Staging {
            ctx: ctx.clone(),
            ptr: ptr.cast::<u8>(),
            len,
        })
    }

    /// The buffer's size, bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `bytes` to the device at `dst` on `stream` through the
    /// buffer, chunk by chunk, and waits for the copies (also when one
    /// fails, so that no transfer still reads the buffer afterwards).
    pub(crate) fn upload(
        &mut self,
        dst: sys::CUdeviceptr,
        bytes: &[u8],
        stream: sys::CUstream,
    ) -> Result<(), ExecError> {
        if bytes.len() > self.len {
            return Err(ExecError::Invalid(format!(
                "staged upload of {} bytes through a buffer of {}",
                bytes.len(),
                self.len
            )));
        }
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let sent = self.send_chunks(dst, bytes, stream);
        // SAFETY: `stream` is the caller's live stream in this context.
        let waited = unsafe { result::stream::synchronize(stream) }.call("cuStreamSynchronize");
        sent.and(waited)
    }

    fn send_chunks(
        &mut self,
        dst: sys::CUdeviceptr,
        bytes: &[u8],
        stream: sys::CUstream,
    ) -> Result<(), ExecError> {
        for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            let at = i * CHUNK_BYTES;
            // SAFETY: `at + chunk.len() <= bytes.len() <= self.len`, so the
            // range lies in the buffer; no transfer reads it now: each range
            // is written once per upload, and the previous upload waited for
            // its transfers.
            let stage = unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), chunk.len()) };
            stage.copy_from_slice(chunk);
            // SAFETY: `dst + at` starts the caller's range of `bytes.len()`
            // device bytes at this chunk; `stage` is page-locked and stays
            // untouched until `upload` synchronizes the stream.
            unsafe { result::memcpy_htod_async(dst + at as u64, &*stage, stream) }
                .call("cuMemcpyHtoDAsync(staged input)")?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let freed = self
            .ctx
            .bind_to_thread()
            .call("cuCtxSetCurrent")
            .and_then(|()| {
                // SAFETY: allocated by `cuMemHostAlloc` in `new`, freed once
                // here; every upload waited for its transfers before returning.
                unsafe { result::free_host(self.ptr.cast()) }.call("cuMemFreeHost(input staging)")
            });
        if let Err(e) = freed {
            tracing::warn!("{e}");
        }
    }
}
