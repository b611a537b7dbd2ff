//! Launch descriptors of the kernels over rows: softmax (with its prologue), fused attention,
//! layer normalisation, reductions and arg max / min.

use super::*;

impl Builder<'_> {
    /// The launch of kernel `io.k`, one of this module's ops.
    pub(super) fn rows(&mut self, io: &Io, op: &KernelOp) -> Result<Launch, ExecError> {
        let (k, out_id) = (io.k, io.out_id);
        let expect_inputs = |n: usize| io.expect_inputs(n);
        let f32_ = DType::F32;
        match op {
            KernelOp::Softmax {
                outer,
                axis,
                inner,
                pre,
            } => {
                expect_inputs(1 + pre.mask.is_some() as usize)?;
                if (pre.mask.is_some() || pre.scale.is_some()) && *inner != 1 {
                    return Err(invalid(k, "a softmax prologue needs the last axis"));
                }
                let rows = u(*outer) * u(*inner);
                let total = rows * u(*axis);
                if total == 0 {
                    return Ok(self.noop(k));
                }
                let x = self.buf(k, self.input(k, 0)?, f32_, total)?;
                let out = self.buf(k, out_id, f32_, total)?;
                let (mask, md) = match &pre.mask {
                    Some(m) => {
                        let need = u(m.extent(*outer, *axis));
                        (self.buf(k, self.input(k, 1)?, f32_, need)?, *m)
                    }
                    None => (0, NO_MASK),
                };
                let pre = prologue(k, pre, &md)?;
                let tiles = tiles_for(k, rows)?;
                let p = SoftmaxParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    mask,
                    outer: to_i32(k, "outer", *outer)?,
                    axis: to_i32(k, "axis", *axis)?,
                    inner: to_i32(k, "inner", *inner)?,
                    pre,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::Softmax,
                    tiles,
                    params: Params::Softmax(p),
                })
            }
            KernelOp::Attention(a) => {
                expect_inputs(3 + a.pre.mask.is_some() as usize)?;
                let Some(total) = a.out_elems() else {
                    return Err(invalid(k, "attention output size overflows"));
                };
                if total == 0 {
                    return Ok(self.noop(k));
                }
                if a.sk == 0 || a.d == 0 || a.d > ATTENTION_MAX_D || a.dv > ATTENTION_MAX_D {
                    return Err(invalid(
                        k,
                        format!(
                            "attention over {} keys of length {} / {} (1 key at least, rows of 1 to {ATTENTION_MAX_D})",
                            a.sk, a.d, a.dv
                        ),
                    ));
                }
                if !a.out_is_dense() {
                    return Err(invalid(k, "attention output strides overlap"));
                }
                // Elements an operand of `rows x cols` per problem reaches.
                let need = |st: &[usize; 4], rows: usize, cols: usize| -> u64 {
                    let dims = [a.batch, a.heads, rows, cols];
                    reach(&std::array::from_fn::<_, 4, _>(|i| (dims[i], st[i])))
                };
                let q = self.buf(k, self.input(k, 0)?, f32_, need(&a.q_strides, a.sq, a.d))?;
                let kb = self.buf(k, self.input(k, 1)?, f32_, need(&a.k_strides, a.sk, a.d))?;
                let v = self.buf(k, self.input(k, 2)?, f32_, need(&a.v_strides, a.sk, a.dv))?;
                let out = self.buf(k, out_id, f32_, u(total))?;
                let rows = a.batch * a.heads * a.sq;
                let (mask, md) = match &a.pre.mask {
                    Some(m) => {
                        let need = u(m.extent(rows, a.sk));
                        (self.buf(k, self.input(k, 3)?, f32_, need)?, *m)
                    }
                    None => (0, NO_MASK),
                };
                let pre = prologue(k, &a.pre, &md)?;
                // Half-height tiles where full ones would not fill every SM
                // twice (batch-1 BERT: 48 full tiles on 132 SMs).
                let problems = u(a.batch * a.heads);
                let full = problems * u(a.sq).div_ceil(ATTENTION_ROWS);
                let tile_rows = if full < 2 * u(self.sms as usize) {
                    ATTENTION_ROWS / 2
                } else {
                    ATTENTION_ROWS
                };
                let row_blocks = u(a.sq).div_ceil(tile_rows);
                let tiles = tiles_for(k, problems * row_blocks)?;
                let strides = |st: &[usize; 4], what: &str| -> Result<[i64; 4], ExecError> {
                    let mut r = [0i64; 4];
                    for (d, &x) in r.iter_mut().zip(st) {
                        *d = i64::try_from(x)
                            .map_err(|_| invalid(k, format!("{what} stride {x}")))?;
                    }
                    Ok(r)
                };
                let p = AttentionParams {
                    hdr: self.hdr(k, tiles),
                    q,
                    k: kb,
                    v,
                    mask,
                    out,
                    qs: strides(&a.q_strides, "Q")?,
                    ks: strides(&a.k_strides, "K")?,
                    vs: strides(&a.v_strides, "V")?,
                    os: strides(&a.out_strides, "output")?,
                    heads: to_i32(k, "heads", a.heads)?,
                    sq: to_i32(k, "query rows", a.sq)?,
                    sk: to_i32(k, "keys", a.sk)?,
                    d: to_i32(k, "key length", a.d)?,
                    dv: to_i32(k, "value length", a.dv)?,
                    row_blocks: to_i32(k, "row blocks", row_blocks)?,
                    tile_rows: tile_rows as i32,
                    pre,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::Attention,
                    tiles,
                    params: Params::Attention(p),
                })
            }
            KernelOp::LayerNorm { rows, cols, eps } => {
                expect_inputs(3)?;
                let total = u(*rows) * u(*cols);
                if total == 0 {
                    return Ok(self.noop(k));
                }
                let x = self.buf(k, self.input(k, 0)?, f32_, total)?;
                let gamma = self.buf(k, self.input(k, 1)?, f32_, u(*cols))?;
                let beta = self.buf(k, self.input(k, 2)?, f32_, u(*cols))?;
                let out = self.buf(k, out_id, f32_, total)?;
                let tiles = tiles_for(k, u(*rows))?;
                let p = LayerNormParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    gamma,
                    beta,
                    out,
                    rows: to_i32(k, "rows", *rows)?,
                    cols: to_i32(k, "cols", *cols)?,
                    eps: *eps,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::LayerNorm,
                    tiles,
                    params: Params::LayerNorm(p),
                })
            }
            KernelOp::Reduce {
                kind,
                outer,
                len,
                inner,
            } => {
                expect_inputs(1)?;
                let rows = u(*outer) * u(*inner);
                if rows == 0 {
                    return Ok(self.noop(k));
                }
                let x = self.buf(k, self.input(k, 0)?, f32_, rows * u(*len))?;
                let out = self.buf(k, out_id, f32_, rows)?;
                let tiles = tiles_for(k, rows)?;
                let p = ReduceParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    len: to_i32(k, "len", *len)?,
                    inner: to_i32(k, "inner", *inner)?,
                    kind: match kind {
                        ReduceKind::Mean => 0,
                        ReduceKind::Max => 1,
                        ReduceKind::Min => 2,
                        ReduceKind::Sum => 3,
                        ReduceKind::SumSquare => 4,
                        ReduceKind::SumAbs => 5,
                        ReduceKind::L2 => 6,
                        ReduceKind::SqrtSum => 7,
                    },
                };
                Ok(Launch {
                    family: Family::Reduce,
                    tiles,
                    params: Params::Reduce(p),
                })
            }
            KernelOp::ArgExtreme {
                max,
                last,
                outer,
                len,
                inner,
            } => {
                expect_inputs(1)?;
                let rows = u(*outer) * u(*inner);
                if rows == 0 {
                    return Ok(self.noop(k));
                }
                if *len == 0 {
                    return Err(invalid(k, "ArgMax / ArgMin over an empty axis"));
                }
                let x = self.buf(k, self.input(k, 0)?, f32_, rows * u(*len))?;
                let out = self.buf(k, out_id, DType::I64, rows)?;
                let tiles = tiles_for(k, rows)?;
                let p = ArgExtremeParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    len: to_i32(k, "len", *len)?,
                    inner: to_i32(k, "inner", *inner)?,
                    flags: i32::from(*max) | (i32::from(*last) << 1),
                };
                Ok(Launch {
                    family: Family::ArgExtreme,
                    tiles,
                    params: Params::ArgExtreme(p),
                })
            }
            _ => Err(invalid(k, "not a rows kernel")),
        }
    }
}
