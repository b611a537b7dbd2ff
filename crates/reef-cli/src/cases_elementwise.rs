//! Selftest graphs for the activations with parameters, the elementwise
//! functions, Min / Max / PRelu, every reduction kind, ArgMax / ArgMin and
//! Resize's modes (see [`crate::cases`]).
//! Inputs are scaled from [-1, 1) to [-4, 4) in-graph, so that the functions'
//! interesting ranges (thresholds, saturation, rounding) are exercised.

use crate::cases::{rand_tensor, Case};
use anyhow::Result;
use rand_chacha::ChaCha8Rng;
use reef_model::resize::{CoordMode, NearestMode, ResizeAttrs, ResizeMode};
use reef_model::{Act, DType, GraphBuilder, Op, Reduction, Tensor, UnaryFn, ValueId};

/// The input of a case, scaled to [-4, 4).
fn scaled_input(b: &mut GraphBuilder, name: &str, shape: &[usize]) -> Result<ValueId> {
    let x = b.input(name, DType::F32, shape.to_vec())?;
    let k = b.initializer(&format!("{name}_scale"), Tensor::scalar_f32(4.0))?;
    Ok(b.node(&format!("{name}_scaled"), Op::Mul, &[x, k])?)
}

fn case(name: &str, b: GraphBuilder) -> Result<Case> {
    Ok(Case {
        name: name.into(),
        graph: b.finish()?,
        tf32: false,
    })
}

/// `op` of the scaled input (Log takes its absolute value first).
fn unary_case(name: &str, op: Op) -> Result<Case> {
    let mut b = GraphBuilder::new(name);
    let mut x = scaled_input(&mut b, "x", &[3, 1000])?;
    if op == Op::Unary(UnaryFn::Log) {
        x = b.node("abs", Op::Unary(UnaryFn::Abs), &[x])?;
    }
    let y = b.node("op", op, &[x])?;
    b.output(y);
    case(name, b)
}

/// Every case of this module.
pub fn all(r: &mut ChaCha8Rng) -> Result<Vec<Case>> {
    let mut v = vec![];
    let acts = [
        ("leaky_relu", Act::LeakyRelu(0.1)),
        ("elu", Act::Elu(0.8)),
        ("selu", Act::Selu(1.673_263_2, 1.050_701)),
        ("celu", Act::Celu(1.5)),
        ("hard_sigmoid", Act::HardSigmoid(0.2, 0.5)),
        ("hard_swish", Act::HardSwish),
        ("softplus", Act::Softplus),
        ("softsign", Act::Softsign),
        ("thresholded_relu", Act::ThresholdedRelu(0.3)),
        ("gelu_tanh", Act::GeluTanh),
        ("mish", Act::Mish),
    ];
    for (name, act) in acts {
        v.push(unary_case(name, Op::Act(act))?);
    }
    for f in UnaryFn::ALL {
        v.push(unary_case(&f.onnx_name().to_lowercase(), Op::Unary(f))?);
    }
    {
        // Min, Max and PRelu with broadcasting operands (PRelu's slope per
        // channel, as torch.nn.PReLU exports it).
        let mut b = GraphBuilder::new("min_max_prelu");
        let x = scaled_input(&mut b, "x", &[2, 16, 5, 7])?;
        let y = scaled_input(&mut b, "y", &[16, 1, 7])?;
        let slope = b.initializer("slope", rand_tensor(r, &[16, 1, 1]))?;
        for (name, op, other) in [
            ("min", Op::Min, y),
            ("max", Op::Max, y),
            ("prelu", Op::PRelu, slope),
        ] {
            let o = b.node(name, op, &[x, other])?;
            b.output(o);
        }
        v.push(case("min_max_prelu", b)?);
    }
    // ReduceMean has its own case in crate::cases.
    for kind in Reduction::ALL.into_iter().filter(|&k| k != Reduction::Mean) {
        // Axes 1 and 3: two separate runs, so that L1, L2 and SumSquare
        // take their two-kernel forms.
        let name = kind.onnx_name().to_lowercase();
        let mut b = GraphBuilder::new(&name);
        let x = scaled_input(&mut b, "x", &[2, 9, 6, 130])?;
        let op = Op::Reduce {
            kind,
            axes: Some(vec![1, -1]),
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let y = b.node("reduce", op, &[x])?;
        b.output(y);
        v.push(case(&name, b)?);
    }
    {
        // ArgMax / ArgMin over rounded values, so that ties occur and both
        // tie rules are exercised; 300 > one block's 256 threads per row.
        let mut b = GraphBuilder::new("arg_extreme");
        let x = scaled_input(&mut b, "x", &[3, 300, 5])?;
        let x = b.node("round", Op::Unary(UnaryFn::Round), &[x])?;
        for (name, max, axis, last) in [("argmax", true, 1, true), ("argmin", false, -1, false)] {
            let op = Op::ArgExtreme {
                max,
                axis,
                keepdims: max,
                select_last_index: last,
            };
            let y = b.node(name, op, &[x])?;
            b.output(y);
        }
        v.push(case("arg_extreme", b)?);
    }
    // Resize: PyTorch's nearest 2x export (asymmetric, floor), bilinear
    // without aligned corners (pytorch_half_pixel) to a size, a linear
    // downsample with aligned corners, and nearest at a fractional scale
    // with halves rounded up.
    let nearest = |m| ResizeMode::Nearest(m);
    for (name, mode, coord, scales, sizes) in [
        (
            "resize_nearest_2x",
            nearest(NearestMode::Floor),
            CoordMode::Asymmetric,
            [2.0, 2.0],
            [26, 34],
        ),
        (
            "resize_bilinear_to_size",
            ResizeMode::Linear,
            CoordMode::PytorchHalfPixel,
            [20.0 / 13.0, 30.0 / 17.0],
            [20, 30],
        ),
        (
            "resize_linear_down_aligned",
            ResizeMode::Linear,
            CoordMode::AlignCorners,
            [0.6, 0.6],
            [7, 10],
        ),
        (
            "resize_nearest_1_7x_ceil",
            nearest(NearestMode::RoundPreferCeil),
            CoordMode::HalfPixel,
            [1.7, 1.7],
            [22, 28],
        ),
    ] {
        let mut b = GraphBuilder::new(name);
        let x = scaled_input(&mut b, "x", &[2, 8, 13, 17])?;
        let attrs = ResizeAttrs {
            mode,
            coord,
            scales: vec![1.0, 1.0, scales[0], scales[1]],
            sizes: vec![2, 8, sizes[0], sizes[1]],
            from_sizes: name == "resize_bilinear_to_size",
        };
        let y = b.node("resize", Op::Resize(attrs), &[x])?;
        b.output(y);
        v.push(case(name, b)?);
    }
    Ok(v)
}
