//! Lowering of fused patterns: a convolution or matrix product with its
//! epilogue (bias, residual add, activation, exact GELU), sibling matmuls as
//! one batched launch, and whole attentions as one kernel.

use super::*;

impl<'g> Lowerer<'g> {
    /// Finds what a Conv / Gemm / MatMul head can absorb.
    /// Nodes already claimed by an earlier chain (`absorbed`) are not taken.
    pub(super) fn plan_fusion(&self, head: &Node, absorbed: &[bool]) -> (Fusion, ValueId) {
        let mut f = Fusion::default();
        let mut out = head.outputs[0];
        let is_conv = matches!(head.op, Op::Conv(_));
        let idx = |n: &Node| {
            self.g
                .nodes
                .iter()
                .position(|m| std::ptr::eq(m, n))
                .unwrap()
        };
        if is_conv {
            if let Some(bn) = self.single_consumer(out, absorbed) {
                let consts = (1..5).all(|i| bn.input(i).and_then(|v| self.g.constant(v)).is_some());
                if matches!(bn.op, Op::BatchNorm { .. })
                    && bn.input(0) == Some(out)
                    && consts
                    && bn.outputs.len() == 1
                {
                    f.bn = Some(idx(bn));
                    out = bn.outputs[0];
                }
            }
        }
        let out_shape = self.shape(out).to_vec();
        // Up to two Adds: a constant bias (first) and a same-shaped residual.
        for _ in 0..2 {
            let Some((add, other)) = self.add_after(out, &out_shape, absorbed) else {
                break;
            };
            let os = self.shape(other);
            if self.g.constant(other).is_some() {
                if f.bias_add.is_some()
                    || f.residual.is_some()
                    || self.bias_strides(head, os, &out_shape).is_none()
                {
                    break;
                }
                f.bias_add = Some((idx(add), other));
            } else {
                if f.residual.is_some() || os != out_shape.as_slice() {
                    break;
                }
                f.residual = Some((idx(add), other));
            }
            out = add.outputs[0];
        }
        if let Some(a) = self.single_consumer(out, absorbed) {
            if a.input(0) == Some(out) {
                if let Some(act) = self.act_of(a) {
                    f.act = Some((idx(a), act));
                    out = a.outputs[0];
                }
            }
        } else if let Some((mut nodes, gout)) = self.gelu_after(out, absorbed) {
            let last = nodes.pop().expect("a GELU has five nodes");
            f.act = Some((last, Act::Gelu));
            f.act_parts = nodes;
            out = gout;
        }
        (f, out)
    }

