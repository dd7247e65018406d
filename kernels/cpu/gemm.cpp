// kernels/cpu/gemm.cpp: the SGEMM driver (Goto/BLIS blocking, packing, threading, run-time
// micro-kernel dispatch), the portable micro-kernel, and the simple cache-blocked DGEMM.
// Reading order: after kernels/gemm.h; the micro-kernels live in gemm_avx512.cpp/gemm_avx2.cpp.
// Test:  ./build/mm_tests --source-file=*test_gemm.cpp
// Bench: ./build/mmbench gemm --m 1024 --n 1024 --k 1024 --threads 2; bench/compare_cpu.sh
//
// Loop nest of one sgemm call (C[M,N] += A[M,K] @ B[K,N]):
//   for jc in N step NC:                         B panel [kc, nc] lives in L3, shared by threads
//     for pc in K step KC:                         (K split into equal blocks of <= KC)
//       pack B[pc:pc+kc, jc:jc+nc] -> NR-wide micro-panels [kc, NR] (all threads, then barrier)
//       for ic in (this thread's rows) step MC:  A block [mc, kc] lives in this core's L2
//         pack A[ic:ic+mc, pc:pc+kc] -> MR-tall micro-panels [kc, MR]
//         for jr in (this thread's columns) step NR:   B micro-panel [kc, NR] stays in L1
//           for ir in mc step MR: micro-kernel -> C tile [MR, NR]
// beta is applied on the first pc block only (later blocks add with beta = 1); alpha is
// applied by the micro-kernel when it writes C.
//
// Threads: the (rows x columns) of each B panel are split over a tm x tn thread grid chosen
// from the shape; K is never split, so every C element sees the same k order, the same
// KC blocks and the same micro-kernel arithmetic for any thread count: results are bitwise
// identical with 1 or N threads. Double-buffered B panels need one barrier per pc block.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "engine/error.h"
#include "engine/parallel.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm_microkernels.h"
#include "kernels/gemm.h"

namespace mm::kernels {
namespace {

using cpu::MicroKernelFn;
using cpu::PackFn;

// ---- portable micro-kernel: plain loops, 4 x 16 tile -----------------------------------
constexpr int64_t kPortableMR = 4, kPortableNR = 16;

void sgemm_portable_4x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                         float alpha, float beta, int64_t m, int64_t n) {
  float acc[kPortableMR][kPortableNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int64_t i = 0; i < kPortableMR; ++i) {
      const float ai = a[k * kPortableMR + i];
      for (int64_t j = 0; j < kPortableNR; ++j) acc[i][j] += ai * b[k * kPortableNR + j];
    }
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float& out = c[i * ldc + j];
      out = beta != 0.f ? alpha * acc[i][j] + beta * out : alpha * acc[i][j];
    }
  }
}

// ---- the table of micro-kernels --------------------------------------------------------
// Blocking, measured on Zen 5 (1 MiB L2, 48 KiB L1 per core) rather than derived from the
// textbook "B micro-panel in L1, A block in L2": every KC block costs one read-modify-write
// pass over all of C (16 MiB at 2048^2, from DRAM), and that traffic outweighs L1 misses,
// which Zen 5's L2 bandwidth hides. So kc = 1024 (B micro-panel [1024, 32] = 128 KiB, in L2),
// mc = 768 rows per A block, nc = 4096: kc 1024 beat 512 by 3-5% and 256 by ~10% at 2048^3;
// kc 2048 and nc 1024/2048 gained nothing. MM_GEMM_KC / MM_GEMM_MC / MM_GEMM_NC override.
struct Variant {
  const char* name;
  SgemmKernel isa;
  int64_t mr, nr;
  MicroKernelFn fn;
  int64_t kc, mc, nc;
  PackFn pack_copy;       // nullptr: plain loops
  PackFn pack_transpose;  // nullptr: plain loops
};

