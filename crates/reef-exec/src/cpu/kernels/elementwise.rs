//! Elementwise kernels: unary functions, logical not, per-channel affine,
//! broadcasting binary operators, comparisons and selection, and casts.

use super::super::memory::{typed, typed_mut};
use super::super::tiles::{self, signed, walk_runs, Stop, CHUNK};
use super::apply_act;
use crate::{ExecError, Result};
use bytemuck::Pod;
use reef_model::{op::erf, Act, DType};
use reef_plan::kernel::{BinOp, CmpOp, UnaryOp};

/// `out[i] = f(x[i])` over `out.len()` elements.
pub(crate) fn unary(op: UnaryOp, x: &[f32], out: &mut [f32], stop: &Stop) {
    tiles::chunks(out, CHUNK, stop, |start, dst| {
        let src = &x[start..start + dst.len()];
        let mut map =
            |f: &dyn Fn(f32) -> f32| dst.iter_mut().zip(src).for_each(|(d, &v)| *d = f(v));
        match op {
            UnaryOp::Act(Act::Relu) => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v.max(0.0)),
            UnaryOp::Act(act) => map(&|v| act.apply(v)),
            UnaryOp::Erf => map(&erf),
            UnaryOp::Sqrt => map(&f32::sqrt),
            UnaryOp::Exp => map(&f32::exp),
            UnaryOp::Neg => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = -v),
            UnaryOp::Fn(f) => map(&|v| f.apply(v)),
        }
    });
}

/// Logical not of bool bytes.
pub(crate) fn not(x: &[u8], out: &mut [u8], stop: &Stop) {
    tiles::chunks(out, CHUNK, stop, |start, dst| {
        let src = &x[start..start + dst.len()];
        dst.iter_mut()
            .zip(src)
            .for_each(|(d, &v)| *d = u8::from(v == 0));
    });
}

/// `out[o, c, i] = act(x[o, c, i] · scale[c] + shift[c])`.
pub(crate) fn channel_affine(
    dims: [usize; 3],
    act: Act,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    out: &mut [f32],
    stop: &Stop,
) {
    let [outer, c, inner] = dims;
    if inner == 0 || c == 0 {
        return;
    }
    let out = &mut out[..outer * c * inner];
    tiles::chunks(out, CHUNK, stop, |start, dst| {
        let mut pos = start;
        let end = start + dst.len();
        while pos < end {
            let (row, col) = (pos / inner, pos % inner);
            let run = (inner - col).min(end - pos);
            let ch = row % c;
            let (sc, sh) = (scale[ch], shift[ch]);
            let d = &mut dst[pos - start..pos - start + run];
            d.iter_mut()
                .zip(&x[pos..pos + run])
                .for_each(|(d, &v)| *d = v * sc + sh);
            apply_act(d, act);
            pos += run;
        }
    });
}

/// `dst[j] = f(a[ao + j*sa], b[bo + j*sb])`, with fast paths for contiguous
/// and broadcast operands.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn zip_run<A: Copy, B: Copy, O>(
    dst: &mut [O],
    a: &[A],
    ao: i64,
    sa: i64,
    b: &[B],
    bo: i64,
    sb: i64,
    f: impl Fn(A, B) -> O,
) {
    let n = dst.len();
    let (ao, bo) = (ao as usize, bo as usize);
    match (sa, sb) {
        (1, 1) => dst
            .iter_mut()
            .zip(&a[ao..ao + n])
            .zip(&b[bo..bo + n])
            .for_each(|((d, &x), &y)| *d = f(x, y)),
        (1, 0) => {
            let y = b[bo];
            dst.iter_mut()
                .zip(&a[ao..ao + n])
                .for_each(|(d, &x)| *d = f(x, y));
        }
        (0, 1) => {
            let x = a[ao];
            dst.iter_mut()
                .zip(&b[bo..bo + n])
                .for_each(|(d, &y)| *d = f(x, y));
        }
        _ => {
            let (sa, sb) = (sa as usize, sb as usize);
            dst.iter_mut()
                .enumerate()
                .for_each(|(j, d)| *d = f(a[ao + j * sa], b[bo + j * sb]));
        }
    }
}

