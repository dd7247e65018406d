// kernels/cpu/gemm_avx512.cpp: AVX-512 SGEMM micro-kernels (one MR x NR tile of C from
// packed panels; contract in gemm_microkernels.h). Compiled with -mavx512f... -mfma (see
// CMakeLists.txt); kernels/cpu/gemm.cpp calls these only when the CPU reports avx512f.
// Test:  MM_GEMM_KERNEL=avx512 ./build/mm_tests --source-file=*test_gemm.cpp
// Bench: MM_GEMM_KERNEL=avx512_6x64 ./build/mmbench gemm --m 2048 --n 2048 --k 2048 --threads 2
//
// Shape of one k step of the MR x NR kernel (NV = NR/16 zmm vectors per row):
//   NV aligned loads of packed B, then MR broadcasts of packed A (`vbroadcastss zmm, [a+4i]`),
//   each feeding NV FMAs, so MR*NV accumulators stay in registers (checked with objdump: no
//   spills; GCC keeps one broadcast register rather than folding {1to16} into NV FMAs).
// Zen 5 retires 2 zmm FMAs/cycle at 4 cycles latency: >= 8 independent accumulators keep
// both pipes busy, and MR*NV + NV <= 32 zmm registers avoids spills.
//
// Measured on the 2-core AMD EPYC (Zen 5, ~3.2 GHz, one zmm FMA pair/cycle => ~205 GFLOP/s
// per core, measured with a register-only FMA loop), bench/RESULTS.md has the full tables:
//   kernel alone, hot L1 (kc 512, same panels): 12x32 200, 8x48 210, 6x64 211, 14x32 214 GFLOP/s
//   full sgemm 2 threads 2048^3 (kc 1024, mc 768), best of interleaved runs in a quiet window:
//   12x32 354 (default, "avx512"): ties with the others and keeps narrow N cheap (NR = 32)
//         and A packing efficient (12 of the 16 rows of each transpose are used)
//   6x64  355 (1-3% ahead on square sizes, but 4096x64x576 ran 15% slower: MR = 6 wastes
//         10/16 of each packing transpose, and NR = 64 pads narrow N)
//   8x48  353;  14x32 347 (28 accumulators; no gain over 24)
// The tiles run near peak alone; in sgemm the rest is memory traffic (C passes, packing).
#include <immintrin.h>

#include "kernels/cpu/gemm_microkernels.h"

namespace mm::kernels::cpu {
namespace {

template <int MR, int NV>
inline __attribute__((always_inline)) void tile_kernel(int64_t kc, const float* __restrict a,
                                                       const float* __restrict b, float* c,
                                                       int64_t ldc, float alpha, float beta,
                                                       int64_t m, int64_t n) {
  constexpr int NR = NV * 16;
  __m512 acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();

  // The tile of C is touched only after the k loop; start fetching it now.
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i < m) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
  }

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + v * 16);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += MR;
    b += NR;
  }

  const __m512 valpha = _mm512_set1_ps(alpha);
  const __m512 vbeta = _mm512_set1_ps(beta);
  if (m == MR && n == NR) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        float* p = c + i * ldc + v * 16;
        __m512 r = _mm512_mul_ps(acc[i][v], valpha);
        if (beta != 0.f) r = _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(p), r);
        _mm512_storeu_ps(p, r);
      }
    }
    return;
  }
  // Edge tile: masked loads/stores on the last columns, rows past m skipped. The loops keep
  // constant indices into acc so it stays in registers.
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const int64_t cols = n - v * 16;
      if (cols <= 0) break;
      const __mmask16 mask = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1u);
      float* p = c + i * ldc + v * 16;
      __m512 r = _mm512_mul_ps(acc[i][v], valpha);
      if (beta != 0.f) r = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask, p), r);
      _mm512_mask_storeu_ps(p, mask, r);
    }
  }
}

