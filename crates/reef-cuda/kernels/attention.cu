// reef CUDA kernels: fused attention (family attention, reef_plan's
// AttentionSpec). One tile is 16 query rows of one (batch, head) problem
// (32 where 32-row tiles fill the GPU twice), run by two groups of four
// warps that split its keys: each group takes
// every other chunk of REEF_ATT_KEYS keys, computes the scores, the softmax
// prologue (scale, mask) and an online softmax (running max and sum) and
// sums the probability-weighted values; at the end the two halves merge.
// All arithmetic is f32 on FFMA. Scores and probabilities stay in shared
// memory; the output is written once, through strides (the merge transpose
// after the context product costs nothing). Both variants run the same
// tile, so a BE kernel stopped between tiles resumes with identical results;
// a BE tile also stops between key chunks once the preemption flag is up
// (it writes nothing until its end, so it simply runs again).
#if defined(REEF_SET_BASE)  // the base kernel set (gemm.cu: kernel sets)

#define REEF_ATT_KEYS 32
#define REEF_ATT_MAXD 128
#define REEF_ATT_THREADS 256
#define REEF_ATT_GROUP 128  // threads per key group
#define REEF_ATT_ROWS 32    // most query rows per tile (8 row groups x 4 rows)
#define REEF_ATT_LD (REEF_ATT_ROWS + 4)      // most row stride of qt and ps
#define REEF_ATT_KLD (REEF_ATT_KEYS + 1)     // key stride of kt
// Shared memory in floats (dynamic; reef_cuda::params::ATTENTION_SMEM
// mirrors it): Q transposed (qt[d][row]), then per key group a key chunk
// transposed (kt[d][key]), a value chunk (v[key][e]), a chunk's
// probabilities (ps[key][row]) and the merge's row maxima and sums.
#define REEF_ATT_QT (REEF_ATT_MAXD * REEF_ATT_LD)
#define REEF_ATT_KT (REEF_ATT_MAXD * REEF_ATT_KLD)
#define REEF_ATT_VS (REEF_ATT_KEYS * REEF_ATT_MAXD)
#define REEF_ATT_PS (REEF_ATT_KEYS * REEF_ATT_LD)
#define REEF_ATT_ML (2 * REEF_ATT_ROWS)
#define REEF_ATT_GROUP_SMEM (REEF_ATT_KT + REEF_ATT_VS + REEF_ATT_PS + REEF_ATT_ML)

// Mirrors reef_cuda::params::AttentionParams. Strides over (b, h, row, col).
struct AttentionParams {
    Hdr hdr;
    u64 q, k, v, mask, out;
    i64 qs[4], ks[4], vs[4], os[4];
    i32 heads, sq, sk, d, dv, row_blocks;
    i32 tile_rows;  // query rows per tile: 16, or 32 where such tiles fill the GPU twice
    Prologue pre;
    u32 pad0;
};

// Barrier of key group g's 128 threads (named barrier 1 + g).
__device__ __forceinline__ void att_group_sync(i32 g) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(1 + g), "n"(REEF_ATT_GROUP) : "memory");
}
// As att_group_sync, also returning whether any thread of the group passed
// true.
__device__ __forceinline__ bool att_group_or(i32 g, bool v) {
    u32 r;
    asm volatile(
        "{\n .reg .pred p, q;\n setp.ne.u32 p, %1, 0;\n bar.red.or.pred q, %2, %3, p;\n"
        " selp.u32 %0, 1, 0, q;\n}\n"
        : "=r"(r)
        : "r"((u32)v), "r"(1 + g), "n"(REEF_ATT_GROUP)
        : "memory");
    return r != 0;
}

// Starts the copies of a block of `rmax` (at most 32) rows of `cols` floats
// (element (r, c) at src[r * rs + c * cs], zero from row `rows` on) into
// shared memory: element (r, c) to dst[c * ld + r] (`transposed`) or
// dst[r * cols + c]. Thread `at` of `n` takes elements at + n i in
// row-major order, so a warp reads along c. Nothing waits here (cp.async;
// the caller commits and waits).
__device__ __forceinline__ void att_copy(float* dst, i32 ld, bool transposed, const float* src,
                                         i64 rs, i64 cs, i32 rows, i32 rmax, i32 cols, i32 at,
                                         i32 n) {
    i32 r = at / cols, c = at % cols;
    const i32 dr = n / cols, dc = n % cols;
    while (r < rmax) {
        float* to = transposed ? dst + c * ld + r : dst + r * cols + c;
        reef_cp4(to, src + (r < rows ? (i64)r * rs + (i64)c * cs : 0), r < rows);
        r += dr;
        c += dc;
        if (c >= cols) {
            c -= cols;
            ++r;
        }
    }
}

// RPT consecutive floats from shared memory (aligned to RPT floats).
template <int RPT>
__device__ __forceinline__ void att_lds(const float* s, float (&x)[RPT]) {
    if constexpr (RPT == 4) {
        const float4 v = *(const float4*)s;
        x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
    } else {
        const float2 v = *(const float2*)s;
        x[0] = v.x, x[1] = v.y;
    }
}

