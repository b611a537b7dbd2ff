//! The CPU implementations of every [`KernelOp`], and the dispatch from a
//! plan's kernel to them.

mod attention;
mod conv;
mod elementwise;
mod layout;
mod matmul;
mod norm;
mod pool;
mod resize;

use super::memory::{kernel_io, typed, typed_mut};
use super::tiles::Stop;
use crate::{ExecError, Result};
use reef_model::DType;
use reef_plan::kernel::KernelOp;
use reef_plan::Plan;

/// Runs kernel `index` of `plan` over `weights` and `arena` (byte views),
/// checking `stop` before starting and before each tile (RT launches pass a
/// check that never fires). With `tf32`, the GEMMs that run on TF32 tensor
/// cores on the GPU round their operands to TF32 (see
/// [`CpuDevice::with_tf32`](crate::cpu::CpuDevice::with_tf32)). Returns
/// whether the kernel completed.
pub(crate) fn run(
    plan: &Plan,
    index: usize,
    weights: &[u8],
    arena: &mut [u8],
    stop: &Stop,
    tf32: bool,
) -> Result<bool> {
    let kernel = plan.kernels.get(index).ok_or_else(|| {
        ExecError::Invalid(format!(
            "kernel {index} out of range ({} kernels)",
            plan.kernels.len()
        ))
    })?;
    if stop.should_stop() {
        return Ok(false);
    }
    let io = kernel_io(plan, kernel, weights, arena)?;
    let ins = &io.inputs;
    let out = io.output;
    let f = |i: usize| -> Result<&[f32]> { typed::<f32>(ins[i]) };
    let opt = |has: bool, i: usize| -> Result<Option<&[f32]>> {
        if has {
            f(i).map(Some)
        } else {
            Ok(None)
        }
    };
    let out_dtype = plan.buffers[kernel.output].dtype;
    match &kernel.op {
        KernelOp::Conv(c) => {
            let bias = opt(c.has_bias, 2)?;
            let res = opt(c.has_residual, 2 + usize::from(c.has_bias))?;
            conv::conv(c, f(0)?, f(1)?, bias, res, typed_mut(out)?, stop, tf32);
        }
        KernelOp::MatMul(m) => {
            let bias = opt(m.has_bias, 2)?;
            let res = opt(m.has_residual, 2 + usize::from(m.has_bias))?;
            matmul::matmul(m, f(0)?, f(1)?, bias, res, typed_mut(out)?, stop, tf32);
        }
        KernelOp::Attention(a) => {
            let mask = if a.pre.mask.is_some() { f(3)? } else { &[] };
            attention::attention(a, [f(0)?, f(1)?, f(2)?, mask], typed_mut(out)?, stop);
        }
        KernelOp::Pool(p) => pool::pool(p, f(0)?, typed_mut(out)?, stop),
        KernelOp::ChannelAffine {
            outer,
            c,
            inner,
            act,
        } => elementwise::channel_affine(
            [*outer, *c, *inner],
            *act,
            f(0)?,
            f(1)?,
            f(2)?,
            typed_mut(out)?,
            stop,
        ),
        KernelOp::Binary {
            op,
            shape,
            a_strides,
            b_strides,
            act,
        } => match out_dtype {
            DType::I64 => elementwise::binary_i64(
                *op,
                shape,
                a_strides,
                b_strides,
                typed(ins[0])?,
                typed(ins[1])?,
                typed_mut(out)?,
                stop,
            ),
            _ => elementwise::binary_f32(
                *op,
                *act,
                shape,
                a_strides,
                b_strides,
                f(0)?,
                f(1)?,
                typed_mut(out)?,
                stop,
            ),
        },
        KernelOp::Compare {
            op,
            dtype,
            shape,
            a_strides,
            b_strides,
        } => match dtype {
            DType::I64 => elementwise::compare::<i64>(
                *op,
                shape,
                a_strides,
                b_strides,
                typed(ins[0])?,
                typed(ins[1])?,
                out,
                stop,
            ),
            DType::Bool => elementwise::compare::<u8>(
                *op, shape, a_strides, b_strides, ins[0], ins[1], out, stop,
            ),
            _ => elementwise::compare::<f32>(
                *op,
                shape,
                a_strides,
                b_strides,
                f(0)?,
                f(1)?,
                out,
                stop,
            ),
        },
        KernelOp::Where {
            shape,
            c_strides,
            a_strides,
            b_strides,
        } => {
            let s = [c_strides.as_slice(), a_strides, b_strides];
            match out_dtype.size() {
                8 => elementwise::select::<u64>(
                    shape,
                    s,
                    ins[0],
                    typed(ins[1])?,
                    typed(ins[2])?,
                    typed_mut(out)?,
                    stop,
                ),
                _ => elementwise::select::<u32>(
                    shape,
                    s,
                    ins[0],
                    typed(ins[1])?,
                    typed(ins[2])?,
                    typed_mut(out)?,
                    stop,
                ),
            }
        }
        KernelOp::Unary { op, n } => {
            elementwise::unary(*op, f(0)?, &mut typed_mut::<f32>(out)?[..*n], stop)
        }
        KernelOp::Not { n } => elementwise::not(ins[0], &mut out[..*n], stop),
        KernelOp::Copy {
            shape,
            offset,
            strides,
            elem_size,
        } => match elem_size {
            8 => layout::copy::<u64>(
                shape,
                *offset,
                strides,
                typed(whole(ins[0], 8))?,
                typed_mut(whole_mut(out, 8))?,
                stop,
            ),
            4 => layout::copy::<u32>(
                shape,
                *offset,
                strides,
                typed(whole(ins[0], 4))?,
                typed_mut(whole_mut(out, 4))?,
                stop,
            ),
            _ => layout::copy::<u8>(shape, *offset, strides, ins[0], out, stop),
        },
        KernelOp::Concat {
            outer,
            inner,
            lens,
            elem_size,
        } => layout::concat(*outer, *inner, lens, *elem_size, ins, out, stop),
        KernelOp::Gather {
            outer,
            axis_len,
            count,
            inner,
            elem_size,
        } => layout::gather(
            [*outer, *axis_len, *count, *inner],
            *elem_size,
            ins[0],
            typed(ins[1])?,
            out,
            stop,
        ),
        KernelOp::GatherElements {
            shape,
            data_shape,
            axis,
            elem_size,
        } => {
            let idx = typed::<i64>(ins[1])?;
            match elem_size {
                8 => layout::gather_elements::<u64>(
                    shape,
                    data_shape,
                    *axis,
                    typed(whole(ins[0], 8))?,
                    idx,
                    typed_mut(whole_mut(out, 8))?,
                    stop,
                ),
                4 => layout::gather_elements::<u32>(
                    shape,
                    data_shape,
                    *axis,
                    typed(whole(ins[0], 4))?,
                    idx,
                    typed_mut(whole_mut(out, 4))?,
                    stop,
                ),
                _ => {
                    layout::gather_elements::<u8>(shape, data_shape, *axis, ins[0], idx, out, stop)
                }
            }
        }
        KernelOp::Pad {
            shape,
            in_shape,
            pads_begin,
            mode,
            value,
        } => layout::pad(
            shape,
            in_shape,
            pads_begin,
            *mode,
            *value,
            f(0)?,
            typed_mut(out)?,
            stop,
        ),
        KernelOp::ArgExtreme {
            max,
            last,
            outer,
            len,
            inner,
        } => norm::arg_extreme(
            *max,
            *last,
            [*outer, *len, *inner],
            f(0)?,
            typed_mut(out)?,
            stop,
        ),
        KernelOp::Resize {
            shape,
            in_shape,
            scales,
            mode,
            coord,
        } => resize::resize(
            shape,
            in_shape,
            scales,
            *mode,
            *coord,
            f(0)?,
            typed_mut(out)?,
            stop,
        ),
        KernelOp::Softmax {
            outer,
            axis,
            inner,
            pre,
        } => {
            let mask = if pre.mask.is_some() { f(1)? } else { &[] };
            norm::softmax(
                [*outer, *axis, *inner],
                pre,
                f(0)?,
                mask,
                typed_mut(out)?,
                stop,
            )
        }
        KernelOp::LayerNorm { rows, cols, eps } => norm::layer_norm(
            *rows,
            *cols,
            *eps,
            f(0)?,
            f(1)?,
            f(2)?,
            typed_mut(out)?,
            stop,
        ),
        KernelOp::Reduce {
            kind,
            outer,
            len,
            inner,
        } => norm::reduce(*kind, [*outer, *len, *inner], f(0)?, typed_mut(out)?, stop),
        KernelOp::Cast { from, to, n } => elementwise::cast(*from, *to, *n, ins[0], out, stop)?,
    }
    Ok(stop.completed())
}

