//! CUDA IPC memory, both sides of Triton's CUDA shared memory.
//!
//! - [`CudaIpcRegion`]: the server side. A client's exported allocation,
//!   mapped into a device's primary context with `cuIpcOpenMemHandle`;
//!   contexts copy inputs from it device to device (queued, not waited
//!   for: the kernels that read them follow on the lane), front ends write
//!   outputs into it. Unmapped (`cuIpcCloseMemHandle`) when the last holder
//!   drops it, so a request in flight keeps its region mapped after an
//!   unregister.
//! - [`IpcBuffer`]: the client side, for benchmarks and tests: a
//!   `cuMemAlloc` allocation on a GPU with its IPC handle, written and read
//!   from host memory.
//!
//! The CUDA driver maps a handle only in a process other than the one that
//! exported it (and in one context per device per exporting process).

use crate::error::CudaCall;
use cudarc::driver::{result, sys, CudaContext, CudaStream, DriverError};
use reef_exec::shared::{check_span, IPC_HANDLE_BYTES};
use reef_exec::{ExecError, SharedRegion};
use std::any::Any;
use std::sync::Arc;

/// `byte_size` bytes of device memory at `ptr` in `ctx`, copied to and
/// from host memory (on `stream` where there is one, else on the context's
/// legacy default stream); released by its owner's `Drop`.
struct DeviceBytes {
    ctx: Arc<CudaContext>,
    ptr: sys::CUdeviceptr,
    byte_size: usize,
    stream: Option<Arc<CudaStream>>,
}

impl std::fmt::Debug for DeviceBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBytes")
            .field("device", &self.ctx.ordinal())
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("byte_size", &self.byte_size)
            .finish()
    }
}

impl DeviceBytes {
    /// Device address of byte `offset` (checked by the caller).
    fn at(&self, offset: usize) -> sys::CUdeviceptr {
        self.ptr + offset as u64
    }

    /// Copies `out.len()` bytes at `offset` to host memory; `what` names
    /// the memory in errors.
    fn read(&self, what: &str, offset: usize, out: &mut [u8]) -> reef_exec::Result<()> {
        check_span(
            &format!("read of {what}"),
            self.byte_size,
            offset,
            out.len(),
        )?;
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        match &self.stream {
            Some(s) => {
                // SAFETY: the span lies in the memory (checked above), which
                // its owner keeps alive while `self` exists; `out` stays
                // borrowed until the synchronize below.
                unsafe { result::memcpy_dtoh_async(out, self.at(offset), s.cu_stream()) }
                    .call(&format!("cuMemcpyDtoHAsync({what})"))?;
                s.synchronize().call("cuStreamSynchronize(IPC copies)")
            }
            // SAFETY: as above.
            None => unsafe { result::memcpy_dtoh_sync(out, self.at(offset)) }
                .call(&format!("cuMemcpyDtoH({what})")),
        }
    }

    /// Copies `bytes` from host memory to `offset`.
    fn write(&self, what: &str, offset: usize, bytes: &[u8]) -> reef_exec::Result<()> {
        check_span(
            &format!("write of {what}"),
            self.byte_size,
            offset,
            bytes.len(),
        )?;
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        match &self.stream {
            Some(s) => {
                // SAFETY: as in `read`; `bytes` stays borrowed until the
                // synchronize below.
                unsafe { result::memcpy_htod_async(self.at(offset), bytes, s.cu_stream()) }
                    .call(&format!("cuMemcpyHtoDAsync({what})"))?;
                s.synchronize().call("cuStreamSynchronize(IPC copies)")
            }
            // SAFETY: as in `read`.
            None => unsafe { result::memcpy_htod_sync(self.at(offset), bytes) }
                .call(&format!("cuMemcpyHtoD({what})")),
        }
    }

    /// Runs `release` on the memory in its context (for `Drop`: a failure
    /// is logged, not returned).
    fn release(
        &self,
        call: &str,
        release: impl FnOnce(sys::CUdeviceptr) -> Result<(), DriverError>,
    ) {
        let r = self
            .ctx
            .bind_to_thread()
            .call("cuCtxSetCurrent")
            .and_then(|()| release(self.ptr).call(call));
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    }
}

