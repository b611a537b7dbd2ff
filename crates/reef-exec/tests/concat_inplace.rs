//! In-place concatenation (DenseNet's dense blocks at batch 1): every piece
//! is written straight into its slice of one shared buffer and the Concats
//! run no kernel. Checked on the CPU backend: the batch-1 plan has no concat
//! kernel and gives, bit for bit, the first image of the same graph at batch
//! 2 (which concatenates by copying) fed two copies of the image, in both
//! variants; a concatenation that is a graph output, or whose slices would
//! not start on 16-byte boundaries, is still copied.

mod common;

use common::*;
use reef_exec::Variant;
use reef_model::op::ConvAttrs;
use reef_model::{DType, GraphBuilder, Op, Tensor};

const C0: usize = 4;
const GROWTH: usize = 4;
const LAYERS: usize = 4;
/// 4 x 4 images: every piece (4 channels) is 256 bytes, so every slice
/// starts on a 16-byte boundary.
const HW: usize = 4;

/// A stem ReLU, then a dense block: `y = concat(y, relu(conv3x3(y)))` `LAYERS` times
/// (chained, as reef's zoo builds DenseNet), then a 1x1 convolution; with
/// `list`, the last concatenation lists every piece instead; with
/// `expose`, the last concatenation is also a graph output.
fn block(batch: usize, weights: &[Vec<f32>], list: bool, expose: bool) -> reef_model::Graph {
    let mut g = GraphBuilder::new("dense");
    let x = g.input("x", DType::F32, vec![batch, C0, HW, HW]).unwrap();
    // The stem (a graph input is never written in place).
    let x = g.node("stem", Op::Relu, &[x]).unwrap();
    let conv = |k: usize| ConvAttrs {
        kernel: [k, k],
        stride: [1, 1],
        pads: [k / 2; 4],
        dilation: [1, 1],
        groups: 1,
    };
    let mut y = x;
    let mut pieces = vec![x];
    let mut c = C0;
    for (i, w) in weights[..LAYERS].iter().enumerate() {
        let wv = g
            .initializer(
                &format!("w{i}"),
                Tensor::f32(vec![GROWTH, c, 3, 3], w.clone()).unwrap(),
            )
            .unwrap();
        let n = g
            .node(&format!("conv{i}"), Op::Conv(conv(3)), &[y, wv])
            .unwrap();
        let n = g.node(&format!("relu{i}"), Op::Relu, &[n]).unwrap();
        pieces.push(n);
        y = if list && i == LAYERS - 1 {
            g.node(&format!("cat{i}"), Op::Concat { axis: 1 }, &pieces)
                .unwrap()
        } else {
            g.node(&format!("cat{i}"), Op::Concat { axis: 1 }, &[y, n])
                .unwrap()
        };
        c += GROWTH;
    }
    let wv = g
        .initializer(
            "wout",
            Tensor::f32(vec![2, c, 1, 1], weights[LAYERS].clone()).unwrap(),
        )
        .unwrap();
    let out = g.node("out", Op::Conv(conv(1)), &[y, wv]).unwrap();
    g.output(out);
    if expose {
        g.output(y);
    }
    g.finish().unwrap()
}

fn weights() -> Vec<Vec<f32>> {
    let mut r = rng(31);
    let mut c = C0;
    let mut w = vec![];
    for _ in 0..LAYERS {
        w.push(randn(&mut r, GROWTH * c * 9));
        c += GROWTH;
    }
    w.push(randn(&mut r, 2 * c));
    w
}

fn concats(plan: &reef_plan::Plan) -> usize {
    plan.kernels
        .iter()
        .filter(|k| k.op.kind() == "concat")
        .count()
}

#[test]
fn batch_one_concatenations_run_in_place_and_match_the_copying_plan() {
    let w = weights();
    let img = randn(&mut rng(32), C0 * HW * HW);
    let two: Vec<f32> = img.iter().chain(&img).copied().collect();
    for list in [false, true] {
        let one = std::sync::Arc::new(reef_plan::compile(&block(1, &w, list, false)).unwrap());
        let copying = std::sync::Arc::new(reef_plan::compile(&block(2, &w, list, false)).unwrap());
        assert_eq!(concats(&one), 0, "list={list}: {:?}", one.kernels);
        assert_eq!(concats(&copying), LAYERS, "list={list}");
        for variant in [Variant::Rt, Variant::Be] {
            let got = run_plan(&one, &[bytes(&img)], variant);
            let want = run_plan(&copying, &[bytes(&two)], variant);
            let half = want[0].len() / 2;
            assert_eq!(got[0], want[0][..half], "list={list} {variant:?}");
        }
    }
}

#[test]
fn a_concatenation_that_is_a_graph_output_is_copied() {
    let w = weights();
    let img = randn(&mut rng(33), C0 * HW * HW);
    let plan = std::sync::Arc::new(reef_plan::compile(&block(1, &w, false, true)).unwrap());
    // The exposed last concatenation copies; the earlier ones stay in place.
    assert_eq!(concats(&plan), 1, "{:?}", plan.kernels);
    let reference = std::sync::Arc::new(reef_plan::compile(&block(1, &w, false, false)).unwrap());
    let got = run_plan(&plan, &[bytes(&img)], Variant::Be);
    let want = run_plan(&reference, &[bytes(&img)], Variant::Rt);
    assert_eq!(got[0], want[0]);
    assert_eq!(got[1].len(), (C0 + LAYERS * GROWTH) * HW * HW * 4);
}

#[test]
fn misaligned_slices_are_copied() {
    // One 3-channel 3 x 3 piece (108 bytes) after the stem: the slices
    // would start off 16-byte boundaries, so nothing runs in place.
    let mut g = GraphBuilder::new("odd");
    let x = g.input("x", DType::F32, vec![1, 3, 3, 3]).unwrap();
    let a = g.node("a", Op::Relu, &[x]).unwrap();
    let b = g.node("b", Op::Sigmoid, &[x]).unwrap();
    let b = g.node("b2", Op::Relu, &[b]).unwrap();
    let c = g.node("cat", Op::Concat { axis: 1 }, &[a, b]).unwrap();
    let y = g.node("y", Op::Relu, &[c]).unwrap();
    g.output(y);
    let plan = std::sync::Arc::new(reef_plan::compile(&g.finish().unwrap()).unwrap());
    assert_eq!(concats(&plan), 1, "{:?}", plan.kernels);
    let xs = randn(&mut rng(34), 27);
    let got = f32s(&run_plan(&plan, &[bytes(&xs)], Variant::Be)[0]);
    let want: Vec<f64> = xs
        .iter()
        .map(|&v| v.max(0.0) as f64)
        .chain(xs.iter().map(|&v| 1.0 / (1.0 + (-(v as f64)).exp())))
        .collect();
    assert_close("copied concat", &got, &want);
}
