// tests/kernels/test_gemm.cpp: sgemm / sgemm_implicit_b / dgemm (kernels/gemm.h) against a
// naive double-precision reference, for every micro-kernel this CPU can run (forced in turn).
//   ./build/mm_tests --source-file=*test_gemm.cpp
// Shapes are awkward on purpose: sizes 1 and primes, edges of MR/NR tiles, K across the KC
// block (K = 600 and 1300 cross KC = 512 or 1024), N across the NC panel (4096), transposed
// and strided views, alpha != 1, beta in {0, 1, 0.5} with beta = 0 on a NaN-filled C, K = 0.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <atomic>
#include <string>
#include <vector>

#include "engine/parallel.h"
#include "kernels/gemm.h"

using mm::kernels::MatrixF32;
using mm::kernels::MatrixF64;
using mm::kernels::SgemmKernel;

namespace {

enum class Trans { no, yes };

// A [rows, cols] operand stored with a row pitch larger than its width (or, transposed, as
// [cols, rows] with a larger pitch), and the strided view of it.
struct Operand {
  std::vector<float> storage;
  MatrixF32 view;
  float at(int64_t i, int64_t j) const { return view.data[i * view.rs + j * view.cs]; }
};

Operand make_operand(int64_t rows, int64_t cols, Trans trans, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  Operand op;
  const int64_t pad = 3;  // leading dimension larger than the width
  if (trans == Trans::no) {
    op.storage.assign(rows * (cols + pad), 0.f);
    for (auto& x : op.storage) x = dist(rng);
    op.view = {op.storage.data(), cols + pad, 1};
  } else {  // stored as [cols, rows + pad]: element (i, j) at j * (rows + pad) + i
    op.storage.assign(cols * (rows + pad), 0.f);
    for (auto& x : op.storage) x = dist(rng);
    op.view = {op.storage.data(), 1, rows + pad};
  }
  return op;
}

// Compares C [M, N] (row pitch ldc) with ref; one failure message names the worst element.
void check_close(const std::string& what, int64_t M, int64_t N, const float* C, int64_t ldc,
                 const std::vector<double>& ref, double atol, double rtol) {
  double max_err = 0.0;
  int64_t bad = -1, bad_count = 0;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      const double got = C[i * ldc + j], want = ref[i * N + j];
      const double err = std::fabs(got - want);
      if (!(err <= atol + rtol * std::fabs(want))) {  // also catches NaN
        ++bad_count;
        if (bad < 0 || !(err <= max_err)) bad = i * N + j;
      }
      if (err > max_err || std::isnan(err)) max_err = err;
    }
  }
  INFO(what, ": ", bad_count, " bad elements, max abs err ", max_err);
  if (bad >= 0) {
    const int64_t i = bad / N, j = bad % N;
    INFO("worst at (", i, ", ", j, "): got ", C[i * ldc + j], " want ", ref[bad]);
    CHECK(bad_count == 0);
  } else {
    CHECK(bad_count == 0);
  }
}

// ref = alpha * A @ B + beta * C0 in double (beta == 0 ignores C0, even NaN).
std::vector<double> reference(int64_t M, int64_t N, int64_t K, double alpha, const Operand& A,
                              const Operand& B, double beta, const std::vector<float>& C0,
                              int64_t ldc) {
  std::vector<double> ref(M * N);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(A.at(i, k)) * double(B.at(k, j));
      ref[i * N + j] = alpha * s + (beta == 0.0 ? 0.0 : beta * C0[i * ldc + j]);
    }
  }
  return ref;
}