/// The longest prefix of `b` made of whole `es`-byte elements.
fn whole(b: &[u8], es: usize) -> &[u8] {
    &b[..b.len() / es * es]
}

/// The longest prefix of `b` made of whole `es`-byte elements, mutably.
fn whole_mut(b: &mut [u8], es: usize) -> &mut [u8] {
    let n = b.len() / es * es;
    &mut b[..n]
}

/// Writes `act(acc[i] + bias + res[i])` into `dst`, the shared epilogue of
/// convolutions (bias and residual optional; additions in that order).
pub(crate) fn epilogue(
    dst: &mut [f32],
    acc: &[f32],
    bias: Option<f32>,
    res: Option<&[f32]>,
    act: reef_model::Act,
) {
    let n = dst.len();
    let acc = &acc[..n];
    match (bias, res) {
        (None, None) => dst.iter_mut().zip(acc).for_each(|(d, &a)| *d = a),
        (Some(b), None) => dst.iter_mut().zip(acc).for_each(|(d, &a)| *d = a + b),
        (None, Some(r)) => dst
            .iter_mut()
            .zip(acc)
            .zip(&r[..n])
            .for_each(|((d, &a), &r)| *d = a + r),
        (Some(b), Some(r)) => dst
            .iter_mut()
            .zip(acc)
            .zip(&r[..n])
            .for_each(|((d, &a), &r)| *d = a + b + r),
    }
    apply_act(dst, act);
}

/// Applies `act` in place.
pub(crate) fn apply_act(x: &mut [f32], act: reef_model::Act) {
    use reef_model::Act;
    match act {
        Act::None => {}
        Act::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        _ => x.iter_mut().for_each(|v| *v = act.apply(*v)),
    }
}
