// kernels/cuda/gemm_sm90.cu: the top of the GEMM ladder (gemm.cu has the rest): Hopper's
// warpgroup MMA. Built only for sm_90a (wgmma is not part of plain sm_90; CMakeLists.txt
// compiles this file alone with -gencode arch=compute_90a,code=sm_90a), so it runs on H100
// and H200 only; gemm_bf16_nt says so on anything else.
//
// C [M, N] = A [M, K] · B [N, K]ᵀ, bf16 operands, float32 accumulate and output: the layout of
// a linear layer (weights [out, in]), and the one wgmma reads without transposing (both
// operands K-major).
//   A block of 256 threads (2 warpgroups) computes a 128 x 128 tile of C: each warpgroup 64
//   rows with m64n128k16 (64 float32 accumulators per thread, in registers).
//   K advances 64 at a time through a ring of 3 shared-memory stages (32 KiB each) filled by
//   cp.async (16 bytes per copy, zero-filled past M, N or K), two stages in flight while the
//   tensor cores work on the third.
//   Shared memory holds each 8-row x 16-byte piece of an operand (a "core matrix": 8 rows of
//   8 elements) contiguously, the layout a descriptor without swizzling describes: element
//   (row, k) of a k16 step at (row / 8)·256 + (k / 8)·128 + (row % 8)·16 + (k % 8)·2 bytes
//   (stride byte offset 256, leading byte offset 128).
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ptx.cuh"

namespace mm::cuda {

namespace {

constexpr int kHM = 128, kHN = 128, kHK = 64, kHStages = 3;
constexpr int kHOperandBytes = kHM * kHK * 2;         // 16 KiB: one operand's k-tile (kHM == kHN)
constexpr int kHStageBytes = 2 * kHOperandBytes;      // A then B
constexpr int kHStepBytes = kHM * 16 * 2;             // one k16 step of one operand: 4 KiB
constexpr size_t kHSmemBytes = size_t(kHStages) * kHStageBytes;

__device__ __forceinline__ uint64_t descriptor(const unsigned char* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  constexpr uint64_t lbo = 128, sbo = 256;
  return uint64_t((a & 0x3FFFF) >> 4) | (lbo >> 4) << 16 | (sbo >> 4) << 32;  // swizzle bits 62-63: 0, none
}

// Shared memory written through the generic proxy (cp.async, stores) before the tensor cores
// read it through the async proxy (wgmma): each writer fences before the barrier.
__device__ __forceinline__ void fence_proxy_async() {
#if !defined(MM_CUDA_EMULATED) && defined(__CUDA_ARCH__)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_fence() {
#if !defined(MM_CUDA_EMULATED) && defined(__CUDA_ARCH__)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::wgmma_commit();
#elif defined(__CUDA_ARCH__)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::wgmma_wait(Pending);
#elif defined(__CUDA_ARCH__)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
#endif
}
// The accumulators change under the compiler's feet (the tensor cores write them between the
// issue and the wait): an empty asm that "modifies" each keeps it from caching or moving them.
__device__ __forceinline__ void fence_operands(float (&d)[64]) {
#if !defined(MM_CUDA_EMULATED) && defined(__CUDA_ARCH__)
#pragma unroll
  for (int q = 0; q < 64; ++q) asm volatile("" : "+f"(d[q])::"memory");
#else
  (void)d;
#endif
}

// d (64 x 128 per warpgroup; this thread's 64) += A (64 x 16) · B (128 x 16)ᵀ, from shared memory.
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::wgmma_bf16(d, 128, desc_a, desc_b, 1);
#elif defined(__CUDA_ARCH__)
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"  // scale-d: 1, D += A·B
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(1));
#endif
}