    /// Recognises exact GELU written out on `x`, as PyTorch exports it and
    /// the zoo builds it: `x · (1 + erf(x / √2)) · 0.5` (or `x · 0.5 · (1 +
    /// erf(x / √2))`, or `x · (1/√2)` for the division), every intermediate
    /// used once. Returns its nodes in graph order, the output last, and the
    /// output value. Multiplying by 0.5 is exact, so the fused form computes
    /// the same value.
    fn gelu_after(&self, x: ValueId, absorbed: &[bool]) -> Option<(Vec<NodeId>, ValueId)> {
        if self.uses.is_output[x] || self.uses.consumers[x].len() != 2 {
            return None;
        }
        let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= 1e-6 * want);
        let node = |id: NodeId| (!absorbed[id]).then(|| &self.g.nodes[id]);
        let binary = |n: &Node, op: &Op| n.op == *op && n.inputs.len() == 2 && n.outputs.len() == 1;
        let sqrt2 = std::f64::consts::SQRT_2;
        // The scaling path: x / √2 (or x · 1/√2), Erf, + 1.
        let (mut scale, mut other) = (None, None);
        for &c in &self.uses.consumers[x] {
            let n = node(c)?;
            let k = Self::other_operand(n, x)?;
            let is_scale =
                (binary(n, &Op::Div) && n.input(0) == Some(x) && close(self.scalar(k), sqrt2))
                    || (binary(n, &Op::Mul) && close(self.scalar(k), 1.0 / sqrt2));
            if is_scale && scale.is_none() {
                scale = Some(c);
            } else {
                other = Some(c);
            }
        }
        let (scale, other) = (scale?, other?);
        let erf_id = *self.uses.consumers[self.g.nodes[scale].outputs[0]].first()?;
        let erf = self.single_consumer(self.g.nodes[scale].outputs[0], absorbed)?;
        if erf.op != Op::Erf {
            return None;
        }
        let add_id = *self.uses.consumers[erf.outputs[0]].first()?;
        let add = self.single_consumer(erf.outputs[0], absorbed)?;
        if !binary(add, &Op::Add)
            || !close(self.scalar(Self::other_operand(add, erf.outputs[0])?), 1.0)
        {
            return None;
        }
        // The product path: x · (1 + erf) · 0.5 in either grouping.
        let on = node(other)?;
        if !binary(on, &Op::Mul) {
            return None;
        }
        let (first, last) = if Self::other_operand(on, x)? == Some(add.outputs[0]) {
            // m = x · a, then m · 0.5.
            let half_id = *self.uses.consumers[on.outputs[0]].first()?;
            let half = self.single_consumer(on.outputs[0], absorbed)?;
            let k = Self::other_operand(half, on.outputs[0])?;
            if !binary(half, &Op::Mul) || !close(self.scalar(k), 0.5) {
                return None;
            }
            (other, half_id)
        } else {
            // h = x · 0.5, then h · a.
            if !close(self.scalar(Self::other_operand(on, x)?), 0.5) {
                return None;
            }
            let m_id = *self.uses.consumers[on.outputs[0]].first()?;
            let m = self.single_consumer(on.outputs[0], absorbed)?;
            if !binary(m, &Op::Mul)
                || Self::other_operand(m, on.outputs[0])? != Some(add.outputs[0])
            {
                return None;
            }
            (other, m_id)
        };
        // The Add must feed only the final product.
        let add_out = add.outputs[0];
        if self.uses.is_output[add_out] || self.uses.consumers[add_out].len() != 1 {
            return None;
        }
        let consumer = self.uses.consumers[add_out][0];
        if consumer != first && consumer != last {
            return None;
        }
        let mut nodes = vec![scale, erf_id, add_id, first, last];
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() != 5 || *nodes.last()? != last {
            return None;
        }
        Some((nodes, self.g.nodes[last].outputs[0]))
    }

    /// The single consumer of `out` if it is a binary Add keeping `shape`,
    /// with the Add's other operand.
    fn add_after(
        &self,
        out: ValueId,
        shape: &[usize],
        absorbed: &[bool],
    ) -> Option<(&'g Node, ValueId)> {
        let add = self.single_consumer(out, absorbed)?;
        if !matches!(add.op, Op::Add)
            || add.inputs.len() != 2
            || self.shape(add.outputs[0]) != shape
        {
            return None;
        }
        let other = if add.input(0) == Some(out) {
            add.input(1)
        } else {
            add.input(0)
        };
        Some((add, other?))
    }

    /// For a bias-like constant of shape `bs` added to the head's output of
    /// shape `out`: conv -> per-output-channel; matmul -> (stride_m, stride_n).
    fn bias_strides(&self, head: &Node, bs: &[usize], out: &[usize]) -> Option<(usize, usize)> {
        if broadcast(bs, out).as_deref() != Some(out) {
            return None;
        }
        let full = bcast_strides(bs, out);
        let r = out.len();
        match head.op {
            Op::Conv(_) => {
                // Only channel may vary.
                let ok = (0..r).all(|d| d == 1 || full[d] == 0 || out[d] == 1);
                (ok && numel(bs) == out[1]).then_some((0, 1))
            }
            _ => {
                if r < 2 {
                    return (r == 1).then(|| (0, full[0]));
                }
                let batch_free = (0..r - 2).all(|d| full[d] == 0 || out[d] == 1);
                batch_free.then(|| (full[r - 2], full[r - 1]))
            }
        }
    }

    pub(super) fn lower_fused(&mut self, head: &Node, f: &Fusion, out: ValueId) -> Result<()> {
        let g = self.g;
        let mut name = head.name.clone();
        for m in [
            f.bn,
            f.bias_add.map(|x| x.0),
            f.residual.map(|x| x.0),
            f.act.map(|x| x.0),
        ]
        .into_iter()
        .flatten()
        {
            name.push('+');
            name.push_str(&g.nodes[m].name);
        }
        let act = f.act.map(|a| a.1).unwrap_or(Act::None);
        let out_shape = self.shape(out).to_vec();
        match &head.op {
            Op::Conv(a) => {
                let x = head
                    .input(0)
                    .ok_or_else(|| lower_err(head, "missing input"))?;
                let wv = head
                    .input(1)
                    .ok_or_else(|| lower_err(head, "missing weight"))?;
                let xs = self.shape(x).to_vec();
                let ws = self.shape(wv).to_vec();
                let k = ws[0];
                let mut bias: Option<Vec<f32>> = match head.input(2) {
                    Some(b) => Some(
                        g.constant(b)
                            .and_then(|t| t.as_f32())
                            .map(|s| s.to_vec())
                            .ok_or_else(|| lower_err(head, "bias must be a constant f32 tensor"))?,
                    ),
                    None => None,
                };
                let w_buf;
                if let Some(bn) = f.bn {
                    let bn = &g.nodes[bn];
                    let eps = match bn.op {
                        Op::BatchNorm { epsilon } => epsilon as f64,
                        _ => unreachable!(),
                    };
                    let p = |i: usize| g.constant(bn.input(i).unwrap()).unwrap().to_f64_vec();
                    let (gamma, beta, mean, var) = (p(1), p(2), p(3), p(4));
                    let w = g.constant(wv).and_then(|t| t.as_f32()).ok_or_else(|| {
                        lower_err(head, "BatchNorm folding needs a constant f32 weight")
                    })?;
                    let per = w.len() / k;
                    let mut nw = Vec::with_capacity(w.len());
                    let mut nb = Vec::with_capacity(k);
                    let b0 = bias.clone().unwrap_or_else(|| vec![0.0; k]);
                    for o in 0..k {
                        let s = gamma[o] / (var[o] + eps).sqrt();
                        nw.extend(
                            w[o * per..(o + 1) * per]
                                .iter()
                                .map(|&v| (v as f64 * s) as f32),
                        );
                        nb.push(((b0[o] as f64 - mean[o]) * s + beta[o]) as f32);
                    }
                    w_buf = self.add_f32_weight(nw, &format!("{}.folded_weight", head.name));
                    bias = Some(nb);
                } else {
                    w_buf = self.buf(head, wv)?;
                }
                if let Some((_, bv)) = f.bias_add {
                    let add = g.constant(bv).unwrap().to_f64_vec();
                    let b = bias.get_or_insert_with(|| vec![0.0; k]);
                    for (o, bo) in b.iter_mut().enumerate() {
                        *bo = (*bo as f64 + add[o]) as f32;
                    }
                }
                let x_buf = self.buf(head, x)?;
                let mut inputs = vec![x_buf, w_buf];
                let has_bias = bias.is_some();
                if let Some(b) = bias {
                    inputs.push(self.add_f32_weight(b, &format!("{}.bias", head.name)));
                }
                if let Some((_, r)) = f.residual {
                    inputs.push(self.buf(head, r)?);
                }
                let ConvAttrs {
                    stride,
                    pads,
                    dilation,
                    groups,
                    ..
                } = a.clone();
                let spec = ConvSpec {
                    n: xs[0],
                    c: xs[1],
                    h: xs[2],
                    w: xs[3],
                    k,
                    r: ws[2],
                    s: ws[3],
                    oh: out_shape[2],
                    ow: out_shape[3],
                    stride,
                    pad: [pads[0], pads[1]],
                    dilation,
                    groups,
                    has_bias,
                    has_residual: f.residual.is_some(),
                    act,
                };
                let o = self.out_buf(out);
                self.emit(&name, KernelOp::Conv(spec), inputs, o);
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                let (av, bv) = (head.input(0).unwrap(), head.input(1).unwrap());
                let (as_, bs) = (self.shape(av).to_vec(), self.shape(bv).to_vec());
                let (m, k) = if *trans_a {
                    (as_[1], as_[0])
                } else {
                    (as_[0], as_[1])
                };
                let n = if *trans_b { bs[0] } else { bs[1] };
                let (lda_m, lda_k) = if *trans_a { (1, m) } else { (k, 1) };
                let (ldb_k, ldb_n) = if *trans_b { (1, k) } else { (n, 1) };
                let mut inputs = vec![self.buf(head, av)?, self.buf(head, bv)?];
                let mut bias = None;
                if let Some(c) = head.input(2) {
                    let cs = self.shape(c).to_vec();
                    let st = bcast_strides(&cs, &[m, n]);
                    bias = Some((self.buf(head, c)?, st[0], st[1], *beta));
                }
                if let Some((_, bv)) = f.bias_add {
                    let (sm, sn) = self.bias_strides(head, self.shape(bv), &out_shape).unwrap();
                    if bias.is_some() {
                        // Two biases: materialise their sum as one [m, n] constant.
                        let c = head.input(2).unwrap();
                        let ct = g.constant(c).ok_or_else(|| {
                            lower_err(
                                head,
                                "C must be constant to merge with a following bias add",
                            )
                        })?;
                        let cv = ct.to_f64_vec();
                        let cst = bcast_strides(&ct.shape, &[m, n]);
                        let av = g.constant(bv).unwrap().to_f64_vec();
                        let mut sum = vec![0f32; m * n];
                        for i in 0..m {
                            for j in 0..n {
                                sum[i * n + j] = (*beta as f64 * cv[i * cst[0] + j * cst[1]]
                                    + av[i * sm + j * sn])
                                    as f32;
                            }
                        }
                        let sb = self.add_f32_weight(sum, &format!("{}.bias", head.name));
                        bias = Some((sb, n, 1, 1.0));
                    } else {
                        bias = Some((self.buf(head, bv)?, sm, sn, 1.0));
                    }
                }
                let (has_bias, bias_stride_m, bias_stride_n, beta) = match bias {
                    Some((b, sm, sn, be)) => {
                        inputs.push(b);
                        (true, sm, sn, be)
                    }
                    None => (false, 0, 0, 0.0),
                };
                if let Some((_, r)) = f.residual {
                    inputs.push(self.buf(head, r)?);
                }
                let spec = MatMulSpec {
                    batch: vec![],
                    a_batch_strides: vec![],
                    b_batch_strides: vec![],
                    m,
                    n,
                    k,
                    lda_m,
                    lda_k,
                    ldb_k,
                    ldb_n,
                    alpha: *alpha,
                    beta,
                    has_bias,
                    bias_stride_m,
                    bias_stride_n,
                    bias_stride_batch: 0,
                    has_residual: f.residual.is_some(),
                    act,
                };
                let o = self.out_buf(out);
                self.emit(&name, KernelOp::MatMul(spec), inputs, o);
            }
            Op::MatMul => {
                let (av, bv) = (head.input(0).unwrap(), head.input(1).unwrap());
                let (as_, bs) = (self.shape(av).to_vec(), self.shape(bv).to_vec());
                let (m, k) = (as_[as_.len() - 2], as_[as_.len() - 1]);
                let n = bs[bs.len() - 1];
                let batch = broadcast(&as_[..as_.len() - 2], &bs[..bs.len() - 2])
                    .ok_or_else(|| lower_err(head, "batch dims do not broadcast"))?;
                // Operands that are transposes are read in place.
                let (asrc, ast) = self.operand_view(av);
                let (bsrc, bst) = self.operand_view(bv);
                let a_batch_strides = batch_strides_of(&as_, &ast, &batch);
                let b_batch_strides = batch_strides_of(&bs, &bst, &batch);
                let (ra, rb) = (as_.len(), bs.len());
                let (lda_m, lda_k, ldb_k, ldb_n) =
                    (ast[ra - 2], ast[ra - 1], bst[rb - 2], bst[rb - 1]);
                let mut inputs = vec![self.buf(head, asrc)?, self.buf(head, bsrc)?];
                let (mut has_bias, mut sm, mut sn) = (false, 0, 0);
                if let Some((_, bv)) = f.bias_add {
                    let (a, b) = self.bias_strides(head, self.shape(bv), &out_shape).unwrap();
                    inputs.push(self.buf(head, bv)?);
                    has_bias = true;
                    sm = a;
                    sn = b;
                }
                if let Some((_, r)) = f.residual {
                    inputs.push(self.buf(head, r)?);
                }
                let spec = MatMulSpec {
                    batch,
                    a_batch_strides,
                    b_batch_strides,
                    m,
                    n,
                    k,
                    lda_m,
                    lda_k,
                    ldb_k,
                    ldb_n,
                    alpha: 1.0,
                    beta: 1.0,
                    has_bias,
                    bias_stride_m: sm,
                    bias_stride_n: sn,
                    bias_stride_batch: 0,
                    has_residual: f.residual.is_some(),
                    act,
                };
                let o = self.out_buf(out);
                self.emit(&name, KernelOp::MatMul(spec), inputs, o);
            }
            _ => unreachable!("only conv/gemm/matmul heads are fused"),
        }
        Ok(())
    }

    /// One batched matmul for a group of sibling matmuls (see
    /// `qkv_fusion`): stacked weights `[G, K, N]` (`[G, N, K]` when
    /// transposed), biases `[G, N]`, and each member's result in its slice
    /// of one `[G, M, N]` output.
    pub(super) fn lower_siblings(&mut self, grp: &crate::qkv_fusion::Group) -> Result<()> {
        let g = self.g;
        let (k, n) = (grp.k, grp.n);
        let first = &g.nodes[grp.members[0].matmul];
        let m = numel(self.shape(grp.x)) / k.max(1);
        let mut w = Vec::with_capacity(grp.members.len() * k * n);
        let mut b = Vec::with_capacity(grp.members.len() * n);
        for mem in &grp.members {
            let t = |v: ValueId| g.constant(v).and_then(|t| t.as_f32()).map(|s| s.to_vec());
            w.extend(t(mem.weight).ok_or_else(|| lower_err(first, "weight must be f32"))?);
            b.extend(t(mem.bias).ok_or_else(|| lower_err(first, "bias must be f32"))?);
        }
        let names: Vec<&str> = grp
            .members
            .iter()
            .map(|mem| g.nodes[mem.matmul].name.as_str())
            .collect();
        let name = names.join("+");
        let wb = self.add_f32_weight(w, &format!("{name}.weight"));
        let bb = self.add_f32_weight(b, &format!("{name}.bias"));
        let xb = self.buf(first, grp.x)?;
        let count = grp.members.len();
        let root = self.new_buffer(DType::F32, count * m * n, Loc::Arena(0), &name);
        for (gi, mem) in grp.members.iter().enumerate() {
            let s = self.new_buffer(DType::F32, m * n, Loc::Arena(0), &g.values[mem.out].name);
            self.sub_of.insert(s, (root, gi * m * n * 4));
            self.value_buf.insert(mem.out, s);
        }
        let spec = MatMulSpec {
            batch: vec![count],
            a_batch_strides: vec![0],
            b_batch_strides: vec![k * n],
            m,
            n,
            k,
            lda_m: k,
            lda_k: 1,
            ldb_k: if grp.trans_b { 1 } else { n },
            ldb_n: if grp.trans_b { k } else { 1 },
            alpha: 1.0,
            beta: 1.0,
            has_bias: true,
            bias_stride_m: 0,
            bias_stride_n: 1,
            bias_stride_batch: n,
            has_residual: false,
            act: Act::None,
        };
        self.emit(&name, KernelOp::MatMul(spec), vec![xb, wb, bb], root);
        Ok(())
    }

    /// One fused attention kernel for `a` (see [`crate::attention_fusion`]);
    /// `node` names errors.
    pub(super) fn lower_attention(
        &mut self,
        node: &Node,
        a: &crate::attention_fusion::Group,
    ) -> Result<()> {
        let cs = self.shape(a.ctx).to_vec();
        let r = cs.len();
        let batch = cs[..r - 2].to_vec();
        let (bsz, heads) = match batch[..] {
            [] => (1, 1),
            [h] => (1, h),
            [b, h] => (b, h),
            _ => return Err(lower_err(node, "attention with more than two batch dims")),
        };
        // Strides over (b, h, row, col) from an operand's shape and layout.
        let four = |shape: &[usize], st: &[usize], transposed: bool| -> [usize; 4] {
            let bs = batch_strides_of(shape, st, &batch);
            let (sb, sh) = match bs[..] {
                [] => (0, 0),
                [h] => (0, h),
                [b, h, ..] => (b, h),
            };
            let n = shape.len();
            let (row, col) = (st[n - 2], st[n - 1]);
            if transposed {
                [sb, sh, col, row]
            } else {
                [sb, sh, row, col]
            }
        };
        let (qsrc, qst) = self.operand_view(a.q);
        let (ksrc, kst) = self.operand_view(a.k);
        let (vsrc, vst) = self.operand_view(a.v);
        let q_strides = four(self.shape(a.q), &qst, false);
        let k_strides = four(self.shape(a.k), &kst, true);
        let v_strides = four(self.shape(a.v), &vst, false);
        // The context element (.., i, e) in the written value's layout.
        let cst = match &a.out_perm {
            None => strides(&cs),
            Some(perm) => {
                let tst = strides(self.shape(a.out));
                let mut c = vec![0; r];
                for (k, &src) in perm.iter().enumerate() {
                    c[src] = tst[k];
                }
                c
            }
        };
        let out_strides = four(&cs, &cst, false);
        let spec = AttentionSpec {
            batch: bsz,
            heads,
            sq: cs[r - 2],
            sk: self.shape(a.k)[self.shape(a.k).len() - 1],
            d: self.shape(a.q)[self.shape(a.q).len() - 1],
            dv: cs[r - 1],
            q_strides,
            k_strides,
            v_strides,
            out_strides,
            pre: a.pre,
        };
        let mut inputs = vec![
            self.buf(node, qsrc)?,
            self.buf(node, ksrc)?,
            self.buf(node, vsrc)?,
        ];
        if let Some(m) = a.mask {
            inputs.push(self.buf(node, m)?);
        }
        let o = self.out_buf(a.out);
        self.emit(&a.name, KernelOp::Attention(spec), inputs, o);
        Ok(())
    }
}
