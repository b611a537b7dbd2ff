//! Export -> import round trips of small graphs, checked structurally and
//! evaluated in tract (the independent reference): tract's output shapes must
//! agree with reef's shape inference, and the re-exported model must compute
//! the same values as the first export.

mod common;

use common::{rand_f32, rel_err, rng, tract_run};
use reef_model::op::{ConvAttrs, PoolAttrs};
use reef_model::{
    Act, DType, Graph, GraphBuilder, Op, PadMode, PoolKind, Reduction, Tensor, UnaryFn,
};

fn conv_bn_relu_pool_gemm(batch: usize) -> Graph {
    let mut r = rng(1);
    let mut b = GraphBuilder::new("cnn");
    let x = b.input("x", DType::F32, vec![batch, 3, 9, 9]).unwrap();
    let w = b.initializer("w", rand_f32(&mut r, &[4, 3, 3, 3])).unwrap();
    let bias = b.initializer("b", rand_f32(&mut r, &[4])).unwrap();
    let conv = ConvAttrs {
        kernel: [3, 3],
        stride: [2, 2],
        pads: [1, 1, 0, 1],
        dilation: [1, 1],
        groups: 1,
    };
    let c = b
        .node_named(
            "conv",
            Op::Conv(conv),
            vec![Some(x), Some(w), Some(bias)],
            &["c"],
        )
        .unwrap()[0];
    let scale = b.initializer("bn_scale", rand_f32(&mut r, &[4])).unwrap();
    let shift = b.initializer("bn_bias", rand_f32(&mut r, &[4])).unwrap();
    let mean = b.initializer("bn_mean", rand_f32(&mut r, &[4])).unwrap();
    let var_vals: Vec<f32> = rand_f32(&mut r, &[4])
        .as_f32()
        .unwrap()
        .iter()
        .map(|v| v.abs() + 0.5)
        .collect();
    let var = b
        .initializer("bn_var", Tensor::f32(vec![4], var_vals).unwrap())
        .unwrap();
    let bn = b
        .node(
            "bn",
            Op::BatchNorm { epsilon: 1e-5 },
            &[c, scale, shift, mean, var],
        )
        .unwrap();
    let relu = b.node("relu", Op::Relu, &[bn]).unwrap();
    let pool = PoolAttrs {
        kind: PoolKind::Max,
        kernel: [2, 2],
        stride: [1, 1],
        pads: [0, 0, 1, 1],
        dilation: [1, 1],
        ceil_mode: false,
        count_include_pad: false,
    };
    let p = b.node("pool", Op::Pool(pool), &[relu]).unwrap();
    let avg = PoolAttrs {
        kind: PoolKind::Avg,
        kernel: [3, 3],
        stride: [2, 2],
        pads: [1, 1, 1, 1],
        dilation: [1, 1],
        ceil_mode: true,
        count_include_pad: true,
    };
    let a = b.node("avg", Op::Pool(avg), &[p]).unwrap();
    let f = b.node("flatten", Op::Flatten { axis: 1 }, &[a]).unwrap();
    let k = b.shape(f)[1];
    let fc_w = b.initializer("fc_w", rand_f32(&mut r, &[5, k])).unwrap();
    let fc_b = b.initializer("fc_b", rand_f32(&mut r, &[5])).unwrap();
    let op = Op::Gemm {
        alpha: 0.5,
        beta: 2.0,
        trans_a: false,
        trans_b: true,
    };
    let y = b.node("fc", op, &[f, fc_w, fc_b]).unwrap();
    let y = b.node("sig", Op::Sigmoid, &[y]).unwrap();
    b.output(y);
    b.finish().unwrap()
}

