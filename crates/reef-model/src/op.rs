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
            Op::ReduceMean { .. } => "ReduceMean",
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