const Variant kVariants[] = {
    // The first entry of each isa is its default; the others stay selectable by name
    // (MM_GEMM_KERNEL=avx512_6x64) and are tested. Measurements: header of gemm_avx512.cpp.
    {"avx512", SgemmKernel::avx512, 12, 32, cpu::sgemm_avx512_12x32, 1024, 768, 4096,
     cpu::pack_copy_avx512, cpu::pack_transpose_avx512},
    {"avx512_6x64", SgemmKernel::avx512, 6, 64, cpu::sgemm_avx512_6x64, 1024, 768, 4096,
     cpu::pack_copy_avx512, cpu::pack_transpose_avx512},
    {"avx512_8x48", SgemmKernel::avx512, 8, 48, cpu::sgemm_avx512_8x48, 1024, 768, 4128,
     cpu::pack_copy_avx512, cpu::pack_transpose_avx512},
    {"avx512_14x32", SgemmKernel::avx512, 14, 32, cpu::sgemm_avx512_14x32, 1024, 770, 4096,
     cpu::pack_copy_avx512, cpu::pack_transpose_avx512},
    {"avx2", SgemmKernel::avx2, 6, 16, cpu::sgemm_avx2_6x16, 512, 384, 4096, nullptr, nullptr},
    {"portable", SgemmKernel::portable, kPortableMR, kPortableNR, sgemm_portable_4x16, 256, 128,
     4096, nullptr, nullptr},
};

bool cpu_supports(SgemmKernel isa) {
  switch (isa) {
    case SgemmKernel::avx512:
      return cpu::cpu_has_avx512();
    case SgemmKernel::avx2:
      return cpu::cpu_has_avx2();
    case SgemmKernel::automatic:
    case SgemmKernel::portable:
      return true;
  }
  return false;
}

const Variant& first_of(SgemmKernel isa) {
  for (const Variant& v : kVariants)
    if (v.isa == isa) return v;
  return kVariants[0];
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* s = std::getenv(name);
  if (!s) return fallback;
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  MM_CHECK(end != s && *end == '\0' && v > 0, "[sgemm] ", name, " must be a positive integer, got '",
           s, "'");
  return v;
}

Variant apply_env_blocking(Variant v) {
  v.kc = env_int("MM_GEMM_KC", v.kc);
  v.mc = std::max(v.mr, env_int("MM_GEMM_MC", v.mc) / v.mr * v.mr);
  v.nc = std::max(v.nr, env_int("MM_GEMM_NC", v.nc) / v.nr * v.nr);
  return v;
}

// The variant called `name`, with MM_GEMM_KC/MC/NC applied; throws if unknown or unsupported.
Variant variant_by_name(const std::string& name, const char* origin) {
  for (const Variant& v : kVariants) {
    if (name == v.name) {
      MM_CHECK(cpu_supports(v.isa), "[sgemm] ", origin, name, " but this CPU does not support it");
      return apply_env_blocking(v);
    }
  }
  std::string names;
  for (const Variant& v : kVariants) names += std::string(names.empty() ? "" : ", ") + v.name;
  throw Error(str_cat("[sgemm] unknown micro-kernel ", origin, name, " (known: ", names, ")"));
}

Variant choose_variant() {
  if (const char* forced = std::getenv("MM_GEMM_KERNEL")) return variant_by_name(forced, "MM_GEMM_KERNEL=");
  for (SgemmKernel isa : {SgemmKernel::avx512, SgemmKernel::avx2})
    if (cpu_supports(isa)) return apply_env_blocking(first_of(isa));
  return apply_env_blocking(first_of(SgemmKernel::portable));
}

Variant g_variant;
std::once_flag g_variant_once;

const Variant& variant() {
  std::call_once(g_variant_once, [] { g_variant = choose_variant(); });
  return g_variant;
}

// ---- buffers, barrier -------------------------------------------------------------------
// Grow-only 64-byte aligned scratch, one per thread, so packing never mallocs per call.
// Buffers of 1 MiB and more sit on 2 MiB boundaries and ask for transparent huge pages: the
// micro-kernels sweep MiB-sized packed panels, and 4 KiB pages would cost TLB misses.
// Memory for `floats` packed floats (free with std::free): 64-byte aligned, and from 1 MiB on
// on 2 MiB boundaries with a transparent-huge-page hint, since the micro-kernels stream packed
// panels and 4 KiB pages cost TLB misses and stop the hardware prefetchers at each boundary.
float* alloc_packed(int64_t floats, const char* what) {
  constexpr size_t kHuge = size_t(2) << 20;
  size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
  const bool huge = bytes >= kHuge / 2;
  if (huge) bytes = (bytes + kHuge - 1) / kHuge * kHuge;
  float* p = static_cast<float*>(std::aligned_alloc(huge ? kHuge : 64, bytes));
  MM_CHECK(p != nullptr, "out of memory allocating ", bytes, " bytes for ", what);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
  return p;
}

