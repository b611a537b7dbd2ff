//! [`MappedHost`]: pinned host memory mapped into a device's address space
//! (`cuMemHostAlloc` with `DEVICEMAP | PORTABLE`), which the host reads and
//! writes only as atomics: the lanes' told words and the preemption
//! relay's words.

use crate::error::CudaCall;
use cudarc::driver::{sys, CudaContext};
use reef_exec::ExecError;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

/// Zeroed, page-aligned, host-mapped pinned bytes, freed on drop. Whoever
/// owns it makes sure no kernel still reads or writes it by then.
pub(crate) struct MappedHost {
    ctx: Arc<CudaContext>,
    host: *mut u8,
    bytes: usize,
    dev: u64,
}

// SAFETY: `host` points to a pinned allocation this value owns and frees once
// (Drop); it is only accessed through atomics, so any thread may hold it.
unsafe impl Send for MappedHost {}

impl MappedHost {
    /// Allocates `bytes` on `ctx`, zeroed; `what` names them in errors.
    pub fn new(ctx: &Arc<CudaContext>, bytes: usize, what: &str) -> Result<MappedHost, ExecError> {
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut host: *mut c_void = std::ptr::null_mut();
        // SAFETY: `host` is a valid out-pointer; the allocation is freed once
        // in Drop.
        unsafe {
            sys::cuMemHostAlloc(
                &mut host,
                bytes,
                sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE,
            )
        }
        .result()
        .call(&format!("cuMemHostAlloc({what})"))?;
        let mut mapped = MappedHost {
            ctx: ctx.clone(),
            host: host.cast::<u8>(),
            bytes,
            dev: 0,
        };
        // SAFETY: `host` holds `bytes` live bytes owned by `mapped`, which no
        // device has been given yet.
        unsafe { std::ptr::write_bytes(mapped.host, 0, bytes) };
        let mut dev: sys::CUdeviceptr = 0;
        // SAFETY: `host` is a live DEVICEMAP allocation of this process;
        // `dev` is a valid out-pointer.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host, 0) }
            .result()
            .call(&format!("cuMemHostGetDevicePointer({what})"))?;
        mapped.dev = dev;
        Ok(mapped)
    }

    /// The u32 at byte `offset` (a multiple of 4, inside the allocation).
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.bytes);
        // SAFETY: in bounds of the live, page-aligned allocation and 4-byte
        // aligned (checked above); devices write such words whole, the host
        // only through atomics.
        unsafe { AtomicU32::from_ptr(self.host.add(offset).cast::<u32>()) }
    }

    /// The u64 at byte `offset` (a multiple of 8, inside the allocation).
    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.bytes);
        // SAFETY: as `u32_at`, 8-byte aligned.
        unsafe { AtomicU64::from_ptr(self.host.add(offset).cast::<u64>()) }
    }

    /// The address devices use for the first byte.
    pub fn device_ptr(&self) -> u64 {
        self.dev
    }
}

impl Drop for MappedHost {
    fn drop(&mut self) {
        let r = self
            .ctx
            .bind_to_thread()
            .call("cuCtxSetCurrent")
            .and_then(|()| {
                // SAFETY: `host` came from cuMemHostAlloc and is freed once,
                // here; the owner made sure no kernel still uses it.
                unsafe { sys::cuMemFreeHost(self.host.cast::<c_void>()) }
                    .result()
                    .call("cuMemFreeHost(mapped host memory)")
            });
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    }
}
