// reef CUDA kernels: convolution (implicit GEMM) and batched matmul.
//
// Design.
// - Tiles. C[M,N] = A[M,K] B[K,N] (conv: M = out channels per group, N =
//   batch * output pixels, K = c/groups * r * s; A = the weights, row-major
//   along K; B = the im2col view of the input, never materialised) is cut
//   into BM x BN output tiles; the K axis into `splits` ranges of `ksplit`
//   (a multiple of GK). Configurations, one entry-point pair each, all
//   instantiated from the same templates (GCfg<BM, BN, WM, WN, STAGES>):
//     conv_tc_l 128 x 128, 8 warps of 64 x 32, 2 stages, 256 threads (TF32;
//               conv only: the matmul loader would not fit 128 registers)
//     *_tc      64 x  64, 4 warps of 32 x 32, 3 stages, 128 threads (TF32)
//     *_ffma    64 x  64, exact-f32 FFMA core (8 x 4 per thread), 3 stages
//   TF32 uses mma.sync m16n8k8 with cvt.rna operands. conv_tc_x3 and
//   matmul_tc_x3 are the 64 x 64 tiles with the split-TF32 ("3xTF32") core
//   (TcCore<C, true>: three mmas per fragment pair, close to f32 accuracy).
//   The host (reef_cuda::launch) picks precision, configuration and splits per
//   kernel at model load.
// - Work items. hdr.tiles = output tiles * splits; item w is split
//   w % splits of output tile w / splits. RT: one block per item. BE:
//   persistent blocks over the items, polling the preemption flag before each.
// - Memory pipeline. cp.async into STAGES shared-memory buffers (one
//   commit group per K step of GK), out-of-range elements zero-filled by the
//   copy itself. A: 16-byte chunks along K when aligned (a_vec), else 4-byte
//   copies. B (b_vec): 1 = 16-byte chunks along N (matmul with unit N
//   stride, unpadded stride-1 1x1 conv with npix % 4 == 0); 2 / 3 = matmul
//   B with unit K stride (Gemm trans_b, e.g. nn.Linear weights), stored
//   K-major in shared memory like A, 4- / 16-byte copies; 0 = a 4-byte
//   gather with per-thread column state fixed for the tile: with the
//   convolution's K-index table (params.ktab, reef_cuda::launch / gather.rs) each
//   element is a table entry and a bit of the thread's (r, s) mask; without
//   it the (c, r, s) split of K is stepped incrementally.
// - Deterministic split-K. With splits > 1 every item stores its fp32 partial
//   tile in the context's workspace (slot tile * splits + split, layout
//   [element][thread] for coalescing), then __threadfence() and one atomicAdd
//   on the tile's arrival counter. The block that arrives last sums the
//   partials of all splits in split order 0, 1, ..., S-1 (a fixed order: the
//   same bits in RT and BE and on every run), applies the fused epilogue,
//   writes the output (the only write of the output, never accumulated: the
//   kernel stays idempotent) and resets the counter to 0. No block ever
//   waits for another. Counters live in the context's state buffer;
//   Lane::begin zeroes those of kernels >= from, because a preempted BE
//   kernel may leave some non-zero (its tiles are redone on resume).

#define GK 16

// Mirrors reef_cuda::params::ConvParams.
struct ConvParams {
    Hdr hdr;
    u64 x, w, bias, residual, out;
    u64 ws;   // split-K workspace (f32)
    u64 cnt;  // this kernel's per-tile arrival counters (u32)
    i32 n, c, h, w_, k, r, s, oh, ow;
    i32 sh, sw, ph, pw, dh, dw, groups;
    i32 kg, cg, crs, npix;  // per group out/in channels, c/groups*r*s, oh*ow
    i32 has_bias, has_residual, act;
    float act_lo, act_hi;
    u32 m_tiles, n_tiles, splits;
    i32 ksplit, a_vec, b_vec;
    u32 pad0;
    u64 ktab;  // K-index gather table (gather.rs), or 0
};

// Mirrors reef_cuda::params::MatMulParams.
struct MatMulParams {
    Hdr hdr;
    u64 a, b, bias, residual, out;
    u64 ws, cnt;
    i32 batch[REEF_MAX_RANK], a_bs[REEF_MAX_RANK], b_bs[REEF_MAX_RANK];
    i32 nbatch, m, n, k, lda_m, lda_k, ldb_k, ldb_n, bias_sm, bias_sn;
    float alpha, beta;
    i32 has_bias, has_residual, act;
    float act_lo, act_hi;
    u32 m_tiles, n_tiles, splits;
    i32 ksplit, a_vec, b_vec;
    i32 bias_sb;  // bias stride per flat batch index
};

template <int BM_, int BN_, int WM_, int WN_, int ST_>
struct GCfg {
    static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_, ST = ST_;
    static constexpr int T = (BM / WM) * (BN / WN) * 32;  // threads
    static constexpr int AP = GK + 4;                      // As[m][k] pitch (conflict-free)
    static constexpr int BP = BN + 8;                      // Bs[k][n] pitch (conflict-free)
    static constexpr int MI = WM / 16, NI = WN / 8;        // mma tiles per warp
    static constexpr int ACH = BM * GK / 4 / T;            // A 16-byte chunks per thread
    static constexpr int BSC = GK * BN / T;                // B 4-byte elements per thread
    static constexpr int BKS = T / BN;                     // K stride of the B gather
    static constexpr int BVC = GK * BN / 4 / T;            // B 16-byte chunks per thread
    static constexpr int BVK = T / (BN / 4);               // K stride of the B chunks
    static constexpr int A_STAGE = BM * AP;
    static constexpr int A_FLOATS = ST * A_STAGE;
    static constexpr bool WG = false;  // wgmma core (WCfg)
    static constexpr bool BKM = false;  // B always K-major in the core-matrix layout (WmCfg)
    // Where A element (row r, K offset kc) of a stage lives.
    __device__ __forceinline__ static i32 a_at(i32 r, i32 kc) { return r * AP + kc; }
    // B is either Bs[k][n] (pitch BP) or, for K-major matmul operands,
    // Bs[n][k] (pitch AP, loaded like A): room for the larger of the two.
    static constexpr int B_STAGE = GK * BP > BN * AP ? GK * BP : BN * AP;
    static constexpr int B_FLOATS = ST * B_STAGE;
};
// wgmma tiles (sm_90a): BM_ output channels (the wgmma N) by 64 pixels (the
// wgmma M), one warpgroup. A (weights) is stored in the no-swizzle K-major
// core-matrix layout that a wgmma descriptor reads: 8 rows x 4 K elements
// (128 contiguous bytes) per core matrix, core matrices adjacent in K 128
// bytes apart (LBO), adjacent in rows GK / 4 * 128 bytes apart (SBO). B
// (pixels) keeps the Bs[k][n] layout; its fragments go through registers.
template <int BM_>
struct WCfg {
    static constexpr int BM = BM_, BN = 64, ST = 3;
    static constexpr int T = 128;
    static constexpr int AP = GK + 4;  // unused by the wgmma core (kept for shared code)
    static constexpr int BP = BN + 8;
    static constexpr int BSC = GK * BN / T, BKS = T / BN;
    static constexpr int BVC = GK * BN / 4 / T, BVK = T / (BN / 4);
    static constexpr int A_STAGE = BM * GK;
    static constexpr int A_FLOATS = ST * A_STAGE;
    static constexpr int B_STAGE = GK * BP;
    static constexpr int B_FLOATS = ST * B_STAGE;
    static constexpr bool WG = true;
    static constexpr bool BKM = false;
    static constexpr u32 LBO = 128, SBO = GK / 4 * 128;  // bytes
    __device__ __forceinline__ static i32 a_at(i32 r, i32 kc) {
        return (r >> 3) * (GK / 4 * 32) + (kc >> 2) * 32 + (r & 7) * 4 + (kc & 3);
    }
};
typedef WCfg<128> CfgW;
typedef WCfg<64> CfgWs;

// wgmma matmul tiles (sm_90a): 128 x 128 output tiles, two warpgroups of 64
// rows (256 threads). Both operands are K-major in shared memory in WCfg's
// no-swizzle core-matrix layout (B rows are the output columns), so every
// wgmma reads A and B through descriptors and no fragment passes through
// registers. ST stages of 16 KB live in dynamic shared memory (reef_cuda
// Family::dynamic_smem: ST * 16 KB, two blocks per SM): ST - 2 K steps load
// while one computes and the wgmmas of the one before drain
// (reef_wgm_pipeline).
#ifndef REEF_WGM_STAGES
#define REEF_WGM_STAGES 6
#endif
struct WmCfg {
    static constexpr int BM = 128, BN = 128, ST = REEF_WGM_STAGES;
    static constexpr int T = 256;
    static constexpr int AP = GK;       // unused (kept for shared code)
    static constexpr int BP = BN + 8;   // unused (kept for shared code)
    static constexpr int BSC = GK * BN / T, BKS = T / BN;
    static constexpr int BVC = GK * BN / 4 / T, BVK = T / (BN / 4);
    static constexpr int A_STAGE = BM * GK;
    static constexpr int A_FLOATS = ST * A_STAGE;
    static constexpr int B_STAGE = BN * GK;
    static constexpr int B_FLOATS = ST * B_STAGE;
    static constexpr bool WG = true;
    static constexpr bool BKM = true;
    static constexpr u32 LBO = 128, SBO = GK / 4 * 128;  // bytes
    __device__ __forceinline__ static i32 a_at(i32 r, i32 kc) {
        return (r >> 3) * (GK / 4 * 32) + (kc >> 2) * 32 + (r & 7) * 4 + (kc & 3);
    }
};
static_assert(WmCfg::ST >= 3, "one stage computing, one draining, one loading");
static_assert(WmCfg::T == REEF_GEMM_L_THREADS, "block size");

