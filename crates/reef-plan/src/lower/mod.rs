//! Lowering: turns a shaped [`Graph`] into a [`Plan`]. On the way it folds
//! BatchNorm into the preceding convolution, fuses bias, residual add and
//! activation into convolution and matrix-product epilogues, turns shape-only
//! ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) into buffer
//! aliases, packs constants into the weight blob, and places activations in
//! one arena (see [`crate::memory`]).
//!
//! This module holds the lowerer, its buffers and the pass over the graph;
//! `fused` lowers the fused patterns and `nodes` every other node.

mod fused;
mod nodes;

use crate::error::{PlanError, Result};
use crate::graph_use::GraphUse;
use crate::kernel::*;
use crate::memory::{place, Lifetime};
use crate::plan::{align_up, Buffer, BufferId, IoBinding, Loc, Plan};
use reef_model::op::{ConvAttrs, PoolAttrs};
use reef_model::shape::{broadcast, norm_axis, slice_params};
use reef_model::tensor::{numel, strides};
use reef_model::{Act, DType, Graph, Node, NodeId, Op, Tensor, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

fn lower_err(node: &Node, reason: impl Into<String>) -> PlanError {
    PlanError::Lower {
        node: node.name.clone(),
        op: node.op.name().to_string(),
        reason: reason.into(),
    }
}

/// Strides of an operand of shape `s` broadcast to `out` (left-padded, 0 on
/// broadcast dims).
pub fn bcast_strides(s: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides(s);
    let mut r = vec![0; out.len()];
    for i in 0..s.len() {
        let o = out.len() - s.len() + i;
        r[o] = if s[i] == 1 && out[o] != 1 { 0 } else { st[i] };
    }
    r
}

/// Element strides of the batch dims of a matrix operand of shape `s`
/// (`[.., rows, cols]`) broadcast to `batch` (0 on broadcast dims).
fn batch_strides(s: &[usize], batch: &[usize]) -> Vec<usize> {
    batch_strides_of(s, &strides(s), batch)
}

/// As [`batch_strides`] for an operand laid out with element strides `st`.
fn batch_strides_of(s: &[usize], st: &[usize], batch: &[usize]) -> Vec<usize> {
    let r = s.len() - 2;
    (0..batch.len())
        .map(|d| {
            let src = d as isize - (batch.len() as isize - r as isize);
            if src < 0 || s[src as usize] == 1 {
                0
            } else {
                st[src as usize]
            }
        })
        .collect()
}

/// Flat source offsets of GatherElements with constant `indices` (shape
/// `is`) into row-major data of shape `xs` along `axis`: gathering the
/// offsets `0..numel(xs)` themselves yields them.
fn flat_sources(
    xs: &[usize],
    is: &[usize],
    indices: &[i64],
    axis: usize,
) -> std::result::Result<Vec<i64>, String> {
    let offsets: Vec<i64> = (0..numel(xs) as i64).collect();
    reef_model::eval::gather_elements(xs, &offsets, is, indices, axis)
}

/// What an epilogue-fusable head (Conv, Gemm, MatMul) absorbs.
#[derive(Debug, Default, Clone)]
struct Fusion {
    /// BatchNorm folded into a convolution.
    bn: Option<NodeId>,
    /// Constant bias from a following Add.
    bias_add: Option<(NodeId, ValueId)>,
    /// Residual operand from a following Add.
    residual: Option<(NodeId, ValueId)>,
    /// Activation: its node (the last of its nodes for a decomposed GELU).
    act: Option<(NodeId, Act)>,
    /// The other nodes of a decomposed activation (GELU written as
    /// Div, Erf, Add, Mul, Mul), absorbed with it.
    act_parts: Vec<NodeId>,
}

struct Lowerer<'g> {
    g: &'g Graph,
    /// Consumers, producers and outputs of every value.
    uses: GraphUse<'g>,
    plan: Plan,
    value_buf: HashMap<ValueId, BufferId>,
    weight_cache: HashMap<ValueId, BufferId>,
    /// Transposes read in place by the matmuls that consume them: the
    /// transposed value -> (its input, the element strides of the transposed
    /// shape in the input's buffer). No copy kernel is emitted for them.
    views: HashMap<ValueId, (ValueId, Vec<usize>)>,
    /// Unfused BatchNorms followed by an activation (DenseNet's norm, relu):
    /// the BatchNorm's output -> (the activation, the activation node's
    /// output and name). One channel-affine kernel computes both.
    bn_act: HashMap<ValueId, (Act, ValueId, String)>,
    /// Softmaxes that absorbed a scale and a mask (by softmax output).
    softmax_pre: HashMap<ValueId, crate::softmax_fusion::FusedSoftmax>,
    /// Attentions run as one fused kernel, by the node where each runs.
    attn: HashMap<NodeId, crate::attention_fusion::Group>,
    /// Sibling matmuls run as one batched launch, by the node where it runs.
    qkv: HashMap<NodeId, crate::qkv_fusion::Group>,
    /// Concatenations done in place.
    concat: crate::concat_inplace::Plan,
    /// The shared buffer of each in-place concatenation family, once made.
    concat_roots: Vec<Option<BufferId>>,
    /// Buffers that are slices of another: buffer -> (root, byte offset).
    sub_of: HashMap<BufferId, (BufferId, usize)>,
}

