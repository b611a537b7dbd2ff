//! Fusion of a scale and an additive mask into the softmax that follows
//! them: BERT's `softmax(scores / sqrt(d) + attention_mask)` runs as one
//! softmax kernel (see [`SoftmaxPre`]) instead of three.

use crate::graph_use::GraphUse;
use crate::kernel::{BinOp, SoftmaxMask, SoftmaxPre};
use reef_model::tensor::strides;
use reef_model::{DType, NodeId, Op, ValueId};
use std::collections::HashMap;

/// A softmax with an absorbed prologue.
#[derive(Debug, Clone)]
pub struct FusedSoftmax {
    /// The softmax's input before the prologue.
    pub x: ValueId,
    /// What is applied to each element first.
    pub pre: SoftmaxPre,
    /// The mask value (when `pre.mask` is set).
    pub mask: Option<ValueId>,
}

/// Where each element of a softmax over the last axis of `shape` finds its
/// mask element, for a mask of `mshape` broadcast to `shape`; `None` when
/// the mask rows are not one contiguous group of the row dimensions.
pub fn mask_layout(shape: &[usize], mshape: &[usize]) -> Option<SoftmaxMask> {
    let n = shape.len();
    if n == 0 || mshape.len() > n {
        return None;
    }
    let mut ms = vec![1; n - mshape.len()];
    ms.extend_from_slice(mshape);
    let st = strides(&ms);
    let col_stride = match ms[n - 1] {
        1 => 0,
        c if c == shape[n - 1] => st[n - 1],
        _ => return None,
    };
    // Row dimensions along which the mask varies.
    let varying: Vec<usize> = (0..n - 1).filter(|&d| ms[d] != 1).collect();
    if varying.iter().any(|&d| ms[d] != shape[d]) {
        return None;
    }
    let (Some(&a), Some(&b)) = (varying.first(), varying.last()) else {
        return Some(SoftmaxMask {
            div: 1,
            modulo: 1,
            ld: 0,
            col_stride,
        });
    };
    if b - a + 1 != varying.len() {
        return None;
    }
    Some(SoftmaxMask {
        div: shape[b + 1..n - 1].iter().product(),
        modulo: shape[a..=b].iter().product(),
        ld: st[b],
        col_stride,
    })
}

/// Finds softmaxes over the last axis fed by `x / c` or `x * c` (a scalar
/// constant), then `+ mask`, each intermediate read only by the next node;
/// marks the absorbed nodes in `absorbed` and returns the fused softmaxes by
/// softmax output value.
pub fn plan(u: &GraphUse, absorbed: &mut [bool]) -> HashMap<ValueId, FusedSoftmax> {
    let mut out = HashMap::new();
    for si in 0..u.g.nodes.len() {
        let Some((fused, taken)) = prologue(u, si, absorbed) else {
            continue;
        };
        if taken.is_empty() {
            continue;
        }
        for p in taken {
            absorbed[p] = true;
        }
        if let Some(&sout) = u.g.nodes[si].outputs.first() {
            out.insert(sout, fused);
        }
    }
    out
}

