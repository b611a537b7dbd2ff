//! Lowering of row-wise nodes: Softmax, LayerNormalization and ArgMax / ArgMin.

use super::super::*;

impl<'g> Lowerer<'g> {
    /// Lowers `node` (output `out`), one of this module's ops.
    pub(in crate::lower) fn lower_rows(&mut self, node: &Node, out: ValueId) -> Result<()> {
        let g = self.g;
        let oshape = self.shape(out).to_vec();
        match &node.op {
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
            _ => return Err(lower_err(node, "not a rows node")),
        }
        Ok(())
    }
}