/// Whether attention runs as one fused kernel (`REEF_FUSE_ATTENTION=0`
/// lowers it as two matmuls and a softmax, as before the fusion).
fn fuse_attention() -> bool {
    std::env::var("REEF_FUSE_ATTENTION").map_or(true, |v| v.trim() != "0")
}

/// Compiles a shaped graph into a plan. The batch size recorded is dim 0 of
/// the first input (1 when there is none).
pub fn compile(g: &Graph) -> Result<Plan> {
    let uses = GraphUse::new(g);
    let concat = crate::concat_inplace::plan(&uses);
    let batch = g
        .inputs
        .first()
        .and_then(|&i| g.values[i].shape.first().copied())
        .unwrap_or(1);
    let mut l = Lowerer {
        g,
        uses,
        plan: Plan {
            name: g.name.clone(),
            batch,
            ..Default::default()
        },
        value_buf: HashMap::new(),
        weight_cache: HashMap::new(),
        views: HashMap::new(),
        bn_act: HashMap::new(),
        softmax_pre: HashMap::new(),
        attn: HashMap::new(),
        qkv: HashMap::new(),
        concat_roots: vec![None; concat.families.len()],
        concat,
        sub_of: HashMap::new(),
    };
    l.run()?;
    Ok(l.plan)
}

