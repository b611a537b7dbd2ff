//! Fused attention ([`AttentionSpec`]) in f32: for each query row, its
//! scores against every key (each a sequential sum over `d`), the softmax
//! prologue, the softmax, and the probability-weighted sum of the values
//! (sequential over the keys), divided by the softmax's sum at the end, as
//! the GPU kernel does. Tiles are blocks of query rows; each gathers its
//! problem's K (transposed) and V into contiguous scratch once, so the
//! inner loops run over unit strides.

use super::super::tiles::{self, Stop, TARGET_FLOPS};
use reef_plan::kernel::AttentionSpec;

/// Computes `a` from `[q, k, v, mask]` (mask empty without one) into `out`.
pub(crate) fn attention(a: &AttentionSpec, ins: [&[f32]; 4], out: &mut [f32], stop: &Stop) {
    let Some(n) = a.out_elems().filter(|&n| n > 0) else {
        return;
    };
    let [q, k, v, mask] = ins;
    let (sq, sk, d, dv) = (a.sq, a.sk, a.d, a.dv);
    // Rows per tile: about TARGET_FLOPS of work, at least one row.
    let row_flops = (2 * sk * (d + dv)).max(1);
    let rows = (TARGET_FLOPS / row_flops).clamp(1, sq);
    // Results in dense [batch, heads, sq, dv] order, placed at the end.
    let mut dense = vec![0f32; n];
    tiles::chunks(&mut dense, rows * dv, stop, |start, chunk| {
        let mut kt = vec![0f32; d * sk];
        let mut vv = vec![0f32; sk * dv];
        let mut scores = vec![0f32; sk];
        let mut problem = usize::MAX;
        for (ri, orow) in chunk.chunks_mut(dv).enumerate() {
            let r = start / dv + ri;
            let (bh, i) = (r / sq, r % sq);
            let (b, h) = (bh / a.heads, bh % a.heads);
            if bh != problem {
                problem = bh;
                let [k0, k1, k2, k3] = a.k_strides;
                let [v0, v1, v2, v3] = a.v_strides;
                for j in 0..sk {
                    let kb = b * k0 + h * k1 + j * k2;
                    for t in 0..d {
                        kt[t * sk + j] = k[kb + t * k3];
                    }
                    let vb = b * v0 + h * v1 + j * v2;
                    for (e, x) in vv[j * dv..(j + 1) * dv].iter_mut().enumerate() {
                        *x = v[vb + e * v3];
                    }
                }
            }
            let [q0, q1, q2, q3] = a.q_strides;
            let qb = b * q0 + h * q1 + i * q2;
            scores.fill(0.0);
            for t in 0..d {
                let qv = q[qb + t * q3];
                for (s, &kv) in scores.iter_mut().zip(&kt[t * sk..(t + 1) * sk]) {
                    *s += qv * kv;
                }
            }
            for (j, s) in scores.iter_mut().enumerate() {
                *s = a.pre.apply(*s, r, j, mask);
            }
            let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut l = 0f32;
            orow.fill(0.0);
            for (j, &s) in scores.iter().enumerate() {
                let p = (s - m).exp();
                l += p;
                for (o, &x) in orow.iter_mut().zip(&vv[j * dv..(j + 1) * dv]) {
                    *o += p * x;
                }
            }
            orow.iter_mut().for_each(|o| *o /= l);
        }
    });
    if !stop.completed() {
        return;
    }
    let [o0, o1, o2, o3] = a.out_strides;
    for (r, row) in dense.chunks(dv).enumerate() {
        let (bh, i) = (r / sq, r % sq);
        let base = bh / a.heads * o0 + bh % a.heads * o1 + i * o2;
        for (e, &x) in row.iter().enumerate() {
            out[base + e * o3] = x;
        }
    }
}