/// A client's device allocation mapped into this process.
#[derive(Debug)]
pub struct CudaIpcRegion {
    mem: DeviceBytes,
}

/// The handle type from its raw bytes (exactly [`IPC_HANDLE_BYTES`]).
fn handle_from(raw: &[u8]) -> reef_exec::Result<sys::CUipcMemHandle> {
    if raw.len() != IPC_HANDLE_BYTES {
        return Err(ExecError::Invalid(format!(
            "a CUDA IPC memory handle has {IPC_HANDLE_BYTES} bytes, got {}",
            raw.len()
        )));
    }
    let mut reserved = [0 as std::ffi::c_char; IPC_HANDLE_BYTES];
    for (r, &b) in reserved.iter_mut().zip(raw) {
        *r = b as std::ffi::c_char;
    }
    Ok(sys::CUipcMemHandle_st { reserved })
}

impl CudaIpcRegion {
    /// Maps the allocation of `raw_handle` into `ctx` and checks that it
    /// holds `byte_size` bytes.
    pub fn open(
        ctx: Arc<CudaContext>,
        raw_handle: &[u8],
        byte_size: usize,
    ) -> reef_exec::Result<Self> {
        let handle = handle_from(raw_handle)?;
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut ptr: sys::CUdeviceptr = 0;
        // SAFETY: `ptr` is a valid out-pointer; the driver validates the
        // handle and fails on one it cannot map (garbage, same process, a
        // freed allocation).
        unsafe {
            sys::cuIpcOpenMemHandle_v2(
                &mut ptr,
                handle,
                sys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32,
            )
        }
        .result()
        .map_err(|e| {
            ExecError::Invalid(format!(
                "cannot map the CUDA IPC handle on device {} (cuIpcOpenMemHandle: {e}; \
                 the handle must come from cudaIpcGetMemHandle in another process, \
                 for memory that is still allocated)",
                ctx.ordinal()
            ))
        })?;
        let region = CudaIpcRegion {
            mem: DeviceBytes {
                ctx,
                ptr,
                byte_size,
                // The front end's output copies: small, one per request.
                stream: None,
            },
        };
        let mut base: sys::CUdeviceptr = 0;
        let mut size = 0usize;
        // SAFETY: out-pointers are valid; `ptr` is a mapped address.
        unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr) }
            .result()
            .call("cuMemGetAddressRange(shared region)")?;
        let usable = (base + size as u64).saturating_sub(ptr) as usize;
        if byte_size > usable {
            // `region` drops here and unmaps the handle.
            return Err(ExecError::Invalid(format!(
                "byte size {byte_size} exceeds the shared allocation's {usable} bytes"
            )));
        }
        Ok(region)
    }

    /// Copies `len` bytes at `offset` to `dst` in `dst_ctx` on `stream`.
    /// Device to device in one context the copy is only queued, and the
    /// answer is `true`: the caller orders the copy's readers after it on
    /// `stream` (the region stays mapped until it has run: `Drop` waits for
    /// the context first). Peer to peer across devices it is waited for,
    /// and the answer is `false`.
    pub(crate) fn copy_to(
        &self,
        what: &str,
        offset: usize,
        len: usize,
        dst_ctx: &CudaContext,
        dst: sys::CUdeviceptr,
        stream: sys::CUstream,
    ) -> reef_exec::Result<bool> {
        let src = &self.mem;
        check_span(what, src.byte_size, offset, len)?;
        dst_ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        if dst_ctx.cu_ctx() == src.ctx.cu_ctx() {
            if len > 0 {
                // SAFETY: the span lies in the mapped region (checked
                // above), the destination is the caller's allocation of
                // `len` bytes, and the mapping outlives the queued copy
                // (`Drop` synchronizes the context before unmapping).
                unsafe { result::memcpy_dtod_async(dst, src.at(offset), len, stream) }
                    .call("cuMemcpyDtoDAsync(shared input)")?;
            }
            return Ok(true);
        }
        if len > 0 {
            // SAFETY: as above, across the two contexts; waited for below.
            unsafe {
                result::memcpy_peer_async(
                    dst_ctx.cu_ctx(),
                    dst,
                    src.ctx.cu_ctx(),
                    src.at(offset),
                    len,
                    stream,
                )
            }
            .call("cuMemcpyPeerAsync(shared input)")?;
        }
        // SAFETY: `stream` is the caller's live stream in `dst_ctx`.
        unsafe { result::stream::synchronize(stream) }.call("cuStreamSynchronize")?;
        Ok(false)
    }
}

