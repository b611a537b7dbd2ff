//! ONNX -> reef import: decodes a model file, checks its opset, turns graph
//! inputs and initializers into reef values and maps every node to a reef
//! [`Op`], letting [`GraphBuilder`] infer shapes and fold constants.

use crate::attrs::NodeCtx;
use crate::convert::{
    check_shape, dtype_from_onnx, onnx_type_name, single_value, tensor_from_proto,
};
use crate::proto::tensor_shape_proto::dimension;
use crate::proto::{type_proto, ModelProto, NodeProto, ValueInfoProto};
use prost::Message;
use reef_model::op::{ConvAttrs, PoolAttrs};
use reef_model::{DType, Graph, GraphBuilder, ModelError, Op, PadMode, PoolKind, Tensor, ValueId};
use std::collections::{BTreeMap, BTreeSet, HashSet};

mod composite;
mod conv_transpose;
mod einsum;
mod elementwise;
mod norm;
mod one_d;
mod resize;

/// Oldest ai.onnx opset reef imports.
pub const MIN_OPSET: i64 = 7;
/// Newest ai.onnx opset reef imports. Opset 22 only widened type constraints
/// (bfloat16) of ops reef supports, so their semantics are those of 21.
pub const MAX_OPSET: i64 = 22;

/// Bound on spatial attributes (kernel, stride, dilation, pads).
const SPATIAL_LIMIT: i64 = 1 << 20;
/// Bound on constant shape-like operands (pads, slice steps).
const OPERAND_LIMIT: i64 = 1 << 40;

/// Values of named dynamic dimensions of graph inputs (ONNX `dim_param`s
/// such as `sequence`) past dimension 0, which is always the batch.
pub type DimValues = BTreeMap<String, usize>;

/// Imports an ONNX model. Dynamic dimensions of graph inputs are fixed:
/// dim 0 takes `batch` (default 1); any other dynamic dimension is an error
/// (see [`import_with_dims`]). Never panics: malformed input of any kind is
/// reported as an error.
pub fn import(bytes: &[u8], batch: Option<usize>) -> Result<Graph, ModelError> {
    import_with_dims(bytes, batch, &DimValues::new())
}

/// [`import`], with the named dynamic dimensions past dimension 0 fixed to
/// `dims` (e.g. `sequence = 128` for a transformer exported with dynamic
/// axes). A name in `dims` that no graph input uses is an error (a typo
/// would otherwise pass silently).
pub fn import_with_dims(
    bytes: &[u8],
    batch: Option<usize>,
    dims: &DimValues,
) -> Result<Graph, ModelError> {
    // Defence in depth: the importer validates what it passes on, but shape
    // inference lives in reef-model; a panic there must not take a server down.
    match std::panic::catch_unwind(|| import_inner(bytes, batch, dims)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("ONNX import panicked: {msg}");
            Err(ModelError::Malformed(format!(
                "internal error while importing: {msg}"
            )))
        }
    }
}

/// [`import`] without the panic guard; tests use it to prove no input panics.
#[doc(hidden)]
pub fn import_unguarded(bytes: &[u8], batch: Option<usize>) -> Result<Graph, ModelError> {
    import_inner(bytes, batch, &DimValues::new())
}

fn import_inner(bytes: &[u8], batch: Option<usize>, dims: &DimValues) -> Result<Graph, ModelError> {
    let model = ModelProto::decode(bytes).map_err(|e| ModelError::Malformed(e.to_string()))?;
    let opset = default_opset(&model)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Malformed("model has no graph".into()))?;
    let batch = batch.unwrap_or(1);
    if batch == 0 {
        return Err(ModelError::Graph("batch size must be at least 1".into()));
    }
    tracing::debug!(graph = %graph.name, opset, nodes = graph.node.len(), "importing ONNX model");
    let mut imp = Importer::new(graph, opset);
    imp.initializers(graph)?;
    imp.inputs(&graph.input, batch, dims)?;
    for (i, n) in graph.node.iter().enumerate() {
        imp.node(i, n)?;
    }
    for o in &graph.output {
        let v = imp.b.value(&o.name).ok_or_else(|| {
            ModelError::Graph(format!("graph output '{}' is never produced", o.name))
        })?;
        imp.b.output(v);
    }
    imp.b.finish()
}

