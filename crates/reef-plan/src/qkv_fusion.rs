//! Sibling matmuls fused into one batched matmul: two or more MatMuls (each
//! followed by the Add of its own constant `[N]` bias) or Gemms (alpha and
//! beta 1, constant bias) that read the same activation with constant
//! `[K, N]` (or, transposed, `[N, K]`) weights run as one launch over their
//! stacked weights
//! (BERT's query, key and value projections: three launches become one, with
//! three times the tiles to spread over the SMs). Each result lands in its
//! own slice of one output buffer, so the consumers read it as before.

use crate::graph_use::GraphUse;
use reef_model::{DType, NodeId, Op, ValueId};
use std::collections::HashMap;

/// One fused group.
#[derive(Debug, Clone)]
pub struct Group {
    /// The shared activation `[.., K]`.
    pub x: ValueId,
    /// Per member: (matmul node, bias-add node, weight, bias, output value).
    pub members: Vec<Member>,
    /// Reduction length.
    pub k: usize,
    /// Columns of each member.
    pub n: usize,
    /// Weights are stored `[N, K]` (Gemm `transB`).
    pub trans_b: bool,
}

/// One matmul of a group.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// The MatMul or Gemm node.
    pub matmul: NodeId,
    /// The Add of the bias (MatMul members).
    pub add: Option<NodeId>,
    /// The constant weight.
    pub weight: ValueId,
    /// The constant bias `[N]`.
    pub bias: ValueId,
    /// The member's result (the Add's or the Gemm's output).
    pub out: ValueId,
}

/// Finds the groups; marks their nodes in `absorbed`. Returns the groups by
/// the node at which the fused launch runs (the first member's MatMul).
pub fn plan(u: &GraphUse, absorbed: &mut [bool]) -> HashMap<NodeId, Group> {
    let g = u.g;
    let const_f32 = |v: ValueId, shape: &[usize]| {
        g.constant(v).is_some() && g.values[v].dtype == DType::F32 && g.values[v].shape == shape
    };
    let mut by_x: HashMap<(ValueId, usize, usize, bool), Vec<Member>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let trans_b = match n.op {
            Op::MatMul => false,
            Op::Gemm {
                alpha,
                beta,
                trans_a: false,
                trans_b,
            } if alpha == 1.0 && beta == 1.0 => trans_b,
            _ => continue,
        };
        if absorbed[i] {
            continue;
        }
        let (Some(x), Some(w), Some(&mm_out)) = (n.input(0), n.input(1), n.outputs.first()) else {
            continue;
        };
        let (xs, ws) = (&g.values[x].shape, &g.values[w].shape);
        if ws.len() != 2 || xs.len() < 2 || g.constant(x).is_some() {
            continue;
        }
        let (k, nn) = if trans_b {
            (ws[1], ws[0])
        } else {
            (ws[0], ws[1])
        };
        // A transposed activation may be read in place as a view: left alone.
        let from_transpose = u
            .producer
            .get(&x)
            .is_some_and(|&p| matches!(g.nodes[p].op, Op::Transpose { .. }));
        if from_transpose
            || xs[xs.len() - 1] != k
            || !const_f32(w, ws)
            || g.values[x].dtype != DType::F32
        {
            continue;
        }
        if let Op::Gemm { .. } = n.op {
            // Gemm: its bias is input 2.
            if xs.len() != 2 || u.is_output[mm_out] {
                continue;
            }
            let Some(bias) = n.input(2).filter(|&b| const_f32(b, &[nn])) else {
                continue;
            };
            by_x.entry((x, k, nn, trans_b)).or_default().push(Member {
                matmul: i,
                add: None,
                weight: w,
                bias,
                out: mm_out,
            });
            continue;
        }
        if u.is_output[mm_out] || u.consumers[mm_out].len() != 1 {
            continue;
        }
        let ai = u.consumers[mm_out][0];
        let a = &g.nodes[ai];
        if a.op != Op::Add || absorbed[ai] || a.inputs.len() != 2 {
            continue;
        }
        let Some(&out) = a.outputs.first() else {
            continue;
        };
        let bias = match (a.input(0), a.input(1)) {
            (Some(p), Some(b)) if p == mm_out => b,
            (Some(b), Some(p)) if p == mm_out => b,
            _ => continue,
        };
        if !const_f32(bias, &[nn])
            || u.is_output[out]
            || g.values[out].shape != g.values[mm_out].shape
        {
            continue;
        }
        by_x.entry((x, k, nn, false)).or_default().push(Member {
            matmul: i,
            add: Some(ai),
            weight: w,
            bias,
            out,
        });
    }
    let mut groups = HashMap::new();
    for ((x, k, n, trans_b), members) in by_x {
        if members.len() < 2 {
            continue;
        }
        for m in &members {
            absorbed[m.matmul] = true;
            if let Some(a) = m.add {
                absorbed[a] = true;
            }
        }
        let at = members.iter().map(|m| m.matmul).min().unwrap_or(0);
        groups.insert(
            at,
            Group {
                x,
                members,
                k,
                n,
                trans_b,
            },
        );
    }
    groups
}
