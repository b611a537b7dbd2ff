//! Launch descriptors of the elementwise kernels: per-channel affine maps, broadcasting binary ops,
//! comparisons and selects, unary maps and casts.

use super::*;

impl Builder<'_> {
    /// The launch of kernel `io.k`, one of this module's ops.
    pub(super) fn elementwise(&mut self, io: &Io, op: &KernelOp) -> Result<Launch, ExecError> {
        let (k, out_id) = (io.k, io.out_id);
        let expect_inputs = |n: usize| io.expect_inputs(n);
        let f32_ = DType::F32;
        match op {
            KernelOp::ChannelAffine {
                outer,
                c,
                inner,
                act,
            } => {
                expect_inputs(3)?;
                let total = u(*outer) * u(*c) * u(*inner);
                let x = self.buf(k, self.input(k, 0)?, f32_, total)?;
                let scale = self.buf(k, self.input(k, 1)?, f32_, u(*c))?;
                let shift = self.buf(k, self.input(k, 2)?, f32_, u(*c))?;
                let out = self.buf(k, out_id, f32_, total)?;
                let tiles = ew_tiles(k, total)?;
                let (act, act_lo, act_hi) = act_code(*act);
                let p = AffineParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    scale,
                    shift,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    c: to_i32(k, "c", (*c).max(1))?,
                    inner: to_i32(k, "inner", (*inner).max(1))?,
                    act,
                    act_lo,
                    act_hi,
                    total: total as u32,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::ChannelAffine,
                    tiles,
                    params: Params::Affine(p),
                })
            }
            KernelOp::Binary {
                op,
                shape,
                a_strides,
                b_strides,
                act,
            } => {
                expect_inputs(2)?;
                let op = match op {
                    BinOp::Add => 0,
                    BinOp::Sub => 1,
                    BinOp::Mul => 2,
                    BinOp::Div => 3,
                    BinOp::Pow => 4,
                    BinOp::Min => 5,
                    BinOp::Max => 6,
                    BinOp::PRelu => 7,
                };
                let ops = [(0, f32_, a_strides), (1, f32_, b_strides)];
                let mut p = self.bcast(k, shape, &ops, out_id, f32_)?;
                let (act, act_lo, act_hi) = act_code(*act);
                (p.op, p.act, p.act_lo, p.act_hi) = (op, act, act_lo, act_hi);
                Ok(Launch {
                    family: Family::Binary,
                    tiles: p.hdr.tiles,
                    params: Params::Bcast(p),
                })
            }
            KernelOp::Compare {
                op,
                dtype,
                shape,
                a_strides,
                b_strides,
            } => {
                expect_inputs(2)?;
                let dcode = match dtype {
                    DType::F32 => 0,
                    DType::I64 => 1,
                    DType::Bool => 2,
                    other => {
                        return Err(ExecError::Unsupported(format!(
                            "kernel {k}: Compare on {other:?}"
                        )))
                    }
                };
                let ops = [(0, *dtype, a_strides), (1, *dtype, b_strides)];
                let mut p = self.bcast(k, shape, &ops, out_id, DType::Bool)?;
                p.op = match op {
                    CmpOp::Equal => 0,
                    CmpOp::Less => 1,
                    CmpOp::Greater => 2,
                    CmpOp::GreaterOrEqual => 3,
                    CmpOp::LessOrEqual => 4,
                    CmpOp::And => 5,
                    CmpOp::Or => 6,
                    CmpOp::Xor => 7,
                };
                p.dtype = dcode;
                Ok(Launch {
                    family: Family::Compare,
                    tiles: p.hdr.tiles,
                    params: Params::Bcast(p),
                })
            }
            KernelOp::Where {
                shape,
                c_strides,
                a_strides,
                b_strides,
            } => {
                expect_inputs(3)?;
                let ops = [
                    (0, DType::Bool, c_strides),
                    (1, f32_, a_strides),
                    (2, f32_, b_strides),
                ];
                let p = self.bcast(k, shape, &ops, out_id, f32_)?;
                Ok(Launch {
                    family: Family::Where,
                    tiles: p.hdr.tiles,
                    params: Params::Bcast(p),
                })
            }
            KernelOp::Unary { op, n } => {
                expect_inputs(1)?;
                let (code, a) = match op {
                    UnaryOp::Act(a) => (0, *a),
                    UnaryOp::Erf => (1, reef_model::Act::None),
                    UnaryOp::Sqrt => (2, reef_model::Act::None),
                    UnaryOp::Exp => (3, reef_model::Act::None),
                    UnaryOp::Neg => (4, reef_model::Act::None),
                    UnaryOp::Fn(f) => (unary_fn_code(*f), reef_model::Act::None),
                };
                let mut p = self.map(k, u(*n), (f32_, f32_))?;
                let (act, act_lo, act_hi) = act_code(a);
                (p.op, p.act, p.act_lo, p.act_hi) = (code, act, act_lo, act_hi);
                Ok(Launch {
                    family: Family::Unary,
                    tiles: p.hdr.tiles,
                    params: Params::Map(p),
                })
            }
            KernelOp::Not { n } => {
                expect_inputs(1)?;
                let p = self.map(k, u(*n), (DType::Bool, DType::Bool))?;
                Ok(Launch {
                    family: Family::Not,
                    tiles: p.hdr.tiles,
                    params: Params::Map(p),
                })
            }
            KernelOp::Cast { from, to, n } => {
                expect_inputs(1)?;
                let code = |d: &DType| -> Result<i32, ExecError> {
                    match d {
                        DType::F32 => Ok(0),
                        DType::I64 => Ok(1),
                        DType::I32 => Ok(2),
                        DType::Bool => Ok(3),
                        other => Err(ExecError::Unsupported(format!(
                            "kernel {k}: Cast involving {other:?}"
                        ))),
                    }
                };
                let (fc, tc) = (code(from)?, code(to)?);
                let mut p = self.map(k, u(*n), (*from, *to))?;
                (p.from, p.to) = (fc, tc);
                Ok(Launch {
                    family: Family::Cast,
                    tiles: p.hdr.tiles,
                    params: Params::Map(p),
                })
            }
            _ => Err(invalid(k, "not a elementwise kernel")),
        }
    }

    /// Shared part of the broadcasting families: operands `(input, dtype, strides)`.
    fn bcast(
        &self,
        k: usize,
        shape: &[usize],
        operands: &[(usize, DType, &Vec<usize>)],
        out_id: BufferId,
        out_dtype: DType,
    ) -> Result<BcastParams, ExecError> {
        let r = shape.len();
        if r > MAX_RANK {
            return Err(ExecError::Unsupported(format!(
                "kernel {k}: rank {r} > {MAX_RANK}"
            )));
        }
        let total: u64 = shape.iter().map(|&d| d as u64).product();
        let mut ptrs = [0u64; 3];
        let mut strides = [[0i32; MAX_RANK]; 3];
        for (slot, &(input, dtype, st)) in operands.iter().enumerate() {
            if st.len() != r {
                return Err(invalid(
                    k,
                    format!("operand {input} has {} strides for rank {r}", st.len()),
                ));
            }
            let need = if total == 0 {
                0
            } else {
                shape
                    .iter()
                    .zip(st.iter())
                    .map(|(&d, &s)| (d as u64 - 1) * s as u64)
                    .sum::<u64>()
                    + 1
            };
            ptrs[slot] = self.buf(k, self.input(k, input)?, dtype, need)?;
            let st32: Vec<i32> = st
                .iter()
                .map(|&s| to_i32(k, "stride", s))
                .collect::<Result<_, _>>()?;
            strides[slot] = right_align(&st32, 0);
        }
        let shape32: Vec<i32> = shape
            .iter()
            .map(|&d| to_i32(k, "shape", d))
            .collect::<Result<_, _>>()?;
        let out = self.buf(k, out_id, out_dtype, total)?;
        let tiles = ew_tiles(k, total)?;
        // Slot order: binary/compare use (a, b); where uses (cond, a, b).
        let (a, b, c, sa, sb, sc) = if operands.len() == 3 {
            (
                ptrs[1], ptrs[2], ptrs[0], strides[1], strides[2], strides[0],
            )
        } else {
            (ptrs[0], ptrs[1], 0, strides[0], strides[1], [0; MAX_RANK])
        };
        Ok(BcastParams {
            hdr: self.hdr(k, tiles),
            a,
            b,
            c,
            out,
            shape: right_align(&shape32, 1),
            sa,
            sb,
            sc,
            op: 0,
            dtype: 0,
            act: 0,
            act_lo: 0.0,
            act_hi: 0.0,
            total: to_u32(k, total)?,
        })
    }

    /// Shared part of the one-input maps over `n` elements.
    fn map(&self, k: usize, n: u64, (from, to): (DType, DType)) -> Result<MapParams, ExecError> {
        let x = self.buf(k, self.input(k, 0)?, from, n)?;
        let out = self.buf(k, self.plan.kernels[k].output, to, n)?;
        let tiles = ew_tiles(k, n)?;
        Ok(MapParams {
            hdr: self.hdr(k, tiles),
            x,
            out,
            total: to_u32(k, n)?,
            ..Default::default()
        })
    }
}
