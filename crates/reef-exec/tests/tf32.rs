//! The CPU backend's TF32 mode (`CpuDevice::with_tf32`): the rounding
//! function against the definition of `cvt.rna.tf32.f32` (round to nearest,
//! ties away from zero, to 10 mantissa bits), and convolutions and matmuls
//! that round exactly the operands the GPU's TF32 tensor cores round (both
//! GEMM operands; not bias, residual or padding; not convolutions with
//! c/groups == 1, which the GPU runs as direct f32 kernels).

mod common;

use common::*;
use rand::Rng;
use reef_exec::cpu::round_tf32;
use reef_exec::Variant;
use reef_model::{Act, DType};
use reef_plan::kernel::{ConvSpec, KernelOp, MatMulSpec};
use reef_plan::Plan;
use std::sync::Arc;

// ---------------------------------------------------------------- rounding

/// An independent reference: the nearest of the two TF32 neighbours of `x`,
/// compared in f64, a tie going to the larger magnitude. Above the largest
/// finite TF32 value the upper neighbour is 2^128 (an unbounded exponent),
/// which becomes infinity, as IEEE round-to-nearest overflows.
fn tf32_ref(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    let bits = x.to_bits();
    let (sign, mag) = (bits & 0x8000_0000, bits & 0x7FFF_FFFF);
    let lo = mag & !0x1FFF;
    let hi = lo + 0x2000;
    let v = f32::from_bits(mag) as f64;
    let lo_v = f32::from_bits(lo) as f64;
    let hi_v = if hi >= 0x7F80_0000 {
        2f64.powi(128)
    } else {
        f32::from_bits(hi) as f64
    };
    let m = if v - lo_v < hi_v - v { lo } else { hi };
    f32::from_bits(sign | m.min(0x7F80_0000))
}

#[track_caller]
fn assert_rounds(x_bits: u32, want_bits: u32) {
    let got = round_tf32(f32::from_bits(x_bits)).to_bits();
    assert_eq!(
        got, want_bits,
        "round_tf32({x_bits:#010x}) = {got:#010x}, want {want_bits:#010x}"
    );
}

#[test]
fn round_tf32_keeps_tf32_values_and_rounds_ties_away_from_zero() {
    let p = |e: i32| f32::powi(2.0, e);
    // Values with 10 or fewer mantissa bits are unchanged.
    for v in [
        1.0f32,
        -1.0,
        1.0 + p(-10),
        -(1.0 + p(-10)),
        3.0,
        0.5,
        1e10_f32,
    ] {
        let v = f32::from_bits(v.to_bits() & 0xFFFF_E000);
        assert_eq!(round_tf32(v).to_bits(), v.to_bits(), "{v}");
    }
    // 1 + 2^-11 lies exactly halfway between the TF32 values 1 and
    // 1 + 2^-10, and the lower one is even: ties-to-even would give 1,
    // ties-away gives 1 + 2^-10, for both signs.
    let half = 1.0 + p(-11);
    assert_eq!(round_tf32(half), 1.0 + p(-10));
    assert_eq!(round_tf32(-half), -(1.0 + p(-10)));
    // A tie whose lower neighbour is odd goes up under both rules.
    let odd_half = 1.0 + p(-10) + p(-11);
    assert_eq!(round_tf32(odd_half), 1.0 + p(-9));
    assert_eq!(round_tf32(-odd_half), -(1.0 + p(-9)));
    // One f32 ulp below halfway rounds towards zero, one above away from it.
    let below = f32::from_bits(half.to_bits() - 1);
    let above = f32::from_bits(half.to_bits() + 1);
    assert_eq!(round_tf32(below), 1.0);
    assert_eq!(round_tf32(-below), -1.0);
    assert_eq!(round_tf32(above), 1.0 + p(-10));
    assert_eq!(round_tf32(-above), -(1.0 + p(-10)));
    // A carry out of the mantissa gives the next binade.
    assert_rounds(0x3FFF_FFFF, 0x4000_0000);
    assert_rounds(0xBFFF_F000, 0xC000_0000);
    // Zeros keep their sign.
    assert_rounds(0x0000_0000, 0x0000_0000);
    assert_rounds(0x8000_0000, 0x8000_0000);
    // Subnormals: below half a unit to zero (signed), a tie away from zero,
    // the largest one up to the smallest normal.
    assert_rounds(0x0000_0001, 0x0000_0000);
    assert_rounds(0x8000_0FFF, 0x8000_0000);
    assert_rounds(0x0000_1000, 0x0000_2000);
    assert_rounds(0x8000_1000, 0x8000_2000);
    assert_rounds(0x0000_3000, 0x0000_4000);
    assert_rounds(0x007F_FFFF, 0x0080_0000);
    // The top: the largest finite TF32 value stays, anything from half a
    // unit above it becomes infinity of the same sign (round to nearest
    // overflows; cvt.rna without .satfinite does not saturate).
    assert_rounds(0x7F7F_E000, 0x7F7F_E000);
    assert_rounds(0x7F7F_EFFF, 0x7F7F_E000);
    assert_rounds(0x7F7F_F000, 0x7F80_0000);
    assert_rounds(f32::MAX.to_bits(), 0x7F80_0000);
    assert_rounds((-f32::MAX).to_bits(), 0xFF80_0000);
    // Infinities and NaNs (every payload, either sign) pass unchanged; the
    // bare bit formula would turn 0x7F80_0001 into infinity and
    // 0x7FFF_F000 into -0.
    for b in [
        0x7F80_0000u32,
        0xFF80_0000,
        0x7FC0_0000,
        0xFFC0_0000,
        0x7F80_0001,
        0x7FFF_F000,
        0x7FFF_FFFF,
        0xFFFF_FFFF,
    ] {
        assert_rounds(b, b);
    }
}

