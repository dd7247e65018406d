// kernels/gemm.h: the CPU matrix multiply that linear, matmul and conv2d stand on.
// Reading order: first file of kernels/; it knows nothing of Tensor or the graph.
//
//   // C[2,3] = A[2,4] @ B[4,3], all row-major and contiguous:
//   mm::kernels::sgemm(2, 3, 4, 1.f, {a, 4, 1}, {b, 3, 1}, 0.f, c, 3);
//   // C = A @ B^T, with B stored as [3, 4] row-major: swap B's strides.
//   mm::kernels::sgemm(2, 3, 4, 1.f, {a, 4, 1}, {bt, 1, 4}, 0.f, c, 3);
//
// Implementation: kernels/cpu/gemm.cpp (Goto/BLIS blocking, threading, dispatch) and
// kernels/cpu/gemm_avx512.cpp, gemm_avx2.cpp (register-tiled micro-kernels).
// Test:  ./build/mm_tests --source-file=*test_gemm.cpp
// Bench: ./build/mmbench gemm --m 1024 --n 1024 --k 1024 --threads 2; bench/compare_cpu.sh
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mm::kernels {

// Strided matrix view: element (i, j) is data[i * rs + j * cs]. Transposes are free: swap rs/cs.
struct MatrixF32 {
  const float* data;
  int64_t rs;
  int64_t cs;
};
struct MatrixF64 {
  const double* data;
  int64_t rs;
  int64_t cs;
};

// C[M,N] = alpha * A[M,K] @ B[K,N] + beta * C, with C row-major (element (i,j) at C[i*ldc + j]).
// beta == 0 means C is write-only (never read, so NaN garbage in C is fine). K == 0 → C = beta*C.
// Results are bitwise identical for any thread count (mm::set_num_threads / MM_NUM_THREADS):
// every C element is accumulated in the same k order by the same micro-kernel.
void sgemm(int64_t M, int64_t N, int64_t K, float alpha, MatrixF32 A, MatrixF32 B, float beta,
           float* C, int64_t ldc);

// Implicit-B variant for convolution: B is never materialised; the GEMM asks for blocks of it
// while packing: fill_b(k0, kc, n0, nc, dst) must write B[k0+kk][n0+nn] to dst[kk*nc + nn]
// for kk < kc, nn < nc. Called concurrently from several threads with disjoint blocks.
// (conv2d implements fill_b as an on-the-fly im2col.) A block is one packed micro-panel:
// nc <= 64 columns (the micro-kernel's NR; sgemm_kernel_name() says which).
using FillB = std::function<void(int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* dst)>;
void sgemm_implicit_b(int64_t M, int64_t N, int64_t K, float alpha, MatrixF32 A,
                      const FillB& fill_b, float beta, float* C, int64_t ldc);

// A B matrix packed once into the micro-kernel's layout, for a B that many calls share (a
// frozen linear weight). Packing is not free: for a weight [N, K] used as B = W^T, the packed
// [K, N] panel is larger than the caches, and at transformer sizes (M of a few hundred rows)
// packing it costs a third of the multiply. sgemm_packed skips that work and gives bitwise the
// same C as sgemm with the B it was packed from (same K blocks, same micro-kernel).
// Layout: for each K block [k0, k0 + kc) (the blocks sgemm uses), the micro-panels of all N
// columns in order, each [kc, NR] with zero padding: element (k, j) of block b at
// data[k0 * n_padded + (j / NR) * kc * NR + (k - k0) * NR + j % NR].
struct PackedB {
  int64_t K = 0, N = 0;
  int64_t kc = 0, nr = 0, n_padded = 0;  // the blocking it was packed for
  const char* kernel = "";               // sgemm_kernel_name() at packing time
  std::shared_ptr<float> data;           // K * n_padded floats, 64-byte aligned
  // Whether sgemm_packed can use it: the micro-kernel and blocking are still the ones it was
  // packed for (set_sgemm_kernel or MM_GEMM_* may change them).
  bool usable() const;
};
PackedB pack_b(int64_t K, int64_t N, MatrixF32 B);
// C = alpha * A @ B + beta * C with B packed by pack_b; throws if !B.usable() or the sizes differ.
void sgemm_packed(int64_t M, int64_t N, int64_t K, float alpha, MatrixF32 A, const PackedB& B, float beta,
                  float* C, int64_t ldc);

// Double precision (float64 gradient checks): correct, cache-blocked, modestly fast.
void dgemm(int64_t M, int64_t N, int64_t K, double alpha, MatrixF64 A, MatrixF64 B, double beta,
           double* C, int64_t ldc);

// ---- micro-kernel selection (tests and benchmarks) -------------------------------------
// At first use the best kernel the CPU supports is chosen: avx512, else avx2 (+fma), else
// portable. The environment variable MM_GEMM_KERNEL=avx512|avx2|portable forces one.
enum class SgemmKernel { automatic, avx512, avx2, portable };

// Which micro-kernel sgemm uses now: "avx512", "avx2" or "portable".
const char* sgemm_kernel_name();
// Whether this CPU can run `kernel` (automatic and portable always can).
bool sgemm_kernel_available(SgemmKernel kernel);
// Every micro-kernel variant this CPU can run, by name: the defaults "avx512", "avx2",
// "portable" and the other measured tile shapes ("avx512_8x48", ...; see gemm_avx512.cpp).
std::vector<std::string> sgemm_kernel_names();
// Forces a variant by name (as MM_GEMM_KERNEL does); throws mm::Error if unknown/unsupported.
void set_sgemm_kernel(const std::string& name);
// Forces a micro-kernel for all later calls (automatic = the start-up choice again: the
// MM_GEMM_KERNEL variable if set, else the CPU's best; it also rereads MM_GEMM_KC/MC/NC).
// Throws mm::Error if the CPU cannot run it. Not thread-safe against concurrent sgemm calls.
void set_sgemm_kernel(SgemmKernel kernel);

}  // namespace mm::kernels
