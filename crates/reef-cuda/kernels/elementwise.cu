// reef CUDA kernels: element-wise and data-movement families. One tile is
// REEF_EW_TILE consecutive output elements (REEF_EW_PER_THREAD per thread,
// strided by the block size so each access is coalesced).
#if defined(REEF_SET_BASE)  // the base kernel set (gemm.cu: kernel sets)

#define REEF_EW_FOR(t, total, e)                                                   \
    for (int j_ = 0; j_ < REEF_EW_PER_THREAD; ++j_)                                \
        if (const i64 e = (i64)(t) * REEF_EW_TILE + j_ * REEF_EW_THREADS + threadIdx.x; \
            e < (i64)(total))

// Mirrors reef_cuda::params::PoolParams.
struct PoolParams {
    Hdr hdr;
    u64 x, out;
    i32 n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
    i32 kind, count_include_pad, padded_h, padded_w;
    u32 total, pad0;
};

__device__ __forceinline__ void pool_tile(const PoolParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        const i32 npix = p.oh * p.ow;
        const i32 pix = (i32)(e % npix);
        const i64 nc = e / npix;
        const i32 y = pix / p.ow, x = pix - (pix / p.ow) * p.ow;
        const float* xp = (const float*)p.x + nc * p.h * p.w;
        const i32 y0 = y * p.sh - p.ph, x0 = x * p.sw - p.pw;
        float v;
        if (p.kind == 0) {  // max: padding never wins
            float m = -reef_inf();
            for (i32 r = 0; r < p.kh; ++r) {
                const i32 iy = y0 + r * p.dh;
                if (iy < 0 || iy >= p.h) continue;
                for (i32 s = 0; s < p.kw; ++s) {
                    const i32 ix = x0 + s * p.dw;
                    if (ix < 0 || ix >= p.w) continue;
                    m = fmaxf(m, xp[iy * p.w + ix]);
                }
            }
            v = m;
        } else {  // average
            float sum = 0.0f;
            i32 inb = 0, padded = 0;
            for (i32 r = 0; r < p.kh; ++r) {
                const i32 iy = y0 + r * p.dh;
                const bool yin = iy >= 0 && iy < p.h;
                const bool ypad = iy >= -p.ph && iy < p.padded_h - p.ph;
                for (i32 s = 0; s < p.kw; ++s) {
                    const i32 ix = x0 + s * p.dw;
                    const bool xin = ix >= 0 && ix < p.w;
                    const bool xpad = ix >= -p.pw && ix < p.padded_w - p.pw;
                    if (ypad && xpad) ++padded;
                    if (yin && xin) {
                        ++inb;
                        sum = sum + xp[iy * p.w + ix];
                    }
                }
            }
            const i32 cnt = p.count_include_pad ? padded : inb;
            v = cnt > 0 ? sum / (float)cnt : 0.0f;
        }
        ((float*)p.out)[e] = v;
    }
}
REEF_FAMILY(pool, PoolParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::AffineParams.
struct AffineParams {
    Hdr hdr;
    u64 x, scale, shift, out;
    i32 outer, c, inner, act;
    float act_lo, act_hi;
    u32 total, pad0;
};

__device__ __forceinline__ void channel_affine_tile(const AffineParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        const i32 ch = (i32)((e / p.inner) % p.c);
        const float v = ((const float*)p.x)[e] * ((const float*)p.scale)[ch] +
                        ((const float*)p.shift)[ch];
        ((float*)p.out)[e] = reef_act(v, p.act, p.act_lo, p.act_hi);
    }
}
REEF_FAMILY(channel_affine, AffineParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::BcastParams: shapes right-aligned to
// REEF_MAX_RANK (leading dims 1, stride 0).
struct BcastParams {
    Hdr hdr;
    u64 a, b, c, out;
    i32 shape[REEF_MAX_RANK], sa[REEF_MAX_RANK], sb[REEF_MAX_RANK], sc[REEF_MAX_RANK];
    i32 op, dtype, act;
    float act_lo, act_hi;
    u32 total;
};

struct BcastIdx {
    i64 a, b, c;
};
__device__ __forceinline__ BcastIdx reef_bcast(const BcastParams& p, i64 e) {
    BcastIdx r = {0, 0, 0};
#pragma unroll
    for (int d = REEF_MAX_RANK - 1; d >= 0; --d) {
        const i64 ix = e % p.shape[d];
        e /= p.shape[d];
        r.a += ix * p.sa[d];
        r.b += ix * p.sb[d];
        r.c += ix * p.sc[d];
    }
    return r;
}

__device__ __forceinline__ void binary_tile(const BcastParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        const BcastIdx ix = reef_bcast(p, e);
        const float a = ((const float*)p.a)[ix.a], b = ((const float*)p.b)[ix.b];
        float v;
        switch (p.op) {
        case 0: v = a + b; break;
        case 1: v = a - b; break;
        case 2: v = a * b; break;
        case 3: v = a / b; break;
        case 4: v = powf(a, b); break;
        case 5: v = (a != a || b != b) ? reef_nan() : fminf(a, b); break;
        case 6: v = (a != a || b != b) ? reef_nan() : fmaxf(a, b); break;
        default: v = a < 0.0f ? a * b : a; break;
        }
        ((float*)p.out)[e] = reef_act(v, p.act, p.act_lo, p.act_hi);
    }
}
REEF_FAMILY(binary, BcastParams, REEF_EW_THREADS)

