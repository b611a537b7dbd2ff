//! Load-time validation of a plan: every buffer lies inside its memory, every
//! kernel's buffers have the types and sizes its op reads and writes, and I/O
//! bindings match their buffers. After this, kernels index without failing.

use crate::{ExecError, Result};
use reef_model::{DType, PadMode};
use reef_plan::kernel::{Kernel, KernelOp, MAX_RANK};
use reef_plan::plan::Loc;
use reef_plan::Plan;

/// What a kernel needs of one buffer.
struct Need {
    /// Elements read or written (a prefix of the buffer).
    elems: usize,
    /// Required element type, or only a required element size.
    ty: Ty,
}

#[derive(Clone, Copy)]
enum Ty {
    Is(DType),
    OneOf(&'static [DType]),
    Size(usize),
}

fn bad(kernel: &Kernel, msg: impl std::fmt::Display) -> ExecError {
    ExecError::Invalid(format!(
        "kernel '{}' ({}): {msg}",
        kernel.name,
        kernel.op.kind()
    ))
}

fn mul(xs: &[usize]) -> Option<usize> {
    xs.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

/// Elements a strided view reaches: `1 + Σ (shape_d - 1) · stride_d`, 0 if empty.
fn reach(shape: &[usize], strides: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape
        .iter()
        .zip(strides)
        .try_fold(1usize, |a, (&n, &s)| a.checked_add((n - 1).checked_mul(s)?))
}

/// Checks every buffer, binding and kernel of `plan`.
pub(crate) fn plan(plan: &Plan) -> Result<()> {
    for (i, b) in plan.buffers.iter().enumerate() {
        let bytes = b.len.checked_mul(b.dtype.size());
        let (off, limit, what) = match b.loc {
            Loc::Weight(o) => (o, plan.weights.len(), "weight blob"),
            Loc::Arena(o) => (o, plan.arena_bytes, "arena"),
        };
        if bytes
            .and_then(|n| n.checked_add(off))
            .is_none_or(|end| end > limit)
        {
            return Err(ExecError::Invalid(format!(
                "buffer {i} '{}' ({} x {:?} at {off}) exceeds the {what} ({limit} bytes)",
                b.name, b.len, b.dtype
            )));
        }
        if off % 8 != 0 {
            return Err(ExecError::Invalid(format!(
                "buffer {i} '{}' is misaligned (offset {off})",
                b.name
            )));
        }
    }
    for (kind, list) in [("input", &plan.inputs), ("output", &plan.outputs)] {
        for io in list {
            let b = plan.buffers.get(io.buffer).ok_or_else(|| {
                ExecError::Invalid(format!(
                    "{kind} '{}': buffer {} does not exist",
                    io.name, io.buffer
                ))
            })?;
            if !matches!(b.loc, Loc::Arena(_)) {
                return Err(ExecError::Invalid(format!(
                    "{kind} '{}' is not bound to the arena",
                    io.name
                )));
            }
            if b.dtype != io.dtype || mul(&io.shape) != Some(b.len) {
                return Err(ExecError::Invalid(format!(
                    "{kind} '{}' ({:?} {:?}) does not match its buffer ({} x {:?})",
                    io.name, io.dtype, io.shape, b.len, b.dtype
                )));
            }
        }
    }
    for k in &plan.kernels {
        kernel(plan, k)?;
    }
    Ok(())
}

fn kernel(plan: &Plan, k: &Kernel) -> Result<()> {
    let (ins, out) = needs(k)?;
    if ins.len() != k.inputs.len() {
        return Err(bad(
            k,
            format!("expects {} inputs, has {}", ins.len(), k.inputs.len()),
        ));
    }
    let buf = |id: usize| {
        plan.buffers
            .get(id)
            .ok_or_else(|| bad(k, format!("buffer {id} does not exist")))
    };
    let ob = buf(k.output)?;
    let Loc::Arena(out_off) = ob.loc else {
        return Err(bad(
            k,
            format!("output '{}' is in the weight blob", ob.name),
        ));
    };
    let out_end = out_off + ob.bytes();
    let check = |id: usize, need: &Need, role: &str| -> Result<()> {
        let b = buf(id)?;
        let ok = match need.ty {
            Ty::Is(d) => b.dtype == d,
            Ty::OneOf(ds) => ds.contains(&b.dtype),
            Ty::Size(s) => b.dtype.size() == s || need.elems == 0,
        };
        if !ok {
            return Err(bad(
                k,
                format!("{role} '{}' has unexpected type {:?}", b.name, b.dtype),
            ));
        }
        if b.len < need.elems {
            return Err(bad(
                k,
                format!(
                    "{role} '{}' has {} elements, needs {}",
                    b.name, b.len, need.elems
                ),
            ));
        }
        Ok(())
    };
    check(k.output, &out, "output")?;
    let same: &[usize] = match &k.op {
        KernelOp::Binary { .. } => &k.inputs,
        KernelOp::Where { .. } => k.inputs.get(1..).unwrap_or(&[]),
        _ => &[],
    };
    for &id in same {
        if buf(id)?.dtype != ob.dtype {
            return Err(bad(
                k,
                format!(
                    "operand '{}' is {:?}, output is {:?}",
                    buf(id)?.name,
                    buf(id)?.dtype,
                    ob.dtype
                ),
            ));
        }
    }
    for (i, (&id, need)) in k.inputs.iter().zip(&ins).enumerate() {
        check(id, need, &format!("input {i}"))?;
        let b = buf(id)?;
        if let Loc::Arena(off) = b.loc {
            if b.bytes() > 0 && ob.bytes() > 0 && off < out_end && out_off < off + b.bytes() {
                return Err(bad(
                    k,
                    format!("input '{}' overlaps output '{}'", b.name, ob.name),
                ));
            }
        }
    }
    Ok(())
}

const F32: Ty = Ty::Is(DType::F32);

fn f32s(n: Option<usize>) -> Option<Need> {
    Some(Need { elems: n?, ty: F32 })
}

fn typed(n: Option<usize>, dtype: DType) -> Option<Need> {
    Some(Need {
        elems: n?,
        ty: Ty::Is(dtype),
    })
}

fn sized(n: Option<usize>, es: usize) -> Option<Need> {
    Some(Need {
        elems: n?,
        ty: Ty::Size(es),
    })
}

fn rank_ok(k: &Kernel, shape: &[usize], strides: &[&[usize]]) -> Result<()> {
    if shape.len() > MAX_RANK || strides.iter().any(|s| s.len() != shape.len()) {
        return Err(bad(
            k,
            format!(
                "rank {} shape with mismatched strides (max rank {MAX_RANK})",
                shape.len()
            ),
        ));
    }
    Ok(())
}

/// The needs of the kernel's inputs (in order) and output.
fn needs(k: &Kernel) -> Result<(Vec<Need>, Need)> {
    let overflow = || bad(k, "sizes overflow");
    let r: Option<(Vec<Option<Need>>, Option<Need>)> = match &k.op {
        KernelOp::Conv(c) => {
            if c.groups == 0 || c.c % c.groups != 0 || c.k % c.groups != 0 {
                return Err(bad(
                    k,
                    format!(
                        "{} groups do not divide {} -> {} channels",
                        c.groups, c.c, c.k
                    ),
                ));
            }
            if c.stride.contains(&0) || c.dilation.contains(&0) {
                return Err(bad(k, "zero stride or dilation"));
            }
            let out = mul(&[c.n, c.k, c.oh, c.ow]);
            let mut ins = vec![
                f32s(mul(&[c.n, c.c, c.h, c.w])),
                f32s(mul(&[c.k, c.c / c.groups, c.r, c.s])),
            ];
            if c.has_bias {
                ins.push(f32s(Some(c.k)));
            }
            if c.has_residual {
                ins.push(f32s(out));
            }
            Some((ins, f32s(out)))
        }
        KernelOp::MatMul(m) => {
            if m.a_batch_strides.len() != m.batch.len() || m.b_batch_strides.len() != m.batch.len()
            {
                return Err(bad(k, "batch strides do not match the batch shape"));
            }
            let reach_op = |bs: &[usize], s_m: usize, s_k: usize, rows: usize, cols: usize| {
                let mut shape = m.batch.clone();
                shape.extend([rows, cols]);
                let mut st = bs.to_vec();
                st.extend([s_m, s_k]);
                reach(&shape, &st)
            };
            let a = reach_op(&m.a_batch_strides, m.lda_m, m.lda_k, m.m, m.k);
            let b = reach_op(&m.b_batch_strides, m.ldb_k, m.ldb_n, m.k, m.n);
            let out = mul(&[m.batch_count(), m.m, m.n]);
            let mut ins = vec![f32s(a), f32s(b)];
            if m.has_bias {
                ins.push(f32s(reach(
                    &[m.batch_count(), m.m, m.n],
                    &[m.bias_stride_batch, m.bias_stride_m, m.bias_stride_n],
                )));
            }
            if m.has_residual {
                ins.push(f32s(out));
            }
            Some((ins, f32s(out)))
        }
        KernelOp::Attention(a) => {
            let out = a.out_elems();
            if out != Some(0) && a.sk == 0 {
                return Err(bad(k, "attention over zero keys"));
            }
            if !a.out_is_dense() {
                return Err(bad(
                    k,
                    format!(
                        "output strides {:?} overlap or leave gaps in [{}, {}, {}, {}]",
                        a.out_strides, a.batch, a.heads, a.sq, a.dv
                    ),
                ));
            }
            let op = |st: &[usize; 4], rows: usize, cols: usize| {
                reach(&[a.batch, a.heads, rows, cols], st)
            };
            let mut ins = vec![
                f32s(op(&a.q_strides, a.sq, a.d)),
                f32s(op(&a.k_strides, a.sk, a.d)),
                f32s(op(&a.v_strides, a.sk, a.dv)),
            ];
            if let Some(m) = &a.pre.mask {
                let rows = mul(&[a.batch, a.heads, a.sq]);
                ins.push(f32s(rows.map(|r| m.extent(r, a.sk))));
            }
            Some((ins, f32s(out)))
        }
        KernelOp::Pool(p) => {
            if p.stride.contains(&0) || p.dilation.contains(&0) || p.kernel.contains(&0) {
                return Err(bad(k, "zero window, stride or dilation"));
            }
            Some((
                vec![f32s(mul(&[p.n, p.c, p.h, p.w]))],
                f32s(mul(&[p.n, p.c, p.oh, p.ow])),
            ))
        }
        KernelOp::ChannelAffine {
            outer, c, inner, ..
        } => {
            let n = mul(&[*outer, *c, *inner]);
            Some((vec![f32s(n), f32s(Some(*c)), f32s(Some(*c))], f32s(n)))
        }
        KernelOp::Binary {
            shape,
            a_strides,
            b_strides,
            ..
        } => {
            rank_ok(k, shape, &[a_strides, b_strides])?;
            let ty = Ty::OneOf(&[DType::F32, DType::I64]);
            let need = |n: Option<usize>| Some(Need { elems: n?, ty });
            Some((
                vec![need(reach(shape, a_strides)), need(reach(shape, b_strides))],
                need(mul(shape)),
            ))
        }
        KernelOp::Compare {
            dtype,
            shape,
            a_strides,
            b_strides,
            ..
        } => {
            rank_ok(k, shape, &[a_strides, b_strides])?;
            if !matches!(dtype, DType::F32 | DType::I64 | DType::Bool) {
                return Err(bad(k, format!("compare of {dtype:?} operands")));
            }
            Some((
                vec![
                    typed(reach(shape, a_strides), *dtype),
                    typed(reach(shape, b_strides), *dtype),
                ],
                typed(mul(shape), DType::Bool),
            ))
        }
        KernelOp::Where {
            shape,
            c_strides,
            a_strides,
            b_strides,
        } => {
            rank_ok(k, shape, &[c_strides, a_strides, b_strides])?;
            let ty = Ty::OneOf(&[DType::F32, DType::I32, DType::I64]);
            let need = |n: Option<usize>| Some(Need { elems: n?, ty });
            Some((
                vec![
                    typed(reach(shape, c_strides), DType::Bool),
                    need(reach(shape, a_strides)),
                    need(reach(shape, b_strides)),
                ],
                need(mul(shape)),
            ))
        }
        KernelOp::Unary { n, .. } => Some((vec![f32s(Some(*n))], f32s(Some(*n)))),
        KernelOp::Not { n } => Some((
            vec![typed(Some(*n), DType::Bool)],
            typed(Some(*n), DType::Bool),
        )),
        KernelOp::Copy {
            shape,
            offset,
            strides,
            elem_size,
        } => {
            if !matches!(elem_size, 1 | 4 | 8) {
                return Err(bad(k, format!("element size {elem_size}")));
            }
            if shape.len() > MAX_RANK || strides.len() != shape.len() {
                return Err(bad(k, "shape and strides do not match"));
            }
            let n = mul(shape).ok_or_else(overflow)?;
            let mut reach_in = 0usize;
            if n > 0 {
                let (mut lo, mut hi) = (*offset as i128, *offset as i128);
                for (&d, &s) in shape.iter().zip(strides) {
                    let span = (d as i128 - 1) * s as i128;
                    if span < 0 {
                        lo += span;
                    } else {
                        hi += span;
                    }
                }
                if lo < 0 {
                    return Err(bad(k, "strided read before the start of its input"));
                }
                reach_in = usize::try_from(hi + 1).map_err(|_| overflow())?;
            }
            Some((
                vec![sized(Some(reach_in), *elem_size)],
                sized(Some(n), *elem_size),
            ))
        }
        KernelOp::Concat {
            outer,
            inner,
            lens,
            elem_size,
        } => {
            let total = lens.iter().try_fold(0usize, |a, &b| a.checked_add(b));
            let ins = lens
                .iter()
                .map(|&l| sized(mul(&[*outer, l, *inner]), *elem_size))
                .collect();
            Some((
                ins,
                sized(total.and_then(|t| mul(&[*outer, t, *inner])), *elem_size),
            ))
        }
        KernelOp::Gather {
            outer,
            axis_len,
            count,
            inner,
            elem_size,
        } => Some((
            vec![
                sized(mul(&[*outer, *axis_len, *inner]), *elem_size),
                typed(Some(*count), DType::I64),
            ],
            sized(mul(&[*outer, *count, *inner]), *elem_size),
        )),
        KernelOp::GatherElements {
            shape,
            data_shape,
            axis,
            elem_size,
        } => {
            if !matches!(elem_size, 1 | 4 | 8) {
                return Err(bad(k, format!("element size {elem_size}")));
            }
            let r = shape.len();
            if r == 0 || r > MAX_RANK || data_shape.len() != r || *axis >= r {
                return Err(bad(
                    k,
                    format!(
                        "shape {shape:?}, data shape {data_shape:?} and axis {axis} do not fit"
                    ),
                ));
            }
            if (0..r).any(|d| d != *axis && shape[d] > data_shape[d]) {
                return Err(bad(
                    k,
                    format!("indices {shape:?} reach past data {data_shape:?} off the axis"),
                ));
            }
            let n = mul(shape);
            Some((
                vec![sized(mul(data_shape), *elem_size), typed(n, DType::I64)],
                sized(n, *elem_size),
            ))
        }
        KernelOp::Pad {
            shape,
            in_shape,
            pads_begin,
            mode,
            ..
        } => {
            if shape.len() != in_shape.len()
                || pads_begin.len() != shape.len()
                || shape.len() > MAX_RANK
            {
                return Err(bad(k, "shape, input shape and pads differ in rank"));
            }
            let out = mul(shape);
            if *mode != PadMode::Constant && out != Some(0) && in_shape.contains(&0) {
                return Err(bad(k, "reflect/edge padding of an empty input"));
            }
            Some((vec![f32s(mul(in_shape))], f32s(out)))
        }
        KernelOp::ArgExtreme {
            outer, len, inner, ..
        } => {
            if *len == 0 {
                return Err(bad(k, "ArgMax / ArgMin over an empty axis"));
            }
            Some((
                vec![f32s(mul(&[*outer, *len, *inner]))],
                typed(mul(&[*outer, *inner]), DType::I64),
            ))
        }
        KernelOp::Resize {
            shape,
            in_shape,
            scales,
            mode,
            ..
        } => {
            let r = shape.len();
            if in_shape.len() != r || scales.len() != r || r > MAX_RANK {
                return Err(bad(k, "shape, input shape and scales differ in rank"));
            }
            if scales.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
                return Err(bad(k, format!("invalid scales {scales:?}")));
            }
            let out = mul(shape);
            if out != Some(0) && in_shape.contains(&0) {
                return Err(bad(k, "resize of an empty input"));
            }
            let axes = reef_plan::kernel::resized_axes(shape, in_shape, scales);
            if *mode == reef_model::resize::ResizeMode::Linear && axes.len() > 2 {
                return Err(bad(k, "linear resize of more than two axes"));
            }
            Some((vec![f32s(mul(in_shape))], f32s(out)))
        }
        KernelOp::Softmax {
            outer,
            axis,
            inner,
            pre,
        } => {
            let n = mul(&[*outer, *axis, *inner]);
            let mut ins = vec![f32s(n)];
            if pre.mask.is_some() || pre.scale.is_some() {
                if *inner != 1 {
                    return Err(bad(k, "a softmax prologue needs the last axis (inner 1)"));
                }
                if let Some(m) = &pre.mask {
                    ins.push(f32s(Some(m.extent(*outer, *axis))));
                }
            }
            Some((ins, f32s(n)))
        }
        KernelOp::LayerNorm { rows, cols, .. } => {
            let n = mul(&[*rows, *cols]);
            Some((vec![f32s(n), f32s(Some(*cols)), f32s(Some(*cols))], f32s(n)))
        }
        KernelOp::Reduce {
            outer, len, inner, ..
        } => Some((
            vec![f32s(mul(&[*outer, *len, *inner]))],
            f32s(mul(&[*outer, *inner])),
        )),
        KernelOp::Cast { from, to, n } => {
            for d in [from, to] {
                if !matches!(d, DType::F32 | DType::I64 | DType::I32 | DType::Bool) {
                    return Err(ExecError::Unsupported(format!(
                        "kernel '{}': cast of {d:?}",
                        k.name
                    )));
                }
            }
            Some((vec![typed(Some(*n), *from)], typed(Some(*n), *to)))
        }
    };
    let (ins, out) = r.ok_or_else(overflow)?;
    let ins = ins
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(overflow)?;
    Ok((ins, out.ok_or_else(overflow)?))
}
