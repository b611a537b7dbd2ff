//! BERT's attention, `softmax(Q·Kᵀ / c + mask) · V` with its head splits
//! and merge transpose, lowers to one fused attention kernel; checked on
//! the CPU backend for its kernel list, against an f64 reference, against
//! the same graph left unfused, and for equal bits in both variants. Plans
//! the kernel cannot take stay unfused, and bad attention kernels are
//! refused by name.

mod common;

use common::*;
use reef_exec::{Device, Variant};
use reef_model::{DType, GraphBuilder, Op, Tensor};
use reef_plan::kernel::{AttentionSpec, KernelOp, SoftmaxPre};

/// Q, K and V as `[b, s, h, d]` inputs split into heads, then
/// `softmax(q·kᵀ / c + mask) · v` with the mask `[b, 1, 1, sk]` an input,
/// merged back to `[b, sq, h·dv]`. `expose` also outputs the probabilities, which keeps the
/// graph unfused.
fn bert_attention(dims: [usize; 6], expose: bool) -> reef_model::Graph {
    let [b, h, sq, sk, d, dv] = dims;
    let mut g = GraphBuilder::new("attention");
    let xq = g.input("q", DType::F32, vec![b, sq, h, d]).unwrap();
    let xk = g.input("k", DType::F32, vec![b, sk, h, d]).unwrap();
    let xv = g.input("v", DType::F32, vec![b, sk, h, dv]).unwrap();
    let m = g.input("mask", DType::F32, vec![b, 1, 1, sk]).unwrap();
    let tr = |g: &mut GraphBuilder, x, n: &str, perm: [usize; 4]| {
        g.node(
            n,
            Op::Transpose {
                perm: Some(perm.to_vec()),
            },
            &[x],
        )
        .unwrap()
    };
    let q = tr(&mut g, xq, "q_heads", [0, 2, 1, 3]);
    let k = tr(&mut g, xk, "k_heads", [0, 2, 3, 1]);
    let v = tr(&mut g, xv, "v_heads", [0, 2, 1, 3]);
    let s = g.node("scores", Op::MatMul, &[q, k]).unwrap();
    let c = g
        .initializer("c", Tensor::scalar_f32((d as f32).sqrt()))
        .unwrap();
    let s = g.node("scale", Op::Div, &[s, c]).unwrap();
    let s = g.node("mask_add", Op::Add, &[s, m]).unwrap();
    let p = g.node("softmax", Op::Softmax { axis: -1 }, &[s]).unwrap();
    let y = g.node("context", Op::MatMul, &[p, v]).unwrap();
    let y = tr(&mut g, y, "merge", [0, 2, 1, 3]);
    let shape = vec![b as i64, sq as i64, (h * dv) as i64];
    let shape = g
        .initializer("shape", Tensor::i64(vec![3], shape).unwrap())
        .unwrap();
    let y = g
        .node("flat", Op::Reshape { allowzero: false }, &[y, shape])
        .unwrap();
    g.output(y);
    if expose {
        g.output(p);
    }
    g.finish().unwrap()
}

/// The f64 reference of [`bert_attention`]'s output, `[b, sq, h, dv]`.
fn reference(dims: [usize; 6], q: &[f32], k: &[f32], v: &[f32], mask: &[f32]) -> Vec<f64> {
    let [b, h, sq, sk, d, dv] = dims;
    let mut out = vec![0f64; b * sq * h * dv];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..sq {
                let s: Vec<f64> = (0..sk)
                    .map(|j| {
                        let dot: f64 = (0..d)
                            .map(|t| {
                                q[((bi * sq + i) * h + hi) * d + t] as f64
                                    * k[((bi * sk + j) * h + hi) * d + t] as f64
                            })
                            .sum();
                        dot / (d as f64).sqrt() + mask[bi * sk + j] as f64
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..dv {
                    let acc: f64 = (0..sk)
                        .map(|j| e[j] * v[((bi * sk + j) * h + hi) * dv + c] as f64)
                        .sum();
                    out[((bi * sq + i) * h + hi) * dv + c] = acc / sum;
                }
            }
        }
    }
    out
}