// op: 0 ==, 1 <, 2 >, 3 >=, 4 <=, 5 and, 6 or, 7 xor (CmpOp; NaN compares
// false, as in C; the logical operators take nonzero as true).
template <class T>
__device__ __forceinline__ bool reef_cmp(i32 op, T a, T b) {
    switch (op) {
        case 0: return a == b;
        case 1: return a < b;
        case 2: return a > b;
        case 3: return a >= b;
        case 4: return a <= b;
        case 5: return a != T(0) && b != T(0);
        case 6: return a != T(0) || b != T(0);
        default: return (a != T(0)) != (b != T(0));
    }
}
__device__ __forceinline__ void compare_tile(const BcastParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        const BcastIdx ix = reef_bcast(p, e);
        bool v;
        if (p.dtype == 0) {
            v = reef_cmp(p.op, ((const float*)p.a)[ix.a], ((const float*)p.b)[ix.b]);
        } else if (p.dtype == 1) {
            v = reef_cmp(p.op, ((const i64*)p.a)[ix.a], ((const i64*)p.b)[ix.b]);
        } else {
            v = reef_cmp(p.op, ((const u8*)p.a)[ix.a], ((const u8*)p.b)[ix.b]);
        }
        ((u8*)p.out)[e] = v ? 1 : 0;
    }
}
REEF_FAMILY(compare, BcastParams, REEF_EW_THREADS)

__device__ __forceinline__ void where_tile(const BcastParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        const BcastIdx ix = reef_bcast(p, e);
        const bool cond = ((const u8*)p.c)[ix.c] != 0;
        ((float*)p.out)[e] = cond ? ((const float*)p.a)[ix.a] : ((const float*)p.b)[ix.b];
    }
}
REEF_FAMILY(where, BcastParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::MapParams (Unary, Not, Cast).
struct MapParams {
    Hdr hdr;
    u64 x, out;
    i32 op, act, from, to;
    float act_lo, act_hi;
    u32 total, pad0;
};

__device__ __forceinline__ void unary_tile(const MapParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        const float x = ((const float*)p.x)[e];
        float v;
        switch (p.op) {
        case 0: v = reef_act(x, p.act, p.act_lo, p.act_hi); break;
        case 1: v = erff(x); break;
        case 2: v = sqrtf(x); break;
        case 3: v = expf(x); break;
        case 4: v = -x; break;
        case 5: v = fabsf(x); break;
        case 6: v = logf(x); break;
        case 7: v = 1.0f / x; break;
        case 8: v = floorf(x); break;
        case 9: v = ceilf(x); break;
        case 10: v = rintf(x); break;
        case 11: v = sinf(x); break;
        case 12: v = cosf(x); break;
        default: v = x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x); break;
        }
        ((float*)p.out)[e] = v;
    }
}
REEF_FAMILY(unary, MapParams, REEF_EW_THREADS)

__device__ __forceinline__ void lnot_tile(const MapParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) { ((u8*)p.out)[e] = ((const u8*)p.x)[e] == 0 ? 1 : 0; }
}
REEF_FAMILY(lnot, MapParams, REEF_EW_THREADS)

