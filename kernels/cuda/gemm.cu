// kernels/cuda/gemm.cu: matrix products, from the textbook loop to tensor cores, and the
// cuBLAS production path they are measured against (mmbench gemm --device cuda).
// For M = N = K = 4096: 2·4096³ = 137 GFLOP; the bytes (3 · 64 MiB in float32) are nothing
// next to that, so every version is arithmetic-bound and the ceiling is the unit it uses:
// float32 FMA (~67 TFLOP/s on an H200, datasheet), TF32 or bf16 tensor cores (~790 measured).
//   v1: a thread per C element; every operand comes from global memory (through L1/L2).
//   v2: 32x32 tiles of A and B in shared memory: each global value is read by 32 threads
//       from shared memory instead of 32 times from L2.
//   v3: a 256-thread block computes a 128x128 tile, each thread 8x8 outputs in registers;
//       an outer product per k step: 16 shared-memory reads (as float4) feed 64 FMAs.
//   gemm_bf16 v1: WMMA (mma.sync) 16x16x16 bf16 fragments with float32 accumulators.
#include <cublas_v2.h>
#include <mma.h>

#include "kernels/cuda/common.cuh"

namespace mm::cuda {

namespace {

// Operand access for row-major storage with optional transposition.
struct Operand {
  const float* p;
  int64_t rows, cols;  // logical shape
  bool trans;          // stored as [cols, rows]
  __device__ __forceinline__ float at(int64_t r, int64_t c) const {
    if (r >= rows || c >= cols) return 0.0f;
    return trans ? p[c * rows + r] : p[r * cols + c];
  }
};

__global__ void gemm_v1(Operand A, Operand B, float* __restrict__ C, int64_t M, int64_t N, int64_t K) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, i = blockIdx.y * int64_t(blockDim.y) + threadIdx.y;
  if (i >= M || j >= N) return;
  float acc = 0.0f;
  for (int64_t k = 0; k < K; ++k) acc += A.at(i, k) * B.at(k, j);
  C[i * N + j] = acc;
}

constexpr int kT2 = 32;
__global__ void gemm_v2(Operand A, Operand B, float* __restrict__ C, int64_t M, int64_t N, int64_t K) {
  __shared__ float As[kT2][kT2 + 1], Bs[kT2][kT2 + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;  // 32 x 8 threads, 4 rows each
  const int64_t j = blockIdx.x * int64_t(kT2) + tx, i0 = blockIdx.y * int64_t(kT2);
  float acc[4] = {0, 0, 0, 0};
  for (int64_t k0 = 0; k0 < K; k0 += kT2) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int row = ty + 8 * r;
      As[row][tx] = A.at(i0 + row, k0 + tx);
      Bs[row][tx] = B.at(k0 + row, j);
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kT2; ++k) {
      const float b = Bs[k][tx];
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[r] += As[ty + 8 * r][k] * b;
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int64_t i = i0 + ty + 8 * r;
    if (i < M && j < N) C[i * N + j] = acc[r];
  }
}

constexpr int kBM = 128, kBN = 128, kBK = 8;
// Thread (ty, tx) of a 16x16 grid owns rows {4ty..4ty+3, 64+4ty..64+4ty+3} and the same
// pattern of columns, so that a warp's float4 reads of a shared-memory row are contiguous.
__global__ void __launch_bounds__(256) gemm_v3(Operand A, Operand B, float* __restrict__ C, int64_t M, int64_t N,
                                               int64_t K) {
  __shared__ __align__(16) float As[kBK][kBM + 4];  // +4: the column-wise stores spread over banks
  __shared__ __align__(16) float Bs[kBK][kBN];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t bm = blockIdx.y * int64_t(kBM), bn = blockIdx.x * int64_t(kBN);
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int e = tid + 256 * l;
      As[e % kBK][e / kBK] = A.at(bm + e / kBK, k0 + e % kBK);
      Bs[e / kBN][e % kBN] = B.at(k0 + e / kBN, bn + e % kBN);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[k][4 * ty]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[k][64 + 4 * ty]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[k][4 * tx]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[k][64 + 4 * tx]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t r = bm + (i < 4 ? 4 * ty + i : 64 + 4 * ty + i - 4);
    if (r >= M) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t c = bn + (j < 4 ? 4 * tx + j : 64 + 4 * tx + j - 4);
      if (c < N) C[r * N + c] = acc[i][j];
    }
  }
}

