// reef CUDA kernels: row families (softmax, layer norm, reduce). One tile is
// one row, reduced by a whole block of REEF_ROW_THREADS threads in a fixed
// order (deterministic, identical in both variants).
#if defined(REEF_SET_BASE)  // the base kernel set (gemm.cu: kernel sets)

// Mirrors reef_cuda::params::SoftmaxParams. Row (o, i) of [outer, axis, inner].
struct SoftmaxParams {
    Hdr hdr;
    u64 x, out, mask;
    i32 outer, axis, inner;
    Prologue pre;
    u32 pad0;
};

// Element j of the softmax row after the prologue (SoftmaxPre: scale, then
// the mask; the same f32 operations as the separate kernels). `mrow` is the
// row's mask offset (mask set only when inner == 1).
__device__ __forceinline__ float softmax_in(const SoftmaxParams& p, const float* x, i32 j, i64 mrow) {
    float v = reef_pre_scale(p.pre, x[(i64)j * p.inner]);
    if (p.mask != 0) v = v + ((const float*)p.mask)[mrow + (i64)j * p.pre.mask_cs];
    return v;
}

__device__ __forceinline__ void softmax_tile(const SoftmaxParams& p, u32 t) {
    __shared__ float sm[32];
    const i64 o = t / (u32)p.inner, i = t % (u32)p.inner;
    const i64 base = o * p.axis * p.inner + i;
    const float* x = (const float*)p.x + base;
    float* y = (float*)p.out + base;
    const i64 mrow = reef_pre_mrow(p.pre, o);
    float m = -reef_inf();
    for (i32 j = threadIdx.x; j < p.axis; j += blockDim.x) m = fmaxf(m, softmax_in(p, x, j, mrow));
    m = reef_block_max(m, sm);
    float s = 0.0f;
    for (i32 j = threadIdx.x; j < p.axis; j += blockDim.x) s = s + expf(softmax_in(p, x, j, mrow) - m);
    s = reef_block_sum(s, sm);
    for (i32 j = threadIdx.x; j < p.axis; j += blockDim.x)
        y[(i64)j * p.inner] = expf(softmax_in(p, x, j, mrow) - m) / s;
}
REEF_FAMILY(softmax, SoftmaxParams, REEF_ROW_THREADS)

// Mirrors reef_cuda::params::LayerNormParams.
struct LayerNormParams {
    Hdr hdr;
    u64 x, gamma, beta, out;
    i32 rows, cols;
    float eps;
    u32 pad0;
};

__device__ __forceinline__ void layernorm_tile(const LayerNormParams& p, u32 t) {
    __shared__ float sm[32];
    const float* x = (const float*)p.x + (i64)t * p.cols;
    float* y = (float*)p.out + (i64)t * p.cols;
    const float* gm = (const float*)p.gamma;
    const float* bt = (const float*)p.beta;
    float s = 0.0f;
    for (i32 j = threadIdx.x; j < p.cols; j += blockDim.x) s = s + x[j];
    const float mean = reef_block_sum(s, sm) / (float)p.cols;
    float v = 0.0f;
    for (i32 j = threadIdx.x; j < p.cols; j += blockDim.x) {
        const float d = x[j] - mean;
        v = v + d * d;
    }
    const float var = reef_block_sum(v, sm) / (float)p.cols;
    const float den = sqrtf(var + p.eps);
    for (i32 j = threadIdx.x; j < p.cols; j += blockDim.x)
        y[j] = (x[j] - mean) / den * gm[j] + bt[j];
}
REEF_FAMILY(layernorm, LayerNormParams, REEF_ROW_THREADS)

// Mirrors reef_cuda::params::ReduceParams. kind (reef_plan::kernel::ReduceKind):
// 0 mean, 1 max, 2 min, 3 sum, 4 sum of squares, 5 sum of |x|, 6 L2 (sqrt of
// the sum of squares), 7 sqrt of the sum.
struct ReduceParams {
    Hdr hdr;
    u64 x, out;
    i32 outer, len, inner, kind;
};

__device__ __forceinline__ void reduce_tile(const ReduceParams& p, u32 t) {
    __shared__ float sm[32];
    const i64 o = t / (u32)p.inner, i = t % (u32)p.inner;
    const float* x = (const float*)p.x + o * p.len * p.inner + i;
    float r;
    if (p.kind == 1 || p.kind == 2) {
        // min is the negated max of the negated values (the same bits).
        const float sg = p.kind == 1 ? 1.0f : -1.0f;
        float m = -reef_inf();
        for (i32 j = threadIdx.x; j < p.len; j += blockDim.x) m = fmaxf(m, sg * x[(i64)j * p.inner]);
        r = sg * reef_block_max(m, sm);
    } else {
        float s = 0.0f;
        for (i32 j = threadIdx.x; j < p.len; j += blockDim.x) {
            const float v = x[(i64)j * p.inner];
            s = s + (p.kind == 4 || p.kind == 6 ? v * v : (p.kind == 5 ? fabsf(v) : v));
        }
        r = reef_block_sum(s, sm);
        if (p.kind == 0) r = r / (float)p.len;
        else if (p.kind == 6 || p.kind == 7) r = sqrtf(r);
    }
    if (threadIdx.x == 0) ((float*)p.out)[t] = r;
}
REEF_FAMILY(reduce, ReduceParams, REEF_ROW_THREADS)

// Mirrors reef_cuda::params::ArgExtremeParams. flags: bit 0 ArgMax (else
// ArgMin), bit 1 ties to the last index. Output i64.
struct ArgExtremeParams {
    Hdr hdr;
    u64 x, out;
    i32 outer, len, inner, flags;
};

// reef_plan::kernel::arg_beats: (a, ia) wins over (b, ib); ib < 0 is "none".
__device__ __forceinline__ bool reef_arg_beats(float a, i32 ia, float b, i32 ib, bool max, bool last) {
    if (ia < 0) return false;
    if (ib < 0) return true;
    if (a != b) return max ? a > b : a < b;
    return last ? ia > ib : ia < ib;
}

__device__ __forceinline__ void arg_extreme_tile(const ArgExtremeParams& p, u32 t) {
    __shared__ float sv[32];
    __shared__ i32 si[32];
    const bool max = (p.flags & 1) != 0, last = (p.flags & 2) != 0;
    const i64 o = t / (u32)p.inner, i = t % (u32)p.inner;
    const float* x = (const float*)p.x + o * p.len * p.inner + i;
    float bv = 0.0f;
    i32 bi = -1;
    for (i32 j = threadIdx.x; j < p.len; j += blockDim.x) {
        const float v = x[(i64)j * p.inner];
        if (reef_arg_beats(v, j, bv, bi, max, last)) { bv = v; bi = j; }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
        const i32 oi = __shfl_xor_sync(0xffffffffu, bi, off);
        if (reef_arg_beats(ov, oi, bv, bi, max, last)) { bv = ov; bi = oi; }
    }
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
    if (l == 0) { sv[w] = bv; si[w] = bi; }
    __syncthreads();
    if (w == 0) {
        bv = l < nw ? sv[l] : 0.0f;
        bi = l < nw ? si[l] : -1;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
            const i32 oi = __shfl_xor_sync(0xffffffffu, bi, off);
            if (reef_arg_beats(ov, oi, bv, bi, max, last)) { bv = ov; bi = oi; }
        }
        if (l == 0) ((i64*)p.out)[t] = (i64)bi;
    }
    __syncthreads();  // sv / si are reused by the block's next tile
}
REEF_FAMILY(arg_extreme, ArgExtremeParams, REEF_ROW_THREADS)
#endif  // REEF_SET_BASE
