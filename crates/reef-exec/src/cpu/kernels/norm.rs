//! Row-wise kernels over `[outer, axis, inner]` views: softmax, layer
//! normalisation and reductions. Every sum runs sequentially along its axis in
//! f32, so results are independent of tiling.

use super::super::tiles::{self, Stop, CHUNK};
use reef_plan::kernel::{ReduceKind, SoftmaxPre};

/// Outer slices per tile for slices of `slice` elements.
fn per_tile(slice: usize) -> usize {
    (CHUNK / slice.max(1)).max(1)
}

/// Softmax over the middle axis of `[outer, axis, inner]` of `pre` applied
/// to `x` (`mask`: the prologue's mask, empty without one; the prologue is
/// set only when `inner == 1`).
pub(crate) fn softmax(
    dims: [usize; 3],
    pre: &SoftmaxPre,
    x: &[f32],
    mask: &[f32],
    out: &mut [f32],
    stop: &Stop,
) {
    let [outer, axis, inner] = dims;
    let slice = axis * inner;
    if slice == 0 {
        return;
    }
    let plain = pre.scale.is_none() && pre.mask.is_none();
    let out = &mut out[..outer * slice];
    tiles::chunks(out, per_tile(slice) * slice, stop, |start, chunk| {
        let mut mx = vec![0f32; inner];
        let mut sum = vec![0f32; inner];
        let mut row = vec![0f32; if plain { 0 } else { slice }];
        for (o, dst) in chunk.chunks_mut(slice).enumerate() {
            let mut src = &x[start + o * slice..start + (o + 1) * slice];
            if !plain {
                // inner == 1: row r = the outer index, j along the axis.
                let r = start / slice + o;
                for (j, (d, &v)) in row.iter_mut().zip(src).enumerate() {
                    *d = pre.apply(v, r, j, mask);
                }
                src = &row;
            }
            mx.copy_from_slice(&src[..inner]);
            for row in src.chunks(inner).skip(1) {
                mx.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
            }
            sum.fill(0.0);
            for (drow, srow) in dst.chunks_mut(inner).zip(src.chunks(inner)) {
                for (((d, &v), &m), s) in drow.iter_mut().zip(srow).zip(&mx).zip(sum.iter_mut()) {
                    let e = (v - m).exp();
                    *d = e;
                    *s += e;
                }
            }
            for drow in dst.chunks_mut(inner) {
                drow.iter_mut().zip(&sum).for_each(|(d, &s)| *d /= s);
            }
        }
    });
}

/// Layer normalisation of each row of `[rows, cols]` (biased variance).
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm(
    rows: usize,
    cols: usize,
    eps: f32,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
    stop: &Stop,
) {
    if cols == 0 {
        return;
    }
    let (gamma, beta) = (&gamma[..cols], &beta[..cols]);
    let out = &mut out[..rows * cols];
    tiles::chunks(out, per_tile(cols) * cols, stop, |start, chunk| {
        for (r, dst) in chunk.chunks_mut(cols).enumerate() {
            let src = &x[start + r * cols..start + (r + 1) * cols];
            let mean = src.iter().fold(0f32, |a, &v| a + v) / cols as f32;
            let var = src.iter().fold(0f32, |a, &v| a + (v - mean) * (v - mean)) / cols as f32;
            let den = (var + eps).sqrt();
            for (((d, &v), &g), &b) in dst.iter_mut().zip(src).zip(gamma).zip(beta) {
                *d = (v - mean) / den * g + b;
            }
        }
    });
}

/// A reduction ([`ReduceKind`]) over the middle axis of `[outer, len, inner]` into `[outer, inner]`.
pub(crate) fn reduce(kind: ReduceKind, dims: [usize; 3], x: &[f32], out: &mut [f32], stop: &Stop) {
    let [outer, len, inner] = dims;
    if inner == 0 {
        return;
    }
    let out = &mut out[..outer * inner];
    let per = (CHUNK / (len * inner).max(1)).max(1);
    tiles::chunks(out, per * inner, stop, |start, chunk| {
        for (o, dst) in chunk.chunks_mut(inner).enumerate() {
            let ob = start / inner + o;
            let src = &x[ob * len * inner..(ob + 1) * len * inner];
            match kind {
                ReduceKind::Max | ReduceKind::Min => {
                    let max = kind == ReduceKind::Max;
                    dst.fill(if max {
                        f32::NEG_INFINITY
                    } else {
                        f32::INFINITY
                    });
                    for row in src.chunks(inner) {
                        dst.iter_mut().zip(row).for_each(|(d, &v)| {
                            *d = if max { d.max(v) } else { d.min(v) };
                        });
                    }
                }
                _ => {
                    dst.fill(0.0);
                    for row in src.chunks(inner) {
                        dst.iter_mut()
                            .zip(row)
                            .for_each(|(d, &v)| *d += kind.pre(v));
                    }
                    dst.iter_mut().for_each(|d| *d = kind.post(*d, len));
                }
            }
        }
    });
}

/// Index of the largest (`max`) or smallest element along the middle axis
/// of `[outer, len, inner]` into `[outer, inner]`, by
/// [`reef_plan::kernel::arg_beats`] in index order.
pub(crate) fn arg_extreme(
    max: bool,
    last: bool,
    dims: [usize; 3],
    x: &[f32],
    out: &mut [i64],
    stop: &Stop,
) {
    let [outer, len, inner] = dims;
    if inner == 0 || len == 0 {
        return;
    }
    let out = &mut out[..outer * inner];
    let per = (CHUNK / (len * inner).max(1)).max(1);
    tiles::chunks(out, per * inner, stop, |start, chunk| {
        for (o, dst) in chunk.chunks_mut(inner).enumerate() {
            let ob = start / inner + o;
            let src = &x[ob * len * inner..(ob + 1) * len * inner];
            for (i, d) in dst.iter_mut().enumerate() {
                let mut best = 0usize;
                for j in 1..len {
                    let (a, b) = (src[j * inner + i], src[best * inner + i]);
                    if reef_plan::kernel::arg_beats(a, j, b, best, max, last) {
                        best = j;
                    }
                }
                *d = best as i64;
            }
        }
    });
}