/// The version of the default (ai.onnx) opset the model imports.
fn default_opset(model: &ModelProto) -> Result<i64, ModelError> {
    let v = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .ok_or_else(|| ModelError::Malformed("model imports no ai.onnx opset".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
        return Err(ModelError::Unsupported {
            node: "(model)".into(),
            op: format!("ai.onnx opset {v}"),
            reason: format!("reef imports opsets {MIN_OPSET} to {MAX_OPSET}"),
        });
    }
    Ok(v)
}

struct Importer {
    b: GraphBuilder,
    opset: i64,
    /// Value names consumed by a node or a graph output.
    used: HashSet<String>,
    /// Every name taken (ONNX values, nodes, and synthesised ones).
    taken: HashSet<String>,
    /// Node names given so far.
    node_names: HashSet<String>,
}

impl Importer {
    fn new(g: &crate::proto::GraphProto, opset: i64) -> Self {
        let mut used = HashSet::new();
        let mut taken = HashSet::new();
        for n in &g.node {
            used.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            taken.extend(n.output.iter().cloned());
            taken.insert(n.name.clone());
        }
        used.extend(g.output.iter().map(|o| o.name.clone()));
        taken.extend(g.input.iter().map(|i| i.name.clone()));
        taken.extend(g.initializer.iter().map(|i| i.name.clone()));
        let name = if g.name.is_empty() {
            "onnx".to_string()
        } else {
            g.name.clone()
        };
        Importer {
            b: GraphBuilder::new(&name),
            opset,
            used,
            taken,
            node_names: HashSet::new(),
        }
    }

    /// A name not used anywhere in the model, derived from `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.taken.contains(&name) || self.b.value(&name).is_some() {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    fn initializers(&mut self, g: &crate::proto::GraphProto) -> Result<(), ModelError> {
        for tp in &g.initializer {
            if tp.name.is_empty() {
                return Err(ModelError::Graph("an initializer has no name".into()));
            }
            let t = tensor_from_proto(tp)?;
            self.b.initializer(&tp.name, t)?;
        }
        Ok(())
    }

    fn inputs(
        &mut self,
        inputs: &[ValueInfoProto],
        batch: usize,
        dims: &DimValues,
    ) -> Result<(), ModelError> {
        // Named dynamic dimensions past dimension 0, for the unused-name check.
        let mut named = BTreeSet::new();
        for vi in inputs {
            if let Some(v) = self.b.value(&vi.name) {
                if self.b.constant(v).is_some() {
                    continue; // an initializer listed as input: a constant
                }
                return Err(ModelError::Graph(format!(
                    "graph input '{}' is declared twice",
                    vi.name
                )));
            }
            if vi.name.is_empty() {
                return Err(ModelError::Graph("a graph input has no name".into()));
            }
            let unsupported = |reason: String| ModelError::Unsupported {
                node: vi.name.clone(),
                op: "graph input".into(),
                reason,
            };
            let Some(type_proto::Value::TensorType(tt)) =
                vi.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return Err(unsupported("not a tensor (or has no type)".into()));
            };
            let dtype = match dtype_from_onnx(tt.elem_type) {
                Some(d @ (DType::F32 | DType::I64 | DType::I32 | DType::Bool)) => d,
                _ => {
                    return Err(unsupported(format!(
                        "element type {} is not supported",
                        onnx_type_name(tt.elem_type)
                    )))
                }
            };
            let shape_proto = tt
                .shape
                .as_ref()
                .ok_or_else(|| unsupported("has no shape (unknown rank)".into()))?;
            let mut shape = Vec::with_capacity(shape_proto.dim.len());
            for (i, d) in shape_proto.dim.iter().enumerate() {
                let fixed = match &d.value {
                    Some(dimension::Value::DimValue(v)) if *v >= 0 => Some(*v as usize),
                    Some(dimension::Value::DimValue(v)) => {
                        return Err(ModelError::Graph(format!(
                            "graph input '{}': negative dimension {v}",
                            vi.name
                        )))
                    }
                    _ => None,
                };
                let param = match &d.value {
                    Some(dimension::Value::DimParam(p)) if !p.is_empty() => Some(p.as_str()),
                    _ => None,
                };
                match (fixed, param) {
                    (Some(v), _) => shape.push(v),
                    (None, Some(p)) if i == 0 && dims.contains_key(p) => {
                        return Err(unsupported(format!(
                            "dimension 0 ('{p}') is the batch, which each request sets; \
                             it cannot be fixed by name"
                        )))
                    }
                    (None, _) if i == 0 => shape.push(batch),
                    (None, Some(p)) => {
                        named.insert(p.to_string());
                        match dims.get(p) {
                            Some(&v) => shape.push(v),
                            None => {
                                return Err(unsupported(format!(
                                    "dimension {i} is dynamic ('{p}'); give it a value \
                                     (`dims = {{ {p} = N }}` in the model's config.toml, \
                                     or `--dim {p}=N`)"
                                )))
                            }
                        }
                    }
                    (None, None) => {
                        return Err(unsupported(format!(
                            "dimension {i} is dynamic and unnamed; only dimension 0 (batch) \
                             or named dimensions can be fixed"
                        )));
                    }
                }
            }
            check_shape(&shape)
                .map_err(|r| ModelError::Graph(format!("graph input '{}': {r}", vi.name)))?;
            self.b.input(&vi.name, dtype, shape)?;
        }
        if let Some(unused) = dims.keys().find(|k| !named.contains(*k)) {
            let have: Vec<String> = named.iter().map(|n| format!("'{n}'")).collect();
            return Err(ModelError::Graph(format!(
                "dimension '{unused}' is given a value, but no graph input has a dynamic \
                 dimension of that name past dimension 0 (named: {})",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )));
        }
        Ok(())
    }

    fn node(&mut self, index: usize, n: &NodeProto) -> Result<(), ModelError> {
        let base = if n.name.is_empty() {
            format!("{}_{index}", n.op_type)
        } else {
            n.name.clone()
        };
        let name = if n.name.is_empty() || self.node_names.contains(&base) {
            self.fresh(&base)
        } else {
            base
        };
        self.node_names.insert(name.clone());
        let ctx = NodeCtx {
            name,
            op: n.op_type.as_str(),
            proto: n,
        };
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(ctx.unsupported(format!("domain '{}' is not supported", n.domain)));
        }
        let mut inputs = Vec::with_capacity(n.input.len());
        for s in &n.input {
            if s.is_empty() {
                inputs.push(None);
            } else {
                let v = self.b.value(s).ok_or_else(|| {
                    ctx.err(format!("input '{s}' is not defined before this node"))
                })?;
                inputs.push(Some(v));
            }
        }
        let (lo, hi) =
            arity(&n.op_type, self.opset).ok_or_else(|| ctx.unsupported("no such op in reef"))?;
        if inputs.len() < lo || inputs.len() > hi {
            return Err(ctx.err(format!(
                "has {} inputs, expected {lo} to {hi}",
                inputs.len()
            )));
        }
        if let Some(i) = inputs.iter().take(lo).position(|i| i.is_none()) {
            return Err(ctx.err(format!("required input #{i} is missing")));
        }
        if n.output.is_empty() {
            return Err(ctx.err("has no outputs"));
        }
        self.map_node(&ctx, inputs).map_err(|e| match e {
            ModelError::Graph(r) => ctx.err(r),
            e => e,
        })
    }

    /// Fails if output `i` (an optional extra output) is consumed.
    fn extra_output_unused(&self, ctx: &NodeCtx, i: usize, what: &str) -> Result<(), ModelError> {
        match ctx.proto.output.get(i) {
            Some(o) if !o.is_empty() && self.used.contains(o) => {
                Err(ctx.unsupported(format!("output '{o}' ({what}) is not supported")))
            }
            _ => Ok(()),
        }
    }

    /// Adds `op` producing the node's first output.
    fn emit(
        &mut self,
        ctx: &NodeCtx,
        op: Op,
        inputs: Vec<Option<ValueId>>,
    ) -> Result<(), ModelError> {
        for (i, o) in ctx.proto.output.iter().enumerate().skip(1) {
            if !o.is_empty() && self.used.contains(o) {
                return Err(ctx.unsupported(format!("output #{i} '{o}' is not supported")));
            }
        }
        let out = match ctx.proto.output[0].as_str() {
            "" => self.fresh(&format!("{}_out", ctx.name)),
            s => s.to_string(),
        };
        self.add(&ctx.name, op, inputs, &out)?;
        Ok(())
    }

    /// Adds `op` producing the node's outputs up to the last named one (at
    /// most `max` of them; an omitted one in between gets a fresh name).
    /// A consumed output past `max` is unsupported.
    fn emit_outputs(
        &mut self,
        ctx: &NodeCtx,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        max: usize,
    ) -> Result<(), ModelError> {
        let outs = &ctx.proto.output;
        for (i, o) in outs.iter().enumerate().skip(max) {
            if !o.is_empty() && self.used.contains(o) {
                return Err(ctx.unsupported(format!("output #{i} '{o}' is not supported")));
            }
        }
        let count = outs
            .iter()
            .take(max)
            .rposition(|o| !o.is_empty())
            .map_or(1, |i| i + 1);
        let mut names = Vec::with_capacity(count);
        for (i, o) in outs.iter().take(count).enumerate() {
            names.push(match o.as_str() {
                "" => self.fresh(&format!("{}_out{i}", ctx.name)),
                s => s.to_string(),
            });
        }
        let op_name = op.name();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for v in self.b.node_named(&ctx.name, op, inputs, &refs)? {
            check_shape(self.b.shape(v))
                .map_err(|r| ModelError::node(&ctx.name, op_name, format!("output {r}")))?;
        }
        Ok(())
    }

    /// Adds one single-output node and checks its output shape.
    fn add(
        &mut self,
        node: &str,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        out: &str,
    ) -> Result<ValueId, ModelError> {
        let op_name = op.name();
        let v = self.b.node_named(node, op, inputs, &[out])?[0];
        check_shape(self.b.shape(v))
            .map_err(|r| ModelError::node(node, op_name, format!("output {r}")))?;
        Ok(v)
    }

    /// `y` reshaped to `dims` (0 copies the input's dimension).
    fn reshaped(
        &mut self,
        ctx: &NodeCtx,
        y: ValueId,
        dims: &[i64],
        what: &str,
    ) -> Result<ValueId, ModelError> {
        let s = self.constant(&format!("{}_{what}_shape", ctx.name), Tensor::i64_vec(dims))?;
        let n = self.fresh(&format!("{}_{what}", ctx.name));
        self.add(
            &n,
            Op::Reshape { allowzero: false },
            vec![Some(y), Some(s)],
            &n,
        )
    }

    fn constant(&mut self, base: &str, t: Tensor) -> Result<ValueId, ModelError> {
        let name = self.fresh(base);
        self.b.initializer(&name, t)
    }

    fn const_i64(
        &self,
        ctx: &NodeCtx,
        v: Option<ValueId>,
        what: &str,
    ) -> Result<Option<Vec<i64>>, ModelError> {
        match v {
            None => Ok(None),
            Some(v) => match self.b.constant(v) {
                Some(t) => Ok(Some(t.to_i64_vec())),
                None => Err(ctx.unsupported(format!("{what} must be a constant"))),
            },
        }
    }

    fn map_node(&mut self, ctx: &NodeCtx, inputs: Vec<Option<ValueId>>) -> Result<(), ModelError> {
        let opset = self.opset;
        if let Some(op) = elementwise::op(ctx, opset)? {
            return self.emit(ctx, op, inputs);
        }
        let x = inputs.first().copied().flatten();
        let rank3 = x.is_some_and(|v| self.b.shape(v).len() == 3);
        let op = match ctx.op {
            "Conv" | "MaxPool" | "AveragePool" | "ConvTranspose" if rank3 => {
                return self.one_d(ctx, inputs)
            }
            "ConvTranspose" => return self.conv_transpose(ctx, &inputs),
            "Einsum" => return self.einsum(ctx, &inputs),
            "ArgMax" | "ArgMin" => Op::ArgExtreme {
                max: ctx.op == "ArgMax",
                axis: ctx.int_or("axis", 0)?,
                keepdims: ctx.flag("keepdims", true)?,
                select_last_index: ctx.flag("select_last_index", false)?,
            },
            "Split" => return self.split(ctx, &inputs),
            "InstanceNormalization" | "GroupNormalization" => return self.group_norm(ctx, &inputs),
            "Resize" | "Upsample" => return self.resize(ctx, &inputs),
            "Sum" | "Mean" | "Max" | "Min" => return self.variadic(ctx, inputs),
            "Conv" => Op::Conv(self.conv_attrs(ctx, &inputs)?),
            "MaxPool" | "AveragePool" => {
                if ctx.op == "MaxPool" {
                    self.extra_output_unused(ctx, 1, "Indices")?;
                }
                Op::Pool(self.pool_attrs(ctx, x)?)
            }
            "Gemm" => Op::Gemm {
                alpha: ctx.float_or("alpha", 1.0)?,
                beta: ctx.float_or("beta", 1.0)?,
                trans_a: ctx.flag("transA", false)?,
                trans_b: ctx.flag("transB", false)?,
            },
            "MatMul" => Op::MatMul,
            "Add" => Op::Add,
            "Sub" => Op::Sub,
            "Mul" => Op::Mul,
            "Div" => Op::Div,
            "Pow" => Op::Pow,
            "Relu" => Op::Relu,
            "Sigmoid" => Op::Sigmoid,
            "Tanh" => Op::Tanh,
            "Erf" => Op::Erf,
            "Sqrt" => Op::Sqrt,
            "Exp" => Op::Exp,
            "Neg" => Op::Neg,
            "Equal" => Op::Equal,
            "Less" => Op::Less,
            "Greater" => Op::Greater,
            "GreaterOrEqual" => Op::GreaterOrEqual,
            "LessOrEqual" => Op::LessOrEqual,
            "And" => Op::And,
            "Or" => Op::Or,
            "Xor" => Op::Xor,
            "Not" => Op::Not,
            "Where" => Op::Where,
            "Expand" => {
                let s = self.const_i64(ctx, inputs[1], "shape")?.unwrap_or_default();
                if s.iter().any(|&d| !(0..=OPERAND_LIMIT).contains(&d)) {
                    return Err(ctx.err(format!("invalid target shape {s:?}")));
                }
                let x_shape = x.map(|v| self.b.shape(v).to_vec()).unwrap_or_default();
                let t: Vec<usize> = s.iter().map(|&d| d as usize).collect();
                let out = reef_model::shape::broadcast(&x_shape, &t)
                    .ok_or_else(|| ctx.err(format!("{x_shape:?} cannot expand to {s:?}")))?;
                check_shape(&out).map_err(|r| ctx.err(r))?;
                Op::Expand
            }
            "Range" => {
                let mut v = [0.0; 3];
                for (i, slot) in v.iter_mut().enumerate() {
                    let t = inputs[i].and_then(|id| self.b.constant(id));
                    let Some(t) = t else {
                        return Err(ctx.unsupported(format!("input #{i} must be a constant")));
                    };
                    *slot = single_value(t)
                        .ok_or_else(|| ctx.err(format!("input #{i} must be a scalar")))?;
                }
                let n = ((v[1] - v[0]) / v[2]).ceil();
                if v[2] == 0.0 || !n.is_finite() || n > OPERAND_LIMIT as f64 {
                    return Err(ctx.err(format!(
                        "invalid range start {} limit {} delta {}",
                        v[0], v[1], v[2]
                    )));
                }
                Op::Range
            }
            "Identity" => Op::Identity,
            "Dropout" => {
                if opset >= 12 {
                    if let Some(tm) = inputs.get(2).copied().flatten() {
                        match self.b.constant(tm).and_then(single_value) {
                            Some(0.0) => {}
                            _ => return Err(ctx.unsupported("training mode is not supported")),
                        }
                    }
                }
                self.extra_output_unused(ctx, 1, "mask")?;
                return self.emit(ctx, Op::Identity, vec![x]);
            }
            "Clip" => {
                if opset < 11 {
                    Op::Clip {
                        min: ctx.float("min")?,
                        max: ctx.float("max")?,
                    }
                } else {
                    for (i, v) in inputs.iter().enumerate().skip(1) {
                        if let Some(v) = *v {
                            let t = self.b.constant(v).ok_or_else(|| {
                                ctx.unsupported(format!("bound #{i} must be a constant"))
                            })?;
                            if t.len() != 1 {
                                return Err(ctx.err(format!(
                                    "bound #{i} must be a scalar, got shape {:?}",
                                    t.shape
                                )));
                            }
                        }
                    }
                    Op::Clip {
                        min: None,
                        max: None,
                    }
                }
            }
            "BatchNormalization" => {
                if ctx.int_or("training_mode", 0)? != 0 {
                    return Err(ctx.unsupported("training mode is not supported"));
                }
                if ctx.int_or("spatial", 1)? != 1 {
                    return Err(ctx.unsupported("spatial = 0 is not supported"));
                }
                for i in 1..5 {
                    self.extra_output_unused(ctx, i, "training statistics")?;
                }
                return self.emit(
                    ctx,
                    Op::BatchNorm {
                        epsilon: ctx.float_or("epsilon", 1e-5)?,
                    },
                    inputs,
                );
            }
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let r = x.map(|v| self.b.shape(v).len()).unwrap_or(0);
                if r != 4 {
                    return Err(ctx.unsupported(format!(
                        "only 2-D pooling (rank-4 NCHW input) is supported, input has rank {r}"
                    )));
                }
                if ctx.op == "GlobalAveragePool" {
                    Op::GlobalAvgPool
                } else {
                    Op::GlobalMaxPool
                }
            }
            "Concat" => Op::Concat {
                axis: ctx
                    .int("axis")?
                    .ok_or_else(|| ctx.err("missing attribute 'axis'"))?,
            },
            "Flatten" => Op::Flatten {
                axis: ctx.int_or("axis", 1)?,
            },
            "Reshape" => {
                let t = self
                    .const_i64(ctx, inputs[1], "target shape")?
                    .unwrap_or_default();
                let mut n: u64 = 1;
                for &d in &t {
                    if !(-1..=OPERAND_LIMIT).contains(&d) {
                        return Err(ctx.err(format!("invalid dimension {d} in target shape {t:?}")));
                    }
                    if d > 0 {
                        n = n.saturating_mul(d as u64);
                    }
                }
                if n > crate::convert::MAX_ELEMENTS {
                    return Err(ctx.err(format!("target shape {t:?} is too large")));
                }
                Op::Reshape {
                    allowzero: ctx.flag("allowzero", false)?,
                }
            }
            "Transpose" => {
                let perm = match ctx.ints("perm")? {
                    None => None,
                    Some(p) => {
                        if p.iter().any(|&v| !(0..=64).contains(&v)) {
                            return Err(ctx.err(format!("invalid perm {p:?}")));
                        }
                        Some(p.iter().map(|&v| v as usize).collect())
                    }
                };
                Op::Transpose { perm }
            }
            "Squeeze" if opset < 13 => Op::Squeeze {
                axes: ctx.ints("axes")?,
            },
            "Squeeze" => Op::Squeeze { axes: None },
            "Unsqueeze" if opset < 13 => Op::Unsqueeze {
                axes: Some(
                    ctx.ints("axes")?
                        .ok_or_else(|| ctx.err("missing attribute 'axes'"))?,
                ),
            },
            "Unsqueeze" => {
                let a = self.const_i64(ctx, inputs[1], "axes")?.unwrap_or_default();
                if a.len() > 64 {
                    return Err(ctx.err("too many axes"));
                }
                Op::Unsqueeze { axes: None }
            }
            "Gather" => Op::Gather {
                axis: ctx.int_or("axis", 0)?,
            },
            "GatherElements" => Op::GatherElements {
                axis: ctx.int_or("axis", 0)?,
            },
            "Slice" if opset < 10 => {
                let starts = ctx
                    .ints("starts")?
                    .ok_or_else(|| ctx.err("missing attribute 'starts'"))?;
                let ends = ctx
                    .ints("ends")?
                    .ok_or_else(|| ctx.err("missing attribute 'ends'"))?;
                let mut ins = vec![x];
                ins.push(Some(self.constant(
                    &format!("{}_starts", ctx.name),
                    Tensor::i64_vec(&starts),
                )?));
                ins.push(Some(self.constant(
                    &format!("{}_ends", ctx.name),
                    Tensor::i64_vec(&ends),
                )?));
                if let Some(axes) = ctx.ints("axes")? {
                    ins.push(Some(self.constant(
                        &format!("{}_axes", ctx.name),
                        Tensor::i64_vec(&axes),
                    )?));
                }
                return self.emit(ctx, Op::Slice, ins);
            }
            "Slice" => {
                if let Some(steps) =
                    self.const_i64(ctx, inputs.get(4).copied().flatten(), "steps")?
                {
                    if steps
                        .iter()
                        .any(|s| s.unsigned_abs() > OPERAND_LIMIT as u64)
                    {
                        return Err(ctx.err(format!("invalid steps {steps:?}")));
                    }
                }
                Op::Slice
            }
            "Shape" => {
                if opset >= 15 {
                    Op::Shape {
                        start: ctx.int_or("start", 0)?,
                        end: ctx.int("end")?,
                    }
                } else {
                    Op::Shape {
                        start: 0,
                        end: None,
                    }
                }
            }
            "Constant" => Op::Constant(self.constant_value(ctx)?),
            "ConstantOfShape" => {
                let value = match ctx.tensor("value")? {
                    Some(tp) => tensor_from_proto(tp)
                        .map_err(|e| ctx.err(format!("attribute 'value': {e}")))?,
                    None => Tensor::scalar_f32(0.0).reshaped(vec![1])?,
                };
                if value.len() != 1 {
                    return Err(ctx.err(format!(
                        "'value' must hold one element, has shape {:?}",
                        value.shape
                    )));
                }
                let s = self.const_i64(ctx, x, "shape")?.unwrap_or_default();
                let shape: Vec<usize> = s
                    .iter()
                    .map(|&d| d.clamp(0, OPERAND_LIMIT) as usize)
                    .collect();
                if s.iter().any(|&d| d < 0) {
                    return Err(ctx.err(format!("negative dimension in {s:?}")));
                }
                check_shape(&shape).map_err(|r| ctx.err(r))?;
                Op::ConstantOfShape(value)
            }
            "Cast" => {
                let to = ctx
                    .int("to")?
                    .ok_or_else(|| ctx.err("missing attribute 'to'"))?;
                let code = i32::try_from(to).unwrap_or(-1);
                match dtype_from_onnx(code) {
                    Some(d @ (DType::F32 | DType::I64 | DType::I32 | DType::Bool)) => {
                        Op::Cast { to: d }
                    }
                    _ => {
                        return Err(ctx.unsupported(format!(
                            "cast to {} is not supported",
                            onnx_type_name(code)
                        )))
                    }
                }
            }
            "Softmax" if opset < 13 => return self.legacy_softmax(ctx, inputs),
            "Softmax" => Op::Softmax {
                axis: ctx.int_or("axis", -1)?,
            },
            "LayerNormalization" => {
                // Mean and InvStdDev (outputs 1 and 2) are computed when named.
                let op = Op::LayerNorm {
                    axis: ctx.int_or("axis", -1)?,
                    epsilon: ctx.float_or("epsilon", 1e-5)?,
                };
                return self.emit_outputs(ctx, op, inputs, 3);
            }
            "Pad" => {
                let mode = match ctx.string("mode")?.as_deref().unwrap_or("constant") {
                    "constant" => PadMode::Constant,
                    "reflect" => PadMode::Reflect,
                    "edge" => PadMode::Edge,
                    m => return Err(ctx.unsupported(format!("mode '{m}' is not supported"))),
                };
                let pads = if opset < 11 {
                    Some(
                        ctx.ints("pads")?
                            .ok_or_else(|| ctx.err("missing attribute 'pads'"))?,
                    )
                } else {
                    self.const_i64(ctx, inputs[1], "pads")?
                };
                if let Some(p) = &pads {
                    if p.iter().any(|v| v.unsigned_abs() > OPERAND_LIMIT as u64) {
                        return Err(ctx.err(format!("invalid pads {p:?}")));
                    }
                }
                if opset < 11 {
                    Op::Pad {
                        mode,
                        pads,
                        value: ctx.float_or("value", 0.0)?,
                    }
                } else {
                    if let Some(v) = inputs.get(2).copied().flatten() {
                        let t = self
                            .b
                            .constant(v)
                            .ok_or_else(|| ctx.unsupported("constant_value must be a constant"))?;
                        if t.len() > 1 {
                            return Err(ctx.err("constant_value must be a scalar"));
                        }
                    }
                    Op::Pad {
                        mode,
                        pads: None,
                        value: 0.0,
                    }
                }
            }
            other => return Err(ctx.unsupported(format!("op {other} is not supported"))),
        };
        self.emit(ctx, op, inputs)
    }

    fn constant_value(&self, ctx: &NodeCtx) -> Result<Tensor, ModelError> {
        if let Some(tp) = ctx.tensor("value")? {
            return tensor_from_proto(tp).map_err(|e| match e {
                ModelError::Unsupported { reason, .. } => {
                    ctx.unsupported(format!("value: {reason}"))
                }
                e => ctx.err(format!("value: {e}")),
            });
        }
        if let Some(f) = ctx.float("value_float")? {
            return Ok(Tensor::scalar_f32(f));
        }
        if let Some(v) = ctx.floats("value_floats")? {
            return Tensor::f32(vec![v.len()], v);
        }
        if let Some(i) = ctx.int("value_int")? {
            return Tensor::i64(vec![], vec![i]);
        }
        if let Some(v) = ctx.ints("value_ints")? {
            return Ok(Tensor::i64_vec(&v));
        }
        for a in ["sparse_value", "value_string", "value_strings"] {
            if ctx.has(a) {
                return Err(ctx.unsupported(format!("attribute '{a}' is not supported")));
            }
        }
        Err(ctx.err("no value attribute"))
    }

    /// Softmax before opset 13: coerce to 2-D at `axis`, softmax the rows,
    /// reshape back.
    fn legacy_softmax(
        &mut self,
        ctx: &NodeCtx,
        inputs: Vec<Option<ValueId>>,
    ) -> Result<(), ModelError> {
        let x = inputs[0].ok_or_else(|| ctx.err("missing input"))?;
        let shape = self.b.shape(x).to_vec();
        let axis = ctx.int_or("axis", 1)?;
        let r = shape.len() as i64;
        let ax = if axis < 0 { axis + r } else { axis };
        if ax < 0 || ax >= r.max(1) {
            return Err(ctx.err(format!("axis {axis} out of range for rank {r}")));
        }
        if ax == r - 1 {
            return self.emit(ctx, Op::Softmax { axis: -1 }, vec![Some(x)]);
        }
        let flat_name = self.fresh(&format!("{}_flat", ctx.name));
        let flat = self.add(
            &format!("{}_flatten", ctx.name),
            Op::Flatten { axis: ax },
            vec![Some(x)],
            &flat_name,
        )?;
        let sm_name = self.fresh(&format!("{}_rows", ctx.name));
        let sm = self.add(
            &ctx.name,
            Op::Softmax { axis: -1 },
            vec![Some(flat)],
            &sm_name,
        )?;
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let target = self.constant(&format!("{}_shape", ctx.name), Tensor::i64_vec(&dims))?;
        let out = match ctx.proto.output[0].as_str() {
            "" => self.fresh(&format!("{}_out", ctx.name)),
            s => s.to_string(),
        };
        let op = Op::Reshape {
            allowzero: shape.contains(&0),
        };
        self.add(
            &format!("{}_unflatten", ctx.name),
            op,
            vec![Some(sm), Some(target)],
            &out,
        )?;
        Ok(())
    }

    fn rank4(
        &self,
        ctx: &NodeCtx,
        v: Option<ValueId>,
        what: &str,
    ) -> Result<Vec<usize>, ModelError> {
        let s = v.map(|v| self.b.shape(v).to_vec()).unwrap_or_default();
        if s.len() != 4 {
            let d = s.len().saturating_sub(2);
            return Err(ctx.unsupported(format!(
                "only 2-D {what} (rank-4 NCHW) is supported; this is a {d}-D {what} (shape {s:?})"
            )));
        }
        Ok(s)
    }

    fn conv_attrs(
        &self,
        ctx: &NodeCtx,
        inputs: &[Option<ValueId>],
    ) -> Result<ConvAttrs, ModelError> {
        let w = self.rank4(ctx, inputs[1], "convolution")?;
        let x = self.rank4(ctx, inputs[0], "convolution")?;
        let kernel = match ctx.usizes("kernel_shape", 2, 1, SPATIAL_LIMIT)? {
            Some(k) => [k[0], k[1]],
            None => [w[2], w[3]],
        };
        if kernel.contains(&0) || kernel.iter().any(|&k| k as i64 > SPATIAL_LIMIT) {
            return Err(ctx.err(format!("invalid kernel {kernel:?}")));
        }
        let (stride, pads, dilation) = spatial(ctx, [x[2], x[3]], kernel)?;
        let groups = ctx.int_or("group", 1)?;
        if !(1..=SPATIAL_LIMIT).contains(&groups) {
            return Err(ctx.err(format!("invalid group {groups}")));
        }
        Ok(ConvAttrs {
            kernel,
            stride,
            pads,
            dilation,
            groups: groups as usize,
        })
    }

    fn pool_attrs(&self, ctx: &NodeCtx, x: Option<ValueId>) -> Result<PoolAttrs, ModelError> {
        let x = self.rank4(ctx, x, "pooling")?;
        let k = ctx
            .usizes("kernel_shape", 2, 1, SPATIAL_LIMIT)?
            .ok_or_else(|| ctx.err("missing attribute 'kernel_shape'"))?;
        let kernel = [k[0], k[1]];
        let (stride, pads, dilation) = spatial(ctx, [x[2], x[3]], kernel)?;
        let kind = if ctx.op == "MaxPool" {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        if ctx.int_or("storage_order", 0)? != 0 {
            tracing::debug!(node = %ctx.name, "storage_order only affects Indices; ignored");
        }
        Ok(PoolAttrs {
            kind,
            kernel,
            stride,
            pads,
            dilation,
            ceil_mode: ctx.flag("ceil_mode", false)?,
            count_include_pad: ctx.flag("count_include_pad", false)?,
        })
    }
}

