// tests/cuda/test_cuda_emulator.cpp: the CUDA emulator (kernels/cuda/emu/) catches what it
// promises to catch, and its warp shuffles and cuBLAS GEMMs mean what CUDA's mean. Built only
// with -DMM_CUDA_EMULATE=ON (scripts/test.sh's sanitized build).
// Run: ./build-asan/mm_tests --source-file=*test_cuda_emulator.cpp
#include <doctest/doctest.h>

#include <cublas_v2.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cuda/runtime.h"
#include "tests/cuda/emu_kernels.h"

using namespace mm;
using cuda::DeviceArray;

namespace {
std::string launch_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
}
}  // namespace

TEST_CASE("cuda emulator: a barrier or a shuffle that not every thread reaches is an error, not a hang") {
  DeviceArray<float> out(32);
  CHECK_THROWS_WITH_AS(emu_test::launch_divergent_barrier(out.data()),
                       doctest::Contains("divergent_barrier (launched at "), Error);
  CHECK_THROWS_WITH_AS(emu_test::launch_divergent_barrier(out.data()),
                       doctest::Contains("deadlock: 16 threads wait at __syncthreads, 16 at a warp operation, 0 have "
                                         "exited"),
                       Error);
  // an exited lane does not hold the others up (as on a GPU), but reading its value is an error
  CHECK_THROWS_WITH_AS(emu_test::launch_shuffle_after_exit(out.data()),
                       doctest::Contains("thread 4 shuffles from lane 5, which is not taking part (it has exited)"),
                       Error);
}

TEST_CASE("cuda emulator: a missing __syncthreads shows as a wrong result") {
  for (int n : {32, 64}) {
    DeviceArray<int> out(n);
    std::vector<int> want(n);
    for (int seed : {1000, 2000}) {  // a launch finds the previous one's values in shared memory
      for (int i = 0; i < n; ++i) want[i] = seed + (i + 1) % n;
      emu_test::launch_neighbour(out.data(), n, seed, /*barrier=*/false);
      CHECK(out.download() != want);
      emu_test::launch_neighbour(out.data(), n, seed, /*barrier=*/true);
      CHECK(out.download() == want);
    }
  }
}

TEST_CASE("cuda emulator: warp shuffles follow CUDA's lane rules") {
  const int threads = 64;
  DeviceArray<int> out(threads * 5);
  emu_test::launch_warp_ops(out.data(), threads);
  REQUIRE(launch_error() == "");
  const std::vector<int> o = out.download();
  for (int t = 0; t < threads; ++t) {
    CAPTURE(t);
    const int lane = t % 32, base = t - lane;
    CHECK(o[t * 5 + 0] == 100 + base + (lane ^ 3));
    CHECK(o[t * 5 + 1] == 100 + (lane + 4 < 32 ? t + 4 : t));
    CHECK(o[t * 5 + 2] == 100 + (lane >= 1 ? t - 1 : t));
    CHECK(o[t * 5 + 3] == 100 + base + (lane & 16) + 2);
    CHECK(o[t * 5 + 4] == 31 * 32 / 2);
  }
  // two half-warps with disjoint masks are fine; overlapping, different masks are not
  DeviceArray<int> m(32);
  emu_test::launch_masks(m.data(), /*overlap=*/false);
  const std::vector<int> mv = m.download();
  for (int t = 0; t < 32; ++t) CHECK(mv[t] == (t ^ 1));
  CHECK_THROWS_WITH_AS(emu_test::launch_masks(m.data(), /*overlap=*/true),
                       doctest::Contains("threads 16 and 0 meet at a warp operation with different masks (0xffffffff and 0xffff)"),
                       Error);
  // a block that is not whole warps: lane 4 of the last warp (8 threads) reads lane 8 (down 4)
  CHECK_THROWS_WITH_AS(emu_test::launch_warp_ops(out.data(), 40),
                       doctest::Contains("thread 36 shuffles from lane 8, which is not taking part (past the end"),
                       Error);
}