#[test]
fn round_tf32_agrees_with_the_nearest_neighbour_reference() {
    // Every pattern of the 16 low bits (the 13 dropped ones and 3 kept),
    // for each sign and several exponents: zero (subnormals), the smallest
    // normals, around 1, and the top two binades.
    for high in [0x0000u32, 0x0080, 0x3F80, 0x3FFF, 0x7F00, 0x7F7F] {
        for sign in [0u32, 0x8000_0000] {
            for low in 0..=0xFFFFu32 {
                let b = sign | (high << 16) | low;
                let x = f32::from_bits(b);
                assert_eq!(round_tf32(x).to_bits(), tf32_ref(x).to_bits(), "{b:#010x}");
            }
        }
    }
    // And random bit patterns, NaNs included.
    let mut r = rng(77);
    for _ in 0..1_000_000 {
        let b: u32 = r.random();
        let x = f32::from_bits(b);
        let got = round_tf32(x);
        if x.is_nan() {
            assert_eq!(got.to_bits(), b);
        } else {
            assert_eq!(got.to_bits(), tf32_ref(x).to_bits(), "{b:#010x}");
            assert_eq!(got.to_bits() & 0x1FFF, 0, "{b:#010x}");
        }
    }
}

// ---------------------------------------------------------------- helpers

fn rounded(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| round_tf32(x)).collect()
}

/// Relative L2 distance between two f32 results.
fn rel_l2_f32(a: &[f32], b: &[f32]) -> f64 {
    let want: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    rel_l2(a, &want)
}

/// Runs `plan` on the plain and the TF32 device; RT and BE must agree bit
/// for bit on each. Returns (f32 output, TF32 output).
fn run_both(plan: &Arc<Plan>, inputs: &[Vec<u8>]) -> (Vec<f32>, Vec<f32>) {
    let mut outs = Vec::new();
    for dev in [device(), device_tf32()] {
        let rt = run_plan_on(dev, plan, inputs, Variant::Rt);
        let be = run_plan_on(dev, plan, inputs, Variant::Be);
        assert_eq!(rt, be, "RT and BE differ (tf32: {})", dev.tf32());
        outs.push(f32s(&rt[0]));
    }
    let tf32 = outs.pop().expect("two runs");
    (outs.pop().expect("two runs"), tf32)
}

