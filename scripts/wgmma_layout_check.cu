// Standalone check of the wgmma TF32 layout reef's conv_wg families use:
// A (64 x K) from registers (mma.m16n8k8-style fragments per warp), B
// (N x K, K-major) from shared memory in the no-swizzle core-matrix layout
// through a descriptor. Prints the relative L2 error against a double
// reference for the four combinations of LBO/SBO order and A fragment order;
// only variant 0 (the layout reef uses) should be near 1e-7. Then the layout
// of reef's matmul_wg families: A (64 x K) from shared memory too, in the
// same K-major core-matrix layout as B, through its own descriptor, in an
// m64n128k8 wgmma (variant "ss", and "ss swapped" with LBO/SBO swapped in
// both descriptors, which should fail).
//
//   nvcc -gencode arch=compute_90a,code=sm_90a -O2 -o wgmma_layout_check scripts/wgmma_layout_check.cu
//   ./wgmma_layout_check        # on an sm_90 GPU (H100 / H200)
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cmath>
#include <vector>
typedef uint32_t u32; typedef uint64_t u64;
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e), __FILE__, __LINE__); exit(1);} } while (0)

__device__ __forceinline__ u64 desc(const void* p, u32 lbo, u32 sbo) {
    u32 a = (u32)__cvta_generic_to_shared(p);
    u64 d = 0;
    d |= (u64)((a >> 4) & 0x3FFF);
    d |= (u64)((lbo >> 4) & 0x3FFF) << 16;
    d |= (u64)((sbo >> 4) & 0x3FFF) << 32;
    return d;  // base offset 0, layout 0 (no swizzle)
}
__device__ __forceinline__ u32 tf32(float x) { u32 r; asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x)); return r; }

// D[64 x 64] (+)= A[64 x 8] * B[64 x 8]^T
__device__ __forceinline__ void wg_m64n64k8(float* d, const u32* a, u64 bd, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
        "{%32,%33,%34,%35}, %36, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(bd), "r"(acc));
}

// variant bit 0: swap LBO/SBO fields; bit 1: alternative A fragment order.
__global__ void k(const float* A, const float* B, float* D, int K, int variant) {
    __shared__ __align__(128) float bs[64 * 64];  // N=64 x K<=64, core-matrix layout
    const int t = threadIdx.x, w = t >> 5, lane = t & 31, g = lane >> 2, q = lane & 3;
    const u32 LBO = 128, SBO = (K / 4) * 128;
    for (int i = t; i < 64 * K; i += 128) {
        int n = i / K, kk = i % K;
        bs[((n / 8) * SBO + (kk / 4) * LBO) / 4 + (n % 8) * 4 + (kk % 4)] = B[n * K + kk];
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    float d[32];
    for (int i = 0; i < 32; ++i) d[i] = 0.f;
    for (int k0 = 0; k0 < K; k0 += 8) {
        u32 a[4];
        const int r = 16 * w + g;
        if (variant & 2) {
            a[0] = tf32(A[r * K + k0 + q]); a[1] = tf32(A[r * K + k0 + q + 4]);
            a[2] = tf32(A[(r + 8) * K + k0 + q]); a[3] = tf32(A[(r + 8) * K + k0 + q + 4]);
        } else {
            a[0] = tf32(A[r * K + k0 + q]); a[1] = tf32(A[(r + 8) * K + k0 + q]);
            a[2] = tf32(A[r * K + k0 + q + 4]); a[3] = tf32(A[(r + 8) * K + k0 + q + 4]);
        }
        const float* bp = bs + (k0 / 4) * LBO / 4;
        u64 bd = (variant & 1) ? desc(bp, SBO, LBO) : desc(bp, LBO, SBO);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
        wg_m64n64k8(d, a, bd, 1);
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    }
    // D fragment: d[4i + {0,1}] = (16w + g, 8i + 2q + {0,1}); d[4i + {2,3}] = row + 8.
    for (int i = 0; i < 8; ++i)
        for (int e = 0; e < 4; ++e) {
            int row = 16 * w + g + (e >> 1) * 8, col = 8 * i + 2 * q + (e & 1);
            D[row * 64 + col] = d[4 * i + e];
        }
}

// D[64 x 128] (+)= A[64 x 8] * B[128 x 8]^T, both operands from shared memory.
__device__ __forceinline__ void wg_ss_m64n128k8(float* d, u64 ad, u64 bd) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
        "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
        "%64, %65, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(ad), "l"(bd));
}

