// reef CUDA kernels: shared definitions. Self-contained (NVRTC builtins only).
// Every kernel family is a __device__ tile function `NAME_tile(params, tile)`
// wrapped twice by REEF_FAMILY: NAME_rt (one block per tile, no flag checks)
// and NAME_be (one block per tile that checks the lane's preemption flag at
// entry: a direct launch; or, for padding launches and the kernels they
// touched, persistent blocks that claim tiles from a cursor, checking the
// flag before every claim; GEMM tiles also between K steps,
// REEF_FAMILY_MB). Both variants run the same tile code, so their results are
// bit-identical (the module is compiled with --fmad=false: no contraction
// differences between the two inlining sites).

typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned char u8;
typedef unsigned short u16;

#define REEF_MAX_RANK 6
#define REEF_EW_THREADS 256
#define REEF_EW_PER_THREAD 4
#define REEF_EW_TILE (REEF_EW_THREADS * REEF_EW_PER_THREAD)
#define REEF_ROW_THREADS 256
#define REEF_GEMM_THREADS 128    // 64 x 64 GEMM tiles (CfgM)
#define REEF_GEMM_L_THREADS 256  // 128 x 128 GEMM tiles (CfgL)

// Mirrors reef_cuda::params::Hdr (64 bytes).
struct Hdr {
    u64 flag;      // device i32: the lane's preemption flag (BE only)
    u64 done;      // device u32 pair: [0] tiles (RT: blocks) done, [1] BE claim cursor
                   // (direct BE launches with a told word: blocks left)
    u64 progress;  // device u32: the context's progress word
    u64 guard;     // padding launches: the padded RT kernel's done counter; else 0
    u32 kernel_index;
    u32 tiles;
    u32 guard_tiles;  // padding: the padded RT kernel's block count; other BE launches: REEF_DIRECT or 0
    u32 budget_ns;    // padding: a block claims no tile after this long (0: no limit)
    u64 told;      // direct BE launches: the lane's host-mapped told word (u32), or 0
    u32 seq;       // the launch's number on its lane, written to `told` by the last block out
    u32 spare;
};

// `guard_tiles` of a BE launch that is not padding (guard == 0): a direct
// launch (the host decides). Block b runs tile b, with no claim cursor and
// no done count; a block that does not run its tile (flag up at entry)
// marks the kernel aborted, and the kernel runs again from its first tile
// (Lane::resume). The persistent claim loop put an atomic claim behind a
// flag load in series before each tile and counted each block done behind
// a fence at its end: direct launches made BE 2-8% faster at batch 1
// (session 5, runs 1-2 on the H200). Kernels of more than one wave run direct
// too (CudaOptions::be_direct_all): blocks dispatched after the flag went up
// leave at their entry check (session 6, run 1: BE over RT 1-2 points lower
// at batch 8; a static grid-stride assignment of persistent blocks had been
// slower, session 5 run 3). Padding launches, and later launches of a
// kernel they touched, keep the cursor (padding work is finished by the
// next launch, never redone).
#define REEF_DIRECT 1u

// Activation codes (mirror reef_cuda::params::act_code).
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_CLIP 2
#define ACT_GELU 3
#define ACT_SIGMOID 4
#define ACT_TANH 5
#define ACT_LEAKY_RELU 6
#define ACT_ELU 7
#define ACT_SELU 8
#define ACT_CELU 9
#define ACT_HARD_SIGMOID 10
#define ACT_HARD_SWISH 11
#define ACT_SOFTPLUS 12
#define ACT_SOFTSIGN 13
#define ACT_THRESHOLDED_RELU 14
#define ACT_GELU_TANH 15
#define ACT_MISH 16

__device__ __forceinline__ float reef_inf() { return __int_as_float(0x7f800000); }

// ln(1 + e^x) without overflow (reef_model::op::softplus).
__device__ __forceinline__ float reef_softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