class AlignedBuffer {
 public:
  ~AlignedBuffer() { std::free(data_); }
  float* get(int64_t floats) {
    if (floats > size_) {
      std::free(data_);
      data_ = alloc_packed(floats, "an sgemm packing buffer");
      size_ = floats;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t size_ = 0;
};

thread_local AlignedBuffer tls_pack_a;  // this thread's packed A block [mc, kc]
thread_local AlignedBuffer tls_pack_b;  // the calling thread's two packed B panels, shared

// Spin barrier for the threads of one sgemm call. Spins briefly, then yields: the machine is
// shared, and a descheduled partner must not cost a whole time slice of busy waiting.
class Barrier {
 public:
  void wait(int threads) {
    if (threads == 1) return;
    const int gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == threads) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(gen + 1, std::memory_order_release);
      return;
    }
    for (int spin = 0; generation_.load(std::memory_order_acquire) == gen; ++spin)
      if (spin > 2000) std::this_thread::yield();
  }

 private:
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- packing ------------------------------------------------------------------------------
// A micro-panels: dst[p][k][i] = A(i0 + p*MR + i, k0 + k), zero rows past M. dst: [mc/MR, kc, MR]
void pack_a(const MatrixF32& A, int64_t M, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
            int64_t MR, const Variant& v, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR, dst += kc * MR) {
    const int64_t rows = std::min(MR, M - i0 - ir);
    const float* src = A.data + (i0 + ir) * A.rs + k0 * A.cs;
    if (A.cs == 1 && v.pack_transpose) {
      v.pack_transpose(src, A.rs, rows, kc, MR, dst);  // row-major A
    } else if (A.rs == 1 && v.pack_copy) {
      v.pack_copy(src, A.cs, rows, kc, MR, dst);  // column-major (transposed) A
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t i = 0; i < rows; ++i) dst[k * MR + i] = src[k * A.cs + i * A.rs];
        for (int64_t i = rows; i < MR; ++i) dst[k * MR + i] = 0.f;
      }
    }
  }
}

// Where B comes from: a strided matrix, or conv2d's on-the-fly fill callback.
struct BSource {
  MatrixF32 mat;
  const FillB* fill;             // non-null: implicit B
  const PackedB* packed = nullptr;  // non-null: B packed ahead (pack_b)
};

// One B micro-panel: dst[k][j] = B(k0 + k, j0 + j) for j < cols, zero for cols <= j < NR.
void pack_b_panel(const BSource& B, int64_t k0, int64_t kc, int64_t j0, int64_t cols, int64_t NR,
                  const Variant& v, float* dst) {
  if (B.fill) {
    (*B.fill)(k0, kc, j0, cols, dst);  // writes dst[kk*cols + nn]
    if (cols < NR) {
      // Spread rows from stride `cols` to stride NR, last row first so no row is overwritten
      // before it moves (row kk moves up by kk*(NR-cols)).
      for (int64_t kk = kc - 1; kk >= 0; --kk) {
        std::memmove(dst + kk * NR, dst + kk * cols, sizeof(float) * cols);
        std::memset(dst + kk * NR + cols, 0, sizeof(float) * (NR - cols));
      }
    }
    return;
  }
  const MatrixF32& m = B.mat;
  const float* src = m.data + k0 * m.rs + j0 * m.cs;
  if (m.cs == 1 && v.pack_copy) {
    v.pack_copy(src, m.rs, cols, kc, NR, dst);  // row-major B
  } else if (m.rs == 1 && v.pack_transpose) {
    v.pack_transpose(src, m.cs, cols, kc, NR, dst);  // column-major B, e.g. a linear weight
  } else if (m.cs == 1) {
    for (int64_t k = 0; k < kc; ++k) {
      std::memcpy(dst + k * NR, src + k * m.rs, sizeof(float) * cols);
      for (int64_t j = cols; j < NR; ++j) dst[k * NR + j] = 0.f;
    }
  } else {
    // Column-major-ish B (e.g. a transposed weight): walk each column contiguously along k.
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k * m.rs + j * m.cs];
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t j = cols; j < NR; ++j) dst[k * NR + j] = 0.f;
  }
}

