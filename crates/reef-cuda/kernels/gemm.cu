// reef CUDA kernels: convolution (implicit GEMM) and batched matmul.
// Block tile 64 (M) x 64 (N) x 16 (K), 128 threads. Two cores share the
// loaders and the epilogues: TF32 tensor cores (mma.sync m16n8k8, 4 warps of
// 32x32) and an exact-f32 FFMA core (each thread 8x4 outputs).
// No split-K: every output element is written once, by one thread.

#define GM 64
#define GN 64
#define GK 16
#define APITCH 20  // As[m][k], k fastest; 20 words: conflict-free fragment reads
#define BPITCH 72  // Bs[k][n], n fastest; 72 words: conflict-free fragment reads

// Mirrors reef_cuda::params::ConvParams.
struct ConvParams {
    Hdr hdr;
    u64 x, w, bias, residual, out;
    i32 n, c, h, w_, k, r, s, oh, ow;
    i32 sh, sw, ph, pw, dh, dw, groups;
    i32 kg, cg, crs, npix;  // per group out/in channels, c/groups*r*s, oh*ow
    i32 has_bias, has_residual, act;
    float act_lo, act_hi;
    u32 m_tiles, n_tiles;
    u32 pad0;
};

// Mirrors reef_cuda::params::MatMulParams.
struct MatMulParams {
    Hdr hdr;
    u64 a, b, bias, residual, out;
    i32 batch[REEF_MAX_RANK], a_bs[REEF_MAX_RANK], b_bs[REEF_MAX_RANK];
    i32 nbatch, m, n, k, lda_m, lda_k, ldb_k, ldb_n, bias_sm, bias_sn;
    float alpha, beta;
    i32 has_bias, has_residual, act;
    float act_lo, act_hi;
    u32 m_tiles, n_tiles;
    u32 pad0;
};

