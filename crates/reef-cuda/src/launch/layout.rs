//! Launch descriptors of the data-movement kernels: strided copies, concatenation, Gather and
//! GatherElements.

use super::*;

impl Builder<'_> {
    /// The launch of kernel `io.k`, one of this module's ops.
    pub(super) fn layout(&mut self, io: &Io, op: &KernelOp) -> Result<Launch, ExecError> {
        let (k, out_id) = (io.k, io.out_id);
        let expect_inputs = |n: usize| io.expect_inputs(n);
        match op {
            KernelOp::Copy {
                shape,
                offset,
                strides,
                elem_size,
            } => {
                expect_inputs(1)?;
                check_esz(k, *elem_size)?;
                if shape.len() > MAX_RANK || strides.len() != shape.len() {
                    return Err(invalid(k, "bad Copy rank"));
                }
                let total: u64 = shape.iter().map(|&d| u(d)).product();
                let (mut lo, mut hi) = (*offset as i128, *offset as i128);
                for (&d, &s) in shape.iter().zip(strides) {
                    let span = (d.saturating_sub(1) as i128) * s as i128;
                    if span < 0 {
                        lo += span;
                    } else {
                        hi += span;
                    }
                }
                let x_id = self.input(k, 0)?;
                let x = if total == 0 {
                    self.raw(k, x_id, *elem_size, 0)?
                } else {
                    if lo < 0 {
                        return Err(invalid(k, "Copy reads before its input"));
                    }
                    let need = u64::try_from(hi + 1).map_err(|_| invalid(k, "Copy span"))?;
                    self.raw(k, x_id, *elem_size, need)?
                };
                let out = self.raw(k, out_id, *elem_size, total)?;
                let tiles = ew_tiles(k, total)?;
                let shape32: Vec<i32> = shape
                    .iter()
                    .map(|&d| to_i32(k, "shape", d))
                    .collect::<Result<_, _>>()?;
                let p = CopyParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    offset: *offset,
                    strides: right_align(strides, 0),
                    shape: right_align(&shape32, 1),
                    esz: *elem_size as i32,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::Copy,
                    tiles,
                    params: Params::Copy(p),
                })
            }
            KernelOp::Concat {
                outer,
                inner,
                lens,
                elem_size,
            } => {
                check_esz(k, *elem_size)?;
                if lens.is_empty() {
                    return Err(invalid(k, "Concat of nothing"));
                }
                expect_inputs(lens.len())?;
                let total_len: usize = lens.iter().sum();
                let total = u(*outer) * u(total_len) * u(*inner);
                let out = self.raw(k, out_id, *elem_size, total)?;
                let table_off = self.table.len();
                let mut starts = Vec::with_capacity(lens.len() + 1);
                let mut acc = 0i64;
                for (i, &len) in lens.iter().enumerate() {
                    let ptr = self.raw(
                        k,
                        self.input(k, i)?,
                        *elem_size,
                        u(*outer) * u(len) * u(*inner),
                    )?;
                    self.table.push(ptr);
                    starts.push(acc);
                    acc += len as i64;
                }
                starts.push(acc);
                self.table.extend(starts.iter().map(|&s| s as u64));
                let tiles = ew_tiles(k, total)?;
                let p = ConcatParams {
                    hdr: self.hdr(k, tiles),
                    table: self.addr.table + 8 * table_off as u64,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    inner: to_i32(k, "inner", (*inner).max(1))?,
                    total_len: to_i32(k, "concat length", total_len.max(1))?,
                    nparts: to_i32(k, "parts", lens.len())?,
                    esz: *elem_size as i32,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::Concat,
                    tiles,
                    params: Params::Concat(p),
                })
            }
            KernelOp::Gather {
                outer,
                axis_len,
                count,
                inner,
                elem_size,
            } => {
                expect_inputs(2)?;
                check_esz(k, *elem_size)?;
                let total = u(*outer) * u(*count) * u(*inner);
                let x = self.raw(
                    k,
                    self.input(k, 0)?,
                    *elem_size,
                    u(*outer) * u(*axis_len) * u(*inner),
                )?;
                let idx = self.buf(k, self.input(k, 1)?, DType::I64, u(*count))?;
                let out = self.raw(k, out_id, *elem_size, total)?;
                let tiles = ew_tiles(k, total)?;
                let p = GatherParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    idx,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    axis_len: to_i32(k, "axis", *axis_len)?,
                    count: to_i32(k, "count", (*count).max(1))?,
                    inner: to_i32(k, "inner", (*inner).max(1))?,
                    esz: *elem_size as i32,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::Gather,
                    tiles,
                    params: Params::Gather(p),
                })
            }
            KernelOp::GatherElements {
                shape,
                data_shape,
                axis,
                elem_size,
            } => {
                expect_inputs(2)?;
                check_esz(k, *elem_size)?;
                let r = shape.len();
                if r == 0 || r > MAX_RANK || data_shape.len() != r || *axis >= r {
                    return Err(invalid(k, "bad GatherElements rank or axis"));
                }
                if (0..r).any(|d| d != *axis && shape[d] > data_shape[d]) {
                    return Err(invalid(k, "GatherElements indices reach past the data"));
                }
                let total: u64 = shape.iter().map(|&d| u(d)).product();
                let in_total: u64 = data_shape.iter().map(|&d| u(d)).product();
                let x = self.raw(k, self.input(k, 0)?, *elem_size, in_total)?;
                let idx = self.buf(k, self.input(k, 1)?, DType::I64, total)?;
                let out = self.raw(k, out_id, *elem_size, total)?;
                let tiles = ew_tiles(k, total)?;
                let shape32: Vec<i32> = shape
                    .iter()
                    .map(|&d| to_i32(k, "shape", d))
                    .collect::<Result<_, _>>()?;
                let strides: Vec<i64> = reef_model::tensor::strides(data_shape)
                    .iter()
                    .map(|&s| s as i64)
                    .collect();
                let p = GatherElementsParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    idx,
                    out,
                    strides: right_align(&strides, 0),
                    shape: right_align(&shape32, 1),
                    axis: to_i32(k, "axis", MAX_RANK - r + *axis)?,
                    axis_len: to_i32(k, "axis", data_shape[*axis])?,
                    esz: *elem_size as i32,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::GatherElements,
                    tiles,
                    params: Params::GatherElements(p),
                })
            }
            _ => Err(invalid(k, "not a layout kernel")),
        }
    }
}
