//! Host memory: 8-byte aligned storage for weights and arenas, typed views of
//! raw bytes, and the split of one kernel's buffers into read-only inputs and
//! its (disjoint) mutable output.

use crate::{ExecError, Result};
use bytemuck::Pod;
use reef_plan::kernel::Kernel;
use reef_plan::plan::{Buffer, Loc};
use reef_plan::Plan;

/// Zeroed storage of at least `bytes` bytes, aligned to 8 bytes.
pub(crate) fn zeroed_words(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(8)]
}

/// A copy of `bytes` in 8-byte aligned storage.
pub(crate) fn aligned_copy(bytes: &[u8]) -> Vec<u64> {
    let mut words = zeroed_words(bytes.len());
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

/// The first `len` bytes of aligned storage.
pub(crate) fn bytes_of(words: &[u64], len: usize) -> &[u8] {
    let all = bytemuck::cast_slice::<u64, u8>(words);
    &all[..len.min(all.len())]
}

/// The first `len` bytes of aligned storage, mutably.
pub(crate) fn bytes_of_mut(words: &mut [u64], len: usize) -> &mut [u8] {
    let all = bytemuck::cast_slice_mut::<u64, u8>(words);
    let len = len.min(all.len());
    &mut all[..len]
}

/// Views raw bytes as a slice of `T` (fails on misalignment or a length that
/// is not a multiple of `size_of::<T>()`).
pub fn typed<T: Pod>(bytes: &[u8]) -> Result<&[T]> {
    // An empty view is valid wherever it points (a zero-size tensor's
    // buffer may sit at any offset).
    if bytes.is_empty() {
        return Ok(&[]);
    }
    bytemuck::try_cast_slice(bytes).map_err(|e| {
        ExecError::Invalid(format!(
            "cannot view {} bytes as {}: {e}",
            bytes.len(),
            std::any::type_name::<T>()
        ))
    })
}

/// Views raw bytes as a mutable slice of `T`.
pub fn typed_mut<T: Pod>(bytes: &mut [u8]) -> Result<&mut [T]> {
    let len = bytes.len();
    if len == 0 {
        return Ok(&mut []);
    }
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| {
        ExecError::Invalid(format!(
            "cannot view {len} bytes as {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// The memory one kernel touches.
pub(crate) struct KernelIo<'a> {
    /// Inputs in the op's order (read-only).
    pub inputs: Vec<&'a [u8]>,
    /// The output (never overlaps an input).
    pub output: &'a mut [u8],
}

fn buffer(plan: &Plan, id: usize) -> Result<&Buffer> {
    plan.buffers.get(id).ok_or_else(|| {
        ExecError::Invalid(format!(
            "buffer {id} out of range ({} buffers)",
            plan.buffers.len()
        ))
    })
}

/// Splits the weight blob and the arena into the kernel's inputs and output.
pub(crate) fn kernel_io<'a>(
    plan: &Plan,
    kernel: &Kernel,
    weights: &'a [u8],
    arena: &'a mut [u8],
) -> Result<KernelIo<'a>> {
    let out = buffer(plan, kernel.output)?;
    let Loc::Arena(out_off) = out.loc else {
        return Err(ExecError::Invalid(format!(
            "kernel {}: output {} is in the weights",
            kernel.name, out.name
        )));
    };
    let out_len = out.bytes();
    let arena_len = arena.len();
    let out_end = out_off
        .checked_add(out_len)
        .filter(|&e| e <= arena_len)
        .ok_or_else(|| {
            ExecError::Invalid(format!(
                "kernel {}: output {} exceeds the arena",
                kernel.name, out.name
            ))
        })?;
    let (before, rest) = arena.split_at_mut(out_off);
    let (output, after) = rest.split_at_mut(out_len);
    let (before, after): (&'a [u8], &'a [u8]) = (before, after);
    let mut inputs = Vec::with_capacity(kernel.inputs.len());
    for &id in &kernel.inputs {
        let b = buffer(plan, id)?;
        let len = b.bytes();
        let region = match b.loc {
            Loc::Weight(off) => off.checked_add(len).and_then(|end| weights.get(off..end)),
            Loc::Arena(off) => {
                let end = off.checked_add(len);
                match end {
                    Some(end) if end <= out_off || len == 0 => {
                        before.get(off..end).or(Some(&[][..]))
                    }
                    Some(end) if off >= out_end => after.get(off - out_end..end - out_end),
                    Some(_) => {
                        return Err(ExecError::Invalid(format!(
                            "kernel {}: input {} overlaps its output {}",
                            kernel.name, b.name, out.name
                        )))
                    }
                    None => None,
                }
            }
        };
        let region = region.ok_or_else(|| {
            ExecError::Invalid(format!(
                "kernel {}: input {} lies outside its memory",
                kernel.name, b.name
            ))
        })?;
        inputs.push(region);
    }
    Ok(KernelIo { inputs, output })
}
