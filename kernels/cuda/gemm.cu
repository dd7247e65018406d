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
//   gemm_bf16 v1: WMMA 16x16x16 bf16 fragments with float32 accumulators; the tile goes
//       through shared memory on the way out, and operands are staged element by element.
//   gemm_bf16 v2: mma.sync m16n8k16 with its documented register layout (ptx.cuh): a
//       128x128 block tile, 8 warps of 64x32; operands arrive by 16-byte loads into registers
//       while the previous k-tile is multiplied (two shared-memory buffers, one barrier per
//       k-tile), fragments come from shared memory by ldmatrix (padded rows: no bank
//       conflicts), and the accumulators are written straight from registers.
//   gemm_bf16_nt (gemm_sm90.cu): Hopper's warpgroup wgmma, operands read by the tensor cores
//       from shared memory through descriptors, fed by cp.async.
#include <cublas_v2.h>
#include <mma.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ptx.cuh"

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

// ---- bf16 tensor cores through mma.sync and ldmatrix (v2) -----------------------------------------
constexpr int kMM = 128, kMN = 128, kMK = 32;
constexpr int kLdMA = kMK + 8, kLdMB = kMN + 8;  // 80- and 272-byte rows: 16-byte aligned, odd multiples of 16

// One k-tile of A (128 x 32) and B (32 x 128) per block: 512 chunks of 8 elements each, two
// per thread. A chunk is loaded by one 16-byte load when it lies inside the matrix and the
// rows are 16-byte aligned (vec), else element by element with zeros outside.
struct Tile16 {
  uint4 a[2], b[2];
};
__device__ __forceinline__ uint4 load8(const __nv_bfloat16* __restrict__ p, int64_t row, int64_t col, int64_t rows,
                                       int64_t cols, bool vec) {
  if (vec && row < rows && col + 8 <= cols) return *reinterpret_cast<const uint4*>(p + row * cols + col);
  unsigned short e[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const __nv_bfloat16 x = row < rows && col + i < cols ? p[row * cols + col + i] : __float2bfloat16(0.0f);
    std::memcpy(&e[i], &x, 2);
  }
  return make_uint4(ptx::pack(e[0], e[1]), ptx::pack(e[2], e[3]), ptx::pack(e[4], e[5]), ptx::pack(e[6], e[7]));
}

__global__ void __launch_bounds__(256) gemm_bf16_v2(const __nv_bfloat16* __restrict__ A,
                                                    const __nv_bfloat16* __restrict__ B, float* __restrict__ C,
                                                    int64_t M, int64_t N, int64_t K, bool vec_a, bool vec_b) {
  // 16-bit elements held as 16-byte chunks (kLdMA / 8 and kLdMB / 8 chunks per row): the
  // staging stores whole chunks, ldmatrix takes addresses of elements
  __shared__ uint4 As[2][kMM * kLdMA / 8];
  __shared__ uint4 Bs[2][kMK * kLdMB / 8];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / 4, wn = warp % 4;  // this warp's 64 x 32 piece of the 128 x 128 tile
  const int64_t bm = blockIdx.y * int64_t(kMM), bn = blockIdx.x * int64_t(kMN);
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
  // chunk c = tid + 256·l: A row c / 4, columns 8·(c % 4); B row c / 16, columns 8·(c % 16)
  auto fetch = [&](int64_t k0) {
    Tile16 t;
#pragma unroll
    for (int l = 0; l < 2; ++l) {
      const int c = tid + 256 * l;
      t.a[l] = load8(A, bm + c / 4, k0 + 8 * (c % 4), M, K, vec_a);
      t.b[l] = load8(B, k0 + c / 16, bn + 8 * (c % 16), K, N, vec_b);
    }
    return t;
  };
  auto stash = [&](const Tile16& t, int buf) {
#pragma unroll
    for (int l = 0; l < 2; ++l) {
      const int c = tid + 256 * l;
      As[buf][(c / 4) * (kLdMA / 8) + c % 4] = t.a[l];
      Bs[buf][(c / 16) * (kLdMB / 8) + c % 16] = t.b[l];
    }
  };
  stash(fetch(0), 0);
  __syncthreads();
  const int ktiles = int((K + kMK - 1) / kMK);
  for (int kt = 0; kt < ktiles; ++kt) {
    const int buf = kt & 1;
    const unsigned short* as = reinterpret_cast<const unsigned short*>(As[buf]);
    const unsigned short* bs = reinterpret_cast<const unsigned short*>(Bs[buf]);
    Tile16 next;
    if (kt + 1 < ktiles) next = fetch(int64_t(kt + 1) * kMK);  // in flight while this tile is multiplied
#pragma unroll
    for (int kk = 0; kk < kMK; kk += 16) {
      uint32_t a[4][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i)  // A rows wm·64 + 16i + (lane % 16), columns kk + 8·(lane / 16)
        ptx::ldmatrix_x4<false>(a[i], &as[(wm * 64 + i * 16 + (lane & 15)) * kLdMA + kk + (lane >> 4) * 8]);
#pragma unroll
      for (int j = 0; j < 4; j += 2) {  // B [k][n] transposed: n-tiles j and j + 1
        uint32_t r[4];
        ptx::ldmatrix_x4<true>(
            r, &bs[(kk + (lane & 7) + ((lane >> 3) & 1) * 8) * kLdMB + wn * 32 + j * 8 + (lane >> 4) * 8]);
        b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) ptx::mma_16816<__nv_bfloat16>(acc[i][j], a[i], b[j]);
    }
    if (kt + 1 < ktiles) stash(next, buf ^ 1);  // the other buffer: last read before the previous barrier
    __syncthreads();
  }
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t r = bm + wm * 64 + i * 16 + g + 8 * (e / 2), c = bn + wn * 32 + j * 8 + 2 * t + e % 2;
        if (r < M && c < N) C[r * N + c] = acc[i][j][e];
      }
}

