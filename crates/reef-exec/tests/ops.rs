//! Every KernelOp of the CPU backend against a naive f64 reference on random
//! data, including strided, broadcast, grouped, dilated and padded cases.

mod common;

use common::*;
use reef_exec::Variant;
use reef_model::{Act, DType, PadMode, PoolKind, UnaryFn};
use reef_plan::kernel::*;

/// One operand of a single-kernel test plan.
struct Arg {
    dtype: DType,
    data: Vec<u8>,
    weight: bool,
}

fn arg_f32(v: &[f32]) -> Arg {
    Arg {
        dtype: DType::F32,
        data: bytes(v),
        weight: false,
    }
}

fn weight_f32(v: &[f32]) -> Arg {
    Arg {
        dtype: DType::F32,
        data: bytes(v),
        weight: true,
    }
}

fn arg<T: bytemuck::Pod>(dtype: DType, v: &[T]) -> Arg {
    Arg {
        dtype,
        data: bytes(v),
        weight: false,
    }
}

/// Runs one kernel RT and BE, checks they agree bit for bit, returns the output bytes.
fn single(op: KernelOp, args: Vec<Arg>, out_dtype: DType, out_len: usize) -> Vec<u8> {
    let mut b = PlanBuilder::new(op.kind());
    let mut ids = Vec::new();
    let mut inputs = Vec::new();
    for (i, a) in args.into_iter().enumerate() {
        let name = format!("in{i}");
        if a.weight {
            ids.push(b.weight(&name, a.dtype, &a.data));
        } else {
            ids.push(b.input(&name, a.dtype, &[a.data.len() / a.dtype.size()]));
            inputs.push(a.data);
        }
    }
    let out = b.arena("out", out_dtype, out_len);
    b.output(out, &[out_len]);
    b.kernel(op, &ids, out);
    let plan = b.build();
    let rt = run_plan(&plan, &inputs, Variant::Rt);
    let be = run_plan(&plan, &inputs, Variant::Be);
    assert_eq!(rt, be, "RT and BE differ");
    rt.into_iter().next().expect("one output")
}

fn act_ref(act: Act, v: f64) -> f64 {
    match act {
        Act::None => v,
        Act::Relu => v.max(0.0),
        Act::Clip(lo, hi) => v.max(lo as f64).min(hi as f64),
        Act::Gelu => {
            0.5 * v * (1.0 + reef_model::op::erf((v / std::f64::consts::SQRT_2) as f32) as f64)
        }
        Act::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Act::Tanh => v.tanh(),
        Act::LeakyRelu(a) => {
            if v < 0.0 {
                a as f64 * v
            } else {
                v
            }
        }
        Act::Elu(a) => {
            if v < 0.0 {
                a as f64 * (v.exp() - 1.0)
            } else {
                v
            }
        }
        Act::Selu(a, g) => {
            g as f64
                * if v > 0.0 {
                    v
                } else {
                    a as f64 * (v.exp() - 1.0)
                }
        }
        Act::Celu(a) => {
            let a = a as f64;
            v.max(0.0) + (a * ((v / a).exp() - 1.0)).min(0.0)
        }
        Act::HardSigmoid(a, b) => (a as f64 * v + b as f64).clamp(0.0, 1.0),
        Act::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
        Act::Softplus => (1.0 + v.exp()).ln(),
        Act::Softsign => v / (1.0 + v.abs()),
        Act::ThresholdedRelu(a) => {
            if v > a as f64 {
                v
            } else {
                0.0
            }
        }
        Act::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * v * (1.0 + (k * (v + 0.044715 * v.powi(3))).tanh())
        }
        Act::Mish => v * (1.0 + v.exp()).ln().tanh(),
    }
}

// ---------------------------------------------------------------- conv

#[allow(clippy::too_many_arguments)]
fn conv_spec(
    n: usize,
    c: usize,
    hw: [usize; 2],
    k: usize,
    rs: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
    groups: usize,
    act: Act,
) -> ConvSpec {
    let oh = (hw[0] + pads[0] + pads[2] - dil[0] * (rs[0] - 1) - 1) / stride[0] + 1;
    let ow = (hw[1] + pads[1] + pads[3] - dil[1] * (rs[1] - 1) - 1) / stride[1] + 1;
    ConvSpec {
        n,
        c,
        h: hw[0],
        w: hw[1],
        k,
        r: rs[0],
        s: rs[1],
        oh,
        ow,
        stride,
        pad: [pads[0], pads[1]],
        dilation: dil,
        groups,
        has_bias: true,
        has_residual: true,
        act,
    }
}

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
                                let iy = (y * s.stride[0] + r * s.dilation[0]) as isize
                                    - s.pad[0] as isize;
                                let ix = (xo * s.stride[1] + q * s.dilation[1]) as isize
                                    - s.pad[1] as isize;
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
                    out[o] = act_ref(s.act, acc + bias[k] as f64 + res[o] as f64);
                }
            }
        }
    }
    out
}

