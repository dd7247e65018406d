// kernels/cuda/vq.cu: nearest codebook rows for vector quantisation, the gather, and the
// codebook's gradient.
// The distance |z − e|² = (|z|² + |e|²) − 2 z·e, evaluated in float32 as taming does (and
// the CPU op): |z|² is the same for every code of a row, but adding it rounds the distances
// at its magnitude, which decides near ties; leaving it out would pick other codes there.
// So: a GEMM (N x D by D x K) followed by an argmin per row.
// The unfused baseline writes that N x K matrix (for 16384 codes and a 64x64 latent of a
// batch of 8: 2 GB) and reads it back; the fused v2 keeps a 64-row x 64-code tile of dot
// products in registers (a thread owns 4 rows x 4 codes, as in the SGEMM), turns it into
// distances, and folds it into each row's running (best distance, index): only N indices are
// written. Ties go to the lower index, as torch.argmin.
#include "kernels/cuda/common.cuh"

namespace mm::cuda {

namespace {

__device__ __forceinline__ void take_better(float& best, int64_t& bi, float d, int64_t i) {
  if (d < best || (d == best && i < bi)) best = d, bi = i;
}

__global__ void code_norms_k(const float* __restrict__ e, float* __restrict__ e_sq, int64_t K, int64_t D) {
  const int64_t code = blockIdx.x * int64_t(blockDim.x / 32) + (threadIdx.x >> 5);
  if (code >= K) return;
  float s = 0.0f;
  for (int64_t d = threadIdx.x & 31; d < D; d += 32) s += e[code * D + d] * e[code * D + d];
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) e_sq[code] = s;
}

__global__ void vq_v1(const float* __restrict__ z, const float* __restrict__ e, const float* __restrict__ e_sq,
                      int64_t* __restrict__ idx, int64_t N, int64_t K, int64_t D) {
  const int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (n >= N) return;
  float best = INFINITY, zz = 0.0f;
  int64_t bi = 0;
  for (int64_t d = 0; d < D; ++d) zz += z[n * D + d] * z[n * D + d];
  for (int64_t c = 0; c < K; ++c) {
    float dot = 0.0f;
    for (int64_t d = 0; d < D; ++d) dot += z[n * D + d] * e[c * D + d];
    take_better(best, bi, (zz + e_sq[c]) - 2.0f * dot, c);
  }
  idx[n] = bi;
}

constexpr int kTR = 64, kTC = 64, kTD = 32;

__global__ void __launch_bounds__(256) vq_v2(const float* __restrict__ z, const float* __restrict__ e,
                                             const float* __restrict__ e_sq, int64_t* __restrict__ idx, int64_t N,
                                             int64_t K, int64_t D) {
  __shared__ __align__(16) float Zs[kTD][kTR + 4];  // +4: the k-wise stores spread over banks
  __shared__ __align__(16) float Es[kTD][kTC + 4];
  __shared__ float Zsq[kTR];  // |z|² of the block's rows
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;  // rows 4ty.., codes 4tx..
  const int64_t n0 = blockIdx.x * int64_t(kTR);
  if (tid < kTR) {
    float s = 0.0f;
    if (n0 + tid < N)
      for (int64_t d = 0; d < D; ++d) s += z[(n0 + tid) * D + d] * z[(n0 + tid) * D + d];
    Zsq[tid] = s;
  }
  __syncthreads();
  float best[4];
  int64_t bi[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) best[i] = INFINITY, bi[i] = 0;
  for (int64_t c0 = 0; c0 < K; c0 += kTC) {
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int64_t d0 = 0; d0 < D; d0 += kTD) {
      __syncthreads();
#pragma unroll
      for (int l = 0; l < 8; ++l) {
        const int el = tid + 256 * l, r = el / kTD, kc = el % kTD;
        const bool din = d0 + kc < D;
        Zs[kc][r] = (n0 + r < N && din) ? z[(n0 + r) * D + d0 + kc] : 0.0f;
        Es[kc][r] = (c0 + r < K && din) ? e[(c0 + r) * D + d0 + kc] : 0.0f;
      }
      __syncthreads();
#pragma unroll 8
      for (int kc = 0; kc < kTD; ++kc) {
        const float4 a = *reinterpret_cast<const float4*>(&Zs[kc][4 * ty]);
        const float4 b = *reinterpret_cast<const float4*>(&Es[kc][4 * tx]);
        const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = c0 + 4 * tx + j;
      if (c >= K) continue;
      const float en = e_sq[c];
#pragma unroll
      for (int i = 0; i < 4; ++i) take_better(best[i], bi[i], (Zsq[4 * ty + i] + en) - 2.0f * acc[i][j], c);
    }
  }
  // The 16 threads of a row group (same ty, consecutive lanes) hold candidates: reduce.
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best[i], o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, bi[i], o);
      take_better(best[i], bi[i], ob, oi);
    }
    const int64_t n = n0 + 4 * ty + i;
    if (tx == 0 && n < N) idx[n] = bi[i];
  }
}