// One tile of 8 RPT rows, NE x 16 >= dv output columns. Thread gt = tid %
// 128 of key group g = tid / 128 is (ty, tx) = (gt / 16, gt % 16): it owns
// rows RPT ty .. RPT ty + RPT - 1, the scores of keys tx and tx + 16 of each of its group's
// chunks, and output columns tx + 16 e. Copies run a step ahead (cp.async
// groups): a chunk's values arrive while its scores are computed, the
// group's next keys while its values are summed. BE: each group checks the
// preemption flag (loaded a chunk ahead) before each chunk; a group that
// sees it stops, and the tile is given up (false: nothing written).
template <bool BE, int RPT, int NE>
__device__ __forceinline__ bool attention_rows(const AttentionParams& p, u32 t) {
    constexpr int TR = 8 * RPT, LD = TR + 4, KLD = REEF_ATT_KLD;
    const i32 tid = threadIdx.x, g = tid / REEF_ATT_GROUP, gt = tid % REEF_ATT_GROUP;
    const i32 ty = gt >> 4, tx = gt & 15;
    float* qt = reef_dyn_smem();
    float* kt = qt + REEF_ATT_QT + g * REEF_ATT_GROUP_SMEM;
    float* vs = kt + REEF_ATT_KT;
    float* ps = vs + REEF_ATT_VS;
    float* ml = ps + REEF_ATT_PS;
    const u32 bh = t / (u32)p.row_blocks;
    const i32 row0 = (i32)(t % (u32)p.row_blocks) * TR;
    const i64 b = bh / (u32)p.heads, h = bh % (u32)p.heads;
    const float* q = (const float*)p.q + b * p.qs[0] + h * p.qs[1] + (i64)row0 * p.qs[2];
    const float* k = (const float*)p.k + b * p.ks[0] + h * p.ks[1];
    const float* v = (const float*)p.v + b * p.vs[0] + h * p.vs[1];
    const i32 step = 2 * REEF_ATT_KEYS;  // a group's chunks are every other one
    i32 j0 = g * REEF_ATT_KEYS;
    // Copy group 0: Q (the whole block) and the group's first keys; copy
    // group 1: its first values.
    att_copy(qt, LD, true, q, p.qs[2], p.qs[3], min(TR, p.sq - row0), TR, p.d, tid,
             REEF_ATT_THREADS);
    if (j0 < p.sk)
        att_copy(kt, KLD, true, k + (i64)j0 * p.ks[2], p.ks[2], p.ks[3],
                 min(REEF_ATT_KEYS, p.sk - j0), 32, p.d, gt, REEF_ATT_GROUP);
    reef_cp_commit();
    if (j0 < p.sk)
        att_copy(vs, 0, false, v + (i64)j0 * p.vs[2], p.vs[2], p.vs[3],
                 min(REEF_ATT_KEYS, p.sk - j0), 32, p.dv, gt, REEF_ATT_GROUP);
    reef_cp_commit();
    float m[RPT], l[RPT], o[RPT][NE];
    i64 mrow[RPT];
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
        m[rr] = -reef_inf();
        l[rr] = 0.0f;
#pragma unroll
        for (int e = 0; e < NE; ++e) o[rr][e] = 0.0f;
        // The unfused softmax's row index of this query row (rows past the
        // end read mask row 0, which every mask has).
        const i32 i = row0 + RPT * ty + rr;
        const i64 row = (i64)bh * p.sq + i;
        mrow[rr] = i < p.sq ? reef_pre_mrow(p.pre, row) : 0;
    }
    const float* mask = (const float*)p.mask;
    i32 flag = 0;
    if (BE && gt == 0) flag = *(volatile const i32*)p.hdr.flag;
    reef_cp_wait<1>();
    __syncthreads();  // Q, copied by both groups, is in place
    bool stopped = false;
    for (; j0 < p.sk; j0 += step) {
        const i32 nk = min(REEF_ATT_KEYS, p.sk - j0), next = j0 + step;
        reef_cp_wait<1>();  // this chunk's keys have landed
        if constexpr (BE) {
            stopped = att_group_or(g, flag != 0);
            if (gt == 0) flag = *(volatile const i32*)p.hdr.flag;
            if (stopped) {
                if (threadIdx.x == 0) REEF_PROBE_NOTICE();
                break;
            }
        } else {
            att_group_sync(g);
        }
        float s[RPT][2];
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr) s[rr][0] = s[rr][1] = 0.0f;
#pragma unroll 4
        for (i32 dd = 0; dd < p.d; ++dd) {
            float qv[RPT];
            att_lds<RPT>(qt + dd * LD + RPT * ty, qv);
            const float k0 = kt[dd * KLD + tx];
            const float k1 = kt[dd * KLD + tx + 16];
#pragma unroll
            for (int rr = 0; rr < RPT; ++rr) {
                s[rr][0] = fmaf(qv[rr], k0, s[rr][0]);
                s[rr][1] = fmaf(qv[rr], k1, s[rr][1]);
            }
        }
        att_group_sync(g);  // every thread of the group is done with the keys
        if (next < p.sk)
            att_copy(kt, KLD, true, k + (i64)next * p.ks[2], p.ks[2], p.ks[3],
                     min(REEF_ATT_KEYS, p.sk - next), 32, p.d, gt, REEF_ATT_GROUP);
        reef_cp_commit();
        // The prologue (the unfused softmax's f32 operations), then the
        // online softmax: rescale what came before to the new maximum.
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr) {
            float cm = -reef_inf();
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const i32 j = j0 + tx + 16 * c;
                float x = reef_pre_scale(p.pre, s[rr][c]);
                if (mask != nullptr && j < p.sk) x = x + mask[mrow[rr] + (i64)j * p.pre.mask_cs];
                s[rr][c] = j < p.sk ? x : -reef_inf();
                cm = fmaxf(cm, s[rr][c]);
            }
            const float mn = fmaxf(m[rr], reef_warp_max<16>(cm));
            const float base = mn == -reef_inf() ? 0.0f : mn;
            const float alpha = expf(m[rr] - base);
            const float p0 = expf(s[rr][0] - base), p1 = expf(s[rr][1] - base);
            l[rr] = l[rr] * alpha + p0 + p1;