/// The prologue node `si` would absorb when it is a softmax over the last
/// axis that no other fusion took: the fused softmax (its input before the
/// prologue, the scale and the mask) and the absorbed nodes, none when the
/// softmax reads its input as it is.
pub fn prologue(
    u: &GraphUse,
    si: NodeId,
    absorbed: &[bool],
) -> Option<(FusedSoftmax, Vec<NodeId>)> {
    let g = u.g;
    let producer = &u.producer;
    let s = &g.nodes[si];
    let Op::Softmax { axis } = s.op else {
        return None;
    };
    let x0 = s.input(0)?;
    s.outputs.first()?;
    let rank = g.values[x0].shape.len() as i64;
    if absorbed[si] || rank == 0 || (axis != -1 && axis != rank - 1) {
        return None;
    }
    let shape = g.values[x0].shape.clone();
    let f32_same = |v: ValueId| g.values[v].dtype == DType::F32 && g.values[v].shape == shape;
    let mut cur = x0;
    let mut consumer = si;
    let mut pre = SoftmaxPre::default();
    let mut mask = None;
    let mut taken = vec![];
    // `cur = a + m` (m broadcast to cur's shape).
    if let Some(&p) = producer.get(&cur) {
        let n = &g.nodes[p];
        if n.op == Op::Add && !absorbed[p] && u.only_feeds(cur, consumer) {
            if let (Some(a), Some(b)) = (n.input(0), n.input(1)) {
                let pick = [(a, b), (b, a)].into_iter().find_map(|(main, m)| {
                    let layout = mask_layout(&shape, &g.values[m].shape)?;
                    (f32_same(main) && g.values[m].dtype == DType::F32).then_some((main, m, layout))
                });
                if let Some((main, m, layout)) = pick {
                    pre.mask = Some(layout);
                    mask = Some(m);
                    taken.push(p);
                    consumer = p;
                    cur = main;
                }
            }
        }
    }
    // `cur = a / c` or `a * c`.
    if let Some(&p) = producer.get(&cur) {
        let n = &g.nodes[p];
        if matches!(n.op, Op::Div | Op::Mul) && !absorbed[p] && u.only_feeds(cur, consumer) {
            if let (Some(a), Some(b)) = (n.input(0), n.input(1)) {
                let scaled = match n.op {
                    Op::Div => u.scalar(b).map(|c| (a, BinOp::Div, c)),
                    _ => u
                        .scalar(b)
                        .map(|c| (a, BinOp::Mul, c))
                        .or_else(|| u.scalar(a).map(|c| (b, BinOp::Mul, c))),
                };
                if let Some((main, op, c)) = scaled.filter(|s| f32_same(s.0)) {
                    pre.scale = Some((op, c));
                    taken.push(p);
                    cur = main;
                }
            }
        }
    }
    Some((FusedSoftmax { x: cur, pre, mask }, taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_layouts_of_bert_and_other_broadcasts() {
        // [1, 1, 1, S] over [1, H, S, S]: one mask row for every softmax row.
        let m = mask_layout(&[1, 12, 128, 128], &[1, 1, 1, 128]).unwrap();
        assert_eq!((m.div, m.modulo, m.ld, m.col_stride), (1, 1, 0, 1));
        // [B, 1, 1, S] over [B, H, S, S]: mask row b for rows of batch b.
        let m = mask_layout(&[8, 12, 128, 128], &[8, 1, 1, 128]).unwrap();
        assert_eq!((m.div, m.modulo, m.ld, m.col_stride), (12 * 128, 8, 128, 1));
        assert_eq!(m.offset(12 * 128 * 3 + 5, 7), 3 * 128 + 7);
        assert_eq!(m.extent(8 * 12 * 128, 128), 8 * 128);
        // [S, S] (a causal mask) over [B, H, S, S]: mask row i cycles.
        let m = mask_layout(&[2, 4, 16, 16], &[16, 16]).unwrap();
        assert_eq!((m.div, m.modulo, m.ld, m.col_stride), (1, 16, 16, 1));
        // A per-row scalar: [B, H, S, 1].
        let m = mask_layout(&[2, 4, 16, 16], &[2, 4, 16, 1]).unwrap();
        assert_eq!((m.div, m.modulo, m.ld, m.col_stride), (1, 128, 1, 0));
        // Mask rows not one contiguous group ([B, 1, S, S]): not fused.
        assert!(mask_layout(&[2, 4, 16, 16], &[2, 1, 16, 16]).is_none());
        // Shapes that do not broadcast.
        assert!(mask_layout(&[2, 4, 16, 16], &[3, 1, 1, 16]).is_none());
        assert!(mask_layout(&[2, 16], &[2, 8]).is_none());
    }
}
