//! Resize: nearest-neighbour and (bi)linear interpolation over any rank,
//! with the coordinate arithmetic of [`reef_model::resize`]. The CUDA
//! kernel computes the same sums in the same order.

use super::super::tiles::{self, Stop, CHUNK};
use reef_model::resize::{linear_taps, CoordMode, ResizeMode};
use reef_plan::kernel::resized_axes;

/// Resizes `x` (`in_shape`) into `out` (`shape`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn resize(
    shape: &[usize],
    in_shape: &[usize],
    scales: &[f64],
    mode: ResizeMode,
    coord: CoordMode,
    x: &[f32],
    out: &mut [f32],
    stop: &Stop,
) {
    let n = tiles::numel(shape);
    if n == 0 {
        return;
    }
    let rank = shape.len();
    let linear = mode == ResizeMode::Linear;
    let interp = if linear {
        resized_axes(shape, in_shape, scales)
    } else {
        vec![]
    };
    // Per axis and output index: the input index and the linear taps.
    let taps: Vec<Vec<[(usize, f32); 2]>> = (0..rank)
        .map(|d| {
            (0..shape[d])
                .map(|y| {
                    let c = coord.source(y, in_shape[d], shape[d], scales[d]);
                    match mode {
                        ResizeMode::Nearest(m) => [(m.index(c, in_shape[d]), 1.0), (0, 0.0)],
                        ResizeMode::Linear if interp.contains(&d) => linear_taps(c, in_shape[d]),
                        ResizeMode::Linear => [(y, 1.0), (0, 0.0)],
                    }
                })
                .collect()
        })
        .collect();
    let mut in_strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        in_strides[d] = in_strides[d + 1] * in_shape[d + 1];
    }
    tiles::chunks(&mut out[..n], CHUNK, stop, |start, chunk| {
        let mut idx = vec![0usize; rank];
        for (i, o) in chunk.iter_mut().enumerate() {
            let mut rem = start + i;
            for d in (0..rank).rev() {
                idx[d] = rem % shape[d];
                rem /= shape[d];
            }
            // Offset of the first tap along every axis.
            let base: usize = (0..rank)
                .filter(|d| !interp.contains(d))
                .map(|d| taps[d][idx[d]][0].0 * in_strides[d])
                .sum();
            let along = |d: usize, at: usize| -> f32 {
                let [(i0, w0), (i1, w1)] = taps[d][idx[d]];
                w0 * x[at + i0 * in_strides[d]] + w1 * x[at + i1 * in_strides[d]]
            };
            *o = match interp[..] {
                [] => x[base],
                [d] => along(d, base),
                [d1, d2, ..] => {
                    let [(i0, w0), (i1, w1)] = taps[d1][idx[d1]];
                    w0 * along(d2, base + i0 * in_strides[d1])
                        + w1 * along(d2, base + i1 * in_strides[d1])
                }
            };
        }
    });
}
