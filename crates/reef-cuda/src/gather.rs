//! The K-index gather tables of convolutions that read their input as an
//! implicit im2col: one 32-bit entry per K index (c, r, s) with its element
//! offset from an output pixel's top-left input element and its (r, s)
//! position, built at load so that the kernel's loader steps no (c, r, s)
//! state (`ConvLoad::issue` in `kernels/gemm.cu`). Each thread checks an
//! entry's bounds with one bit of a mask over the kernel's (r, s)
//! positions, computed once per tile for its output pixel.

use crate::params::GEMM_K;
use reef_plan::kernel::ConvSpec;

/// Bits of an entry's (r, s) position; the rest hold the offset.
pub const RS_BITS: u32 = 5;

/// The (r, s) position of padding entries (K indices past c/groups * r * s):
/// its mask bit is never set, so they load zeros.
pub const PAD_RS: u32 = (1 << RS_BITS) - 1;

/// Gather table entries of a convolution: one per K index (c, r, s), rounded
/// up to a whole K step, for the convolutions that gather their input
/// (im2col, not the 16-byte path of unpadded stride-1 1x1 convolutions, not
/// depthwise); 0 where r * s or the offsets do not fit an entry.
pub fn gather_entries(c: &ConvSpec) -> usize {
    if c.groups == 0 || !c.c.is_multiple_of(c.groups) || c.c / c.groups <= 1 {
        return 0;
    }
    // Offsets lie within one image's channels of a group.
    let group = (c.c / c.groups).saturating_mul(c.h).saturating_mul(c.w);
    if rows_along_pixels(c) || c.r * c.s >= PAD_RS as usize || group >= 1 << (32 - RS_BITS) {
        return 0;
    }
    (c.c / c.groups * c.r * c.s).next_multiple_of(GEMM_K as usize)
}

/// Whether a convolution's input rows are its GEMM's B rows (an unpadded
/// stride-1 1x1 over a pixel count divisible by 4): the kernel then copies
/// 16 bytes along pixels (when the input is 16-byte aligned) instead of
/// gathering.
pub fn rows_along_pixels(c: &ConvSpec) -> bool {
    c.r == 1
        && c.s == 1
        && c.stride == [1, 1]
        && c.pad == [0, 0]
        && c.oh == c.h
        && c.ow == c.w
        && (c.oh * c.ow).is_multiple_of(4)
}

/// u64 words of a convolution's gather table (two entries each).
pub fn gather_words(c: &ConvSpec) -> usize {
    gather_entries(c) / 2
}

/// One entry: the element offset of K index (c, r, s) from the input's
/// (channel 0, row iy0, column ix0) of an output pixel, above its (r, s)
/// position `r * s_len + s` (the low [`RS_BITS`] bits).
pub fn gather_entry(off: u32, rs: u32) -> u32 {
    (off << RS_BITS) | rs
}

