// reef CUDA kernels: fused attention (family attention, reef_plan's
// AttentionSpec). One tile is REEF_ATT_ROWS query rows of one (batch, head)
// problem: the scores against each chunk of REEF_ATT_KEYS keys, the softmax
// prologue (scale, mask), an online softmax (running max and sum), and the
// probability-weighted values, all in f32 on FFMA. Scores and
// probabilities stay in shared memory; the output is written once, through
// strides (the merge transpose after the context product costs nothing).
// Both variants run the same tile, so a BE kernel stopped between tiles
// resumes with identical results.
#if defined(REEF_SET_BASE)  // the base kernel set (gemm.cu: kernel sets)

#define REEF_ATT_ROWS 32
#define REEF_ATT_KEYS 32
#define REEF_ATT_MAXD 128
#define REEF_ATT_THREADS 128

// Mirrors reef_cuda::params::AttentionParams. Strides over (b, h, row, col).
struct AttentionParams {
    Hdr hdr;
    u64 q, k, v, mask, out;
    i64 qs[4], ks[4], vs[4], os[4];
    i32 heads, sq, sk, d, dv, row_blocks;
    i32 scale_op;  // 0 none, 1 s * scale, 2 s / scale
    float scale;
    i32 mask_div, mask_mod, mask_ld, mask_cs;
};

// Sum and max over the 16 lanes of a half warp (one row group).
__device__ __forceinline__ float reef_half_max(float x) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ float reef_half_sum(float x) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) x = x + __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Thread (ty, tx) = (tid / 16, tid % 16) owns query rows 4 ty .. 4 ty + 3,
// the scores of keys tx and tx + 16 of each chunk, and the output elements
// tx + 16 i (i < 8) of its rows.
__device__ __forceinline__ void attention_tile(const AttentionParams& p, u32 t) {
    // Q transposed (qt[d][row], rows padded to 36 so a row group's four
    // rows are one aligned float4).
    __shared__ __align__(16) float qt[REEF_ATT_MAXD][REEF_ATT_ROWS + 4];
    // A key chunk transposed (kt[d * 33 + key]: stores along d and loads
    // along keys both miss bank conflicts), then the value chunk
    // (v[key * dv + e]).
    __shared__ __align__(16) float kv[REEF_ATT_MAXD * (REEF_ATT_KEYS + 1)];
    // A chunk's probabilities (ps[key][row]).
    __shared__ __align__(16) float ps[REEF_ATT_KEYS][REEF_ATT_ROWS + 4];
    const u32 bh = t / (u32)p.row_blocks;
    const i32 row0 = (i32)(t % (u32)p.row_blocks) * REEF_ATT_ROWS;
    const i64 b = bh / (u32)p.heads, h = bh % (u32)p.heads;
    const float* q = (const float*)p.q + b * p.qs[0] + h * p.qs[1];
    const float* k = (const float*)p.k + b * p.ks[0] + h * p.ks[1];
    const float* v = (const float*)p.v + b * p.vs[0] + h * p.vs[1];
    const i32 tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
    for (i32 idx = tid; idx < p.d * REEF_ATT_ROWS; idx += REEF_ATT_THREADS) {
        const i32 dd = idx % p.d, r = idx / p.d, i = row0 + r;
        qt[dd][r] = i < p.sq ? q[(i64)i * p.qs[2] + (i64)dd * p.qs[3]] : 0.0f;
    }
    float m[4], l[4], o[4][8];
    i64 mrow[4];
#pragma unroll
    for (int rr = 0; rr < 4; ++rr) {
        m[rr] = -reef_inf();
        l[rr] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) o[rr][e] = 0.0f;
        // The unfused softmax's row index of this query row (rows past the
        // end read mask row 0, which every mask has).
        const i32 i = row0 + 4 * ty + rr;
        const i64 row = (i64)bh * p.sq + i;
        mrow[rr] = i < p.sq ? (row / p.mask_div) % p.mask_mod * (i64)p.mask_ld : 0;
    }
    const float* mask = (const float*)p.mask;
    for (i32 j0 = 0; j0 < p.sk; j0 += REEF_ATT_KEYS) {
        __syncthreads();  // Q stored; the previous value chunk read
        for (i32 idx = tid; idx < p.d * REEF_ATT_KEYS; idx += REEF_ATT_THREADS) {
            const i32 dd = idx % p.d, key = idx / p.d, j = j0 + key;
            kv[dd * (REEF_ATT_KEYS + 1) + key] =
                j < p.sk ? k[(i64)j * p.ks[2] + (i64)dd * p.ks[3]] : 0.0f;
        }
        __syncthreads();
        float s[4][2];
#pragma unroll
        for (int rr = 0; rr < 4; ++rr) s[rr][0] = s[rr][1] = 0.0f;
#pragma unroll 4
        for (i32 dd = 0; dd < p.d; ++dd) {
            const float4 qv = *(const float4*)&qt[dd][4 * ty];
            const float k0 = kv[dd * (REEF_ATT_KEYS + 1) + tx];
            const float k1 = kv[dd * (REEF_ATT_KEYS + 1) + tx + 16];
            s[0][0] = fmaf(qv.x, k0, s[0][0]);
            s[0][1] = fmaf(qv.x, k1, s[0][1]);
            s[1][0] = fmaf(qv.y, k0, s[1][0]);
            s[1][1] = fmaf(qv.y, k1, s[1][1]);
            s[2][0] = fmaf(qv.z, k0, s[2][0]);
            s[2][1] = fmaf(qv.z, k1, s[2][1]);
            s[3][0] = fmaf(qv.w, k0, s[3][0]);
            s[3][1] = fmaf(qv.w, k1, s[3][1]);
        }
        // The prologue (the unfused softmax's f32 operations), then the
        // online softmax: rescale what came before to the new maximum.
        float pr[4][2];
#pragma unroll
        for (int rr = 0; rr < 4; ++rr) {
            float cm = -reef_inf();
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const i32 j = j0 + tx + 16 * c;
                float x = s[rr][c];
                if (p.scale_op == 1) x = x * p.scale;
                else if (p.scale_op == 2) x = x / p.scale;
                if (mask != nullptr && j < p.sk) x = x + mask[mrow[rr] + (i64)j * p.mask_cs];
                s[rr][c] = j < p.sk ? x : -reef_inf();
                cm = fmaxf(cm, s[rr][c]);
            }
            const float mn = fmaxf(m[rr], reef_half_max(cm));
            const float base = mn == -reef_inf() ? 0.0f : mn;
            const float alpha = expf(m[rr] - base);
            pr[rr][0] = expf(s[rr][0] - base);
            pr[rr][1] = expf(s[rr][1] - base);
            l[rr] = l[rr] * alpha + pr[rr][0] + pr[rr][1];
#pragma unroll
            for (int e = 0; e < 8; ++e) o[rr][e] = o[rr][e] * alpha;
            m[rr] = mn;
        }
        __syncthreads();  // every thread is done with the key chunk
