// kernels/cuda/common.cuh: helpers shared by the .cu files: launch sizes, warp and block
// reductions. Device code only; included by kernels/cuda/*.cu.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace mm::cuda {

// Lets Kernel launch with `bytes` of dynamic shared memory: past 48 KiB a kernel needs
// cudaFuncSetAttribute first. Called before each launch, it sets the attribute once per
// kernel (raising it if a later launch needs more), not on every call.
template <auto Kernel>
void allow_dynamic_smem(size_t bytes, const char* op) {
  static std::mutex mu;
  static size_t allowed = 48 * 1024;
  std::lock_guard<std::mutex> lock(mu);
  if (bytes <= allowed) return;
  MM_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)), op);
  allowed = bytes;
}

// Enough blocks to fill the device a few times over for grid-stride loops.
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t want = (n + threads - 1) / threads;
  const int64_t cap = int64_t(sm_count()) * 32;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(want, cap)));
}

inline unsigned ceil_div(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

// f(i) for every i in [0, n), grid-stride: the shape of most memory-bound kernels here,
// written as a __device__ lambda at the call (launch_each does the launch and its check).
template <typename F>
__global__ void each_index_k(int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) f(i);
}
template <typename F>
void launch_each(int64_t n, const char* name, F f) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, 256), 256, 0, stream()>>>(n, f);
  MM_CUDA_LAUNCHED(name);
}

// Picks version 0 -> the family's default, and checks the range.
int resolve_version(const char* family, int version);

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. `shared` holds 32 floats. Ends with a barrier, so `shared` may be reused after.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float t = lane < warps ? shared[lane] : 0.0f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}
__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float t = lane < warps ? shared[lane] : -INFINITY;
  t = warp_max(t);
  __syncthreads();
  return t;
}

}  // namespace mm::cuda