fn matmul_softmax_layernorm(batch: usize) -> Graph {
    let mut r = rng(2);
    let mut b = GraphBuilder::new("attn");
    let x = b.input("x", DType::F32, vec![batch, 4, 8]).unwrap();
    let w = b.initializer("w", rand_f32(&mut r, &[8, 8])).unwrap();
    let bias = b.initializer("bias", rand_f32(&mut r, &[8])).unwrap();
    let m = b.node("mm", Op::MatMul, &[x, w]).unwrap();
    let m = b.node("add", Op::Add, &[m, bias]).unwrap();
    let s = b.node("softmax", Op::Softmax { axis: -1 }, &[m]).unwrap();
    let gamma = b.initializer("gamma", rand_f32(&mut r, &[8])).unwrap();
    let beta = b.initializer("beta", rand_f32(&mut r, &[8])).unwrap();
    let ln = b
        .node(
            "ln",
            Op::LayerNorm {
                axis: -1,
                epsilon: 1e-5,
            },
            &[s, gamma, beta],
        )
        .unwrap();
    let t = b.node("tanh", Op::Tanh, &[ln]).unwrap();
    let mean = b
        .node(
            "mean",
            Op::Reduce {
                kind: Reduction::Mean,
                axes: Some(vec![1]),
                keepdims: false,
                noop_with_empty_axes: false,
            },
            &[t],
        )
        .unwrap();
    let lo = b.initializer("lo", Tensor::scalar_f32(-0.5)).unwrap();
    let hi = b.initializer("hi", Tensor::scalar_f32(0.25)).unwrap();
    let c = b
        .node_named(
            "clip",
            Op::Clip {
                min: None,
                max: None,
            },
            vec![Some(mean), Some(lo), Some(hi)],
            &["clip_out"],
        )
        .unwrap()[0];
    let e = b.node("erf", Op::Erf, &[c]).unwrap();
    b.output(e);
    b.output(s);
    b.finish().unwrap()
}

fn shape_ops(batch: usize) -> Graph {
    let mut r = rng(3);
    let mut b = GraphBuilder::new("shapes");
    let x = b.input("x", DType::F32, vec![batch, 6, 4]).unwrap();
    let idx = b.initializer("idx", Tensor::i64_vec(&[0, 2, 4])).unwrap();
    let g = b.node("gather", Op::Gather { axis: 1 }, &[x, idx]).unwrap();
    let starts = b.initializer("starts", Tensor::i64_vec(&[1])).unwrap();
    let ends = b.initializer("ends", Tensor::i64_vec(&[4])).unwrap();
    let axes = b.initializer("axes", Tensor::i64_vec(&[1])).unwrap();
    let s = b
        .node("slice", Op::Slice, &[x, starts, ends, axes])
        .unwrap();
    let c = b.node("concat", Op::Concat { axis: 2 }, &[g, s]).unwrap();
    let t = b
        .node(
            "transpose",
            Op::Transpose {
                perm: Some(vec![0, 2, 1]),
            },
            &[c],
        )
        .unwrap();
    let target = b
        .initializer("target", Tensor::i64_vec(&[0, 4, -1]))
        .unwrap();
    let rs = b
        .node("reshape", Op::Reshape { allowzero: false }, &[t, target])
        .unwrap();
    let zero = b.initializer("zero", Tensor::scalar_f32(0.0)).unwrap();
    let cond = b.node("greater", Op::Greater, &[rs, zero]).unwrap();
    let neg = b.node("neg", Op::Neg, &[rs]).unwrap();
    let w = b.node("where", Op::Where, &[cond, rs, neg]).unwrap();
    let pos: Vec<f32> = rand_f32(&mut r, &[6])
        .as_f32()
        .unwrap()
        .iter()
        .map(|v| v.abs() + 0.1)
        .collect();
    let small = b
        .initializer("small", Tensor::f32(vec![1, 1, 6], pos).unwrap())
        .unwrap();
    let eshape = b
        .initializer("eshape", Tensor::i64_vec(&[1, 4, 6]))
        .unwrap();
    let e = b.node("expand", Op::Expand, &[small, eshape]).unwrap();
    let sum = b.node("sum", Op::Add, &[w, e]).unwrap();
    let pads = b
        .initializer("pads", Tensor::i64_vec(&[0, 1, 0, 0, 1, 2]))
        .unwrap();
    let pv = b.initializer("pad_value", Tensor::scalar_f32(0.5)).unwrap();
    let p = b
        .node(
            "pad",
            Op::Pad {
                mode: PadMode::Constant,
                pads: None,
                value: 0.0,
            },
            &[sum, pads, pv],
        )
        .unwrap();
    let p2 = b
        .node(
            "pad_edge",
            Op::Pad {
                mode: PadMode::Edge,
                pads: Some(vec![0, 0, 1, 0, 0, 1]),
                value: 0.0,
            },
            &[p],
        )
        .unwrap();
    let p3 = b
        .node(
            "pad_reflect",
            Op::Pad {
                mode: PadMode::Reflect,
                pads: Some(vec![0, 1, 1, 0, 1, 1]),
                value: 0.0,
            },
            &[p2],
        )
        .unwrap();
    let u = b
        .node(
            "unsqueeze",
            Op::Unsqueeze {
                axes: Some(vec![1]),
            },
            &[p3],
        )
        .unwrap();
    let sq = b
        .node(
            "squeeze",
            Op::Squeeze {
                axes: Some(vec![1]),
            },
            &[u],
        )
        .unwrap();
    let sq = b.node("sqrt", Op::Sqrt, &[sq]).unwrap();
    let m = b.node("isnan", Op::Equal, &[sq, sq]).unwrap();
    let nm = b.node("not", Op::Not, &[m]).unwrap();
    b.output(sq);
    b.output(nm);
    b.finish().unwrap()
}

