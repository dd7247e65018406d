// tests/cuda/emu_kernels.cu: kernels with deliberate faults, and a few that pin down warp
// semantics, for the CUDA emulator's own tests (tests/cuda/test_cuda_emulator.cpp). Built only
// with -DMM_CUDA_EMULATE=ON: on a GPU these faults hang or corrupt instead of reporting.
#include <cuda_runtime.h>

#include <cstdint>

#include "tests/cuda/emu_kernels.h"

namespace mm::emu_test {
namespace {

// Half a warp waits at the block barrier, the other half at a shuffle that needs the first.
__global__ void divergent_barrier(float* out) {
  float v = 1.0f;
  if (threadIdx.x < 16)
    __syncthreads();
  else
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void shuffle_after_exit(float* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, float(threadIdx.x), 1);
}

// out[i] = seed + (i + 1) % n, read from shared memory another thread wrote.
__global__ void neighbour(int* out, int seed, bool barrier) {
  __shared__ int s[64];
  s[threadIdx.x] = seed + int(threadIdx.x);
  if (barrier) __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

__global__ void warp_ops(int* out) {
  const int lane = threadIdx.x & 31, v = 100 + int(threadIdx.x);
  int* o = out + threadIdx.x * 5;
  o[0] = __shfl_xor_sync(0xffffffffu, v, 3);
  o[1] = __shfl_down_sync(0xffffffffu, v, 4);  // the top four lanes keep their own value
  o[2] = __shfl_up_sync(0xffffffffu, v, 1);    // lane 0 keeps its own
  o[3] = __shfl_sync(0xffffffffu, v, 2, 16);   // lane 2 of each half-warp
  int sum = lane;
  for (int d = 16; d > 0; d >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, d);
  o[4] = sum;
}

// Lanes 0-15 use one mask, lanes 16-31 another that overlaps it. And the legal case: two
// disjoint half-warp groups, each with its own mask.
__global__ void masks(int* out, bool overlap) {
  const unsigned lane = threadIdx.x & 31;
  const unsigned mask = lane < 16 ? 0x0000ffffu : (overlap ? 0xffffffffu : 0xffff0000u);
  out[threadIdx.x] = __shfl_xor_sync(mask, int(threadIdx.x), 1);
}

__global__ void touch(const float* p, float* out) { out[0] = p ? p[0] : 0.0f; }

}  // namespace

void launch_divergent_barrier(float* out) { divergent_barrier<<<1, 32>>>(out); }
void launch_shuffle_after_exit(float* out) { shuffle_after_exit<<<1, 32>>>(out); }
void launch_neighbour(int* out, int n, int seed, bool barrier) { neighbour<<<1, n>>>(out, seed, barrier); }
void launch_warp_ops(int* out, int threads) { warp_ops<<<1, threads>>>(out); }
void launch_masks(int* out, bool overlap) { masks<<<1, 32>>>(out, overlap); }
void launch_touch(const float* p, float* out, unsigned grid_x, unsigned grid_y, unsigned block) {
  touch<<<dim3(grid_x, grid_y), block>>>(p, out);
}

}  // namespace mm::emu_test
