//! Matrix products: the safe wrapper around the `gemm` crate and the batched
//! MatMul kernel with its fused epilogue.

use super::super::tf32::round_tf32;
use super::super::tiles::{self, with_scratch, Stop, TARGET_FLOPS};
use super::apply_act;
use reef_plan::kernel::MatMulSpec;

/// A strided matrix operand: element `(i, j)` is `data[off + i*rs + j*cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

/// Index one past the last element of a `rows x cols` view.
fn span(off: usize, rows: usize, rs: usize, cols: usize, cs: usize) -> usize {
    off + (rows - 1) * rs + (cols - 1) * cs + 1
}

/// `dst[i*dst_rs + j] = Σ_p a(i, p) · b(p, j)` for an `m x n` result with
/// reduction length `k` (single-threaded; tiles provide the parallelism).
/// Panics if a view exceeds its slice (plans are validated before running).
pub(crate) fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    a: Mat,
    b: Mat,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        span(0, m, dst_rs, n, 1) <= dst.len(),
        "gemm: destination too small"
    );
    if k == 0 {
        for i in 0..m {
            dst[i * dst_rs..i * dst_rs + n].fill(0.0);
        }
        return;
    }
    assert!(
        span(a.off, m, a.rs, k, a.cs) <= a.data.len(),
        "gemm: lhs view out of bounds"
    );
    assert!(
        span(b.off, k, b.rs, n, b.cs) <= b.data.len(),
        "gemm: rhs view out of bounds"
    );
    let ok = [dst_rs, a.rs, a.cs, b.rs, b.cs]
        .iter()
        .all(|&s| isize::try_from(s).is_ok());
    assert!(ok, "gemm: stride overflow");
    // SAFETY: the asserts above prove that every element gemm reads
    // (`a.off + i*a.rs + p*a.cs` for i < m, p < k; likewise for b) and writes
    // (`i*dst_rs + j` for i < m, j < n) lies inside the corresponding slice,
    // and the strides fit in isize. `dst` is borrowed mutably, so it aliases
    // neither input, and `read_dst = false` means its old contents are unused.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            a.data.as_ptr().add(a.off),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.off),
            b.cs as isize,
            b.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Copies the `rows x cols` view `m` into `dst` (row-major, `cols` per
/// row) with every element rounded to TF32 ([`round_tf32`]) and returns the
/// copy as a view. Panics if a view exceeds its slice (plans are validated
/// before running).
pub(crate) fn rounded_copy<'a>(dst: &'a mut [f32], m: Mat, rows: usize, cols: usize) -> Mat<'a> {
    let dst = &mut dst[..rows * cols];
    if cols > 0 {
        for (i, row) in dst.chunks_exact_mut(cols).enumerate() {
            let start = m.off + i * m.rs;
            if m.cs == 1 {
                let src = &m.data[start..start + cols];
                row.iter_mut()
                    .zip(src)
                    .for_each(|(d, &v)| *d = round_tf32(v));
            } else {
                for (j, d) in row.iter_mut().enumerate() {
                    *d = round_tf32(m.data[start + j * m.cs]);
                }
            }
        }
    }
    Mat {
        data: dst,
        off: 0,
        rs: cols,
        cs: 1,
    }
}

/// Output-tile shape `(rows, cols)` for an `m x n` product of depth `k`.
pub(crate) fn blocks(m: usize, n: usize, k: usize) -> (usize, usize) {
    let elems = (TARGET_FLOPS / (2 * k.max(1))).max(64);
    if m * n <= elems {
        return (m.max(1), n.max(1));
    }
    // Square-ish tiles: the operands each tile packs (k * (rows + cols))
    // are least for a given tile area when rows and cols are alike.
    let side = ((elems as f64).sqrt() as usize).max(8);
    let cb = tiles::round8(side.min(n).max(1));
    let rb = tiles::round8((elems / cb).clamp(1, m.max(1)));
    (rb, cb)
}