// Row argmin of (|z_n|² + e_sq[k]) − 2 S[n, k], a block per row.
__global__ void argmin_rows(const float* __restrict__ S, const float* __restrict__ z, const float* __restrict__ e_sq,
                            int64_t* __restrict__ idx, int64_t K, int64_t D) {
  __shared__ float sb[32];
  __shared__ int64_t si[32];
  __shared__ float szz[1];
  const int64_t n = blockIdx.x;
  if (threadIdx.x == 0) {  // in d order, as vq_v1/v2
    float s = 0.0f;
    for (int64_t d = 0; d < D; ++d) s += z[n * D + d] * z[n * D + d];
    szz[0] = s;
  }
  __syncthreads();
  const float zz = szz[0];
  float best = INFINITY;
  int64_t bi = 0;
  for (int64_t c = threadIdx.x; c < K; c += blockDim.x) take_better(best, bi, (zz + e_sq[c]) - 2.0f * S[n * K + c], c);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    take_better(best, bi, ob, oi);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sb[warp] = best, si[warp] = bi;
  __syncthreads();
  if (warp == 0) {
    best = lane < int(blockDim.x / 32) ? sb[lane] : INFINITY;
    bi = lane < int(blockDim.x / 32) ? si[lane] : 0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      take_better(best, bi, ob, oi);
    }
    if (lane == 0) idx[n] = bi;
  }
}

__global__ void gather_rows_k(const float* __restrict__ e, const int64_t* __restrict__ idx, float* __restrict__ out,
                              int64_t N, int64_t D) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < N * D; t += int64_t(gridDim.x) * blockDim.x)
    out[t] = e[idx[t / D] * D + t % D];
}
__global__ void scatter_add_rows_k(const float* __restrict__ dout, const int64_t* __restrict__ idx,
                                   float* __restrict__ de, int64_t N, int64_t D) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < N * D; t += int64_t(gridDim.x) * blockDim.x)
    atomicAdd(&de[idx[t / D] * D + t % D], dout[t]);
}

}  // namespace

void vq_code_norms(const float* e, float* e_sq, int64_t K, int64_t D) {
  if (K == 0) return;
  code_norms_k<<<ceil_div(K, 8), 256, 0, stream()>>>(e, e_sq, K, D);
  MM_CUDA_LAUNCHED("vq_code_norms");
}

void vq_nearest(const float* z, const float* e, const float* e_sq, int64_t* idx, int64_t N, int64_t K, int64_t D,
                int version) {
  MM_CHECK(K > 0, "[cuda] vq_nearest: empty codebook");
  if (N == 0) return;
  version = resolve_version("vq", version);
  if (version == 1)
    vq_v1<<<ceil_div(N, 128), 128, 0, stream()>>>(z, e, e_sq, idx, N, K, D);
  else
    vq_v2<<<ceil_div(N, kTR), 256, 0, stream()>>>(z, e, e_sq, idx, N, K, D);
  MM_CUDA_LAUNCHED("vq_nearest");
}

void vq_nearest_unfused(const float* z, const float* e, const float* e_sq, int64_t* idx, float* scratch, int64_t N,
                        int64_t K, int64_t D) {
  MM_CHECK(K > 0, "[cuda] vq_nearest_unfused: empty codebook");
  if (N == 0) return;
  cublas_gemm(false, true, N, K, D, z, e, scratch);
  argmin_rows<<<static_cast<unsigned>(N), 256, 0, stream()>>>(scratch, z, e_sq, idx, K, D);
  MM_CUDA_LAUNCHED("vq_nearest_unfused");
}

void gather_rows(const float* e, const int64_t* idx, float* out, int64_t N, int64_t D) {
  if (N * D == 0) return;
  gather_rows_k<<<grid_for(N * D, 256), 256, 0, stream()>>>(e, idx, out, N, D);
  MM_CUDA_LAUNCHED("gather_rows");
}

void scatter_add_rows(const float* dout, const int64_t* idx, float* de, int64_t N, int64_t D) {
  if (N * D == 0) return;
  scatter_add_rows_k<<<grid_for(N * D, 256), 256, 0, stream()>>>(dout, idx, de, N, D);
  MM_CUDA_LAUNCHED("scatter_add_rows");
}

}  // namespace mm::cuda
