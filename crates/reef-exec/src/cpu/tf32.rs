//! TF32 operand rounding: the CPU backend's emulation of the GPU's TF32
//! tensor-core GEMMs (see [`CpuDevice::with_tf32`](super::CpuDevice::with_tf32)).
//!
//! On the GPU (`REEF_PRECISION=tf32`, reef-cuda's `kernels/gemm.cu`) every
//! operand element of a tensor-core GEMM goes through `cvt.rna.tf32.f32`
//! before the `mma`; the products of two TF32 values (11 x 11 significant
//! bits) are exact in f32 and are accumulated in f32. The CPU reproduces the
//! operand rounding exactly and keeps its own f32 accumulation, so the two
//! differ only by accumulation order.

/// Rounds `x` to TF32 exactly as PTX `cvt.rna.tf32.f32` does: keep the top
/// 10 of f32's 23 mantissa bits, rounding to nearest with ties away from
/// zero on the 13 dropped bits, and return the value as an f32 (low 13 bits
/// zero).
///
/// - Finite `x`: `(bits + 0x1000) & 0xFFFF_E000`. The addition works on the
///   magnitude bits (the sign bit is never reached: the largest finite
///   magnitude is `0x7F7F_FFFF`), so it is symmetric in the sign and a tie
///   (dropped bits exactly `0x1000`) goes up in magnitude, away from zero,
///   for both signs. A carry out of the mantissa moves to the next binade,
///   which is the correctly rounded value. Subnormals round the same way (a
///   carry can make the smallest normal).
/// - Magnitudes from `0x7F7F_F000` (half a TF32 unit below `2^128`) upwards
///   round to infinity of the same sign, as round-to-nearest does when the
///   nearest representable value is beyond the largest finite TF32 value
///   `0x7F7F_E000` (the non-`.satfinite` `cvt` does not saturate).
/// - NaN and infinities pass through unchanged (the bit formula would turn
///   some NaN payloads into infinity or a signed zero).
#[inline]
pub fn round_tf32(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    f32::from_bits((x.to_bits() + 0x1000) & 0xFFFF_E000)
}

/// Rounds every element of `x` to TF32 in place.
pub(crate) fn round_slice(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = round_tf32(*v));
}