// lo and hi carry the activation's parameters (Clip: bounds; LeakyRelu, Elu,
// Celu, ThresholdedRelu: alpha in lo; Selu: alpha, gamma; HardSigmoid:
// alpha, beta), as reef_model::Act::apply defines them.
__device__ __forceinline__ float reef_act(float x, i32 kind, float lo, float hi) {
    switch (kind) {
    case ACT_RELU: return fmaxf(x, 0.0f);
    case ACT_CLIP: return fminf(fmaxf(x, lo), hi);
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x / 1.41421353816986083984375f));
    case ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case ACT_TANH: return tanhf(x);
    case ACT_LEAKY_RELU: return x < 0.0f ? lo * x : x;
    case ACT_ELU: return x < 0.0f ? lo * expm1f(x) : x;
    case ACT_SELU: return x > 0.0f ? hi * x : hi * (lo * expm1f(x));
    case ACT_CELU: return fmaxf(x, 0.0f) + fminf(lo * expm1f(x / lo), 0.0f);
    case ACT_HARD_SIGMOID: return fminf(fmaxf(lo * x + hi, 0.0f), 1.0f);
    case ACT_HARD_SWISH: return x * fminf(fmaxf(x / 6.0f + 0.5f, 0.0f), 1.0f);
    case ACT_SOFTPLUS: return reef_softplus(x);
    case ACT_SOFTSIGN: return x / (1.0f + fabsf(x));
    case ACT_THRESHOLDED_RELU: return x > lo ? x : 0.0f;
    case ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.7978846f * (x + 0.044715f * (x * x * x))));
    case ACT_MISH: return x * tanhf(reef_softplus(x));
    default: return x;
    }
}

// The GEMM epilogue's activation: none, ReLU and Clip inline, every other
// kind through one out-of-line copy of reef_act. A GEMM thread applies the
// activation to each of its 32-64 accumulator elements in a fully unrolled
// loop, and reef_act inlined there (its switch, erf, exp and tanh per
// element) made matmul_tc_rt 37,680 SASS instructions: a block fetched
// most of them cold, and a small matmul (BERT's 12 x [128 x 128 x 64]
// attention products, 4 K steps) spent its time waiting for instructions
// (ncu, session 13: "no instruction" 6.9 of 13.6 cycles per issue, 26 us).
// The same arithmetic either way: results are bit-identical.
__device__ __noinline__ float reef_act_call(float x, i32 kind, float lo, float hi) {
    return reef_act(x, kind, lo, hi);
}
__device__ __forceinline__ float reef_act_gemm(float x, i32 kind, float lo, float hi) {
    switch (kind) {
    case ACT_NONE: return x;
    case ACT_RELU: return fmaxf(x, 0.0f);
    case ACT_CLIP: return fminf(fmaxf(x, lo), hi);
    default: return reef_act_call(x, kind, lo, hi);
    }
}

// Called by every thread of an RT block (one tile per block) of a tracked
// launch (hdr.done != 0: the task's last kernel, and RT kernels that padding
// follows): counts the block done; the last block of the grid publishes
// progress = index + 1. Untracked RT launches skip it (no fence, no atomic):
// nothing reads their counters, and the lane's events say when they retired.
__device__ __forceinline__ void reef_finish(const Hdr& h) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        u32 prev = atomicAdd((u32*)h.done, 1u);
        if (prev + 1u == gridDim.x) {
            __threadfence();
            *(volatile u32*)h.progress = h.kernel_index + 1u;
        }
    }
}

#define REEF_NO_TILE 0xffffffffu