fn inputs(r: &mut rand::rngs::StdRng, dims: [usize; 6]) -> [Vec<f32>; 4] {
    let [b, h, sq, sk, d, dv] = dims;
    let mask = randn(r, b * sk)
        .into_iter()
        .map(|x| if x > 1.0 { -1e4 } else { x })
        .collect();
    [
        randn(r, b * sq * h * d),
        randn(r, b * sk * h * d),
        randn(r, b * sk * h * dv),
        mask,
    ]
}

#[test]
fn bert_attention_runs_as_one_kernel() {
    let mut r = rng(31);
    for dims in [
        [2, 3, 37, 45, 16, 24],
        [1, 2, 64, 33, 8, 8],
        [2, 1, 3, 70, 5, 7],
    ] {
        let [q, k, v, mask] = inputs(&mut r, dims);
        let ins = [bytes(&q), bytes(&k), bytes(&v), bytes(&mask)];
        let plan = std::sync::Arc::new(reef_plan::compile(&bert_attention(dims, false)).unwrap());
        let kinds: Vec<&str> = plan.kernels.iter().map(|k| k.op.kind()).collect();
        assert_eq!(kinds, ["attention"], "{dims:?}");
        let KernelOp::Attention(a) = &plan.kernels[0].op else {
            unreachable!()
        };
        assert!(a.pre.scale.is_some() && a.pre.mask.is_some(), "{a:?}");
        let want = reference(dims, &q, &k, &v, &mask);
        let unfused = std::sync::Arc::new(reef_plan::compile(&bert_attention(dims, true)).unwrap());
        assert!(
            !unfused.kernels.iter().any(|k| k.op.kind() == "attention"),
            "{:?}",
            unfused.kernels
        );
        let rt = run_plan(&plan, &ins, Variant::Rt);
        assert_close("fused attention", &f32s(&rt[0]), &want);
        let be = run_plan(&plan, &ins, Variant::Be);
        assert_eq!(rt[0], be[0], "RT and BE bits differ ({dims:?})");
        let plain = run_plan(&unfused, &ins, Variant::Rt);
        assert_close("unfused attention", &f32s(&plain[0]), &want);
        // The two orders of the same f32 sums agree to rounding.
        let plain64: Vec<f64> = f32s(&plain[0]).iter().map(|&x| x as f64).collect();
        assert!(rel_l2(&f32s(&rt[0]), &plain64) < 1e-5, "{dims:?}");
    }
}

#[test]
fn attention_the_kernel_cannot_take_stays_unfused() {
    // Rows longer than ATTENTION_MAX_D.
    let plan = reef_plan::compile(&bert_attention([1, 1, 4, 4, 130, 8], false)).unwrap();
    assert!(!plan.kernels.iter().any(|k| k.op.kind() == "attention"));
    // Probabilities that a second reader needs.
    let plan = reef_plan::compile(&bert_attention([1, 1, 4, 4, 8, 8], true)).unwrap();
    assert!(plan.kernels.iter().any(|k| k.op.kind() == "softmax"));
}

/// A hand-built attention kernel over dense `[1, 1, 2, 2]` operands.
fn spec(out_strides: [usize; 4], sk: usize) -> AttentionSpec {
    AttentionSpec {
        batch: 1,
        heads: 1,
        sq: 2,
        sk,
        d: 2,
        dv: 2,
        q_strides: [4, 4, 2, 1],
        k_strides: [4, 4, 2, 1],
        v_strides: [4, 4, 2, 1],
        out_strides,
        pre: SoftmaxPre::default(),
    }
}