__global__ void __launch_bounds__(256, 2) gemm_bf16_nt_wgmma(const __nv_bfloat16* __restrict__ A,
                                                          const __nv_bfloat16* __restrict__ B, float* __restrict__ C,
                                                          int64_t M, int64_t N, int64_t K) {
  extern __shared__ __align__(128) uint8_t gemm_h_smem[];
  const int tid = threadIdx.x, wg = tid / 128, warp = tid / 32, lane = tid & 31;
  const int64_t bm = blockIdx.y * int64_t(kHM), bn = blockIdx.x * int64_t(kHN);
  // Stage s's copies: 2048 chunks of 16 bytes (8 elements), 8 per thread. Copy l of lane L in
  // warp w: operand l / 4 (A, then B), row 8w + L % 8 (+ 64 when bit 1 of l is set), chunk
  // kc = L / 8 (+ 4 when bit 0 is set) of the row's 64 elements. So 8 consecutive lanes write
  // one 128-byte core matrix (conflict-free), and the 4 lanes of a row read 64 contiguous bytes.
  const int lane8 = lane & 7, kq = lane >> 3;
  const int dst0 = (kq / 2) * kHStepBytes + (kq % 2) * 128 + warp * 256 + lane8 * 16;
  auto load = [&](int s, int64_t k0) {
    unsigned char* stage = gemm_h_smem + s * kHStageBytes + dst0;
#pragma unroll
    for (int l = 0; l < 8; ++l) {
      const int b = l >> 2, hi_k = l & 1, hi_row = (l >> 1) & 1;
      const int64_t row = (b ? bn : bm) + 8 * warp + lane8 + 64 * hi_row, k = k0 + 8 * (kq + 4 * hi_k);
      const bool in = row < (b ? N : M) && k < K;  // K % 8 == 0: a chunk is all inside or all outside
      const __nv_bfloat16* base = b ? B : A;
      ptx::cp_async16(stage + b * kHOperandBytes + hi_k * 2 * kHStepBytes + hi_row * 2048, in ? base + row * K + k : base,
                 in ? 16 : 0);
    }
  };
  float acc[64];
#pragma unroll
  for (int q = 0; q < 64; ++q) acc[q] = 0.0f;
  const int ktiles = int((K + kHK - 1) / kHK);
#pragma unroll
  for (int s = 0; s < kHStages - 1; ++s) {
    if (s < ktiles) load(s, int64_t(s) * kHK);
    ptx::cp_async_commit();  // (an empty group past the last tile keeps the count of groups regular)
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    ptx::cp_async_wait<kHStages - 2>();  // this thread's copies of tile kt have landed
    fence_proxy_async();
    __syncthreads();  // everyone's have, and every wgmma of tile kt - 1 (whose stage is refilled next) is done
    const int next = kt + kHStages - 1;
    if (next < ktiles) load(next % kHStages, int64_t(next) * kHK);
    ptx::cp_async_commit();
    const unsigned char* stage = gemm_h_smem + (kt % kHStages) * kHStageBytes;
    fence_operands(acc);
    wgmma_fence();
#pragma unroll
    for (int s = 0; s < kHK / 16; ++s)
      wgmma_m64n128k16(acc, descriptor(stage + s * kHStepBytes + wg * 64 * 32),
                       descriptor(stage + kHOperandBytes + s * kHStepBytes));
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(acc);
  }
  // acc[q] is C[64·wg + 16·(warp % 4) + g + 8·((q % 4) / 2)][8·(q / 4) + 2t + q % 2] of the tile
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int q = 0; q < 64; ++q) {
    const int64_t r = bm + 64 * wg + 16 * (warp % 4) + g + 8 * ((q % 4) / 2), c = bn + 8 * (q / 4) + 2 * t + q % 2;
    if (r < M && c < N) C[r * N + c] = acc[q];
  }
}

}  // namespace

void gemm_bf16_nt(int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, const __nv_bfloat16* B, float* C) {
  MM_CHECK(M >= 0 && N >= 0 && K >= 0 && M <= int64_t(65535) * kHM, "[cuda] gemm_bf16_nt: sizes M=", M, " N=", N,
           " K=", K, " out of range");
  MM_CHECK(K % 8 == 0, "[cuda] gemm_bf16_nt: K=", K, " must be a multiple of 8 (16-byte rows for cp.async)");
  MM_CHECK(reinterpret_cast<uintptr_t>(A) % 16 == 0 && reinterpret_cast<uintptr_t>(B) % 16 == 0,
           "[cuda] gemm_bf16_nt: A and B must be 16-byte aligned");
  MM_CHECK(compute_capability() == 90, "[cuda] gemm_bf16_nt: wgmma needs an sm_90 GPU (H100, H200); this one is sm_",
           compute_capability());
  if (M == 0 || N == 0) return;
  allow_dynamic_smem<gemm_bf16_nt_wgmma>(kHSmemBytes, "gemm_bf16_nt");
  gemm_bf16_nt_wgmma<<<dim3(ceil_div(N, kHN), ceil_div(M, kHM)), 256, kHSmemBytes, stream()>>>(A, B, C, M, N, K);
  MM_CUDA_LAUNCHED("gemm_bf16_nt");
}

}  // namespace mm::cuda