// GCC 12 warns "__Y may be used uninitialized" inside the unpack/shuffle intrinsics: they pass
// _mm512_undefined_ps(), a deliberately uninitialised register. Silenced for the packing code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// In-register transpose of a 16 x 16 block: r[i] holds row i on entry, column i on exit.
// Three stages: 32-bit interleave, 64-bit interleave (4x4 blocks within each 128-bit lane),
// then 128-bit lane shuffles that gather lane L of four registers.
inline __attribute__((always_inline)) void transpose_16x16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // a0 b0 a1 b1 per lane
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // a2 b2 a3 b3 per lane
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
    // r[4i + c], lane L: rows 4i..4i+3 of column 4L + c
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  __m512 out[16];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);  // lanes 0,2 of each
    const __m512 u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);  // lanes 1,3 of each
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    out[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    out[c + 8] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
    out[c + 4] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    out[c + 12] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = out[i];
}

}  // namespace

inline __mmask16 lane_mask(int64_t lanes) {  // the first `lanes` of 16, clamped to [0, 16]
  return lanes >= 16 ? __mmask16(0xFFFF) : lanes <= 0 ? __mmask16(0) : __mmask16((1u << lanes) - 1u);
}

// dst[k*ld_dst + j] = src[j*ld_src + k]: 16 columns j at a time, each 16 k by 16 j block loaded
// as 16 rows, transposed in registers and stored as 16 rows of (up to) 16 floats. About 4
// shuffles per 16 packed floats, against a scalar load and store per float in plain loops.
void pack_transpose_avx512(const float* src, int64_t ld_src, int64_t width, int64_t kc,
                           int64_t ld_dst, float* dst) {
  for (int64_t j0 = 0; j0 < ld_dst; j0 += 16) {
    const int64_t w = width - j0;  // source rows in this chunk (may be <= 0: zero padding)
    const __mmask16 store_mask = lane_mask(ld_dst - j0);
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int64_t cols = kc - k0 < 16 ? kc - k0 : 16;
      const __mmask16 k_mask = lane_mask(cols);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < w ? _mm512_maskz_loadu_ps(k_mask, src + (j0 + i) * ld_src + k0) : _mm512_setzero_ps();
      if (w > 0) transpose_16x16(r);
#pragma GCC unroll 16
      for (int c = 0; c < 16; ++c)
        if (c < cols) _mm512_mask_storeu_ps(dst + (k0 + c) * ld_dst + j0, store_mask, r[c]);
    }
  }
}

#pragma GCC diagnostic pop

// dst[k*ld_dst + j] = src[k*ld_src + j]: masked 16-float loads (zero past width) and stores.
void pack_copy_avx512(const float* src, int64_t ld_src, int64_t width, int64_t kc, int64_t ld_dst,
                      float* dst) {
  for (int64_t k = 0; k < kc; ++k) {
    const float* s = src + k * ld_src;
    float* d = dst + k * ld_dst;
    for (int64_t v = 0; v < ld_dst; v += 16)
      _mm512_mask_storeu_ps(d + v, lane_mask(ld_dst - v), _mm512_maskz_loadu_ps(lane_mask(width - v), s + v));
  }
}

void sgemm_avx512_12x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                        float alpha, float beta, int64_t m, int64_t n) {
  tile_kernel<12, 2>(kc, a, b, c, ldc, alpha, beta, m, n);
}
void sgemm_avx512_8x48(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                       float alpha, float beta, int64_t m, int64_t n) {
  tile_kernel<8, 3>(kc, a, b, c, ldc, alpha, beta, m, n);
}
void sgemm_avx512_6x64(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                       float alpha, float beta, int64_t m, int64_t n) {
  tile_kernel<6, 4>(kc, a, b, c, ldc, alpha, beta, m, n);
}
void sgemm_avx512_14x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                        float alpha, float beta, int64_t m, int64_t n) {
  tile_kernel<14, 2>(kc, a, b, c, ldc, alpha, beta, m, n);
}

}  // namespace mm::kernels::cpu
