// kernels/cpu/gemm_microkernels.h: the contract between the SGEMM driver (gemm.cpp) and the
// register-tiled micro-kernels compiled per instruction set (gemm_avx512.cpp, gemm_avx2.cpp).
// Internal to kernels/cpu; users call mm::kernels::sgemm from kernels/gemm.h.
//
// A micro-kernel computes one MR x NR tile of C from packed panels:
//   a: [kc, MR]  a[k*MR + i] = alpha-free A(i, k), zero-padded past the matrix edge
//   b: [kc, NR]  b[k*NR + j] = B(k, j), zero-padded past the matrix edge; 64-byte aligned
//   acc[i][j] = sum_k a[k*MR+i] * b[k*NR+j]   (k ascending, one fused multiply-add per k)
//   C[i*ldc + j] = alpha * acc[i][j] + beta * C[i*ldc + j]   for i < m, j < n
// where beta == 0 means C is not read. m <= MR and n <= NR clip the edge tiles.
#pragma once
#include <cstdint>

namespace mm::kernels::cpu {

using MicroKernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                               float alpha, float beta, int64_t m, int64_t n);

// Packing primitives, per instruction set (nullptr in the driver's table: plain loops). Both
// write kc rows of ld_dst floats, zero past `width`; the driver uses them for both operands:
//   copy:      dst[k*ld_dst + j] = src[k*ld_src + j]   (row-major B; column-major A)
//   transpose: dst[k*ld_dst + j] = src[j*ld_src + k]   (row-major A; column-major B)
// for j < width <= ld_dst, k < kc.
using PackFn = void (*)(const float* src, int64_t ld_src, int64_t width, int64_t kc,
                        int64_t ld_dst, float* dst);

// gemm_avx512.cpp: masked 16-float copies; 16x16 in-register transposes.
void pack_copy_avx512(const float* src, int64_t ld_src, int64_t width, int64_t kc, int64_t ld_dst,
                      float* dst);
void pack_transpose_avx512(const float* src, int64_t ld_src, int64_t width, int64_t kc,
                           int64_t ld_dst, float* dst);

// gemm_avx512.cpp: MR x NR tiles, NR a multiple of 16 (one zmm = 16 floats).
void sgemm_avx512_12x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                        float alpha, float beta, int64_t m, int64_t n);
void sgemm_avx512_8x48(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                       float alpha, float beta, int64_t m, int64_t n);
void sgemm_avx512_6x64(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                       float alpha, float beta, int64_t m, int64_t n);
void sgemm_avx512_14x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                        float alpha, float beta, int64_t m, int64_t n);

// gemm_avx2.cpp: 6 x 16 tiles (12 ymm accumulators).
void sgemm_avx2_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                     float alpha, float beta, int64_t m, int64_t n);

}  // namespace mm::kernels::cpu