// One warp: D = A·B + C through ldmatrix and mma.sync (ptx.cuh), B loaded both ways (x2.trans
// from B [16][8], x2 from Bᵀ [8][16]) into d[0..127] and d[128..255].
template <typename T16>
__global__ void mma_probe_k(const unsigned short* a, const unsigned short* b, const float* c, float* d) {
  __shared__ __align__(16) unsigned short As[16 * 16];
  __shared__ __align__(16) unsigned short Bs[16 * 8];
  __shared__ __align__(16) unsigned short Bt[8 * 16];
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  for (int e = lane; e < 256; e += 32) As[e] = a[e];
  for (int e = lane; e < 128; e += 32) Bs[e] = b[e], Bt[(e % 8) * 16 + e / 8] = b[e];
  __syncwarp();
  uint32_t af[4], b1[2], b2[2];
  ptx::ldmatrix_x4<false>(af, &As[(lane & 15) * 16 + (lane >> 4) * 8]);
  ptx::ldmatrix_x2<true>(b1, &Bs[(lane & 15) * 8]);
  ptx::ldmatrix_x2<false>(b2, &Bt[(lane & 7) * 16 + ((lane >> 3) & 1) * 8]);
  float d1[4], d2[4];
  for (int e = 0; e < 4; ++e) d1[e] = d2[e] = c[(g + 8 * (e / 2)) * 8 + 2 * t + e % 2];
  ptx::mma_16816<T16>(d1, af, b1);
  ptx::mma_16816<T16>(d2, af, b2);
  for (int e = 0; e < 4; ++e) {
    const int at = (g + 8 * (e / 2)) * 8 + 2 * t + e % 2;
    d[at] = d1[e], d[128 + at] = d2[e];
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
  version = resolve_version("gemm_bf16", version);
  if (version == 1) {
    gemm_bf16_v1<<<dim3(ceil_div(N, kWN), ceil_div(M, kWM)), 128, 0, stream()>>>(A, B, C, M, N, K);
  } else {
    // 16-byte loads need 16-byte aligned rows: the base pointers and a row length of 8k elements
    const bool vec_a = K % 8 == 0 && reinterpret_cast<uintptr_t>(A) % 16 == 0;
    const bool vec_b = N % 8 == 0 && reinterpret_cast<uintptr_t>(B) % 16 == 0;
    gemm_bf16_v2<<<dim3(ceil_div(N, kMN), ceil_div(M, kMM)), 256, 0, stream()>>>(A, B, C, M, N, K, vec_a, vec_b);
  }
  MM_CUDA_LAUNCHED("gemm_bf16");
}

void mma_probe(const void* a, const void* b, const float* c, float* d, bool fp16) {
  const auto* a16 = static_cast<const unsigned short*>(a);
  const auto* b16 = static_cast<const unsigned short*>(b);
  if (fp16)
    mma_probe_k<__half><<<1, 32, 0, stream()>>>(a16, b16, c, d);
  else
    mma_probe_k<__nv_bfloat16><<<1, 32, 0, stream()>>>(a16, b16, c, d);
  MM_CUDA_LAUNCHED("mma_probe");
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
