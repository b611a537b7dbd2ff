//! Convolution: im2col per tile + gemm for dense and grouped convolutions
//! (1x1 stride-1 convolutions read the input directly), and a direct loop for
//! depthwise convolutions.

use super::super::tf32::round_slice;
use super::super::tiles::{self, with_scratch, Stop, TARGET_FLOPS};
use super::matmul::{gemm_f32, rounded_copy, Mat};
use super::{apply_act, epilogue};
use reef_plan::kernel::ConvSpec;

/// Valid output columns `[lo, hi)` of a tap: those `x` with
/// `0 <= x*stride + off < len`.
pub(crate) fn valid_range(off: isize, stride: usize, len: usize, outs: usize) -> (usize, usize) {
    let st = stride as isize;
    let lo = if off >= 0 { 0 } else { (-off + st - 1) / st };
    let lim = len as isize - off;
    let hi = if lim <= 0 { 0 } else { (lim + st - 1) / st };
    let lo = (lo as usize).min(outs);
    (lo, (hi as usize).clamp(lo, outs))
}

/// The convolution kernel (see [`ConvSpec`]). With `tf32`, convolutions
/// with more than one input channel per group round both GEMM operands (the
/// weights and the input patches) to TF32, as the GPU's tensor-core
/// convolutions do; those with c/groups == 1 run as a direct f32 kernel on
/// the GPU (`ConvDw`) and are not rounded, including the grouped ones with
/// k > c that take the gemm path here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv(
    s: &ConvSpec,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    out: &mut [f32],
    stop: &Stop,
    tf32: bool,
) {
    let out = &mut out[..s.n * s.k * s.oh * s.ow];
    if s.groups > 1 && s.groups == s.c && s.c == s.k {
        depthwise(s, x, w, bias, res, out, stop)
    } else {
        let round = tf32 && s.groups > 0 && s.c / s.groups > 1;
        gemm_conv(s, x, w, bias, res, out, stop, round)
    }
}

/// Tile shape `(output channels, output pixels)` of a group's `[kg, plane]`
/// output with `crs` multiply-adds per output. With im2col, channel blocks
/// stay wide (up to 64) so the patch copy is amortised over many channels;
/// pixel blocks shrink instead.
fn blocks(kg: usize, crs: usize, plane: usize, im2col: bool) -> (usize, usize) {
    let elems = (TARGET_FLOPS / (2 * crs.max(1))).max(64);
    let kb0 = kg.clamp(1, 64);
    let min_pb = if im2col { 16 } else { 64 };
    let pb = (elems / kb0).clamp(min_pb, 4096).min(plane).max(1);
    let kb = if im2col {
        kb0
    } else {
        tiles::round8((elems / pb).clamp(1, kg.max(1)))
    };
    (kb, pb)
}

/// Dense and grouped convolutions as per-tile gemms; `round`: both operands
/// rounded to TF32 (rounded copies of the tile's weight rows and of its
/// input columns, or the im2col patches rounded in place).
#[allow(clippy::too_many_arguments)]
fn gemm_conv(
    s: &ConvSpec,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    out: &mut [f32],
    stop: &Stop,
    round: bool,
) {
    let (g, plane, hw) = (s.groups, s.oh * s.ow, s.h * s.w);
    let (cg, kg) = (s.c / g, s.k / g);
    let crs = cg * s.r * s.s;
    let pointwise =
        s.r == 1 && s.s == 1 && s.stride == [1, 1] && s.pad == [0, 0] && s.oh == s.h && s.ow == s.w;
    let (kb, pb) = blocks(kg, crs, plane, !pointwise);
    let grid = tiles::grid(out, s.n * g, kg, plane, kb, pb);
    tiles::run(grid, stop, |mut t| {
        let (ni, gi) = (t.plane / g, t.plane % g);
        let (k0, p0) = (t.row0, t.col0);
        let (rows, pt) = (t.rows.len(), t.rows[0].len());
        // With rounding, a pointwise tile copies its input columns too.
        let col_len = if pointwise && !round { 0 } else { crs * pt };
        let w_len = if round { rows * crs } else { 0 };
        with_scratch(col_len, rows * pt, w_len, |col, acc, w_round| {
            let xb = (ni * s.c + gi * cg) * hw;
            let rhs = if pointwise {
                let direct = Mat {
                    data: x,
                    off: xb + p0,
                    rs: hw,
                    cs: 1,
                };
                if round {
                    rounded_copy(col, direct, crs, pt)
                } else {
                    direct
                }
            } else {
                im2col(s, &x[xb..xb + cg * hw], cg, p0, pt, col);
                if round {
                    round_slice(col);
                }
                Mat {
                    data: col,
                    off: 0,
                    rs: pt,
                    cs: 1,
                }
            };
            let lhs = Mat {
                data: w,
                off: (gi * kg + k0) * crs,
                rs: crs,
                cs: 1,
            };
            let lhs = if round {
                rounded_copy(w_round, lhs, rows, crs)
            } else {
                lhs
            };
            gemm_f32(rows, pt, crs, acc, pt, lhs, rhs);
            for (r, dst) in t.rows.iter_mut().enumerate() {
                let kk = gi * kg + k0 + r;
                let ob = (ni * s.k + kk) * plane + p0;
                epilogue(
                    dst,
                    &acc[r * pt..],
                    bias.map(|b| b[kk]),
                    res.map(|v| &v[ob..ob + pt]),
                    s.act,
                );
            }
        });
    });
}

