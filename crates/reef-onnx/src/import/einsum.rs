//! Einsum of one or two operands, written as ops reef already runs: labels
//! only one operand has and the output lacks are summed out first
//! (ReduceSum), then the two operands are transposed and reshaped to
//! `[batch, M, K]` and `[batch, K, N]` for one batched MatMul, whose result
//! is reshaped and transposed to the output's label order. `...` stands for
//! the same leading dimensions in every operand. A label repeated within
//! one operand (a diagonal) and more than two operands are unsupported.

use super::Importer;
use crate::attrs::NodeCtx;
use reef_model::{ModelError, Op, Reduction, ValueId};

/// The placeholder label of ellipsis dimension `i` (of `total`, counted
/// from the left; operands with fewer align on the right, as numpy does).
fn ellipsis_label(i: usize) -> char {
    char::from(b'0' + (i % 10) as u8)
}

/// Labels of one term, with `...` expanded to placeholder labels for
/// `rank` dimensions in all, right-aligned within `ell_total` ellipsis
/// dimensions.
fn labels(
    ctx: &NodeCtx,
    term: &str,
    rank: usize,
    ell_total: usize,
) -> Result<Vec<char>, ModelError> {
    let term = term.trim();
    let explicit = term.replace("...", "");
    if let Some(c) = explicit.chars().find(|c| !c.is_ascii_alphabetic()) {
        return Err(ctx.err(format!("label '{c}' in '{term}' is not a letter")));
    }
    let n = explicit.chars().count();
    let mut out = vec![];
    match term.split_once("...") {
        None => out.extend(explicit.chars()),
        Some((head, tail)) => {
            if tail.contains("...") {
                return Err(ctx.err(format!("'{term}' has more than one ellipsis")));
            }
            let k = rank.checked_sub(n).ok_or_else(|| {
                ctx.err(format!(
                    "'{term}' has more labels than its operand's rank {rank}"
                ))
            })?;
            out.extend(head.chars());
            out.extend((ell_total.saturating_sub(k)..ell_total).map(ellipsis_label));
            out.extend(tail.chars());
        }
    }
    if out.len() != rank {
        return Err(ctx.err(format!(
            "'{term}' has {} labels for an operand of rank {rank}",
            out.len()
        )));
    }
    if let Some(c) = out
        .iter()
        .enumerate()
        .find(|(i, c)| out[..*i].contains(c))
        .map(|(_, c)| c)
    {
        return Err(ctx.unsupported(format!("label '{c}' repeats within '{term}' (a diagonal)")));
    }
    Ok(out)
}