/// The activations with parameters, the elementwise functions, Min / Max /
/// PRelu and the reductions (ReduceSum's axes are an input at opset 17, the
/// others' an attribute).
fn activations_and_reductions(batch: usize) -> Graph {
    let mut r = rng(4);
    let mut b = GraphBuilder::new("acts");
    let x = b.input("x", DType::F32, vec![batch, 4, 6]).unwrap();
    let mut y = x;
    for (i, act) in [
        Act::LeakyRelu(0.2),
        Act::Elu(0.9),
        Act::Selu(1.5, 1.1),
        Act::Celu(1.2),
        Act::HardSwish,
        Act::Softplus,
        Act::Softsign,
        Act::HardSigmoid(0.3, 0.4),
        Act::ThresholdedRelu(0.1),
    ]
    .into_iter()
    .enumerate()
    {
        y = b.node(&format!("act{i}"), Op::Act(act), &[y]).unwrap();
    }
    let slope = b.initializer("slope", rand_f32(&mut r, &[4, 1])).unwrap();
    let p = b.node("prelu", Op::PRelu, &[x, slope]).unwrap();
    let mx = b.node("max", Op::Max, &[y, p]).unwrap();
    let mut z = b.node("min", Op::Min, &[mx, x]).unwrap();
    for f in UnaryFn::ALL {
        if f != UnaryFn::Log && f != UnaryFn::Reciprocal {
            z = b.node(f.onnx_name(), Op::Unary(f), &[z]).unwrap();
        }
    }
    let a = b.node("abs_x", Op::Unary(UnaryFn::Abs), &[x]).unwrap();
    let l = b.node("log", Op::Unary(UnaryFn::Log), &[a]).unwrap();
    let l = b
        .node("recip", Op::Unary(UnaryFn::Reciprocal), &[l])
        .unwrap();
    let z = b.node("mix", Op::Add, &[z, l]).unwrap();
    for (name, kind, axes) in [
        ("rsum", Reduction::Sum, vec![2]),
        ("rl2", Reduction::L2, vec![1]),
        ("rmax", Reduction::Max, vec![-1]),
        ("rl1", Reduction::L1, vec![1, 2]),
    ] {
        let op = Op::Reduce {
            kind,
            axes: Some(axes),
            keepdims: name != "rl1",
            noop_with_empty_axes: false,
        };
        let o = b.node(name, op, &[z]).unwrap();
        b.output(o);
    }
    b.finish().unwrap()
}

/// Resize in the forms PyTorch exports (nearest 2x asymmetric floor,
/// bilinear pytorch_half_pixel to a size) and a linear downsample with
/// aligned corners.
fn resizes(batch: usize) -> Graph {
    use reef_model::resize::{CoordMode, NearestMode, ResizeAttrs, ResizeMode};
    let mut b = GraphBuilder::new("resizes");
    let x = b.input("x", DType::F32, vec![batch, 3, 5, 6]).unwrap();
    let up = ResizeAttrs {
        mode: ResizeMode::Nearest(NearestMode::Floor),
        coord: CoordMode::Asymmetric,
        scales: vec![1.0, 1.0, 2.0, 2.0],
        sizes: vec![batch, 3, 10, 12],
        from_sizes: false,
    };
    let y = b.node("up", Op::Resize(up), &[x]).unwrap();
    let to = ResizeAttrs {
        mode: ResizeMode::Linear,
        coord: CoordMode::PytorchHalfPixel,
        scales: vec![1.0, 1.0, 0.7, 1.5],
        sizes: vec![batch, 3, 7, 18],
        from_sizes: true,
    };
    let y = b.node("to_size", Op::Resize(to), &[y]).unwrap();
    let down = ResizeAttrs {
        mode: ResizeMode::Linear,
        coord: CoordMode::AlignCorners,
        scales: vec![1.0, 1.0, 0.6, 0.6],
        sizes: vec![batch, 3, 4, 10],
        from_sizes: false,
    };
    let y = b.node("down", Op::Resize(down), &[y]).unwrap();
    b.output(y);
    b.finish().unwrap()
}