// ---------------------------------------------------------------- conv

#[allow(clippy::too_many_arguments)]
fn conv_spec(
    n: usize,
    c: usize,
    hw: usize,
    k: usize,
    rs: usize,
    stride: usize,
    pad: usize,
    groups: usize,
) -> ConvSpec {
    let o = (hw + 2 * pad - rs) / stride + 1;
    ConvSpec {
        n,
        c,
        h: hw,
        w: hw,
        k,
        r: rs,
        s: rs,
        oh: o,
        ow: o,
        stride: [stride; 2],
        pad: [pad; 2],
        dilation: [1, 1],
        groups,
        has_bias: true,
        has_residual: true,
        act: Act::Relu,
    }
}

/// f64 convolution of the given operands, then bias, residual and ReLU.
fn conv_ref(s: &ConvSpec, x: &[f32], w: &[f32], bias: &[f32], res: &[f32]) -> Vec<f64> {
    let (cg, kg) = (s.c / s.groups, s.k / s.groups);
    let mut out = vec![0f64; s.n * s.k * s.oh * s.ow];
    for n in 0..s.n {
        for k in 0..s.k {
            let g = k / kg;
            for y in 0..s.oh {
                for xo in 0..s.ow {
                    let mut acc = 0f64;
                    for c in 0..cg {
                        for r in 0..s.r {
                            for q in 0..s.s {
                                let iy = (y * s.stride[0] + r) as isize - s.pad[0] as isize;
                                let ix = (xo * s.stride[1] + q) as isize - s.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                let xv = x[((n * s.c + g * cg + c) * s.h + iy as usize) * s.w
                                    + ix as usize];
                                acc += xv as f64 * w[((k * cg + c) * s.r + r) * s.s + q] as f64;
                            }
                        }
                    }
                    let o = ((n * s.k + k) * s.oh + y) * s.ow + xo;
                    out[o] = (acc + bias[k] as f64 + res[o] as f64).max(0.0);
                }
            }
        }
    }
    out
}

struct ConvCase {
    spec: ConvSpec,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    res: Vec<f32>,
}

impl ConvCase {
    fn new(spec: ConvSpec, seed: u64) -> Self {
        let mut r = rng(seed);
        let s = &spec;
        let x = randn(&mut r, s.n * s.c * s.h * s.w);
        // Scaled like a trained layer (unit-variance outputs), so the
        // unrounded bias and residual do not swamp the product.
        let fan_in = (s.c / s.groups * s.r * s.s) as f32;
        let w = randn(&mut r, s.k * (s.c / s.groups) * s.r * s.s)
            .into_iter()
            .map(|v| v * (3.0 / fan_in).sqrt())
            .collect();
        let bias = randn(&mut r, s.k);
        let res = randn(&mut r, s.n * s.k * s.oh * s.ow);
        Self {
            spec,
            x,
            w,
            bias,
            res,
        }
    }

    fn plan(&self) -> (Arc<Plan>, Vec<Vec<u8>>) {
        let s = &self.spec;
        let mut b = PlanBuilder::new("conv");
        let x = b.input("x", DType::F32, &[s.n, s.c, s.h, s.w]);
        let w = b.weight_f32("w", &self.w);
        let bias = b.weight_f32("b", &self.bias);
        let out_len = s.n * s.k * s.oh * s.ow;
        let res = b.input("res", DType::F32, &[out_len]);
        let out = b.arena("y", DType::F32, out_len);
        b.output(out, &[out_len]);
        b.kernel(KernelOp::Conv(s.clone()), &[x, w, bias, res], out);
        (b.build(), vec![bytes(&self.x), bytes(&self.res)])
    }

    fn reference(&self, round: bool) -> Vec<f64> {
        let (x, w) = if round {
            (rounded(&self.x), rounded(&self.w))
        } else {
            (self.x.clone(), self.w.clone())
        };
        conv_ref(&self.spec, &x, &w, &self.bias, &self.res)
    }
}