impl<'g> Lowerer<'g> {
    fn shape(&self, v: ValueId) -> &'g [usize] {
        &self.g.values[v].shape
    }

    fn single_consumer(&self, v: ValueId, absorbed: &[bool]) -> Option<&'g Node> {
        if self.uses.is_output[v]
            || self.uses.consumers[v].len() != 1
            || absorbed[self.uses.consumers[v][0]]
        {
            return None;
        }
        let n = &self.g.nodes[self.uses.consumers[v][0]];
        // The value must feed the node exactly once.
        (n.inputs.iter().flatten().filter(|&&i| i == v).count() == 1).then_some(n)
    }

    fn new_buffer(&mut self, dtype: DType, len: usize, loc: Loc, name: &str) -> BufferId {
        self.plan.buffers.push(Buffer {
            dtype,
            len,
            loc,
            name: name.to_string(),
        });
        self.plan.buffers.len() - 1
    }

    fn add_weight(&mut self, t: &Tensor, name: &str) -> BufferId {
        let weights = Arc::make_mut(&mut self.plan.weights);
        let off = align_up(weights.len());
        weights.resize(off, 0);
        weights.extend_from_slice(&t.bytes());
        self.new_buffer(t.dtype(), t.len(), Loc::Weight(off), name)
    }

    fn add_f32_weight(&mut self, v: Vec<f32>, name: &str) -> BufferId {
        let n = v.len();
        let t = Tensor::f32(vec![n], v).expect("length matches");
        self.add_weight(&t, name)
    }

    /// The buffer holding value `v` (a constant becomes a weight buffer).
    fn buf(&mut self, node: &Node, v: ValueId) -> Result<BufferId> {
        if let Some(&b) = self.value_buf.get(&v) {
            return Ok(b);
        }
        if let Some(t) = self.g.constant(v) {
            if let Some(&b) = self.weight_cache.get(&v) {
                return Ok(b);
            }
            let b = self.add_weight(t, &self.g.values[v].name.clone());
            self.weight_cache.insert(v, b);
            return Ok(b);
        }
        Err(lower_err(
            node,
            format!("value '{}' has no producer", self.g.values[v].name),
        ))
    }

    fn out_buf(&mut self, v: ValueId) -> BufferId {
        if let Some(&(f, off)) = self.concat.member.get(&v) {
            let b = self.slice_buffer(f, v, off, numel(self.shape(v)));
            self.value_buf.insert(v, b);
            return b;
        }
        let info = &self.g.values[v];
        let b = self.new_buffer(
            info.dtype,
            numel(&info.shape),
            Loc::Arena(0),
            &info.name.clone(),
        );
        self.value_buf.insert(v, b);
        b
    }

    /// A buffer for value `v` that is `len` elements at element offset `off`
    /// of family `f`'s shared buffer (made on first use).
    fn slice_buffer(&mut self, f: usize, v: ValueId, off: usize, len: usize) -> BufferId {
        let dtype = self.g.values[v].dtype;
        let root = match self.concat_roots[f] {
            Some(r) => r,
            None => {
                let name = format!("concat.{}", self.g.values[v].name);
                let r = self.new_buffer(dtype, self.concat.families[f].len, Loc::Arena(0), &name);
                self.concat_roots[f] = Some(r);
                r
            }
        };
        let name = self.g.values[v].name.clone();
        let b = self.new_buffer(dtype, len, Loc::Arena(0), &name);
        self.sub_of.insert(b, (root, off * dtype.size()));
        b
    }

    /// Whether the inputs of `node`, a concatenation of family `f`, already
    /// lie side by side from the start of the family's buffer, so the
    /// concatenation is done.
    fn concat_in_place(&self, node: &Node, f: usize) -> bool {
        let Some(root) = self.concat_roots[f] else {
            return false;
        };
        let mut at = 0;
        node.inputs.iter().all(|v| {
            let Some(v) = v else { return false };
            let Some(b) = self.value_buf.get(v) else {
                return false;
            };
            let here = self.sub_of.get(b) == Some(&(root, at));
            at += numel(self.shape(*v)) * self.g.values[*v].dtype.size();
            here
        })
    }

    fn emit(&mut self, name: &str, op: KernelOp, inputs: Vec<BufferId>, output: BufferId) {
        self.plan.kernels.push(Kernel {
            name: name.to_string(),
            op,
            inputs,
            output,
        });
    }

    fn act_of(&self, n: &Node) -> Option<Act> {
        match &n.op {
            Op::Relu => Some(Act::Relu),
            Op::Sigmoid => Some(Act::Sigmoid),
            Op::Tanh => Some(Act::Tanh),
            Op::Act(a) => Some(*a),
            Op::Clip { min, max } => {
                let get = |i: usize, d: Option<f32>, inf: f32| -> Option<f32> {
                    match n.input(i) {
                        None => Some(d.unwrap_or(inf)),
                        Some(v) => self
                            .g
                            .constant(v)
                            .and_then(|t| t.to_f64_vec().first().map(|&x| x as f32)),
                    }
                };
                Some(Act::Clip(
                    get(1, *min, f32::NEG_INFINITY)?,
                    get(2, *max, f32::INFINITY)?,
                ))
            }
            _ => None,
        }
    }

    /// The buffer value and element strides a matmul operand is read with:
    /// a transpose's input with permuted strides when the transpose is a
    /// view ([`Lowerer::plan_views`]), else the value itself, row-major.
    fn operand_view(&self, v: ValueId) -> (ValueId, Vec<usize>) {
        match self.views.get(&v) {
            Some((src, st)) => (*src, st.clone()),
            None => (v, strides(self.shape(v))),
        }
    }

    /// Marks the Transposes that only matmuls read (as either operand, with
    /// rank >= 2 on both sides) as views: the matmuls read the transpose's
    /// input with permuted strides, and no copy kernel runs. BERT's query,
    /// key and value head splits are such transposes.
    fn plan_views(&mut self, absorbed: &mut [bool]) {
        let g = self.g;
        for (i, n) in g.nodes.iter().enumerate() {
            let Op::Transpose { perm } = &n.op else {
                continue;
            };
            let (Some(x), Some(&out)) = (n.input(0), n.outputs.first()) else {
                continue;
            };
            if self.uses.is_output[out]
                || self.uses.consumers[out].is_empty()
                || g.constant(x).is_some()
            {
                continue;
            }
            let only_matmuls = self.uses.consumers[out].iter().all(|&c| {
                let m = &g.nodes[c];
                m.op == Op::MatMul
                    && m.inputs.len() == 2
                    && m.inputs
                        .iter()
                        .all(|v| v.is_some_and(|v| self.shape(v).len() >= 2))
            });
            let xs = self.shape(x);
            let p: Vec<usize> = perm
                .clone()
                .unwrap_or_else(|| (0..xs.len()).rev().collect());
            if !only_matmuls || p.len() != xs.len() || xs.len() < 2 {
                continue;
            }
            // (`x` itself is never a view: this transpose, not a matmul, reads it.)
            let st = strides(xs);
            let vst: Vec<usize> = p.iter().map(|&d| st[d]).collect();
            self.views.insert(out, (x, vst));
            absorbed[i] = true;
        }
    }

    /// The scalar value of a constant operand, if it is one.
    fn scalar(&self, v: Option<ValueId>) -> Option<f64> {
        let t = self.g.constant(v?)?;
        let vals = t.to_f64_vec();
        (vals.len() == 1).then(|| vals[0])
    }

    /// The operand of binary node `n` other than `v`, when `v` feeds it once.
    fn other_operand(n: &Node, v: ValueId) -> Option<Option<ValueId>> {
        match (n.input(0), n.input(1)) {
            (Some(a), b) if a == v && b != Some(v) => Some(b),
            (a, Some(b)) if b == v && a != Some(v) => Some(a),
            _ => None,
        }
    }

    fn run(&mut self) -> Result<()> {
        let g = self.g;
        // Graph inputs.
        for &i in &g.inputs {
            if g.constant(i).is_some() {
                continue;
            }
            let b = self.out_buf(i);
            let info = &g.values[i];
            self.plan.inputs.push(IoBinding {
                name: info.name.clone(),
                dtype: info.dtype,
                shape: info.shape.clone(),
                buffer: b,
            });
        }
        // Fusion planning.
        let mut absorbed = vec![false; g.nodes.len()];
        self.plan_views(&mut absorbed);
        self.qkv = crate::qkv_fusion::plan(&self.uses, &mut absorbed);
        if fuse_attention() {
            self.attn = crate::attention_fusion::plan(&self.uses, &mut absorbed);
        }
        let mut emit_at: HashMap<NodeId, (NodeId, Fusion, ValueId)> = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            if absorbed[i] || !matches!(n.op, Op::Conv(_) | Op::Gemm { .. } | Op::MatMul) {
                continue;
            }
            if n.op == Op::MatMul
                && (self.shape(n.input(0).unwrap_or(0)).len() < 2
                    || self.shape(n.input(1).unwrap_or(0)).len() < 2)
            {
                continue;
            }
            let (f, out) = self.plan_fusion(n, &absorbed);
            let members: Vec<NodeId> = [
                f.bn,
                f.bias_add.map(|x| x.0),
                f.residual.map(|x| x.0),
                f.act.map(|x| x.0),
            ]
            .into_iter()
            .flatten()
            .chain(f.act_parts.iter().copied())
            .collect();
            let last = members.iter().copied().max().unwrap_or(i).max(i);
            absorbed[i] = true;
            for &m in &members {
                absorbed[m] = true;
            }
            emit_at.insert(last, (i, f, out));
        }
        self.softmax_pre = crate::softmax_fusion::plan(&self.uses, &mut absorbed);
        // Activations after BatchNorms that no convolution absorbed.
        for (i, n) in g.nodes.iter().enumerate() {
            if absorbed[i] || !matches!(n.op, Op::BatchNorm { .. }) || n.outputs.len() != 1 {
                continue;
            }
            let out = n.outputs[0];
            if let Some(a) = self.single_consumer(out, &absorbed) {
                if let (Some(act), Some(&aout)) = (self.act_of(a), a.outputs.first()) {
                    if a.input(0) == Some(out) {
                        let ai = self.uses.consumers[out][0];
                        absorbed[ai] = true;
                        self.bn_act.insert(out, (act, aout, a.name.clone()));
                    }
                }
            }
        }
        for (i, n) in g.nodes.iter().enumerate() {
            if let Some(group) = self.qkv.remove(&i) {
                self.lower_siblings(&group)?;
            }
            if let Some(group) = self.attn.remove(&i) {
                self.lower_attention(&g.nodes[i], &group)?;
            }
            if let Some((head, f, out)) = emit_at.remove(&i) {
                self.lower_fused(&g.nodes[head], &f, out)?;
            } else if !absorbed[i] {
                self.lower_node(n)?;
            }
        }
        // Graph outputs: must be distinct arena buffers written by a kernel.
        let input_bufs: Vec<BufferId> = self.plan.inputs.iter().map(|b| b.buffer).collect();
        let mut used: Vec<BufferId> = vec![];
        for &o in &g.outputs {
            let info = g.values[o].clone();
            let node = Node {
                name: format!("output:{}", info.name),
                op: Op::Identity,
                inputs: vec![Some(o)],
                outputs: vec![],
            };
            let mut b = self.buf(&node, o)?;
            let is_weight = matches!(self.plan.buffers[b].loc, Loc::Weight(_));
            if is_weight || input_bufs.contains(&b) || used.contains(&b) {
                let src = b;
                b = self.new_buffer(info.dtype, numel(&info.shape), Loc::Arena(0), &info.name);
                let op = KernelOp::Copy {
                    shape: vec![numel(&info.shape)],
                    offset: 0,
                    strides: vec![1],
                    elem_size: info.dtype.size(),
                };
                self.emit(&node.name, op, vec![src], b);
            }
            used.push(b);
            self.plan.outputs.push(IoBinding {
                name: info.name.clone(),
                dtype: info.dtype,
                shape: info.shape.clone(),
                buffer: b,
            });
        }
        self.plan_memory();
        Ok(())
    }

    fn plan_memory(&mut self) {
        let n = self.plan.kernels.len() as i64;
        // Slices of a shared buffer live and are placed as their root.
        let sub_of = self.sub_of.clone();
        let root = |b: BufferId| sub_of.get(&b).map_or(b, |&(r, _)| r);
        let mut life: HashMap<BufferId, Lifetime> = HashMap::new();
        for io in &self.plan.inputs {
            life.insert(
                io.buffer,
                Lifetime {
                    first: -1,
                    last: -1,
                },
            );
        }
        for (k, kern) in self.plan.kernels.iter().enumerate() {
            let k = k as i64;
            let e = life
                .entry(root(kern.output))
                .or_insert(Lifetime { first: k, last: k });
            e.first = e.first.min(k);
            e.last = e.last.max(k);
            for &b in &kern.inputs {
                if let Some(e) = life.get_mut(&root(b)) {
                    e.last = e.last.max(k);
                }
            }
        }
        for io in &self.plan.outputs {
            if let Some(e) = life.get_mut(&root(io.buffer)) {
                e.last = n;
            }
        }
        let mut arena: Vec<(BufferId, Lifetime)> = life
            .into_iter()
            .filter(|(b, _)| matches!(self.plan.buffers[*b].loc, Loc::Arena(_)))
            .collect();
        arena.sort_by_key(|(b, _)| *b);
        self.plan.arena_bytes = place(&mut self.plan.buffers, &arena);
        for (&b, &(r, off)) in &sub_of {
            if let Loc::Arena(base) = self.plan.buffers[r].loc {
                self.plan.buffers[b].loc = Loc::Arena(base + off);
            }
        }
    }

    fn alias(&mut self, node: &Node, from: ValueId, to: ValueId) -> Result<()> {
        let b = self.buf(node, from)?;
        self.value_buf.insert(to, b);
        Ok(())
    }

    fn f32_in(&self, node: &Node, i: usize) -> Result<ValueId> {
        let v = node
            .input(i)
            .ok_or_else(|| lower_err(node, format!("missing input #{i}")))?;
        if self.g.values[v].dtype != DType::F32 {
            return Err(PlanError::Lower {
                node: node.name.clone(),
                op: node.op.name().into(),
                reason: format!(
                    "input '{}' is {}; this op computes in f32 only",
                    self.g.values[v].name, self.g.values[v].dtype
                ),
            });
        }
        Ok(v)
    }
}