// Pipeline stages of the 64 x 64 tiles (REEF_GEMM_STAGES, default 3; 4
// stages take 40 KB of static shared memory, and four blocks still fit on an
// SM): an experiment for small-M GEMMs whose blocks wait on their copies
// (`REEF_NVRTC_DEFINES=REEF_GEMM_STAGES=4`), not measured on a GPU yet.
#ifndef REEF_GEMM_STAGES
#define REEF_GEMM_STAGES 3
#endif
typedef GCfg<128, 128, 64, 32, 2> CfgL;
typedef GCfg<64, 64, 32, 32, REEF_GEMM_STAGES> CfgM;
// 128 output channels x 64 pixels, four warps of 64 x 32 (CfgL's warp tile
// at CfgM's block size): twice the mma per B element gathered and per B
// fragment loaded of CfgM, for convolutions with 128 or more channels.
typedef GCfg<128, 64, 64, 32, 3> CfgT;
static_assert(CfgL::T == REEF_GEMM_L_THREADS && CfgM::T == REEF_GEMM_THREADS && CfgT::T == REEF_GEMM_THREADS,
              "block sizes");

__device__ __forceinline__ u32 reef_tf32(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// A TF32 mma operand: rounded here, or (ROUNDED) stored rounded already.
template <bool ROUNDED>
__device__ __forceinline__ u32 reef_tf32_op(float x) {
    if constexpr (ROUNDED) {
        return __float_as_uint(x);
    } else {
        return reef_tf32(x);
    }
}

__device__ __forceinline__ void reef_mma_tf32(float* d, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Four 8 x 8 b16 matrices from shared memory (ldmatrix .x4): lane l gives
// the address of row l % 8 of matrix l / 8 (16 contiguous bytes, 16-byte
// aligned), and d[j] receives 32-bit word l % 4 of row l / 4 of matrix j.
// On f32 data each matrix is 8 rows x 4 words: exactly the (g, q) layout of
// a TF32 mma.m16n8k8 fragment register, so one instruction loads a whole A
// fragment (four registers) or the B fragments of two n8 tiles.
__device__ __forceinline__ void reef_ldsm4(u32* d, const float* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"((u32)__cvta_generic_to_shared(p)));
}

// REEF_LDMATRIX=1 (`REEF_NVRTC_DEFINES=REEF_LDMATRIX=1`): TcCore loads its A
// fragments, and K-major B fragments, with ldmatrix instead of one 4-byte
// shared load per register: the same words into the same registers, so
// the results are the same bits. Off by default until measured on a GPU.
#ifndef REEF_LDMATRIX
#define REEF_LDMATRIX 0
#endif

// ---- cp.async (sm_80+) ----
__device__ __forceinline__ u32 reef_smem(const void* p) {
    return (u32)__cvta_generic_to_shared(p);
}
// 4-byte copy; when !ok nothing is read (src-size 0) and the word is zeroed.
__device__ __forceinline__ void reef_cp4(float* dst, const float* src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(reef_smem(dst)), "l"(src),
                 "r"(ok ? 4 : 0)
                 : "memory");
}
// 16-byte copy (both addresses 16-byte aligned); zero-filled when !ok.
__device__ __forceinline__ void reef_cp16(float* dst, const float* src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(reef_smem(dst)), "l"(src),
                 "r"(ok ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void reef_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void reef_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// A K-major tile loader (A of conv and matmul, B of matmul with unit K
// stride): row r of the tile starts at arow (k = 0), element k at
// arow + k * ldk, stored at C::a_at(r, k). Chunk i of this thread covers
// row 8 (tid >> 5) + (tid & 7) + i * T/4, columns kc .. kc+3 of the K step
// with kc = 4 ((tid >> 3) & 3): the eight threads of each quarter warp (one
// shared-memory phase of 16-byte accesses) write one 4-column chunk of
// eight consecutive rows, which lands in eight distinct 4-bank groups in
// both layouts: rows AP = 20 words apart, and the wgmma core-matrix layout
// (rows 4 words apart). Lanes (tid & 3, tid >> 2) wrote a row's four
// chunks in one phase: 4-way bank conflicts in the core-matrix layout
// (ncu, session 13: 16.9 wavefronts per 16-byte request instead of 4),
// 2-way in the AP layout. The global side reads the same sectors.
template <class C, int ROWS>
struct RowLoad {
    static constexpr int CH = ROWS * GK / 4 / C::T;
    i32 roff[CH];  // element offset of each row from the operand; -1: row out of range
    // The tile row of this thread's chunk i, and the chunk's first K column.
    __device__ __forceinline__ static i32 row(int i) {
        return (i32)(((threadIdx.x >> 5) << 3) + (threadIdx.x & 7)) + i * (C::T / 4);
    }
    __device__ __forceinline__ static i32 col() { return (i32)((threadIdx.x >> 3) & 3) * 4; }
    __device__ __forceinline__ void init(i64 row0, i32 rows_left, i32 ldm) {
#pragma unroll
        for (int i = 0; i < CH; ++i) {
            const i32 r = row(i);
            // Offsets fit in i32: the host rejects buffers of 2^31 elements or more.
            roff[i] = r < rows_left ? (i32)(row0 + (i64)r * ldm) : -1;
        }
    }
    // The operand `base` (also the source of zero-filled copies), its K
    // stride and extent, and whether 16-byte copies are allowed (then ldk == 1
    // and rows are 16-byte aligned) come from the params (constant bank).
    __device__ __forceinline__ void issue(float* as, i32 k0, const float* base, i32 ldk, i32 kdim,
                                          bool vec) const {
        const i32 kc = col();
        const i32 k = k0 + kc;
#pragma unroll
        for (int i = 0; i < CH; ++i) {
            float* dst = as + C::a_at(row(i), kc);
            const bool rok = roff[i] >= 0;
            if (vec && k + 4 <= kdim) {
                reef_cp16(dst, rok ? base + roff[i] + k : base, rok);
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const bool ok = rok && k + j < kdim;
                    reef_cp4(dst + j, ok ? base + roff[i] + (i64)(k + j) * ldk : base, ok);
                }
            }
        }
    }
    // Rounds this thread's elements of a landed stage to TF32 in place (the
    // wgmma core reads them straight from shared memory, and the tensor
    // cores would truncate the low mantissa bits instead of rounding).
    __device__ __forceinline__ void round_tf32(float* as) const {
        const i32 kc = col();
#pragma unroll
        for (int i = 0; i < CH; ++i) {
            float4* v = (float4*)(as + C::a_at(row(i), kc));
            float4 x = *v;
            x.x = __uint_as_float(reef_tf32(x.x));
            x.y = __uint_as_float(reef_tf32(x.y));
            x.z = __uint_as_float(reef_tf32(x.z));
            x.w = __uint_as_float(reef_tf32(x.w));
            *v = x;
        }
    }
};

// Rounds one shared-memory word to TF32 in place.
__device__ __forceinline__ void reef_round_in_place(float* v) { *v = __uint_as_float(reef_tf32(*v)); }
// K-major (BKM) B stages loaded in 4-column chunks (conv and matmul b_vec 1):
// rounds this thread's elements of a landed stage to TF32 in place.
template <class C>
__device__ __forceinline__ void reef_round_b_chunks(float* bs) {
    const i32 n4 = (i32)(threadIdx.x % (C::BN / 4)) * 4;
#pragma unroll
    for (int j = 0; j < C::BVC; ++j) {
        const i32 kr = (i32)(threadIdx.x / (C::BN / 4)) + j * C::BVK;
#pragma unroll
        for (int e = 0; e < 4; ++e) reef_round_in_place(bs + C::a_at(n4 + e, kr));
    }
}

template <class C>
struct ConvLoad {
    const ConvParams& p;
    i32 grp, m0, n0, kdim;
    RowLoad<C, C::BM> al;
    // B state for this thread's column (gather) or 4-column chunk (vec).
    const float* xb;
    bool cok, bvec;
    i32 iy0, ix0;
    u64 xpix;           // table gather: address of (channel 0, iy0, ix0), may lie before the image
    u32 rsmask;         // table gather: bit r * s_len + s set where (iy0 + r dh, ix0 + s dw) is inside
    i32 negpix;         // table gather: byte offset from xpix back to xb
    i32 kk, c, rr, ss;  // stepping gather: the next K index this thread loads, split into (c, r, s)
    static constexpr bool MAYBE_KM = false;  // B is never K-major
    __device__ __forceinline__ ConvLoad(const ConvParams& pp, u32 tile) : p(pp) {
        const u32 mt = tile % p.m_tiles;
        const u32 rest = tile / p.m_tiles;
        const u32 nt = rest % p.n_tiles;
        grp = (i32)(rest / p.n_tiles);
        m0 = (i32)mt * C::BM;
        n0 = (i32)nt * C::BN;
        kdim = p.crs;
        al.init((i64)(grp * p.kg + m0) * p.crs, p.kg - m0, p.crs);
        bvec = p.b_vec != 0;
        const i32 ncols = p.n * p.npix;
        const float* x = (const float*)p.x;
        if (bvec) {
            const i32 col = n0 + (i32)(threadIdx.x % (C::BN / 4)) * 4;
            cok = col < ncols;
            const i32 cc = cok ? col : 0;
            const i32 img = cc / p.npix;
            const i32 pix = cc - img * p.npix;
            xb = x + (i64)(img * p.c + grp * p.cg) * p.npix + pix;
            iy0 = ix0 = negpix = 0;
            xpix = 0;
            rsmask = 0;
        } else {
            const i32 col = n0 + (i32)(threadIdx.x % C::BN);
            cok = col < ncols;
            const i32 cc = cok ? col : 0;
            const i32 img = cc / p.npix;
            const i32 pix = cc - img * p.npix;
            const i32 y = pix / p.ow;
            const i32 xx = pix - y * p.ow;
            iy0 = y * p.sh - p.ph;
            ix0 = xx * p.sw - p.pw;
            xb = x + (i64)(img * p.c + grp * p.cg) * p.h * p.w_;
            negpix = -4 * (iy0 * p.w_ + ix0);
            xpix = (u64)xb - (i64)negpix;
            rsmask = 0;
            if (p.ktab != 0 && cok) {
                // r * s < 31 (gather.rs): one bit per (r, s) position.
                for (i32 r = 0, b = 0; r < p.r; ++r) {
                    const bool rin = (u32)(iy0 + r * p.dh) < (u32)p.h;
                    for (i32 s = 0; s < p.s; ++s, ++b)
                        if (rin && (u32)(ix0 + s * p.dw) < (u32)p.w_) rsmask |= 1u << b;
                }
            }
        }
    }
    __device__ __forceinline__ bool bkm() const { return false; }
    // Positions the gather at the first K index of the range starting at kb.
    __device__ __forceinline__ void start(i32 kb) {
        kk = kb + (i32)(threadIdx.x / C::BN);
        c = rr = ss = 0;
        if (kdim <= 0) return;  // nothing to gather (and r * s may be 0)
        const i32 rs = p.r * p.s;
        c = kk / rs;
        const i32 q = kk - c * rs;
        rr = q / p.s;
        ss = q - rr * p.s;
    }
    // Issues the copies of K step k0 (called with increasing k0 only).
    __device__ __forceinline__ void issue(float* as, float* bs, i32 k0) {
        al.issue(as, k0, (const float*)p.w, 1, p.crs, p.a_vec != 0);
        const float* x = (const float*)p.x;
        if (bvec) {
            const i32 n4 = (i32)(threadIdx.x % (C::BN / 4)) * 4;
#pragma unroll
            for (int j = 0; j < C::BVC; ++j) {
                const i32 kr = (i32)(threadIdx.x / (C::BN / 4)) + j * C::BVK;
                const i32 k = k0 + kr;
                const bool ok = cok && k < kdim;
                if constexpr (C::BKM) {
                    // K-major stage: four 4-byte copies per chunk.
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        reef_cp4(bs + C::a_at(n4 + e, kr), ok ? xb + (i64)k * p.npix + e : x, ok);
                } else {
                    reef_cp16(bs + kr * C::BP + n4, ok ? xb + (i64)k * p.npix : x, ok);
                }
            }
        } else if (p.ktab != 0) {
            // Table gather: K index k's entry holds its element offset from
            // (channel 0, iy0, ix0) over its (r, s) position, whose bit in
            // this thread's rsmask says whether it lies inside the input
            // (padding entries past c/groups * r * s have a position whose
            // bit is never set). A thread loads BSC consecutive K indices of
            // one column; their entries come in two 16-byte loads (the same
            // for every thread of a warp: broadcasts), and no (c, r, s)
            // state is stepped.
            static_assert(C::BSC == 8, "eight entries per thread and step");
            const i32 n = (i32)(threadIdx.x % C::BN), kq = (i32)(threadIdx.x / C::BN);
            const uint4* kt = (const uint4*)((const u32*)p.ktab + k0 + kq * C::BSC);
            // Element j's place: Bs[k][n] (bd + j * BP), or K-major (BKM).
            float* bd = C::BKM ? bs + C::a_at(n, kq * C::BSC) : bs + kq * C::BSC * C::BP + n;
            const uint4 e0 = __ldg(kt), e1 = __ldg(kt + 1);
            const u32 e[8] = {e0.x, e0.y, e0.z, e0.w, e1.x, e1.y, e1.z, e1.w};
#pragma unroll
            for (int j = 0; j < C::BSC; ++j) {
                // Bits 0-4: position (the funnel shift takes them mod 32);
                // 5-31: element offset. Off the input, the copy reads
                // nothing from xb (xpix + negpix).
                const bool ok = __funnelshift_r(rsmask, rsmask, e[j]) & 1u;
                const i32 boff = ok ? (i32)((e[j] >> 3) & ~3u) : negpix;
                // K-major: the eight K indices lie in two core-matrix columns.
                float* dst = C::BKM ? bs + C::a_at(n, kq * C::BSC + j) : bd + j * C::BP;
                reef_cp4(dst, (const float*)(xpix + (i64)boff), ok);
            }
        } else {
            const i32 n = (i32)(threadIdx.x % C::BN), kq = (i32)(threadIdx.x / C::BN);
#pragma unroll
            for (int j = 0; j < C::BSC; ++j) {
                const i32 iy = iy0 + rr * p.dh;
                const i32 ix = ix0 + ss * p.dw;
                const bool ok = cok && kk < kdim && (u32)iy < (u32)p.h && (u32)ix < (u32)p.w_;
                float* dst = C::BKM ? bs + C::a_at(n, kq + j * C::BKS) : bs + (kq + j * C::BKS) * C::BP + n;
                reef_cp4(dst, ok ? xb + ((i64)c * p.h + iy) * p.w_ + ix : x, ok);
                kk += C::BKS;
                ss += C::BKS;
                while (ss >= p.s) {
                    ss -= p.s;
                    ++rr;
                }
                while (rr >= p.r) {
                    rr -= p.r;
                    ++c;
                }
            }
        }
    }
    // K-major (BKM) stages only: rounds this thread's B elements of a landed
    // stage to TF32 in place, the elements `issue` copied in each path.
    __device__ __forceinline__ void round_b(float* bs) const {
        if (bvec) {
            reef_round_b_chunks<C>(bs);
        } else {
            const i32 n = (i32)(threadIdx.x % C::BN), kq = (i32)(threadIdx.x / C::BN);
            const bool table = p.ktab != 0;
#pragma unroll
            for (int j = 0; j < C::BSC; ++j)
                reef_round_in_place(bs + C::a_at(n, table ? kq * C::BSC + j : kq + j * C::BKS));
        }
    }
    // Epilogue offsets (see reef_epilogue): output = row part + column
    // part, bias = row part (the channel); -1 outside the problem.
    __device__ __forceinline__ void row_part(i32 ml, i32& o, i32& b) const {
        const i32 m = m0 + ml;
        const i32 kc = grp * p.kg + m;
        o = m < p.kg ? kc * p.npix : -1;
        b = kc;
    }
    __device__ __forceinline__ void col_part(i32 nl, i32& o, i32& b) const {
        const i32 col = n0 + nl;
        const i32 img = col / p.npix;
        const i32 pix = col - img * p.npix;
        o = col < p.n * p.npix ? img * p.k * p.npix + pix : -1;
        b = 0;
    }
    // The bias and residual of an element (0 where absent or !ok).
    __device__ __forceinline__ float bias_of(bool ok, i32 bo) const {
        return (ok && p.has_bias) ? ((const float*)p.bias)[bo] : 0.0f;
    }
    __device__ __forceinline__ float residual_of(bool ok, i32 o) const {
        return (ok && p.has_residual) ? ((const float*)p.residual)[o] : 0.0f;
    }
    __device__ __forceinline__ void fetch(bool ok, i32 o, i32 bo, float& b, float& r) const {
        b = bias_of(ok, bo);
        r = residual_of(ok, o);
    }
    // The bias is the output channel's: its offset is the row part alone
    // (REEF_EPI_HOIST loads a thread's rows' biases once, before its stores).
    static constexpr bool BIAS_BY_ROW = true;
    // Writes act(v + bias + residual), added in that order.
    __device__ __forceinline__ void put(i32 o, float v, float b, float r) const {
        if (p.has_bias) v = v + b;
        if (p.has_residual) v = v + r;
        ((float*)p.out)[o] = reef_act_gemm(v, p.act, p.act_lo, p.act_hi);
    }
};

template <class C>
struct MatMulLoad {
    const MatMulParams& p;
    i32 m0, n0, bi, kdim;
    RowLoad<C, C::BM> al;
    RowLoad<C, C::BN> bl;  // b_vec >= 2: B rows along K (unit K stride)
    i32 boff;              // element offset of B's column (scalar) or 4-column chunk (vec) at k = 0
    i32 col;               // this thread's (first) column
    __device__ __forceinline__ MatMulLoad(const MatMulParams& pp, u32 tile) : p(pp) {
        const u32 mt = tile % p.m_tiles;
        const u32 rest = tile / p.m_tiles;
        const u32 nt = rest % p.n_tiles;
        bi = (i32)(rest / p.n_tiles);
        m0 = (i32)mt * C::BM;
        n0 = (i32)nt * C::BN;
        kdim = p.k;
        i64 a_off = 0, b_off = 0;
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
        al.init(a_off + (i64)m0 * p.lda_m, p.m - m0, p.lda_m);
        if (p.b_vec >= 2) bl.init(b_off + (i64)n0 * p.ldb_n, p.n - n0, p.ldb_n);
        const bool bvec = p.b_vec == 1;
        col = bvec ? n0 + (i32)(threadIdx.x % (C::BN / 4)) * 4 : n0 + (i32)(threadIdx.x % C::BN);
        // An element index of B (the host checked its extent fits in i32).
        boff = (i32)(b_off + (col < p.n ? (i64)col * p.ldb_n : 0));
    }
    // B modes (p.b_vec): 0: 4-byte gather, 1: 16-byte along N, 2/3: K-major (4/16-byte).
    __device__ __forceinline__ bool bkm() const { return p.b_vec >= 2; }
    static constexpr bool MAYBE_KM = true;
    __device__ __forceinline__ void start(i32) {}
    __device__ __forceinline__ void issue(float* as, float* bs, i32 k0) {
        al.issue(as, k0, (const float*)p.a, p.lda_k, p.k, p.a_vec != 0);
        const float* b = (const float*)p.b;
        const float* bcol = b + boff;
        if (p.b_vec >= 2) {
            bl.issue(bs, k0, b, p.ldb_k, p.k, p.b_vec == 3);
        } else if (p.b_vec == 1 && C::BKM) {
            // K-major stage: four 4-byte copies per chunk of four columns.
            const i32 n4 = (i32)(threadIdx.x % (C::BN / 4)) * 4;
#pragma unroll
            for (int j = 0; j < C::BVC; ++j) {
                const i32 kr = (i32)(threadIdx.x / (C::BN / 4)) + j * C::BVK;
                const i32 k = k0 + kr;
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const bool ok = k < kdim && col + e < p.n;
                    reef_cp4(bs + C::a_at(n4 + e, kr), ok ? bcol + (i64)k * p.ldb_k + e : b, ok);
                }
            }
        } else if (p.b_vec == 1) {
            const i32 n4 = (i32)(threadIdx.x % (C::BN / 4)) * 4;
#pragma unroll
            for (int j = 0; j < C::BVC; ++j) {
                const i32 kr = (i32)(threadIdx.x / (C::BN / 4)) + j * C::BVK;
                const i32 k = k0 + kr;
                float* dst = bs + kr * C::BP + n4;
                if (k < kdim && col + 4 <= p.n) {
                    reef_cp16(dst, bcol + (i64)k * p.ldb_k, true);
                } else {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const bool ok = k < kdim && col + e < p.n;
                        reef_cp4(dst + e, ok ? bcol + (i64)k * p.ldb_k + e : b, ok);
                    }
                }
            }
        } else {
            const i32 n = (i32)(threadIdx.x % C::BN), kq = (i32)(threadIdx.x / C::BN);
            const bool cok = col < p.n;
#pragma unroll
            for (int j = 0; j < C::BSC; ++j) {
                const i32 k = k0 + kq + j * C::BKS;
                const bool ok = cok && k < kdim;
                float* dst = C::BKM ? bs + C::a_at(n, kq + j * C::BKS) : bs + (kq + j * C::BKS) * C::BP + n;
                reef_cp4(dst, ok ? bcol + (i64)k * p.ldb_k : b, ok);
            }
        }
    }
    // K-major (BKM) stages only: rounds this thread's B elements of a landed
    // stage to TF32 in place, the elements `issue` copied in each mode.
    __device__ __forceinline__ void round_b(float* bs) const {
        if (p.b_vec >= 2) {
            bl.round_tf32(bs);
        } else if (p.b_vec == 1) {
            reef_round_b_chunks<C>(bs);
        } else {
            const i32 n = (i32)(threadIdx.x % C::BN), kq = (i32)(threadIdx.x / C::BN);
#pragma unroll
            for (int j = 0; j < C::BSC; ++j) reef_round_in_place(bs + C::a_at(n, kq + j * C::BKS));
        }
    }
    // Epilogue offsets (see ConvLoad::row_part).
    __device__ __forceinline__ void row_part(i32 ml, i32& o, i32& b) const {
        const i32 i = m0 + ml;
        o = i < p.m ? (bi * p.m + i) * p.n : -1;
        b = bi * p.bias_sb + i * p.bias_sm;
    }
    __device__ __forceinline__ void col_part(i32 nl, i32& o, i32& b) const {
        const i32 j = n0 + nl;
        o = j < p.n ? j : -1;
        b = j * p.bias_sn;
    }
    __device__ __forceinline__ float bias_of(bool ok, i32 bo) const {
        return (ok && p.has_bias) ? ((const float*)p.bias)[bo] : 0.0f;
    }
    __device__ __forceinline__ float residual_of(bool ok, i32 o) const {
        return (ok && p.has_residual) ? ((const float*)p.residual)[o] : 0.0f;
    }
    __device__ __forceinline__ void fetch(bool ok, i32 o, i32 bo, float& b, float& r) const {
        b = bias_of(ok, bo);
        r = residual_of(ok, o);
    }
    // The bias offset has a row part and a column part (strides): its
    // loads stay in the epilogue's groups. (Loading a thread's column
    // biases once where the row stride is 0 made bert_base 5.6% slower at
    // batch 1 on the H100, Session 28.)
    static constexpr bool BIAS_BY_ROW = false;
    // Writes act(alpha * v + beta * bias + residual).
    __device__ __forceinline__ void put(i32 o, float v, float b, float r) const {
        v = p.alpha * v;
        if (p.has_bias) v = v + p.beta * b;
        if (p.has_residual) v = v + r;
        ((float*)p.out)[o] = reef_act_gemm(v, p.act, p.act_lo, p.act_hi);
    }
};

