// kernels/cpu/gemm_avx2.cpp: AVX2+FMA SGEMM micro-kernel, 6 x 16 tile (12 ymm accumulators,
// 2 loads of packed B and 6 broadcasts of packed A per k step; 16 ymm registers in all).
// Contract in gemm_microkernels.h; compiled with -mavx2 -mfma (CMakeLists.txt) and called by
// kernels/cpu/gemm.cpp only when the CPU reports avx2 and fma.
// Test:  MM_GEMM_KERNEL=avx2 ./build/mm_tests --source-file=*test_gemm.cpp
// Bench: MM_GEMM_KERNEL=avx2 ./build/mmbench gemm --m 1024 --n 1024 --k 1024
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/gemm_microkernels.h"

namespace mm::kernels::cpu {

void sgemm_avx2_6x16(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                     int64_t ldc, float alpha, float beta, int64_t m, int64_t n) {
  constexpr int MR = 6, NV = 2, NR = 16;
  __m256 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
    }
    a += MR;
    b += NR;
  }

  const __m256 valpha = _mm256_set1_ps(alpha);
  const __m256 vbeta = _mm256_set1_ps(beta);
  if (m == MR && n == NR) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        float* p = c + i * ldc + v * 8;
        __m256 r = _mm256_mul_ps(acc[i][v], valpha);
        if (beta != 0.f) r = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(p), r);
        _mm256_storeu_ps(p, r);
      }
    }
    return;
  }
  // Edge tile: go through a small buffer so partial rows and columns need no masks.
  alignas(32) float tile[MR * NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm256_store_ps(tile + i * NR + v * 8, _mm256_mul_ps(acc[i][v], valpha));
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float& out = c[i * ldc + j];
      // Same rounding as the vector path: one fused multiply-add of beta*C onto alpha*acc.
      out = beta != 0.f ? std::fma(beta, out, tile[i * NR + j]) : tile[i * NR + j];
    }
  }
}

}  // namespace mm::kernels::cpu