fn check_conv(what: &str, s: ConvSpec, seed: u64) {
    let mut r = rng(seed);
    let x = randn(&mut r, s.n * s.c * s.h * s.w);
    let w = randn(&mut r, s.k * (s.c / s.groups) * s.r * s.s);
    let bias = randn(&mut r, s.k);
    let out_len = s.n * s.k * s.oh * s.ow;
    let res = randn(&mut r, out_len);
    let want = conv_ref(&s, &x, &w, &bias, &res);
    let got = single(
        KernelOp::Conv(s),
        vec![
            arg_f32(&x),
            weight_f32(&w),
            weight_f32(&bias),
            arg_f32(&res),
        ],
        DType::F32,
        out_len,
    );
    assert_close(what, &f32s(&got), &want);
}

#[test]
fn conv_dense_padded() {
    check_conv(
        "3x3 pad 1",
        conv_spec(
            2,
            3,
            [9, 11],
            5,
            [3, 3],
            [1, 1],
            [1, 1, 1, 1],
            [1, 1],
            1,
            Act::Relu,
        ),
        1,
    );
}

#[test]
fn conv_strided_dilated_grouped_asymmetric() {
    let s = conv_spec(
        2,
        4,
        [10, 9],
        6,
        [3, 2],
        [2, 1],
        [2, 1, 0, 2],
        [2, 1],
        2,
        Act::Gelu,
    );
    check_conv("grouped dilated", s, 2);
}

#[test]
fn conv_pointwise_and_strided_pointwise() {
    check_conv(
        "1x1",
        conv_spec(
            1,
            16,
            [7, 7],
            8,
            [1, 1],
            [1, 1],
            [0; 4],
            [1, 1],
            1,
            Act::None,
        ),
        3,
    );
    check_conv(
        "1x1 s2",
        conv_spec(
            1,
            16,
            [7, 7],
            8,
            [1, 1],
            [2, 2],
            [0; 4],
            [1, 1],
            1,
            Act::Sigmoid,
        ),
        4,
    );
}

#[test]
fn conv_depthwise() {
    let s = conv_spec(
        2,
        6,
        [9, 8],
        6,
        [3, 3],
        [2, 2],
        [1, 1, 1, 1],
        [1, 1],
        6,
        Act::Clip(0.0, 6.0),
    );
    check_conv("depthwise s2", s, 5);
    let s = conv_spec(
        1,
        4,
        [8, 8],
        4,
        [5, 5],
        [1, 1],
        [4, 4, 4, 4],
        [2, 2],
        4,
        Act::Tanh,
    );
    check_conv("depthwise dilated", s, 6);
}

#[test]
fn conv_many_tiles() {
    // Splits both output pixels and output channels into several tiles.
    check_conv(
        "pixel tiles",
        conv_spec(
            1,
            32,
            [20, 20],
            64,
            [3, 3],
            [1, 1],
            [1, 1, 1, 1],
            [1, 1],
            1,
            Act::None,
        ),
        7,
    );
    check_conv(
        "channel tiles",
        conv_spec(
            1,
            256,
            [8, 8],
            32,
            [3, 3],
            [1, 1],
            [1, 1, 1, 1],
            [1, 1],
            1,
            Act::Relu,
        ),
        8,
    );
}

#[test]
fn conv_channel_blocks() {
    // More than 64 output channels: im2col tiles split channels (64 + 16).
    check_conv(
        "im2col channel blocks",
        conv_spec(
            1,
            8,
            [6, 6],
            80,
            [3, 3],
            [1, 1],
            [1, 1, 1, 1],
            [1, 1],
            1,
            Act::None,
        ),
        9,
    );
    // Deep 1x1 on a small plane: pointwise tiles split channels (56 + 8).
    check_conv(
        "pointwise channel blocks",
        conv_spec(
            1,
            4096,
            [4, 4],
            64,
            [1, 1],
            [1, 1],
            [0; 4],
            [1, 1],
            1,
            Act::Relu,
        ),
        15,
    );
}

// ---------------------------------------------------------------- matmul

fn matmul_ref(
    s: &MatMulSpec,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
) -> Vec<f64> {
    let count = s.batch_count();
    let mut out = vec![0f64; count * s.m * s.n];
    for bi in 0..count {
        let (mut ao, mut bo, mut rem) = (0, 0, bi);
        for d in (0..s.batch.len()).rev() {
            let i = rem % s.batch[d];
            rem /= s.batch[d];
            ao += i * s.a_batch_strides[d];
            bo += i * s.b_batch_strides[d];
        }
        for i in 0..s.m {
            for j in 0..s.n {
                let mut acc = 0f64;
                for p in 0..s.k {
                    acc += a[ao + i * s.lda_m + p * s.lda_k] as f64
                        * b[bo + p * s.ldb_k + j * s.ldb_n] as f64;
                }
                let mut v = s.alpha as f64 * acc;
                if let Some(bias) = bias {
                    v += s.beta as f64 * bias[i * s.bias_stride_m + j * s.bias_stride_n] as f64;
                }
                let o = (bi * s.m + i) * s.n + j;
                if let Some(res) = res {
                    v += res[o] as f64;
                }
                out[o] = act_ref(s.act, v);
            }
        }
    }
    out
}