#[test]
fn bad_attention_kernels_are_refused_by_name() {
    for (s, why) in [
        (spec([4, 4, 1, 1], 2), "overlap"),
        (spec([4, 4, 2, 1], 0), "zero keys"),
    ] {
        let mut b = PlanBuilder::new("bad_attention");
        let q = b.input("q", DType::F32, &[4]);
        let k = b.input("k", DType::F32, &[4]);
        let v = b.input("v", DType::F32, &[4]);
        let o = b.arena("o", DType::F32, 4);
        b.kernel(KernelOp::Attention(s), &[q, k, v], o);
        b.output(o, &[4]);
        let plan = b.build();
        let err = device().load(plan).err().expect("refused").to_string();
        assert!(err.contains("attention") && err.contains(why), "{err}");
    }
    // Operands shorter than their strides reach.
    let mut b = PlanBuilder::new("short_attention");
    let q = b.input("q", DType::F32, &[3]);
    let k = b.input("k", DType::F32, &[4]);
    let v = b.input("v", DType::F32, &[4]);
    let o = b.arena("o", DType::F32, 4);
    b.kernel(KernelOp::Attention(spec([4, 4, 2, 1], 2)), &[q, k, v], o);
    b.output(o, &[4]);
    assert!(device().load(b.build()).is_err());
}

/// `softmax(c · q·k) · v` over `[heads, s, d]` operands (one batch dim, K
/// given transposed as stored, no mask, no merge transpose); `expose` also
/// outputs the probabilities, which keeps the graph unfused.
fn rank3_attention(dims: [usize; 5], expose: bool) -> reef_model::Graph {
    let [h, sq, sk, d, dv] = dims;
    let mut g = GraphBuilder::new("attention3");
    let q = g.input("q", DType::F32, vec![h, sq, d]).unwrap();
    let k = g.input("k_t", DType::F32, vec![h, d, sk]).unwrap();
    let v = g.input("v", DType::F32, vec![h, sk, dv]).unwrap();
    let s = g.node("scores", Op::MatMul, &[q, k]).unwrap();
    let c = g.initializer("c", Tensor::scalar_f32(0.3)).unwrap();
    let s = g.node("scale", Op::Mul, &[c, s]).unwrap();
    let p = g.node("softmax", Op::Softmax { axis: -1 }, &[s]).unwrap();
    let y = g.node("context", Op::MatMul, &[p, v]).unwrap();
    g.output(y);
    if expose {
        g.output(p);
    }
    g.finish().unwrap()
}

#[test]
fn attention_over_one_batch_dim_matches_the_unfused_plan() {
    let mut r = rng(32);
    let dims = [5, 33, 41, 12, 20];
    let [h, sq, sk, d, dv] = dims;
    let ins = [
        bytes(&randn(&mut r, h * sq * d)),
        bytes(&randn(&mut r, h * d * sk)),
        bytes(&randn(&mut r, h * sk * dv)),
    ];
    let plan = std::sync::Arc::new(reef_plan::compile(&rank3_attention(dims, false)).unwrap());
    let kinds: Vec<&str> = plan.kernels.iter().map(|k| k.op.kind()).collect();
    assert_eq!(kinds, ["attention"]);
    let KernelOp::Attention(a) = &plan.kernels[0].op else {
        unreachable!()
    };
    assert_eq!(
        (a.batch, a.heads, a.sq, a.sk, a.d, a.dv),
        (1, h, sq, sk, d, dv)
    );
    // K is read as stored: [h, d, sk] with keys along the last axis.
    assert_eq!(a.k_strides, [0, d * sk, 1, sk]);
    let unfused = std::sync::Arc::new(reef_plan::compile(&rank3_attention(dims, true)).unwrap());
    let got = f32s(&run_plan(&plan, &ins, Variant::Rt)[0]);
    let want: Vec<f64> = f32s(&run_plan(&unfused, &ins, Variant::Rt)[0])
        .iter()
        .map(|&x| x as f64)
        .collect();
    assert!(rel_l2(&got, &want) < 1e-5, "{}", rel_l2(&got, &want));
}