__device__ __forceinline__ u32 reef_tf32(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void reef_mma_tf32(float* d, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// ---- loaders: A(m_local, k) and B(k) for this thread's fixed column ----
// Thread mapping shared by the cores: A elements (m = (tid>>4) + 8i, k = tid&15),
// B elements (k = (tid>>6) + 2i, n = tid&63), i = 0..7.

struct ConvGemm {
    const ConvParams& p;
    i32 grp, m0, n0;
    // B column state for this thread.
    bool col_ok;
    const float* xb;
    i32 iy0, ix0;
    __device__ __forceinline__ ConvGemm(const ConvParams& pp, u32 t) : p(pp) {
        const u32 mt = t % p.m_tiles;
        const u32 rest = t / p.m_tiles;
        const u32 nt = rest % p.n_tiles;
        grp = (i32)(rest / p.n_tiles);
        m0 = (i32)mt * GM;
        n0 = (i32)nt * GN;
        const i32 col = n0 + (i32)(threadIdx.x & 63);
        const i32 ncols = p.n * p.npix;
        col_ok = col < ncols;
        const i32 cc = col_ok ? col : 0;
        const i32 img = cc / p.npix;
        const i32 pix = cc - img * p.npix;
        const i32 y = pix / p.ow;
        const i32 xx = pix - y * p.ow;
        iy0 = y * p.sh - p.ph;
        ix0 = xx * p.sw - p.pw;
        xb = (const float*)p.x + (i64)(img * p.c + grp * p.cg) * p.h * p.w_;
    }
    __device__ __forceinline__ i32 kdim() const { return p.crs; }
    __device__ __forceinline__ float a(i32 ml, i32 kk) const {
        const i32 m = m0 + ml;
        if (m >= p.kg || kk >= p.crs) return 0.0f;
        return ((const float*)p.w)[(i64)(grp * p.kg + m) * p.crs + kk];
    }
    __device__ __forceinline__ float b(i32 kk) const {
        if (!col_ok || kk >= p.crs) return 0.0f;
        const i32 rs = p.r * p.s;
        const i32 c = kk / rs;
        const i32 q = kk - c * rs;
        const i32 rr = q / p.s;
        const i32 ss = q - rr * p.s;
        const i32 iy = iy0 + rr * p.dh;
        const i32 ix = ix0 + ss * p.dw;
        if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w_) return 0.0f;
        return xb[(c * p.h + iy) * p.w_ + ix];
    }
    __device__ __forceinline__ void store(i32 ml, i32 nl, float v) const {
        const i32 m = m0 + ml, col = n0 + nl;
        if (m >= p.kg || col >= p.n * p.npix) return;
        const i32 kc = grp * p.kg + m;
        const i32 img = col / p.npix;
        const i32 pix = col - img * p.npix;
        const i64 o = ((i64)img * p.k + kc) * p.npix + pix;
        if (p.has_bias) v = v + ((const float*)p.bias)[kc];
        if (p.has_residual) v = v + ((const float*)p.residual)[o];
        ((float*)p.out)[o] = reef_act(v, p.act, p.act_lo, p.act_hi);
    }
};

struct MatMulGemm {
    const MatMulParams& p;
    i32 m0, n0, bi;
    i64 a_off, b_off;
    i32 col;
    __device__ __forceinline__ MatMulGemm(const MatMulParams& pp, u32 t) : p(pp) {
        const u32 mt = t % p.m_tiles;
        const u32 rest = t / p.m_tiles;
        const u32 nt = rest % p.n_tiles;
        bi = (i32)(rest / p.n_tiles);
        m0 = (i32)mt * GM;
        n0 = (i32)nt * GN;
        a_off = 0;
        b_off = 0;
        i32 rem = bi;
        // Compile-time indices only (a run-time index would copy the params to local memory).
#pragma unroll
        for (int d = REEF_MAX_RANK - 1; d >= 0; --d) {
            if (d < p.nbatch) {
                const i32 ix = rem % p.batch[d];
                rem /= p.batch[d];
                a_off += (i64)ix * p.a_bs[d];
                b_off += (i64)ix * p.b_bs[d];
            }
        }
        col = n0 + (i32)(threadIdx.x & 63);
    }
    __device__ __forceinline__ i32 kdim() const { return p.k; }
    __device__ __forceinline__ float a(i32 ml, i32 kk) const {
        const i32 i = m0 + ml;
        if (i >= p.m || kk >= p.k) return 0.0f;
        return ((const float*)p.a)[a_off + (i64)i * p.lda_m + (i64)kk * p.lda_k];
    }
    __device__ __forceinline__ float b(i32 kk) const {
        if (col >= p.n || kk >= p.k) return 0.0f;
        return ((const float*)p.b)[b_off + (i64)kk * p.ldb_k + (i64)col * p.ldb_n];
    }
    __device__ __forceinline__ void store(i32 ml, i32 nl, float v) const {
        const i32 i = m0 + ml, j = n0 + nl;
        if (i >= p.m || j >= p.n) return;
        const i64 o = ((i64)bi * p.m + i) * p.n + j;
        v = p.alpha * v;
        if (p.has_bias)
            v = v + p.beta * ((const float*)p.bias)[(i64)i * p.bias_sm + (i64)j * p.bias_sn];
        if (p.has_residual) v = v + ((const float*)p.residual)[o];
        ((float*)p.out)[o] = reef_act(v, p.act, p.act_lo, p.act_hi);
    }
};

// ---- loading a K step into registers ----
template <class L>
__device__ __forceinline__ void reef_gemm_fetch(const L& ld, i32 k0, float* ra, float* rb) {
    const i32 tid = threadIdx.x;
    const i32 ak = k0 + (tid & 15), am = tid >> 4;
    const i32 bk = k0 + (tid >> 6);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        ra[i] = ld.a(am + 8 * i, ak);
        rb[i] = ld.b(bk + 2 * i);
    }
}

// ---- TF32 tensor-core core ----
template <class L>
__device__ __forceinline__ void reef_gemm_tc(const L& ld) {
    __shared__ __align__(16) u32 As[GM * APITCH];
    __shared__ __align__(16) u32 Bs[GK * BPITCH];
    const i32 tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const i32 g = lane >> 2, q = lane & 3;
    const i32 wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;
    float ra[8], rb[8];
    const i32 kdim = ld.kdim();
    reef_gemm_fetch(ld, 0, ra, rb);
    for (i32 k0 = 0; k0 < kdim; k0 += GK) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            As[((tid >> 4) + 8 * i) * APITCH + (tid & 15)] = reef_tf32(ra[i]);
            Bs[((tid >> 6) + 2 * i) * BPITCH + (tid & 63)] = reef_tf32(rb[i]);
        }
        __syncthreads();
        if (k0 + GK < kdim) reef_gemm_fetch(ld, k0 + GK, ra, rb);
#pragma unroll
        for (int kk = 0; kk < GK; kk += 8) {
            u32 af[2][4], bf[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                const i32 r0 = (wm + mi * 16 + g) * APITCH + kk + q;
                af[mi][0] = As[r0];
                af[mi][1] = As[r0 + 8 * APITCH];
                af[mi][2] = As[r0 + 4];
                af[mi][3] = As[r0 + 8 * APITCH + 4];
            }
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
                const i32 c0 = (kk + q) * BPITCH + wn + ni * 8 + g;
                bf[ni][0] = Bs[c0];
                bf[ni][1] = Bs[c0 + 4 * BPITCH];
            }
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) reef_mma_tf32(acc[mi][ni], af[mi], bf[ni]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                ld.store(wm + mi * 16 + g + ((e >> 1) << 3), wn + ni * 8 + 2 * q + (e & 1),
                         acc[mi][ni][e]);
}

