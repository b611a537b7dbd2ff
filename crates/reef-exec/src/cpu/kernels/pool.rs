//! Max and average pooling over NCHW, tiled by output rows.

use super::super::tiles::{self, Stop, CHUNK};
use super::conv::valid_range;
use reef_model::PoolKind;
use reef_plan::kernel::PoolSpec;

/// Number of window taps `t < k` with `0 <= base + t*d < limit` (base may be negative).
fn count_in(base: isize, k: usize, d: usize, limit: usize) -> usize {
    (0..k)
        .filter(|&t| (0..limit as isize).contains(&(base + (t * d) as isize)))
        .count()
}

/// The pooling kernel (see [`PoolSpec`]).
pub(crate) fn pool(s: &PoolSpec, x: &[f32], out: &mut [f32], stop: &Stop) {
    let (h, w, oh, ow) = (s.h, s.w, s.oh, s.ow);
    let out = &mut out[..s.n * s.c * oh * ow];
    if ow == 0 {
        return;
    }
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [dh, dw] = s.dilation;
    let [ph, pw] = s.pad;
    let avg = s.kind == PoolKind::Avg;
    // Per output column: taps counted along x (in bounds, or in the padded extent).
    let cols: Vec<usize> = (0..ow)
        .map(|xo| {
            if s.count_include_pad {
                count_in((xo * sw) as isize, kw, dw, s.padded_w)
            } else {
                count_in((xo * sw) as isize - pw as isize, kw, dw, w)
            }
        })
        .collect();
    let rb = (CHUNK / ow).max(1);
    tiles::chunks(out, rb * ow, stop, |start, chunk| {
        let mut row = start / ow;
        for dst in chunk.chunks_mut(ow) {
            let (pl, y) = (row / oh, row % oh);
            let xin = &x[pl * h * w..(pl + 1) * h * w];
            dst.fill(if avg { 0.0 } else { f32::NEG_INFINITY });
            for r in 0..kh {
                let iy = (y * sh + r * dh) as isize - ph as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let src = &xin[iy as usize * w..(iy as usize + 1) * w];
                for q in 0..kw {
                    let off = (q * dw) as isize - pw as isize;
                    let (lo, hi) = valid_range(off, sw, w, ow);
                    if lo >= hi {
                        continue;
                    }
                    let first = ((lo * sw) as isize + off) as usize;
                    let dst = &mut dst[lo..hi];
                    if avg {
                        dst.iter_mut()
                            .enumerate()
                            .for_each(|(i, d)| *d += src[first + i * sw]);
                    } else {
                        dst.iter_mut()
                            .enumerate()
                            .for_each(|(i, d)| *d = d.max(src[first + i * sw]));
                    }
                }
            }
            if avg {
                let rows = if s.count_include_pad {
                    count_in((y * sh) as isize, kh, dh, s.padded_h)
                } else {
                    count_in((y * sh) as isize - ph as isize, kh, dh, h)
                };
                for (d, &c) in dst.iter_mut().zip(&cols) {
                    let n = rows * c;
                    *d = if n == 0 { 0.0 } else { *d / n as f32 };
                }
            }
            row += 1;
        }
    });
}
