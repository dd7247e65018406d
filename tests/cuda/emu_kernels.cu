// tests/cuda/emu_kernels.cu: kernels with deliberate faults, and a few that pin down warp
// semantics, for the CUDA emulator's own tests (tests/cuda/test_cuda_emulator.cpp). Built only
// with -DMM_CUDA_EMULATE=ON: on a GPU these faults hang or corrupt instead of reporting.
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <cstring>

#include "kernels/cuda/ptx.cuh"
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

// Reverses 32 floats through dynamic shared memory (a template, so launches name one function).
template <int N>
__global__ void big_smem(float* out) {
  extern __shared__ __align__(128) float big[];
  big[threadIdx.x] = float(threadIdx.x * N);
  __syncthreads();
  out[threadIdx.x] = big[31 - threadIdx.x];
}

// 16 KiB of static shared memory beside the dynamic bytes: CUDA's limits count both.
template <int N>
__global__ void both_smem(float* out) {
  __shared__ float fixed[4096];
  extern __shared__ __align__(16) float extra[];
  fixed[threadIdx.x] = float(N);
  extra[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = fixed[31 - threadIdx.x] + extra[31 - threadIdx.x];
}

// Loads a 16x16 float tile from shared memory at tile + offset with leading dimension ldm,
// stores it back, and writes its first 32 values.
__global__ void wmma_tile(float* out, int offset, unsigned ldm) {
  using namespace nvcuda;
  __shared__ __align__(32) float tile[16 * 24 + 8];
  for (int i = threadIdx.x; i < 16 * 24 + 8; i += 32) tile[i] = float(i);
  __syncwarp();
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(acc, tile + offset, ldm, wmma::mem_row_major);
  wmma::store_matrix_sync(tile + offset, acc, ldm, wmma::mem_row_major);
  out[threadIdx.x] = tile[threadIdx.x];
}

// ldmatrix .x4 (.trans when trans) of a 16x16 tile holding row·16 + col; out[lane·8 + 2j + h]
// is half h of the lane's register j. mode 1: rows 4 bytes off 16-byte alignment; mode 2:
// rows in global memory (src); mode 3: lane 5 has exited before an mma.sync; mode 4: the
// last rows run past the end of the shared array.
__global__ void tensor_core_ops(float* out, const unsigned short* src, int mode, bool trans) {
  __shared__ __align__(16) unsigned short tile[16 * 16 + 8];
  for (int i = threadIdx.x; i < 16 * 16 + 8; i += 32) tile[i] = static_cast<unsigned short>(i);
  __syncwarp();
  const int lane = threadIdx.x;
  if (mode == 3) {
    if (lane == 5) return;
    float d[4] = {0, 0, 0, 0};
    const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    mm::cuda::ptx::mma_16816<__nv_bfloat16>(d, a, b);
    return;
  }
  const unsigned short* base = mode == 2 ? src : mode == 4 ? tile + 16 * 16 - 8 * 16 + 8 : tile + (mode == 1 ? 2 : 0);
  const unsigned short* row = base + (lane & 15) * 16 + (lane >> 4) * 8;
  uint32_t r[4];
  if (trans)
    mm::cuda::ptx::ldmatrix_x4<true>(r, row);
  else
    mm::cuda::ptx::ldmatrix_x4<false>(r, row);
  for (int j = 0; j < 4; ++j) {
    out[lane * 8 + 2 * j] = float(r[j] & 0xffffu);
    out[lane * 8 + 2 * j + 1] = float(r[j] >> 16);
  }
}

// cp.async of 16 bytes from src into dynamic shared memory; out[i] = what thread 0 then reads
// there (4 floats): after wait_group 0 (wait) or without it.
__global__ void async_copy(float* out, const float* src, bool wait) {
  extern __shared__ __align__(128) float async_smem[];
  if (threadIdx.x == 0) {
    ::mm::emu::cp_async16(async_smem, src, 16);
    ::mm::emu::cp_async_commit();
    if (wait) ::mm::emu::cp_async_wait(0);
    for (int i = 0; i < 4; ++i) out[i] = async_smem[i];
  }
}

// One warpgroup: D (64 x 8) = A (64 x 16, all 1) · B (8 x 16, all 2)ᵀ from unswizzled K-major
// descriptors in dynamic shared memory; out[tid] = the thread's first accumulator read before
// the wait (0: not yet computed) and out[128 + tid] after it (32).
__global__ void wgmma_deferred(float* out) {
  extern __shared__ __align__(128) uint16_t wg_smem[];  // A: 64 x 16, B: 8 x 16
  for (int i = threadIdx.x; i < 64 * 16 + 8 * 16; i += blockDim.x) {
    const __nv_bfloat16 x = __float2bfloat16(i < 64 * 16 ? 1.0f : 2.0f);
    std::memcpy(&wg_smem[i], &x, 2);
  }
  __syncthreads();
  auto desc = [](const void* p) {
    return uint64_t(::mm::emu::shared_address(p) >> 4) | uint64_t(128 >> 4) << 16 | uint64_t(256 >> 4) << 32;
  };
  float d[4] = {0, 0, 0, 0};
  ::mm::emu::wgmma_bf16(d, 8, desc(wg_smem), desc(wg_smem + 64 * 16), 1);
  ::mm::emu::wgmma_commit();
  out[threadIdx.x] = d[0];
  ::mm::emu::wgmma_wait(0);
  out[128 + threadIdx.x] = d[0];
}

// 64 threads fill a 16x16 tile (warp 1 the lower half), then warp 0 loads it with ldmatrix:
// out[lane·4 + j] = its register j's low half. Without the barrier, warp 0 may read before
// warp 1 has written.
__global__ void ldmatrix_after_writes(float* out, bool barrier) {
  __shared__ __align__(16) uint16_t tile[16 * 16];
  for (int i = threadIdx.x; i < 256; i += 64) tile[i] = static_cast<uint16_t>(i);
  if (barrier) __syncthreads();
  if (threadIdx.x < 32) {
    uint32_t r[4];
    mm::cuda::ptx::ldmatrix_x4<false>(r, tile + (threadIdx.x & 15) * 16 + (threadIdx.x >> 4) * 8);
    for (int j = 0; j < 4; ++j) out[threadIdx.x * 4 + j] = float(r[j] & 0xffffu);
  }
}

}  // namespace