impl Importer {
    pub(super) fn einsum(
        &mut self,
        ctx: &NodeCtx,
        inputs: &[Option<ValueId>],
    ) -> Result<(), ModelError> {
        let eq = ctx
            .string("equation")?
            .ok_or_else(|| ctx.err("missing attribute 'equation'"))?
            .replace(' ', "");
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        let terms: Vec<&str> = lhs.split(',').collect();
        if terms.len() != inputs.len() || !(1..=2).contains(&terms.len()) {
            return Err(ctx.unsupported(format!(
                "'{eq}' with {} operands (one or two are supported)",
                inputs.len()
            )));
        }
        let vals: Vec<ValueId> = inputs.iter().map(|v| v.expect("arity checked")).collect();
        let explicit = |t: &str| t.replace("...", "").chars().count();
        let ell_rank = terms
            .iter()
            .zip(&vals)
            .filter(|(t, _)| t.contains("..."))
            .map(|(t, &v)| self.b.shape(v).len().saturating_sub(explicit(t)))
            .max()
            .unwrap_or(0);
        let mut ops: Vec<(ValueId, Vec<char>)> = vec![];
        for (t, &v) in terms.iter().zip(&vals) {
            let rank = self.b.shape(v).len();
            ops.push((v, labels(ctx, t, rank, ell_rank)?));
        }
        let out: Vec<char> = match &rhs {
            Some(r) => {
                let rank = explicit(r) + if r.contains("...") { ell_rank } else { 0 };
                labels(ctx, r, rank, ell_rank)?
            }
            None => {
                // Implicit output: the ellipsis, then labels used once, sorted.
                let mut once: Vec<char> = ops
                    .iter()
                    .flat_map(|(_, l)| l.iter().copied())
                    .filter(|c| c.is_ascii_alphabetic())
                    .collect();
                once.sort_unstable();
                let single: Vec<char> = once
                    .iter()
                    .copied()
                    .filter(|c| once.iter().filter(|d| *d == c).count() == 1)
                    .collect();
                let mut o: Vec<char> = (0..ell_rank).map(ellipsis_label).collect();
                o.extend(single);
                o
            }
        };
        // Sizes per label, which every operand must agree on.
        let mut size = std::collections::HashMap::new();
        for (v, l) in &ops {
            for (c, &d) in l.iter().zip(self.b.shape(*v)) {
                if *size.entry(*c).or_insert(d) != d {
                    return Err(ctx.err(format!(
                        "label '{c}' has sizes {} and {d} in '{eq}'",
                        size[c]
                    )));
                }
            }
        }
        if let Some(c) = out.iter().find(|c| !size.contains_key(c)) {
            return Err(ctx.err(format!("output label '{c}' is in no operand of '{eq}'")));
        }
        // Sum out what only one operand has and the output lacks.
        let others: Vec<Vec<char>> = ops.iter().map(|(_, l)| l.clone()).collect();
        for (i, (v, l)) in ops.iter_mut().enumerate() {
            let in_other = |c: &char| {
                others
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && o.contains(c))
            };
            let axes: Vec<i64> = (0..l.len())
                .filter(|&a| !out.contains(&l[a]) && !in_other(&l[a]))
                .map(|a| a as i64)
                .collect();
            if !axes.is_empty() {
                let n = self.fresh(&format!("{}_sum{i}", ctx.name));
                *v = self.add(
                    &n,
                    Op::Reduce {
                        kind: Reduction::Sum,
                        axes: Some(axes.clone()),
                        keepdims: false,
                        noop_with_empty_axes: false,
                    },
                    vec![Some(*v)],
                    &n,
                )?;
                let keep: Vec<char> = (0..l.len())
                    .filter(|a| !axes.contains(&(*a as i64)))
                    .map(|a| l[a])
                    .collect();
                *l = keep;
            }
        }
        let result = if ops.len() == 1 {
            let (v, l) = ops[0].clone();
            self.arrange(ctx, v, &l, &out, "out")?
        } else {
            let (a, la) = ops[0].clone();
            let (b, lb) = ops[1].clone();
            let batch: Vec<char> = out
                .iter()
                .copied()
                .filter(|c| la.contains(c) && lb.contains(c))
                .collect();
            let contract: Vec<char> = la
                .iter()
                .copied()
                .filter(|c| lb.contains(c) && !out.contains(c))
                .collect();
            let a_keep: Vec<char> = la.iter().copied().filter(|c| !lb.contains(c)).collect();
            let b_keep: Vec<char> = lb.iter().copied().filter(|c| !la.contains(c)).collect();
            let prod = |ls: &[char]| ls.iter().map(|c| size[c]).product::<usize>();
            let (bs, m, k, n) = (prod(&batch), prod(&a_keep), prod(&contract), prod(&b_keep));
            let a_order: Vec<char> = [&batch[..], &a_keep, &contract].concat();
            let b_order: Vec<char> = [&batch[..], &contract, &b_keep].concat();
            let a3 = self.arrange(ctx, a, &la, &a_order, "a")?;
            let a3 = self.reshape_to(ctx, a3, &[bs, m, k], "a3")?;
            let b3 = self.arrange(ctx, b, &lb, &b_order, "b")?;
            let b3 = self.reshape_to(ctx, b3, &[bs, k, n], "b3")?;
            let nm = self.fresh(&format!("{}_matmul", ctx.name));
            let c = self.add(&nm, Op::MatMul, vec![Some(a3), Some(b3)], &nm)?;
            let c_labels: Vec<char> = [&batch[..], &a_keep, &b_keep].concat();
            let c_shape: Vec<usize> = c_labels.iter().map(|l| size[l]).collect();
            let c = self.reshape_to(ctx, c, &c_shape, "c")?;
            self.arrange(ctx, c, &c_labels, &out, "out")?
        };
        self.emit(ctx, Op::Identity, vec![Some(result)])
    }

    /// `v` (labels `from`) transposed to the label order `to` (a permutation
    /// of `from`); no node when the orders agree.
    fn arrange(
        &mut self,
        ctx: &NodeCtx,
        v: ValueId,
        from: &[char],
        to: &[char],
        what: &str,
    ) -> Result<ValueId, ModelError> {
        if from == to {
            return Ok(v);
        }
        let perm: Vec<usize> = to
            .iter()
            .map(|c| from.iter().position(|f| f == c).expect("labels checked"))
            .collect();
        let n = self.fresh(&format!("{}_{what}_t", ctx.name));
        self.add(&n, Op::Transpose { perm: Some(perm) }, vec![Some(v)], &n)
    }

    /// `v` reshaped to `shape`; no node when it already has it.
    fn reshape_to(
        &mut self,
        ctx: &NodeCtx,
        v: ValueId,
        shape: &[usize],
        what: &str,
    ) -> Result<ValueId, ModelError> {
        if self.b.shape(v) == shape {
            return Ok(v);
        }
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        self.reshaped(ctx, v, &dims, what)
    }
}
