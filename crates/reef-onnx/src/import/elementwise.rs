//! Import of the ONNX ops that become one reef op each with no structure of
//! their own: activations with attributes (LeakyRelu, HardSwish, Gelu, ...),
//! elementwise functions (Abs, Log, Floor, ...), PRelu and the reductions
//! (ReduceSum, ReduceMax, ReduceL2, ...).

use crate::attrs::NodeCtx;
use reef_model::{Act, ModelError, Op, Reduction, UnaryFn};

/// Selu's default alpha (ONNX's f32 constant).
const SELU_ALPHA: f32 = 1.673_263_2;
/// Selu's default gamma (ONNX's f32 constant).
const SELU_GAMMA: f32 = 1.050_701;

/// The reef op of `ctx` if it is one of this module's ops; `Ok(None)` for
/// every other op type.
pub(super) fn op(ctx: &NodeCtx, opset: i64) -> Result<Option<Op>, ModelError> {
    if let Some(f) = UnaryFn::ALL.into_iter().find(|f| f.onnx_name() == ctx.op) {
        return Ok(Some(Op::Unary(f)));
    }
    if let Some(kind) = Reduction::from_onnx(ctx.op) {
        let keepdims = ctx.flag("keepdims", true)?;
        return Ok(Some(if opset < kind.axes_input_since() {
            Op::Reduce {
                kind,
                axes: ctx.ints("axes")?,
                keepdims,
                noop_with_empty_axes: false,
            }
        } else {
            Op::Reduce {
                kind,
                axes: None,
                keepdims,
                noop_with_empty_axes: ctx.flag("noop_with_empty_axes", false)?,
            }
        }));
    }
    let act = match ctx.op {
        "LeakyRelu" => Act::LeakyRelu(ctx.float_or("alpha", 0.01)?),
        "Elu" => Act::Elu(ctx.float_or("alpha", 1.0)?),
        "Selu" => Act::Selu(
            ctx.float_or("alpha", SELU_ALPHA)?,
            ctx.float_or("gamma", SELU_GAMMA)?,
        ),
        "Celu" => {
            let alpha = ctx.float_or("alpha", 1.0)?;
            if alpha == 0.0 || !alpha.is_finite() {
                return Err(ctx.err(format!("alpha must be finite and nonzero, got {alpha}")));
            }
            Act::Celu(alpha)
        }
        "HardSigmoid" => Act::HardSigmoid(ctx.float_or("alpha", 0.2)?, ctx.float_or("beta", 0.5)?),
        "HardSwish" => Act::HardSwish,
        "Softplus" => Act::Softplus,
        "Softsign" => Act::Softsign,
        "ThresholdedRelu" => Act::ThresholdedRelu(ctx.float_or("alpha", 1.0)?),
        "Mish" => Act::Mish,
        "Gelu" => match ctx.string("approximate")?.as_deref().unwrap_or("none") {
            "none" => Act::Gelu,
            "tanh" => Act::GeluTanh,
            other => {
                return Err(ctx.err(format!(
                    "approximate must be 'none' or 'tanh', got '{other}'"
                )))
            }
        },
        "PRelu" => return Ok(Some(Op::PRelu)),
        _ => return Ok(None),
    };
    Ok(Some(Op::Act(act)))
}

/// Allowed input counts (min, max) of this module's ops at `opset`.
pub(super) fn arity(op: &str, opset: i64) -> Option<(usize, usize)> {
    if let Some(kind) = Reduction::from_onnx(op) {
        return Some(if opset < kind.axes_input_since() {
            (1, 1)
        } else {
            (1, 2)
        });
    }
    if UnaryFn::ALL.iter().any(|f| f.onnx_name() == op) {
        return Some((1, 1));
    }
    match op {
        "LeakyRelu" | "Elu" | "Selu" | "Celu" | "HardSigmoid" | "HardSwish" | "Softplus"
        | "Softsign" | "ThresholdedRelu" | "Mish" | "Gelu" => Some((1, 1)),
        "PRelu" => Some((2, 2)),
        _ => None,
    }
}
