//! reef -> ONNX export: writes a graph as an ONNX model (IR version 8,
//! ai.onnx opset 17), weights as `raw_data` initializers, dim 0 of inputs
//! (and of outputs that share the batch size) as the symbol `batch`.

use crate::convert::{dtype_to_onnx, tensor_to_proto};
use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::{
    type_proto, AttributeProto, AttributeType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;
use reef_model::{Act, Graph, ModelError, Node, Op, PadMode, PoolKind, Tensor, ValueInfo};
use std::collections::HashSet;

/// IR version written by [`export`].
pub const EXPORT_IR_VERSION: i64 = 8;
/// ai.onnx opset written by [`export`].
pub const EXPORT_OPSET: i64 = 17;

/// Serialises `graph` as an ONNX model.
pub fn export(graph: &Graph) -> Result<Vec<u8>, ModelError> {
    let mut ex = Exporter {
        g: graph,
        taken: graph.values.iter().map(|v| v.name.clone()).collect(),
        extra: vec![],
    };
    let batch = graph
        .inputs
        .first()
        .and_then(|&i| graph.values.get(i))
        .and_then(|v| v.shape.first().copied());
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for n in &graph.nodes {
        nodes.push(ex.node(n)?);
    }
    let mut initializer: Vec<TensorProto> =
        Vec::with_capacity(graph.initializers.len() + ex.extra.len());
    let mut ids: Vec<_> = graph.initializers.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        initializer.push(tensor_to_proto(
            &ex.value(id)?.name,
            &graph.initializers[&id],
        ));
    }
    initializer.append(&mut ex.extra);
    let input = graph
        .inputs
        .iter()
        .map(|&i| {
            Ok(value_info(
                ex.value(i)?,
                Some(ex.value(i)?.shape.first().copied().unwrap_or(0)),
            ))
        })
        .collect::<Result<_, ModelError>>()?;
    let output = graph
        .outputs
        .iter()
        .map(|&o| Ok(value_info(ex.value(o)?, batch)))
        .collect::<Result<_, ModelError>>()?;
    let model = ModelProto {
        ir_version: EXPORT_IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "reef".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: nodes,
            name: graph.name.clone(),
            initializer,
            input,
            output,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// Tensor type of a value; dim 0 becomes the symbol `batch` when it equals
/// the batch size.
fn value_info(v: &ValueInfo, batch: Option<usize>) -> ValueInfoProto {
    let dim = v
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if i == 0 && Some(d) == batch {
                dimension::Value::DimParam("batch".into())
            } else {
                dimension::Value::DimValue(d as i64)
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: v.name.clone(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dtype_to_onnx(v.dtype),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn ints(name: &str, v: impl IntoIterator<Item = i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.into_iter().collect(),
        ..Default::default()
    }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn tensor(name: &str, t: &Tensor) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Tensor as i32,
        t: Some(tensor_to_proto("", t)),
        ..Default::default()
    }
}

fn usizes(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

struct Exporter<'a> {
    g: &'a Graph,
    taken: HashSet<String>,
    /// Initializers created for attributes that opset 17 takes as inputs.
    extra: Vec<TensorProto>,
}

impl Exporter<'_> {
    fn value(&self, id: usize) -> Result<&ValueInfo, ModelError> {
        self.g
            .values
            .get(id)
            .ok_or_else(|| ModelError::Graph(format!("value #{id} does not exist")))
    }

    /// Adds an initializer named after `base` and returns its name.
    fn constant(&mut self, base: &str, t: &Tensor) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        self.extra.push(tensor_to_proto(&name, t));
        name
    }

    fn node(&mut self, n: &Node) -> Result<NodeProto, ModelError> {
        let mut input = n
            .inputs
            .iter()
            .map(|i| match i {
                None => Ok(String::new()),
                Some(v) => Ok(self.value(*v)?.name.clone()),
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let output = n
            .outputs
            .iter()
            .map(|&o| Ok(self.value(o)?.name.clone()))
            .collect::<Result<Vec<_>, ModelError>>()?;
        let unsupported = |reason: &str| ModelError::Unsupported {
            node: n.name.clone(),
            op: n.op.name().into(),
            reason: format!("cannot export: {reason}"),
        };
        // Sets input `i` to a new constant unless the node already has it.
        let operand = |ex: &mut Self, input: &mut Vec<String>, i: usize, what: &str, t: Tensor| {
            if input.len() <= i {
                input.resize(i + 1, String::new());
            }
            if input[i].is_empty() {
                input[i] = ex.constant(&format!("{}_{what}", n.name), &t);
            }
        };
        let mut attribute = vec![];
        match &n.op {
            Op::Conv(a) => {
                attribute.push(ints("kernel_shape", usizes(&a.kernel)));
                attribute.push(ints("strides", usizes(&a.stride)));
                attribute.push(ints("pads", usizes(&a.pads)));
                attribute.push(ints("dilations", usizes(&a.dilation)));
                attribute.push(int("group", a.groups as i64));
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                attribute.push(float("alpha", *alpha));
                attribute.push(float("beta", *beta));
                attribute.push(int("transA", *trans_a as i64));
                attribute.push(int("transB", *trans_b as i64));
            }
            Op::Clip { min, max } => {
                if let Some(v) = min {
                    operand(self, &mut input, 1, "min", Tensor::scalar_f32(*v));
                }
                if let Some(v) = max {
                    operand(self, &mut input, 2, "max", Tensor::scalar_f32(*v));
                }
            }
            Op::BatchNorm { epsilon } => attribute.push(float("epsilon", *epsilon)),
            Op::Pool(p) => {
                attribute.push(ints("kernel_shape", usizes(&p.kernel)));
                attribute.push(ints("strides", usizes(&p.stride)));
                attribute.push(ints("pads", usizes(&p.pads)));
                attribute.push(int("ceil_mode", p.ceil_mode as i64));
                match p.kind {
                    PoolKind::Max => attribute.push(ints("dilations", usizes(&p.dilation))),
                    PoolKind::Avg => {
                        if p.dilation != [1, 1] {
                            return Err(unsupported("dilated AveragePool needs opset 19"));
                        }
                        attribute.push(int("count_include_pad", p.count_include_pad as i64));
                    }
                }
            }
            Op::Concat { axis } => attribute.push(int("axis", *axis)),
            Op::Flatten { axis } => attribute.push(int("axis", *axis)),
            Op::Reshape { allowzero } => attribute.push(int("allowzero", *allowzero as i64)),
            Op::Transpose { perm } => {
                if let Some(p) = perm {
                    attribute.push(ints("perm", usizes(p)));
                }
            }
            Op::Squeeze { axes } | Op::Unsqueeze { axes } => {
                if let Some(a) = axes {
                    operand(self, &mut input, 1, "axes", Tensor::i64_vec(a));
                }
            }
            Op::Gather { axis } | Op::GatherElements { axis } => attribute.push(int("axis", *axis)),
            Op::Shape { start, end } => {
                if *start != 0 {
                    attribute.push(int("start", *start));
                }
                if let Some(e) = end {
                    attribute.push(int("end", *e));
                }
            }
            Op::Constant(t) => attribute.push(tensor("value", t)),
            Op::ConstantOfShape(t) => attribute.push(tensor("value", t)),
            Op::Cast { to } => attribute.push(int("to", dtype_to_onnx(*to) as i64)),
            Op::Softmax { axis } => attribute.push(int("axis", *axis)),
            Op::LayerNorm { axis, epsilon } => {
                attribute.push(int("axis", *axis));
                attribute.push(float("epsilon", *epsilon));
            }
            Op::Reduce {
                kind,
                axes,
                keepdims,
                noop_with_empty_axes,
            } => {
                let axes = match (axes, n.input(1)) {
                    (Some(a), _) => Some(a.clone()),
                    (None, Some(v)) => Some(
                        self.g
                            .constant(v)
                            .ok_or_else(|| unsupported("axes must be a constant"))?
                            .to_i64_vec(),
                    ),
                    (None, None) => None,
                };
                input.truncate(1);
                if EXPORT_OPSET >= kind.axes_input_since() {
                    if let Some(a) = axes.filter(|a| !a.is_empty()) {
                        operand(self, &mut input, 1, "axes", Tensor::i64_vec(&a));
                    }
                    if *noop_with_empty_axes {
                        attribute.push(int("noop_with_empty_axes", 1));
                    }
                } else {
                    // Before opset 18 (13 for ReduceSum) the axes are an attribute.
                    match axes {
                        Some(a) if !a.is_empty() => attribute.push(ints("axes", a)),
                        _ if *noop_with_empty_axes => {
                            return Err(unsupported("noop_with_empty_axes needs opset 18"))
                        }
                        _ => {}
                    }
                }
                attribute.push(int("keepdims", *keepdims as i64));
            }
            Op::ArgExtreme {
                axis,
                keepdims,
                select_last_index,
                ..
            } => {
                attribute.push(int("axis", *axis));
                attribute.push(int("keepdims", *keepdims as i64));
                attribute.push(int("select_last_index", *select_last_index as i64));
            }
            Op::Resize(a) => {
                use reef_model::resize::{CoordMode, ResizeMode};
                let (mode, nearest) = match a.mode {
                    ResizeMode::Nearest(m) => ("nearest", Some(m)),
                    ResizeMode::Linear => ("linear", None),
                };
                attribute.push(string("mode", mode));
                if let Some(m) = nearest {
                    attribute.push(string("nearest_mode", m.onnx_name()));
                }
                if a.coord == CoordMode::HalfPixelSymmetric {
                    return Err(unsupported("half_pixel_symmetric needs opset 19"));
                }
                attribute.push(string(
                    "coordinate_transformation_mode",
                    a.coord.onnx_name(),
                ));
                let x = n
                    .input(0)
                    .ok_or_else(|| unsupported("the input is missing"))?;
                let in_shape = self.value(x)?.shape.clone();
                input.truncate(1);
                if a.from_sizes {
                    // Opset 17 derives each scale from its own axis.
                    let stretched = in_shape
                        .iter()
                        .zip(&a.sizes)
                        .zip(&a.scales)
                        .all(|((&i, &o), &s)| o as f64 / i.max(1) as f64 == s);
                    if !stretched {
                        return Err(unsupported("keep_aspect_ratio_policy needs opset 18"));
                    }
                    let sizes: Vec<i64> = a.sizes.iter().map(|&d| d as i64).collect();
                    operand(self, &mut input, 3, "sizes", Tensor::i64_vec(&sizes));
                } else {
                    let s: Vec<f32> = a.scales.iter().map(|&v| v as f32).collect();
                    let scales = Tensor::f32(vec![s.len()], s)?;
                    operand(self, &mut input, 2, "scales", scales);
                }
            }
            Op::Act(act) => match *act {
                Act::LeakyRelu(a) | Act::Elu(a) | Act::Celu(a) | Act::ThresholdedRelu(a) => {
                    attribute.push(float("alpha", a))
                }
                Act::Selu(alpha, gamma) => {
                    attribute.push(float("alpha", alpha));
                    attribute.push(float("gamma", gamma));
                }
                Act::HardSigmoid(alpha, beta) => {
                    attribute.push(float("alpha", alpha));
                    attribute.push(float("beta", beta));
                }
                Act::Clip(lo, hi) => {
                    operand(self, &mut input, 1, "min", Tensor::scalar_f32(lo));
                    operand(self, &mut input, 2, "max", Tensor::scalar_f32(hi));
                }
                Act::None
                | Act::Relu
                | Act::Sigmoid
                | Act::Tanh
                | Act::HardSwish
                | Act::Softplus
                | Act::Softsign => {}
                Act::Gelu | Act::GeluTanh => return Err(unsupported("Gelu needs opset 20")),
                Act::Mish => return Err(unsupported("Mish needs opset 18")),
            },
            Op::Pad { mode, pads, value } => {
                attribute.push(string(
                    "mode",
                    match mode {
                        PadMode::Constant => "constant",
                        PadMode::Reflect => "reflect",
                        PadMode::Edge => "edge",
                    },
                ));
                if let Some(p) = pads {
                    operand(self, &mut input, 1, "pads", Tensor::i64_vec(p));
                    if *mode == PadMode::Constant && *value != 0.0 {
                        operand(self, &mut input, 2, "value", Tensor::scalar_f32(*value));
                    }
                }
                if input.len() > 3 {
                    return Err(unsupported("Pad axes need opset 18"));
                }
            }
            Op::MatMul
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Pow
            | Op::Relu
            | Op::Sigmoid
            | Op::Tanh
            | Op::Erf
            | Op::Sqrt
            | Op::Exp
            | Op::Neg
            | Op::Unary(_)
            | Op::Min
            | Op::Max
            | Op::PRelu
            | Op::GlobalAvgPool
            | Op::GlobalMaxPool
            | Op::Slice
            | Op::Where
            | Op::Expand
            | Op::Identity
            | Op::Equal
            | Op::Less
            | Op::Greater
            | Op::GreaterOrEqual
            | Op::LessOrEqual
            | Op::And
            | Op::Or
            | Op::Xor
            | Op::Not
            | Op::Range => {}
        }
        // Trailing omitted inputs are simply left out.
        while input.last().is_some_and(|s| s.is_empty()) {
            input.pop();
        }
        Ok(NodeProto {
            input,
            output,
            name: n.name.clone(),
            op_type: n.op.name().into(),
            attribute,
            ..Default::default()
        })
    }
}