// ---- bf16 tensor cores through WMMA ----------------------------------------------------------
constexpr int kWM = 64, kWN = 64, kWK = 32;
constexpr int kLdA = kWK + 8, kLdB = kWN + 8, kLdC = kWN + 4;  // padded rows (bank spread)

__global__ void __launch_bounds__(128) gemm_bf16_v1(const __nv_bfloat16* __restrict__ A,
                                                    const __nv_bfloat16* __restrict__ B, float* __restrict__ C,
                                                    int64_t M, int64_t N, int64_t K) {
  using namespace nvcuda;
  __shared__ __align__(32) __nv_bfloat16 As[kWM * kLdA];
  __shared__ __align__(32) __nv_bfloat16 Bs[kWK * kLdB];
  __shared__ __align__(32) float Cs[kWM * kLdC];
  const int tid = threadIdx.x, warp = tid / 32;
  const int wr = warp / 2, wc = warp % 2;  // this warp's 32x32 quadrant of the 64x64 tile
  const int64_t bm = blockIdx.y * int64_t(kWM), bn = blockIdx.x * int64_t(kWN);
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  const __nv_bfloat16 zero = __float2bfloat16(0.0f);
  for (int64_t k0 = 0; k0 < K; k0 += kWK) {
    for (int e = tid; e < kWM * kWK; e += 128) {
      const int r = e / kWK, c = e % kWK;
      const int64_t gr = bm + r, gc = k0 + c;
      As[r * kLdA + c] = (gr < M && gc < K) ? A[gr * K + gc] : zero;
    }
    for (int e = tid; e < kWK * kWN; e += 128) {
      const int r = e / kWN, c = e % kWN;
      const int64_t gr = k0 + r, gc = bn + c;
      Bs[r * kLdB + c] = (gr < K && gc < N) ? B[gr * N + gc] : zero;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kWK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (wr * 32 + i * 16) * kLdA + kk, kLdA);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Bs + kk * kLdB + wc * 32 + j * 16, kLdB);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wr * 32 + i * 16) * kLdC + wc * 32 + j * 16, acc[i][j], kLdC,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < kWM * kWN; e += 128) {
    const int r = e / kWN, c = e % kWN;
    const int64_t gr = bm + r, gc = bn + c;
    if (gr < M && gc < N) C[gr * N + gc] = Cs[r * kLdC + c];
  }
}

cublasHandle_t cublas() {
  static cublasHandle_t h = [] {
    cublasHandle_t handle = nullptr;
    MM_CUBLAS_CHECK(cublasCreate(&handle), "cublas");
    MM_CUBLAS_CHECK(cublasSetStream(handle, stream()), "cublas");
    return handle;
  }();
  return h;
}

int ld(int64_t v) { return int(std::max<int64_t>(1, v)); }  // cuBLAS wants leading dimensions >= 1 (K == 0)