/// The gather table of a convolution, [`gather_entries`] entries packed two
/// to a u64 word (entry 2i in the low half of word i). Entries past
/// c/groups * r * s have position [`PAD_RS`] and load zeros, like the
/// stepping loader past K.
pub fn gather_table(c: &ConvSpec) -> Vec<u64> {
    let n = gather_entries(c);
    let (rs, hw) = (c.r * c.s, c.h * c.w);
    let crs = c.c / c.groups.max(1) * rs;
    let entry = |k: usize| {
        if k >= crs {
            return gather_entry(0, PAD_RS);
        }
        let (ch, q) = (k / rs, k % rs);
        let (r, s) = (q / c.s, q % c.s);
        // Fits: under 2^27 (gather_entries).
        let off = ch * hw + r * c.dilation[0] * c.w + s * c.dilation[1];
        gather_entry(off as u32, q as u32)
    };
    (0..n / 2)
        .map(|i| u64::from(entry(2 * i)) | (u64::from(entry(2 * i + 1)) << 32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reef_model::Act;

    fn spec(
        c: usize,
        hw: [usize; 2],
        rs: [usize; 2],
        stride: usize,
        pad: usize,
        dil: usize,
        groups: usize,
    ) -> ConvSpec {
        let out = |i: usize, k: usize| (i + 2 * pad - dil * (k - 1) - 1) / stride + 1;
        ConvSpec {
            n: 2,
            c,
            h: hw[0],
            w: hw[1],
            k: 2 * groups,
            r: rs[0],
            s: rs[1],
            oh: out(hw[0], rs[0]),
            ow: out(hw[1], rs[1]),
            stride: [stride; 2],
            pad: [pad; 2],
            dilation: [dil; 2],
            groups,
            has_bias: false,
            has_residual: false,
            act: Act::None,
        }
    }

    /// What the kernel's table loader reads for K index k and output pixel
    /// (y, x): the element offset within the group's channels of one image,
    /// or None for a zero (padding, or k past the end). The mask is the
    /// kernel's per-tile (r, s) validity mask of the pixel.
    fn table_read(c: &ConvSpec, t: &[u64], k: usize, y: usize, x: usize) -> Option<i64> {
        let (iy0, ix0) = (
            (y * c.stride[0]) as i64 - c.pad[0] as i64,
            (x * c.stride[1]) as i64 - c.pad[1] as i64,
        );
        let mut mask = 0u64;
        for r in 0..c.r {
            for s in 0..c.s {
                let iy = iy0 + (r * c.dilation[0]) as i64;
                let ix = ix0 + (s * c.dilation[1]) as i64;
                if (0..c.h as i64).contains(&iy) && (0..c.w as i64).contains(&ix) {
                    mask |= 1 << (r * c.s + s);
                }
            }
        }
        let e = (t[k / 2] >> (32 * (k % 2))) as u32;
        let (off, rs) = (i64::from(e >> RS_BITS), e & PAD_RS);
        ((mask >> rs) & 1 == 1).then(|| (iy0 * c.w as i64 + ix0) + off)
    }

    /// The same element from (c, r, s) directly, as the CPU backend reads it.
    fn direct(c: &ConvSpec, k: usize, y: usize, x: usize) -> Option<i64> {
        let crs = c.c / c.groups * c.r * c.s;
        if k >= crs {
            return None;
        }
        let (ch, q) = (k / (c.r * c.s), k % (c.r * c.s));
        let (r, s) = (q / c.s, q % c.s);
        let iy = (y * c.stride[0] + r * c.dilation[0]) as i64 - c.pad[0] as i64;
        let ix = (x * c.stride[1] + s * c.dilation[1]) as i64 - c.pad[1] as i64;
        ((0..c.h as i64).contains(&iy) && (0..c.w as i64).contains(&ix))
            .then(|| (ch * c.h * c.w) as i64 + iy * c.w as i64 + ix)
    }

    #[test]
    fn table_reads_what_im2col_reads() {
        let cases = [
            spec(32, [28, 28], [3, 3], 1, 1, 1, 1),
            spec(64, [30, 30], [3, 3], 2, 1, 1, 1),
            spec(3, [64, 64], [5, 5], 2, 2, 1, 1),
            spec(32, [17, 19], [3, 3], 1, 2, 2, 4),
            spec(13, [9, 11], [3, 3], 1, 1, 1, 1),
            spec(24, [12, 10], [1, 7], 1, 3, 1, 1),
            spec(8, [9, 9], [5, 6], 1, 2, 1, 1),
            spec(24, [10, 12], [7, 1], 1, 0, 1, 2),
            spec(256, [14, 14], [1, 1], 2, 0, 1, 1),
        ];
        for c in &cases {
            let t = gather_table(c);
            let crs = c.c / c.groups * c.r * c.s;
            let n = crs.next_multiple_of(GEMM_K as usize);
            assert_eq!((t.len(), gather_words(c)), (n / 2, n / 2), "{c:?}");
            for k in 0..n {
                for y in 0..c.oh {
                    for x in 0..c.ow {
                        assert_eq!(
                            table_read(c, &t, k, y, x),
                            direct(c, k, y, x),
                            "{c:?} k {k} ({y}, {x})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn convolutions_without_a_gather_get_no_table() {
        // Unpadded stride-1 1x1 (the 16-byte loader) and depthwise.
        assert_eq!(gather_entries(&spec(64, [14, 14], [1, 1], 1, 0, 1, 1)), 0);
        assert_eq!(gather_entries(&spec(48, [20, 20], [3, 3], 2, 1, 1, 48)), 0);
        // Offsets past 27 bits, and kernels of 31 or more (r, s) positions.
        assert_eq!(
            gather_entries(&spec(128, [1024, 1024], [3, 3], 1, 1, 1, 1)),
            0
        );
        assert_eq!(gather_entries(&spec(4, [32, 32], [7, 7], 1, 3, 1, 1)), 0);
        assert_eq!(gather_entries(&spec(4, [32, 32], [5, 6], 1, 2, 1, 1)), 128);
        // A 1x1 with an odd pixel count gathers.
        assert_eq!(gather_entries(&spec(64, [7, 7], [1, 1], 1, 0, 1, 1)), 64);
    }
}
