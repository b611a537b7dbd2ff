//! Lowering of nodes over image windows: pooling, global pooling, Resize
//! and Pad.

use super::super::*;

impl<'g> Lowerer<'g> {
    /// Lowers `node` (output `out`), one of this module's ops.
    pub(in crate::lower) fn lower_spatial(&mut self, node: &Node, out: ValueId) -> Result<()> {
        let g = self.g;
        let oshape = self.shape(out).to_vec();
        match &node.op {
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
            _ => return Err(lower_err(node, "not a spatial node")),
        }
        Ok(())
    }
}