/// Runs `f` over the runs of a two-operand broadcast over `shape`.
#[allow(clippy::too_many_arguments)]
fn broadcast2<A: Copy + Sync, B: Copy + Sync, O: Send>(
    shape: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
    a: &[A],
    b: &[B],
    out: &mut [O],
    stop: &Stop,
    f: impl Fn(A, B) -> O + Sync + Send + Copy,
) {
    let (sa, sb) = (signed(a_strides), signed(b_strides));
    let n = tiles::numel(shape);
    tiles::chunks(&mut out[..n], CHUNK, stop, |start, chunk| {
        walk_runs(
            shape,
            [&sa, &sb],
            [0, 0],
            start,
            chunk.len(),
            |pos, run, off, inner| {
                let dst = &mut chunk[pos - start..pos - start + run];
                zip_run(dst, a, off[0], inner[0], b, off[1], inner[1], f);
            },
        );
    });
}

/// Broadcasting f32 binary operator followed by an activation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn binary_f32(
    op: BinOp,
    act: Act,
    shape: &[usize],
    sa: &[usize],
    sb: &[usize],
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    stop: &Stop,
) {
    macro_rules! go {
        ($f:expr) => {
            if act == Act::None {
                broadcast2(shape, sa, sb, a, b, out, stop, $f)
            } else {
                broadcast2(shape, sa, sb, a, b, out, stop, move |x: f32, y: f32| {
                    act.apply($f(x, y))
                })
            }
        };
    }
    match op {
        BinOp::Add => go!(|x: f32, y: f32| x + y),
        BinOp::Sub => go!(|x: f32, y: f32| x - y),
        BinOp::Mul => go!(|x: f32, y: f32| x * y),
        BinOp::Div => go!(|x: f32, y: f32| x / y),
        BinOp::Pow => go!(|x: f32, y: f32| x.powf(y)),
        BinOp::Min => go!(|x: f32, y: f32| BinOp::Min.apply(x, y)),
        BinOp::Max => go!(|x: f32, y: f32| BinOp::Max.apply(x, y)),
        BinOp::PRelu => go!(|x: f32, y: f32| BinOp::PRelu.apply(x, y)),
    }
}

/// Broadcasting i64 binary operator (wrapping; division by zero gives 0).
#[allow(clippy::too_many_arguments)]
pub(crate) fn binary_i64(
    op: BinOp,
    shape: &[usize],
    sa: &[usize],
    sb: &[usize],
    a: &[i64],
    b: &[i64],
    out: &mut [i64],
    stop: &Stop,
) {
    match op {
        BinOp::Add => broadcast2(shape, sa, sb, a, b, out, stop, |x: i64, y: i64| {
            x.wrapping_add(y)
        }),
        BinOp::Sub => broadcast2(shape, sa, sb, a, b, out, stop, |x: i64, y: i64| {
            x.wrapping_sub(y)
        }),
        BinOp::Mul => broadcast2(shape, sa, sb, a, b, out, stop, |x: i64, y: i64| {
            x.wrapping_mul(y)
        }),
        BinOp::Div => broadcast2(shape, sa, sb, a, b, out, stop, |x: i64, y: i64| {
            x.checked_div(y).unwrap_or(0)
        }),
        BinOp::Pow => broadcast2(shape, sa, sb, a, b, out, stop, |x: i64, y: i64| {
            (x as f64).powf(y as f64) as i64
        }),
        BinOp::Min => broadcast2(shape, sa, sb, a, b, out, stop, |x: i64, y: i64| x.min(y)),
        BinOp::Max => broadcast2(shape, sa, sb, a, b, out, stop, |x: i64, y: i64| x.max(y)),
        BinOp::PRelu => broadcast2(shape, sa, sb, a, b, out, stop, |x: i64, y: i64| {
            if x < 0 {
                x.wrapping_mul(y)
            } else {
                x
            }
        }),
    }
}

/// Broadcasting comparison or logical operator with a bool (one byte)
/// result; logical operators treat nonzero elements as true.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compare<T: Copy + Sync + PartialOrd + Default>(
    op: CmpOp,
    shape: &[usize],
    sa: &[usize],
    sb: &[usize],
    a: &[T],
    b: &[T],
    out: &mut [u8],
    stop: &Stop,
) {
    match op {
        CmpOp::Equal => broadcast2(shape, sa, sb, a, b, out, stop, |x: T, y: T| {
            u8::from(x == y)
        }),
        CmpOp::Less => broadcast2(shape, sa, sb, a, b, out, stop, |x: T, y: T| u8::from(x < y)),
        CmpOp::Greater => broadcast2(shape, sa, sb, a, b, out, stop, |x: T, y: T| u8::from(x > y)),
        CmpOp::GreaterOrEqual => broadcast2(shape, sa, sb, a, b, out, stop, |x: T, y: T| {
            u8::from(x >= y)
        }),
        CmpOp::LessOrEqual => broadcast2(shape, sa, sb, a, b, out, stop, |x: T, y: T| {
            u8::from(x <= y)
        }),
        CmpOp::And => broadcast2(shape, sa, sb, a, b, out, stop, |x: T, y: T| {
            u8::from(x != T::default() && y != T::default())
        }),
        CmpOp::Or => broadcast2(shape, sa, sb, a, b, out, stop, |x: T, y: T| {
            u8::from(x != T::default() || y != T::default())
        }),
        CmpOp::Xor => broadcast2(shape, sa, sb, a, b, out, stop, |x: T, y: T| {
            u8::from((x != T::default()) != (y != T::default()))
        }),
    }
}

