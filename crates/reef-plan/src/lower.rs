//! Lowering: turns a shaped [`Graph`] into a [`Plan`]. On the way it folds
//! BatchNorm into the preceding convolution, fuses bias, residual add and
//! activation into convolution and matrix-product epilogues, turns shape-only
//! ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) into buffer
//! aliases, packs constants into the weight blob, and places activations in
//! one arena (see [`crate::memory`]).

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
        let off = align_up(self.plan.weights.len());
        self.plan.weights.resize(off, 0);
        self.plan.weights.extend_from_slice(&t.bytes());
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

    /// Finds what a Conv / Gemm / MatMul head can absorb.
    /// Nodes already claimed by an earlier chain (`absorbed`) are not taken.
    fn plan_fusion(&self, head: &Node, absorbed: &[bool]) -> (Fusion, ValueId) {
        let mut f = Fusion::default();
        let mut out = head.outputs[0];
        let is_conv = matches!(head.op, Op::Conv(_));
        let idx = |n: &Node| {
            self.g
                .nodes
                .iter()
                .position(|m| std::ptr::eq(m, n))
                .unwrap()
        };
        if is_conv {
            if let Some(bn) = self.single_consumer(out, absorbed) {
                let consts = (1..5).all(|i| bn.input(i).and_then(|v| self.g.constant(v)).is_some());
                if matches!(bn.op, Op::BatchNorm { .. })
                    && bn.input(0) == Some(out)
                    && consts
                    && bn.outputs.len() == 1
                {
                    f.bn = Some(idx(bn));
                    out = bn.outputs[0];
                }
            }
        }
        let out_shape = self.shape(out).to_vec();
        // Up to two Adds: a constant bias (first) and a same-shaped residual.
        for _ in 0..2 {
            let Some((add, other)) = self.add_after(out, &out_shape, absorbed) else {
                break;
            };
            let os = self.shape(other);
            if self.g.constant(other).is_some() {
                if f.bias_add.is_some()
                    || f.residual.is_some()
                    || self.bias_strides(head, os, &out_shape).is_none()
                {
                    break;
                }
                f.bias_add = Some((idx(add), other));
            } else {
                if f.residual.is_some() || os != out_shape.as_slice() {
                    break;
                }
                f.residual = Some((idx(add), other));
            }
            out = add.outputs[0];
        }
        if let Some(a) = self.single_consumer(out, absorbed) {
            if a.input(0) == Some(out) {
                if let Some(act) = self.act_of(a) {
                    f.act = Some((idx(a), act));
                    out = a.outputs[0];
                }
            }
        } else if let Some((mut nodes, gout)) = self.gelu_after(out, absorbed) {
            let last = nodes.pop().expect("a GELU has five nodes");
            f.act = Some((last, Act::Gelu));
            f.act_parts = nodes;
            out = gout;
        }
        (f, out)
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

    /// One fused attention kernel for `a` (see [`crate::attention_fusion`]);
    /// `node` names errors.
    fn lower_attention(&mut self, node: &Node, a: &crate::attention_fusion::Group) -> Result<()> {
        let cs = self.shape(a.ctx).to_vec();
        let r = cs.len();
        let batch = cs[..r - 2].to_vec();
        let (bsz, heads) = match batch[..] {
            [] => (1, 1),
            [h] => (1, h),
            [b, h] => (b, h),
            _ => return Err(lower_err(node, "attention with more than two batch dims")),
        };
        // Strides over (b, h, row, col) from an operand's shape and layout.
        let four = |shape: &[usize], st: &[usize], transposed: bool| -> [usize; 4] {
            let bs = batch_strides_of(shape, st, &batch);
            let (sb, sh) = match bs[..] {
                [] => (0, 0),
                [h] => (0, h),
                [b, h, ..] => (b, h),
            };
            let n = shape.len();
            let (row, col) = (st[n - 2], st[n - 1]);
            if transposed {
                [sb, sh, col, row]
            } else {
                [sb, sh, row, col]
            }
        };
        let (qsrc, qst) = self.operand_view(a.q);
        let (ksrc, kst) = self.operand_view(a.k);
        let (vsrc, vst) = self.operand_view(a.v);
        let q_strides = four(self.shape(a.q), &qst, false);
        let k_strides = four(self.shape(a.k), &kst, true);
        let v_strides = four(self.shape(a.v), &vst, false);
        // The context element (.., i, e) in the written value's layout.
        let cst = match &a.out_perm {
            None => strides(&cs),
            Some(perm) => {
                let tst = strides(self.shape(a.out));
                let mut c = vec![0; r];
                for (k, &src) in perm.iter().enumerate() {
                    c[src] = tst[k];
                }
                c
            }
        };
        let out_strides = four(&cs, &cst, false);
        let spec = AttentionSpec {
            batch: bsz,
            heads,
            sq: cs[r - 2],
            sk: self.shape(a.k)[self.shape(a.k).len() - 1],
            d: self.shape(a.q)[self.shape(a.q).len() - 1],
            dv: cs[r - 1],
            q_strides,
            k_strides,
            v_strides,
            out_strides,
            pre: a.pre,
        };
        let mut inputs = vec![
            self.buf(node, qsrc)?,
            self.buf(node, ksrc)?,
            self.buf(node, vsrc)?,
        ];
        if let Some(m) = a.mask {
            inputs.push(self.buf(node, m)?);
        }
        let o = self.out_buf(a.out);
        self.emit(&a.name, KernelOp::Attention(spec), inputs, o);
        Ok(())
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

    /// Recognises exact GELU written out on `x`, as PyTorch exports it and
    /// the zoo builds it: `x · (1 + erf(x / √2)) · 0.5` (or `x · 0.5 · (1 +
    /// erf(x / √2))`, or `x · (1/√2)` for the division), every intermediate
    /// used once. Returns its nodes in graph order, the output last, and the
    /// output value. Multiplying by 0.5 is exact, so the fused form computes
    /// the same value.
    fn gelu_after(&self, x: ValueId, absorbed: &[bool]) -> Option<(Vec<NodeId>, ValueId)> {
        if self.uses.is_output[x] || self.uses.consumers[x].len() != 2 {
            return None;
        }
        let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= 1e-6 * want);
        let node = |id: NodeId| (!absorbed[id]).then(|| &self.g.nodes[id]);
        let binary = |n: &Node, op: &Op| n.op == *op && n.inputs.len() == 2 && n.outputs.len() == 1;
        let sqrt2 = std::f64::consts::SQRT_2;
        // The scaling path: x / √2 (or x · 1/√2), Erf, + 1.
        let (mut scale, mut other) = (None, None);
        for &c in &self.uses.consumers[x] {
            let n = node(c)?;
            let k = Self::other_operand(n, x)?;
            let is_scale =
                (binary(n, &Op::Div) && n.input(0) == Some(x) && close(self.scalar(k), sqrt2))
                    || (binary(n, &Op::Mul) && close(self.scalar(k), 1.0 / sqrt2));
            if is_scale && scale.is_none() {
                scale = Some(c);
            } else {
                other = Some(c);
            }
        }
        let (scale, other) = (scale?, other?);
        let erf_id = *self.uses.consumers[self.g.nodes[scale].outputs[0]].first()?;
        let erf = self.single_consumer(self.g.nodes[scale].outputs[0], absorbed)?;
        if erf.op != Op::Erf {
            return None;
        }
        let add_id = *self.uses.consumers[erf.outputs[0]].first()?;
        let add = self.single_consumer(erf.outputs[0], absorbed)?;
        if !binary(add, &Op::Add)
            || !close(self.scalar(Self::other_operand(add, erf.outputs[0])?), 1.0)
        {
            return None;
        }
        // The product path: x · (1 + erf) · 0.5 in either grouping.
        let on = node(other)?;
        if !binary(on, &Op::Mul) {
            return None;
        }
        let (first, last) = if Self::other_operand(on, x)? == Some(add.outputs[0]) {
            // m = x · a, then m · 0.5.
            let half_id = *self.uses.consumers[on.outputs[0]].first()?;
            let half = self.single_consumer(on.outputs[0], absorbed)?;
            let k = Self::other_operand(half, on.outputs[0])?;
            if !binary(half, &Op::Mul) || !close(self.scalar(k), 0.5) {
                return None;
            }
            (other, half_id)
        } else {
            // h = x · 0.5, then h · a.
            if !close(self.scalar(Self::other_operand(on, x)?), 0.5) {
                return None;
            }
            let m_id = *self.uses.consumers[on.outputs[0]].first()?;
            let m = self.single_consumer(on.outputs[0], absorbed)?;
            if !binary(m, &Op::Mul)
                || Self::other_operand(m, on.outputs[0])? != Some(add.outputs[0])
            {
                return None;
            }
            (other, m_id)
        };
        // The Add must feed only the final product.
        let add_out = add.outputs[0];
        if self.uses.is_output[add_out] || self.uses.consumers[add_out].len() != 1 {
            return None;
        }
        let consumer = self.uses.consumers[add_out][0];
        if consumer != first && consumer != last {
            return None;
        }
        let mut nodes = vec![scale, erf_id, add_id, first, last];
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() != 5 || *nodes.last()? != last {
            return None;
        }
        Some((nodes, self.g.nodes[last].outputs[0]))
    }

    /// The single consumer of `out` if it is a binary Add keeping `shape`,
    /// with the Add's other operand.
    fn add_after(
        &self,
        out: ValueId,
        shape: &[usize],
        absorbed: &[bool],
    ) -> Option<(&'g Node, ValueId)> {
        let add = self.single_consumer(out, absorbed)?;
        if !matches!(add.op, Op::Add)
            || add.inputs.len() != 2
            || self.shape(add.outputs[0]) != shape
        {
            return None;
        }
        let other = if add.input(0) == Some(out) {
            add.input(1)
        } else {
            add.input(0)
        };
        Some((add, other?))
    }

    /// For a bias-like constant of shape `bs` added to the head's output of
    /// shape `out`: conv -> per-output-channel; matmul -> (stride_m, stride_n).
    fn bias_strides(&self, head: &Node, bs: &[usize], out: &[usize]) -> Option<(usize, usize)> {
        if broadcast(bs, out).as_deref() != Some(out) {
            return None;
        }
        let full = bcast_strides(bs, out);
        let r = out.len();
        match head.op {
            Op::Conv(_) => {
                // Only channel may vary.
                let ok = (0..r).all(|d| d == 1 || full[d] == 0 || out[d] == 1);
                (ok && numel(bs) == out[1]).then_some((0, 1))
            }
            _ => {
                if r < 2 {
                    return (r == 1).then(|| (0, full[0]));
                }
                let batch_free = (0..r - 2).all(|d| full[d] == 0 || out[d] == 1);
                batch_free.then(|| (full[r - 2], full[r - 1]))
            }
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

    fn lower_fused(&mut self, head: &Node, f: &Fusion, out: ValueId) -> Result<()> {
        let g = self.g;
        let mut name = head.name.clone();
        for m in [
            f.bn,
            f.bias_add.map(|x| x.0),
            f.residual.map(|x| x.0),
            f.act.map(|x| x.0),
        ]
        .into_iter()
        .flatten()
        {
            name.push('+');
            name.push_str(&g.nodes[m].name);
        }
        let act = f.act.map(|a| a.1).unwrap_or(Act::None);
        let out_shape = self.shape(out).to_vec();
        match &head.op {
            Op::Conv(a) => {
                let x = head
                    .input(0)
                    .ok_or_else(|| lower_err(head, "missing input"))?;
                let wv = head
                    .input(1)
                    .ok_or_else(|| lower_err(head, "missing weight"))?;
                let xs = self.shape(x).to_vec();
                let ws = self.shape(wv).to_vec();
                let k = ws[0];
                let mut bias: Option<Vec<f32>> = match head.input(2) {
                    Some(b) => Some(
                        g.constant(b)
                            .and_then(|t| t.as_f32())
                            .map(|s| s.to_vec())
                            .ok_or_else(|| lower_err(head, "bias must be a constant f32 tensor"))?,
                    ),
                    None => None,
                };
                let w_buf;
                if let Some(bn) = f.bn {
                    let bn = &g.nodes[bn];
                    let eps = match bn.op {
                        Op::BatchNorm { epsilon } => epsilon as f64,
                        _ => unreachable!(),
                    };
                    let p = |i: usize| g.constant(bn.input(i).unwrap()).unwrap().to_f64_vec();
                    let (gamma, beta, mean, var) = (p(1), p(2), p(3), p(4));
                    let w = g.constant(wv).and_then(|t| t.as_f32()).ok_or_else(|| {
                        lower_err(head, "BatchNorm folding needs a constant f32 weight")
                    })?;
                    let per = w.len() / k;
                    let mut nw = Vec::with_capacity(w.len());
                    let mut nb = Vec::with_capacity(k);
                    let b0 = bias.clone().unwrap_or_else(|| vec![0.0; k]);
                    for o in 0..k {
                        let s = gamma[o] / (var[o] + eps).sqrt();
                        nw.extend(
                            w[o * per..(o + 1) * per]
                                .iter()
                                .map(|&v| (v as f64 * s) as f32),
                        );
                        nb.push(((b0[o] as f64 - mean[o]) * s + beta[o]) as f32);
                    }
                    w_buf = self.add_f32_weight(nw, &format!("{}.folded_weight", head.name));
                    bias = Some(nb);
                } else {
                    w_buf = self.buf(head, wv)?;
                }
                if let Some((_, bv)) = f.bias_add {
                    let add = g.constant(bv).unwrap().to_f64_vec();
                    let b = bias.get_or_insert_with(|| vec![0.0; k]);
                    for (o, bo) in b.iter_mut().enumerate() {
                        *bo = (*bo as f64 + add[o]) as f32;
                    }
                }
                let x_buf = self.buf(head, x)?;
                let mut inputs = vec![x_buf, w_buf];
                let has_bias = bias.is_some();
                if let Some(b) = bias {
                    inputs.push(self.add_f32_weight(b, &format!("{}.bias", head.name)));
                }
                if let Some((_, r)) = f.residual {
                    inputs.push(self.buf(head, r)?);
                }
                let ConvAttrs {
                    stride,
                    pads,
                    dilation,
                    groups,
                    ..
                } = a.clone();
                let spec = ConvSpec {
                    n: xs[0],
                    c: xs[1],
                    h: xs[2],
                    w: xs[3],
                    k,
                    r: ws[2],
                    s: ws[3],
                    oh: out_shape[2],
                    ow: out_shape[3],
                    stride,
                    pad: [pads[0], pads[1]],
                    dilation,
                    groups,
                    has_bias,
                    has_residual: f.residual.is_some(),
                    act,
                };
                let o = self.out_buf(out);
                self.emit(&name, KernelOp::Conv(spec), inputs, o);
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                let (av, bv) = (head.input(0).unwrap(), head.input(1).unwrap());
                let (as_, bs) = (self.shape(av).to_vec(), self.shape(bv).to_vec());
                let (m, k) = if *trans_a {
                    (as_[1], as_[0])
                } else {
                    (as_[0], as_[1])
                };
                let n = if *trans_b { bs[0] } else { bs[1] };
                let (lda_m, lda_k) = if *trans_a { (1, m) } else { (k, 1) };
                let (ldb_k, ldb_n) = if *trans_b { (1, k) } else { (n, 1) };
                let mut inputs = vec![self.buf(head, av)?, self.buf(head, bv)?];
                let mut bias = None;
                if let Some(c) = head.input(2) {
                    let cs = self.shape(c).to_vec();
                    let st = bcast_strides(&cs, &[m, n]);
                    bias = Some((self.buf(head, c)?, st[0], st[1], *beta));
                }
                if let Some((_, bv)) = f.bias_add {
                    let (sm, sn) = self.bias_strides(head, self.shape(bv), &out_shape).unwrap();
                    if bias.is_some() {
                        // Two biases: materialise their sum as one [m, n] constant.
                        let c = head.input(2).unwrap();
                        let ct = g.constant(c).ok_or_else(|| {
                            lower_err(
                                head,
                                "C must be constant to merge with a following bias add",
                            )
                        })?;
                        let cv = ct.to_f64_vec();
                        let cst = bcast_strides(&ct.shape, &[m, n]);
                        let av = g.constant(bv).unwrap().to_f64_vec();
                        let mut sum = vec![0f32; m * n];
                        for i in 0..m {
                            for j in 0..n {
                                sum[i * n + j] = (*beta as f64 * cv[i * cst[0] + j * cst[1]]
                                    + av[i * sm + j * sn])
                                    as f32;
                            }
                        }
                        let sb = self.add_f32_weight(sum, &format!("{}.bias", head.name));
                        bias = Some((sb, n, 1, 1.0));
                    } else {
                        bias = Some((self.buf(head, bv)?, sm, sn, 1.0));
                    }
                }
                let (has_bias, bias_stride_m, bias_stride_n, beta) = match bias {
                    Some((b, sm, sn, be)) => {
                        inputs.push(b);
                        (true, sm, sn, be)
                    }
                    None => (false, 0, 0, 0.0),
                };
                if let Some((_, r)) = f.residual {
                    inputs.push(self.buf(head, r)?);
                }
                let spec = MatMulSpec {
                    batch: vec![],
                    a_batch_strides: vec![],
                    b_batch_strides: vec![],
                    m,
                    n,
                    k,
                    lda_m,
                    lda_k,
                    ldb_k,
                    ldb_n,
                    alpha: *alpha,
                    beta,
                    has_bias,
                    bias_stride_m,
                    bias_stride_n,
                    bias_stride_batch: 0,
                    has_residual: f.residual.is_some(),
                    act,
                };
                let o = self.out_buf(out);
                self.emit(&name, KernelOp::MatMul(spec), inputs, o);
            }
            Op::MatMul => {
                let (av, bv) = (head.input(0).unwrap(), head.input(1).unwrap());
                let (as_, bs) = (self.shape(av).to_vec(), self.shape(bv).to_vec());
                let (m, k) = (as_[as_.len() - 2], as_[as_.len() - 1]);
                let n = bs[bs.len() - 1];
                let batch = broadcast(&as_[..as_.len() - 2], &bs[..bs.len() - 2])
                    .ok_or_else(|| lower_err(head, "batch dims do not broadcast"))?;
                // Operands that are transposes are read in place.
                let (asrc, ast) = self.operand_view(av);
                let (bsrc, bst) = self.operand_view(bv);
                let a_batch_strides = batch_strides_of(&as_, &ast, &batch);
                let b_batch_strides = batch_strides_of(&bs, &bst, &batch);
                let (ra, rb) = (as_.len(), bs.len());
                let (lda_m, lda_k, ldb_k, ldb_n) =
                    (ast[ra - 2], ast[ra - 1], bst[rb - 2], bst[rb - 1]);
                let mut inputs = vec![self.buf(head, asrc)?, self.buf(head, bsrc)?];
                let (mut has_bias, mut sm, mut sn) = (false, 0, 0);
                if let Some((_, bv)) = f.bias_add {
                    let (a, b) = self.bias_strides(head, self.shape(bv), &out_shape).unwrap();
                    inputs.push(self.buf(head, bv)?);
                    has_bias = true;
                    sm = a;
                    sn = b;
                }
                if let Some((_, r)) = f.residual {
                    inputs.push(self.buf(head, r)?);
                }
                let spec = MatMulSpec {
                    batch,
                    a_batch_strides,
                    b_batch_strides,
                    m,
                    n,
                    k,
                    lda_m,
                    lda_k,
                    ldb_k,
                    ldb_n,
                    alpha: 1.0,
                    beta: 1.0,
                    has_bias,
                    bias_stride_m: sm,
                    bias_stride_n: sn,
                    bias_stride_batch: 0,
                    has_residual: f.residual.is_some(),
                    act,
                };
                let o = self.out_buf(out);
                self.emit(&name, KernelOp::MatMul(spec), inputs, o);
            }
            _ => unreachable!("only conv/gemm/matmul heads are fused"),
        }
        Ok(())
    }

    /// One batched matmul for a group of sibling matmuls (see
    /// `qkv_fusion`): stacked weights `[G, K, N]` (`[G, N, K]` when
    /// transposed), biases `[G, N]`, and each member's result in its slice
    /// of one `[G, M, N]` output.
    fn lower_siblings(&mut self, grp: &crate::qkv_fusion::Group) -> Result<()> {
        let g = self.g;
        let (k, n) = (grp.k, grp.n);
        let first = &g.nodes[grp.members[0].matmul];
        let m = numel(self.shape(grp.x)) / k.max(1);
        let mut w = Vec::with_capacity(grp.members.len() * k * n);
        let mut b = Vec::with_capacity(grp.members.len() * n);
        for mem in &grp.members {
            let t = |v: ValueId| g.constant(v).and_then(|t| t.as_f32()).map(|s| s.to_vec());
            w.extend(t(mem.weight).ok_or_else(|| lower_err(first, "weight must be f32"))?);
            b.extend(t(mem.bias).ok_or_else(|| lower_err(first, "bias must be f32"))?);
        }
        let names: Vec<&str> = grp
            .members
            .iter()
            .map(|mem| g.nodes[mem.matmul].name.as_str())
            .collect();
        let name = names.join("+");
        let wb = self.add_f32_weight(w, &format!("{name}.weight"));
        let bb = self.add_f32_weight(b, &format!("{name}.bias"));
        let xb = self.buf(first, grp.x)?;
        let count = grp.members.len();
        let root = self.new_buffer(DType::F32, count * m * n, Loc::Arena(0), &name);
        for (gi, mem) in grp.members.iter().enumerate() {
            let s = self.new_buffer(DType::F32, m * n, Loc::Arena(0), &g.values[mem.out].name);
            self.sub_of.insert(s, (root, gi * m * n * 4));
            self.value_buf.insert(mem.out, s);
        }
        let spec = MatMulSpec {
            batch: vec![count],
            a_batch_strides: vec![0],
            b_batch_strides: vec![k * n],
            m,
            n,
            k,
            lda_m: k,
            lda_k: 1,
            ldb_k: if grp.trans_b { 1 } else { n },
            ldb_n: if grp.trans_b { k } else { 1 },
            alpha: 1.0,
            beta: 1.0,
            has_bias: true,
            bias_stride_m: 0,
            bias_stride_n: 1,
            bias_stride_batch: n,
            has_residual: false,
            act: Act::None,
        };
        self.emit(&name, KernelOp::MatMul(spec), vec![xb, wb, bb], root);
        Ok(())
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

    fn lower_node(&mut self, node: &Node) -> Result<()> {
        let g = self.g;
        let out = match node.outputs.first() {
            Some(&o) => o,
            None => return Ok(()),
        };
        let oshape = self.shape(out).to_vec();
        let unary = |s: &mut Self, op: UnaryOp| -> Result<()> {
            let x = s.f32_in(node, 0)?;
            let xb = s.buf(node, x)?;
            let o = s.out_buf(out);
            s.emit(
                &node.name,
                KernelOp::Unary {
                    op,
                    n: numel(&oshape),
                },
                vec![xb],
                o,
            );
            Ok(())
        };
        match &node.op {
            Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Identity => {
                let x = node
                    .input(0)
                    .ok_or_else(|| lower_err(node, "missing input"))?;
                self.alias(node, x, out)?;
            }
            Op::Cast { to } => {
                let x = node
                    .input(0)
                    .ok_or_else(|| lower_err(node, "missing input"))?;
                let from = g.values[x].dtype;
                if from == *to {
                    self.alias(node, x, out)?;
                } else {
                    let xb = self.buf(node, x)?;
                    let o = self.out_buf(out);
                    self.emit(
                        &node.name,
                        KernelOp::Cast {
                            from,
                            to: *to,
                            n: numel(&oshape),
                        },
                        vec![xb],
                        o,
                    );
                }
            }
            Op::Conv(_) | Op::Gemm { .. } => unreachable!("fused heads are lowered by lower_fused"),
            Op::MatMul => self.lower_matvec(node, out)?,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Min | Op::Max | Op::PRelu => {
                let op = match node.op {
                    Op::Add => BinOp::Add,
                    Op::Sub => BinOp::Sub,
                    Op::Mul => BinOp::Mul,
                    Op::Div => BinOp::Div,
                    Op::Min => BinOp::Min,
                    Op::Max => BinOp::Max,
                    Op::PRelu => BinOp::PRelu,
                    _ => BinOp::Pow,
                };
                let a = self.f32_in(node, 0)?;
                let b = self.f32_in(node, 1)?;
                let (sa, sb) = (
                    bcast_strides(self.shape(a), &oshape),
                    bcast_strides(self.shape(b), &oshape),
                );
                let ins = vec![self.buf(node, a)?, self.buf(node, b)?];
                let o = self.out_buf(out);
                let k = KernelOp::Binary {
                    op,
                    shape: oshape.clone(),
                    a_strides: sa,
                    b_strides: sb,
                    act: Act::None,
                };
                self.emit(&node.name, k, ins, o);
            }
            Op::Equal
            | Op::Less
            | Op::Greater
            | Op::GreaterOrEqual
            | Op::LessOrEqual
            | Op::And
            | Op::Or
            | Op::Xor => {
                let (op, logical) = match node.op {
                    Op::Equal => (CmpOp::Equal, false),
                    Op::Less => (CmpOp::Less, false),
                    Op::Greater => (CmpOp::Greater, false),
                    Op::GreaterOrEqual => (CmpOp::GreaterOrEqual, false),
                    Op::LessOrEqual => (CmpOp::LessOrEqual, false),
                    Op::And => (CmpOp::And, true),
                    Op::Or => (CmpOp::Or, true),
                    _ => (CmpOp::Xor, true),
                };
                let (a, b) = (node.input(0).unwrap(), node.input(1).unwrap());
                let dtype = g.values[a].dtype;
                let allowed = if logical {
                    dtype == DType::Bool
                } else {
                    matches!(dtype, DType::F32 | DType::I64)
                };
                if !allowed || g.values[b].dtype != dtype {
                    let want = if logical {
                        "logical operators take bool operands"
                    } else {
                        "comparisons support f32 or i64 operands of one type"
                    };
                    return Err(lower_err(
                        node,
                        format!("{want}, got {} and {}", dtype, g.values[b].dtype),
                    ));
                }
                let (sa, sb) = (
                    bcast_strides(self.shape(a), &oshape),
                    bcast_strides(self.shape(b), &oshape),
                );
                let ins = vec![self.buf(node, a)?, self.buf(node, b)?];
                let o = self.out_buf(out);
                self.emit(
                    &node.name,
                    KernelOp::Compare {
                        op,
                        dtype,
                        shape: oshape.clone(),
                        a_strides: sa,
                        b_strides: sb,
                    },
                    ins,
                    o,
                );
            }
            Op::Not => {
                let x = node.input(0).unwrap();
                let xb = self.buf(node, x)?;
                let o = self.out_buf(out);
                self.emit(&node.name, KernelOp::Not { n: numel(&oshape) }, vec![xb], o);
            }
            Op::Where => {
                let c = node
                    .input(0)
                    .ok_or_else(|| lower_err(node, "missing condition"))?;
                if g.values[c].dtype != DType::Bool {
                    return Err(lower_err(node, "condition must be bool"));
                }
                let a = self.f32_in(node, 1)?;
                let b = self.f32_in(node, 2)?;
                let st = [c, a, b].map(|v| bcast_strides(self.shape(v), &oshape));
                let ins = vec![self.buf(node, c)?, self.buf(node, a)?, self.buf(node, b)?];
                let o = self.out_buf(out);
                let [c_strides, a_strides, b_strides] = st;
                self.emit(
                    &node.name,
                    KernelOp::Where {
                        shape: oshape.clone(),
                        c_strides,
                        a_strides,
                        b_strides,
                    },
                    ins,
                    o,
                );
            }
            Op::Relu | Op::Sigmoid | Op::Tanh | Op::Clip { .. } | Op::Act(_) => {
                let act = self
                    .act_of(node)
                    .ok_or_else(|| lower_err(node, "clip bounds must be constant"))?;
                unary(self, UnaryOp::Act(act))?;
            }
            Op::Erf => unary(self, UnaryOp::Erf)?,
            Op::Sqrt => unary(self, UnaryOp::Sqrt)?,
            Op::Exp => unary(self, UnaryOp::Exp)?,
            Op::Neg => unary(self, UnaryOp::Neg)?,
            Op::Unary(f) => unary(self, UnaryOp::Fn(*f))?,
            Op::BatchNorm { epsilon } => {
                let x = self.f32_in(node, 0)?;
                let xs = self.shape(x).to_vec();
                let p: Vec<Vec<f64>> = (1..5)
                    .map(|i| {
                        node.input(i)
                            .and_then(|v| g.constant(v))
                            .map(|t| t.to_f64_vec())
                            .ok_or_else(|| lower_err(node, "parameters must be constant"))
                    })
                    .collect::<Result<_>>()?;
                let c = xs[1];
                let scale: Vec<f32> = (0..c)
                    .map(|i| (p[0][i] / (p[3][i] + *epsilon as f64).sqrt()) as f32)
                    .collect();
                let shift: Vec<f32> = (0..c)
                    .map(|i| {
                        (p[1][i] - p[2][i] * p[0][i] / (p[3][i] + *epsilon as f64).sqrt()) as f32
                    })
                    .collect();
                let xb = self.buf(node, x)?;
                let sb = self.add_f32_weight(scale, &format!("{}.scale", node.name));
                let hb = self.add_f32_weight(shift, &format!("{}.shift", node.name));
                // A following activation runs in the same kernel.
                let (act, out, name) = match self.bn_act.get(&out) {
                    Some((act, aout, aname)) => (*act, *aout, format!("{}+{aname}", node.name)),
                    None => (Act::None, out, node.name.clone()),
                };
                let o = self.out_buf(out);
                let k = KernelOp::ChannelAffine {
                    outer: xs[0],
                    c,
                    inner: numel(&xs[2..]),
                    act,
                };
                self.emit(&name, k, vec![xb, sb, hb], o);
            }
            Op::Pool(p) => {
                let x = self.f32_in(node, 0)?;
                let xs = self.shape(x).to_vec();
                let PoolAttrs {
                    kind,
                    kernel,
                    stride,
                    pads,
                    dilation,
                    count_include_pad,
                    ..
                } = p.clone();
                let spec = PoolSpec {
                    kind,
                    n: xs[0],
                    c: xs[1],
                    h: xs[2],
                    w: xs[3],
                    oh: oshape[2],
                    ow: oshape[3],
                    kernel,
                    stride,
                    pad: [pads[0], pads[1]],
                    dilation,
                    count_include_pad,
                    padded_h: xs[2] + pads[0] + pads[2],
                    padded_w: xs[3] + pads[1] + pads[3],
                };
                let xb = self.buf(node, x)?;
                let o = self.out_buf(out);
                self.emit(&node.name, KernelOp::Pool(spec), vec![xb], o);
            }
            Op::GlobalAvgPool | Op::GlobalMaxPool => {
                let x = self.f32_in(node, 0)?;
                let xs = self.shape(x).to_vec();
                let kind = if node.op == Op::GlobalAvgPool {
                    ReduceKind::Mean
                } else {
                    ReduceKind::Max
                };
                let xb = self.buf(node, x)?;
                let o = self.out_buf(out);
                self.emit(
                    &node.name,
                    KernelOp::Reduce {
                        kind,
                        outer: xs[0] * xs[1],
                        len: numel(&xs[2..]),
                        inner: 1,
                    },
                    vec![xb],
                    o,
                );
            }
            Op::Reduce { .. } => self.lower_reduce(node, out)?,
            Op::ArgExtreme {
                max,
                axis,
                select_last_index,
                ..
            } => {
                let x = self.f32_in(node, 0)?;
                let xs = self.shape(x).to_vec();
                let ax = norm_axis(*axis, xs.len())
                    .ok_or_else(|| lower_err(node, "axis out of range"))?;
                let xb = self.buf(node, x)?;
                let o = self.out_buf(out);
                let k = KernelOp::ArgExtreme {
                    max: *max,
                    last: *select_last_index,
                    outer: numel(&xs[..ax]),
                    len: xs[ax],
                    inner: numel(&xs[ax + 1..]),
                };
                self.emit(&node.name, k, vec![xb], o);
            }
            Op::Resize(a) => {
                let x = self.f32_in(node, 0)?;
                let in_shape = self.shape(x).to_vec();
                if in_shape.len() > MAX_RANK {
                    return Err(lower_err(node, "rank above the kernels' limit"));
                }
                let xb = self.buf(node, x)?;
                let o = self.out_buf(out);
                let k = KernelOp::Resize {
                    shape: oshape.clone(),
                    in_shape,
                    scales: a.scales.clone(),
                    mode: a.mode,
                    coord: a.coord,
                };
                self.emit(&node.name, k, vec![xb], o);
            }
            Op::Concat { axis } => {
                let ax = norm_axis(*axis, oshape.len())
                    .ok_or_else(|| lower_err(node, "axis out of range"))?;
                if let Some(&(f, elems)) = self.concat.output.get(&out) {
                    if self.concat_in_place(node, f) {
                        // The inputs already lie side by side: the output is
                        // the buffer's first `elems` elements.
                        let b = self.slice_buffer(f, out, 0, elems);
                        self.value_buf.insert(out, b);
                        return Ok(());
                    }
                }
                let mut ins = vec![];
                let mut lens = vec![];
                for v in node.inputs.iter().flatten() {
                    if numel(self.shape(*v)) == 0 {
                        continue;
                    }
                    lens.push(self.shape(*v)[ax]);
                    ins.push(self.buf(node, *v)?);
                }
                let o = self.out_buf(out);
                let k = KernelOp::Concat {
                    outer: numel(&oshape[..ax]),
                    inner: numel(&oshape[ax + 1..]),
                    lens,
                    elem_size: g.values[out].dtype.size(),
                };
                self.emit(&node.name, k, ins, o);
            }
            Op::Transpose { perm } => {
                let x = node.input(0).unwrap();
                let xs = self.shape(x).to_vec();
                let p: Vec<usize> = perm
                    .clone()
                    .unwrap_or_else(|| (0..xs.len()).rev().collect());
                let st = strides(&xs);
                let s: Vec<i64> = p.iter().map(|&i| st[i] as i64).collect();
                self.copy(node, x, out, 0, s)?;
            }
            Op::Slice => {
                let x = node.input(0).unwrap();
                let xs = self.shape(x).to_vec();
                let c = |i: usize| {
                    node.input(i)
                        .and_then(|v| g.constant(v))
                        .map(|t| t.to_i64_vec())
                };
                let (starts, ends) = (
                    c(1).ok_or_else(|| lower_err(node, "starts must be constant"))?,
                    c(2).ok_or_else(|| lower_err(node, "ends must be constant"))?,
                );
                let p = slice_params(&xs, &starts, &ends, c(3).as_deref(), c(4).as_deref())
                    .map_err(|r| lower_err(node, r))?;
                let st: Vec<i64> = strides(&xs).iter().map(|&v| v as i64).collect();
                let mut s = st.clone();
                let mut off = 0;
                for (ax, start, step, _) in p {
                    off += start * st[ax];
                    s[ax] = st[ax] * step;
                }
                self.copy(node, x, out, off, s)?;
            }
            Op::Expand => {
                let x = node.input(0).unwrap();
                let s = bcast_strides(self.shape(x), &oshape)
                    .into_iter()
                    .map(|v| v as i64)
                    .collect();
                self.copy(node, x, out, 0, s)?;
            }
            Op::Gather { axis } => {
                let (x, idx) = (node.input(0).unwrap(), node.input(1).unwrap());
                let xs = self.shape(x).to_vec();
                let ax = norm_axis(*axis, xs.len()).unwrap();
                let ib = match g.constant(idx) {
                    Some(t) if t.dtype() != DType::I64 => {
                        let t64 = Tensor::i64(t.shape.clone(), t.to_i64_vec())?;
                        self.add_weight(&t64, &format!("{}.indices", node.name))
                    }
                    _ if g.values[idx].dtype != DType::I64 => {
                        return Err(lower_err(node, "run-time indices must be int64"))
                    }
                    _ => self.buf(node, idx)?,
                };
                let xb = self.buf(node, x)?;
                let o = self.out_buf(out);
                let k = KernelOp::Gather {
                    outer: numel(&xs[..ax]),
                    axis_len: xs[ax],
                    count: numel(self.shape(idx)),
                    inner: numel(&xs[ax + 1..]),
                    elem_size: g.values[x].dtype.size(),
                };
                self.emit(&node.name, k, vec![xb, ib], o);
            }
            Op::GatherElements { axis } => self.lower_gather_elements(node, *axis, out)?,
            Op::Softmax { axis } => {
                let fused = self.softmax_pre.get(&out).cloned();
                let x = match &fused {
                    Some(f) => f.x,
                    None => self.f32_in(node, 0)?,
                };
                let ax = norm_axis(*axis, oshape.len()).unwrap();
                let mut ins = vec![self.buf(node, x)?];
                if let Some(m) = fused.as_ref().and_then(|f| f.mask) {
                    ins.push(self.buf(node, m)?);
                }
                let o = self.out_buf(out);
                let k = KernelOp::Softmax {
                    outer: numel(&oshape[..ax]),
                    axis: oshape[ax],
                    inner: numel(&oshape[ax + 1..]),
                    pre: fused.map(|f| f.pre).unwrap_or_default(),
                };
                self.emit(&node.name, k, ins, o);
            }
            Op::LayerNorm { axis, epsilon } => {
                let x = self.f32_in(node, 0)?;
                let ax = norm_axis(*axis, oshape.len()).unwrap();
                let cols = numel(&oshape[ax..]);
                let param = |s: &mut Self, i: usize, default: f32| -> Result<BufferId> {
                    match node.input(i) {
                        Some(v) if numel(s.shape(v)) == cols => s.buf(node, v),
                        Some(v) => {
                            let t = g.constant(v).ok_or_else(|| {
                                lower_err(node, "broadcast scale/bias must be constant")
                            })?;
                            let val = t.to_f64_vec()[0] as f32;
                            Ok(s.add_f32_weight(vec![val; cols], &format!("{}.p{i}", node.name)))
                        }
                        None => Ok(
                            s.add_f32_weight(vec![default; cols], &format!("{}.p{i}", node.name))
                        ),
                    }
                };
                let gb = param(self, 1, 1.0)?;
                let bb = param(self, 2, 0.0)?;
                let xb = self.buf(node, x)?;
                let o = self.out_buf(out);
                self.emit(
                    &node.name,
                    KernelOp::LayerNorm {
                        rows: numel(&oshape[..ax]),
                        cols,
                        eps: *epsilon,
                    },
                    vec![xb, gb, bb],
                    o,
                );
                let used = |s: &Self, i: usize| {
                    node.outputs
                        .get(i)
                        .filter(|&&v| !s.uses.consumers[v].is_empty() || s.uses.is_output[v])
                        .copied()
                };
                let (mean, inv) = (used(self, 1), used(self, 2));
                if mean.is_some() || inv.is_some() {
                    let rows = numel(&oshape[..ax]);
                    self.lower_layer_norm_stats(node, xb, [rows, cols], *epsilon, mean, inv)?;
                }
            }
            Op::Pad { mode, pads, value } => {
                let x = self.f32_in(node, 0)?;
                let xs = self.shape(x).to_vec();
                let c = |i: usize| node.input(i).and_then(|v| g.constant(v));
                let p = match pads {
                    Some(p) => p.clone(),
                    None => c(1)
                        .ok_or_else(|| lower_err(node, "pads must be constant"))?
                        .to_i64_vec(),
                };
                let val = match c(2) {
                    Some(t) => t.to_f64_vec().first().copied().unwrap_or(0.0) as f32,
                    None => *value,
                };
                let axes: Vec<usize> = match c(3) {
                    Some(t) => t
                        .to_i64_vec()
                        .iter()
                        .map(|&a| norm_axis(a, xs.len()).unwrap_or(0))
                        .collect(),
                    None => (0..xs.len()).collect(),
                };
                let mut begin = vec![0i64; xs.len()];
                for (i, &ax) in axes.iter().enumerate() {
                    begin[ax] = p[i];
                }
                let xb = self.buf(node, x)?;
                let o = self.out_buf(out);
                self.emit(
                    &node.name,
                    KernelOp::Pad {
                        shape: oshape.clone(),
                        in_shape: xs,
                        pads_begin: begin,
                        mode: *mode,
                        value: val,
                    },
                    vec![xb],
                    o,
                );
            }
            Op::Constant(_) | Op::ConstantOfShape(_) | Op::Range | Op::Shape { .. } => {
                return Err(lower_err(
                    node,
                    "constant was not folded (too large or inputs unknown)",
                ));
            }
        }
        Ok(())
    }

    fn copy(
        &mut self,
        node: &Node,
        x: ValueId,
        out: ValueId,
        offset: i64,
        strides: Vec<i64>,
    ) -> Result<()> {
        let shape = self.shape(out).to_vec();
        let elem_size = self.g.values[x].dtype.size();
        let xb = self.buf(node, x)?;
        let o = self.out_buf(out);
        self.emit(
            &node.name,
            KernelOp::Copy {
                shape,
                offset,
                strides,
                elem_size,
            },
            vec![xb],
            o,
        );
        Ok(())
    }

    /// GatherElements. Constant indices become one flat [`KernelOp::Gather`]
    /// over the data with precomputed source offsets; run-time ones a
    /// [`KernelOp::GatherElements`] (int32 indices widened by a cast first).
    fn lower_gather_elements(&mut self, node: &Node, axis: i64, out: ValueId) -> Result<()> {
        let g = self.g;
        let x = node
            .input(0)
            .ok_or_else(|| lower_err(node, "missing input #0"))?;
        let idx = node
            .input(1)
            .ok_or_else(|| lower_err(node, "missing input #1"))?;
        let (xs, is) = (self.shape(x).to_vec(), self.shape(idx).to_vec());
        let ax = reef_model::shape::gather_elements_axis(&xs, &is, axis)
            .map_err(|r| lower_err(node, r))?;
        let elem_size = g.values[x].dtype.size();
        if !matches!(elem_size, 1 | 4 | 8) {
            return Err(lower_err(
                node,
                format!("elements of type {} are not supported", g.values[x].dtype),
            ));
        }
        let n = numel(&is);
        if let Some(t) = g.constant(idx) {
            let flat =
                flat_sources(&xs, &is, &t.to_i64_vec(), ax).map_err(|r| lower_err(node, r))?;
            let ib = self.add_weight(
                &Tensor::i64(vec![n], flat)?,
                &format!("{}.sources", node.name),
            );
            let xb = self.buf(node, x)?;
            let o = self.out_buf(out);
            let k = KernelOp::Gather {
                outer: 1,
                axis_len: numel(&xs),
                count: n,
                inner: 1,
                elem_size,
            };
            self.emit(&node.name, k, vec![xb, ib], o);
            return Ok(());
        }
        if xs.len() > MAX_RANK {
            return Err(lower_err(
                node,
                format!("rank {} is above the supported {MAX_RANK}", xs.len()),
            ));
        }
        let mut ib = self.buf(node, idx)?;
        match g.values[idx].dtype {
            DType::I64 => {}
            DType::I32 => {
                let wide = self.new_buffer(
                    DType::I64,
                    n,
                    Loc::Arena(0),
                    &format!("{}.indices_i64", node.name),
                );
                let k = KernelOp::Cast {
                    from: DType::I32,
                    to: DType::I64,
                    n,
                };
                self.emit(&format!("{}.widen", node.name), k, vec![ib], wide);
                ib = wide;
            }
            d => return Err(lower_err(node, format!("indices of type {d}"))),
        }
        let xb = self.buf(node, x)?;
        let o = self.out_buf(out);
        let k = KernelOp::GatherElements {
            shape: is,
            data_shape: xs,
            axis: ax,
            elem_size,
        };
        self.emit(&node.name, k, vec![xb, ib], o);
        Ok(())
    }

    /// The optional LayerNormalization outputs over x viewed as `[rows, cols]`:
    /// Mean (`rows` values) and InvStdDev = `1 / sqrt(mean((x - mean)^2) + eps)`,
    /// from existing kernels (reduce, broadcast binary, sqrt). Writes the
    /// values `mean` and `inv` that are given.
    fn lower_layer_norm_stats(
        &mut self,
        node: &Node,
        xb: BufferId,
        [rows, cols]: [usize; 2],
        eps: f32,
        mean: Option<ValueId>,
        inv: Option<ValueId>,
    ) -> Result<()> {
        let name = &node.name;
        let temp = |s: &mut Self, len: usize, what: &str| {
            s.new_buffer(DType::F32, len, Loc::Arena(0), &format!("{name}.{what}"))
        };
        let reduce = |len: usize| KernelOp::Reduce {
            kind: ReduceKind::Mean,
            outer: rows,
            len,
            inner: 1,
        };
        let mb = match mean {
            Some(v) => self.out_buf(v),
            None => temp(self, rows, "mean"),
        };
        self.emit(&format!("{name}.mean"), reduce(cols), vec![xb], mb);
        let Some(inv) = inv else {
            return Ok(());
        };
        let bin = |op: BinOp, shape: Vec<usize>, a: Vec<usize>, b: Vec<usize>| KernelOp::Binary {
            op,
            shape,
            a_strides: a,
            b_strides: b,
            act: Act::None,
        };
        let diff = temp(self, rows * cols, "centered");
        let k = bin(BinOp::Sub, vec![rows, cols], vec![cols, 1], vec![1, 0]);
        self.emit(&format!("{name}.center"), k, vec![xb, mb], diff);
        let sq = temp(self, rows * cols, "squared");
        let k = bin(BinOp::Mul, vec![rows, cols], vec![cols, 1], vec![cols, 1]);
        self.emit(&format!("{name}.square"), k, vec![diff, diff], sq);
        let var = temp(self, rows, "var");
        self.emit(&format!("{name}.var"), reduce(cols), vec![sq], var);
        let eps_b = self.add_f32_weight(vec![eps], &format!("{name}.eps"));
        let ve = temp(self, rows, "var_eps");
        let k = bin(BinOp::Add, vec![rows], vec![1], vec![0]);
        self.emit(&format!("{name}.add_eps"), k, vec![var, eps_b], ve);
        let sd = temp(self, rows, "std");
        let k = KernelOp::Unary {
            op: UnaryOp::Sqrt,
            n: rows,
        };
        self.emit(&format!("{name}.sqrt"), k, vec![ve], sd);
        let one = self.add_f32_weight(vec![1.0], &format!("{name}.one"));
        let ib = self.out_buf(inv);
        let k = bin(BinOp::Div, vec![rows], vec![0], vec![1]);
        self.emit(&format!("{name}.inv_std"), k, vec![one, sd], ib);
        Ok(())
    }

    /// MatMul with a 1-D operand (vector products): reshape to 2-D views.
    fn lower_matvec(&mut self, node: &Node, out: ValueId) -> Result<()> {
        let (av, bv) = (self.f32_in(node, 0)?, self.f32_in(node, 1)?);
        let (mut as_, mut bs) = (self.shape(av).to_vec(), self.shape(bv).to_vec());
        if as_.len() == 1 {
            as_.insert(0, 1);
        }
        if bs.len() == 1 {
            bs.push(1);
        }
        let (m, k) = (as_[as_.len() - 2], as_[as_.len() - 1]);
        let n = bs[bs.len() - 1];
        let batch = broadcast(&as_[..as_.len() - 2], &bs[..bs.len() - 2])
            .ok_or_else(|| lower_err(node, "batch dims do not broadcast"))?;
        let spec = MatMulSpec {
            a_batch_strides: batch_strides(&as_, &batch),
            b_batch_strides: batch_strides(&bs, &batch),
            batch,
            beta: 0.0,
            ..MatMulSpec::row_major(m, n, k)
        };
        let ins = vec![self.buf(node, av)?, self.buf(node, bv)?];
        let o = self.out_buf(out);
        self.emit(&node.name, KernelOp::MatMul(spec), ins, o);
        Ok(())
    }

    fn lower_reduce(&mut self, node: &Node, out: ValueId) -> Result<()> {
        let x = self.f32_in(node, 0)?;
        let xs = self.shape(x).to_vec();
        let (reduction, axes, noop) = match &node.op {
            // keepdims only changes the shape, not the bytes of the output.
            Op::Reduce {
                kind,
                axes,
                noop_with_empty_axes,
                ..
            } => (*kind, axes.clone(), *noop_with_empty_axes),
            _ => unreachable!(),
        };
        let axes = match axes {
            Some(a) => a,
            None => node
                .input(1)
                .and_then(|v| self.g.constant(v))
                .map(|t| t.to_i64_vec())
                .unwrap_or_default(),
        };
        let mut red: Vec<usize> = axes
            .iter()
            .filter_map(|&a| norm_axis(a, xs.len()))
            .collect();
        if red.is_empty() {
            if noop {
                return self.alias(node, x, out);
            }
            red = (0..xs.len()).collect();
        }
        red.sort_unstable();
        red.dedup();
        // Reduce one contiguous run of axes at a time, innermost first; the
        // output layout (with or without kept dims) is the same bytes.
        let mut runs: Vec<(usize, usize)> = vec![];
        for &a in &red {
            match runs.last_mut() {
                Some((s, e)) if *e == a => *e = a + 1,
                _ => runs.push((a, a + 1)),
            }
        }
        let mut cur_shape = xs.clone();
        let mut cur = self.buf(node, x)?;
        for (i, &(s, e)) in runs.iter().enumerate().rev() {
            let outer = numel(&cur_shape[..s]);
            let len = numel(&cur_shape[s..e]);
            let inner = numel(&cur_shape[e..]);
            for d in cur_shape.iter_mut().take(e).skip(s) {
                *d = 1;
            }
            let o = if i == 0 {
                self.out_buf(out)
            } else {
                self.new_buffer(
                    DType::F32,
                    outer * inner,
                    Loc::Arena(0),
                    &format!("{}.partial{i}", node.name),
                )
            };
            let kind = ReduceKind::for_run(reduction, i + 1 == runs.len(), i == 0);
            self.emit(
                &node.name,
                KernelOp::Reduce {
                    kind,
                    outer,
                    len,
                    inner,
                },
                vec![cur],
                o,
            );
            cur = o;
        }
        Ok(())
    }
}