fn summary(g: &Graph) -> Vec<(String, Vec<Vec<usize>>)> {
    g.nodes
        .iter()
        .map(|n| {
            (
                n.op.name().to_string(),
                n.outputs
                    .iter()
                    .map(|&o| g.values[o].shape.clone())
                    .collect(),
            )
        })
        .collect()
}

/// Export, import, compare structure; evaluate both exports in tract and
/// check tract's shapes against reef's and the values against each other.
fn check_roundtrip(g: &Graph, batch: usize, seed: u64) {
    let bytes = reef_onnx::export(g).expect("export");
    let back = reef_onnx::import(&bytes, Some(batch)).expect("import of the export");
    assert_eq!(
        summary(g),
        summary(&back),
        "structure changed in the round trip"
    );
    for (&a, &b) in g.outputs.iter().zip(&back.outputs) {
        assert_eq!(g.values[a], back.values[b]);
    }
    assert!(g.initializers.len() <= back.initializers.len());
    for (id, t) in &g.initializers {
        let name = &g.values[*id].name;
        let bid = back
            .value_by_name(name)
            .unwrap_or_else(|| panic!("initializer {name} lost"));
        assert_eq!(back.constant(bid), Some(t), "initializer {name} changed");
    }
    let bytes2 = reef_onnx::export(&back).expect("re-export");

    let mut r = rng(seed);
    let inputs: Vec<Tensor> = g
        .inputs
        .iter()
        .map(|&i| rand_f32(&mut r, &g.values[i].shape))
        .collect();
    let out1 = tract_run(&bytes, &inputs).expect("tract runs the export");
    let out2 = tract_run(&bytes2, &inputs).expect("tract runs the re-export");
    assert_eq!(out1.len(), g.outputs.len());
    for ((o, a), b) in g.outputs.iter().zip(&out1).zip(&out2) {
        let info = &g.values[*o];
        assert_eq!(
            a.shape, info.shape,
            "tract and reef disagree on the shape of '{}'",
            info.name
        );
        assert_eq!(
            a.dtype(),
            info.dtype,
            "tract and reef disagree on the type of '{}'",
            info.name
        );
        if a.dtype() == DType::F32 {
            assert!(
                a.as_f32().unwrap().iter().any(|&v| v != 0.0),
                "output '{}' is all zeros",
                info.name
            );
            assert!(
                rel_err(b, a) < 1e-6,
                "re-export of '{}' computes different values",
                info.name
            );
        } else {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn conv_bn_relu_pool_gemm_roundtrip() {
    check_roundtrip(&conv_bn_relu_pool_gemm(2), 2, 10);
}

#[test]
fn matmul_softmax_layernorm_roundtrip() {
    check_roundtrip(&matmul_softmax_layernorm(3), 3, 11);
}

#[test]
fn shape_ops_roundtrip() {
    check_roundtrip(&shape_ops(2), 2, 12);
}

#[test]
fn activations_and_reductions_roundtrip() {
    check_roundtrip(&activations_and_reductions(2), 2, 13);
}

#[test]
fn resizes_roundtrip() {
    check_roundtrip(&resizes(2), 2, 14);
}

#[test]
fn export_declares_symbolic_batch() {
    use prost::Message;
    let bytes = reef_onnx::export(&conv_bn_relu_pool_gemm(2)).unwrap();
    let m = reef_onnx::proto::ModelProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(m.ir_version, 8);
    assert_eq!(m.producer_name, "reef");
    assert_eq!(m.opset_import[0].version, 17);
    let g = m.graph.unwrap();
    assert!(g.initializer.iter().all(|t| !t.raw_data.is_empty()));
    // Importing with another batch re-infers every shape.
    let g4 = reef_onnx::import(&bytes, Some(4)).unwrap();
    assert_eq!(g4.values[g4.outputs[0]].shape, vec![4, 5]);
    let g1 = reef_onnx::import(&bytes, None).unwrap();
    assert_eq!(g1.values[g1.outputs[0]].shape, vec![1, 5]);
    let _ = g;
}
