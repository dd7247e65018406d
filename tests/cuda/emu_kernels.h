// tests/cuda/emu_kernels.h: host launchers of tests/cuda/emu_kernels.cu (emulator builds only).
#pragma once

namespace mm::emu_test {
void launch_divergent_barrier(float* out);                      // 32 threads
void launch_shuffle_after_exit(float* out);                     // 32 threads
void launch_neighbour(int* out, int n, int seed, bool barrier);  // n <= 64 threads
void launch_warp_ops(int* out, int threads);                     // out: 5 ints per thread
void launch_masks(int* out, bool overlap);                       // 32 threads
void launch_touch(const float* p, float* out, unsigned grid_x, unsigned grid_y, unsigned block);
}  // namespace mm::emu_test