TEST_CASE("cuda emulator: launch configurations CUDA refuses, and host pointers given to kernels") {
  DeviceArray<float> p(1), out(1);
  emu_test::launch_touch(p.data(), out.data(), 1, 1, 1);
  CHECK(launch_error() == "");
  emu_test::launch_touch(p.data(), out.data(), 1, 1, 2048);
  CHECK(launch_error().find("invalid configuration argument [emulator: kernel touch at ") != std::string::npos);
  emu_test::launch_touch(p.data(), out.data(), 1, 70000, 32);
  CHECK(launch_error().find("grid 1x70000x1 (y and z at most 65535)") != std::string::npos);
  emu_test::launch_touch(p.data(), out.data(), 0, 1, 32);
  CHECK(launch_error().find("an empty grid or block") != std::string::npos);
  std::vector<float> host(1, 3.0f);
  emu_test::launch_touch(host.data(), out.data(), 1, 1, 1);
  CHECK(launch_error().find("argument 0 is a pointer outside device memory") != std::string::npos);
  emu_test::launch_touch(nullptr, out.data(), 1, 1, 1);  // null is a valid argument
  CHECK(launch_error() == "");
  CHECK(out.download()[0] == 0.0f);
  // a copy in the wrong direction
  CHECK(cudaMemcpy(host.data(), p.data(), 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  cudaGetLastError();
}

TEST_CASE("cuda emulator: shared memory over 48 KiB needs cudaFuncSetAttribute; WMMA's alignment rules") {
  DeviceArray<float> out(32);
  emu_test::launch_big_smem(out.data(), 40 << 10, false);  // under CUDA's default limit
  CHECK(launch_error() == "");
  CHECK(out.download()[0] == 93.0f);
  emu_test::launch_big_smem(out.data(), 64 << 10, false);
  CHECK(launch_error().find("65536 bytes of dynamic shared memory, over the 49152 allowed") != std::string::npos);
  emu_test::launch_big_smem(out.data(), 64 << 10, true);
  CHECK(launch_error() == "");
  CHECK(out.download()[1] == 90.0f);
  // static and dynamic shared memory count together: 16 KiB + 40 KiB needs the attribute
  emu_test::launch_both_smem(out.data(), 32 << 10, false);  // 48 KiB in all
  CHECK(launch_error() == "");
  CHECK(out.download()[1] == 35.0f);
  emu_test::launch_both_smem(out.data(), 40 << 10, false);
  CHECK(launch_error().find("16384 bytes of static and 40960 of dynamic shared memory") != std::string::npos);
  emu_test::launch_both_smem(out.data(), 40 << 10, true);
  CHECK(launch_error() == "");
  // a 32-byte aligned tile with a 16-byte multiple ldm round-trips; 8 bytes off, or ldm 22, faults
  emu_test::launch_wmma_tile(out.data(), 8, 24);
  CHECK(out.download()[31] == 31.0f);
  CHECK_THROWS_WITH_AS(emu_test::launch_wmma_tile(out.data(), 2, 24),
                       doctest::Contains("wmma::load_matrix_sync: pointer"), Error);
  CHECK_THROWS_WITH_AS(emu_test::launch_wmma_tile(out.data(), 2, 24), doctest::Contains("is not 256-bit aligned"),
                       Error);
  CHECK_THROWS_WITH_AS(emu_test::launch_wmma_tile(out.data(), 8, 22),
                       doctest::Contains("ldm 22 is not a multiple of 16 bytes (4-byte elements)"), Error);
  CHECK_THROWS_WITH_AS(emu_test::launch_wmma_tile(out.data(), 8, 22), doctest::Contains("kernel wmma_tile (launched at "),
                       Error);
}

TEST_CASE("cuda emulator: ldmatrix hands each lane the elements PTX documents; its faults and mma.sync's") {
  DeviceArray<float> out(32 * 8);
  DeviceArray<unsigned short> global(256);
  for (const bool trans : {false, true}) {
    CAPTURE(trans);
    emu_test::launch_tensor_core_ops(out.data(), global.data(), 0, trans);
    const std::vector<float> r = out.download();
    // matrix j of the x4 is the 8x8 block (rows 8·(j % 2), columns 8·(j / 2)) of the tile;
    // lane L gets its row L / 4, columns 2·(L % 4) + h (or, .trans, that element transposed)
    bool all = true;
    for (int L = 0; L < 32; ++L)
      for (int j = 0; j < 4; ++j)
        for (int h = 0; h < 2; ++h) {
          const int a = L / 4, b = 2 * (L % 4) + h;
          const int row = 8 * (j % 2) + (trans ? b : a), col = 8 * (j / 2) + (trans ? a : b);
          all = all && r[L * 8 + 2 * j + h] == float(row * 16 + col);
        }
    CHECK(all);
    CHECK(r[5 * 8 + 0] == (trans ? 2 * 16 + 1 : 1 * 16 + 2));  // lane 5, register 0, low half
  }
  CHECK_THROWS_WITH_AS(emu_test::launch_tensor_core_ops(out.data(), global.data(), 1, false),
                       doctest::Contains("is not 16-byte aligned"), Error);
  CHECK_THROWS_WITH_AS(emu_test::launch_tensor_core_ops(out.data(), global.data(), 2, true),
                       doctest::Contains("is global (device) memory; ldmatrix reads shared memory"), Error);
  CHECK_THROWS_WITH_AS(emu_test::launch_tensor_core_ops(out.data(), global.data(), 4, false),
                       doctest::Contains("does not have 16 bytes of this block's shared memory behind it"), Error);
  CHECK_THROWS_WITH_AS(emu_test::launch_tensor_core_ops(out.data(), global.data(), 3, false),
                       doctest::Contains("executes mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 without lane 5 "
                                         "(it has exited)"),
                       Error);
}

TEST_CASE("cuda emulator: cp.async lands at its wait, and wgmma computes at its wait") {
  DeviceArray<float> src(std::vector<float>{1, 2, 3, 4}), out(256);
  emu_test::launch_async_copy(out.data(), src.data(), true);
  std::vector<float> r = out.download();
  CHECK(r[0] == 1.0f);
  CHECK(r[3] == 4.0f);
  emu_test::launch_async_copy(out.data(), src.data(), false);  // read before the wait: not there yet
  r = out.download();
  CHECK(std::isnan(r[0]));
  CHECK(std::isnan(r[3]));
  // a warp at a tensor-core instruction runs ahead: without the barrier it reads warp 1's rows unwritten
  for (const bool barrier : {true, false}) {
    CAPTURE(barrier);
    emu_test::launch_ldmatrix_after_writes(out.data(), barrier);
    r = out.download();
    bool as_written = true;  // lane L, register j: row 8·(j % 2) + L / 4, column 8·(j / 2) + 2·(L % 4)
    for (int L = 0; L < 32; ++L)
      for (int j = 0; j < 4; ++j) as_written = as_written && r[L * 4 + j] == float((8 * (j % 2) + L / 4) * 16 + 8 * (j / 2) + 2 * (L % 4));
    CHECK(as_written == barrier);
  }
  emu_test::launch_wgmma_deferred(out.data());
  r = out.download();
  CHECK(r[0] == 0.0f);    // before the wait: the accumulator as it was
  CHECK(r[127] == 0.0f);
  CHECK(r[128] == 32.0f);  // after: 16 products of 1·2
  CHECK(r[255] == 32.0f);
}

TEST_CASE("cuda emulator: cuBLAS GEMMs are column-major and check their leading dimensions") {
  // A 2x3 and B 3x2, column-major; C = A·B. Exact-size allocations (the caching allocator's
  // rounding would hide the overrun below).
  const std::vector<float> a = {1, 4, 2, 5, 3, 6}, b = {7, 9, 11, 8, 10, 12};
  float *A, *B, *C;
  REQUIRE(cudaMalloc(&A, 6 * 4) == cudaSuccess);
  REQUIRE(cudaMalloc(&B, 6 * 4) == cudaSuccess);
  REQUIRE(cudaMalloc(&C, 9 * 4) == cudaSuccess);
  REQUIRE(cudaMemcpy(A, a.data(), 6 * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(B, b.data(), 6 * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  cublasHandle_t h;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const float one = 1, zero = 0;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A, 2, B, 3, &zero, C, 2) == CUBLAS_STATUS_SUCCESS);
  std::vector<float> c(4);
  REQUIRE(cudaMemcpy(c.data(), C, 4 * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(c == std::vector<float>{58, 139, 64, 154});
  // Aᵀ·Bᵀ (3x3): A stored 2x3 (lda >= 2), B stored 3x2 (ldb >= 3)
  CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_T, 3, 3, 2, &one, A, 2, B, 3, &zero, C, 3) == CUBLAS_STATUS_SUCCESS);
  c.resize(9);
  REQUIRE(cudaMemcpy(c.data(), C, 9 * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(c == std::vector<float>{39, 54, 69, 49, 68, 87, 59, 82, 105});  // column-major
  CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_T, 3, 3, 2, &one, A, 1, B, 3, &zero, C, 3) ==
        CUBLAS_STATUS_INVALID_VALUE);
  // an operand that runs past its allocation: k = 4 over 3 stored columns of A
  CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 4, &one, A, 2, B, 4, &zero, C, 2) ==
        CUBLAS_STATUS_EXECUTION_FAILED);
  cublasDestroy(h);
  cudaFree(A), cudaFree(B), cudaFree(C);
}
