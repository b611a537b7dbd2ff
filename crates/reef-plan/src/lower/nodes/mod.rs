//! Lowering of single nodes: every op that is not part of a fused pattern
//! becomes its kernels here (or an alias, for shape-only ops).

use super::*;

mod elementwise;
mod layout;
mod rows;
mod spatial;

impl<'g> Lowerer<'g> {
    /// Lowers one node that no fused pattern took: shape-only ops become
    /// aliases, the others their kernels (by group, in the submodules).
    pub(super) fn lower_node(&mut self, node: &Node) -> Result<()> {
        let g = self.g;
        let out = match node.outputs.first() {
            Some(&o) => o,
            None => return Ok(()),
        };
        let oshape = self.shape(out).to_vec();
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
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Pow
            | Op::Min
            | Op::Max
            | Op::PRelu
            | Op::Equal
            | Op::Less
            | Op::Greater
            | Op::GreaterOrEqual
            | Op::LessOrEqual
            | Op::And
            | Op::Or
            | Op::Xor
            | Op::Not
            | Op::Where
            | Op::Relu
            | Op::Sigmoid
            | Op::Tanh
            | Op::Clip { .. }
            | Op::Act(_)
            | Op::Erf
            | Op::Sqrt
            | Op::Exp
            | Op::Neg
            | Op::Unary(_)
            | Op::BatchNorm { .. } => self.lower_elementwise(node, out)?,
            Op::Pool(_)
            | Op::GlobalAvgPool
            | Op::GlobalMaxPool
            | Op::Resize(_)
            | Op::Pad { .. } => self.lower_spatial(node, out)?,
            Op::Reduce { .. } => self.lower_reduce(node, out)?,
            Op::ArgExtreme { .. } | Op::Softmax { .. } | Op::LayerNorm { .. } => {
                self.lower_rows(node, out)?
            }
            Op::Concat { .. }
            | Op::Transpose { .. }
            | Op::Slice
            | Op::Expand
            | Op::Gather { .. } => self.lower_layout(node, out)?,
            Op::GatherElements { axis } => self.lower_gather_elements(node, *axis, out)?,
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
