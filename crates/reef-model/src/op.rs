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
    /// x < 0 ? alpha x : x.
    LeakyRelu(f32),
    /// x < 0 ? alpha (e^x - 1) : x.
    Elu(f32),
    /// gamma (x <= 0 ? alpha (e^x - 1) : x), as (alpha, gamma).
    Selu(f32, f32),
    /// max(0, x) + min(0, alpha (e^(x / alpha) - 1)).
    Celu(f32),
    /// max(0, min(1, alpha x + beta)), as (alpha, beta).
    HardSigmoid(f32, f32),
    /// x max(0, min(1, x / 6 + 1 / 2)).
    HardSwish,
    /// ln(1 + e^x).
    Softplus,
    /// x / (1 + |x|).
    Softsign,
    /// x > alpha ? x : 0.
    ThresholdedRelu(f32),
    /// GELU's tanh approximation, x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
    GeluTanh,
    /// x tanh(softplus(x)).
    Mish,
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
            Act::LeakyRelu(alpha) => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            Act::Elu(alpha) => {
                if x < 0.0 {
                    alpha * x.exp_m1()
                } else {
                    x
                }
            }
            Act::Selu(alpha, gamma) => {
                if x > 0.0 {
                    gamma * x
                } else {
                    gamma * (alpha * x.exp_m1())
                }
            }
            Act::Celu(alpha) => x.max(0.0) + (alpha * (x / alpha).exp_m1()).min(0.0),
            Act::HardSigmoid(alpha, beta) => (alpha * x + beta).clamp(0.0, 1.0),
            Act::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Act::Softplus => softplus(x),
            Act::Softsign => x / (1.0 + x.abs()),
            Act::ThresholdedRelu(alpha) => {
                if x > alpha {
                    x
                } else {
                    0.0
                }
            }
            Act::GeluTanh => {
                let inner = GELU_TANH_SCALE * (x + 0.044_715 * (x * x * x));
                0.5 * x * (1.0 + inner.tanh())
            }
            Act::Mish => x * softplus(x).tanh(),
        }
    }

    /// The ONNX op that computes this activation alone.
    pub fn onnx_name(self) -> &'static str {
        match self {
            Act::None => "Identity",
            Act::Relu => "Relu",
            Act::Clip(..) => "Clip",
            Act::Gelu | Act::GeluTanh => "Gelu",
            Act::Sigmoid => "Sigmoid",
            Act::Tanh => "Tanh",
            Act::LeakyRelu(_) => "LeakyRelu",
            Act::Elu(_) => "Elu",
            Act::Selu(..) => "Selu",
            Act::Celu(_) => "Celu",
            Act::HardSigmoid(..) => "HardSigmoid",
            Act::HardSwish => "HardSwish",
            Act::Softplus => "Softplus",
            Act::Softsign => "Softsign",
            Act::ThresholdedRelu(_) => "ThresholdedRelu",
            Act::Mish => "Mish",
        }
    }
}

/// sqrt(2 / pi) in f32, GELU's tanh approximation's scale.
pub const GELU_TANH_SCALE: f32 = 0.797_884_6;

/// ln(1 + e^x) without overflow: max(x, 0) + ln(1 + e^-|x|).
pub fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Elementwise f32 functions that have no activation or op variant of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UnaryFn {
    /// |x|.
    Abs,
    /// Natural logarithm.
    Log,
    /// 1 / x.
    Reciprocal,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
    /// Round to nearest, ties to even.
    Round,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// -1, 0 or 1 (NaN stays NaN).
    Sign,
}

impl UnaryFn {
    /// Every function, for tests and tables.
    pub const ALL: [UnaryFn; 9] = [
        UnaryFn::Abs,
        UnaryFn::Log,
        UnaryFn::Reciprocal,
        UnaryFn::Floor,
        UnaryFn::Ceil,
        UnaryFn::Round,
        UnaryFn::Sin,
        UnaryFn::Cos,
        UnaryFn::Sign,
    ];

    /// Applies the function to one value (the reference every backend matches).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            UnaryFn::Abs => x.abs(),
            UnaryFn::Log => x.ln(),
            UnaryFn::Reciprocal => 1.0 / x,
            UnaryFn::Floor => x.floor(),
            UnaryFn::Ceil => x.ceil(),
            UnaryFn::Round => x.round_ties_even(),
            UnaryFn::Sin => x.sin(),
            UnaryFn::Cos => x.cos(),
            UnaryFn::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
        }
    }

    /// The ONNX op type name.
    pub fn onnx_name(self) -> &'static str {
        match self {
            UnaryFn::Abs => "Abs",
            UnaryFn::Log => "Log",
            UnaryFn::Reciprocal => "Reciprocal",
            UnaryFn::Floor => "Floor",
            UnaryFn::Ceil => "Ceil",
            UnaryFn::Round => "Round",
            UnaryFn::Sin => "Sin",
            UnaryFn::Cos => "Cos",
            UnaryFn::Sign => "Sign",
        }
    }
}

/// What a reduction computes over the reduced axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reduction {
    /// Arithmetic mean.
    Mean,
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Sum of squares.
    SumSquare,
    /// Sum of absolute values.
    L1,
    /// Square root of the sum of squares.
    L2,
}