fn check_matmul(what: &str, s: MatMulSpec, a_len: usize, b_len: usize, bias_len: usize, seed: u64) {
    let mut r = rng(seed);
    let a = randn(&mut r, a_len);
    let b = randn(&mut r, b_len);
    let bias = randn(&mut r, bias_len);
    let out_len = s.batch_count() * s.m * s.n;
    let res = randn(&mut r, out_len);
    let bias_opt = s.has_bias.then_some(&bias[..]);
    let res_opt = s.has_residual.then_some(&res[..]);
    let want = matmul_ref(&s, &a, &b, bias_opt, res_opt);
    let mut args = vec![arg_f32(&a), weight_f32(&b)];
    if s.has_bias {
        args.push(weight_f32(&bias));
    }
    if s.has_residual {
        args.push(arg_f32(&res));
    }
    let got = single(KernelOp::MatMul(s), args, DType::F32, out_len);
    assert_close(what, &f32s(&got), &want);
}

#[test]
fn matmul_plain_and_tiled() {
    check_matmul("5x7x9", MatMulSpec::row_major(5, 7, 9), 45, 63, 0, 10);
    check_matmul(
        "100x300x200",
        MatMulSpec::row_major(100, 300, 200),
        20000,
        60000,
        0,
        11,
    );
    check_matmul(
        "gemv",
        MatMulSpec::row_major(1, 1000, 512),
        512,
        512_000,
        0,
        12,
    );
}

#[test]
fn matmul_batched_broadcast_transposed_epilogue() {
    // A: [3, m, k] broadcast over the leading batch dim; B transposed per batch [2, 3, n, k].
    let (m, n, k) = (6, 10, 7);
    let s = MatMulSpec {
        batch: vec![2, 3],
        a_batch_strides: vec![0, m * k],
        b_batch_strides: vec![3 * n * k, n * k],
        ldb_k: 1,
        ldb_n: k,
        alpha: 0.5,
        beta: 2.0,
        has_bias: true,
        bias_stride_m: 0,
        bias_stride_n: 1,
        bias_stride_batch: 0,
        has_residual: true,
        act: Act::Tanh,
        ..MatMulSpec::row_major(m, n, k)
    };
    check_matmul("batched", s, 3 * m * k, 6 * n * k, n, 13);
    // A transposed (lda_m = 1), full 2-D bias.
    let s = MatMulSpec {
        lda_m: 1,
        lda_k: 9,
        has_bias: true,
        bias_stride_m: 12,
        bias_stride_n: 1,
        bias_stride_batch: 0,
        act: Act::Gelu,
        ..MatMulSpec::row_major(9, 12, 5)
    };
    check_matmul("a transposed", s, 45, 60, 108, 14);
}

// ---------------------------------------------------------------- pool

fn pool_ref(s: &PoolSpec, x: &[f32]) -> Vec<f64> {
    let mut out = vec![0f64; s.n * s.c * s.oh * s.ow];
    for p in 0..s.n * s.c {
        for y in 0..s.oh {
            for xo in 0..s.ow {
                let (mut acc, mut mx, mut cnt_in, mut cnt_pad) = (0f64, f64::NEG_INFINITY, 0, 0);
                for r in 0..s.kernel[0] {
                    for q in 0..s.kernel[1] {
                        let py = y * s.stride[0] + r * s.dilation[0];
                        let px = xo * s.stride[1] + q * s.dilation[1];
                        if py < s.padded_h && px < s.padded_w {
                            cnt_pad += 1;
                        }
                        let (iy, ix) = (
                            py as isize - s.pad[0] as isize,
                            px as isize - s.pad[1] as isize,
                        );
                        if iy >= 0 && ix >= 0 && iy < s.h as isize && ix < s.w as isize {
                            let v = x[(p * s.h + iy as usize) * s.w + ix as usize] as f64;
                            acc += v;
                            mx = mx.max(v);
                            cnt_in += 1;
                        }
                    }
                }
                out[(p * s.oh + y) * s.ow + xo] = match s.kind {
                    PoolKind::Max => mx,
                    PoolKind::Avg => {
                        acc / if s.count_include_pad { cnt_pad } else { cnt_in } as f64
                    }
                };
            }
        }
    }
    out
}

fn check_pool(what: &str, s: PoolSpec, seed: u64) {
    let mut r = rng(seed);
    let x = randn(&mut r, s.n * s.c * s.h * s.w);
    let want = pool_ref(&s, &x);
    let n = s.n * s.c * s.oh * s.ow;
    let got = single(KernelOp::Pool(s), vec![arg_f32(&x)], DType::F32, n);
    assert_close(what, &f32s(&got), &want);
}

#[allow(clippy::too_many_arguments)]
fn pool_spec(
    kind: PoolKind,
    hw: [usize; 2],
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    ceil: bool,
    cip: bool,
) -> PoolSpec {
    let (ph, pw) = (hw[0] + 2 * p, hw[1] + 2 * p);
    let span = d * (k - 1) + 1;
    let o = |padded: usize| {
        if ceil {
            (padded - span).div_ceil(s) + 1
        } else {
            (padded - span) / s + 1
        }
    };
    PoolSpec {
        kind,
        n: 2,
        c: 3,
        h: hw[0],
        w: hw[1],
        oh: o(ph),
        ow: o(pw),
        kernel: [k, k],
        stride: [s, s],
        pad: [p, p],
        dilation: [d, d],
        count_include_pad: cip,
        padded_h: ph,
        padded_w: pw,
    }
}

