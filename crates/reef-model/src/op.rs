//! The operator set of reef's IR. Ops follow ONNX semantics (opset 11 to 21);
//! attributes are parsed and normalised here, while operands that newer opsets
//! pass as inputs (Reshape's shape, Slice's starts, Clip's bounds, ...) stay
//! inputs and must be constant once the graph is folded.

use crate::tensor::{DType, Tensor};

/// Activation fused into a kernel epilogue.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, Default)]
pub enum Act {
    /// No activation.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// min(max(x, lo), hi) (ReLU6 is Clip(0, 6)).
    Clip(f32, f32),
    /// Exact GELU, x * 0.5 * (1 + erf(x / sqrt 2)).
    Gelu,
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
}

impl Act {
    /// Applies the activation to one value (the reference every backend matches).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::None => x,
            Act::Relu => x.max(0.0),
            Act::Clip(lo, hi) => x.max(lo).min(hi),
            Act::Gelu => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Tanh => x.tanh(),
        }
    }
}

/// erf in f32 (Abramowitz-Stegun 7.1.26 is too coarse; this is the libm-grade
/// rational approximation used by every backend so that results agree).
pub fn erf(x: f32) -> f32 {
    libm_erf(x as f64) as f32
}

fn libm_erf(x: f64) -> f64 {
    // erf via the complementary error function's continued-fraction-free
    // Chebyshev fit (W. J. Cody); accurate to ~1e-15 in double.
    let ax = x.abs();
    let r = if ax < 0.5 {
        let t = x * x;
        let p = [3.209377589138469472562e03, 3.774852376853020208137e02, 1.138641541510501556495e02,
            3.161123743870565596947e00, 1.857777061846031526730e-01];
        let q = [2.844236833439170622273e03, 1.282616526077372275645e03, 2.440246379344441733056e02,
            2.360129095234412093499e01, 1.0];
        let num = (((p[4] * t + p[3]) * t + p[2]) * t + p[1]) * t + p[0];
        let den = (((q[4] * t + q[3]) * t + q[2]) * t + q[1]) * t + q[0];
        return x * num / den;
    } else if ax < 4.0 {
        let p = [1.23033935479799725272e03, 2.05107837782607146532e03, 1.71204761263407058314e03,
            8.81952221241769090411e02, 2.98635138197400131132e02, 6.61191906371416294775e01,
            8.88314979438837594118e00, 5.64188496988670089180e-01, 2.15311535474403846343e-08];
        let q = [1.23033935480374942043e03, 3.43936767414372163696e03, 4.36261909014324715820e03,
            3.29079923573345962678e03, 1.62138957456669018874e03, 5.37181101862009857509e02,
            1.17693950891312499305e02, 1.57449261107098347253e01, 1.0];
        let mut num = p[8];
        let mut den = q[8];
        for i in (0..8).rev() {
            num = num * ax + p[i];
            den = den * ax + q[i];
        }
        1.0 - (-ax * ax).exp() * num / den
    } else {
        let p = [-6.58749161529837803157e-04, -1.60837851487422766278e-02, -1.25781726111229246204e-01,
            -3.60344899949804439429e-01, -3.05326634961232344035e-01, -1.63153871373020978498e-02];
        let q = [2.33520497626869185443e-03, 6.05183413124413191178e-02, 5.27905102951428412248e-01,
            1.87295284992346725209e00, 2.56852019228982242072e00, 1.0];
        let z = 1.0 / (ax * ax);
        let mut num = p[5];
        let mut den = q[5];
        for i in (0..5).rev() {
            num = num * z + p[i];
            den = den * z + q[i];
        }
        let frac = z * num / den;
        let v = (1.0 / std::f64::consts::PI.sqrt() + frac) / ax;
        1.0 - (-ax * ax).exp() * v
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// Pooling flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolKind {
    /// Max pooling (padding never wins).
    Max,
    /// Average pooling.
    Avg,
}

/// Padding mode of Pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PadMode {
    /// Pad with a constant.
    Constant,
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge.
    Edge,
}

/// Convolution attributes (2-D, NCHW); `pads` is [top, left, bottom, right].
#[derive(Debug, Clone, PartialEq)]
pub struct ConvAttrs {
    /// Kernel height and width (taken from the weight when absent in ONNX).
    pub kernel: [usize; 2],
    /// Strides.
    pub stride: [usize; 2],
    /// Padding [top, left, bottom, right].
    pub pads: [usize; 4],
    /// Dilations.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
}

/// Pooling attributes (2-D, NCHW); `pads` is [top, left, bottom, right].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolAttrs {
    /// Max or average.
    pub kind: PoolKind,
    /// Window.
    pub kernel: [usize; 2],
    /// Strides.
    pub stride: [usize; 2],
    /// Padding [top, left, bottom, right].
    pub pads: [usize; 4],
    /// Dilations (max pool only).
    pub dilation: [usize; 2],
    /// Output size rounds up instead of down.
    pub ceil_mode: bool,
    /// Average counts padded cells.
    pub count_include_pad: bool,
}

