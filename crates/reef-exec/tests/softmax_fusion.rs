//! BERT's attention prologue `softmax(scores / c + mask)` lowers to one
//! softmax kernel (scale and mask absorbed), checked on the CPU backend for
//! its kernel list, against an f64 reference, and bit for bit against the
//! same graph left unfused (the fused kernel runs the same f32 operations in
//! the same order), in both variants.

mod common;

use common::*;
use reef_exec::Variant;
use reef_model::{DType, GraphBuilder, Op, Tensor};
use reef_plan::kernel::{BinOp, KernelOp};

/// `softmax(q @ k / 8 + mask)` (`mul`: `0.125 * (q @ k)` instead), with
/// `mshape` the mask's shape; `expose` also outputs the masked scores,
/// which keeps the graph unfused.
fn attention(dims: [usize; 4], mshape: &[usize], mul: bool, expose: bool) -> reef_model::Graph {
    let [b, h, s, d] = dims;
    let mut g = GraphBuilder::new("attention");
    let q = g.input("q", DType::F32, vec![b, h, s, d]).unwrap();
    let k = g.input("k", DType::F32, vec![b, h, d, s]).unwrap();
    let m = g.input("mask", DType::F32, mshape.to_vec()).unwrap();
    let scores = g.node("scores", Op::MatMul, &[q, k]).unwrap();
    let scaled = if mul {
        let c = g.initializer("c", Tensor::scalar_f32(0.125)).unwrap();
        g.node("scale", Op::Mul, &[c, scores]).unwrap()
    } else {
        let c = g.initializer("c", Tensor::scalar_f32(8.0)).unwrap();
        g.node("scale", Op::Div, &[scores, c]).unwrap()
    };
    let masked = g.node("mask_add", Op::Add, &[scaled, m]).unwrap();
    let p = g
        .node("softmax", Op::Softmax { axis: -1 }, &[masked])
        .unwrap();
    g.output(p);
    if expose {
        g.output(masked);
    }
    g.finish().unwrap()
}

/// f64 reference of `softmax(q @ k * scale + mask)`.
fn reference(dims: [usize; 4], mshape: &[usize], q: &[f32], k: &[f32], mask: &[f32]) -> Vec<f64> {
    let [b, h, s, d] = dims;
    let ms: Vec<usize> = mshape.to_vec();
    let mut out = vec![0f64; b * h * s * s];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..s {
                let row: Vec<f64> = (0..s)
                    .map(|j| {
                        let dot: f64 = (0..d)
                            .map(|t| {
                                q[((bi * h + hi) * s + i) * d + t] as f64
                                    * k[((bi * h + hi) * d + t) * s + j] as f64
                            })
                            .sum();
                        // Mask index with broadcasting over [b, h, s, s].
                        let idx = [bi, hi, i, j];
                        let mut off = 0;
                        for (dim, &n) in ms.iter().enumerate() {
                            let src = idx[4 - ms.len() + dim];
                            off = off * n + if n == 1 { 0 } else { src };
                        }
                        dot / 8.0 + mask[off] as f64
                    })
                    .collect();
                let mx = row.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = row.iter().map(|v| (v - mx).exp()).collect();
                let sum: f64 = e.iter().sum();
                for j in 0..s {
                    out[((bi * h + hi) * s + i) * s + j] = e[j] / sum;
                }
            }
        }
    }
    out
}

#[test]
fn scale_and_mask_fuse_into_the_softmax() {
    let mut r = rng(21);
    let dims = [2, 3, 5, 8];
    let [b, h, s, d] = dims;
    let q = randn(&mut r, b * h * s * d);
    let k = randn(&mut r, b * h * d * s);
    // BERT's [B, 1, 1, S] mask, then a causal-style [S, S] one.
    for mshape in [vec![b, 1, 1, s], vec![s, s], vec![1, 1, 1, s]] {
        let mask: Vec<f32> = randn(&mut r, mshape.iter().product())
            .into_iter()
            .map(|v| if v > 0.8 { -1e4 } else { v })
            .collect();
        let want = reference(dims, &mshape, &q, &k, &mask);
        let inputs = [bytes(&q), bytes(&k), bytes(&mask)];
        for mul in [false, true] {
            let plan = std::sync::Arc::new(
                reef_plan::compile(&attention(dims, &mshape, mul, false)).unwrap(),
            );
            let kinds: Vec<&str> = plan.kernels.iter().map(|k| k.op.kind()).collect();
            assert_eq!(kinds, ["matmul", "softmax"], "{mshape:?} mul={mul}");
            let KernelOp::Softmax { pre, .. } = &plan.kernels[1].op else {
                unreachable!()
            };
            let op = if mul { BinOp::Mul } else { BinOp::Div };
            assert_eq!(pre.scale.map(|s| s.0), Some(op));
            assert!(pre.mask.is_some());
            let unfused = std::sync::Arc::new(
                reef_plan::compile(&attention(dims, &mshape, mul, true)).unwrap(),
            );
            assert!(unfused.kernels.len() >= 4, "{:?}", unfused.kernels);
            for variant in [Variant::Rt, Variant::Be] {
                let got = run_plan(&plan, &inputs, variant);
                assert_close("fused softmax", &f32s(&got[0]), &want);
                let plain = run_plan(&unfused, &inputs, variant);
                assert_eq!(
                    got[0], plain[0],
                    "fused != unfused bits ({mshape:?}, mul={mul})"
                );
            }
        }
    }
}

#[test]
fn a_mask_whose_rows_are_not_one_group_stays_unfused() {
    let mut r = rng(22);
    let dims = [2, 3, 4, 8];
    let [b, h, s, d] = dims;
    let mshape = vec![b, 1, s, s];
    let q = randn(&mut r, b * h * s * d);
    let k = randn(&mut r, b * h * d * s);
    let mask = randn(&mut r, b * s * s);
    let plan =
        std::sync::Arc::new(reef_plan::compile(&attention(dims, &mshape, false, false)).unwrap());
    let kinds: Vec<&str> = plan.kernels.iter().map(|k| k.op.kind()).collect();
    assert_eq!(kinds, ["matmul", "binary", "binary", "softmax"]);
    let got = run_plan(&plan, &[bytes(&q), bytes(&k), bytes(&mask)], Variant::Be);
    assert_close(
        "unfused softmax",
        &f32s(&got[0]),
        &reference(dims, &mshape, &q, &k, &mask),
    );
}