void launch_ldmatrix_after_writes(float* out, bool barrier) { ldmatrix_after_writes<<<1, 64>>>(out, barrier); }
void launch_async_copy(float* out, const float* src, bool wait) { async_copy<<<1, 32, 64>>>(out, src, wait); }
void launch_wgmma_deferred(float* out) { wgmma_deferred<<<1, 128, (64 * 16 + 8 * 16) * 2>>>(out); }
void launch_tensor_core_ops(float* out, const unsigned short* src, int mode, bool trans) {
  tensor_core_ops<<<1, 32>>>(out, src, mode, trans);
}
void launch_divergent_barrier(float* out) { divergent_barrier<<<1, 32>>>(out); }
void launch_shuffle_after_exit(float* out) { shuffle_after_exit<<<1, 32>>>(out); }
void launch_neighbour(int* out, int n, int seed, bool barrier) { neighbour<<<1, n>>>(out, seed, barrier); }
void launch_warp_ops(int* out, int threads) { warp_ops<<<1, threads>>>(out); }
void launch_masks(int* out, bool overlap) { masks<<<1, 32>>>(out, overlap); }
void launch_touch(const float* p, float* out, unsigned grid_x, unsigned grid_y, unsigned block) {
  touch<<<dim3(grid_x, grid_y), block>>>(p, out);
}
void launch_big_smem(float* out, size_t bytes, bool raise_limit) {
  if (raise_limit) cudaFuncSetAttribute(big_smem<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  big_smem<3><<<1, 32, bytes>>>(out);
}
void launch_wmma_tile(float* out, int offset, unsigned ldm) { wmma_tile<<<1, 32>>>(out, offset, ldm); }
void launch_both_smem(float* out, size_t dynamic_bytes, bool raise_limit) {
  if (raise_limit) cudaFuncSetAttribute(both_smem<5>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dynamic_bytes));
  both_smem<5><<<2, 32, dynamic_bytes>>>(out);
}

}  // namespace mm::emu_test