__device__ __forceinline__ u64 reef_now() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// The drain probe (compiled only with REEF_NVRTC_DEFINES=REEF_DRAIN_PROBE,
// src/probe.rs): where a preemption's device time goes, as histograms in a
// device buffer whose address the host writes into each module's
// `reef_probe_buf`. Words: [0] the device time of the relay's latest raise
// (written before its flag writes), [1] the latest exit of a block that
// left with its flag up, then REEF_PROBE_SERIES histograms of
// REEF_PROBE_BUCKETS u32 counts, REEF_PROBE_BUCKET_NS wide (the last one
// counts everything beyond): 0 drain (per raise, its last flagged block out,
// recorded at the next raise), 1 notice (a block saw the flag: at a K-step
// check, a claim or a direct block's entry), 2 exit (a block left with the
// flag up), 3 step (at a K-step stop, the time since the block's previous
// check), 4 ran out (as 2, for blocks that never saw the flag: their tiles
// ran to their ends), 5 late start (as 4, for those of them that started
// after the raise: they read the flag down at their entry), and 6-9 as 4 by
// where the block's last GEMM item was at the raise (REEF_PROBE_MARK): 6 in
// its K loop (its last steps ran without another check), 7 past the loop,
// publishing its split-K partial or summing the partials, 8 in its epilogue
// or leaving, 9 no GEMM item (the other families); and for blocks that
// leave with their flag down after a GEMM item that reached its epilogue,
// how long 10 its split-K part (partial, arrival, sum) and 11 its epilogue
// and its way out took. Times are from
// the raise; only relayed raises set it
// (REEF_RAISE=relay or relay-once). The probe's own loads, stores and atomics perturb what
// it measures a little; it is a diagnostic, not a build to serve with.
#ifdef REEF_DRAIN_PROBE
#define REEF_PROBE_SERIES 12
#define REEF_PROBE_BUCKETS 256
#define REEF_PROBE_BUCKET_NS 250
__device__ u64 reef_probe_buf;
__device__ __forceinline__ void reef_probe_add(u32 series, u64 ns) {
    u64* w = (u64*)reef_probe_buf;
    if (w == 0) return;
    const u64 b = min(ns / REEF_PROBE_BUCKET_NS, (u64)(REEF_PROBE_BUCKETS - 1));
    atomicAdd((u32*)(w + 2) + series * REEF_PROBE_BUCKETS + b, 1u);
}
// Records `now` less the latest raise in `series` (nothing before a raise).
__device__ __forceinline__ void reef_probe_since(u32 series, u64 now) {
    u64* w = (u64*)reef_probe_buf;
    if (w == 0) return;
    const u64 r = *(volatile u64*)w;
    if (r != 0 && now >= r) reef_probe_add(series, now - r);
}
// Whether the block's thread 0 saw its flag (it alone reads and writes it).
__device__ __forceinline__ u32& reef_probe_seen() {
    __shared__ u32 seen;
    return seen;
}
// The block's start (thread 0).
__device__ __forceinline__ u64& reef_probe_start() {
    __shared__ u64 start;
    return start;
}
// The block's GEMM item marks (thread 0): [0] its K loop done, [1] its
// split-K part done (0: not yet, or no GEMM item).
__device__ __forceinline__ u64* reef_probe_marks() {
    __shared__ u64 marks[2];
    return marks;
}
// A block's thread 0 saw its flag.
__device__ __forceinline__ void reef_probe_notice(u64 now) {
    reef_probe_seen() = 1u;
    reef_probe_since(1, now);
}
// A block leaving (thread 0, after its last tile): an exit, if its flag is up.
__device__ __forceinline__ void reef_probe_exit(const u64 flag) {
    u64* w = (u64*)reef_probe_buf;
    if (w == 0) return;
    const u64 now = reef_now();
    if (*(volatile const i32*)flag == 0) {
        const u64* m = reef_probe_marks();
        if (m[0] != 0 && m[1] != 0) {
            reef_probe_add(10, m[1] - m[0]);
            reef_probe_add(11, now - m[1]);
        }
        return;
    }
    reef_probe_since(2, now);
    if (reef_probe_seen() == 0u) {
        reef_probe_since(4, now);
        const u64 r = *(volatile u64*)w;
        if (reef_probe_start() > r) reef_probe_since(5, now);
        const u64* m = reef_probe_marks();
        const u32 at = m[0] == 0 ? 9u : r < m[0] ? 6u : (m[1] == 0 || r < m[1]) ? 7u : 8u;
        reef_probe_since(at, now);
    }
    atomicMax(w + 1, now);
}
// The relay, about to raise: closes the previous raise's drain, stamps this one.
__device__ __forceinline__ void reef_probe_raise() {
    u64* w = (u64*)reef_probe_buf;
    if (w == 0) return;
    const u64 last = atomicExch(w + 1, 0ull);
    const u64 r = *(volatile u64*)w;
    if (r != 0 && last >= r) reef_probe_add(0, last - r);
    *(volatile u64*)w = reef_now();
    __threadfence();
}
#define REEF_PROBE_NOTICE() reef_probe_notice(reef_now())
#define REEF_PROBE_START()                  \
    if (threadIdx.x == 0) {                 \
        reef_probe_seen() = 0u;             \
        reef_probe_start() = reef_now();    \
        reef_probe_marks()[0] = 0;          \
        reef_probe_marks()[1] = 0;          \
    }
// Mark 0 (K loop done; clears mark 1) or 1 (split-K part done).
#define REEF_PROBE_MARK(i)                                 \
    if (threadIdx.x == 0) {                                \
        reef_probe_marks()[i] = reef_now();                \
        if ((i) == 0) reef_probe_marks()[1] = 0;           \
    }
#define REEF_PROBE_EXIT(h) \
    if (threadIdx.x == 0) reef_probe_exit((h).flag)
