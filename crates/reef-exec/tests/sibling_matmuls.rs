//! Sibling matmuls (BERT's query, key and value projections: one activation,
//! three constant weights, each with its bias) run as one batched launch
//! whose three results land in slices of one buffer. Checked on the CPU
//! backend for its kernel list, against an f64 reference, and bit for bit
//! against the same graph left unfused, in both variants.

mod common;

use common::*;
use reef_exec::Variant;
use reef_model::{DType, GraphBuilder, Op, Tensor};
use reef_plan::kernel::KernelOp;

const S: usize = 6;
const K: usize = 16;
const N: usize = 12;

/// `x [1, S, K]` (`[S, K]` with `gemm`), three `x @ w_i + b_i` (MatMul
/// then Add, or one Gemm with `transB` over `w_iᵀ`), combined as
/// `q * k + v`. With `expose`, the raw products (the Gemm outputs) are graph
/// outputs too (which keeps them apart).
fn graph(ws: &[Vec<f32>], bs: &[Vec<f32>], expose: bool, gemm: bool) -> reef_model::Graph {
    let mut g = GraphBuilder::new("qkv");
    let shape = if gemm { vec![S, K] } else { vec![1, S, K] };
    let x = g.input("x", DType::F32, shape).unwrap();
    let x = g.node("ln", Op::Relu, &[x]).unwrap();
    let mut outs = vec![];
    for (i, (w, b)) in ws.iter().zip(bs).enumerate() {
        let bv = g
            .initializer(&format!("b{i}"), Tensor::f32(vec![N], b.clone()).unwrap())
            .unwrap();
        let y = if gemm {
            let wt: Vec<f32> = (0..N * K).map(|e| w[(e % K) * N + e / K]).collect();
            let wv = g
                .initializer(&format!("w{i}"), Tensor::f32(vec![N, K], wt).unwrap())
                .unwrap();
            let op = Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            };
            g.node(&format!("gemm{i}"), op, &[x, wv, bv]).unwrap()
        } else {
            let wv = g
                .initializer(
                    &format!("w{i}"),
                    Tensor::f32(vec![K, N], w.clone()).unwrap(),
                )
                .unwrap();
            g.node(&format!("mm{i}"), Op::MatMul, &[x, wv]).unwrap()
        };
        if expose {
            g.output(y);
        }
        outs.push(if gemm {
            y
        } else {
            g.node(&format!("bias{i}"), Op::Add, &[y, bv]).unwrap()
        });
    }
    let qk = g.node("qk", Op::Mul, &[outs[0], outs[1]]).unwrap();
    let r = g.node("r", Op::Add, &[qk, outs[2]]).unwrap();
    g.output(r);
    g.finish().unwrap()
}

#[test]
fn sibling_matmuls_run_as_one_batched_launch() {
    let mut r = rng(41);
    let ws: Vec<Vec<f32>> = (0..3).map(|_| randn(&mut r, K * N)).collect();
    let bs: Vec<Vec<f32>> = (0..3).map(|_| randn(&mut r, N)).collect();
    let x = randn(&mut r, S * K);
    // f64 reference of relu(x) @ w_i + b_i, then q * k + v.
    let xr: Vec<f64> = x.iter().map(|&v| v.max(0.0) as f64).collect();
    let proj = |i: usize| -> Vec<f64> {
        (0..S * N)
            .map(|e| {
                let (s, j) = (e / N, e % N);
                (0..K)
                    .map(|t| xr[s * K + t] * ws[i][t * N + j] as f64)
                    .sum::<f64>()
                    + bs[i][j] as f64
            })
            .collect()
    };
    let (q, k, v) = (proj(0), proj(1), proj(2));
    let want: Vec<f64> = (0..S * N).map(|e| q[e] * k[e] + v[e]).collect();
    for gemm in [false, true] {
        let fused = std::sync::Arc::new(reef_plan::compile(&graph(&ws, &bs, false, gemm)).unwrap());
        let kinds: Vec<&str> = fused.kernels.iter().map(|k| k.op.kind()).collect();
        assert_eq!(
            kinds,
            ["unary", "matmul", "binary", "binary"],
            "gemm={gemm}"
        );
        let KernelOp::MatMul(m) = &fused.kernels[1].op else {
            unreachable!()
        };
        assert_eq!((m.batch.clone(), m.m, m.n, m.k), (vec![3], S, N, K));
        assert_eq!(m.bias_stride_batch, N);
        let apart = std::sync::Arc::new(reef_plan::compile(&graph(&ws, &bs, true, gemm)).unwrap());
        let matmuls = apart
            .kernels
            .iter()
            .filter(|k| k.op.kind() == "matmul")
            .count();
        assert_eq!(matmuls, 3, "gemm={gemm}");
        for variant in [Variant::Rt, Variant::Be] {
            let got = run_plan(&fused, &[bytes(&x)], variant);
            assert_close("fused projections", &f32s(&got[0]), &want);
            // The unfused graph lists the three raw products first.
            let plain = run_plan(&apart, &[bytes(&x)], variant);
            assert_eq!(
                got[0], plain[3],
                "fused != unfused bits ({variant:?}, gemm={gemm})"
            );
        }
    }
}
