//! Concatenations done in place: when a Concat's slices are contiguous in its
//! output (every dimension before the axis is 1, e.g. channels at batch 1,
//! where concatenating is appending flat buffers), each input is written by
//! its producer straight into its slice of one shared buffer and the Concat
//! itself runs no kernel. DenseNet's dense blocks concatenate every earlier
//! feature map for every layer, chained (`y = concat(y, new)`) or as one list;
//! either way every concatenation of a block is a prefix of the last, so one
//! buffer per block holds them all.

use crate::graph_use::GraphUse;
use reef_model::tensor::numel;
use reef_model::{NodeId, Op, ValueId};
use std::collections::HashMap;

/// Byte alignment every slice of a shared buffer must keep.
pub const SLICE_ALIGN: usize = 16;

/// One shared buffer: the longest concatenation of a family.
#[derive(Debug, Clone)]
pub struct Family {
    /// The inputs in order (the longest list; the others are its prefixes).
    pub members: Vec<ValueId>,
    /// Element offset of each member in the shared buffer.
    pub offsets: Vec<usize>,
    /// Elements of the shared buffer.
    pub len: usize,
}

/// The in-place concatenations of a graph.
#[derive(Debug, Default)]
pub struct Plan {
    /// The families.
    pub families: Vec<Family>,
    /// Member value -> (family, element offset).
    pub member: HashMap<ValueId, (usize, usize)>,
    /// Concat output value -> (family, its elements: a prefix of the buffer).
    pub output: HashMap<ValueId, (usize, usize)>,
}

/// Whether `op` runs a kernel that writes its output contiguously into a
/// fresh buffer (so it can write into a slice instead).
fn writes_fresh(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv(_)
            | Op::Pool(_)
            | Op::GlobalAvgPool
            | Op::GlobalMaxPool
            | Op::Relu
            | Op::Clip { .. }
            | Op::BatchNorm { .. }
            | Op::Add
            | Op::Mul
    )
}

/// Finds the concatenations that can be done in place (graph outputs are
/// never aliased).
pub fn plan(u: &GraphUse) -> Plan {
    let (g, is_output, producer) = (u.g, &u.is_output, &u.producer);
    // Candidate concats: contiguous slices; each input a fresh kernel output
    // or an earlier candidate (whose leaves it then appends).
    let fresh = |v: ValueId| {
        !is_output[v]
            && g.constant(v).is_none()
            && numel(&g.values[v].shape) > 0
            && producer
                .get(&v)
                .is_some_and(|&p| writes_fresh(&g.nodes[p].op))
    };
    let mut leaves: HashMap<ValueId, Vec<ValueId>> = HashMap::new();
    let mut cands: Vec<(NodeId, Vec<ValueId>, ValueId)> = vec![];
    for (i, n) in g.nodes.iter().enumerate() {
        let Op::Concat { axis } = n.op else { continue };
        let Some(&out) = n.outputs.first() else {
            continue;
        };
        let shape = &g.values[out].shape;
        let Some(ax) = reef_model::shape::norm_axis(axis, shape.len()) else {
            continue;
        };
        if is_output[out] || !shape[..ax].iter().all(|&d| d == 1) {
            continue;
        }
        let mut flat = vec![];
        let mut ok = n.inputs.iter().all(Option::is_some);
        for &v in n.inputs.iter().flatten() {
            if let Some(l) = leaves.get(&v) {
                flat.extend_from_slice(l);
            } else if fresh(v) {
                flat.push(v);
            } else {
                ok = false;
            }
        }
        let distinct = flat.iter().enumerate().all(|(k, v)| !flat[..k].contains(v));
        if ok && distinct && !flat.is_empty() {
            leaves.insert(out, flat.clone());
            cands.push((i, flat, out));
        }
    }
    // Longest first: each becomes a family unless it is a prefix of one.
    cands.sort_by_key(|c| std::cmp::Reverse(c.1.len()));
    let mut p = Plan::default();
    for (_, ins, out) in cands {
        let fam = p.families.iter().position(|f| f.members.starts_with(&ins));
        let f = match fam {
            Some(f) => f,
            None => {
                // Its members must not already live in another family.
                if ins.iter().any(|v| p.member.contains_key(v)) {
                    continue;
                }
                let mut offsets = Vec::with_capacity(ins.len());
                let mut len = 0;
                for &v in &ins {
                    offsets.push(len);
                    len += numel(&g.values[v].shape);
                }
                // Every slice starts on a 16-byte boundary (vector loads;
                // DenseNet's pieces are 32 channels of f32).
                let esize = g.values[ins[0]].dtype.size();
                if offsets
                    .iter()
                    .any(|&o| !(o * esize).is_multiple_of(SLICE_ALIGN))
                {
                    continue;
                }
                for (&v, &o) in ins.iter().zip(&offsets) {
                    p.member.insert(v, (p.families.len(), o));
                }
                p.families.push(Family {
                    members: ins.clone(),
                    offsets,
                    len,
                });
                p.families.len() - 1
            }
        };
        let elems = ins.iter().map(|&v| numel(&g.values[v].shape)).sum();
        p.output.insert(out, (f, elems));
    }
    p
}