// Type codes: 0 f32, 1 i64, 2 i32, 3 bool. Semantics of Rust's `as`:
// float -> int truncates toward zero and saturates, NaN -> 0; int -> int wraps;
// anything -> bool is `!= 0`; bool -> number is 0 or 1.
__device__ __forceinline__ i64 reef_f2i64(float f) {
    if (f != f) return 0;
    if (f >= 9.2233720368547758e18f) return 0x7fffffffffffffffll;
    if (f <= -9.2233720368547758e18f) return (i64)0x8000000000000000ull;
    return (i64)f;
}
__device__ __forceinline__ i32 reef_f2i32(float f) {
    if (f != f) return 0;
    if (f >= 2147483648.0f) return 0x7fffffff;
    if (f <= -2147483648.0f) return (i32)0x80000000u;
    return (i32)f;
}
__device__ __forceinline__ void cast_tile(const MapParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        float f = 0.0f;
        i64 iv = 0;
        bool is_float = false;
        switch (p.from) {
        case 0: f = ((const float*)p.x)[e]; is_float = true; break;
        case 1: iv = ((const i64*)p.x)[e]; break;
        case 2: iv = ((const i32*)p.x)[e]; break;
        default: iv = ((const u8*)p.x)[e] != 0 ? 1 : 0; break;
        }
        switch (p.to) {
        case 0: ((float*)p.out)[e] = is_float ? f : (float)iv; break;
        case 1: ((i64*)p.out)[e] = is_float ? reef_f2i64(f) : iv; break;
        case 2: ((i32*)p.out)[e] = is_float ? reef_f2i32(f) : (i32)(u32)(u64)iv; break;
        default: ((u8*)p.out)[e] = (is_float ? f != 0.0f : iv != 0) ? 1 : 0; break;
        }
    }
}
REEF_FAMILY(cast, MapParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::CopyParams (shape right-aligned, leading dims 1).
struct CopyParams {
    Hdr hdr;
    u64 x, out;
    i64 offset;
    i64 strides[REEF_MAX_RANK];
    i32 shape[REEF_MAX_RANK];
    i32 esz;
    u32 total;
};

__device__ __forceinline__ void copy_tile(const CopyParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        i64 rem = e, src = p.offset;
#pragma unroll
        for (int d = REEF_MAX_RANK - 1; d >= 0; --d) {
            const i64 ix = rem % p.shape[d];
            rem /= p.shape[d];
            src += ix * p.strides[d];
        }
        reef_copy_elem(p.out + (u64)e * p.esz, p.x + (u64)(src * p.esz), p.esz);
    }
}
REEF_FAMILY(copy, CopyParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::ConcatParams. `table` holds nparts u64 part
// pointers, then nparts + 1 i64 axis starts (prefix sums of the lengths).
struct ConcatParams {
    Hdr hdr;
    u64 table, out;
    i32 outer, inner, total_len, nparts, esz;
    u32 total;
};

__device__ __forceinline__ void concat_tile(const ConcatParams& p, u32 t) {
    const u64* ptrs = (const u64*)p.table;
    const i64* starts = (const i64*)(p.table + 8ull * (u64)p.nparts);
    REEF_EW_FOR(t, p.total, e) {
        const i64 row = (i64)p.total_len * p.inner;
        const i64 o = e / row;
        const i64 rem = e - o * row;
        const i64 j = rem / p.inner;
        const i64 i = rem - j * p.inner;
        // Largest part q with starts[q] <= j (binary search).
        i32 lo = 0, hi = p.nparts - 1;
        while (lo < hi) {
            const i32 mid = (lo + hi + 1) >> 1;
            if (starts[mid] <= j) lo = mid; else hi = mid - 1;
        }
        const i64 len = starts[lo + 1] - starts[lo];
        const i64 src = (o * len + (j - starts[lo])) * p.inner + i;
        reef_copy_elem(p.out + (u64)e * p.esz, ptrs[lo] + (u64)src * p.esz, p.esz);
    }
}
REEF_FAMILY(concat, ConcatParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::GatherParams.
struct GatherParams {
    Hdr hdr;
    u64 x, idx, out;
    i32 outer, axis_len, count, inner, esz;
    u32 total;
};

__device__ __forceinline__ void gather_tile(const GatherParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        const i64 row = (i64)p.count * p.inner;
        const i64 o = e / row;
        const i64 rem = e - o * row;
        const i64 j = rem / p.inner;
        const i64 i = rem - j * p.inner;
        i64 ix = ((const i64*)p.idx)[j];
        if (ix < 0) ix += p.axis_len;
        const u64 dst = p.out + (u64)e * p.esz;
        if (ix < 0 || ix >= p.axis_len) {
            reef_zero_elem(dst, p.esz);
        } else {
            const i64 src = (o * p.axis_len + ix) * p.inner + i;
            reef_copy_elem(dst, p.x + (u64)src * p.esz, p.esz);
        }
    }
}
REEF_FAMILY(gather, GatherParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::GatherElementsParams: the output (= indices)
// shape right-aligned with leading 1s, the data's element strides
// right-aligned with leading 0s, `axis` counted in the aligned rank.
struct GatherElementsParams {
    Hdr hdr;
    u64 x, idx, out;
    i64 strides[REEF_MAX_RANK];
    i32 shape[REEF_MAX_RANK];
    i32 axis, axis_len, esz;
    u32 total;
};

// out[e] = x[e's coordinates with the axis one replaced by idx[e]]; negative
// indices wrap, out-of-range ones give 0 (as the CPU backend).
__device__ __forceinline__ void gather_elements_tile(const GatherElementsParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        i64 ix = ((const i64*)p.idx)[e];
        if (ix < 0) ix += p.axis_len;
        const u64 dst = p.out + (u64)e * p.esz;
        if (ix < 0 || ix >= p.axis_len) {
            reef_zero_elem(dst, p.esz);
        } else {
            i64 rem = e, src = 0;
#pragma unroll
            for (int d = REEF_MAX_RANK - 1; d >= 0; --d) {
                const i64 c = rem % p.shape[d];
                rem /= p.shape[d];
                src += (d == p.axis ? ix : c) * p.strides[d];
            }
            reef_copy_elem(dst, p.x + (u64)src * p.esz, p.esz);
        }
    }
}
REEF_FAMILY(gather_elements, GatherElementsParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::PadParams (shapes right-aligned, leading dims 1).
struct PadParams {
    Hdr hdr;
    u64 x, out;
    i32 shape[REEF_MAX_RANK], in_shape[REEF_MAX_RANK], pads[REEF_MAX_RANK];
    i32 mode;
    float value;
    u32 total, pad0;
};

__device__ __forceinline__ void pad_tile(const PadParams& p, u32 t) {
    REEF_EW_FOR(t, p.total, e) {
        i64 rem = e, src = 0, stride = 1;
        bool inside = true;
#pragma unroll
        for (int d = REEF_MAX_RANK - 1; d >= 0; --d) {
            const i32 n = p.in_shape[d];
            i32 ix = (i32)(rem % p.shape[d]) - p.pads[d];
            rem /= p.shape[d];
            if (ix < 0 || ix >= n) {
                if (p.mode == 0 || n <= 0) {
                    inside = false;
                } else if (p.mode == 1) {  // reflect (no edge repeat)
                    if (n == 1) {
                        ix = 0;
                    } else {
                        const i32 period = 2 * (n - 1);
                        ix = ix % period;
                        if (ix < 0) ix += period;
                        if (ix >= n) ix = period - ix;
                    }
                } else {  // edge
                    ix = ix < 0 ? 0 : n - 1;
                }
            }
            src += (i64)ix * stride;
            stride *= n;
        }
        ((float*)p.out)[e] = inside ? ((const float*)p.x)[src] : p.value;
    }
}
REEF_FAMILY(pad, PadParams, REEF_EW_THREADS)

// Mirrors reef_cuda::params::ResizeParams; shapes and scales right-aligned
// (leading axes of length 1, scale 1). mode 0 nearest, 1 linear; coord and
// nearest are the codes of reef_model::resize's CoordMode and NearestMode
// (reef_cuda::launch); interp: the axes a linear resize blends along (-1: none).
struct ResizeParams {
    Hdr hdr;
    u64 x, out;
    i32 shape[REEF_MAX_RANK], in_shape[REEF_MAX_RANK];
    double scales[REEF_MAX_RANK];
    i32 mode, coord, nearest;
    i32 interp[2];
    u32 total;
};

// reef_model::resize::CoordMode::source, in f64 like the reference.
__device__ __forceinline__ double reef_resize_source(i32 coord, i32 y, i32 len_in, i32 len_out, double s) {
    const double yd = (double)y, li = (double)len_in;
    const double resized = s * li;
    switch (coord) {
    case 0: return (yd + 0.5) / s - 0.5;
    case 1: {
        const double adjustment = (double)len_out / resized;
        const double center = li / 2.0;
        return center * (1.0 - adjustment) + (yd + 0.5) / s - 0.5;
    }
    case 2: return resized > 1.0 ? (yd + 0.5) / s - 0.5 : 0.0;
    case 3: return resized == 1.0 ? 0.0 : yd * (li - 1.0) / (resized - 1.0);
    default: return yd / s;
    }
}

// reef_model::resize::NearestMode::index.
__device__ __forceinline__ i32 reef_resize_nearest(i32 mode, double x, i32 len) {
    const bool half = x == floor(x) + 0.5;
    double r;
    if (mode == 0) r = half ? floor(x) : round(x);
    else if (mode == 1) r = half ? ceil(x) : round(x);
    else if (mode == 2) r = floor(x);
    else r = ceil(x);
    return (i32)fmin(fmax(r, 0.0), (double)(len - 1));
}

// reef_model::resize::linear_taps.
__device__ __forceinline__ void reef_resize_taps(double x, i32 len, i32* i0, i32* i1, float* w0, float* w1) {
    const double k = floor(x), r = x - k, last = (double)(len - 1);
    *i0 = (i32)fmin(fmax(k, 0.0), last);
    *i1 = (i32)fmin(fmax(k + 1.0, 0.0), last);
    *w0 = (float)(1.0 - r);
    *w1 = (float)r;
}

__device__ __forceinline__ void resize_tile(const ResizeParams& p, u32 t) {
    const float* x = (const float*)p.x;
    REEF_EW_FOR(t, p.total, e) {
        i32 idx[REEF_MAX_RANK];
        i64 stride[REEF_MAX_RANK];
        i64 rem = e, st = 1, base = 0;
#pragma unroll
        for (int d = REEF_MAX_RANK - 1; d >= 0; --d) {
            idx[d] = (i32)(rem % p.shape[d]);
            rem /= p.shape[d];
            stride[d] = st;
            st *= p.in_shape[d];
        }
#pragma unroll
        for (int d = 0; d < REEF_MAX_RANK; ++d) {
            if (d == p.interp[0] || d == p.interp[1]) continue;
            i32 src = idx[d];
            if (p.mode == 0) {
                const double c = reef_resize_source(p.coord, idx[d], p.in_shape[d], p.shape[d], p.scales[d]);
                src = reef_resize_nearest(p.nearest, c, p.in_shape[d]);
            }
            base += (i64)src * stride[d];
        }
        float v;
        if (p.interp[0] < 0) {
            v = x[base];
        } else {
            // The innermost blended axis first (reef-exec's resize kernel).
            const int d2 = p.interp[1] < 0 ? p.interp[0] : p.interp[1];
            i32 a0, a1;
            float u0, u1;
            reef_resize_taps(reef_resize_source(p.coord, idx[d2], p.in_shape[d2], p.shape[d2], p.scales[d2]),
                             p.in_shape[d2], &a0, &a1, &u0, &u1);
            if (p.interp[1] < 0) {
                v = u0 * x[base + (i64)a0 * stride[d2]] + u1 * x[base + (i64)a1 * stride[d2]];
            } else {
                const int d1 = p.interp[0];
                i32 b0, b1;
                float w0, w1;
                reef_resize_taps(reef_resize_source(p.coord, idx[d1], p.in_shape[d1], p.shape[d1], p.scales[d1]),
                                 p.in_shape[d1], &b0, &b1, &w0, &w1);
                const i64 r0 = base + (i64)b0 * stride[d1], r1 = base + (i64)b1 * stride[d1];
                const float v0 = u0 * x[r0 + (i64)a0 * stride[d2]] + u1 * x[r0 + (i64)a1 * stride[d2]];
                const float v1 = u0 * x[r1 + (i64)a0 * stride[d2]] + u1 * x[r1 + (i64)a1 * stride[d2]];
                v = w0 * v0 + w1 * v1;
            }
        }
        ((float*)p.out)[e] = v;
    }
}
REEF_FAMILY(resize, ResizeParams, REEF_EW_THREADS)
#endif  // REEF_SET_BASE
