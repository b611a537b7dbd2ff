//! Lowering of data-movement nodes: Concat (copied or in place), Transpose,
//! Slice, Expand and Gather.

use super::super::*;

impl<'g> Lowerer<'g> {
    /// Lowers `node` (output `out`), one of this module's ops.
    pub(in crate::lower) fn lower_layout(&mut self, node: &Node, out: ValueId) -> Result<()> {
        let g = self.g;
        let oshape = self.shape(out).to_vec();
        match &node.op {
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
            _ => return Err(lower_err(node, "not a layout node")),
        }
        Ok(())
    }
}