// ---- small problems: no packing, no threads ------------------------------------------------
void sgemm_small(int64_t M, int64_t N, int64_t K, float alpha, const MatrixF32& A,
                 const BSource& B, float beta, float* C, int64_t ldc) {
  constexpr int64_t kChunk = 32;  // <= 64: the FillB promise on block width
  float acc[kChunk];
  float bblock[kChunk];  // used for implicit B: one column block of one row of B
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j0 = 0; j0 < N; j0 += kChunk) {
      const int64_t cols = std::min(kChunk, N - j0);
      std::fill(acc, acc + cols, 0.f);
      for (int64_t k = 0; k < K; ++k) {
        const float aik = A.data[i * A.rs + k * A.cs];
        if (B.fill) {
          (*B.fill)(k, 1, j0, cols, bblock);
          for (int64_t j = 0; j < cols; ++j) acc[j] += aik * bblock[j];
        } else {
          const float* brow = B.mat.data + k * B.mat.rs + j0 * B.mat.cs;
          for (int64_t j = 0; j < cols; ++j) acc[j] += aik * brow[j * B.mat.cs];
        }
      }
      float* crow = C + i * ldc + j0;
      for (int64_t j = 0; j < cols; ++j)
        crow[j] = beta != 0.f ? alpha * acc[j] + beta * crow[j] : alpha * acc[j];
    }
  }
}

// C = beta * C (beta == 0: write zeros without reading C).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
}

// Thread grid tm x tn (tm * tn == threads) for one B panel of `panel_cols` columns: the busiest
// thread's padded tile area plus a charge for its A packing (a thread packs all of its rows'
// A, whatever its tn), smallest wins; ties go to splitting rows.
void choose_grid(int threads, int64_t M, int64_t panel_cols, const Variant& v, int* tm, int* tn) {
  const int64_t row_units = ceil_div(M, v.mr), col_units = ceil_div(panel_cols, v.nr);
  int64_t best = -1;
  for (int r = threads; r >= 1; --r) {
    if (threads % r != 0) continue;
    const int c = threads / r;
    const int64_t rows = ceil_div(row_units, r) * v.mr, cols = ceil_div(col_units, c) * v.nr;
    const int64_t cost = rows * (cols + 32);
    if (best < 0 || cost < best) {
      best = cost;
      *tm = r;
      *tn = c;
    }
  }
}

void sgemm_driver(int64_t M, int64_t N, int64_t K, float alpha, const MatrixF32& A,
                  const BSource& B, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  // Below ~32^3 multiply-adds packing and waking threads cost more than they save.
  if (M * N * K < 32 * 32 * 32 && !B.packed) {
    sgemm_small(M, N, K, alpha, A, B, beta, C, ldc);
    return;
  }
  const Variant& v = variant();
  const int64_t MR = v.mr, NR = v.nr, NC = v.nc;
  // K in equal blocks of at most v.kc (K = 1152 with kc 1024: 576 + 576, not 1024 + 128), so
  // no block is a sliver that pays a full pass over C. Depends on K only, not on threads.
  const int64_t KC = ceil_div(K, ceil_div(K, v.kc));
  const int64_t nc_max = std::min(NC, ceil_div(N, NR) * NR);
  const int64_t kc_max = std::min(KC, K);
  const int64_t b_panel_floats = kc_max * nc_max;  // one packed B panel [kc, nc]

  // One thread per ~128^3 multiply-adds at least (a wake-up costs ~10 us), and no more
  // threads than tiles.
  const int64_t tiles = ceil_div(M, MR) * ceil_div(nc_max, NR);
  const int64_t by_work = std::max<int64_t>(1, M * N * K / (128 * 128 * 128));
  const int threads = static_cast<int>(std::min<int64_t>({num_threads(), by_work, tiles}));

  float* packed_b = B.packed ? nullptr : tls_pack_b.get(2 * b_panel_floats);
  Barrier barrier;
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;

  parallel_run(threads, [&](int t, int nt) {
    int tm = 1, tn = 1;
    choose_grid(nt, M, nc_max, v, &tm, &tn);
    const int tr = t / tn, tc = t % tn;
    // This thread's rows [row0, row1), in whole MR micro-panels.
    const int64_t row_units = ceil_div(M, MR);
    const int64_t row0 = std::min(M, row_units * tr / tm * MR);
    const int64_t row1 = std::min(M, row_units * (tr + 1) / tm * MR);
    const int64_t my_rows = row1 - row0;
    // MC blocks of equal size (rounded to MR) so the last block is not a sliver.
    const int64_t mc_blocks = std::max<int64_t>(1, ceil_div(my_rows, v.mc));
    const int64_t mc = ceil_div(ceil_div(my_rows, mc_blocks), MR) * MR;
    float* packed_a = my_rows > 0 ? tls_pack_a.get(mc * kc_max) : nullptr;

    int64_t iteration = 0;
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = std::min(NC, N - jc);
      const int64_t panels = ceil_div(nc, NR);
      for (int64_t pc = 0; pc < K; pc += KC, ++iteration) {
        const int64_t kc = std::min(KC, K - pc);
        const float* bp;
        if (B.packed) {  // packed ahead: the panel is already in place, nothing to share
          bp = B.packed->data.get() + pc * B.packed->n_padded + (jc / NR) * kc * NR;
        } else {  // all threads pack a share of the B panel's micro-panels
          float* shared = packed_b + (iteration & 1) * b_panel_floats;
          try {
            for (int64_t p = panels * t / nt; p < panels * (t + 1) / nt; ++p)
              pack_b_panel(B, pc, kc, jc + p * NR, std::min(NR, nc - p * NR), NR, v, shared + p * kc * NR);
          } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed = true;
          }
          barrier.wait(nt);
          if (failed) return;  // every thread sees it after the barrier and leaves together
          bp = shared;
        }

        const float beta_k = pc == 0 ? beta : 1.f;
        const int64_t p0 = panels * tc / tn, p1 = panels * (tc + 1) / tn;
        for (int64_t ic = row0; ic < row1; ic += mc) {
          const int64_t mcur = std::min(mc, row1 - ic);
          pack_a(A, M, ic, mcur, pc, kc, MR, v, packed_a);
          for (int64_t p = p0; p < p1; ++p) {
            const float* bpanel = bp + p * kc * NR;
            const int64_t cols = std::min(NR, nc - p * NR);
            float* cblock = C + ic * ldc + jc + p * NR;
            for (int64_t ir = 0; ir < mcur; ir += MR)
              v.fn(kc, packed_a + ir * kc, bpanel, cblock + ir * ldc, ldc, alpha, beta_k,
                   std::min(MR, mcur - ir), cols);
          }
        }
      }
    }
  });
  if (error) std::rethrow_exception(error);
}