#else
#define REEF_PROBE_NOTICE() ((void)0)
#define REEF_PROBE_START() ((void)0)
#define REEF_PROBE_MARK(i) ((void)0)
#define REEF_PROBE_EXIT(h) ((void)0)
#endif

// Set in a BE kernel's done counter by a block that abandoned a tile midway
// (GEMM tiles watch the flag between K steps): the done count can then never
// equal the tile count, so the kernel never publishes progress, and
// Lane::resume runs it again from its first tile (kernels are idempotent; an
// abandoned tile wrote nothing).
#define REEF_ABORTED 0x80000000u

// BE blocks claim tiles from the kernel's cursor (thread 0, before every
// tile): none once the lane's flag is up, or, for padding launches, before
// the task's previous kernel completed, once the padded RT kernel completed
// or once the block's budget ran out. A tile is claimed only after these
// checks, so a claim never takes a tile that will not run. (Issuing the
// cursor's atomic together with the flag and progress loads, and giving up a
// tile claimed at a raised flag, saved nothing measurable on the H100, run 20.)
//
// Ordinary launches need no progress check: a lane runs a task's kernels in
// order, a kernel stops short only while the flag is up, and the flag comes
// down only after the lane went idle, so a kernel that starts with the flag
// down follows a kernel that completed.
__device__ __forceinline__ u32 reef_claim(const Hdr& h, u64 t0) {
    // Both loads are issued before either is tested (one memory latency).
    const i32 flag = *(volatile const i32*)h.flag;
    if (h.guard != 0) {
        const u32 progress = *(volatile const u32*)h.progress;
        if (flag != 0) REEF_PROBE_NOTICE();
        if (flag != 0 || progress < h.kernel_index) return REEF_NO_TILE;
        if (*(volatile const u32*)h.guard >= h.guard_tiles) return REEF_NO_TILE;
        if (h.budget_ns != 0 && reef_now() - t0 >= (u64)h.budget_ns) return REEF_NO_TILE;
    } else if (flag != 0) {
        REEF_PROBE_NOTICE();
        return REEF_NO_TILE;
    }
    return atomicAdd((u32*)h.done + 1, 1u);
}

// A direct BE block's tile (blockIdx.x), or REEF_NO_TILE once the flag is
// up. A direct launch keeps no done count: block 0 publishes progress =
// index at entry (the kernels before it completed, by the ordering argument
// above), and the host knows the kernel completed once its launch retired
// without REEF_ABORTED (CudaTaskContext::exact_progress).
__device__ __forceinline__ u32 reef_enter(const Hdr& h) {
    const i32 flag = *(volatile const i32*)h.flag;
    if (flag != 0) {
        REEF_PROBE_NOTICE();
        return REEF_NO_TILE;
    }
    if (blockIdx.x == 0) atomicMax((u32*)h.progress, h.kernel_index);
    return blockIdx.x;
}

// A direct BE block on its way out, once every thread of it left its tile
// (thread 0): counts the block out in the claim cursor's word (unused by
// direct launches), and the grid's last block out writes the launch's number
// to the lane's told word in host memory (a posted PCIe write). The host then
// knows the kernel has left the SMs without asking the stream
// (CudaLane::drained), whether the flag stopped it or it ran to its end.
// One returning atomic per block, at its end.
__device__ __forceinline__ void reef_tell(const Hdr& h) {
    if (atomicAdd((u32*)h.done + 1, 1u) + 1u == gridDim.x) *(volatile u32*)h.told = h.seq;
}

// Called by every thread of a BE block when it claims no more tiles: adds the
// block's completed tiles; the block that completes the kernel's last tile
// publishes progress = index + 1 (atomicMax: never moves progress back).
__device__ __forceinline__ void reef_be_finish(const Hdr& h, u32 mine) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0 && mine != 0u) {
        u32 prev = atomicAdd((u32*)h.done, mine);
        if (prev + mine == h.tiles) {
            __threadfence();
            atomicMax((u32*)h.progress, h.kernel_index + 1u);
        }
    }
}

