//! Fusions of the lowering, each checked for its kernel list and against an
//! f64 reference on the CPU backend (RT and BE variants):
//! - a decomposed exact GELU (Div, Erf, Add, Mul, Mul: how PyTorch exports
//!   it and how the zoo's BERT writes it) after a matmul and its bias runs
//!   in the matmul's epilogue, in both groupings of the products; a pattern
//!   with another constant stays unfused;
//! - transposes that only matmuls read (BERT's head splits) are read in
//!   place through strides, with no copy kernel;
//! - an activation after an unfused BatchNorm (DenseNet's norm, relu) runs
//!   in the BatchNorm's channel-affine kernel.

mod common;

use common::*;
use reef_exec::Variant;
use reef_model::{DType, GraphBuilder, Op, Tensor, ValueId};

/// `x [rows, k] @ w [k, n] + bias`, then GELU written out; `half_first`
/// computes `(x · 0.5) · (1 + erf)` instead of `(x · (1 + erf)) · 0.5`.
fn graph(
    rows: usize,
    k: usize,
    n: usize,
    w: &[f32],
    bias: &[f32],
    half_first: bool,
    sqrt2: f32,
) -> reef_model::Graph {
    let mut b = GraphBuilder::new("gelu");
    let x = b.input("x", DType::F32, vec![rows, k]).unwrap();
    let wv = b
        .initializer("w", Tensor::f32(vec![k, n], w.to_vec()).unwrap())
        .unwrap();
    let bv = b
        .initializer("b", Tensor::f32(vec![n], bias.to_vec()).unwrap())
        .unwrap();
    let scalar = |b: &mut GraphBuilder, name: &str, v: f32| -> ValueId {
        b.initializer(name, Tensor::f32(vec![], vec![v]).unwrap())
            .unwrap()
    };
    let (s2, one, half) = (
        scalar(&mut b, "sqrt2", sqrt2),
        scalar(&mut b, "one", 1.0),
        scalar(&mut b, "half", 0.5),
    );
    let y = b.node("mm", Op::MatMul, &[x, wv]).unwrap();
    let y = b.node("bias", Op::Add, &[y, bv]).unwrap();
    let d = b.node("div", Op::Div, &[y, s2]).unwrap();
    let e = b.node("erf", Op::Erf, &[d]).unwrap();
    let a = b.node("add", Op::Add, &[one, e]).unwrap();
    let out = if half_first {
        let h = b.node("half", Op::Mul, &[y, half]).unwrap();
        b.node("mul", Op::Mul, &[h, a]).unwrap()
    } else {
        let m = b.node("mul", Op::Mul, &[y, a]).unwrap();
        b.node("half", Op::Mul, &[m, half]).unwrap()
    };
    b.output(out);
    b.finish().unwrap()
}