type Spatial = ([usize; 2], [usize; 4], [usize; 2]);

/// Strides, explicit pads ([top, left, bottom, right]) and dilations of a
/// 2-D conv or pool, resolving `auto_pad`.
fn spatial(ctx: &NodeCtx, input: [usize; 2], kernel: [usize; 2]) -> Result<Spatial, ModelError> {
    let s = ctx
        .usizes("strides", 2, 1, SPATIAL_LIMIT)?
        .unwrap_or(vec![1, 1]);
    let d = ctx
        .usizes("dilations", 2, 1, SPATIAL_LIMIT)?
        .unwrap_or(vec![1, 1]);
    let stride = [s[0], s[1]];
    let dilation = [d[0], d[1]];
    let auto = ctx.string("auto_pad")?.unwrap_or_default();
    let pads = match auto.as_str() {
        "" | "NOTSET" => {
            let p = ctx
                .usizes("pads", 4, 0, SPATIAL_LIMIT)?
                .unwrap_or(vec![0; 4]);
            [p[0], p[1], p[2], p[3]]
        }
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = [0; 4];
            for i in 0..2 {
                let out = input[i].div_ceil(stride[i]);
                let need = (out.saturating_sub(1)) * stride[i] + (kernel[i] - 1) * dilation[i] + 1;
                let total = need.saturating_sub(input[i]);
                let small = total / 2;
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[i] = begin;
                p[i + 2] = end;
            }
            p
        }
        other => return Err(ctx.err(format!("invalid auto_pad '{other}'"))),
    };
    Ok((stride, pads, dilation))
}