impl SharedRegion for CudaIpcRegion {
    fn byte_size(&self) -> usize {
        self.mem.byte_size
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> reef_exec::Result<()> {
        self.mem.read("shared region", offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> reef_exec::Result<()> {
        self.mem.write("shared region", offset, bytes)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for CudaIpcRegion {
    fn drop(&mut self) {
        // Copies out of the region may still be queued (`copy_to`): the
        // context's work finishes before the unmap. Only the last holder
        // of a region unmaps it, after an unregister, so this wait is rare.
        // SAFETY: the address came from cuIpcOpenMemHandle in this context
        // and is closed once, here; no holder is left to queue more copies.
        self.mem.release("cuIpcCloseMemHandle", |ptr| unsafe {
            sys::cuCtxSynchronize()
                .result()
                .and_then(|()| sys::cuIpcCloseMemHandle(ptr).result())
        });
    }
}

/// A device allocation exported for another process (the client side of
/// CUDA shared memory).
#[derive(Debug)]
pub struct IpcBuffer {
    mem: DeviceBytes,
    handle: [u8; IPC_HANDLE_BYTES],
}

impl IpcBuffer {
    /// Allocates `byte_size` bytes (at least one) on GPU `ordinal` and
    /// exports them.
    pub fn new(ordinal: usize, byte_size: usize) -> reef_exec::Result<Self> {
        crate::device::driver_ready()?;
        let ctx = CudaContext::new(ordinal).call("cuDevicePrimaryCtxRetain")?;
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // Copies on a stream of the buffer's own, so that copies to and from
        // different buffers (one thread each) overlap instead of queueing on
        // the context's legacy default stream.
        let stream = ctx.new_stream().call("cuStreamCreate(IPC buffer)")?;
        // SAFETY: a plain allocation in the bound context, freed on drop.
        let ptr = unsafe { result::malloc_sync(byte_size.max(1)) }.call("cuMemAlloc")?;
        let mut buf = IpcBuffer {
            mem: DeviceBytes {
                ctx,
                ptr,
                byte_size,
                stream: Some(stream),
            },
            handle: [0; IPC_HANDLE_BYTES],
        };
        let mut handle = sys::CUipcMemHandle_st {
            reserved: [0; IPC_HANDLE_BYTES],
        };
        // SAFETY: `ptr` is a live cuMemAlloc allocation; `handle` is a
        // valid out-pointer.
        unsafe { sys::cuIpcGetMemHandle(&mut handle, ptr) }
            .result()
            .call("cuIpcGetMemHandle")?;
        for (h, &r) in buf.handle.iter_mut().zip(handle.reserved.iter()) {
            *h = r as u8;
        }
        Ok(buf)
    }

    /// The raw IPC handle to register with a server.
    pub fn raw_handle(&self) -> &[u8] {
        &self.handle
    }

    /// The GPU it lives on.
    pub fn device(&self) -> usize {
        self.mem.ctx.ordinal()
    }

    /// Size, bytes.
    pub fn byte_size(&self) -> usize {
        self.mem.byte_size
    }

    /// Copies `bytes` from host memory to `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> reef_exec::Result<()> {
        self.mem.write("IPC buffer", offset, bytes)
    }

    /// Copies `out.len()` bytes at `offset` to host memory.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> reef_exec::Result<()> {
        self.mem.read("IPC buffer", offset, out)
    }
}

impl Drop for IpcBuffer {
    fn drop(&mut self) {
        // SAFETY: the address is this buffer's allocation, freed once, here.
        self.mem.release("cuMemFree(IPC buffer)", |ptr| unsafe {
            result::free_sync(ptr)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_have_64_bytes() {
        assert!(handle_from(&[7u8; 64]).is_ok());
        let e = handle_from(&[0u8; 63]).unwrap_err().to_string();
        assert!(e.contains("64 bytes, got 63"), "{e}");
        assert!(handle_from(&[]).is_err());
    }
}