// K's blocks as sgemm_driver makes them: equal blocks of at most kc.
int64_t k_block(int64_t K, int64_t kc) { return ceil_div(K, ceil_div(K, kc)); }

void check_args(const char* op, int64_t M, int64_t N, int64_t K, const void* a, const void* c,
                int64_t ldc) {
  MM_CHECK(M >= 0 && N >= 0 && K >= 0, "[", op, "] negative size M=", M, " N=", N, " K=", K);
  MM_CHECK(ldc >= N || M <= 1, "[", op, "] ldc=", ldc, " is smaller than N=", N);
  MM_CHECK(M == 0 || N == 0 || c != nullptr, "[", op, "] C is null for M=", M, " N=", N);
  MM_CHECK(M == 0 || K == 0 || a != nullptr, "[", op, "] A is null for M=", M, " K=", K);
}

}  // namespace

void sgemm(int64_t M, int64_t N, int64_t K, float alpha, MatrixF32 A, MatrixF32 B, float beta,
           float* C, int64_t ldc) {
  check_args("sgemm", M, N, K, A.data, C, ldc);
  MM_CHECK(N == 0 || K == 0 || B.data != nullptr, "[sgemm] B is null for K=", K, " N=", N);
  sgemm_driver(M, N, K, alpha, A, BSource{B, nullptr}, beta, C, ldc);
}

void sgemm_implicit_b(int64_t M, int64_t N, int64_t K, float alpha, MatrixF32 A,
                      const FillB& fill_b, float beta, float* C, int64_t ldc) {
  check_args("sgemm_implicit_b", M, N, K, A.data, C, ldc);
  MM_CHECK(static_cast<bool>(fill_b), "[sgemm_implicit_b] fill_b is empty");
  sgemm_driver(M, N, K, alpha, A, BSource{MatrixF32{nullptr, 0, 0}, &fill_b}, beta, C, ldc);
}

bool PackedB::usable() const {
  const Variant& v = variant();
  return data && std::strcmp(kernel, v.name) == 0 && nr == v.nr && kc == k_block(K, v.kc);
}

