// A preemption flag in host-mapped pinned memory against one in device
// memory (issue 3's host part), on its own, outside reef:
//   1. one thread's dependent flag loads: the latency of each read;
//   2. a host/device ping-pong through two mapped words: how soon a host
//      store reaches a polling kernel and back;
//   3. what an entry check (and a per-step check) costs a kernel of many
//      short blocks, device flag against mapped flag;
//   4. preemption from the host's side: a busy low-priority kernel whose
//      blocks check the flag, raised by a stream write on a high-priority
//      stream (device flag) or by a plain host store (mapped flag), timed
//      from the raise to the stream idle as the host sees it.
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
    volatile int* hflag = hmem;
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

    // 4.
    {
        CUstream hi_d = (CUstream)hi;
        int* sink;
        CK(cudaMalloc(&sink, 4));
        for (int which = 0; which < 2; ++which) {
            std::vector<double> lat;
            for (int r = 0; r < 60; ++r) {
                CK(cudaMemset(dflag, 0, 4));
                *hflag = 0;
                __sync_synchronize();
                CK(cudaDeviceSynchronize());
                const int* f = which ? hflag_d : dflag;
                // 132 SMs x 8 blocks x 4 waves, steps of 2 us, 40 steps (80 us a block).
                busy<<<132 * 8 * 4, 128, 0, lo>>>(f, 40, 2000, sink);
                CK(cudaGetLastError());
                double until = now_us() + 300 + (r % 7) * 23;
                while (now_us() < until) {
                }
                double t0 = now_us();
                if (which) {
                    *hflag = 1;
                    __sync_synchronize();
                } else {
                    CKD(cuStreamWriteValue32(hi_d, (CUdeviceptr)dflag, 1, 0));
                }
                cudaError_t q;
                while ((q = cudaStreamQuery(lo)) == cudaErrorNotReady) {
                }
                CK(q);
                double t1 = now_us();
                if (r >= 10) lat.push_back(t1 - t0);
            }
            printf("preemption (raise -> BE stream idle, host clock), %s flag: p50 %.1f p99 %.1f max %.1f us\n",
                   which ? "mapped, host store" : "device, stream write", pct(lat, 0.5),
                   pct(lat, 0.99), pct(lat, 1.0));
        }
    }
    CK(cudaDeviceSynchronize());
    printf("ok\n");
    return 0;
}