// ---- the K loop: STAGES-deep cp.async pipeline, `step(as, bs)` per K step ----
// BE: thread 0 publishes the lane's flag at a K step's barrier, as loaded
// at the previous check (the load's latency hides behind the steps between);
// once it is up, every thread leaves the loop at the same step (false: the
// tile is abandoned, nothing was written).
//
// REEF_FLAG_CHUNK (CudaOptions::flag_chunk, `REEF_FLAG_CHUNK`, default 1)
// sets how often: 1 checks at every K step inside the loop; N > 1 checks
// between chunks of N steps, each with its own barrier, so the steps inside
// run the RT variant's loop unchanged. The check in the loop costs more than
// its instructions: the K loop is issue-bound and the exit path shifts the
// register allocation (the BE loop of conv_tc_w has 784 SASS instructions to
// the RT loop's 751, the chunked one 764). On the H200 (session 6, run 3) BE
// over RT went from 5.5-14.0% at 1 to 4.4-10.8% at 4 and 4.4-10.6% at 8,
// and the preemption drain's p50 from 17-19 us to 18-28 us at 4 and 20-38 us
// at 8 (vgg19's 3x3 gathers make the longest steps). Checking every 4th
// step inside the loop (t % 4 == 0) cost as much as every step (H100 run 19,
// H200 session 6 run 2), as did OR-reducing the flag in the barrier
// (__syncthreads_or: more registers, run 22) and copying it into a
// per-stage shared word with cp.async (session 6, run 2). REEF_FLAG_CHUNK=0
// compiles no K-step checks at all (a BE tile then runs to its end): a
// measurement of what they cost (BE 0.5-12.4% over RT, run 2), not a
// setting to run with.
#ifndef REEF_FLAG_CHUNK
#define REEF_FLAG_CHUNK 1
#endif
// The stage buffers of configuration C, declared in functions templated on C
// alone: every pipeline of one kernel with the same C (a family's core
// variants, e.g. with and without TF32-rounded weights) shares one
// allocation instead of getting its own.
template <class C>
__device__ __forceinline__ float* reef_stage_a() {
    __shared__ __align__(128) float As[C::A_FLOATS];
    return As;
}
template <class C>
__device__ __forceinline__ float* reef_stage_b() {
    __shared__ __align__(16) float Bs[C::B_FLOATS];
    return Bs;
}
__device__ __forceinline__ i32& reef_stop_word() {
    __shared__ i32 reef_stop;
    return reef_stop;
}
// REEF_END_CHECK (default 1; REEF_NVRTC_DEFINES=REEF_END_CHECK=0 compiles
// it out): a BE K loop also stops at its end on the flag it loaded at its
// last step (otherwise unused), so that a block whose last check came just
// before a raise leaves before its split-K partial and epilogue instead of
// running them. Its own word: a warp may still read the last step's stop
// word when thread 0 writes this one. With the epilogue's check
// (REEF_EPI_CHECK) it took the drain probe's device drain p99 on the H100
// from 11.75-21.5 to 9.25-14.25 us with two BE kernels in flight (Session
// 27, call 3, docs/PERF.md), at no BE cost beyond the runs' scatter.
#ifndef REEF_END_CHECK
#define REEF_END_CHECK 1
#endif
__device__ __forceinline__ i32& reef_end_word() {
    __shared__ i32 reef_end;
    return reef_end;
}