#[test]
fn pool_max_and_avg() {
    check_pool(
        "max 3x3 s2 p1",
        pool_spec(PoolKind::Max, [9, 10], 3, 2, 1, 1, false, false),
        20,
    );
    check_pool(
        "max dilated ceil",
        pool_spec(PoolKind::Max, [8, 11], 2, 2, 1, 2, true, false),
        21,
    );
    check_pool(
        "avg exclude pad",
        pool_spec(PoolKind::Avg, [8, 9], 3, 2, 1, 1, false, false),
        22,
    );
    check_pool(
        "avg include pad",
        pool_spec(PoolKind::Avg, [8, 9], 3, 2, 1, 1, false, true),
        23,
    );
    check_pool(
        "avg include pad ceil",
        pool_spec(PoolKind::Avg, [8, 8], 3, 2, 1, 1, true, true),
        24,
    );
    check_pool(
        "global avg",
        pool_spec(PoolKind::Avg, [7, 7], 7, 1, 0, 1, false, false),
        25,
    );
}

// ---------------------------------------------------------------- elementwise

type BinRef = fn(f64, f64) -> f64;
type UnRef = fn(f64) -> f64;

/// Offset of output element `i` of `shape` in an operand with `strides`.
fn bcast(shape: &[usize], strides: &[usize], mut i: usize) -> usize {
    let mut off = 0;
    for d in (0..shape.len()).rev() {
        off += (i % shape[d]) * strides[d];
        i /= shape[d];
    }
    off
}

#[test]
fn channel_affine() {
    let mut r = rng(30);
    let (outer, c, inner) = (2, 3, 5);
    let (x, sc, sh) = (
        randn(&mut r, outer * c * inner),
        randn(&mut r, c),
        randn(&mut r, c),
    );
    let want: Vec<f64> = (0..x.len())
        .map(|i| {
            act_ref(
                Act::Relu,
                x[i] as f64 * sc[(i / inner) % c] as f64 + sh[(i / inner) % c] as f64,
            )
        })
        .collect();
    let op = KernelOp::ChannelAffine {
        outer,
        c,
        inner,
        act: Act::Relu,
    };
    let got = single(
        op,
        vec![arg_f32(&x), weight_f32(&sc), weight_f32(&sh)],
        DType::F32,
        x.len(),
    );
    assert_close("affine", &f32s(&got), &want);
}