void run_case(int64_t M, int64_t N, int64_t K, float alpha, float beta, Trans ta, Trans tb,
              std::mt19937& rng) {
  const Operand A = make_operand(M, K, ta, rng);
  const Operand B = make_operand(K, N, tb, rng);
  const int64_t ldc = N + 5;
  std::vector<float> C(std::max<int64_t>(1, M * ldc));
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (auto& x : C) x = beta == 0.f ? std::numeric_limits<float>::quiet_NaN() : dist(rng);
  const std::vector<float> C0 = C;
  const std::vector<double> ref = reference(M, N, K, alpha, A, B, beta, C0, ldc);
  mm::kernels::sgemm(M, N, K, alpha, A.view, B.view, beta, C.data(), ldc);
  // fp32 accumulation of K products of magnitude <= 1: error grows like sqrt(K) * eps.
  const double atol = 1e-5 * (1.0 + std::sqrt(double(K))) * std::fabs(alpha) + 1e-6;
  check_close("sgemm", M, N, C.data(), ldc, ref, atol, 1e-5);
  // Padding columns of C (j >= N) must be untouched.
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = N; j < ldc; ++j) {
      const float got = C[i * ldc + j], before = C0[i * ldc + j];
      if (!(got == before || (std::isnan(got) && std::isnan(before)))) {
        INFO("padding of C written at (", i, ", ", j, ")");
        CHECK(false);
        return;
      }
    }
}

// Every micro-kernel variant this CPU runs: avx512 (12x32) and its other tile shapes, avx2,
// portable.
std::vector<std::string> available_kernels() { return mm::kernels::sgemm_kernel_names(); }

const char* trans_name(Trans t) { return t == Trans::no ? "N" : "T"; }

// Restores the automatic kernel when a test case ends.
struct KernelGuard {
  ~KernelGuard() { mm::kernels::set_sgemm_kernel(SgemmKernel::automatic); }
};

// Runs fn exactly as with one thread: a call from inside a parallel region runs inline with
// thread count 1. (Not mm::set_num_threads(1) and back: resizing the pool after it has run
// a job crashes in engine/parallel.cpp until new workers start from the current generation.)
void run_single_threaded(const std::function<void()>& fn) {
  mm::parallel_run(2, [&](int t, int) {
    if (t == 0) fn();
  });
}

}  // namespace

TEST_CASE("sgemm matches a double reference for every micro-kernel") {
  KernelGuard guard;
  for (const std::string& kernel : available_kernels()) {
    mm::kernels::set_sgemm_kernel(kernel);
    const std::string kname = mm::kernels::sgemm_kernel_name();
    std::mt19937 rng(1);
    const int64_t sizes[] = {1, 3, 17, 31, 33, 65, 127, 257};
    // All size combinations for non-transposed operands, alpha = 1, beta = 0.
    for (int64_t M : sizes)
      for (int64_t N : sizes)
        for (int64_t K : sizes) {
          SUBCASE((kname + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                   " K=" + std::to_string(K) + " NN alpha=1 beta=0").c_str()) {
            run_case(M, N, K, 1.f, 0.f, Trans::no, Trans::no, rng);
          }
        }
    // Transposes, alpha, beta on a few shapes that cross tile and block edges.
    struct Shape { int64_t M, N, K; };
    const Shape shapes[] = {{1, 300, 17}, {300, 1, 33}, {33, 65, 300}, {65, 127, 513},
                            {127, 33, 1}, {31, 257, 600}, {20, 70, 1300}};
    for (const Shape& s : shapes)
      for (Trans ta : {Trans::no, Trans::yes})
        for (Trans tb : {Trans::no, Trans::yes})
          for (float beta : {0.f, 1.f, 0.5f}) {
            const float alpha = 0.75f;
            SUBCASE((kname + " M=" + std::to_string(s.M) + " N=" + std::to_string(s.N) +
                     " K=" + std::to_string(s.K) + " " + trans_name(ta) + trans_name(tb) +
                     " alpha=0.75 beta=" + std::to_string(beta)).c_str()) {
              run_case(s.M, s.N, s.K, alpha, beta, ta, tb, rng);
            }
          }
    SUBCASE((kname + " K=0 beta=0.5 and beta=0").c_str()) {
      run_case(17, 33, 0, 1.f, 0.5f, Trans::no, Trans::no, rng);
      run_case(17, 33, 0, 1.f, 0.f, Trans::no, Trans::no, rng);
    }
    SUBCASE((kname + " N=4200 crosses the NC panel, M=13 K=70 beta=0.5").c_str()) {
      run_case(13, 4200, 70, 1.f, 0.5f, Trans::no, Trans::no, rng);
    }
  }
}

