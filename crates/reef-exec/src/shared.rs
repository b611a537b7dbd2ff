//! Device memory that another process shares with this one (Triton's CUDA
//! shared memory: a client exports a `cudaMalloc` allocation as a CUDA IPC
//! handle and the server maps it). A [`SharedRegion`] is what a device
//! opens from such a handle ([`crate::Device::open_shared`]): contexts copy
//! inputs from it without a trip through host memory
//! ([`crate::Context::write_input_shared`]), and front ends write outputs
//! into it.

use crate::Result;
use std::any::Any;

/// Length in bytes of a raw CUDA IPC memory handle (`cudaIpcMemHandle_t`).
pub const IPC_HANDLE_BYTES: usize = 64;

/// A mapped region of device memory shared by another process. The region
/// stays mapped while any holder keeps it.
pub trait SharedRegion: Send + Sync + std::fmt::Debug {
    /// Size of the region, bytes.
    fn byte_size(&self) -> usize;
    /// Copies `out.len()` bytes at `offset` into host memory.
    fn read(&self, offset: usize, out: &mut [u8]) -> Result<()>;
    /// Copies `bytes` from host memory to `offset`.
    fn write(&self, offset: usize, bytes: &[u8]) -> Result<()>;
    /// Downcasting support for backends (a context that can copy from its
    /// own kind of region device to device).
    fn as_any(&self) -> &dyn Any;
}

/// Checks that `len` bytes at `offset` lie inside a region of `size` bytes;
/// `what` names the access in the error.
pub fn check_span(what: &str, size: usize, offset: usize, len: usize) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(crate::ExecError::Invalid(format!(
            "{what}: offset {offset} + {len} bytes exceeds the shared region's {size} bytes"
        ))),
    }
}

/// Writes input `index` of `ctx` from `len` bytes at `offset` of `region`
/// through host memory: what [`crate::Context::write_input_shared`] does
/// where the backend has no direct copy.
pub fn write_input_via_host(
    ctx: &mut (impl crate::Context + ?Sized),
    index: usize,
    region: &dyn SharedRegion,
    offset: usize,
    len: usize,
) -> Result<()> {
    check_span(&format!("input {index}"), region.byte_size(), offset, len)?;
    let mut bytes = vec![0u8; len];
    region.read(offset, &mut bytes)?;
    ctx.write_input(index, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_bounded() {
        assert!(check_span("read", 16, 0, 16).is_ok());
        assert!(check_span("read", 16, 8, 8).is_ok());
        let e = check_span("read", 16, 12, 8).unwrap_err().to_string();
        assert!(e.contains("12 + 8") && e.contains("16 bytes"), "{e}");
        assert!(check_span("read", 16, usize::MAX, 2).is_err());
    }
}
