//! Lowering of single nodes: every op that is not part of a fused pattern
//! becomes its kernels here (or an alias, for shape-only ops).

use super::*;

impl<'g> Lowerer<'g> {
    pub(super) fn lower_node(&mut self, node: &Node) -> Result<()> {
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
