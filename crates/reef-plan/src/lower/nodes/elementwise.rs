//! Lowering of elementwise nodes: arithmetic and comparisons with
//! broadcasting, Not and Where, activations and unary functions, and
//! BatchNorm left unfused (a channel-affine kernel).

use super::super::*;

impl<'g> Lowerer<'g> {
    /// Lowers `node` (output `out`), one of this module's ops.
    pub(in crate::lower) fn lower_elementwise(&mut self, node: &Node, out: ValueId) -> Result<()> {
        let g = self.g;
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
            _ => return Err(lower_err(node, "not a elementwise node")),
        }
        Ok(())
    }
}
