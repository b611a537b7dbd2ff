//! Data movement kernels: strided copy, concatenation, gather, element
//! gather and padding.

use super::super::tiles::{self, walk_runs, Stop, CHUNK};
use reef_model::PadMode;

/// `out[idx] = x[offset + Σ idx_d · strides[d]]` over `shape` (strides may be
/// negative or zero).
pub(crate) fn copy<T: Copy + Send + Sync>(
    shape: &[usize],
    offset: i64,
    strides: &[i64],
    x: &[T],
    out: &mut [T],
    stop: &Stop,
) {
    let n = tiles::numel(shape);
    tiles::chunks(&mut out[..n], CHUNK, stop, |start, chunk| {
        walk_runs(
            shape,
            [strides],
            [offset],
            start,
            chunk.len(),
            |pos, run, off, inner| {
                let dst = &mut chunk[pos - start..pos - start + run];
                let (o, s) = (off[0], inner[0]);
                match s {
                    1 => dst.copy_from_slice(&x[o as usize..o as usize + run]),
                    0 => dst.fill(x[o as usize]),
                    _ => dst
                        .iter_mut()
                        .enumerate()
                        .for_each(|(j, d)| *d = x[(o + j as i64 * s) as usize]),
                }
            },
        );
    });
}

/// Concatenation of `[outer, len_i, inner]` parts along the middle axis.
pub(crate) fn concat(
    outer: usize,
    inner: usize,
    lens: &[usize],
    es: usize,
    parts: &[&[u8]],
    out: &mut [u8],
    stop: &Stop,
) {
    let row: usize = lens.iter().sum::<usize>() * inner * es;
    if row == 0 {
        return;
    }
    let mut pieces = Vec::with_capacity(outer * lens.len());
    for (o, mut rest) in out[..outer * row].chunks_mut(row).enumerate() {
        for (p, &len) in lens.iter().enumerate() {
            let (piece, tail) = rest.split_at_mut(len * inner * es);
            rest = tail;
            pieces.push((o, p, piece));
        }
    }
    tiles::run(pieces, stop, |(o, p, piece)| {
        let n = piece.len();
        piece.copy_from_slice(&parts[p][o * n..(o + 1) * n]);
    });
}

/// `out[o, j, i] = x[o, idx[j], i]` (negative indices wrap; out of range gives 0).
pub(crate) fn gather(
    dims: [usize; 4],
    es: usize,
    x: &[u8],
    idx: &[i64],
    out: &mut [u8],
    stop: &Stop,
) {
    let [outer, axis_len, count, inner] = dims;
    let row = inner * es;
    if row == 0 || count == 0 {
        return;
    }
    let rows_per = (CHUNK * 4 / row).max(1);
    tiles::chunks(
        &mut out[..outer * count * row],
        rows_per * row,
        stop,
        |start, chunk| {
            for (r, dst) in chunk.chunks_mut(row).enumerate() {
                let g = start / row + r;
                let (o, j) = (g / count, g % count);
                let i = idx[j];
                let i = if i < 0 { i + axis_len as i64 } else { i };
                if (0..axis_len as i64).contains(&i) {
                    let src = (o * axis_len + i as usize) * row;
                    dst.copy_from_slice(&x[src..src + row]);
                } else {
                    dst.fill(0);
                }
            }
        },
    );
}

/// `out[p] = x[p with p_axis replaced by idx[p]]` over the output `shape`,
/// with `x` of shape `data_shape` (row-major; negative indices wrap, out of
/// range gives 0). Tiles of [`CHUNK`] output elements.
pub(crate) fn gather_elements<T: Copy + Default + Send + Sync>(
    shape: &[usize],
    data_shape: &[usize],
    axis: usize,
    x: &[T],
    idx: &[i64],
    out: &mut [T],
    stop: &Stop,
) {
    let n = tiles::numel(shape);
    let mut st = tiles::signed(&reef_model::tensor::strides(data_shape));
    let (len, axis_stride) = (data_shape[axis] as i64, st[axis]);
    // The walk yields the offset without the axis term; each index adds it.
    st[axis] = 0;
    tiles::chunks(&mut out[..n], CHUNK, stop, |start, chunk| {
        walk_runs(
            shape,
            [&st],
            [0],
            start,
            chunk.len(),
            |pos, run, off, inner| {
                for j in 0..run {
                    let i = idx[pos + j];
                    let i = if i < 0 { i + len } else { i };
                    chunk[pos - start + j] = if (0..len).contains(&i) {
                        x[(off[0] + j as i64 * inner[0] + i * axis_stride) as usize]
                    } else {
                        T::default()
                    };
                }
            },
        );
    });
}

/// Maps an output coordinate (already shifted by the leading pad) into an
/// input dimension of length `n`; `None` means "the constant".
fn source(i: i64, n: usize, mode: PadMode) -> Option<usize> {
    let n = n as i64;
    match mode {
        _ if (0..n).contains(&i) => Some(i as usize),
        PadMode::Constant => None,
        PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
        PadMode::Reflect if n == 1 => Some(0),
        PadMode::Reflect => {
            let period = 2 * (n - 1);
            let m = i.rem_euclid(period);
            Some(if m >= n { period - m } else { m } as usize)
        }
    }
}

/// Constant/reflect/edge padding (negative pads crop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pad(
    shape: &[usize],
    in_shape: &[usize],
    pads: &[i64],
    mode: PadMode,
    value: f32,
    x: &[f32],
    out: &mut [f32],
    stop: &Stop,
) {
    let n = tiles::numel(shape);
    if n == 0 {
        return;
    }
    let rank = shape.len();
    if rank == 0 {
        out[0] = x[0];
        return;
    }
    let last = shape[rank - 1];
    let (in_last, pad_last) = (in_shape[rank - 1], pads[rank - 1]);
    // Source column of every output column of a row (None: the constant).
    let cols: Vec<Option<usize>> = (0..last)
        .map(|j| source(j as i64 - pad_last, in_last, mode))
        .collect();
    let rows_per = (CHUNK / last).max(1);
    tiles::chunks(&mut out[..n], rows_per * last, stop, |start, chunk| {
        for (r, dst) in chunk.chunks_mut(last).enumerate() {
            // Source row offset of this output row, or None if it is all padding.
            let mut rem = start / last + r;
            let mut src_row = Some(0usize);
            let mut in_stride = in_last;
            for d in (0..rank - 1).rev() {
                let i = rem % shape[d];
                rem /= shape[d];
                src_row = match (src_row, source(i as i64 - pads[d], in_shape[d], mode)) {
                    (Some(acc), Some(s)) => Some(acc + s * in_stride),
                    _ => None,
                };
                in_stride *= in_shape[d];
            }
            match src_row {
                None => dst.fill(value),
                Some(base) => {
                    let src = &x[base..base + in_last];
                    dst.iter_mut()
                        .zip(&cols)
                        .for_each(|(d, c)| *d = c.map_or(value, |c| src[c]));
                }
            }
        }
    });
}