template <class C, bool BE, class L, class F>
__device__ __forceinline__ bool reef_pipeline(L& ld, i32 kb, i32 ke, F step) {
    float* const As = reef_stage_a<C>();
    float* const Bs = reef_stage_b<C>();
    const i32 steps = ke > kb ? (ke - kb + GK - 1) / GK : 0;
    i32& reef_stop = reef_stop_word();
    i32 flag = 0;
    if (BE && threadIdx.x == 0) flag = *(volatile const i32*)ld.p.hdr.flag;
    // Not unrolled: one copy of the loader's code for the prologue's
    // stages (each copy is code that a block fetches cold).
#pragma unroll 1
    for (int s = 0; s < C::ST - 1; ++s) {
        if (s < steps) ld.issue(As + s * C::A_STAGE, Bs + s * C::B_STAGE, kb + s * GK);
        reef_cp_commit();
    }
    // Before step t's barrier: this thread's copies of stage t have landed
    // (wgmma: rounded, then made visible to the async proxy it reads through).
    auto arrive = [&](i32 t) {
        reef_cp_wait<C::ST - 2>();
        if constexpr (C::WG) {
            ld.al.round_tf32(As + (t % C::ST) * C::A_STAGE);
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        }
    };
    // After it: refill the buffer that step t - 1 read (every thread
    // finished it before the barrier), then compute step t.
    auto advance = [&](i32 t) {
        const i32 tn = t + C::ST - 1;
        if (tn < steps) {
            const i32 sn = tn % C::ST;
            ld.issue(As + sn * C::A_STAGE, Bs + sn * C::B_STAGE, kb + tn * GK);
        }
        reef_cp_commit();
        const i32 sc = t % C::ST;
        step(As + sc * C::A_STAGE, Bs + sc * C::B_STAGE);
    };
#if REEF_FLAG_CHUNK > 1
    // Chunks of REEF_FLAG_CHUNK K steps: the check (with its own barrier)
    // sits between chunks, so the steps inside run the RT variant's loop
    // unchanged. The flag is loaded a chunk ahead of its use.
    for (i32 c0 = 0; c0 < steps; c0 += REEF_FLAG_CHUNK) {
        if (BE) {
            if (threadIdx.x == 0) {
                reef_stop = flag;
                flag = *(volatile const i32*)ld.p.hdr.flag;
            }
            __syncthreads();
            if (reef_stop != 0) {
                reef_cp_wait<0>();
                __syncthreads();
                return false;
            }
        }
        const i32 c1 = min(c0 + REEF_FLAG_CHUNK, steps);
        for (i32 t = c0; t < c1; ++t) {
            arrive(t);
            __syncthreads();
            advance(t);
        }
    }
#else
#ifdef REEF_DRAIN_PROBE
    u64 probe_t = 0;  // thread 0: the time of its previous check
#endif
    for (i32 t = 0; t < steps; ++t) {
        arrive(t);
        const bool check = BE && REEF_FLAG_CHUNK == 1;
        if (check && threadIdx.x == 0) {
            reef_stop = flag;
            flag = *(volatile const i32*)ld.p.hdr.flag;
#ifdef REEF_DRAIN_PROBE
            const u64 now = reef_now();
            if (reef_stop != 0) {
                reef_probe_notice(now);
                if (probe_t != 0) reef_probe_add(3, now - probe_t);
            }
            probe_t = now;
#endif
        }
        __syncthreads();
        if (check && reef_stop != 0) {
            reef_cp_wait<0>();
            __syncthreads();
            return false;
        }
        advance(t);
    }
#endif
    reef_cp_wait<0>();
    if constexpr (BE && REEF_END_CHECK != 0) {
        if (threadIdx.x == 0) {
            reef_end_word() = flag;
            if (flag != 0) REEF_PROBE_NOTICE();
        }
        __syncthreads();
        return reef_end_word() == 0;
    }
    __syncthreads();
    return true;
}