// ---- exact f32 FFMA core (reference path, REEF_TF32=0) ----
template <class L>
__device__ __forceinline__ void reef_gemm_ffma(const L& ld) {
    __shared__ __align__(16) float As[GM * APITCH];
    __shared__ __align__(16) float Bs[GK * BPITCH];
    const i32 tid = threadIdx.x;
    const i32 tx = tid & 15, ty = tid >> 4;
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    float ra[8], rb[8];
    const i32 kdim = ld.kdim();
    reef_gemm_fetch(ld, 0, ra, rb);
    for (i32 k0 = 0; k0 < kdim; k0 += GK) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            As[((tid >> 4) + 8 * i) * APITCH + (tid & 15)] = ra[i];
            Bs[((tid >> 6) + 2 * i) * BPITCH + (tid & 63)] = rb[i];
        }
        __syncthreads();
        if (k0 + GK < kdim) reef_gemm_fetch(ld, k0 + GK, ra, rb);
#pragma unroll
        for (int kk = 0; kk < GK; ++kk) {
            float av[8], bv[4];
#pragma unroll
            for (int i = 0; i < 8; ++i) av[i] = As[(ty + 8 * i) * APITCH + kk];
#pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk * BPITCH + tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) ld.store(ty + 8 * i, tx + 16 * j, acc[i][j]);
}

__device__ __forceinline__ void conv_tc_tile(const ConvParams& p, u32 t) {
    ConvGemm ld(p, t);
    reef_gemm_tc(ld);
}
__device__ __forceinline__ void conv_ffma_tile(const ConvParams& p, u32 t) {
    ConvGemm ld(p, t);
    reef_gemm_ffma(ld);
}
__device__ __forceinline__ void matmul_tc_tile(const MatMulParams& p, u32 t) {
    MatMulGemm ld(p, t);
    reef_gemm_tc(ld);
}
__device__ __forceinline__ void matmul_ffma_tile(const MatMulParams& p, u32 t) {
    MatMulGemm ld(p, t);
    reef_gemm_ffma(ld);
}

// Direct convolution for c/groups == 1 (depthwise and channel multipliers):
// one output element per thread, REEF_EW_PER_THREAD per thread per tile.
__device__ __forceinline__ void conv_dw_tile(const ConvParams& p, u32 t) {
    const i64 total = (i64)p.n * p.k * p.npix;
#pragma unroll
    for (int j = 0; j < REEF_EW_PER_THREAD; ++j) {
        const i64 e = (i64)t * REEF_EW_TILE + j * REEF_EW_THREADS + threadIdx.x;
        if (e >= total) return;
        const i32 pix = (i32)(e % p.npix);
        const i64 nk = e / p.npix;
        const i32 kc = (i32)(nk % p.k);
        const i32 img = (i32)(nk / p.k);
        const i32 y = pix / p.ow, xx = pix - (pix / p.ow) * p.ow;
        const i32 ci = kc / p.kg;  // input channel (cg == 1)
        const float* xp = (const float*)p.x + ((i64)img * p.c + ci) * p.h * p.w_;
        const float* wp = (const float*)p.w + (i64)kc * p.r * p.s;
        float acc = 0.0f;
        for (i32 rr = 0; rr < p.r; ++rr) {
            const i32 iy = y * p.sh - p.ph + rr * p.dh;
            if (iy < 0 || iy >= p.h) continue;
            for (i32 ss = 0; ss < p.s; ++ss) {
                const i32 ix = xx * p.sw - p.pw + ss * p.dw;
                if (ix < 0 || ix >= p.w_) continue;
                acc = fmaf(xp[iy * p.w_ + ix], wp[rr * p.s + ss], acc);
            }
        }
        if (p.has_bias) acc = acc + ((const float*)p.bias)[kc];
        if (p.has_residual) acc = acc + ((const float*)p.residual)[e];
        ((float*)p.out)[e] = reef_act(acc, p.act, p.act_lo, p.act_hi);
    }
}

REEF_FAMILY(conv_tc, ConvParams, REEF_GEMM_THREADS)
REEF_FAMILY(conv_ffma, ConvParams, REEF_GEMM_THREADS)
REEF_FAMILY(conv_dw, ConvParams, REEF_EW_THREADS)
REEF_FAMILY(matmul_tc, MatMulParams, REEF_GEMM_THREADS)
REEF_FAMILY(matmul_ffma, MatMulParams, REEF_GEMM_THREADS)