/// One IR operator. Input order follows ONNX for every op.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Conv: X, W, optional B.
    Conv(ConvAttrs),
    /// Gemm: A, B, optional C; Y = alpha * A' B' + beta * C.
    Gemm {
        /// Scale of the product.
        alpha: f32,
        /// Scale of C.
        beta: f32,
        /// Transpose A.
        trans_a: bool,
        /// Transpose B.
        trans_b: bool,
    },
    /// Batched matrix product with numpy broadcasting.
    MatMul,
    /// Elementwise binary ops with numpy broadcasting.
    Add,
    /// a - b.
    Sub,
    /// a * b.
    Mul,
    /// a / b.
    Div,
    /// a ^ b.
    Pow,
    /// max(x, 0).
    Relu,
    /// Clip: X, optional min, optional max (opset 11+) or attributes (older).
    Clip {
        /// Lower bound from attributes (opset < 11).
        min: Option<f32>,
        /// Upper bound from attributes (opset < 11).
        max: Option<f32>,
    },
    /// Logistic sigmoid.
    Sigmoid,
    /// tanh.
    Tanh,
    /// Gauss error function.
    Erf,
    /// Square root.
    Sqrt,
    /// e^x.
    Exp,
    /// -x.
    Neg,
    /// BatchNormalization (inference): X, scale, B, mean, var.
    BatchNorm {
        /// Epsilon.
        epsilon: f32,
    },
    /// MaxPool / AveragePool.
    Pool(PoolAttrs),
    /// GlobalAveragePool.
    GlobalAvgPool,
    /// GlobalMaxPool.
    GlobalMaxPool,
    /// Concat along `axis` (may be negative).
    Concat {
        /// Axis.
        axis: i64,
    },
    /// Flatten to 2-D at `axis`.
    Flatten {
        /// Axis.
        axis: i64,
    },
    /// Reshape: data, shape (constant; 0 copies, -1 infers).
    Reshape {
        /// ONNX allowzero.
        allowzero: bool,
    },
    /// Transpose with a permutation (None reverses).
    Transpose {
        /// Permutation.
        perm: Option<Vec<usize>>,
    },
    /// Squeeze: data, optional axes input (opset 13) or attribute.
    Squeeze {
        /// Axes from the attribute (opset < 13).
        axes: Option<Vec<i64>>,
    },
    /// Unsqueeze: data, optional axes input (opset 13) or attribute.
    Unsqueeze {
        /// Axes from the attribute (opset < 13).
        axes: Option<Vec<i64>>,
    },
    /// Gather: data, indices.
    Gather {
        /// Axis.
        axis: i64,
    },
    /// Slice: data, starts, ends, optional axes, optional steps (all constant).
    Slice,
    /// Shape of the input, optionally sliced [start, end).
    Shape {
        /// Start (opset 15).
        start: i64,
        /// End (opset 15).
        end: Option<i64>,
    },
    /// A constant.
    Constant(Tensor),
    /// Cast to a type.
    Cast {
        /// Target type.
        to: DType,
    },
    /// Softmax along `axis` (opset 13 semantics; older opsets are rewritten).
    Softmax {
        /// Axis.
        axis: i64,
    },
    /// LayerNormalization: X, scale, optional B; normalises axes [axis, rank).
    LayerNorm {
        /// First normalised axis.
        axis: i64,
        /// Epsilon.
        epsilon: f32,
    },
    /// ReduceMean: data, optional axes input (opset 18) or attribute.
    ReduceMean {
        /// Axes from the attribute.
        axes: Option<Vec<i64>>,
        /// Keep reduced dimensions.
        keepdims: bool,
        /// With no axes, do nothing instead of reducing all (opset 18).
        noop_with_empty_axes: bool,
    },
    /// Where: condition, X, Y.
    Where,
    /// Expand: data, shape (constant).
    Expand,
    /// Pad: data, pads (constant), optional constant value.
    Pad {
        /// Mode.
        mode: PadMode,
        /// Pads from the attribute (opset < 11).
        pads: Option<Vec<i64>>,
        /// Value from the attribute (opset < 11).
        value: f32,
    },
    /// Identity (also Dropout in inference).
    Identity,
    /// Equal (elementwise, bool output).
    Equal,
    /// Less (bool output).
    Less,
    /// Greater (bool output).
    Greater,
    /// Logical not.
    Not,
    /// ConstantOfShape: shape input, value attribute.
    ConstantOfShape(Tensor),
    /// Range: start, limit, delta.
    Range,
}

impl Op {
    /// The ONNX op type name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Pow => "Pow",
            Op::Relu => "Relu",
            Op::Clip { .. } => "Clip",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::Erf => "Erf",
            Op::Sqrt => "Sqrt",
            Op::Exp => "Exp",
            Op::Neg => "Neg",
            Op::BatchNorm { .. } => "BatchNormalization",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "MaxPool",
                PoolKind::Avg => "AveragePool",
            },
            Op::GlobalAvgPool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::Concat { .. } => "Concat",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Gather { .. } => "Gather",
            Op::Slice => "Slice",
            Op::Shape { .. } => "Shape",
            Op::Constant(_) => "Constant",
            Op::Cast { .. } => "Cast",
            Op::Softmax { .. } => "Softmax",
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Where => "Where",
            Op::Expand => "Expand",
            Op::Pad { .. } => "Pad",
            Op::Identity => "Identity",
            Op::Equal => "Equal",
            Op::Less => "Less",
            Op::Greater => "Greater",
            Op::Not => "Not",
            Op::ConstantOfShape(_) => "ConstantOfShape",
            Op::Range => "Range",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Reference values of erf from tables.
        for (x, want) in [(0.0f64, 0.0), (0.5, 0.5204998778130465), (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527), (-1.5, -0.9661051464753108), (5.0, 0.9999999999984626)] {
            assert!((libm_erf(x) - want).abs() < 1e-12, "erf({x})");
        }
    }
}