// Split TF32 ("3xTF32"): x = hi + lo with hi = tf32(x), lo = tf32(x - hi).
// x - hi is exact in f32 (hi is x rounded to 10 mantissa bits), so hi + lo
// carries about 21 significant bits of x.
__device__ __forceinline__ void reef_tf32_split(float x, u32& hi, u32& lo) {
    hi = reef_tf32(x);
    lo = reef_tf32(x - __uint_as_float(hi));
}

// Tensor-core core: acc[(mi * NI + ni) * 4 + e] of warp tile (wm, wn).
// X3 = false: one TF32 mma per fragment pair (operands rounded with cvt.rna).
// X3 = true: split TF32, per k8 step t = a_hi*b_lo; t += a_lo*b_hi;
// t += a_hi*b_hi (small terms first, three mmas into a zeroed partial t),
// then acc = acc + t in IEEE f32. Adding straight into acc let the tensor
// cores' truncating accumulation bias long sums (vgg19 whole-model error
// 1.0e-4 against 1.4e-6 with the partial, on the H100). B's hi/lo fragments
// are held for the k8 step and A's are split one mi at a time. ptxas -v
// (sm_90): conv_tc_x3 / matmul_tc_x3 use 128 registers with 8-40 bytes of
// spill; a 128 x 128 instantiation spilled 48-80 bytes, so split TF32 runs
// on 64 x 64 tiles only (GemmTile::large_ok) and has no 128 x 128 family.
// AR / BR: the A / B operand is stored already rounded to TF32 (weights
// rounded on the host, crate::tf32_weights), so its fragments skip the
// cvt.rna: bit-identical operands, fewer instructions in the K loop.
template <class C, bool X3 = false, bool AR = false, bool BR = false>
struct TcCore {
    static constexpr int E = C::MI * C::NI * 4;
    __device__ __forceinline__ static i32 wm() { return (i32)(threadIdx.x >> 5) / (C::BN / C::WN) * C::WM; }
    __device__ __forceinline__ static i32 wn() { return (i32)(threadIdx.x >> 5) % (C::BN / C::WN) * C::WN; }
    // B's shared-memory layout is a compile-time choice (KM: K-major, as a
    // matmul's trans_b operand), so every fragment load has a constant
    // offset from one base; a loader whose B may be either (MAYBE_KM) gets
    // both loops.
    template <bool BE, class L>
    __device__ __forceinline__ static bool run(L& ld, i32 kb, i32 ke, float* acc) {
        if constexpr (L::MAYBE_KM) {
            if (ld.bkm()) return run_b<BE, true>(ld, kb, ke, acc);
        }
        return run_b<BE, false>(ld, kb, ke, acc);
    }
    template <bool BE, bool KM, class L>
    __device__ __forceinline__ static bool run_b(L& ld, i32 kb, i32 ke, float* acc) {
        const i32 lane = threadIdx.x & 31;
        const i32 g = lane >> 2, q = lane & 3;
        const i32 wm0 = wm(), wn0 = wn();
        // B element (k, n) lives at bs[k * bsk + n * bsn].
        constexpr i32 bsk = KM ? 1 : C::BP, bsn = KM ? C::AP : 1;
        return reef_pipeline<C, BE>(ld, kb, ke, [&](const float* as, const float* bs) {
#pragma unroll
            for (int kk = 0; kk < GK; kk += 8) {
                if constexpr (!X3) {
                    u32 af[C::MI][4], bf[C::NI][2];
#if REEF_LDMATRIX
                    // Matrix j of an A fragment: rows 8 (j & 1), K columns 4 (j >> 1).
                    const i32 a_lane = ((lane & 7) + ((lane >> 3) & 1) * 8) * C::AP + (lane >> 4) * 4;
#pragma unroll
                    for (int mi = 0; mi < C::MI; ++mi) {
                        reef_ldsm4(af[mi], as + a_lane + (wm0 + mi * 16) * C::AP + kk);
                        if constexpr (!AR) {
#pragma unroll
                            for (int j = 0; j < 4; ++j) af[mi][j] = reef_tf32(__uint_as_float(af[mi][j]));
                        }
                    }
#else
#pragma unroll
                    for (int mi = 0; mi < C::MI; ++mi) {
                        const i32 r0 = (wm0 + mi * 16 + g) * C::AP + kk + q;
                        af[mi][0] = reef_tf32_op<AR>(as[r0]);
                        af[mi][1] = reef_tf32_op<AR>(as[r0 + 8 * C::AP]);
                        af[mi][2] = reef_tf32_op<AR>(as[r0 + 4]);
                        af[mi][3] = reef_tf32_op<AR>(as[r0 + 8 * C::AP + 4]);
                    }
#endif
                    if constexpr (KM && REEF_LDMATRIX) {
                        // Matrix j of n8 tiles (ni, ni + 1): rows (n) of tile
                        // ni + (j >> 1), K columns 4 (j & 1).
                        static_assert(C::NI % 2 == 0, "B fragments load in pairs of n8 tiles");
                        const i32 b_lane = ((lane & 7) + (lane >> 4) * 8) * C::AP + ((lane >> 3) & 1) * 4;
#pragma unroll
                        for (int ni = 0; ni < C::NI; ni += 2) {
                            u32 d[4];
                            reef_ldsm4(d, bs + b_lane + (wn0 + ni * 8) * C::AP + kk);
#pragma unroll
                            for (int j = 0; j < 4; ++j)
                                bf[ni + (j >> 1)][j & 1] = BR ? d[j] : reef_tf32(__uint_as_float(d[j]));
                        }
                    } else {
#pragma unroll
                        for (int ni = 0; ni < C::NI; ++ni) {
                            const i32 c0 = (kk + q) * bsk + (wn0 + ni * 8 + g) * bsn;
                            bf[ni][0] = reef_tf32_op<BR>(bs[c0]);
                            bf[ni][1] = reef_tf32_op<BR>(bs[c0 + 4 * bsk]);
                        }
                    }
#pragma unroll
                    for (int mi = 0; mi < C::MI; ++mi)
#pragma unroll
                        for (int ni = 0; ni < C::NI; ++ni)
                            reef_mma_tf32(acc + (mi * C::NI + ni) * 4, af[mi], bf[ni]);
                } else {
                    u32 bh[C::NI][2], bl[C::NI][2];
#pragma unroll
                    for (int ni = 0; ni < C::NI; ++ni) {
                        const i32 c0 = (kk + q) * bsk + (wn0 + ni * 8 + g) * bsn;
                        reef_tf32_split(bs[c0], bh[ni][0], bl[ni][0]);
                        reef_tf32_split(bs[c0 + 4 * bsk], bh[ni][1], bl[ni][1]);
                    }
#pragma unroll
                    for (int mi = 0; mi < C::MI; ++mi) {
                        u32 ah[4], al[4];
                        const i32 r0 = (wm0 + mi * 16 + g) * C::AP + kk + q;
                        reef_tf32_split(as[r0], ah[0], al[0]);
                        reef_tf32_split(as[r0 + 8 * C::AP], ah[1], al[1]);
                        reef_tf32_split(as[r0 + 4], ah[2], al[2]);
                        reef_tf32_split(as[r0 + 8 * C::AP + 4], ah[3], al[3]);
                        // The three products of one k8 step go into a zeroed
                        // partial, in the fixed order hi*lo, lo*hi, hi*hi;
                        // the partial is then added to the accumulator with
                        // an IEEE (round-to-nearest) add. The tensor cores'
                        // own f32 accumulation truncates, and over long K a
                        // large accumulator would collect that bias.
                        float t[C::NI][4];
#pragma unroll
                        for (int ni = 0; ni < C::NI; ++ni) {
#pragma unroll
                            for (int e = 0; e < 4; ++e) t[ni][e] = 0.0f;
                            reef_mma_tf32(t[ni], ah, bl[ni]);
                        }
#pragma unroll
                        for (int ni = 0; ni < C::NI; ++ni) reef_mma_tf32(t[ni], al, bh[ni]);
#pragma unroll
                        for (int ni = 0; ni < C::NI; ++ni) {
                            reef_mma_tf32(t[ni], ah, bh[ni]);
#pragma unroll
                            for (int e = 0; e < 4; ++e)
                                acc[(mi * C::NI + ni) * 4 + e] = acc[(mi * C::NI + ni) * 4 + e] + t[ni][e];
                        }
                    }
                }
            }
        });
    }
    // Accumulator layout for the epilogue: element e lies in tile row
    // row(rs(e)) and column col(cs(e)); a thread holds RS rows and CS columns.
    static constexpr int RS = C::MI * 2, CS = C::NI * 2;
    __device__ __forceinline__ static int rs(int e) { return e / (C::NI * 4) * 2 + ((e & 3) >> 1); }
    __device__ __forceinline__ static int cs(int e) { return (e / 4) % C::NI * 2 + (e & 1); }
    __device__ __forceinline__ static i32 row(int i) {
        return wm() + (i >> 1) * 16 + (i32)((threadIdx.x & 31) >> 2) + (i & 1) * 8;
    }
    __device__ __forceinline__ static i32 col(int j) {
        return wn() + (j >> 1) * 8 + 2 * (i32)(threadIdx.x & 3) + (j & 1);
    }
};

