//! Single-op test graphs covering every kernel family and its variants, with
//! random weights: `reef selftest` runs each on the device under test and on
//! the CPU backend.

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_model::op::{ConvAttrs, PoolAttrs};
use reef_model::{DType, Graph, GraphBuilder, Op, PadMode, PoolKind, Reduction, Tensor};

/// A named single-kernel test graph; `tf32` marks ops that run on tensor cores.
pub struct Case {
    /// Name.
    pub name: String,
    /// The graph.
    pub graph: Graph,
    /// Computed with TF32 tensor cores on the GPU (a matmul, or a convolution
    /// with c/groups > 1): looser tolerance.
    pub tf32: bool,
}

/// Random f32 tensor in [-1, 1).
pub fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::f32(
        shape.to_vec(),
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    )
    .expect("sizes match")
}

/// Random inputs for a graph: f32 in [-1, 1), i64 in [0, 100), bool at random.
pub fn random_inputs(g: &Graph, rng: &mut ChaCha8Rng) -> Vec<Tensor> {
    g.inputs
        .iter()
        .map(|&i| {
            let v = &g.values[i];
            let n: usize = v.shape.iter().product();
            match v.dtype {
                // Masks are 0/1 (mostly 1); ids stay below every zoo vocabulary.
                DType::I64 if v.name.contains("mask") => Tensor::i64(
                    v.shape.clone(),
                    (0..n).map(|_| rng.random_bool(0.9) as i64).collect(),
                ),
                DType::I64 => Tensor::i64(
                    v.shape.clone(),
                    (0..n).map(|_| rng.random_range(0..1000)).collect(),
                ),
                DType::Bool => Tensor::bool(
                    v.shape.clone(),
                    (0..n).map(|_| rng.random_bool(0.5)).collect(),
                ),
                _ => Ok(rand_tensor(rng, &v.shape)),
            }
            .expect("sizes match")
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn conv(
    rng: &mut ChaCha8Rng,
    name: &str,
    x: [usize; 4],
    k: usize,
    rs: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    groups: usize,
    residual: bool,
    act: Option<Op>,
) -> Result<Case> {
    let mut b = GraphBuilder::new(name);
    let xi = b.input("x", DType::F32, x.to_vec())?;
    let scale = 1.0 / ((x[1] / groups * rs * rs) as f32).sqrt();
    let mut w = rand_tensor(rng, &[k, x[1] / groups, rs, rs]);
    w = Tensor::f32(
        w.shape.clone(),
        w.as_f32().unwrap().iter().map(|v| v * scale).collect(),
    )?;
    let wi = b.initializer("w", w)?;
    let bi = b.initializer("b", rand_tensor(rng, &[k]))?;
    let attrs = ConvAttrs {
        kernel: [rs, rs],
        stride: [stride; 2],
        pads: [pad; 4],
        dilation: [dil; 2],
        groups,
    };
    let mut y = b.node_named(
        "conv",
        Op::Conv(attrs),
        vec![Some(xi), Some(wi), Some(bi)],
        &["y"],
    )?[0];
    if residual {
        let shape = b.shape(y).to_vec();
        let r = b.input("r", DType::F32, shape)?;
        y = b.node("add", Op::Add, &[y, r])?;
    }
    if let Some(a) = act {
        y = b.node("act", a, &[y])?;
    }
    b.output(y);
    Ok(Case {
        name: name.into(),
        graph: b.finish()?,
        tf32: x[1] / groups > 1,
    })
}

/// `softmax(Q·Kᵀ / sqrt(d) + mask) · V` over `dims = [b, h, sq, sk, d, dv]`
/// with BERT's head splits (Q, K and V given as `[b, s, h, d]`), the mask
/// (shape `mask`, scaled to BERT's range) an input, and with `merge` the
/// merge transpose after it.
fn attention(
    r: &mut ChaCha8Rng,
    name: &str,
    dims: [usize; 6],
    mask: Option<&[usize]>,
    merge: bool,
) -> Result<Case> {
    let [bn, h, sq, sk, d, dv] = dims;
    let mut b = GraphBuilder::new(name);
    let xq = b.input("q", DType::F32, vec![bn, sq, h, d])?;
    let xk = b.input("k", DType::F32, vec![bn, sk, h, d])?;
    let xv = b.input("v", DType::F32, vec![bn, sk, h, dv])?;
    let tr = |b: &mut GraphBuilder, x, n: &str, perm: [usize; 4]| {
        b.node(
            n,
            Op::Transpose {
                perm: Some(perm.to_vec()),
            },
            &[x],
        )
    };
    let q = tr(&mut b, xq, "q_heads", [0, 2, 1, 3])?;
    let k = tr(&mut b, xk, "k_heads", [0, 2, 3, 1])?;
    let v = tr(&mut b, xv, "v_heads", [0, 2, 1, 3])?;
    let s = b.node("scores", Op::MatMul, &[q, k])?;
    let c = b.initializer("scale", Tensor::scalar_f32((d as f32).sqrt()))?;
    let mut s = b.node("scale", Op::Div, &[s, c])?;
    if let Some(ms) = mask {
        // Mostly small, some -1e4 ("masked out"), as BERT's mask is.
        let n: usize = ms.iter().product();
        let vals = (0..n)
            .map(|_| {
                if r.random_bool(0.2) {
                    -1e4
                } else {
                    r.random_range(-1.0f32..1.0)
                }
            })
            .collect();
        let m = b.initializer("mask", Tensor::f32(ms.to_vec(), vals)?)?;
        s = b.node("mask_add", Op::Add, &[s, m])?;
    }
    let p = b.node("softmax", Op::Softmax { axis: -1 }, &[s])?;
    let mut y = b.node("context", Op::MatMul, &[p, v])?;
    if merge {
        y = tr(&mut b, y, "merge", [0, 2, 1, 3])?;
    }
    b.output(y);
    Ok(Case {
        name: name.into(),
        graph: b.finish()?,
        tf32: false,
    })
}

/// Attention over one batch dim (`[heads, s, d]` operands, K given
/// transposed as it is stored), scaled by a multiplication.
fn attention_rank3(r: &mut ChaCha8Rng) -> Result<Case> {
    let name = "attention_rank3";
    let mut b = GraphBuilder::new(name);
    let q = b.input("q", DType::F32, vec![6, 50, 32])?;
    let k = b.input("k_t", DType::F32, vec![6, 32, 40])?;
    let v = b.input("v", DType::F32, vec![6, 40, 48])?;
    let s = b.node("scores", Op::MatMul, &[q, k])?;
    let c = b.initializer("scale", Tensor::scalar_f32(r.random_range(0.1f32..0.3)))?;
    let s = b.node("scale", Op::Mul, &[c, s])?;
    let p = b.node("softmax", Op::Softmax { axis: -1 }, &[s])?;
    let y = b.node("context", Op::MatMul, &[p, v])?;
    b.output(y);
    Ok(Case {
        name: name.into(),
        graph: b.finish()?,
        tf32: false,
    })
}

fn unary(name: &str, op: Op, shape: &[usize]) -> Result<Case> {
    let mut b = GraphBuilder::new(name);
    let x = b.input("x", DType::F32, shape.to_vec())?;
    let y = b.node("op", op, &[x])?;
    b.output(y);
    Ok(Case {
        name: name.into(),
        graph: b.finish()?,
        tf32: false,
    })
}

/// Every test case.
pub fn all(seed: u64) -> Result<Vec<Case>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let r = &mut rng;
    let mut v = vec![
        conv(
            r,
            "conv3x3_s1",
            [2, 32, 28, 28],
            64,
            3,
            1,
            1,
            1,
            1,
            false,
            Some(Op::Relu),
        )?,
        conv(
            r,
            "conv3x3_s2_residual",
            [1, 64, 30, 30],
            64,
            3,
            2,
            1,
            1,
            1,
            false,
            None,
        )?,
        conv(
            r,
            "conv1x1_residual_relu",
            [2, 64, 14, 14],
            64,
            1,
            1,
            0,
            1,
            1,
            true,
            Some(Op::Relu),
        )?,
        conv(
            r,
            "conv7x7_s2",
            [1, 3, 64, 64],
            32,
            7,
            2,
            3,
            1,
            1,
            false,
            Some(Op::Relu),
        )?,
        conv(
            r,
            "conv_dilated_grouped",
            [1, 32, 17, 19],
            48,
            3,
            1,
            2,
            2,
            4,
            false,
            None,
        )?,
        conv(
            r,
            "conv_depthwise_relu6",
            [2, 48, 20, 20],
            48,
            3,
            2,
            1,
            1,
            48,
            false,
            Some(Op::Clip {
                min: Some(0.0),
                max: Some(6.0),
            }),
        )?,
        // 128 or more output channels: the 128 x 64 tiles (GemmTile::Tall),
        // with a partial pixel tile and, at 576 channels, a partial channel
        // tile; the 1x1 over 49 pixels gathers through the K-index table.
        conv(
            r,
            "conv3x3_256ch_residual",
            [2, 32, 15, 13],
            256,
            3,
            1,
            1,
            1,
            1,
            true,
            Some(Op::Relu),
        )?,
        conv(
            r,
            "conv1x1_576ch_gather",
            [1, 24, 7, 7],
            576,
            1,
            1,
            0,
            1,
            1,
            false,
            None,
        )?,
        // 128 x 128 tiles (and, with REEF_WGMMA=1, the shared-memory wgmma
        // tiles): a 1x1 whose pixels load as 16-byte rows (npix % 4 == 0)
        // with a partial channel tile, and a 7x7 on the stepping loader.
        conv(
            r,
            "conv1x1_160ch_rows",
            [2, 40, 8, 8],
            160,
            1,
            1,
            0,
            1,
            1,
            false,
            Some(Op::Relu),
        )?,
        conv(
            r,
            "conv7x7_s2_144ch",
            [1, 5, 31, 33],
            144,
            7,
            2,
            3,
            1,
            1,
            false,
            None,
        )?,
        conv(
            r,
            "conv_odd_channels",
            [1, 13, 9, 11],
            37,
            3,
            1,
            1,
            1,
            1,
            false,
            Some(Op::Sigmoid),
        )?,
    ];
    // Gemm with bias (torch Linear) and batched MatMul with broadcasting.
    {
        let mut b = GraphBuilder::new("gemm_bias_relu");
        let x = b.input("x", DType::F32, vec![5, 300])?;
        let w = b.initializer("w", rand_tensor(r, &[130, 300]))?;
        let bias = b.initializer("b", rand_tensor(r, &[130]))?;
        let y = b.node(
            "gemm",
            Op::Gemm {
                alpha: 0.5,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            },
            &[x, w, bias],
        )?;
        let y = b.node("relu", Op::Relu, &[y])?;
        b.output(y);
        v.push(Case {
            name: "gemm_bias_relu".into(),
            graph: b.finish()?,
            tf32: true,
        });
    }
    {
        let mut b = GraphBuilder::new("matmul_batched_bias_residual");
        let x = b.input("x", DType::F32, vec![2, 3, 40, 72])?;
        let w = b.initializer("w", rand_tensor(r, &[72, 56]))?;
        let bias = b.initializer("b", rand_tensor(r, &[56]))?;
        let res = b.input("r", DType::F32, vec![2, 3, 40, 56])?;
        let y = b.node("mm", Op::MatMul, &[x, w])?;
        let y = b.node("bias", Op::Add, &[y, bias])?;
        let y = b.node("res", Op::Add, &[y, res])?;
        b.output(y);
        v.push(Case {
            name: "matmul_batched_bias_residual".into(),
            graph: b.finish()?,
            tf32: true,
        });
    }
    {
        let mut b = GraphBuilder::new("matmul_attention_scores");
        let q = b.input("q", DType::F32, vec![2, 4, 33, 16])?;
        let k = b.input("k", DType::F32, vec![2, 4, 16, 33])?;
        let s = b.node("qk", Op::MatMul, &[q, k])?;
        let s = b.node("softmax", Op::Softmax { axis: -1 }, &[s])?;
        b.output(s);
        v.push(Case {
            name: "matmul_attention_softmax".into(),
            graph: b.finish()?,
            tf32: true,
        });
    }
    // Fused attention (one kernel): BERT's shapes, then rows, keys and head
    // lengths off every tile and chunk size (odd chunk counts leave the
    // second key group one chunk fewer, a single key none), the longest
    // rows, one batch dim, a row-cycling mask, and many tiles with short
    // and long value rows.
    for (name, dims, mask, merge) in [
        (
            "attention_bert",
            [2, 4, 128, 128, 64, 64],
            Some(vec![2, 1, 1, 128]),
            true,
        ),
        (
            "attention_odd",
            [1, 3, 45, 77, 24, 40],
            Some(vec![45, 77]),
            true,
        ),
        ("attention_d128", [1, 2, 33, 70, 128, 128], None, false),
        ("attention_one_key", [2, 2, 5, 1, 8, 8], None, true),
        // Many tiles, with short and long value rows.
        (
            "attention_full_tiles",
            [6, 12, 128, 96, 64, 64],
            Some(vec![6, 1, 1, 96]),
            true,
        ),
        (
            "attention_full_wide",
            [4, 8, 300, 50, 32, 96],
            Some(vec![4, 1, 1, 50]),
            true,
        ),
    ] {
        v.push(attention(r, name, dims, mask.as_deref(), merge)?);
    }
    v.push(attention_rank3(r)?);
    for (name, kind, k, s, p, ceil, cip) in [
        ("maxpool3x3_s2", PoolKind::Max, 3, 2, 1, false, false),
        ("avgpool3x3_s1_pad", PoolKind::Avg, 3, 1, 1, false, true),
        ("avgpool2x2_ceil_excl", PoolKind::Avg, 2, 2, 0, true, false),
    ] {
        let attrs = PoolAttrs {
            kind,
            kernel: [k, k],
            stride: [s, s],
            pads: [p; 4],
            dilation: [1, 1],
            ceil_mode: ceil,
            count_include_pad: cip,
        };
        v.push(unary(name, Op::Pool(attrs), &[2, 8, 15, 17])?);
    }
    v.push(unary("global_avgpool", Op::GlobalAvgPool, &[2, 64, 7, 7])?);
    v.push(unary("relu", Op::Relu, &[3, 1000])?);
    v.push(unary("tanh", Op::Tanh, &[3, 1000])?);
    v.push(unary("erf", Op::Erf, &[3, 1000])?);
    v.push(unary("exp", Op::Exp, &[3, 1000])?);
    v.push(unary(
        "softmax_axis1",
        Op::Softmax { axis: 1 },
        &[4, 37, 5],
    )?);
    v.push(unary(
        "transpose",
        Op::Transpose {
            perm: Some(vec![0, 2, 3, 1]),
        },
        &[2, 5, 6, 7],
    )?);
    v.push(unary(
        "reduce_mean",
        Op::Reduce {
            kind: Reduction::Mean,
            axes: Some(vec![-1]),
            keepdims: true,
            noop_with_empty_axes: false,
        },
        &[4, 9, 130],
    )?);
    {
        let mut b = GraphBuilder::new("layernorm");
        let x = b.input("x", DType::F32, vec![2, 17, 96])?;
        let g = b.initializer("g", rand_tensor(r, &[96]))?;
        let be = b.initializer("b", rand_tensor(r, &[96]))?;
        let y = b.node(
            "ln",
            Op::LayerNorm {
                axis: -1,
                epsilon: 1e-5,
            },
            &[x, g, be],
        )?;
        b.output(y);
        v.push(Case {
            name: "layernorm".into(),
            graph: b.finish()?,
            tf32: false,
        });
    }
    {
        let mut b = GraphBuilder::new("binary_broadcast");
        let x = b.input("x", DType::F32, vec![2, 3, 16, 16])?;
        let y = b.input("y", DType::F32, vec![3, 1, 16])?;
        let a = b.node("add", Op::Add, &[x, y])?;
        let m = b.node("mul", Op::Mul, &[a, y])?;
        let d = b.node("div", Op::Div, &[m, x])?;
        let s = b.node("sub", Op::Sub, &[d, x])?;
        b.output(s);
        v.push(Case {
            name: "binary_broadcast".into(),
            graph: b.finish()?,
            tf32: false,
        });
    }
    {
        let mut b = GraphBuilder::new("concat_slice_pad_where");
        let x = b.input("x", DType::F32, vec![2, 3, 8, 8])?;
        let y = b.input("y", DType::F32, vec![2, 5, 8, 8])?;
        let c = b.node("concat", Op::Concat { axis: 1 }, &[x, y])?;
        let st = b.initializer("starts", Tensor::i64_vec(&[1, 7]))?;
        let en = b.initializer("ends", Tensor::i64_vec(&[7, 0]))?;
        let ax = b.initializer("axes", Tensor::i64_vec(&[1, 3]))?;
        let sp = b.initializer("steps", Tensor::i64_vec(&[2, -2]))?;
        let s = b.node_named(
            "slice",
            Op::Slice,
            vec![Some(c), Some(st), Some(en), Some(ax), Some(sp)],
            &["sliced"],
        )?[0];
        let pads = b.initializer("pads", Tensor::i64_vec(&[0, 0, 1, 2, 0, 0, 2, 1]))?;
        let p = b.node_named(
            "pad",
            Op::Pad {
                mode: PadMode::Reflect,
                pads: None,
                value: 0.0,
            },
            vec![Some(s), Some(pads)],
            &["padded"],
        )?[0];
        let zero = b.initializer("zero", Tensor::scalar_f32(0.0))?;
        let cond = b.node("gt", Op::Greater, &[p, zero])?;
        let w = b.node("where", Op::Where, &[cond, p, zero])?;
        // Every comparison kind: where(p > 0, p, 0) + (p >= 0 ? 1 : 0) + (p <= 0 ? 2 : 0),
        // so p > 0 gives p + 1, p < 0 gives 2 and p == 0 gives 3.
        let one = b.initializer("one", Tensor::scalar_f32(1.0))?;
        let two = b.initializer("two", Tensor::scalar_f32(2.0))?;
        let ge_b = b.node("ge", Op::GreaterOrEqual, &[p, zero])?;
        let ge = b.node("where_ge", Op::Where, &[ge_b, one, zero])?;
        let le = b.node("le", Op::LessOrEqual, &[p, zero])?;
        let le = b.node("where_le", Op::Where, &[le, two, zero])?;
        let sum = b.node("add_ge", Op::Add, &[w, ge])?;
        let sum = b.node("add_le", Op::Add, &[sum, le])?;
        // Every logical operator, on thresholds that split the values:
        // 4·[0 <= p <= 0.5] + 8·[p < 0 or p > 0.5] + 16·[p >= 0 or p <= -0.5].
        let half = b.initializer("half", Tensor::scalar_f32(0.5))?;
        let mhalf = b.initializer("minus_half", Tensor::scalar_f32(-0.5))?;
        let le_half = b.node("le_half", Op::LessOrEqual, &[p, half])?;
        let le_mhalf = b.node("le_minus_half", Op::LessOrEqual, &[p, mhalf])?;
        let mut out = sum;
        for (i, (op, rhs)) in [(Op::And, le_half), (Op::Xor, le_half), (Op::Or, le_mhalf)]
            .into_iter()
            .enumerate()
        {
            let name = op.name().to_lowercase();
            let weight = b.initializer(
                &format!("{name}_weight"),
                Tensor::scalar_f32(4.0 * (1 << i) as f32),
            )?;
            let t = b.node(&name, op, &[ge_b, rhs])?;
            let t = b.node(&format!("where_{name}"), Op::Where, &[t, weight, zero])?;
            out = b.node(&format!("add_{name}"), Op::Add, &[out, t])?;
        }
        b.output(out);
        v.push(Case {
            name: "concat_slice_pad_where".into(),
            graph: b.finish()?,
            tf32: false,
        });
    }
    {
        let mut b = GraphBuilder::new("gather_embedding");
        let ids = b.input("ids", DType::I64, vec![2, 9])?;
        let table = b.initializer("table", rand_tensor(r, &[100, 24]))?;
        let e = b.node("gather", Op::Gather { axis: 0 }, &[table, ids])?;
        let c = b.node("cast", Op::Cast { to: DType::F32 }, &[ids])?;
        let c = b.node_named(
            "unsq",
            Op::Unsqueeze {
                axes: Some(vec![-1]),
            },
            vec![Some(c)],
            &["c3"],
        )?[0];
        let y = b.node("add", Op::Add, &[e, c])?;
        let y = b.node("gelu_like", Op::Erf, &[y])?;
        b.output(y);
        v.push(Case {
            name: "gather_cast_erf".into(),
            graph: b.finish()?,
            tf32: false,
        });
    }
    {
        // GatherElements with run-time i64 and i32 indices (made in-graph
        // from f32 inputs so they stay in range, negative ones included) and
        // with constant indices (lowered to a flat gather).
        let mut b = GraphBuilder::new("gather_elements");
        let x = b.input("x", DType::F32, vec![2, 4, 6])?;
        let indices = |b: &mut GraphBuilder, name: &str, shape: Vec<usize>, len: f32, to| {
            let sel = b.input(&format!("{name}_sel"), DType::F32, shape)?;
            let scale = b.initializer(&format!("{name}_scale"), Tensor::scalar_f32(len - 0.01))?;
            let f = b.node(&format!("{name}_scaled"), Op::Mul, &[sel, scale])?;
            b.node(name, Op::Cast { to }, &[f])
        };
        let i64s = indices(&mut b, "idx64", vec![2, 5, 6], 4.0, DType::I64)?;
        let i32s = indices(&mut b, "idx32", vec![2, 4, 3], 6.0, DType::I32)?;
        let konst: Vec<i64> = (0..24).map(|_| r.random_range(-2..2)).collect();
        let konst = b.initializer("idx_const", Tensor::i64(vec![1, 4, 6], konst)?)?;
        for (name, axis, idx) in [
            ("ge_axis1", 1, i64s),
            ("ge_last", -1, i32s),
            ("ge_const", 0, konst),
        ] {
            let y = b.node(name, Op::GatherElements { axis }, &[x, idx])?;
            b.output(y);
        }
        v.push(Case {
            name: "gather_elements".into(),
            graph: b.finish()?,
            tf32: false,
        });
    }
    {
        let mut b = GraphBuilder::new("batchnorm_unfused");
        let x = b.input("x", DType::F32, vec![2, 16, 5, 5])?;
        let p: Vec<_> = ["g", "b", "m", "v"]
            .iter()
            .map(|n| {
                let t = rand_tensor(r, &[16]);
                let t = if *n == "v" {
                    Tensor::f32(
                        vec![16],
                        t.as_f32().unwrap().iter().map(|v| v.abs() + 0.5).collect(),
                    )
                    .unwrap()
                } else {
                    t
                };
                b.initializer(n, t)
            })
            .collect::<Result<_, _>>()?;
        let y = b.node(
            "bn",
            Op::BatchNorm { epsilon: 1e-5 },
            &[x, p[0], p[1], p[2], p[3]],
        )?;
        let y = b.node("relu", Op::Relu, &[y])?;
        b.output(y);
        v.push(Case {
            name: "batchnorm_relu".into(),
            graph: b.finish()?,
            tf32: false,
        });
    }
    v.push(conv(
        r,
        "conv_hardswish",
        [1, 24, 14, 14],
        40,
        3,
        1,
        1,
        1,
        1,
        false,
        Some(Op::Act(reef_model::Act::HardSwish)),
    )?);
    v.extend(crate::cases_gemm::all(r)?);
    v.extend(crate::cases_elementwise::all(r)?);
    Ok(v)
}