void check_gemm_sizes(const char* op, int64_t M, int64_t N, int64_t K) {
  MM_CHECK(M >= 0 && N >= 0 && K >= 0 && M < (int64_t(1) << 31) && N < (int64_t(1) << 31) && K < (int64_t(1) << 31),
           "[cuda] ", op, ": sizes M=", M, " N=", N, " K=", K, " out of range");
}
// Our own kernels put M's tiles on the grid's y dimension (cuBLAS has no such limit).
void check_grid_rows(const char* op, int64_t M) {
  MM_CHECK(M <= int64_t(65535) * 16, "[cuda] ", op, ": M=", M, " rows exceed the grid (at most ", 65535 * 16,
           "); split the product");
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C,
          int version) {
  check_gemm_sizes("gemm", M, N, K);
  check_grid_rows("gemm", M);
  if (M == 0 || N == 0) return;
  version = resolve_version("gemm", version);
  const Operand a{A, M, K, trans_a}, b{B, K, N, trans_b};
  if (version == 1) {
    gemm_v1<<<dim3(ceil_div(N, 16), ceil_div(M, 16)), dim3(16, 16), 0, stream()>>>(a, b, C, M, N, K);
  } else if (version == 2) {
    gemm_v2<<<dim3(ceil_div(N, kT2), ceil_div(M, kT2)), dim3(kT2, 8), 0, stream()>>>(a, b, C, M, N, K);
  } else {
    gemm_v3<<<dim3(ceil_div(N, kBN), ceil_div(M, kBM)), 256, 0, stream()>>>(a, b, C, M, N, K);
  }
  MM_CUDA_LAUNCHED("gemm");
}

void gemm_bf16(int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, const __nv_bfloat16* B, float* C,
               int version) {
  check_gemm_sizes("gemm_bf16", M, N, K);
  check_grid_rows("gemm_bf16", M);
  if (M == 0 || N == 0) return;
  resolve_version("gemm_bf16", version);
  gemm_bf16_v1<<<dim3(ceil_div(N, kWN), ceil_div(M, kWM)), 128, 0, stream()>>>(A, B, C, M, N, K);
  MM_CUDA_LAUNCHED("gemm_bf16");
}

// Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS gets B first.
void cublas_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, const float* B,
                 float* C, bool allow_tf32) {
  check_gemm_sizes("cublas_gemm", M, N, K);
  if (M == 0 || N == 0) return;
  const float one = 1.0f, zero = 0.0f;
  MM_CUBLAS_CHECK(cublasGemmEx(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                               int(N), int(M), int(K), &one, B, CUDA_R_32F, ld(trans_b ? K : N), A, CUDA_R_32F,
                               ld(trans_a ? M : K), &zero, C, CUDA_R_32F, ld(N),
                               allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "cublas_gemm");
}

void cublas_gemm_half(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, const void* B,
                      float* C, bool fp16) {
  check_gemm_sizes("cublas_gemm_half", M, N, K);
  if (M == 0 || N == 0) return;
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType t = fp16 ? CUDA_R_16F : CUDA_R_16BF;
  MM_CUBLAS_CHECK(cublasGemmEx(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                               int(N), int(M), int(K), &one, B, t, ld(trans_b ? K : N), A, t, ld(trans_a ? M : K),
                               &zero, C, CUDA_R_32F, ld(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "cublas_gemm_half");
}

void cublas_gemm_bf16(int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, const __nv_bfloat16* B, float* C) {
  cublas_gemm_half(false, false, M, N, K, A, B, C, /*fp16=*/false);
}

void cublas_gemm_batched(bool trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, const float* A,
                         const float* B, float* C, float alpha) {
  check_gemm_sizes("cublas_gemm_batched", M, N, K);
  if (batch == 0 || M == 0 || N == 0) return;
  const float zero = 0.0f;
  MM_CUBLAS_CHECK(cublasSgemmStridedBatched(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, int(N),
                                            int(M), int(K), &alpha, B, ld(trans_b ? K : N), K * N, A, ld(K), M * K,
                                            &zero, C, ld(N), M * N, int(batch)),
                  "cublas_gemm_batched");
}

void cublas_gemm_half_batched(int64_t batch, int64_t M, int64_t N, int64_t K, const void* A, const void* B, float* C,
                              bool fp16) {
  check_gemm_sizes("cublas_gemm_half_batched", M, N, K);
  if (batch == 0 || M == 0 || N == 0) return;
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType t = fp16 ? CUDA_R_16F : CUDA_R_16BF;
  MM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas(), CUBLAS_OP_N, CUBLAS_OP_N, int(N), int(M), int(K), &one, B, t,
                                             ld(N), K * N, A, t, ld(K), M * K, &zero, C, CUDA_R_32F, ld(N), M * N,
                                             int(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "cublas_gemm_half_batched");
}

}  // namespace mm::cuda