// The two entry points of a family, with their launch bounds. RT_TILE runs
// tile blockIdx.x; BE_TILE runs tile t and is false when the tile was
// abandoned (a GEMM tile that saw the flag between K steps), which marks the
// kernel and stops the block. A direct BE block that does not run its tile
// (flag up at entry) marks the kernel too.
#define REEF_ENTRIES(NAME, PT, RT_BOUNDS, BE_BOUNDS, RT_TILE, BE_TILE)                \
    extern "C" __global__ void RT_BOUNDS NAME##_rt(const PT p) {                    \
        RT_TILE;                                                                    \
        if (p.hdr.done != 0) reef_finish(p.hdr);                                    \
    }                                                                               \
    extern "C" __global__ void BE_BOUNDS NAME##_be(const PT p) {                    \
        __shared__ u32 reef_next;                                                   \
        const u64 t0 = (threadIdx.x == 0 && p.hdr.budget_ns != 0u) ? reef_now() : 0; \
        const bool direct = p.hdr.guard == 0 && p.hdr.guard_tiles == REEF_DIRECT;   \
        u32 mine = 0;                                                               \
        REEF_PROBE_START();                                                         \
        for (u32 it = 0;; ++it) {                                                   \
            if (threadIdx.x == 0)                                                   \
                reef_next = !direct ? reef_claim(p.hdr, t0)                         \
                                    : (it == 0 ? reef_enter(p.hdr) : REEF_NO_TILE); \
            __syncthreads();                                                        \
            const u32 t = reef_next;                                                \
            if (t >= p.hdr.tiles) {                                                 \
                if (direct && it == 0 && threadIdx.x == 0)                          \
                    atomicOr((u32*)p.hdr.done, REEF_ABORTED);                       \
                break;                                                              \
            }                                                                       \
            if (!(BE_TILE)) {                                                       \
                if (threadIdx.x == 0) atomicOr((u32*)p.hdr.done, REEF_ABORTED);      \
                break;                                                              \
            }                                                                       \
            ++mine;                                                                 \
            __syncthreads();                                                        \
        }                                                                           \
        if (!direct) reef_be_finish(p.hdr, mine);                                   \
        else if (p.hdr.told != 0 && threadIdx.x == 0) reef_tell(p.hdr);             \
        REEF_PROBE_EXIT(p.hdr);                                                     \
    }