TEST_CASE("sgemm results are bitwise identical with 1 and num_threads() threads") {
  KernelGuard guard;
  for (const std::string& kernel : available_kernels()) {
    mm::kernels::set_sgemm_kernel(kernel);
    struct Shape { int64_t M, N, K; };
    for (Shape s : {Shape{300, 257, 513}, Shape{12, 4100, 300}, Shape{64, 64, 64}, Shape{50, 70, 1300}}) {
      SUBCASE((std::string(mm::kernels::sgemm_kernel_name()) + " M=" + std::to_string(s.M) +
               " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K) + " beta=0.5").c_str()) {
        std::mt19937 rng(2);
        const Operand A = make_operand(s.M, s.K, Trans::no, rng);
        const Operand B = make_operand(s.K, s.N, Trans::no, rng);
        std::vector<float> C0(s.M * s.N);
        for (auto& x : C0) x = std::uniform_real_distribution<float>(-1.f, 1.f)(rng);
        std::vector<float> c1 = C0, c2 = C0;
        if (mm::num_threads() < 2) MESSAGE("mm runs with 1 thread (MM_NUM_THREADS?): comparing 1 with 1");
        run_single_threaded([&] {
          mm::kernels::sgemm(s.M, s.N, s.K, 1.25f, A.view, B.view, 0.5f, c1.data(), s.N);
        });
        mm::kernels::sgemm(s.M, s.N, s.K, 1.25f, A.view, B.view, 0.5f, c2.data(), s.N);
        int64_t differing = 0;
        for (int64_t i = 0; i < s.M * s.N; ++i) differing += c1[i] != c2[i];
        INFO(differing, " elements differ between 1 and ", mm::num_threads(), " threads");
        CHECK(differing == 0);
      }
    }
  }
}

TEST_CASE("sgemm_implicit_b equals sgemm on the same B") {
  KernelGuard guard;
  for (const std::string& kernel : available_kernels()) {
    mm::kernels::set_sgemm_kernel(kernel);
    struct Shape { int64_t M, N, K; };
    for (Shape s : {Shape{128, 4100, 300}, Shape{33, 65, 257}, Shape{5, 7, 3}, Shape{1, 1, 1}}) {
      SUBCASE((std::string(mm::kernels::sgemm_kernel_name()) + " implicit M=" + std::to_string(s.M) +
               " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K)).c_str()) {
        std::mt19937 rng(3);
        const Operand A = make_operand(s.M, s.K, Trans::no, rng);
        const Operand B = make_operand(s.K, s.N, Trans::no, rng);
        std::atomic<bool> out_of_range{false};
        const mm::kernels::FillB fill = [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                                            float* dst) {
          // Called from worker threads: record a bad block rather than assert there. Blocks
          // must lie inside B and have at most 64 columns (kernels/gemm.h).
          if (k0 < 0 || kc < 1 || k0 + kc > s.K || n0 < 0 || nc < 1 || nc > 64 || n0 + nc > s.N) {
            out_of_range = true;
            return;
          }
          for (int64_t kk = 0; kk < kc; ++kk)
            for (int64_t nn = 0; nn < nc; ++nn) dst[kk * nc + nn] = B.at(k0 + kk, n0 + nn);
        };
        std::vector<float> c_explicit(s.M * s.N), c_implicit(s.M * s.N, NAN);
        mm::kernels::sgemm(s.M, s.N, s.K, 0.5f, A.view, B.view, 0.f, c_explicit.data(), s.N);
        mm::kernels::sgemm_implicit_b(s.M, s.N, s.K, 0.5f, A.view, fill, 0.f, c_implicit.data(), s.N);
        int64_t differing = 0;
        for (int64_t i = 0; i < s.M * s.N; ++i) differing += c_explicit[i] != c_implicit[i];
        CHECK_FALSE(out_of_range);
        INFO(differing, " elements differ between explicit and implicit B");
        CHECK(differing == 0);
      }
    }
  }
}

TEST_CASE("sgemm_packed equals sgemm on the B it was packed from; a stale pack is refused") {
  KernelGuard guard;
  for (const std::string& kernel : available_kernels()) {
    mm::kernels::set_sgemm_kernel(kernel);
    struct Shape { int64_t M, N, K; };
    // N across the NC panel and K across KC blocks; M of a transformer's rows; tiny sizes.
    for (Shape s : {Shape{50, 4100, 1300}, Shape{400, 96, 768}, Shape{33, 65, 257}, Shape{5, 7, 3}, Shape{1, 1, 1}}) {
      for (Trans tb : {Trans::yes, Trans::no}) {
        SUBCASE((std::string(mm::kernels::sgemm_kernel_name()) + " packed M=" + std::to_string(s.M) + " N=" +
                 std::to_string(s.N) + " K=" + std::to_string(s.K) + (tb == Trans::yes ? " B^T" : ""))
                    .c_str()) {
          std::mt19937 rng(5);
          const Operand A = make_operand(s.M, s.K, Trans::no, rng);
          const Operand B = make_operand(s.K, s.N, tb, rng);  // B^T: a linear weight [N, K]
          const mm::kernels::PackedB packed = mm::kernels::pack_b(s.K, s.N, B.view);
          CHECK(packed.usable());
          for (float beta : {0.f, 0.5f}) {
            std::vector<float> c_plain(s.M * s.N, 0.25f), c_packed(s.M * s.N, beta == 0.f ? NAN : 0.25f);
            mm::kernels::sgemm(s.M, s.N, s.K, 0.5f, A.view, B.view, beta, c_plain.data(), s.N);
            mm::kernels::sgemm_packed(s.M, s.N, s.K, 0.5f, A.view, packed, beta, c_packed.data(), s.N);
            int64_t differing = 0;
            for (int64_t i = 0; i < s.M * s.N; ++i) differing += !(c_plain[i] == c_packed[i]);
            INFO(differing, " elements differ between sgemm and sgemm_packed, beta ", beta);
            // Below sgemm's small-problem size sgemm skips packing and sums in another order.
            if (s.M * s.N * s.K >= 32 * 32 * 32) {
              CHECK(differing == 0);
            } else {
              std::vector<double> ref(s.M * s.N);
              for (int64_t i = 0; i < s.M; ++i)
                for (int64_t j = 0; j < s.N; ++j) {
                  double acc = 0;
                  for (int64_t k = 0; k < s.K; ++k) acc += double(A.at(i, k)) * B.at(k, j);
                  ref[i * s.N + j] = 0.5 * acc + beta * 0.25;
                }
              check_close("packed small", s.M, s.N, c_packed.data(), s.N, ref, 1e-5, 1e-5);
            }
          }
          std::vector<float> c(s.M * s.N);
          CHECK_THROWS_WITH(mm::kernels::sgemm_packed(s.M, s.N + 1, s.K, 1.f, A.view, packed, 0.f, c.data(), s.N + 1),
                            doctest::Contains("was packed as"));
        }
      }
    }
  }
  // Packed for one micro-kernel, used under another: refused, not misread.
  const std::vector<std::string> kernels = available_kernels();
  if (kernels.size() >= 2) {
    std::vector<float> a(64 * 64, 1.f), b(64 * 64, 1.f), c(64 * 64);
    mm::kernels::set_sgemm_kernel(kernels[0]);
    const mm::kernels::PackedB packed = mm::kernels::pack_b(64, 64, {b.data(), 64, 1});
    mm::kernels::set_sgemm_kernel(kernels.back());
    CHECK_FALSE(packed.usable());
    CHECK_THROWS_WITH(mm::kernels::sgemm_packed(64, 64, 64, 1.f, {a.data(), 64, 1}, packed, 0.f, c.data(), 64),
                      doctest::Contains("pack it again"));
  }
}

TEST_CASE("sgemm_implicit_b rethrows an error from fill_b") {
  KernelGuard guard;
  std::vector<float> a(64 * 300, 1.f), c(64 * 512);
  const mm::kernels::FillB fill = [](int64_t, int64_t, int64_t n0, int64_t, float*) {
    if (n0 >= 256) throw std::runtime_error("fill_b failed");
  };
  CHECK_THROWS_WITH(mm::kernels::sgemm_implicit_b(64, 512, 300, 1.f, {a.data(), 300, 1}, fill,
                                                  0.f, c.data(), 512),
                    "fill_b failed");
}

TEST_CASE("dgemm matches a naive loop") {
  KernelGuard guard;
  struct Shape { int64_t M, N, K; };
  for (Shape s : {Shape{1, 1, 1}, Shape{17, 31, 65}, Shape{65, 1030, 300}, Shape{3, 5, 0}})
    for (bool trans_b : {false, true})
      for (double beta : {0.0, 0.5}) {
        SUBCASE(("dgemm M=" + std::to_string(s.M) + " N=" + std::to_string(s.N) + " K=" +
                 std::to_string(s.K) + (trans_b ? " NT" : " NN") + " beta=" + std::to_string(beta))
                    .c_str()) {
            std::mt19937 rng(4);
          std::uniform_real_distribution<double> dist(-1.0, 1.0);
          std::vector<double> a(s.M * s.K), b(s.K * s.N), c(s.M * s.N);
          for (auto& x : a) x = dist(rng);
          for (auto& x : b) x = dist(rng);
          for (auto& x : c) x = beta == 0.0 ? NAN : dist(rng);
          const MatrixF64 bview = trans_b ? MatrixF64{b.data(), 1, s.K} : MatrixF64{b.data(), s.N, 1};
          std::vector<double> ref(s.M * s.N);
          for (int64_t i = 0; i < s.M; ++i)
            for (int64_t j = 0; j < s.N; ++j) {
              long double acc = 0;
              for (int64_t k = 0; k < s.K; ++k)
                acc += (long double)a[i * s.K + k] * bview.data[k * bview.rs + j * bview.cs];
              ref[i * s.N + j] = double(-1.5L * acc) + (beta == 0.0 ? 0.0 : beta * c[i * s.N + j]);
            }
          mm::kernels::dgemm(s.M, s.N, s.K, -1.5, {a.data(), s.K, 1}, bview, beta, c.data(), s.N);
          int64_t bad = 0;
          double max_err = 0;
          for (int64_t i = 0; i < s.M * s.N; ++i) {
            const double err = std::fabs(c[i] - ref[i]);
            if (!(err <= 1e-12 * (1 + s.K))) ++bad;
            if (!(err <= max_err)) max_err = err;
          }
          INFO(bad, " bad elements, max abs err ", max_err);
          CHECK(bad == 0);
        }
      }
}

TEST_CASE("sgemm rejects bad arguments with a clear error") {
  std::vector<float> a(16), b(16), c(16);
  CHECK_THROWS_WITH(mm::kernels::sgemm(-1, 4, 4, 1.f, {a.data(), 4, 1}, {b.data(), 4, 1}, 0.f,
                                       c.data(), 4),
                    doctest::Contains("negative size"));
  CHECK_THROWS_WITH(mm::kernels::sgemm(4, 4, 4, 1.f, {a.data(), 4, 1}, {b.data(), 4, 1}, 0.f,
                                       c.data(), 2),
                    doctest::Contains("ldc=2"));
}