// Both operands K-major in shared memory (K = 16 per stage, as reef's GK):
// element (row r, k) at (r / 8) * SBO + (k / 4) * LBO bytes + (r % 8) * 16 +
// (k % 4) * 4. One warpgroup computes D[64 x 128] over K in steps of 16.
__global__ void k_ss(const float* A, const float* B, float* D, int K, int swap) {
    __shared__ __align__(128) float as[64 * 16], bs[128 * 16];
    const int t = threadIdx.x, w = t >> 5, lane = t & 31, g = lane >> 2, q = lane & 3;
    const u32 LBO = 128, SBO = 16 / 4 * 128;
    float d[64];
    for (int i = 0; i < 64; ++i) d[i] = 0.f;
    for (int k0 = 0; k0 < K; k0 += 16) {
        for (int i = t; i < 64 * 16; i += 128) {
            int r = i / 16, kk = i % 16;
            as[((r / 8) * SBO + (kk / 4) * LBO) / 4 + (r % 8) * 4 + (kk % 4)] = __uint_as_float(tf32(A[r * K + k0 + kk]));
        }
        for (int i = t; i < 128 * 16; i += 128) {
            int n = i / 16, kk = i % 16;
            bs[((n / 8) * SBO + (kk / 4) * LBO) / 4 + (n % 8) * 4 + (kk % 4)] = __uint_as_float(tf32(B[n * K + k0 + kk]));
        }
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
        for (int kk = 0; kk < 16; kk += 8) {
            const float* ap = as + (kk / 4) * LBO / 4;
            const float* bp = bs + (kk / 4) * LBO / 4;
            u64 ad = swap ? desc(ap, SBO, LBO) : desc(ap, LBO, SBO);
            u64 bd = swap ? desc(bp, SBO, LBO) : desc(bp, LBO, SBO);
            wg_ss_m64n128k8(d, ad, bd);
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        __syncthreads();
    }
    for (int i = 0; i < 16; ++i)
        for (int e = 0; e < 4; ++e) {
            int row = 16 * w + g + (e >> 1) * 8, col = 8 * i + 2 * q + (e & 1);
            D[row * 128 + col] = d[4 * i + e];
        }
}

static float rt(float x) {  // round to tf32 (nearest, ties away) on the host
    u32 u; memcpy(&u, &x, 4); u = (u + 0x1000u) & ~0x1FFFu; float r; memcpy(&r, &u, 4); return r;
}
int main() {
    const int K = 64;
    std::vector<float> A(64 * K), B(64 * K), D(64 * 64), R(64 * 64);
    srand(7);
    for (auto& x : A) x = rt((float)rand() / RAND_MAX * 2 - 1);
    for (auto& x : B) x = rt((float)rand() / RAND_MAX * 2 - 1);
    for (int m = 0; m < 64; ++m)
        for (int n = 0; n < 64; ++n) {
            double s = 0; for (int kk = 0; kk < K; ++kk) s += (double)A[m * K + kk] * B[n * K + kk];
            R[m * 64 + n] = (float)s;
        }
    float *dA, *dB, *dD;
    CK(cudaMalloc(&dA, A.size() * 4)); CK(cudaMalloc(&dB, B.size() * 4)); CK(cudaMalloc(&dD, D.size() * 4));
    CK(cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice));
    for (int v = 0; v < 4; ++v) {
        CK(cudaMemset(dD, 0xFF, D.size() * 4));  // NaN poison
        k<<<1, 128>>>(dA, dB, dD, K, v);
        CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(D.data(), dD, D.size() * 4, cudaMemcpyDeviceToHost));
        double num = 0, den = 0; int bad = 0;
        for (int i = 0; i < 64 * 64; ++i) {
            double e = (double)D[i] - R[i]; if (!std::isfinite(D[i])) ++bad;
            num += e * e; den += (double)R[i] * R[i];
        }
        printf("variant %d (lbo/sbo %s, A frag %s): rel L2 %.3e, non-finite %d\n", v, (v & 1) ? "swapped" : "as doc",
               (v & 2) ? "alt" : "mma-like", sqrt(num / den), bad);
    }
    // Both operands from shared memory (matmul_wg's layout).
    std::vector<float> B2(128 * K), D2(64 * 128), R2(64 * 128);
    for (auto& x : B2) x = rt((float)rand() / RAND_MAX * 2 - 1);
    for (int m = 0; m < 64; ++m)
        for (int n = 0; n < 128; ++n) {
            double s = 0; for (int kk = 0; kk < K; ++kk) s += (double)A[m * K + kk] * B2[n * K + kk];
            R2[m * 128 + n] = (float)s;
        }
    float *dB2, *dD2;
    CK(cudaMalloc(&dB2, B2.size() * 4)); CK(cudaMalloc(&dD2, D2.size() * 4));
    CK(cudaMemcpy(dB2, B2.data(), B2.size() * 4, cudaMemcpyHostToDevice));
    for (int swap = 0; swap < 2; ++swap) {
        CK(cudaMemset(dD2, 0xFF, D2.size() * 4));
        k_ss<<<1, 128>>>(dA, dB2, dD2, K, swap);
        CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(D2.data(), dD2, D2.size() * 4, cudaMemcpyDeviceToHost));
        double num = 0, den = 0; int bad = 0;
        for (int i = 0; i < 64 * 128; ++i) {
            double e = (double)D2[i] - R2[i]; if (!std::isfinite(D2[i])) ++bad;
            num += e * e; den += (double)R2[i] * R2[i];
        }
        printf("variant ss%s (A and B from shared memory, m64n128k8): rel L2 %.3e, non-finite %d\n",
               swap ? " swapped" : "", sqrt(num / den), bad);
    }
    return 0;
}