/// Convolutions with c/groups > 1 (tensor cores on the GPU): in TF32 mode
/// the result is the exact product of the rounded weights and inputs up to
/// f32 accumulation (bias and residual not rounded), and it differs from
/// the f32 mode by TF32's error, about 1e-4.
#[test]
fn conv_tf32_rounds_weights_and_inputs() {
    let cases = [
        // 3x3 padded (im2col), two images, K = 288.
        ("3x3 pad 1", conv_spec(2, 32, 10, 24, 3, 1, 1, 1)),
        // 1x1 stride 1 (inputs read in place in f32 mode), K = 64.
        ("1x1", conv_spec(1, 64, 7, 40, 1, 1, 0, 1)),
        // Grouped with 8 channels per group, strided.
        ("grouped cg 8", conv_spec(1, 16, 9, 12, 3, 2, 1, 2)),
    ];
    for (seed, (what, spec)) in cases.into_iter().enumerate() {
        let case = ConvCase::new(spec, 100 + seed as u64);
        let (plan, inputs) = case.plan();
        let (f32_out, tf32_out) = run_both(&plan, &inputs);
        let e_tf32 = rel_l2(&tf32_out, &case.reference(true));
        let e_f32 = rel_l2(&f32_out, &case.reference(false));
        let gap = rel_l2_f32(&tf32_out, &f32_out);
        println!("{what}: TF32 vs rounded f64 {e_tf32:.2e}, f32 vs f64 {e_f32:.2e}, TF32 vs f32 {gap:.2e}");
        assert!(
            e_tf32 < 1e-6,
            "{what}: TF32 mode vs rounded reference {e_tf32:e}"
        );
        assert!(e_f32 < 1e-6, "{what}: f32 mode vs reference {e_f32:e}");
        assert!(
            (2e-5..1e-3).contains(&gap),
            "{what}: TF32 and f32 modes differ by {gap:e}, not TF32's error"
        );
    }
}

/// Convolutions with c/groups == 1 run as direct f32 kernels on the GPU
/// (`ConvDw`), so TF32 mode leaves them bit for bit alone: depthwise, a
/// grouped one with two filters per channel (the CPU's gemm path) and a
/// dense one with a single input channel.
#[test]
fn conv_tf32_leaves_one_channel_per_group_alone() {
    let cases = [
        ("depthwise", conv_spec(2, 8, 9, 8, 3, 1, 1, 8)),
        ("cg 1, k = 2c", conv_spec(1, 6, 8, 12, 3, 2, 1, 6)),
        ("c 1, dense", conv_spec(2, 1, 11, 8, 5, 1, 2, 1)),
    ];
    for (seed, (what, spec)) in cases.into_iter().enumerate() {
        let case = ConvCase::new(spec, 200 + seed as u64);
        // The operands do change under rounding, so equality is not vacuous.
        assert_ne!(rounded(&case.x), case.x);
        assert_ne!(rounded(&case.w), case.w);
        let (plan, inputs) = case.plan();
        let (f32_out, tf32_out) = run_both(&plan, &inputs);
        assert_eq!(
            bytes(&f32_out),
            bytes(&tf32_out),
            "{what}: TF32 mode changed a c/groups == 1 convolution"
        );
        let e = rel_l2(&f32_out, &case.reference(false));
        assert!(e < 1e-6, "{what}: vs reference {e:e}");
    }
}

// ---------------------------------------------------------------- matmul