/// The MatMul kernel (see [`MatMulSpec`]). With `tf32`, both operands are
/// rounded to TF32 (every matmul runs on TF32 tensor cores on the GPU in
/// that precision, whatever its shape): each tile multiplies rounded copies
/// of its rows of A and its columns of B.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    s: &MatMulSpec,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    out: &mut [f32],
    stop: &Stop,
    tf32: bool,
) {
    let count = s.batch_count();
    let (m, n) = (s.m, s.n);
    let (rb, cb) = blocks(m, n, s.k);
    let grid = tiles::grid(&mut out[..count * m * n], count, m, n, rb, cb);
    let batch_off = |bi: usize, strides: &[usize]| {
        let mut rem = bi;
        let mut off = 0;
        for d in (0..s.batch.len()).rev() {
            off += (rem % s.batch[d]) * strides[d];
            rem /= s.batch[d];
        }
        off
    };
    tiles::run(grid, stop, |mut t| {
        let rows = t.rows.len();
        let cols = t.rows[0].len();
        let (i0, j0) = (t.row0, t.col0);
        let am = Mat {
            data: a,
            off: batch_off(t.plane, &s.a_batch_strides) + i0 * s.lda_m,
            rs: s.lda_m,
            cs: s.lda_k,
        };
        let bm = Mat {
            data: b,
            off: batch_off(t.plane, &s.b_batch_strides) + j0 * s.ldb_n,
            rs: s.ldb_k,
            cs: s.ldb_n,
        };
        let (a_len, b_len) = if tf32 {
            (rows * s.k, s.k * cols)
        } else {
            (0, 0)
        };
        with_scratch(rows * cols, a_len, b_len, |acc, ra, rb| {
            if tf32 {
                let am = rounded_copy(ra, am, rows, s.k);
                let bm = rounded_copy(rb, bm, s.k, cols);
                gemm_f32(rows, cols, s.k, acc, cols, am, bm);
            } else {
                gemm_f32(rows, cols, s.k, acc, cols, am, bm);
            }
            for (r, dst) in t.rows.iter_mut().enumerate() {
                let i = i0 + r;
                let acc = &acc[r * cols..(r + 1) * cols];
                dst.iter_mut().zip(acc).for_each(|(d, &v)| *d = s.alpha * v);
                if let Some(bias) = bias {
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d += s.beta
                            * bias[t.plane * s.bias_stride_batch
                                + i * s.bias_stride_m
                                + (j0 + j) * s.bias_stride_n];
                    }
                }
                if let Some(res) = res {
                    let base = (t.plane * m + i) * n + j0;
                    dst.iter_mut()
                        .zip(&res[base..base + cols])
                        .for_each(|(d, &r)| *d += r);
                }
                apply_act(dst, s.act);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_square_ish_within_the_flop_target() {
        // BERT's FFN output product at batch 1: [128 x 3072] x [3072 x 768].
        for (m, n, k) in [(128, 768, 3072), (1024, 768, 768), (128, 2304, 768)] {
            let (rb, cb) = blocks(m, n, k);
            assert!(rb % 8 == 0 && cb % 8 == 0, "{m}x{n}x{k}: {rb} x {cb}");
            assert!(
                2 * rb * cb * k <= TARGET_FLOPS + 2 * 8 * cb * k,
                "{m}x{n}x{k}: {rb} x {cb} is over the target"
            );
            // The operands a tile packs, k * (rb + cb), within 1.5x of a
            // square tile of the same area.
            let square = 2.0 * ((rb * cb) as f64).sqrt();
            assert!(
                ((rb + cb) as f64) < 1.5 * square,
                "{m}x{n}x{k}: {rb} x {cb} is not square-ish"
            );
        }
        // A product small enough for one tile stays whole.
        assert_eq!(blocks(16, 24, 64), (16, 24));
        // A narrow output keeps its width.
        let (rb, cb) = blocks(4096, 8, 4096);
        assert_eq!(cb, 8);
        assert!(rb >= 8);
    }
}