// Families whose `void NAME_tile(p, t)` always runs a tile to its end.
#define REEF_FAMILY_LB(NAME, PT, BOUNDS) \
    REEF_ENTRIES(NAME, PT, BOUNDS, BOUNDS, NAME##_tile(p, blockIdx.x), (NAME##_tile(p, t), true))
#define REEF_FAMILY(NAME, PT, THREADS) REEF_FAMILY_LB(NAME, PT, __launch_bounds__(THREADS))

// GEMM families: `template <bool BE> bool NAME_tile(p, t)`, whose BE
// instantiation stops between K steps once the flag is up (returns false:
// nothing written); registers budgeted for MINB_RT / MINB_BE resident blocks
// per SM (a BE tile loop and its exit paths may need more registers than the
// RT variant).
#define REEF_FAMILY_MB2(NAME, PT, THREADS, MINB_RT, MINB_BE)                               \
    REEF_ENTRIES(NAME, PT, __launch_bounds__(THREADS, MINB_RT), __launch_bounds__(THREADS, MINB_BE), \
                 NAME##_tile<false>(p, blockIdx.x), NAME##_tile<true>(p, t))
#define REEF_FAMILY_MB(NAME, PT, THREADS, MINB) REEF_FAMILY_MB2(NAME, PT, THREADS, MINB, MINB)

// Holds a stream for `ns` nanoseconds (one thread): launched ahead of a run
// so that every kernel of the run is queued before the first one starts,
// which times the device alone, without the host's launch rate.
#if defined(REEF_SET_BASE)
extern "C" __global__ void reef_hold(u64 ns) {
    const u64 t0 = reef_now();
    while (reef_now() - t0 < ns) __nanosleep(1000);
}

// The preemption relay (`REEF_RAISE=relay`, src/relay/): one thread polls a
// command word in host-mapped memory and raises the lane flags it names, so
// that a raise is a host store instead of a driver call. The command: bits
// 0-15 and 48-63 hold the same sequence number (a read torn by a concurrent
// host store never matches), bits 16-47 the mask of `flags` to raise. The
// state words (host-mapped): [0] the phase (1 running, 2 leaving, 3 gone),
// [1] the last sequence number served, written after its flags are visible.
// It runs `life_ns` (or until `quit` is set, or with `once` until it has
// served a raise) and then says it is leaving, serves what the host posted
// before that, and says it is gone.
#define REEF_RELAY_LANES 32
struct RelayParams {
    u64 cmd;
    u64 quit;
    u64 state;
    u64 life_ns;
    u64 once;  // nonzero: leave after the first raise served
    u64 flags[REEF_RELAY_LANES];
};

__device__ __forceinline__ u32 reef_relay_serve(const RelayParams& r, u32 last) {
    u64 c = *(volatile u64*)r.cmd;
    while ((u32)(c & 0xffffu) != (u32)(c >> 48)) c = *(volatile u64*)r.cmd;
    const u32 seq = (u32)(c & 0xffffu);
    if (seq == last) return last;
#ifdef REEF_DRAIN_PROBE
    reef_probe_raise();
#endif
    const u32 mask = (u32)(c >> 16);
    for (u32 i = 0; i < REEF_RELAY_LANES; ++i)
        if ((mask >> i) & 1u) *(volatile u32*)r.flags[i] = 1u;
    __threadfence_system();
    ((volatile u32*)r.state)[1] = seq;
    __threadfence_system();
    return seq;
}

extern "C" __global__ void __launch_bounds__(32) reef_relay(const RelayParams r) {
    if (threadIdx.x != 0) return;
    volatile u32* phase = (volatile u32*)r.state;
    *phase = 1u;
    __threadfence_system();
    const u64 t0 = reef_now();
    u32 last = 0;
    for (u32 i = 0;; ++i) {
        const u32 before = last;
        last = reef_relay_serve(r, last);
        if (r.once != 0u && last != before) break;
        if (reef_now() - t0 >= r.life_ns) break;
        if ((i & 63u) == 0 && *(volatile u32*)r.quit != 0u) break;
        __nanosleep(128);
    }
    *phase = 2u;
    __threadfence_system();
    reef_relay_serve(r, last);
    *phase = 3u;
    __threadfence_system();
}
#endif

// Deterministic block reductions (every thread gets the same bits: the xor
// butterfly adds the same pairs in every lane, and IEEE + is commutative).
// Sum / max over aligned groups of W lanes (W a power of two up to 32; every
// lane of the warp takes part).
template <int W = 32>
__device__ __forceinline__ float reef_warp_sum(float v) {
#pragma unroll
    for (int o = W / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <int W = 32>
__device__ __forceinline__ float reef_warp_max(float v) {
#pragma unroll
    for (int o = W / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Mirrors reef_cuda::params::PrologueParams: a softmax prologue (scale, then
// mask), shared by the softmax and attention kernels.
struct Prologue {
    i32 scale_op;  // 0 none, 1 x * scale, 2 x / scale
    float scale;
    i32 mask_div, mask_mod, mask_ld, mask_cs;  // mask (r, j) at ((r / div) % mod) * ld + j * cs
};
// x after the scale (the same f32 operation as the separate Mul / Div kernel).
__device__ __forceinline__ float reef_pre_scale(const Prologue& p, float x) {
    if (p.scale_op == 1) return x * p.scale;
    if (p.scale_op == 2) return x / p.scale;
    return x;
}
// Offset of softmax row r's mask row.
__device__ __forceinline__ i64 reef_pre_mrow(const Prologue& p, i64 r) {
    return r / p.mask_div % p.mask_mod * (i64)p.mask_ld;
}
// `sm` holds 32 floats; callable repeatedly (guards its own reuse).
__device__ __forceinline__ float reef_block_sum(float v, float* sm) {
    v = reef_warp_sum(v);
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (l == 0) sm[w] = v;
    __syncthreads();
    v = (l < nw) ? sm[l] : 0.0f;
    return reef_warp_sum(v);
}
__device__ __forceinline__ float reef_nan() { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ float reef_block_max(float v, float* sm) {
    v = reef_warp_max(v);
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (l == 0) sm[w] = v;
    __syncthreads();
    v = (l < nw) ? sm[l] : -reef_inf();
    return reef_warp_max(v);
}

// Copies one element of `esz` bytes (1, 2, 4 or 8).
__device__ __forceinline__ void reef_copy_elem(u64 dst, u64 src, i32 esz) {
    switch (esz) {
    case 1: *(u8*)dst = *(const u8*)src; break;
    case 2: *(u16*)dst = *(const u16*)src; break;
    case 4: *(u32*)dst = *(const u32*)src; break;
    default: *(u64*)dst = *(const u64*)src; break;
    }
}
__device__ __forceinline__ void reef_zero_elem(u64 dst, i32 esz) {
    switch (esz) {
    case 1: *(u8*)dst = 0; break;
    case 2: *(u16*)dst = 0; break;
    case 4: *(u32*)dst = 0; break;
    default: *(u64*)dst = 0; break;
    }
}
