// tests/cuda/emu_kernels.h: host launchers of tests/cuda/emu_kernels.cu (emulator builds only).
#pragma once
#include <cstddef>

namespace mm::emu_test {
void launch_divergent_barrier(float* out);                      // 32 threads
void launch_shuffle_after_exit(float* out);                     // 32 threads
void launch_neighbour(int* out, int n, int seed, bool barrier);  // n <= 64 threads
void launch_warp_ops(int* out, int threads);                     // out: 5 ints per thread
void launch_masks(int* out, bool overlap);                       // 32 threads
void launch_touch(const float* p, float* out, unsigned grid_x, unsigned grid_y, unsigned block);
void launch_big_smem(float* out, size_t bytes, bool raise_limit);  // 32 threads; raise: cudaFuncSetAttribute first
void launch_wmma_tile(float* out, int offset, unsigned ldm);       // one warp
void launch_both_smem(float* out, size_t dynamic_bytes, bool raise_limit);  // 16 KiB static + dynamic_bytes
// ldmatrix/mma.sync (ptx.cuh): out [32·8]; mode 0 loads, 1 misaligned rows, 2 rows in global
// memory (src, 256 elements), 3 an mma.sync without lane 5, 4 rows past the shared array's end
void launch_tensor_core_ops(float* out, const unsigned short* src, int mode, bool trans);
void launch_async_copy(float* out, const float* src, bool wait);  // out: 4 floats
void launch_ldmatrix_after_writes(float* out, bool barrier);       // out: 128 floats
void launch_wgmma_deferred(float* out);                             // out: 256 floats
}  // namespace mm::emu_test