// Exact f32 FFMA core (REEF_TF32=0), 64 x 64 tiles: thread (ty, tx) owns
// rows ty + 8i and columns tx + 16j.
template <class C>
struct FfmaCore {
    static constexpr int E = 32;
    static_assert(C::BM == 64 && C::BN == 64 && C::T == 128, "FFMA core is 64x64x128");
    template <bool BE, class L>
    __device__ __forceinline__ static bool run(L& ld, i32 kb, i32 ke, float* acc) {
        const i32 tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
        const bool km = ld.bkm();
        const i32 bsk = km ? 1 : C::BP, bsn = km ? C::AP : 1;
        return reef_pipeline<C, BE>(ld, kb, ke, [&](const float* as, const float* bs) {
#pragma unroll
            for (int kk = 0; kk < GK; ++kk) {
                float av[8], bv[4];
#pragma unroll
                for (int i = 0; i < 8; ++i) av[i] = as[(ty + 8 * i) * C::AP + kk];
#pragma unroll
                for (int j = 0; j < 4; ++j) bv[j] = bs[kk * bsk + (tx + 16 * j) * bsn];
#pragma unroll
                for (int i = 0; i < 8; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i * 4 + j] = fmaf(av[i], bv[j], acc[i * 4 + j]);
            }
        });
    }
    // Accumulator layout for the epilogue (see TcCore).
    static constexpr int RS = 8, CS = 4;
    __device__ __forceinline__ static int rs(int e) { return e >> 2; }
    __device__ __forceinline__ static int cs(int e) { return e & 3; }
    __device__ __forceinline__ static i32 row(int i) { return (i32)(threadIdx.x >> 4) + 8 * i; }
    __device__ __forceinline__ static i32 col(int j) { return (i32)(threadIdx.x & 15) + 16 * j; }
};


// ---- wgmma core (sm_90a) ----
// D[pixels x channels] = Bs^T * As^T per warpgroup: A operand (pixels, 64
// rows) from registers, loaded like mma.sync's m16n8k8 A fragments (warp w
// owns rows 16w..16w+15) and rounded with cvt.rna; B operand (channels) from
// shared memory through a descriptor (WCfg's layout, rounded in place by the
// pipeline). Each K step issues GK / 8 wgmmas and waits for them before the
// next barrier, so no wgmma reads a stage that is being refilled and a BE
// tile abandoned at a barrier leaves nothing in flight.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define REEF_HAS_WGMMA 1
// The f32 accumulator operands of an m64nN wgmma: N / 2 registers per
// thread, as the "{%0,...}" list of the instruction and "+f" constraints.
#define REEF_WG_D32                                                     \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"           \
    "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
#define REEF_WG_D64                                                     \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"           \
    "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"  \
    "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"  \
    "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
#define REEF_WG_ACC4(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define REEF_WG_ACC32(d)                                                                      \
    REEF_WG_ACC4(d, 0), REEF_WG_ACC4(d, 4), REEF_WG_ACC4(d, 8), REEF_WG_ACC4(d, 12),          \
        REEF_WG_ACC4(d, 16), REEF_WG_ACC4(d, 20), REEF_WG_ACC4(d, 24), REEF_WG_ACC4(d, 28)
#define REEF_WG_ACC64(d) REEF_WG_ACC32(d), REEF_WG_ACC32((d + 32))
__device__ __forceinline__ u64 reef_wg_desc(const float* p, u32 lbo, u32 sbo) {
    const u32 a = reef_smem(p);
    return (u64)((a >> 4) & 0x3FFF) | ((u64)((lbo >> 4) & 0x3FFF) << 16) |
           ((u64)((sbo >> 4) & 0x3FFF) << 32);
}
__device__ __forceinline__ void reef_wgmma_n64(float* d, const u32* a, u64 desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 "
        REEF_WG_D32
        "{%32,%33,%34,%35}, %36, p, 1, 1;\n}\n"
        : REEF_WG_ACC32(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
}
__device__ __forceinline__ void reef_wgmma_n128(float* d, const u32* a, u64 desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 "
        REEF_WG_D64
        "{%64,%65,%66,%67}, %68, p, 1, 1;\n}\n"
        : REEF_WG_ACC64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
}
#endif

template <class C>
struct WgCore {
    static constexpr int N = C::BM;  // wgmma N (channels)
    static constexpr int E = N / 2;
    template <bool BE, class L>
    __device__ __forceinline__ static bool run(L& ld, i32 kb, i32 ke, float* acc) {
#if defined(REEF_HAS_WGMMA)
        const i32 lane = threadIdx.x & 31, w = (i32)(threadIdx.x >> 5);
        const i32 g = lane >> 2, q = lane & 3;
        const i32 r0 = 16 * w + g;
        return reef_pipeline<C, BE>(ld, kb, ke, [&](const float* as, const float* bs) {
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < GK; kk += 8) {
                u32 a[4];
                a[0] = reef_tf32(bs[(kk + q) * C::BP + r0]);
                a[1] = reef_tf32(bs[(kk + q) * C::BP + r0 + 8]);
                a[2] = reef_tf32(bs[(kk + q + 4) * C::BP + r0]);
                a[3] = reef_tf32(bs[(kk + q + 4) * C::BP + r0 + 8]);
                const u64 desc = reef_wg_desc(as + (kk / 4) * 32, C::LBO, C::SBO);
                if constexpr (N == 128) {
                    reef_wgmma_n128(acc, a, desc);
                } else {
                    reef_wgmma_n64(acc, a, desc);
                }
            }
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        });
#else
        __trap();  // the host selects wgmma families on sm_90 only
        return false;
#endif
    }
    // Accumulator layout: acc[4i + e] is pixel 16w + g + 8 (e >> 1) and
    // channel 8i + 2q + (e & 1). The epilogue's rows are channels, its
    // columns pixels.
    static constexpr int RS = N / 4, CS = 2;
    __device__ __forceinline__ static int rs(int e) { return (e >> 2) * 2 + (e & 1); }
    __device__ __forceinline__ static int cs(int e) { return (e >> 1) & 1; }
    __device__ __forceinline__ static i32 row(int i) {
        return (i >> 1) * 8 + 2 * (i32)(threadIdx.x & 3) + (i & 1);
    }
    __device__ __forceinline__ static i32 col(int j) {
        return 16 * (i32)(threadIdx.x >> 5) + (i32)((threadIdx.x & 31) >> 2) + 8 * j;
    }
};

// ---- wgmma matmul (sm_90a): both operands from shared memory ----
#if defined(REEF_HAS_WGMMA)
__device__ __forceinline__ void reef_wgmma_ss_n128(float* d, u64 da, u64 db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 "
        REEF_WG_D64
        "%64, %65, p, 1, 1;\n}\n"
        : REEF_WG_ACC64(d)
        : "l"(da), "l"(db));
}
#endif

// The K loop of the wgmma matmul: C::ST stages in dynamic shared memory.
// Per K step t: wait for this thread's copies of stage t, round them to TF32
// in place (unless stored rounded: AR, BR) and fence them into the
// async proxy that wgmma reads through; barrier; refill the stage of step
// t - 2 with step t + ST - 2 (every warpgroup finished step t - 2's wgmmas
// before this barrier: each waits for all but its latest group at the end
// of a step); then `step` issues step t's wgmmas and commits them, and the
// thread waits for step t - 1's. BE: the flag check of reef_pipeline at the
// barrier; an abandoned tile first waits for its wgmmas, so nothing is left
// in flight.
// The block's dynamic shared memory (the wgmma matmul's stages).
__device__ __forceinline__ float* reef_dyn_smem() {
    extern __shared__ __align__(128) float reef_dyn[];
    return reef_dyn;
}

