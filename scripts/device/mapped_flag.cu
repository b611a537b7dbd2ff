// A preemption flag in host-mapped pinned memory against one in device
// memory (issue 3's host part), on its own, outside reef:
//   1. one thread's dependent flag loads: the latency of each read;
//   2. a host/device ping-pong through two mapped words: how soon a host
//      store reaches a polling kernel and back;
//   3. what an entry check (and a per-step check) costs a kernel of many
//      short blocks, device flag against mapped flag;
//   4. preemption from the host's side: a busy low-priority kernel whose
//      blocks check a device-memory flag, raised by a stream write at the
//      raise, by a front-end relay (a stream wait on a mapped word, armed
//      beforehand) or by a relay kernel polling a mapped word, timed from
//      the raise to the stream idle as the host sees it; and what a pending
//      relay costs a kernel of many short blocks;
//   5. the host told by the last BE block to leave (a count in device
//      memory, a posted write to a mapped word) against cudaStreamQuery.
// (Session 22, call 1 ran the first version, whose test 4 had BE blocks
// read a mapped flag directly: 4.1 ms from raise to idle.)
// Build and run on the GPU host: nvcc -O2 -arch=sm_90 mapped_flag.cu -lcuda
#include <cuda.h>
#include <cuda_runtime.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                              \
    do {                                                                                   \
        cudaError_t e = (x);                                                               \
        if (e != cudaSuccess) {                                                            \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)
#define CKD(x)                                                                  \
    do {                                                                        \
        CUresult r = (x);                                                       \
        if (r != CUDA_SUCCESS) {                                                \
            const char* s = nullptr;                                            \
            cuGetErrorString(r, &s);                                            \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, s ? s : "?"); \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

typedef unsigned long long u64;

__device__ __forceinline__ u64 now_ns() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ int ld_vol(const int* p) {
    int v;
    asm volatile("ld.volatile.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// 1. n dependent loads (each address depends on the value before).
__global__ void chase(const int* flag, int n, u64* out) {
    int v = 0;
    u64 t0 = now_ns();
    for (int i = 0; i < n; ++i) v = ld_vol(flag + (v & 0x40000000));
    u64 t1 = now_ns();
    out[0] = t1 - t0;
    out[1] = (u64)v;
}

// 2. The device side of the ping-pong: waits for a == i, answers b = i.
__global__ void pong(const int* a, volatile int* b, int n, int* failed) {
    for (int i = 1; i <= n; ++i) {
        u64 t0 = now_ns();
        while (ld_vol(a) != i) {
            if (now_ns() - t0 > 2000000000ull) {
                *failed = i;
                return;
            }
        }
        *b = i;
        __threadfence_system();
    }
}

// 3. Many short blocks: thread 0 checks the flag at entry (and, with steps >
// 1, before every step), like reef's BE kernels; 1024 floats per step.
__global__ void blocks(const int* flag, const float* x, float* y, int steps) {
    __shared__ int stop;
    for (int s = 0; s < steps; ++s) {
        if (threadIdx.x == 0) stop = ld_vol(flag);
        __syncthreads();
        if (stop) return;
        size_t base = ((size_t)blockIdx.x * steps + s) * 1024;
        for (int k = 0; k < 4; ++k) {
            size_t i = base + k * 256 + threadIdx.x;
            y[i] = x[i] * 1.5f + 0.25f;
        }
        __syncthreads();
    }
}

// 4. A busy BE kernel: every block spins `step_ns` per step for `steps`
// steps, checking the flag at entry and before every step.
__global__ void busy(const int* flag, int steps, u64 step_ns, int* sink) {
    __shared__ int stop;
    float acc = threadIdx.x;
    for (int s = 0; s < steps; ++s) {
        if (threadIdx.x == 0) stop = ld_vol(flag);
        __syncthreads();
        if (stop) return;
        u64 t0 = now_ns();
        while (now_ns() - t0 < step_ns) acc = acc * 1.0001f + 0.5f;
        __syncthreads();
    }
    if (acc == -1.0f) *sink = 1;
}

// The relay kernel: one thread polls the mapped word (a ~1 us PCIe read, then
// a 256 ns sleep) until it is up, then raises the device flag; gives up after
// `limit_ns`.
__global__ void relay_k(const int* word, int* dflag, u64 limit_ns) {
    if (threadIdx.x != 0) return;
    u64 t0 = now_ns();
    while (ld_vol(word) == 0) {
        if (now_ns() - t0 > limit_ns) return;
        __nanosleep(256);
    }
    *(volatile int*)dflag = 1;
    __threadfence();
}

// 5. As `busy`, and every block counts itself in `live` (device memory) at
// entry and out at exit; the block that leaves last while the flag is up
// tells the host in a mapped word (a posted write over PCIe), so the host
// learns that no BE block is left on the SMs without waiting for the
// stream's completion.
__global__ void busy_counted(const int* flag, int steps, u64 step_ns, int* live,
                             volatile int* told, int seq, int* sink) {
    __shared__ int stop;
    if (threadIdx.x == 0) atomicAdd(live, 1);
    float acc = threadIdx.x;
    for (int s = 0; s < steps; ++s) {
        if (threadIdx.x == 0) stop = ld_vol(flag);
        __syncthreads();
        if (stop) break;
        u64 t0 = now_ns();
        while (now_ns() - t0 < step_ns) acc = acc * 1.0001f + 0.5f;
        __syncthreads();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicSub(live, 1) == 1 && ld_vol(flag) != 0) {
            *told = seq;
            __threadfence_system();
        }
    }
    if (acc == -1.0f) *sink = 1;
}

static double pct(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    size_t i = std::min(v.size() - 1, (size_t)(p * (v.size() - 1) + 0.5));
    return v[i];
}
static double now_us() {
    return std::chrono::duration<double, std::micro>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

int main() {
    CK(cudaSetDevice(0));
    CK(cudaFree(0));
    int least, greatest;
    CK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    cudaStream_t lo, hi;
    CK(cudaStreamCreateWithPriority(&lo, cudaStreamNonBlocking, least));
    CK(cudaStreamCreateWithPriority(&hi, cudaStreamNonBlocking, greatest));

    int* dflag;
    CK(cudaMalloc(&dflag, 4));
    CK(cudaMemset(dflag, 0, 4));
    int* hmem;  // [0] flag, [16] ping, [32] pong (separate 64-byte lines)
    CK(cudaHostAlloc(&hmem, 256, cudaHostAllocMapped | cudaHostAllocPortable));
    for (int i = 0; i < 64; ++i) hmem[i] = 0;
    int* hmem_d;
    CK(cudaHostGetDevicePointer(&hmem_d, hmem, 0));
    int* hflag_d = hmem_d;
    u64* out;
    CK(cudaMallocManaged(&out, 16));
    int* failed;
    CK(cudaMallocManaged(&failed, 4));
    *failed = 0;

    // 1.
    for (int which = 0; which < 2; ++which) {
        const int* f = which ? hflag_d : dflag;
        chase<<<1, 1>>>(f, 100, out);  // warm
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        chase<<<1, 1>>>(f, 2000, out);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        printf("read latency, %s flag: %.0f ns per dependent load\n",
               which ? "mapped" : "device", out[0] / 2000.0);
    }

    // 2.
    {
        const int n = 2000;
        volatile int* a = hmem + 16;
        volatile int* b = hmem + 32;
        pong<<<1, 1, 0, lo>>>(hmem_d + 16, hmem_d + 32, n, failed);
        CK(cudaGetLastError());
        std::vector<double> rt;
        bool lost = false;
        for (int i = 1; i <= n && !lost; ++i) {
            double t0 = now_us();
            *a = i;
            __sync_synchronize();
            while (*b != i) {
                if (now_us() - t0 > 3e6) {
                    lost = true;
                    break;
                }
            }
            rt.push_back(now_us() - t0);
        }
        CK(cudaStreamSynchronize(lo));
        if (lost || *failed)
            printf("ping-pong: LOST at %d (device failed at %d)\n", (int)rt.size(), *failed);
        else
            printf("ping-pong (host store -> kernel -> host), us: p50 %.2f p99 %.2f max %.2f\n",
                   pct(rt, 0.5), pct(rt, 0.99), pct(rt, 1.0));
    }

    // 3.
    {
        const int nblocks = 16384;
        for (int steps : {1, 8}) {
            size_t n = (size_t)nblocks * steps * 1024;
            float *x, *y;
            CK(cudaMalloc(&x, n * 4));
            CK(cudaMalloc(&y, n * 4));
            CK(cudaMemset(x, 0, n * 4));
            cudaEvent_t e0, e1;
            CK(cudaEventCreate(&e0));
            CK(cudaEventCreate(&e1));
            for (int which = 0; which < 2; ++which) {
                const int* f = which ? hflag_d : dflag;
                std::vector<double> ms;
                for (int r = 0; r < 21; ++r) {
                    CK(cudaEventRecord(e0, lo));
                    blocks<<<nblocks, 256, 0, lo>>>(f, x, y, steps);
                    CK(cudaGetLastError());
                    CK(cudaEventRecord(e1, lo));
                    CK(cudaEventSynchronize(e1));
                    float t;
                    CK(cudaEventElapsedTime(&t, e0, e1));
                    if (r) ms.push_back(t * 1000.0);
                }
                printf("%d blocks x %d steps of 1024 floats, %s flag: median %.1f us\n", nblocks,
                       steps, which ? "mapped" : "device", pct(ms, 0.5));
            }
            CK(cudaFree(x));
            CK(cudaFree(y));
        }
    }

    // 4. Raise -> BE stream idle on the host's clock, three ways of raising a
    // device-memory flag: (0) a stream write on a high-priority stream, the
    // host's driver call at the raise (reef's way); (1) a relay armed
    // beforehand on the GPU's front end: a stream wait on a mapped word, then
    // the stream write, the raise a host store to the word; (2) a relay
    // kernel (one warp) polling the mapped word and writing the flag, the
    // raise a host store. BE kernels read only the device flag.
    {
        CUstream hi_d = (CUstream)hi;
        cudaStream_t relay;
        CK(cudaStreamCreateWithPriority(&relay, cudaStreamNonBlocking, greatest));
        CUstream relay_d = (CUstream)relay;
        volatile int* word = hmem + 48;
        CUdeviceptr word_d = (CUdeviceptr)(hmem_d + 48);
        int* sink;
        CK(cudaMalloc(&sink, 4));
        const char* names[3] = {"stream write at the raise", "front-end relay (wait on mapped word)",
                                "relay kernel (one warp polls the mapped word)"};
        for (int which = 0; which < 3; ++which) {
            std::vector<double> lat, call;
            int done_early = 0;
            for (int r = 0; r < 60; ++r) {
                CK(cudaMemset(dflag, 0, 4));
                *word = 0;
                __sync_synchronize();
                CK(cudaDeviceSynchronize());
                if (which == 1) {
                    CKD(cuStreamWaitValue32(relay_d, word_d, 1, CU_STREAM_WAIT_VALUE_GEQ));
                    CKD(cuStreamWriteValue32(relay_d, (CUdeviceptr)dflag, 1, 0));
                } else if (which == 2) {
                    relay_k<<<1, 32, 0, relay>>>(hmem_d + 48, dflag, 20000000ull);
                    CK(cudaGetLastError());
                }
                // One wave: 16 blocks of 128 threads on each of 132 SMs, 400 steps
                // of 2 us (0.8 ms unflagged), so the drain is the raise reaching
                // the blocks and their current step (call 2's 20 waves made it
                // the dispatch of ~40000 queued blocks, about 30 us).
                busy<<<132 * 16, 128, 0, lo>>>(dflag, 400, 2000, sink);
                CK(cudaGetLastError());
                double until = now_us() + 300 + (r % 7) * 23;
                while (now_us() < until) {
                }
                if (cudaStreamQuery(lo) != cudaErrorNotReady) ++done_early;
                double t0 = now_us();
                if (which == 0) {
                    CKD(cuStreamWriteValue32(hi_d, (CUdeviceptr)dflag, 1, 0));
                } else {
                    *word = 1;
                    __sync_synchronize();
                }
                double tc = now_us();
                cudaError_t q;
                while ((q = cudaStreamQuery(lo)) == cudaErrorNotReady) {
                }
                CK(q);
                double t1 = now_us();
                if (r >= 10) {
                    lat.push_back(t1 - t0);
                    call.push_back(tc - t0);
                }
                CK(cudaStreamSynchronize(relay));
            }
            printf("preemption (raise -> BE stream idle, host clock), %s: p50 %.1f p99 %.1f max %.1f us"
                   " (the raise itself p50 %.2f us; %d of 60 kernels done before it)\n",
                   names[which], pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1.0), pct(call, 0.5),
                   done_early);
        }
        // What a polling relay warp, or a pending front-end wait, costs other
        // kernels: 16384 short blocks on the low-priority stream.
        const int nblocks = 16384;
        size_t n = (size_t)nblocks * 1024;
        float *x, *y;
        CK(cudaMalloc(&x, n * 4));
        CK(cudaMalloc(&y, n * 4));
        CK(cudaMemset(x, 0, n * 4));
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        // (Call 2 left the flag up here, so it timed blocks that left at once.)
        CK(cudaMemset(dflag, 0, 4));
        CK(cudaDeviceSynchronize());
        const char* beside[3] = {"nothing", "a pending front-end wait", "a polling relay warp"};
        for (int which = 0; which < 3; ++which) {
            std::vector<double> ms;
            for (int r = 0; r < 21; ++r) {
                *word = 0;
                __sync_synchronize();
                if (which == 1) CKD(cuStreamWaitValue32(relay_d, word_d, 1, CU_STREAM_WAIT_VALUE_GEQ));
                if (which == 2) relay_k<<<1, 32, 0, relay>>>(hmem_d + 48, sink, 20000000ull);
                CK(cudaGetLastError());
                CK(cudaEventRecord(e0, lo));
                blocks<<<nblocks, 256, 0, lo>>>(dflag, x, y, 1);
                CK(cudaGetLastError());
                CK(cudaEventRecord(e1, lo));
                CK(cudaEventSynchronize(e1));
                *word = 1;
                __sync_synchronize();
                CK(cudaStreamSynchronize(relay));
                float t;
                CK(cudaEventElapsedTime(&t, e0, e1));
                if (r) ms.push_back(t * 1000.0);
            }
            printf("16384 blocks x 1 step, device flag, beside %s: median %.1f us\n", beside[which],
                   pct(ms, 0.5));
        }
        CK(cudaMemset(dflag, 0, 4));
    }
    // 5. Raise (a stream write, as reef does) -> the last BE block's word
    // seen by the host, against -> the stream idle by cudaStreamQuery.
    {
        CUstream hi_d = (CUstream)hi;
        int *live, *sink;
        CK(cudaMalloc(&live, 4));
        CK(cudaMalloc(&sink, 4));
        volatile int* told = hmem + 56;
        std::vector<double> word_lat, idle_lat;
        int missed = 0;
        for (int r = 0; r < 60; ++r) {
            CK(cudaMemset(dflag, 0, 4));
            CK(cudaMemset(live, 0, 4));
            *told = 0;
            __sync_synchronize();
            CK(cudaDeviceSynchronize());
            busy_counted<<<132 * 16, 128, 0, lo>>>(dflag, 400, 2000, live, hmem_d + 56, r + 1, sink);
            CK(cudaGetLastError());
            double until = now_us() + 300 + (r % 7) * 23;
            while (now_us() < until) {
            }
            double t0 = now_us();
            CKD(cuStreamWriteValue32(hi_d, (CUdeviceptr)dflag, 1, 0));
            double tw = -1;
            while (now_us() - t0 < 5000) {
                if (*told == r + 1) {
                    tw = now_us();
                    break;
                }
            }
            cudaError_t q;
            while ((q = cudaStreamQuery(lo)) == cudaErrorNotReady) {
            }
            CK(q);
            double t1 = now_us();
            if (r >= 10) {
                if (tw < 0) {
                    ++missed;
                } else {
                    word_lat.push_back(tw - t0);
                }
                idle_lat.push_back(t1 - t0);
            }
        }
        if (!word_lat.empty())
            printf("raise -> last BE block's word seen by the host: p50 %.1f p99 %.1f max %.1f us "
                   "(%d of 50 never told)\n",
                   pct(word_lat, 0.5), pct(word_lat, 0.99), pct(word_lat, 1.0), missed);
        printf("raise -> stream idle (cudaStreamQuery, after the word): p50 %.1f p99 %.1f max %.1f us\n",
               pct(idle_lat, 0.5), pct(idle_lat, 0.99), pct(idle_lat, 1.0));
        CK(cudaMemset(dflag, 0, 4));
    }
    CK(cudaDeviceSynchronize());
    printf("ok\n");
    return 0;
}