PackedB pack_b(int64_t K, int64_t N, MatrixF32 B) {
  MM_CHECK(K > 0 && N > 0, "[pack_b] K=", K, " and N=", N, " must be positive");
  MM_CHECK(B.data != nullptr, "[pack_b] B is null");
  const Variant& v = variant();
  PackedB p;
  p.K = K, p.N = N, p.kc = k_block(K, v.kc), p.nr = v.nr, p.kernel = v.name;
  p.n_padded = ceil_div(N, v.nr) * v.nr;
  float* d = alloc_packed(K * p.n_padded, "a packed B matrix (pack_b)");
  p.data = std::shared_ptr<float>(d, [](float* q) { std::free(q); });
  const BSource src{B, nullptr};
  const int64_t panels = p.n_padded / v.nr;
  for (int64_t pc = 0; pc < K; pc += p.kc) {
    const int64_t kc = std::min(p.kc, K - pc);
    parallel_for(0, panels, 8, [&](int64_t p0, int64_t p1) {
      for (int64_t q = p0; q < p1; ++q)
        pack_b_panel(src, pc, kc, q * v.nr, std::min(v.nr, N - q * v.nr), v.nr, v,
                     d + pc * p.n_padded + q * kc * v.nr);
    });
  }
  return p;
}

void sgemm_packed(int64_t M, int64_t N, int64_t K, float alpha, MatrixF32 A, const PackedB& B, float beta,
                  float* C, int64_t ldc) {
  check_args("sgemm_packed", M, N, K, A.data, C, ldc);
  MM_CHECK(B.K == K && B.N == N, "[sgemm_packed] B was packed as [", B.K, ", ", B.N, "] but the call has K=", K,
           " N=", N);
  MM_CHECK(B.usable(), "[sgemm_packed] B was packed for micro-kernel ", B.kernel, " (kc ", B.kc, ", nr ", B.nr,
           ") but sgemm now runs ", variant().name, ": pack it again");
  sgemm_driver(M, N, K, alpha, A, BSource{MatrixF32{nullptr, 0, 0}, nullptr, &B}, beta, C, ldc);
}

// DGEMM: rows of C split over threads (each row is one thread's, so results do not depend on
// the thread count); per row, K in blocks of 256 and N in blocks of 1024 keep the touched
// rows of B in cache. C(i, :) += (alpha * A(i, k)) * B(k, :), k ascending.
void dgemm(int64_t M, int64_t N, int64_t K, double alpha, MatrixF64 A, MatrixF64 B, double beta,
           double* C, int64_t ldc) {
  check_args("dgemm", M, N, K, A.data, C, ldc);
  MM_CHECK(N == 0 || K == 0 || B.data != nullptr, "[dgemm] B is null for K=", K, " N=", N);
  if (M == 0 || N == 0) return;
  constexpr int64_t kKB = 256, kNB = 1024;
  const int64_t grain = std::max<int64_t>(1, 32 * 32 * 32 / std::max<int64_t>(1, N * K));
  parallel_for(0, M, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0 ? 0.0 : beta * C[i * ldc + j];
    if (K == 0 || alpha == 0.0) return;
    for (int64_t j0 = 0; j0 < N; j0 += kNB) {
      const int64_t j1 = std::min(N, j0 + kNB);
      for (int64_t k0 = 0; k0 < K; k0 += kKB) {
        const int64_t k1 = std::min(K, k0 + kKB);
        for (int64_t i = i0; i < i1; ++i) {
          double* crow = C + i * ldc;
          for (int64_t k = k0; k < k1; ++k) {
            const double aik = alpha * A.data[i * A.rs + k * A.cs];
            const double* brow = B.data + k * B.rs;
            if (B.cs == 1) {
              for (int64_t j = j0; j < j1; ++j) crow[j] += aik * brow[j];
            } else {
              for (int64_t j = j0; j < j1; ++j) crow[j] += aik * brow[j * B.cs];
            }
          }
        }
      }
    }
  });
}

const char* sgemm_kernel_name() { return variant().name; }

bool sgemm_kernel_available(SgemmKernel kernel) { return cpu_supports(kernel); }

std::vector<std::string> sgemm_kernel_names() {
  std::vector<std::string> names;
  for (const Variant& v : kVariants)
    if (cpu_supports(v.isa)) names.push_back(v.name);
  return names;
}

void set_sgemm_kernel(const std::string& name) {
  variant();
  g_variant = variant_by_name(name, "");
}

void set_sgemm_kernel(SgemmKernel kernel) {
  variant();  // run the one-time choice first so it cannot overwrite this one later
  if (kernel == SgemmKernel::automatic) {
    g_variant = choose_variant();  // as at start-up: MM_GEMM_KERNEL, else the CPU's best
    return;
  }
  MM_CHECK(cpu_supports(kernel), "[sgemm] set_sgemm_kernel: this CPU cannot run the requested kernel");
  g_variant = apply_env_blocking(first_of(kernel));
}

}  // namespace mm::kernels