template <class C, bool BE, bool AR, bool BR, class L, class F>
__device__ __forceinline__ bool reef_wgm_pipeline(L& ld, i32 kb, i32 ke, F step) {
#if defined(REEF_HAS_WGMMA)
    float* const As = reef_dyn_smem();
    float* const Bs = As + C::A_FLOATS;
    constexpr int AHEAD = C::ST - 2;
    const i32 steps = ke > kb ? (ke - kb + GK - 1) / GK : 0;
    // Two stop words, one per step parity: thread 0 writes step t's before
    // barrier t and next writes it before barrier t + 2, which no thread
    // passes before it has read step t's after barrier t.
    __shared__ i32 reef_stops[2];
    i32 flag = 0;
    if (BE && threadIdx.x == 0) flag = *(volatile const i32*)ld.p.hdr.flag;
#pragma unroll 1
    for (int s = 0; s < AHEAD; ++s) {
        if (s < steps) ld.issue(As + s * C::A_STAGE, Bs + s * C::B_STAGE, kb + s * GK);
        reef_cp_commit();
    }
    for (i32 t = 0; t < steps; ++t) {
        const i32 sc = t % C::ST;
        reef_cp_wait<AHEAD - 1>();
        if constexpr (!AR) ld.al.round_tf32(As + sc * C::A_STAGE);
        if constexpr (!BR) ld.round_b(Bs + sc * C::B_STAGE);
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        if (BE && threadIdx.x == 0) {
            reef_stops[t & 1] = flag;
            flag = *(volatile const i32*)ld.p.hdr.flag;
        }
        __syncthreads();
        if (BE && reef_stops[t & 1] != 0) {
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
            reef_cp_wait<0>();
            __syncthreads();
            return false;
        }
        const i32 tn = t + AHEAD;
        if (tn < steps) {
            const i32 sn = tn % C::ST;
            ld.issue(As + sn * C::A_STAGE, Bs + sn * C::B_STAGE, kb + tn * GK);
        }
        reef_cp_commit();
        step(As + sc * C::A_STAGE, Bs + sc * C::B_STAGE);
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    reef_cp_wait<0>();
    __syncthreads();
    return true;
#else
    __trap();  // the host selects wgmma families on sm_90 only
    return false;
#endif
}

// wgmma core with both operands in shared memory: warpgroup g computes rows
// 64g .. 64g + 63 of the tile and all 128 columns, GK / 8 m64n128k8 wgmmas
// per K step. AR / BR: A / B is stored rounded to TF32 (a weight,
// crate::tf32_weights): a convolution's A, a matmul's B.
template <class C, bool AR, bool BR>
struct WgmCore {
    static constexpr int E = C::BN / 2;
    static_assert(C::BM == 128 && C::BN == 128 && C::T == 256, "two warpgroups of m64n128");
    template <bool BE, class L>
    __device__ __forceinline__ static bool run(L& ld, i32 kb, i32 ke, float* acc) {
#if defined(REEF_HAS_WGMMA)
        // Descriptors differ only in their start address (bits 0-13, in
        // 16-byte units), so each is the base's plus an offset: shared
        // addresses stay below 256 KB, and the field cannot carry over.
        const float* const base = reef_dyn_smem();
        const u64 d0 = reef_wg_desc(base, C::LBO, C::SBO);
        const u32 a_row = (u32)C::a_at(64 * (i32)(threadIdx.x >> 7), 0);
        return reef_wgm_pipeline<C, BE, AR, BR>(ld, kb, ke, [&](const float* as, const float* bs) {
            const u32 ao = (u32)(as - base) + a_row, bo = (u32)(bs - base);
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < GK; kk += 8) {
                // a_at(r, kk) = a_at(r, 0) + a_at(0, kk) for kk a multiple of 4.
                const u32 kc = (u32)C::a_at(0, kk);
                reef_wgmma_ss_n128(acc, d0 + ((ao + kc) >> 2), d0 + ((bo + kc) >> 2));
            }
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        });
#else
        __trap();
        return false;
#endif
    }
    // Accumulator layout (m64nNk8, f32): acc[4i + e] of warp w of warpgroup
    // g is row 64g + 16w + (lane >> 2) + 8 (e >> 1), column 8i + 2 (lane & 3)
    // + (e & 1).
    static constexpr int RS = 2, CS = C::BN / 4;
    __device__ __forceinline__ static int rs(int e) { return (e >> 1) & 1; }
    __device__ __forceinline__ static int cs(int e) { return (e >> 2) * 2 + (e & 1); }
    __device__ __forceinline__ static i32 row(int i) {
        return 16 * (i32)(threadIdx.x >> 5) + (i32)((threadIdx.x & 31) >> 2) + 8 * i;
    }
    __device__ __forceinline__ static i32 col(int j) {
        return (j >> 1) * 8 + 2 * (i32)(threadIdx.x & 3) + (j & 1);
    }
};

// Writes the E accumulated elements of this thread through the loader's
// fused epilogue. An element's output (and bias) offset is the sum of a row
// part and a column part, each computed once per thread (the integer
// divisions of the column split stay out of the per-element loop); the bias
// and residual loads of REEF_EPI elements are issued before their stores (the
// compiler may not move a load across a store to a possibly aliasing
// pointer). Offsets fit in i32: the host rejects buffers of 2^31 elements.
#define REEF_EPI 8
#define REEF_RED 32
//
// CHECK (BE variants; REEF_EPI_CHECK, default 2): every thread loads the
// flag with every group's loads (REEF_EPI_CHECK=1: with its first group's
// only; 0: no check) and, once it is up, writes no more and marks the
// kernel aborted (the kernel then runs again from its first tile, as after
// an abandoned K loop; kernels are idempotent, so a tile written in part is
// rewritten). No barrier: any warp that stops marks the kernel itself. A
// BE epilogue with its way out took 4.75-10.25 us at its p50 on the H100
// (vgg19 8.5, p99 19.25; Session 27, call 3): without the check, a block
// in it at a raise ran it to its end.
#ifndef REEF_EPI_CHECK
#define REEF_EPI_CHECK 2
#endif
//
// HOIST (REEF_EPI_HOIST, default 1; 0 compiles it out): where the bias is
// the row's alone (convolutions), a thread loads its rows' biases once,
// all before its first store, so that a group without a residual waits
// for no load (each group's loads otherwise complete before its stores:
// up to eight load round trips in series per thread). It cut RT latency
// at batch 1 by 1.7-5.4% (vgg19, resnet50, resnet152, densenet201,
// inception_v3) in one H100 call and by 0.8-3.0% in another (Session 28).
#ifndef REEF_EPI_HOIST
#define REEF_EPI_HOIST 1
#endif
template <class Core, bool CHECK = false, class L>
__device__ __forceinline__ void reef_epilogue(const L& ld, const float* acc, u64 flag = 0, u64 done = 0) {
    static_assert(Core::E % REEF_EPI == 0, "epilogue groups");
    constexpr bool hoist = REEF_EPI_HOIST != 0 && L::BIAS_BY_ROW;
    i32 stop = 0;
    i32 ro[Core::RS], rb[Core::RS], co[Core::CS], cb[Core::CS];
#pragma unroll
    for (int i = 0; i < Core::RS; ++i) ld.row_part(Core::row(i), ro[i], rb[i]);
#pragma unroll
    for (int j = 0; j < Core::CS; ++j) ld.col_part(Core::col(j), co[j], cb[j]);
    float brow[hoist ? Core::RS : 1];
    if constexpr (hoist) {
#pragma unroll
        for (int i = 0; i < Core::RS; ++i) brow[i] = ld.bias_of(ro[i] >= 0, rb[i]);
    }
#pragma unroll
    for (int e0 = 0; e0 < Core::E; e0 += REEF_EPI) {
        float b[REEF_EPI], r[REEF_EPI];
        if constexpr (CHECK) {
            if (e0 == 0 || REEF_EPI_CHECK > 1) stop = *(volatile const i32*)flag;
        }
#pragma unroll
        for (int j = 0; j < REEF_EPI; ++j) {
            const int e = e0 + j, ri = Core::rs(e), ci = Core::cs(e);
            const bool ok = ro[ri] >= 0 && co[ci] >= 0;
            if constexpr (hoist) {
                b[j] = brow[ri];
                r[j] = ld.residual_of(ok, ro[ri] + co[ci]);
            } else {
                ld.fetch(ok, ro[ri] + co[ci], rb[ri] + cb[ci], b[j], r[j]);
            }
        }
        if constexpr (CHECK) {
            if (stop != 0) {
                if ((threadIdx.x & 31) == 0) atomicOr((u32*)done, REEF_ABORTED);
                return;
            }
        }
#pragma unroll
        for (int j = 0; j < REEF_EPI; ++j) {
            const int e = e0 + j, ri = Core::rs(e), ci = Core::cs(e);
            if (ro[ri] >= 0 && co[ci] >= 0) ld.put(ro[ri] + co[ci], acc[e], b[j], r[j]);
        }
    }
}

// Split-K: publishes this item's partial and counts its arrival; the block
// that arrives last loads every split's partial and sums them into acc in
// split order. Returns REEF_RED_LAST when acc holds the tile's sum (write the
// output), REEF_RED_EARLY for the other splits (nothing more to do), and, in
// BE variants, REEF_RED_STOPPED when the flag went up during the sum.
//
// The sum takes about E / REEF_RED * S load latencies, each split's loads in
// series: with many splits, tens of microseconds, as long as many K steps.
// A BE sum watches the flag (REEF_REDUCE_CHECK, default 1): thread 0
// publishes it before each split's loads, as loaded at the previous one (the
// K loop's way; two words by parity, so that its next write comes after
// every thread read this one), and the whole block stops at the same split.
// A stopped sum is a tile abandoned midway (nothing written; the kernel runs
// again from its first tile, whose `begin` zeroes the arrivals). On the H100
// (Session 27, docs/PERF.md) it cut the drain probe's depth-1 drain p99 from
// 10.75-23.5 us to 6.25-13.5 us, for 0-2% of BE throughput.
// REEF_NVRTC_DEFINES=REEF_REDUCE_CHECK=0 compiles the unchecked sum (the
// RT variants' machine code is the same either way).
#ifndef REEF_REDUCE_CHECK
#define REEF_REDUCE_CHECK 1
#endif
#define REEF_RED_EARLY 0
#define REEF_RED_LAST 1
#define REEF_RED_STOPPED 2
template <class C, int E, bool BE, class P>
__device__ __forceinline__ int reef_split_reduce(const P& p, u32 tile, u32 sp, float* acc) {
    const u32 S = p.splits;
    __shared__ int reef_last;
    __shared__ i32 reef_red_stops[2];
    float* ws = (float*)p.ws + (u64)tile * S * (E * C::T) + threadIdx.x;
#pragma unroll
    for (int e = 0; e < E; ++e) __stcg(ws + (sp * E + e) * C::T, acc[e]);
    __threadfence();
    __syncthreads();
    constexpr bool check = BE && REEF_REDUCE_CHECK != 0;
    i32 flag = 0;
    if (threadIdx.x == 0) {
        const u32 prev = atomicAdd((u32*)p.cnt + tile, 1u);
        reef_last = prev + 1u == S;
        if (check) flag = *(volatile const i32*)p.hdr.flag;
    }
    __syncthreads();
    if (!reef_last) return REEF_RED_EARLY;
    __threadfence();
    // Each element's sum runs in split order 0, 1, ..., S-1. The loads of
    // one split are issued for REEF_RED elements at once (independent), so
    // the reduction costs about E / REEF_RED * S load latencies, not E * S.
    constexpr int G = E < REEF_RED ? E : REEF_RED;
    static_assert(E % G == 0, "reduction groups");
    u32 n = 0;  // the checks so far (their parity picks the word)
#pragma unroll
    for (int e0 = 0; e0 < E; e0 += G) {
#pragma unroll
        for (int j = 0; j < G; ++j) acc[e0 + j] = __ldcg(ws + (e0 + j) * C::T);
        for (u32 s = 1; s < S; ++s) {
            if constexpr (check) {
                if (threadIdx.x == 0) {
                    reef_red_stops[n & 1] = flag;
                    if (flag != 0) REEF_PROBE_NOTICE();
                    flag = *(volatile const i32*)p.hdr.flag;
                }
                __syncthreads();
                if (reef_red_stops[n & 1] != 0) return REEF_RED_STOPPED;
                ++n;
            }
            float part[G];
#pragma unroll
            for (int j = 0; j < G; ++j) part[j] = __ldcg(ws + (s * E + e0 + j) * C::T);
#pragma unroll
            for (int j = 0; j < G; ++j) acc[e0 + j] = acc[e0 + j] + part[j];
        }
    }
    return REEF_RED_LAST;
}