/// f64 batched matmul of the given operands with the spec's epilogue (a
/// bias along n, residual, no activation).
fn matmul_ref(s: &MatMulSpec, a: &[f32], b: &[f32], bias: &[f32], res: &[f32]) -> Vec<f64> {
    let count = s.batch_count();
    let mut out = vec![0f64; count * s.m * s.n];
    for bi in 0..count {
        let (mut a0, mut b0, mut rem) = (0, 0, bi);
        for d in (0..s.batch.len()).rev() {
            a0 += (rem % s.batch[d]) * s.a_batch_strides[d];
            b0 += (rem % s.batch[d]) * s.b_batch_strides[d];
            rem /= s.batch[d];
        }
        for i in 0..s.m {
            for j in 0..s.n {
                let mut acc = 0f64;
                for p in 0..s.k {
                    acc += a[a0 + i * s.lda_m + p * s.lda_k] as f64
                        * b[b0 + p * s.ldb_k + j * s.ldb_n] as f64;
                }
                let o = (bi * s.m + i) * s.n + j;
                let mut v = s.alpha as f64 * acc;
                if s.has_bias {
                    v += s.beta as f64 * bias[j * s.bias_stride_n] as f64;
                }
                if s.has_residual {
                    v += res[o] as f64;
                }
                out[o] = v;
            }
        }
    }
    out
}

/// Every matmul runs on TF32 tensor cores on the GPU in that precision,
/// whatever its shape, so TF32 mode rounds both operands of all of them:
/// plain, a single row (gemv), and batched with a broadcast A and a
/// transposed B (nn.Linear weights).
#[test]
fn matmul_tf32_rounds_both_operands() {
    let (m, n, k) = (23, 40, 300);
    let cases = [
        (
            "plain",
            MatMulSpec::row_major(37, 45, 300),
            37 * 300,
            300 * 45,
        ),
        ("gemv", MatMulSpec::row_major(1, 200, 512), 512, 512 * 200),
        (
            "batched, B transposed",
            MatMulSpec {
                batch: vec![2, 3],
                a_batch_strides: vec![0, m * k],
                b_batch_strides: vec![3 * n * k, n * k],
                ldb_k: 1,
                ldb_n: k,
                alpha: 0.5,
                has_bias: true,
                bias_stride_n: 1,
                has_residual: true,
                ..MatMulSpec::row_major(m, n, k)
            },
            3 * m * k,
            6 * n * k,
        ),
    ];
    for (seed, (what, s, a_len, b_len)) in cases.into_iter().enumerate() {
        let mut r = rng(300 + seed as u64);
        let a = randn(&mut r, a_len);
        let b = randn(&mut r, b_len);
        let bias = randn(&mut r, s.n);
        let out_len = s.batch_count() * s.m * s.n;
        let res = randn(&mut r, out_len);
        let mut pb = PlanBuilder::new("matmul");
        let ai = pb.input("a", DType::F32, &[a_len]);
        let bi = pb.weight_f32("b", &b);
        let mut ids = vec![ai, bi];
        if s.has_bias {
            ids.push(pb.weight_f32("bias", &bias));
        }
        let mut inputs = vec![bytes(&a)];
        if s.has_residual {
            ids.push(pb.input("res", DType::F32, &[out_len]));
            inputs.push(bytes(&res));
        }
        let out = pb.arena("y", DType::F32, out_len);
        pb.output(out, &[out_len]);
        pb.kernel(KernelOp::MatMul(s.clone()), &ids, out);
        let plan = pb.build();
        let (f32_out, tf32_out) = run_both(&plan, &inputs);
        let want_tf32 = matmul_ref(&s, &rounded(&a), &rounded(&b), &bias, &res);
        let want_f32 = matmul_ref(&s, &a, &b, &bias, &res);
        let e_tf32 = rel_l2(&tf32_out, &want_tf32);
        let e_f32 = rel_l2(&f32_out, &want_f32);
        let gap = rel_l2_f32(&tf32_out, &f32_out);
        println!("{what}: TF32 vs rounded f64 {e_tf32:.2e}, f32 vs f64 {e_f32:.2e}, TF32 vs f32 {gap:.2e}");
        assert!(
            e_tf32 < 1e-6,
            "{what}: TF32 mode vs rounded reference {e_tf32:e}"
        );
        assert!(e_f32 < 1e-6, "{what}: f32 mode vs reference {e_f32:e}");
        assert!(
            (2e-5..1e-3).contains(&gap),
            "{what}: TF32 and f32 modes differ by {gap:e}, not TF32's error"
        );
    }
}