impl Reduction {
    /// The ONNX op type name.
    pub fn onnx_name(self) -> &'static str {
        match self {
            Reduction::Mean => "ReduceMean",
            Reduction::Sum => "ReduceSum",
            Reduction::Max => "ReduceMax",
            Reduction::Min => "ReduceMin",
            Reduction::SumSquare => "ReduceSumSquare",
            Reduction::L1 => "ReduceL1",
            Reduction::L2 => "ReduceL2",
        }
    }

    /// Every reduction.
    pub const ALL: [Reduction; 7] = [
        Reduction::Mean,
        Reduction::Sum,
        Reduction::Max,
        Reduction::Min,
        Reduction::SumSquare,
        Reduction::L1,
        Reduction::L2,
    ];

    /// The reduction an ONNX op type names.
    pub fn from_onnx(op: &str) -> Option<Reduction> {
        Self::ALL.into_iter().find(|r| r.onnx_name() == op)
    }

    /// The first opset in which the op takes its axes as an input instead
    /// of an attribute.
    pub fn axes_input_since(self) -> i64 {
        if self == Reduction::Sum {
            13
        } else {
            18
        }
    }
}

/// erf in f32 (libm's erff; CUDA's erff agrees to a couple of ulps).
pub fn erf(x: f32) -> f32 {
    libm::erff(x)
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
    /// An activation without a variant of its own (LeakyRelu, Elu, Selu,
    /// Celu, HardSigmoid, HardSwish, Softplus, Softsign, ThresholdedRelu,
    /// Gelu, Mish); never `Act::None`.
    Act(Act),
    /// An elementwise function of [`UnaryFn`] (Abs, Log, Reciprocal, ...).
    Unary(UnaryFn),
    /// Elementwise minimum with broadcasting (NaN propagates).
    Min,
    /// Elementwise maximum with broadcasting (NaN propagates).
    Max,
    /// PRelu: X, slope (broadcast to X); x < 0 ? slope x : x.
    PRelu,
    /// ArgMax / ArgMin: the i64 index of the largest (smallest) element
    /// along `axis`; ties pick the first index, or the last with
    /// `select_last_index`.
    ArgExtreme {
        /// ArgMax (else ArgMin).
        max: bool,
        /// Axis (may be negative).
        axis: i64,
        /// Keep the reduced axis with length 1.
        keepdims: bool,
        /// Ties pick the last index.
        select_last_index: bool,
    },
    /// Resize / Upsample of X (scales and sizes resolved into the attributes).
    Resize(crate::resize::ResizeAttrs),
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
    /// GatherElements: data, indices (same rank as data, int64 or int32).
    /// `out[i] = data[i with i_axis replaced by indices[i]]`; the output has
    /// the indices' shape. Negative indices count from the end of the axis.
    GatherElements {
        /// Axis (may be negative).
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
    /// Outputs Y and, optionally, Mean and InvStdDev (`1 / sqrt(var + eps)`),
    /// both shaped like X with the normalised axes set to 1.
    LayerNorm {
        /// First normalised axis.
        axis: i64,
        /// Epsilon.
        epsilon: f32,
    },
    /// ReduceMean, ReduceSum, ReduceMax, ...: data, optional axes input
    /// (opset 18, ReduceSum 13) or attribute.
    Reduce {
        /// What is computed.
        kind: Reduction,
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
    /// GreaterOrEqual (bool output).
    GreaterOrEqual,
    /// LessOrEqual (bool output).
    LessOrEqual,
    /// Logical and of two bool tensors.
    And,
    /// Logical or of two bool tensors.
    Or,
    /// Logical exclusive or of two bool tensors.
    Xor,
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
            Op::Act(a) => a.onnx_name(),
            Op::Unary(f) => f.onnx_name(),
            Op::Min => "Min",
            Op::Max => "Max",
            Op::PRelu => "PRelu",
            Op::Resize(_) => "Resize",
            Op::ArgExtreme { max: true, .. } => "ArgMax",
            Op::ArgExtreme { max: false, .. } => "ArgMin",
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
            Op::GatherElements { .. } => "GatherElements",
            Op::Slice => "Slice",
            Op::Shape { .. } => "Shape",
            Op::Constant(_) => "Constant",
            Op::Cast { .. } => "Cast",
            Op::Softmax { .. } => "Softmax",
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::Reduce { kind, .. } => kind.onnx_name(),
            Op::Where => "Where",
            Op::Expand => "Expand",
            Op::Pad { .. } => "Pad",
            Op::Identity => "Identity",
            Op::Equal => "Equal",
            Op::Less => "Less",
            Op::Greater => "Greater",
            Op::GreaterOrEqual => "GreaterOrEqual",
            Op::LessOrEqual => "LessOrEqual",
            Op::And => "And",
            Op::Or => "Or",
            Op::Xor => "Xor",
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
    fn activations_match_their_definitions() {
        for x in [-3.0f32, -0.5, 0.0, 0.7, 2.5] {
            assert_eq!(Act::Relu.apply(x), x.max(0.0));
            assert_eq!(
                Act::Clip(0.0, 6.0).apply(x * 4.0),
                (x * 4.0).clamp(0.0, 6.0)
            );
            let gelu = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / std::f64::consts::SQRT_2));
            assert!((Act::Gelu.apply(x) as f64 - gelu).abs() < 1e-6, "gelu({x})");
            assert!((Act::Sigmoid.apply(x) as f64 - 1.0 / (1.0 + (-x as f64).exp())).abs() < 1e-6);
        }
        assert!((erf(1.0) - 0.842_700_8).abs() < 1e-6);
    }
}
