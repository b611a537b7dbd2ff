//! Fusion of scaled-dot-product attention into one kernel: BERT's
//! `softmax(Q·Kᵀ / sqrt(d) + mask) · V`, with the merge transpose after it,
//! runs as one [`KernelOp::Attention`](crate::kernel::KernelOp::Attention)
//! launch instead of two batched matmuls, a softmax and a copy. The scores
//! and probabilities never reach memory.

use crate::graph_use::GraphUse;
use crate::kernel::{SoftmaxPre, ATTENTION_MAX_D};
use crate::softmax_fusion::prologue;
use reef_model::{DType, NodeId, Op, ValueId};
use std::collections::HashMap;

/// One attention the lowering emits as a single kernel.
#[derive(Debug, Clone)]
pub struct Group {
    /// The scores product's A operand, `[.., sq, d]`.
    pub q: ValueId,
    /// The scores product's B operand, `[.., d, sk]` (K transposed).
    pub k: ValueId,
    /// The context product's B operand, `[.., sk, dv]`.
    pub v: ValueId,
    /// The softmax prologue (scale and mask) on the scores.
    pub pre: SoftmaxPre,
    /// The prologue's mask value.
    pub mask: Option<ValueId>,
    /// The context, `[.., sq, dv]`.
    pub ctx: ValueId,
    /// The value the kernel writes: the context, or its transpose when the
    /// transpose that follows it is absorbed.
    pub out: ValueId,
    /// That transpose's permutation.
    pub out_perm: Option<Vec<usize>>,
    /// The kernel's name (the two products' node names).
    pub name: String,
}

/// Finds attentions: a MatMul whose product reaches a softmax over the last
/// axis only through its prologue (scale, mask), whose probabilities feed
/// only a second MatMul as its A operand, with at most two batch dims and
/// head lengths up to [`ATTENTION_MAX_D`]. A transpose that alone reads the
/// context is absorbed too (its output written in place). Marks the
/// absorbed nodes and returns the groups by the node where each is lowered
/// (its last member, after every input is computed).
pub fn plan(u: &GraphUse, absorbed: &mut [bool]) -> HashMap<NodeId, Group> {
    let g = u.g;
    let mut out = HashMap::new();
    for si in 0..g.nodes.len() {
        let Some((fused, taken)) = prologue(u, si, absorbed) else {
            continue;
        };
        let Some(&probs) = g.nodes[si].outputs.first() else {
            continue;
        };
        // The scores product, read only by the first prologue node.
        let reader = taken.last().copied().unwrap_or(si);
        let Some(&m1) = u.producer.get(&fused.x) else {
            continue;
        };
        if absorbed[m1] || g.nodes[m1].op != Op::MatMul || !u.only_feeds(fused.x, reader) {
            continue;
        }
        // The context product, the probabilities' only reader.
        let [m2] = u.consumers[probs][..] else {
            continue;
        };
        let n2 = &g.nodes[m2];
        if absorbed[m2] || n2.op != Op::MatMul || !u.only_feeds(probs, m2) {
            continue;
        }
        let (Some(q), Some(k), Some(p), Some(v), Some(&ctx)) = (
            g.nodes[m1].input(0),
            g.nodes[m1].input(1),
            n2.input(0),
            n2.input(1),
            n2.outputs.first(),
        ) else {
            continue;
        };
        if p != probs
            || ![q, k, v, ctx]
                .iter()
                .all(|&x| g.values[x].dtype == DType::F32)
        {
            continue;
        }
        let shape = |x: ValueId| g.values[x].shape.as_slice();
        let (qs, ks, vs, cs) = (shape(q), shape(k), shape(v), shape(ctx));
        let r = cs.len();
        if !(2..=4).contains(&r) || [qs, ks, vs].iter().any(|s| s.len() < 2 || s.len() > r) {
            continue;
        }
        let (sq, dv) = (cs[r - 2], cs[r - 1]);
        let (d, sk) = (qs[qs.len() - 1], ks[ks.len() - 1]);
        // The scores have the context's batch dims (so the mask's rows are
        // the kernel's), and there is a key to attend to (the kernel
        // refuses none; the unfused ops give zeros).
        let rows_match = qs[qs.len() - 2] == sq
            && ks[ks.len() - 2] == d
            && vs[vs.len() - 2] == sk
            && vs[vs.len() - 1] == dv
            && shape(fused.x).len() == r
            && shape(fused.x)[..r - 2] == cs[..r - 2];
        if !rows_match
            || sk == 0
            || d == 0
            || d > ATTENTION_MAX_D
            || dv == 0
            || dv > ATTENTION_MAX_D
        {
            continue;
        }
        let mut members = vec![m1, si, m2];
        members.extend(&taken);
        // The merge transpose, when it alone reads the context.
        let mut dst = (ctx, None);
        if let [t] = u.consumers[ctx][..] {
            if let (false, Op::Transpose { perm }, Some(&tout)) =
                (absorbed[t], &g.nodes[t].op, g.nodes[t].outputs.first())
            {
                let perm = perm.clone().unwrap_or_else(|| (0..r).rev().collect());
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if u.only_feeds(ctx, t) && sorted == (0..r).collect::<Vec<_>>() {
                    dst = (tout, Some(perm));
                    members.push(t);
                }
            }
        }
        for &m in &members {
            absorbed[m] = true;
        }
        let at = members.iter().copied().max().unwrap_or(m2);
        out.insert(
            at,
            Group {
                q,
                k,
                v,
                pre: fused.pre,
                mask: fused.mask,
                ctx,
                out: dst.0,
                out_perm: dst.1,
                name: format!("{}+{}", g.nodes[m1].name, n2.name),
            },
        );
    }
    out
}