// One work item: split (w % splits) of output tile (w / splits). False: a
// BE item abandoned at a raised flag (no partial, no arrival, no output).
template <class C, class Core, class L, bool BE, class P>
__device__ __forceinline__ bool reef_gemm_item(const P& p, u32 w) {
    constexpr int E = Core::E;
    const u32 S = p.splits;
    const u32 tile = w / S;
    const u32 sp = w - tile * S;
    L ld(p, tile);
    const i32 kb = (i32)sp * p.ksplit;
    const i32 ke = min(ld.kdim, kb + p.ksplit);
    ld.start(kb);
    float acc[E];
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = 0.0f;
    if (!Core::template run<BE>(ld, kb, ke, acc)) return false;
    REEF_PROBE_MARK(0);
    // One inlined copy of the epilogue (after the split-K reduction or
    // straight from the K loop): it is the largest code of the kernel.
    if constexpr (BE && REEF_REDUCE_CHECK != 0) {
        if (S > 1) {
            const int r = reef_split_reduce<C, E, BE>(p, tile, sp, acc);
            if (r != REEF_RED_LAST) return r == REEF_RED_EARLY;
        }
    } else if (S > 1 && reef_split_reduce<C, E, BE>(p, tile, sp, acc) == REEF_RED_EARLY) {
        return true;
    }
    REEF_PROBE_MARK(1);
    reef_epilogue<Core, BE && REEF_EPI_CHECK != 0>(ld, acc, p.hdr.flag, p.hdr.done);
    if (S > 1 && threadIdx.x == 0) atomicExch((u32*)p.cnt + tile, 0u);
    return true;
}


template <bool BE>
__device__ __forceinline__ bool conv_tc_l_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgL, TcCore<CfgL>, ConvLoad<CfgL>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool conv_tc_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgM, TcCore<CfgM>, ConvLoad<CfgM>, BE>(p, t);
}
// The `_w` families: the same tiles for weights stored rounded to TF32
// (crate::tf32_weights): the weight operand skips its cvt.rna.
template <bool BE>
__device__ __forceinline__ bool conv_tc_l_w_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgL, TcCore<CfgL, false, true>, ConvLoad<CfgL>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool conv_tc_w_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgM, TcCore<CfgM, false, true>, ConvLoad<CfgM>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool conv_tc_t_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgT, TcCore<CfgT>, ConvLoad<CfgT>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool conv_tc_t_w_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgT, TcCore<CfgT, false, true>, ConvLoad<CfgT>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool conv_wg_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgW, WgCore<CfgW>, ConvLoad<CfgW>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool conv_wg_s_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgWs, WgCore<CfgWs>, ConvLoad<CfgWs>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool conv_ffma_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgM, FfmaCore<CfgM>, ConvLoad<CfgM>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool matmul_tc_w_tile(const MatMulParams& p, u32 t) {
    return reef_gemm_item<CfgM, TcCore<CfgM, false, false, true>, MatMulLoad<CfgM>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool matmul_tc_tile(const MatMulParams& p, u32 t) {
    return reef_gemm_item<CfgM, TcCore<CfgM>, MatMulLoad<CfgM>, BE>(p, t);
}
// 128 x 128 matmul tiles (CfgL, 256 threads) and their rounded-B twin: the
// load-time rules never pick them; the tactic tuner does where they are
// faster (tactics.rs). (CfgT matmuls were tried: at 128 registers ptxas
// spilled inside their BE K loop, 15 spill instructions, so they are left out.)
template <bool BE>
__device__ __forceinline__ bool matmul_tc_l_tile(const MatMulParams& p, u32 t) {
    return reef_gemm_item<CfgL, TcCore<CfgL>, MatMulLoad<CfgL>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool matmul_tc_l_w_tile(const MatMulParams& p, u32 t) {
    return reef_gemm_item<CfgL, TcCore<CfgL, false, false, true>, MatMulLoad<CfgL>, BE>(p, t);
}

// wgmma matmuls (sm_90a, REEF_WGMMA=1) and their rounded-B twin.
template <bool BE>
__device__ __forceinline__ bool matmul_wg_tile(const MatMulParams& p, u32 t) {
    return reef_gemm_item<WmCfg, WgmCore<WmCfg, false, false>, MatMulLoad<WmCfg>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool matmul_wg_w_tile(const MatMulParams& p, u32 t) {
    return reef_gemm_item<WmCfg, WgmCore<WmCfg, false, true>, MatMulLoad<WmCfg>, BE>(p, t);
}
// The same tiles for convolutions: 128 channels x 128 pixels, the gathered
// im2col operand stored K-major (ConvLoad with WmCfg::BKM), and the `_w`
// twin over weights stored rounded.
template <bool BE>
__device__ __forceinline__ bool conv_wgm_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<WmCfg, WgmCore<WmCfg, false, false>, ConvLoad<WmCfg>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool conv_wgm_w_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<WmCfg, WgmCore<WmCfg, true, false>, ConvLoad<WmCfg>, BE>(p, t);
}

// Split-TF32 ("3xTF32") instantiations of the tensor-core families.
template <bool BE>
__device__ __forceinline__ bool conv_tc_x3_tile(const ConvParams& p, u32 t) {
    return reef_gemm_item<CfgM, TcCore<CfgM, true>, ConvLoad<CfgM>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool matmul_tc_x3_tile(const MatMulParams& p, u32 t) {
    return reef_gemm_item<CfgM, TcCore<CfgM, true>, MatMulLoad<CfgM>, BE>(p, t);
}
template <bool BE>
__device__ __forceinline__ bool matmul_ffma_tile(const MatMulParams& p, u32 t) {
    return reef_gemm_item<CfgM, FfmaCore<CfgM>, MatMulLoad<CfgM>, BE>(p, t);
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


// Register budgets: 128 per thread (2 x 256 or 4 x 128 threads per SM).
// Each family belongs to one kernel set (reef_cuda::kernels::KernelSet), a
// separate NVRTC program compiled with -DREEF_SET_<NAME>: a device compiles
// and loads only the sets its options use.
#if defined(REEF_SET_TF32)
REEF_FAMILY_MB(conv_tc_l, ConvParams, REEF_GEMM_L_THREADS, 2)
REEF_FAMILY_MB(conv_tc, ConvParams, REEF_GEMM_THREADS, 4)
REEF_FAMILY_MB(conv_tc_l_w, ConvParams, REEF_GEMM_L_THREADS, 2)
REEF_FAMILY_MB(conv_tc_w, ConvParams, REEF_GEMM_THREADS, 4)
REEF_FAMILY_MB(matmul_tc, MatMulParams, REEF_GEMM_THREADS, 4)
REEF_FAMILY_MB(matmul_tc_w, MatMulParams, REEF_GEMM_THREADS, 4)
#endif
#if defined(REEF_SET_TF32_WIDE)
REEF_FAMILY_MB(conv_tc_t, ConvParams, REEF_GEMM_THREADS, 4)
REEF_FAMILY_MB(conv_tc_t_w, ConvParams, REEF_GEMM_THREADS, 4)
REEF_FAMILY_MB(matmul_tc_l, MatMulParams, REEF_GEMM_L_THREADS, 2)
REEF_FAMILY_MB(matmul_tc_l_w, MatMulParams, REEF_GEMM_L_THREADS, 2)
#endif
#if defined(REEF_SET_WGMMA)
REEF_FAMILY_MB(conv_wg, ConvParams, REEF_GEMM_THREADS, 3)
REEF_FAMILY_MB(conv_wg_s, ConvParams, REEF_GEMM_THREADS, 4)
// RT matmuls: two 256-thread blocks per SM (96 KB of stages each): while
// one waits at its K step's barrier, the other's wgmmas run (ncu, session
// 13: one block of eight stages left 84% of the issue slots with no
// eligible warp). At 128 registers the BE variants spill (348 bytes; the
// convolutions' RT variants too), so they keep one block per SM.
REEF_FAMILY_MB2(matmul_wg, MatMulParams, REEF_GEMM_L_THREADS, 2, 1)
REEF_FAMILY_MB2(matmul_wg_w, MatMulParams, REEF_GEMM_L_THREADS, 2, 1)
REEF_FAMILY_MB(conv_wgm, ConvParams, REEF_GEMM_L_THREADS, 1)
REEF_FAMILY_MB(conv_wgm_w, ConvParams, REEF_GEMM_L_THREADS, 1)
#endif
#if defined(REEF_SET_F32)
REEF_FAMILY_MB(conv_ffma, ConvParams, REEF_GEMM_THREADS, 4)
REEF_FAMILY_MB(matmul_ffma, MatMulParams, REEF_GEMM_THREADS, 4)
#endif
#if defined(REEF_SET_TF32X3)
REEF_FAMILY_MB(conv_tc_x3, ConvParams, REEF_GEMM_THREADS, 4)
REEF_FAMILY_MB(matmul_tc_x3, MatMulParams, REEF_GEMM_THREADS, 4)
#endif
#if defined(REEF_SET_BASE)
REEF_FAMILY(conv_dw, ConvParams, REEF_EW_THREADS)
#endif