/// Allowed input counts (min, max) of each supported op at `opset`.
fn arity(op: &str, opset: i64) -> Option<(usize, usize)> {
    Some(match op {
        "Conv" | "Gemm" => (2, 3),
        "MatMul" | "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater"
        | "Gather" | "Expand" | "Reshape" => (2, 2),
        "GreaterOrEqual" | "LessOrEqual" if opset >= 12 => (2, 2),
        "And" | "Or" | "Xor" => (2, 2),
        "GatherElements" if opset >= 11 => (2, 2),
        "Relu" | "Sigmoid" | "Tanh" | "Erf" | "Sqrt" | "Exp" | "Neg" | "Not" | "MaxPool"
        | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" | "Flatten" | "Transpose"
        | "Shape" | "ConstantOfShape" | "Cast" | "Softmax" | "Identity" => (1, 1),
        "Clip" if opset < 11 => (1, 1),
        "Clip" => (1, 3),
        "BatchNormalization" => (5, 5),
        "Concat" => (1, usize::MAX),
        "Squeeze" if opset < 13 => (1, 1),
        "Squeeze" => (1, 2),
        "Unsqueeze" if opset < 13 => (1, 1),
        "Unsqueeze" => (2, 2),
        "Slice" if opset < 10 => (1, 1),
        "Slice" => (3, 5),
        "Constant" => (0, 0),
        "Range" | "Where" => (3, 3),
        "LayerNormalization" => (2, 3),
        "Sum" | "Mean" | "Max" | "Min" => (1, usize::MAX),
        "Upsample" if opset < 9 => (1, 1),
        "Upsample" => (2, 2),
        "Resize" if opset < 11 => (2, 2),
        "Resize" => (1, 4),
        "InstanceNormalization" | "GroupNormalization" => (3, 3),
        "ConvTranspose" => (2, 3),
        "Einsum" => (1, usize::MAX),
        "ArgMax" | "ArgMin" => (1, 1),
        "Split" if opset < 13 => (1, 1),
        "Split" => (1, 2),
        "Pad" if opset < 11 => (1, 1),
        "Pad" if opset < 18 => (2, 3),
        "Pad" => (2, 4),
        "Dropout" if opset < 12 => (1, 1),
        "Dropout" => (1, 3),
        _ => return elementwise::arity(op, opset),
    })
}