fn erf64(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is too coarse for 1e-5; integrate instead:
    // erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt (Simpson, 2000 steps).
    let steps = 2000;
    let h = x / steps as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(x);
    for i in 1..steps {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn decomposed_gelu_fuses_into_the_matmul_and_matches_f64() {
    let mut r = rng(11);
    let (rows, k, n) = (5, 24, 40);
    let x = randn(&mut r, rows * k);
    let w = randn(&mut r, k * n);
    let bias = randn(&mut r, n);
    let mut want = vec![0f64; rows * n];
    for i in 0..rows {
        for j in 0..n {
            let v: f64 = (0..k)
                .map(|t| x[i * k + t] as f64 * w[t * n + j] as f64)
                .sum::<f64>()
                + bias[j] as f64;
            want[i * n + j] = 0.5 * v * (1.0 + erf64(v / std::f64::consts::SQRT_2));
        }
    }
    for half_first in [false, true] {
        let g = graph(rows, k, n, &w, &bias, half_first, std::f32::consts::SQRT_2);
        let plan = std::sync::Arc::new(reef_plan::compile(&g).expect("compile"));
        let kinds: Vec<&str> = plan.kernels.iter().map(|k| k.op.kind()).collect();
        assert_eq!(kinds, ["matmul"], "half_first={half_first}: {kinds:?}");
        let reef_plan::kernel::KernelOp::MatMul(m) = &plan.kernels[0].op else {
            unreachable!()
        };
        assert_eq!(m.act, reef_model::Act::Gelu);
        assert!(m.has_bias);
        for variant in [Variant::Rt, Variant::Be] {
            let got = run_plan(&plan, &[bytes(&x)], variant);
            assert_close("gelu", &f32s(&got[0]), &want);
        }
    }
}

#[test]
fn a_pattern_with_another_constant_is_not_fused() {
    let mut r = rng(12);
    let (rows, k, n) = (3, 8, 8);
    let w = randn(&mut r, k * n);
    let bias = randn(&mut r, n);
    let g = graph(rows, k, n, &w, &bias, false, 1.5);
    let plan = reef_plan::compile(&g).expect("compile");
    assert!(
        plan.kernels.len() > 1,
        "fused a non-GELU: {:?}",
        plan.kernels
    );
    assert!(plan.kernels.iter().all(|k| match &k.op {
        reef_plan::kernel::KernelOp::MatMul(m) => m.act != reef_model::Act::Gelu,
        _ => true,
    }));
}

#[test]
fn transposed_matmul_operands_are_read_in_place() {
    let mut r = rng(13);
    let (b, s, h, d) = (2, 6, 3, 8);
    let x = randn(&mut r, b * s * h * d);
    let y = randn(&mut r, b * s * h * d);
    let mut gb = GraphBuilder::new("heads");
    let xv = gb.input("x", DType::F32, vec![b, s, h, d]).unwrap();
    let yv = gb.input("y", DType::F32, vec![b, s, h, d]).unwrap();
    let q = gb
        .node(
            "q",
            Op::Transpose {
                perm: Some(vec![0, 2, 1, 3]),
            },
            &[xv],
        )
        .unwrap();
    let k = gb
        .node(
            "k",
            Op::Transpose {
                perm: Some(vec![0, 2, 3, 1]),
            },
            &[yv],
        )
        .unwrap();
    let out = gb.node("scores", Op::MatMul, &[q, k]).unwrap();
    gb.output(out);
    let g = gb.finish().unwrap();
    let plan = std::sync::Arc::new(reef_plan::compile(&g).expect("compile"));
    let kinds: Vec<&str> = plan.kernels.iter().map(|k| k.op.kind()).collect();
    assert_eq!(kinds, ["matmul"], "{kinds:?}");
    // scores[b, h, i, j] = sum_t x[b, i, h, t] * y[b, j, h, t]
    let at = |v: &[f32], bi: usize, si: usize, hi: usize, t: usize| {
        v[((bi * s + si) * h + hi) * d + t] as f64
    };
    let mut want = vec![];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..s {
                for j in 0..s {
                    want.push(
                        (0..d)
                            .map(|t| at(&x, bi, i, hi, t) * at(&y, bi, j, hi, t))
                            .sum::<f64>(),
                    );
                }
            }
        }
    }
    for variant in [Variant::Rt, Variant::Be] {
        let got = run_plan(&plan, &[bytes(&x), bytes(&y)], variant);
        assert_close("scores", &f32s(&got[0]), &want);
    }
}

#[test]
fn an_activation_after_an_unfused_batchnorm_runs_in_its_kernel() {
    let mut r = rng(14);
    let (n, c, hw) = (2, 3, 5);
    let x = randn(&mut r, n * c * hw);
    let mut gb = GraphBuilder::new("bn_relu");
    let xv = gb.input("x", DType::F32, vec![n, c, hw]).unwrap();
    let p: Vec<Vec<f32>> = (0..4)
        .map(|i| {
            let v = randn(&mut r, c);
            // Variances positive.
            if i == 3 {
                v.iter().map(|a| a.abs() + 0.5).collect()
            } else {
                v
            }
        })
        .collect();
    let names = ["gamma", "beta", "mean", "var"];
    let mut ins = vec![xv];
    for (name, v) in names.iter().zip(&p) {
        ins.push(
            gb.initializer(name, Tensor::f32(vec![c], v.clone()).unwrap())
                .unwrap(),
        );
    }
    let eps = 1e-5f32;
    let y = gb.node("bn", Op::BatchNorm { epsilon: eps }, &ins).unwrap();
    let out = gb.node("relu", Op::Relu, &[y]).unwrap();
    gb.output(out);
    let g = gb.finish().unwrap();
    let plan = std::sync::Arc::new(reef_plan::compile(&g).expect("compile"));
    assert_eq!(plan.kernels.len(), 1, "{:?}", plan.kernels);
    let reef_plan::kernel::KernelOp::ChannelAffine { act, .. } = &plan.kernels[0].op else {
        panic!("not a channel affine: {:?}", plan.kernels[0].op)
    };
    assert_eq!(*act, reef_model::Act::Relu);
    let mut want = vec![];
    for ni in 0..n {
        for ci in 0..c {
            for e in 0..hw {
                let v = x[(ni * c + ci) * hw + e] as f64;
                let s = p[0][ci] as f64 / (p[3][ci] as f64 + eps as f64).sqrt();
                want.push(((v - p[2][ci] as f64) * s + p[1][ci] as f64).max(0.0));
            }
        }
    }
    for variant in [Variant::Rt, Variant::Be] {
        let got = run_plan(&plan, &[bytes(&x)], variant);
        assert_close("bn_relu", &f32s(&got[0]), &want);
    }
}