/// `out = cond != 0 ? a : b` with broadcasting; elements are moved bitwise.
pub(crate) fn select<T: Pod + Send + Sync>(
    shape: &[usize],
    strides: [&[usize]; 3],
    cond: &[u8],
    a: &[T],
    b: &[T],
    out: &mut [T],
    stop: &Stop,
) {
    let [sc, sa, sb] = strides.map(signed);
    let n = tiles::numel(shape);
    tiles::chunks(&mut out[..n], CHUNK, stop, |start, chunk| {
        walk_runs(
            shape,
            [&sc, &sa, &sb],
            [0; 3],
            start,
            chunk.len(),
            |pos, run, off, inner| {
                let dst = &mut chunk[pos - start..pos - start + run];
                for (j, d) in dst.iter_mut().enumerate() {
                    let j = j as i64;
                    let c = cond[(off[0] + j * inner[0]) as usize];
                    *d = if c != 0 {
                        a[(off[1] + j * inner[1]) as usize]
                    } else {
                        b[(off[2] + j * inner[2]) as usize]
                    };
                }
            },
        );
    });
}

fn convert<S: Pod + Sync, D: Pod + Send>(
    x: &[u8],
    out: &mut [u8],
    n: usize,
    stop: &Stop,
    f: impl Fn(S) -> D + Sync + Send,
) -> Result<()> {
    let src: &[S] = &typed::<S>(x)?[..n];
    let dst: &mut [D] = &mut typed_mut::<D>(out)?[..n];
    tiles::chunks(dst, CHUNK, stop, |start, d| {
        let src = &src[start..start + d.len()];
        d.iter_mut().zip(src).for_each(|(d, &s)| *d = f(s));
    });
    Ok(())
}

/// Type conversion among F32, I64, I32 and Bool: floats truncate toward zero
/// (saturating, NaN gives 0), integers wrap, anything non-zero is true.
pub(crate) fn cast(
    from: DType,
    to: DType,
    n: usize,
    x: &[u8],
    out: &mut [u8],
    stop: &Stop,
) -> Result<()> {
    use DType::*;
    match (from, to) {
        (F32, F32) => convert(x, out, n, stop, |v: f32| v),
        (F32, I64) => convert(x, out, n, stop, |v: f32| v as i64),
        (F32, I32) => convert(x, out, n, stop, |v: f32| v as i32),
        (F32, Bool) => convert(x, out, n, stop, |v: f32| u8::from(v != 0.0)),
        (I64, F32) => convert(x, out, n, stop, |v: i64| v as f32),
        (I64, I64) => convert(x, out, n, stop, |v: i64| v),
        (I64, I32) => convert(x, out, n, stop, |v: i64| v as i32),
        (I64, Bool) => convert(x, out, n, stop, |v: i64| u8::from(v != 0)),
        (I32, F32) => convert(x, out, n, stop, |v: i32| v as f32),
        (I32, I64) => convert(x, out, n, stop, |v: i32| i64::from(v)),
        (I32, I32) => convert(x, out, n, stop, |v: i32| v),
        (I32, Bool) => convert(x, out, n, stop, |v: i32| u8::from(v != 0)),
        (Bool, F32) => convert(x, out, n, stop, |v: u8| f32::from(u8::from(v != 0))),
        (Bool, I64) => convert(x, out, n, stop, |v: u8| i64::from(v != 0)),
        (Bool, I32) => convert(x, out, n, stop, |v: u8| i32::from(v != 0)),
        (Bool, Bool) => convert(x, out, n, stop, |v: u8| u8::from(v != 0)),
        _ => Err(ExecError::Unsupported(format!(
            "cast from {from:?} to {to:?}"
        ))),
    }
}