#pragma unroll
        for (int rr = 0; rr < 4; ++rr) {
            ps[tx][4 * ty + rr] = pr[rr][0];
            ps[tx + 16][4 * ty + rr] = pr[rr][1];
        }
        for (i32 idx = tid; idx < p.dv * REEF_ATT_KEYS; idx += REEF_ATT_THREADS) {
            const i32 e = idx % p.dv, key = idx / p.dv, j = j0 + key;
            kv[key * p.dv + e] = j < p.sk ? v[(i64)j * p.vs[2] + (i64)e * p.vs[3]] : 0.0f;
        }
        __syncthreads();
        const i32 nk = min(REEF_ATT_KEYS, p.sk - j0);
        for (i32 key = 0; key < nk; ++key) {
            const float4 pv = *(const float4*)&ps[key][4 * ty];
            const float* vrow = kv + key * p.dv;
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                if (tx + 16 * e < p.dv) {
                    const float x = vrow[tx + 16 * e];
                    o[0][e] = fmaf(pv.x, x, o[0][e]);
                    o[1][e] = fmaf(pv.y, x, o[1][e]);
                    o[2][e] = fmaf(pv.z, x, o[2][e]);
                    o[3][e] = fmaf(pv.w, x, o[3][e]);
                }
            }
        }
    }
    float* out = (float*)p.out + b * p.os[0] + h * p.os[1];
#pragma unroll
    for (int rr = 0; rr < 4; ++rr) {
        const float sum = reef_half_sum(l[rr]);
        const i32 i = row0 + 4 * ty + rr;
        if (i >= p.sq) continue;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            const i32 c = tx + 16 * e;
            if (c < p.dv) out[(i64)i * p.os[2] + (i64)c * p.os[3]] = o[rr][e] / sum;
        }
    }
}
REEF_FAMILY(attention, AttentionParams, REEF_ATT_THREADS)

#endif  // REEF_SET_BASE
