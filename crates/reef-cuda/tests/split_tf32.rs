//! Why `REEF_PRECISION=tf32x3` works, shown on the CPU (no GPU needed): an
//! emulation of the arithmetic of the tensor-core kernels.
//!
//! - `cvt.rna.tf32.f32` keeps the top 10 of f32's 23 mantissa bits, rounding
//!   to nearest with ties away from zero on the 13 dropped bits.
//! - A TF32 x TF32 product (11 x 11 significant bits) is exact in f32, and
//!   `mma.sync` accumulates in f32.
//! - Split TF32: `x = hi + lo`, `hi = tf32(x)`, `lo = tf32(x - hi)` (the
//!   subtraction is exact), and `acc += a_hi*b_lo; acc += a_lo*b_hi;
//!   acc += a_hi*b_hi`; only `a_lo*b_lo` (about 2^-22 relative) and the
//!   rounding of `lo` to 11 bits are lost, so the products are good to about
//!   21 bits and what remains is f32's own accumulation error. (The
//!   kernels sum the three products of each K step of 8 into a zeroed
//!   partial and add that to the accumulator with an IEEE add, because the
//!   tensor cores' own accumulation truncates; the sequential round-to-
//!   nearest sum here models that.)
//!
//! Over dot products of K = 4608 (ResNet's largest 3x3 convolution) the
//! emulated 1xTF32 error is around 1e-4 relative while 3xTF32 stays around
//! 1e-6, like plain f32 accumulation.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `cvt.rna.tf32.f32`: round to nearest, ties away from zero, to 10
/// mantissa bits (the low 13 bits cleared). Infinities and NaNs pass
/// through. The CPU backend's TF32 mode uses the same function.
fn tf32(x: f32) -> f32 {
    reef_exec::cpu::round_tf32(x)
}

/// `(hi, lo)` with `hi = tf32(x)`, `lo = tf32(x - hi)`.
fn split(x: f32) -> (f32, f32) {
    let hi = tf32(x);
    (hi, tf32(x - hi))
}

/// 1xTF32: f32 accumulation of exact products of rounded operands.
fn dot_tf32(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0f32, |acc, (&x, &y)| acc + tf32(x) * tf32(y))
}

/// 3xTF32, in the kernels' order: small terms first, each added to the
/// f32 accumulator.
fn dot_tf32x3(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |mut acc, (&x, &y)| {
        let ((ah, al), (bh, bl)) = (split(x), split(y));
        acc += ah * bl;
        acc += al * bh;
        acc + ah * bh
    })
}

/// Plain f32 (the FFMA core: fused multiply-add into an f32 accumulator).
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0f32, |acc, (&x, &y)| x.mul_add(y, acc))
}

fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Relative L2 error of `got` against `want`.
fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den).sqrt()
}

#[test]
fn tf32_rounding_is_round_to_nearest_away() {
    // 1 + 2^-11 is exactly half a TF32 unit above 1: rounds away, to 1 + 2^-10.
    let half = 1.0 + f32::powi(2.0, -11);
    assert_eq!(tf32(half), 1.0 + f32::powi(2.0, -10));
    assert_eq!(tf32(-half), -(1.0 + f32::powi(2.0, -10)));
    // Just below half a unit: rounds down.
    let below = f32::from_bits(half.to_bits() - 1);
    assert_eq!(tf32(below), 1.0);
    // Carry into the exponent; overflow to infinity; specials unchanged.
    assert_eq!(tf32(f32::from_bits(0x3fff_ffff)), 2.0);
    assert_eq!(tf32(f32::MAX), f32::INFINITY);
    assert!(tf32(f32::NAN).is_nan());
    assert_eq!(tf32(0.0).to_bits(), 0);
    // The result has 10 mantissa bits, and the split is exact to ~2^-21.
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..10_000 {
        let x: f32 = rng.random_range(-100.0f32..100.0);
        let (hi, lo) = split(x);
        assert_eq!(hi.to_bits() & 0x1fff, 0);
        assert_eq!(lo.to_bits() & 0x1fff, 0);
        assert!((tf32(x) - x).abs() <= x.abs() * f32::powi(2.0, -11));
        assert_eq!((x - hi) as f64, x as f64 - hi as f64, "x - hi is exact");
        let rest = (x as f64 - hi as f64 - lo as f64).abs();
        assert!(rest <= x.abs() as f64 * 2f64.powi(-21), "{x}: {rest}");
    }
}

#[test]
fn split_tf32_dot_products_are_close_to_f32() {
    const K: usize = 4608;
    const DOTS: usize = 64;
    let mut rng = StdRng::seed_from_u64(42);
    let (mut g1, mut g3, mut gf, mut want) = (vec![], vec![], vec![], vec![]);
    for _ in 0..DOTS {
        let a: Vec<f32> = (0..K).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let b: Vec<f32> = (0..K).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        g1.push(dot_tf32(&a, &b));
        g3.push(dot_tf32x3(&a, &b));
        gf.push(dot_f32(&a, &b));
        want.push(dot_f64(&a, &b));
    }
    let (e1, e3, ef) = (rel_l2(&g1, &want), rel_l2(&g3, &want), rel_l2(&gf, &want));
    println!("K = {K}, {DOTS} dots, rel L2 vs f64: tf32 {e1:.2e}, tf32x3 {e3:.2e}, f32 {ef:.2e}");
    // 1xTF32: each operand is off by up to 2^-11 relative.
    assert!(e1 > 3e-5 && e1 < 1e-3, "tf32 {e1}");
    // 3xTF32: at the level of f32 accumulation itself.
    assert!(e3 < 5e-6, "tf32x3 {e3}");
    assert!(e3 < 3.0 * ef.max(1e-7), "tf32x3 {e3} vs f32 {ef}");
    assert!(e1 > 20.0 * e3, "tf32 {e1} vs tf32x3 {e3}");
}