#pragma unroll
            for (int e = 0; e < NE; ++e) o[rr][e] = o[rr][e] * alpha;
            m[rr] = mn;
            ps[tx * LD + RPT * ty + rr] = p0;
            ps[(tx + 16) * LD + RPT * ty + rr] = p1;
        }
        reef_cp_wait<1>();  // this chunk's values have landed
        att_group_sync(g);
#pragma unroll 2
        for (i32 key = 0; key < nk; ++key) {
            float pv[RPT];
            att_lds<RPT>(ps + key * LD + RPT * ty, pv);
            const float* vrow = vs + key * p.dv;
#pragma unroll
            for (int e = 0; e < NE; ++e) {
                if (tx + 16 * e < p.dv) {
                    const float x = vrow[tx + 16 * e];
#pragma unroll
                    for (int rr = 0; rr < RPT; ++rr) o[rr][e] = fmaf(pv[rr], x, o[rr][e]);
                }
            }
        }
        att_group_sync(g);  // every thread of the group is done with values and ps
        if (next < p.sk)
            att_copy(vs, 0, false, v + (i64)next * p.vs[2], p.vs[2], p.vs[3],
                     min(REEF_ATT_KEYS, p.sk - next), 32, p.dv, gt, REEF_ATT_GROUP);
        reef_cp_commit();
    }
    reef_cp_wait<0>();
    if (BE && __syncthreads_or(stopped)) return false;
    // Merge: group 1 leaves its rows' maxima, sums and outputs (in its value
    // buffer, [row][128]); group 0 rescales both halves to the larger maximum.
    float sum[RPT];
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) sum[rr] = reef_warp_sum<16>(l[rr]);
    if (g == 1) {
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr) {
            if (tx == 0) {
                ml[RPT * ty + rr] = m[rr];
                ml[TR + RPT * ty + rr] = sum[rr];
            }
#pragma unroll
            for (int e = 0; e < NE; ++e)
                vs[(RPT * ty + rr) * REEF_ATT_MAXD + tx + 16 * e] = o[rr][e];
        }
    }
    __syncthreads();
    if (g == 1) return true;
    const float* ml1 = ml + REEF_ATT_GROUP_SMEM;
    const float* o1 = vs + REEF_ATT_GROUP_SMEM;
    float* out = (float*)p.out + b * p.os[0] + h * p.os[1];
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
        const i32 r = RPT * ty + rr, i = row0 + r;
        const float m1 = ml1[r], mm = fmaxf(m[rr], m1);
        const float base = mm == -reef_inf() ? 0.0f : mm;
        const float a0 = expf(m[rr] - base), a1 = expf(m1 - base);
        const float den = sum[rr] * a0 + ml1[TR + r] * a1;
        if (i >= p.sq) continue;
#pragma unroll
        for (int e = 0; e < NE; ++e) {
            const i32 c = tx + 16 * e;
            if (c < p.dv)
                out[(i64)i * p.os[2] + (i64)c * p.os[3]] =
                    (o[rr][e] * a0 + o1[r * REEF_ATT_MAXD + c] * a1) / den;
        }
    }
    return true;
}

template <bool BE>
__device__ __forceinline__ bool attention_tile(const AttentionParams& p, u32 t) {
    if (p.tile_rows == 32)
        return p.dv <= 64 ? attention_rows<BE, 4, 4>(p, t) : attention_rows<BE, 4, 8>(p, t);
    return p.dv <= 64 ? attention_rows<BE, 2, 4>(p, t) : attention_rows<BE, 2, 8>(p, t);
}
REEF_FAMILY_MB(attention, AttentionParams, REEF_ATT_THREADS, 2)

#endif  // REEF_SET_BASE