/// Fills `col` (`[cg*r*s, pt]`) with the input patches of output pixels
/// `p0..p0 + pt` of one image's group `x` (`[cg, h, w]`), zeros for padding.
fn im2col(s: &ConvSpec, x: &[f32], cg: usize, p0: usize, pt: usize, col: &mut [f32]) {
    let (h, w) = (s.h, s.w);
    let [sh, sw] = s.stride;
    let [dh, dw] = s.dilation;
    let [ph, pw] = s.pad;
    for c in 0..cg {
        let xc = &x[c * h * w..(c + 1) * h * w];
        for r in 0..s.r {
            for q in 0..s.s {
                let row = &mut col[((c * s.r + r) * s.s + q) * pt..][..pt];
                let off = (q * dw) as isize - pw as isize;
                let (lo, hi) = valid_range(off, sw, w, s.ow);
                let mut p = p0;
                while p < p0 + pt {
                    let (y, x0) = (p / s.ow, p % s.ow);
                    let x1 = s.ow.min(x0 + (p0 + pt - p));
                    let dst = &mut row[p - p0..p - p0 + (x1 - x0)];
                    let iy = (y * sh + r * dh) as isize - ph as isize;
                    if iy < 0 || iy >= h as isize {
                        dst.fill(0.0);
                    } else {
                        let src = &xc[iy as usize * w..(iy as usize + 1) * w];
                        let (a, b) = (lo.clamp(x0, x1), hi.clamp(x0, x1));
                        dst[..a - x0].fill(0.0);
                        dst[b - x0..].fill(0.0);
                        let inner = &mut dst[a - x0..b - x0];
                        if a < b {
                            let first = (a * sw) as isize + off;
                            let first = first as usize;
                            if sw == 1 {
                                inner.copy_from_slice(&src[first..first + (b - a)]);
                            } else {
                                for (i, d) in inner.iter_mut().enumerate() {
                                    *d = src[first + i * sw];
                                }
                            }
                        }
                    }
                    p += x1 - x0;
                }
            }
        }
    }
}

/// Rows of output per depthwise tile.
fn rows_per_tile(ow: usize, taps: usize) -> usize {
    (TARGET_FLOPS / 8 / (2 * taps.max(1) * ow.max(1))).max(1)
}

fn depthwise(
    s: &ConvSpec,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    out: &mut [f32],
    stop: &Stop,
) {
    let (h, wd, oh, ow) = (s.h, s.w, s.oh, s.ow);
    if ow == 0 {
        return;
    }
    let [sh, sw] = s.stride;
    let [dh, dw] = s.dilation;
    let [ph, pw] = s.pad;
    let taps = s.r * s.s;
    let rb = rows_per_tile(ow, taps);
    tiles::chunks(out, rb * ow, stop, |start, chunk| {
        let mut row = start / ow;
        for dst in chunk.chunks_mut(ow) {
            let (pl, y) = (row / oh, row % oh);
            let ch = pl % s.k;
            let xin = &x[pl * h * wd..(pl + 1) * h * wd];
            let wk = &w[ch * taps..(ch + 1) * taps];
            dst.fill(0.0);
            for r in 0..s.r {
                let iy = (y * sh + r * dh) as isize - ph as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let src = &xin[iy as usize * wd..(iy as usize + 1) * wd];
                for q in 0..s.s {
                    let wv = wk[r * s.s + q];
                    let off = (q * dw) as isize - pw as isize;
                    let (lo, hi) = valid_range(off, sw, wd, ow);
                    if lo >= hi {
                        continue;
                    }
                    let first = ((lo * sw) as isize + off) as usize;
                    if sw == 1 {
                        let src = &src[first..first + (hi - lo)];
                        dst[lo..hi]
                            .iter_mut()
                            .zip(src)
                            .for_each(|(d, &v)| *d += wv * v);
                    } else {
                        for (i, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d += wv * src[first + i * sw];
                        }
                    }
                }
            }
            let b = bias.map(|b| b[ch]);
            match (b, res) {
                (Some(b), Some(rv)) => {
                    let rv = &rv[row * ow..(row + 1) * ow];
                    dst.iter_mut().zip(rv).for_each(|(d, &v)| *d = *d + b + v);
                }
                (Some(b), None) => dst.iter_mut().for_each(|d| *d += b),
                (None, Some(rv)) => {
                    let rv = &rv[row * ow..(row + 1) * ow];
                    dst.iter_mut().zip(rv).for_each(|(d, &v)| *d += v);
                }
                (None, None) => {}
            }
            apply_act(dst, s.act);
            row += 1;
        }
    });
}