#[test]
fn binary_broadcast_all_ops() {
    let mut r = rng(31);
    let shape = vec![2, 3, 4];
    let a_strides = vec![12, 4, 1];
    let b_strides = vec![0, 1, 0];
    let a: Vec<f32> = randn(&mut r, 24).iter().map(|v| v.abs() + 0.1).collect();
    let b: Vec<f32> = randn(&mut r, 3).iter().map(|v| v + 2.0).collect();
    let ops: [(BinOp, BinRef); 5] = [
        (BinOp::Add, |x, y| x + y),
        (BinOp::Sub, |x, y| x - y),
        (BinOp::Mul, |x, y| x * y),
        (BinOp::Div, |x, y| x / y),
        (BinOp::Pow, |x, y| x.powf(y)),
    ];
    for (op, f) in ops {
        for act in [Act::None, Act::Sigmoid] {
            let want: Vec<f64> = (0..24)
                .map(|i| {
                    act_ref(
                        act,
                        f(
                            a[bcast(&shape, &a_strides, i)] as f64,
                            b[bcast(&shape, &b_strides, i)] as f64,
                        ),
                    )
                })
                .collect();
            let k = KernelOp::Binary {
                op,
                shape: shape.clone(),
                a_strides: a_strides.clone(),
                b_strides: b_strides.clone(),
                act,
            };
            let got = single(k, vec![arg_f32(&a), arg_f32(&b)], DType::F32, 24);
            assert_close(&format!("{op:?} {act:?}"), &f32s(&got), &want);
        }
    }
    // Transposed a (strides not contiguous) and i64 operands.
    let a64: Vec<i64> = (0..24).map(|i| i * 7 - 50).collect();
    let b64: Vec<i64> = vec![3, -4, 0];
    let sa = vec![1, 2, 6];
    let k = KernelOp::Binary {
        op: BinOp::Div,
        shape: shape.clone(),
        a_strides: sa.clone(),
        b_strides: b_strides.clone(),
        act: Act::None,
    };
    let got: Vec<i64> = pod_vec(&single(
        k,
        vec![arg(DType::I64, &a64), arg(DType::I64, &b64)],
        DType::I64,
        24,
    ));
    let want: Vec<i64> = (0..24)
        .map(|i| {
            a64[bcast(&shape, &sa, i)]
                .checked_div(b64[bcast(&shape, &b_strides, i)])
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn compare_and_where() {
    let mut r = rng(32);
    let shape = vec![4, 5];
    let a: Vec<f32> = randn(&mut r, 20)
        .iter()
        .map(|v| (v * 3.0).round())
        .collect();
    let b: Vec<f32> = randn(&mut r, 5).iter().map(|v| (v * 3.0).round()).collect();
    let (sa, sb) = (vec![5, 1], vec![0, 1]);
    for (op, f) in [
        (CmpOp::Equal, f64::eq as fn(&f64, &f64) -> bool),
        (CmpOp::Less, f64::lt),
        (CmpOp::Greater, f64::gt),
    ] {
        let k = KernelOp::Compare {
            op,
            dtype: DType::F32,
            shape: shape.clone(),
            a_strides: sa.clone(),
            b_strides: sb.clone(),
        };
        let got = single(k, vec![arg_f32(&a), arg_f32(&b)], DType::Bool, 20);
        let want: Vec<u8> = (0..20)
            .map(|i| u8::from(f(&(a[i] as f64), &(b[i % 5] as f64))))
            .collect();
        assert_eq!(got, want, "{op:?}");
    }
    let ai: Vec<i64> = (0..20).map(|i| i % 7).collect();
    let bi: Vec<i64> = vec![3];
    let k = KernelOp::Compare {
        op: CmpOp::Less,
        dtype: DType::I64,
        shape: shape.clone(),
        a_strides: sa.clone(),
        b_strides: vec![0, 0],
    };
    let got = single(
        k,
        vec![arg(DType::I64, &ai), arg(DType::I64, &bi)],
        DType::Bool,
        20,
    );
    assert_eq!(
        got,
        (0..20).map(|i| u8::from(ai[i] < 3)).collect::<Vec<_>>()
    );

    let cond: Vec<u8> = (0..4).map(|i| (i % 2) as u8 * 5).collect();
    let (x, y) = (randn(&mut r, 20), randn(&mut r, 5));
    let k = KernelOp::Where {
        shape: shape.clone(),
        c_strides: vec![1, 0],
        a_strides: sa.clone(),
        b_strides: sb.clone(),
    };
    let got = f32s(&single(
        k,
        vec![arg(DType::Bool, &cond), arg_f32(&x), arg_f32(&y)],
        DType::F32,
        20,
    ));
    let want: Vec<f32> = (0..20)
        .map(|i| if cond[i / 5] != 0 { x[i] } else { y[i % 5] })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn unary_and_not() {
    let mut r = rng(33);
    let n = 40_000; // several tiles
    let x = randn(&mut r, n);
    let cases: [(UnaryOp, UnRef); 8] = [
        (UnaryOp::Act(Act::Relu), |v| v.max(0.0)),
        (UnaryOp::Act(Act::Gelu), |v| act_ref(Act::Gelu, v)),
        (UnaryOp::Act(Act::Clip(-0.5, 0.5)), |v| v.clamp(-0.5, 0.5)),
        (UnaryOp::Act(Act::Tanh), f64::tanh),
        (UnaryOp::Erf, |v| reef_model::op::erf(v as f32) as f64),
        (UnaryOp::Sqrt, |v| v.abs().sqrt()),
        (UnaryOp::Exp, f64::exp),
        (UnaryOp::Neg, |v| -v),
    ];
    for (op, f) in cases {
        let input: Vec<f32> = if op == UnaryOp::Sqrt {
            x.iter().map(|v| v.abs()).collect()
        } else {
            x.clone()
        };
        let got = f32s(&single(
            KernelOp::Unary { op, n },
            vec![arg_f32(&input)],
            DType::F32,
            n,
        ));
        let want: Vec<f64> = input.iter().map(|&v| f(v as f64)).collect();
        assert_close(&format!("{op:?}"), &got, &want);
    }
    let b: Vec<u8> = (0..100).map(|i| (i % 3) as u8).collect();
    let got = single(
        KernelOp::Not { n: 100 },
        vec![arg(DType::Bool, &b)],
        DType::Bool,
        100,
    );
    assert_eq!(got, b.iter().map(|&v| u8::from(v == 0)).collect::<Vec<_>>());
}

#[test]
fn unary_activations_with_parameters_and_functions() {
    let mut r = rng(34);
    let n = 40_000; // several tiles
    let x: Vec<f32> = randn(&mut r, n).iter().map(|v| v * 4.0).collect();
    let acts = [
        Act::LeakyRelu(0.1),
        Act::Elu(0.7),
        Act::Selu(1.673_263_2, 1.050_701),
        Act::Celu(1.3),
        Act::HardSigmoid(0.2, 0.5),
        Act::HardSwish,
        Act::Softplus,
        Act::Softsign,
        Act::ThresholdedRelu(0.5),
        Act::GeluTanh,
        Act::Mish,
    ];
    for act in acts {
        let op = UnaryOp::Act(act);
        let got = f32s(&single(
            KernelOp::Unary { op, n },
            vec![arg_f32(&x)],
            DType::F32,
            n,
        ));
        let want: Vec<f64> = x.iter().map(|&v| act_ref(act, v as f64)).collect();
        assert_close(&format!("{act:?}"), &got, &want);
    }
    for f in UnaryFn::ALL {
        // Log of |x|, so that every input is in its domain.
        let input: Vec<f32> = if f == UnaryFn::Log {
            x.iter().map(|v| v.abs()).collect()
        } else {
            x.clone()
        };
        let reference = |v: f64| match f {
            UnaryFn::Abs => v.abs(),
            UnaryFn::Log => v.ln(),
            UnaryFn::Reciprocal => 1.0 / v,
            UnaryFn::Floor => v.floor(),
            UnaryFn::Ceil => v.ceil(),
            UnaryFn::Round => v.round_ties_even(),
            UnaryFn::Sin => v.sin(),
            UnaryFn::Cos => v.cos(),
            UnaryFn::Sign => {
                if v == 0.0 {
                    0.0
                } else {
                    v.signum()
                }
            }
        };
        let got = f32s(&single(
            KernelOp::Unary {
                op: UnaryOp::Fn(f),
                n,
            },
            vec![arg_f32(&input)],
            DType::F32,
            n,
        ));
        let want: Vec<f64> = input.iter().map(|&v| reference(v as f64)).collect();
        assert_close(&format!("{f:?}"), &got, &want);
    }
}

#[test]
fn min_max_prelu_broadcast_and_nan() {
    let mut r = rng(35);
    let shape = vec![2, 3, 4];
    let a_strides = vec![12, 4, 1];
    let b_strides = vec![0, 1, 0];
    let mut a = randn(&mut r, 24);
    a[5] = f32::NAN;
    let b = randn(&mut r, 3);
    for op in [BinOp::Min, BinOp::Max, BinOp::PRelu] {
        let k = KernelOp::Binary {
            op,
            shape: shape.clone(),
            a_strides: a_strides.clone(),
            b_strides: b_strides.clone(),
            act: Act::None,
        };
        let got = f32s(&single(k, vec![arg_f32(&a), arg_f32(&b)], DType::F32, 24));
        for (i, &g) in got.iter().enumerate() {
            let (x, y) = (a[i], b[bcast(&shape, &b_strides, i)]);
            if x.is_nan() {
                assert!(g.is_nan(), "{op:?} of NaN gave {g}");
                continue;
            }
            let want = match op {
                BinOp::Min => x.min(y),
                BinOp::Max => x.max(y),
                _ => {
                    if x < 0.0 {
                        x * y
                    } else {
                        x
                    }
                }
            };
            assert_eq!(g, want, "{op:?} at {i}: {x} and {y}");
        }
    }
}

#[test]
fn cast_all_pairs() {
    let f: Vec<f32> = vec![-2.7, -0.0, 0.0, 0.4, 1.5, 3e9, f32::NAN, 7.0];
    let i64s: Vec<i64> = vec![-3, 0, 1, 5, i64::MAX, -1, 2, 1 << 40];
    let i32s: Vec<i32> = vec![-3, 0, 1, 5, i32::MAX, -1, 2, 9];
    let bools: Vec<u8> = vec![0, 1, 2, 0, 1, 0, 255, 1];
    let n = 8;
    let run = |from: DType, data: Vec<u8>, to: DType| {
        single(
            KernelOp::Cast { from, to, n },
            vec![Arg {
                dtype: from,
                data,
                weight: false,
            }],
            to,
            n,
        )
    };
    let as_i64 = |b: Vec<u8>| pod_vec::<i64>(&b);
    let as_i32 = |b: Vec<u8>| pod_vec::<i32>(&b);
    assert_eq!(
        as_i64(run(DType::F32, bytes(&f), DType::I64)),
        f.iter().map(|&v| v as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        as_i32(run(DType::F32, bytes(&f), DType::I32)),
        vec![-2, 0, 0, 0, 1, i32::MAX, 0, 7]
    );
    assert_eq!(
        run(DType::F32, bytes(&f), DType::Bool),
        vec![1, 0, 0, 1, 1, 1, 1, 1]
    );
    assert_eq!(
        f32s(&run(DType::I64, bytes(&i64s), DType::F32)),
        i64s.iter().map(|&v| v as f32).collect::<Vec<_>>()
    );
    assert_eq!(
        as_i32(run(DType::I64, bytes(&i64s), DType::I32)),
        i64s.iter().map(|&v| v as i32).collect::<Vec<_>>()
    );
    assert_eq!(
        run(DType::I64, bytes(&i64s), DType::Bool),
        vec![1, 0, 1, 1, 1, 1, 1, 1]
    );
    assert_eq!(
        as_i64(run(DType::I32, bytes(&i32s), DType::I64)),
        i32s.iter().map(|&v| v as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        f32s(&run(DType::I32, bytes(&i32s), DType::F32)),
        i32s.iter().map(|&v| v as f32).collect::<Vec<_>>()
    );
    assert_eq!(
        run(DType::I32, bytes(&i32s), DType::Bool),
        vec![1, 0, 1, 1, 1, 1, 1, 1]
    );
    assert_eq!(
        f32s(&run(DType::Bool, bools.clone(), DType::F32)),
        vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    );
    assert_eq!(
        as_i64(run(DType::Bool, bools.clone(), DType::I64)),
        vec![0, 1, 1, 0, 1, 0, 1, 1]
    );
    assert_eq!(
        as_i32(run(DType::Bool, bools.clone(), DType::I32)),
        vec![0, 1, 1, 0, 1, 0, 1, 1]
    );
    assert_eq!(
        run(DType::Bool, bools, DType::Bool),
        vec![0, 1, 1, 0, 1, 0, 1, 1]
    );
    let same = f32s(&run(DType::F32, bytes(&f), DType::F32));
    assert!(same.iter().zip(&f).all(|(a, b)| a.to_bits() == b.to_bits()));
}

// ---------------------------------------------------------------- layout

#[test]
fn copy_strided_negative_broadcast() {
    // Transpose of a [3, 4] f32 matrix.
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 1.5 - 3.0).collect();
    let k = KernelOp::Copy {
        shape: vec![4, 3],
        offset: 0,
        strides: vec![1, 4],
        elem_size: 4,
    };
    let got = f32s(&single(k, vec![arg_f32(&x)], DType::F32, 12));
    let want: Vec<f32> = (0..12).map(|i| x[(i % 3) * 4 + i / 3]).collect();
    assert_eq!(got, want);
    // Reversed rows with a slice offset, and a broadcast dim, on i64.
    let x: Vec<i64> = (0..20).map(|i| i * 11 - 7).collect();
    let k = KernelOp::Copy {
        shape: vec![2, 3, 4],
        offset: 15,
        strides: vec![0, -5, 1],
        elem_size: 8,
    };
    let got: Vec<i64> = pod_vec(&single(k, vec![arg(DType::I64, &x)], DType::I64, 24));
    let want: Vec<i64> = (0..24).map(|i| x[15 - 5 * ((i / 4) % 3) + i % 4]).collect();
    assert_eq!(got, want);
    // Bytes with a reversed inner dim and stride 2.
    let x: Vec<u8> = (0..30).collect();
    let k = KernelOp::Copy {
        shape: vec![3, 5],
        offset: 29,
        strides: vec![-10, -2],
        elem_size: 1,
    };
    let got = single(k, vec![arg(DType::Bool, &x)], DType::Bool, 15);
    let want: Vec<u8> = (0..15)
        .map(|i| x[29 - 10 * (i / 5) - 2 * (i % 5)])
        .collect();
    assert_eq!(got, want);
}

#[test]
fn concat_parts() {
    let mut r = rng(40);
    let (outer, inner, lens) = (3, 4, vec![2, 1, 3]);
    let parts: Vec<Vec<f32>> = lens
        .iter()
        .map(|&l| randn(&mut r, outer * l * inner))
        .collect();
    let k = KernelOp::Concat {
        outer,
        inner,
        lens: lens.clone(),
        elem_size: 4,
    };
    let got = f32s(&single(
        k,
        parts.iter().map(|p| arg_f32(p)).collect(),
        DType::F32,
        outer * 6 * inner,
    ));
    let mut want = Vec::new();
    for o in 0..outer {
        for (p, &l) in parts.iter().zip(&lens) {
            want.extend_from_slice(&p[o * l * inner..(o + 1) * l * inner]);
        }
    }
    assert_eq!(got, want);
    let k = KernelOp::Concat {
        outer: 2,
        inner: 1,
        lens: vec![1, 2],
        elem_size: 1,
    };
    let got = single(
        k,
        vec![
            arg(DType::Bool, &[1u8, 2]),
            arg(DType::Bool, &[3u8, 4, 5, 6]),
        ],
        DType::Bool,
        6,
    );
    assert_eq!(got, vec![1, 3, 4, 2, 5, 6]);
}

#[test]
fn gather_wraps_and_zeroes() {
    let mut r = rng(41);
    let (outer, axis_len, inner) = (2, 5, 3);
    let x = randn(&mut r, outer * axis_len * inner);
    let idx: Vec<i64> = vec![4, -1, 0, 7, -6, 2];
    let count = idx.len();
    let k = KernelOp::Gather {
        outer,
        axis_len,
        count,
        inner,
        elem_size: 4,
    };
    let got = f32s(&single(
        k,
        vec![arg_f32(&x), arg(DType::I64, &idx)],
        DType::F32,
        outer * count * inner,
    ));
    let mut want = Vec::new();
    for o in 0..outer {
        for &i in &idx {
            let i = if i < 0 { i + axis_len as i64 } else { i };
            for c in 0..inner {
                want.push(if (0..axis_len as i64).contains(&i) {
                    x[(o * axis_len + i as usize) * inner + c]
                } else {
                    0.0
                });
            }
        }
    }
    assert_eq!(got, want);
    let table: Vec<i64> = vec![10, 20, 30];
    let k = KernelOp::Gather {
        outer: 1,
        axis_len: 3,
        count: 3,
        inner: 1,
        elem_size: 8,
    };
    let got: Vec<i64> = pod_vec(&single(
        k,
        vec![arg(DType::I64, &table), arg(DType::I64, &[2i64, -3, 3])],
        DType::I64,
        3,
    ));
    assert_eq!(got, vec![30, 10, 0]);
}

fn pad_ref(
    shape: &[usize],
    in_shape: &[usize],
    pads: &[i64],
    mode: PadMode,
    value: f32,
    x: &[f32],
) -> Vec<f64> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|mut i| {
            let mut src = 0usize;
            let mut stride = 1usize;
            for d in (0..shape.len()).rev() {
                let o = (i % shape[d]) as i64;
                i /= shape[d];
                let len = in_shape[d] as i64;
                let mut s = o - pads[d];
                match mode {
                    PadMode::Constant if s < 0 || s >= len => return value as f64,
                    PadMode::Constant => {}
                    PadMode::Edge => s = s.clamp(0, len - 1),
                    PadMode::Reflect => {
                        while s < 0 || s >= len {
                            s = if s < 0 { -s } else { 2 * (len - 1) - s };
                        }
                    }
                }
                src += s as usize * stride;
                stride *= in_shape[d];
            }
            x[src] as f64
        })
        .collect()
}

#[test]
fn pad_modes_with_crop() {
    let mut r = rng(42);
    let in_shape = vec![2, 4, 5];
    let x = randn(&mut r, 40);
    for mode in [PadMode::Constant, PadMode::Reflect, PadMode::Edge] {
        // dim 1 padded 2 before and 3 after; dim 2 cropped 1 before, padded 2 after; dim 0 padded 1 after.
        let pads = vec![0i64, 2, -1];
        let shape = vec![3, 9, 6];
        let want = pad_ref(&shape, &in_shape, &pads, mode, 0.75, &x);
        let k = KernelOp::Pad {
            shape: shape.clone(),
            in_shape: in_shape.clone(),
            pads_begin: pads,
            mode,
            value: 0.75,
        };
        let got = f32s(&single(k, vec![arg_f32(&x)], DType::F32, 162));
        assert_close(&format!("pad {mode:?}"), &got, &want);
    }
}

// ---------------------------------------------------------------- norms

#[test]
fn softmax_inner_one_and_many() {
    let mut r = rng(50);
    for (outer, axis, inner) in [(7, 33, 1), (3, 5, 4)] {
        let x: Vec<f32> = randn(&mut r, outer * axis * inner)
            .iter()
            .map(|v| v * 10.0)
            .collect();
        let mut want = vec![0f64; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |a: usize| (o * axis + a) * inner + i;
                let m = (0..axis)
                    .map(|a| x[at(a)] as f64)
                    .fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = (0..axis).map(|a| (x[at(a)] as f64 - m).exp()).sum();
                for a in 0..axis {
                    want[at(a)] = (x[at(a)] as f64 - m).exp() / s;
                }
            }
        }
        let got = f32s(&single(
            KernelOp::Softmax {
                outer,
                axis,
                inner,
                pre: Default::default(),
            },
            vec![arg_f32(&x)],
            DType::F32,
            x.len(),
        ));
        assert_close("softmax", &got, &want);
    }
}

#[test]
fn layer_norm_rows() {
    let mut r = rng(51);
    let (rows, cols, eps) = (13, 96, 1e-5f32);
    let x: Vec<f32> = randn(&mut r, rows * cols)
        .iter()
        .map(|v| v * 3.0 + 1.0)
        .collect();
    let (g, b) = (randn(&mut r, cols), randn(&mut r, cols));
    let mut want = vec![0f64; x.len()];
    for row in 0..rows {
        let v = &x[row * cols..(row + 1) * cols];
        let mean = v.iter().map(|&a| a as f64).sum::<f64>() / cols as f64;
        let var = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
        for c in 0..cols {
            want[row * cols + c] =
                (v[c] as f64 - mean) / (var + eps as f64).sqrt() * g[c] as f64 + b[c] as f64;
        }
    }
    let k = KernelOp::LayerNorm { rows, cols, eps };
    let got = f32s(&single(
        k,
        vec![arg_f32(&x), weight_f32(&g), weight_f32(&b)],
        DType::F32,
        x.len(),
    ));
    assert_close("layernorm", &got, &want);
}

#[test]
fn reduce_every_kind() {
    let mut r = rng(52);
    let (outer, len, inner) = (3, 17, 5);
    let signed = randn(&mut r, outer * len * inner);
    for kind in [
        ReduceKind::Mean,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Sum,
        ReduceKind::SumSquare,
        ReduceKind::SumAbs,
        ReduceKind::L2,
        ReduceKind::SqrtSum,
    ] {
        // SqrtSum takes partial sums of squares: non-negative inputs.
        let x: Vec<f32> = if kind == ReduceKind::SqrtSum {
            signed.iter().map(|v| v.abs()).collect()
        } else {
            signed.clone()
        };
        let want: Vec<f64> = (0..outer * inner)
            .map(|oi| {
                let (o, i) = (oi / inner, oi % inner);
                let vals = (0..len).map(|l| x[(o * len + l) * inner + i] as f64);
                match kind {
                    ReduceKind::Mean => vals.sum::<f64>() / len as f64,
                    ReduceKind::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                    ReduceKind::Min => vals.fold(f64::INFINITY, f64::min),
                    ReduceKind::Sum => vals.sum::<f64>(),
                    ReduceKind::SumSquare => vals.map(|v| v * v).sum::<f64>(),
                    ReduceKind::SumAbs => vals.map(f64::abs).sum::<f64>(),
                    ReduceKind::L2 => vals.map(|v| v * v).sum::<f64>().sqrt(),
                    ReduceKind::SqrtSum => vals.sum::<f64>().sqrt(),
                }
            })
            .collect();
        let got = f32s(&single(
            KernelOp::Reduce {
                kind,
                outer,
                len,
                inner,
            },
            vec![arg_f32(&x)],
            DType::F32,
            outer * inner,
        ));
        assert_close(&format!("reduce {kind:?}"), &got, &want);
    }
}
