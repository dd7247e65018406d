// tests/cuda/test_cuda_kernels.cpp: every CUDA kernel and every version of it against the
// engine's CPU ops (float64 where the CPU op has it), on random inputs of awkward sizes (1,
// odd, not multiples of the tiles, larger than one tile), with outputs poisoned (NaN) before
// each run so that an unwritten element fails. Tolerances: relative error on the norm,
// ‖gpu − ref‖ / ‖ref‖: float32 1e-5 (a little more where long sums or __expf enter), TF32
// 2e-3, bf16 products against the CPU product of the same bf16-rounded inputs 1e-5.
// Without a CUDA device each case prints "SKIPPED: ..." (ctest reports the file skipped);
// the argument checks at the end need no device and always run.
// Run: ./build/mm_tests --source-file=*test_cuda_kernels.cpp
#include <doctest/doctest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/mm.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#include "tests/cuda/rel_err.h"

using namespace mm;
using cuda::DeviceArray;

#define MM_REQUIRE_CUDA()                                                             \
  if (!cuda::available()) {                                                           \
    MESSAGE("SKIPPED: no CUDA device here (the kernels run on bench/device_check.sh)"); \
    return;                                                                           \
  }

namespace {

std::vector<float> randv(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  Generator g(seed);
  return Tensor::uniform({static_cast<int64_t>(n)}, g, lo, hi).to_vector<float>();
}
Tensor t64(const std::vector<float>& v, const Shape& s) {
  std::vector<double> d(v.begin(), v.end());
  return Tensor::from_vector(d, s);
}
using mm::testing::rel_err;
double rel_err(const std::vector<float>& a, const Tensor& ref) { return rel_err(a, ref.to_vector<double>()); }

// n random values rounded to bf16, `offset` elements into a buffer filled with 7s: the device
// operand (bits), and the same values as floats for the float64 reference.
struct Bf16Operand {
  std::vector<__nv_bfloat16> bits;
  std::vector<float> values;
};
Bf16Operand bf16_operand(size_t n, uint64_t seed, size_t offset = 0) {
  const std::vector<float> v = randv(n, seed);
  Bf16Operand o{std::vector<__nv_bfloat16>(offset + n, __float2bfloat16(7.0f)), std::vector<float>(n)};
  for (size_t i = 0; i < n; ++i) o.bits[offset + i] = __float2bfloat16(v[i]), o.values[i] = __bfloat162float(o.bits[offset + i]);
  return o;
}

DeviceArray<float> out_buffer(size_t n) {
  DeviceArray<float> d(n);
  d.poison();
  return d;
}

}  // namespace

TEST_CASE("cuda runtime: transfers, poison, caching allocator, stats") {
  MM_REQUIRE_CUDA();
  MESSAGE("device: " << cuda::device_description());
  const std::vector<float> h = randv(1000003, 1);
  DeviceArray<float> d(h);
  CHECK(d.download() == h);
  d.poison();
  for (float v : d.download()) REQUIRE(std::isnan(v));
  const cuda::MemoryStats s0 = cuda::memory_stats();
  { DeviceArray<float> a(12345); }
  { DeviceArray<float> b(12345); }  // takes the block a gave back
  const cuda::MemoryStats s1 = cuda::memory_stats();
  CHECK(s1.device_allocations <= s0.device_allocations + (cuda::pool_enabled() ? 1 : 2));
  CHECK(s1.requests == s0.requests + 2);
  CHECK(s1.in_use_bytes == s0.in_use_bytes);
  CHECK(s1.peak_bytes >= s0.in_use_bytes + 12345 * 4);
}

TEST_CASE("cuda elementwise: unary, binary, backward, every version, odd sizes and misaligned tails") {
  MM_REQUIRE_CUDA();
  for (int64_t n : {1, 3, 1023, 4097, (1 << 20) + 3}) {
    for (int64_t offset : {0, 1}) {  // offset 1: pointers not 16-byte aligned
      const std::vector<float> a = randv(n + offset, 10 + n, -3, 3), b = randv(n + offset, 20 + n, 0.5, 2);
      DeviceArray<float> da(a), db(b);
      std::vector<float> av(a.begin() + offset, a.end()), bv(b.begin() + offset, b.end());
      const Tensor x = t64(av, {n}), y = t64(bv, {n});
      const std::vector<std::pair<cuda::Unary, Tensor>> unary_refs = {
          {cuda::Unary::neg, neg(x)},   {cuda::Unary::exp, exp(x)},
          {cuda::Unary::silu, silu(x)}, {cuda::Unary::quick_gelu, quick_gelu(x)},
          {cuda::Unary::relu, relu(x)}, {cuda::Unary::gelu_tanh, gelu(x, GeluApprox::tanh)}};
      for (int v = 1; v <= cuda::version_count("elementwise"); ++v) {
        CAPTURE(n); CAPTURE(offset); CAPTURE(v);
        for (const auto& [op, ref] : unary_refs) {
          DeviceArray<float> out = out_buffer(n + offset);
          cuda::unary(op, da.data() + offset, out.data() + offset, n, v);
          std::vector<float> got = out.download();
          got.erase(got.begin(), got.begin() + offset);
          CHECK(rel_err(got, ref) < 2e-6);
        }
        const std::vector<std::pair<cuda::Binary, Tensor>> binary_refs = {
            {cuda::Binary::add, x + y}, {cuda::Binary::sub, x - y}, {cuda::Binary::mul, x * y}, {cuda::Binary::div, x / y}};
        for (const auto& [op, ref] : binary_refs) {
          DeviceArray<float> out = out_buffer(n + offset);
          cuda::binary(op, da.data() + offset, db.data() + offset, out.data() + offset, n, v);
          std::vector<float> got = out.download();
          got.erase(got.begin(), got.begin() + offset);
          CHECK(rel_err(got, ref) < 1e-6);
        }
      }
    }
  }
  // Backward of silu and quick_gelu against autograd.
  const int64_t n = 5001;
  const std::vector<float> xv = randv(n, 30, -4, 4), gv = randv(n, 31);
  DeviceArray<float> dx(xv), dg(gv);
  for (auto [op, f] : {std::pair<cuda::Unary, Tensor (*)(const Tensor&)>{cuda::Unary::silu, silu},
                       {cuda::Unary::quick_gelu, quick_gelu}}) {
    Tensor x = t64(xv, {n}).set_requires_grad(true);
    const Tensor ref = grad({f(x)}, {x}, {t64(gv, {n})})[0];
    DeviceArray<float> out = out_buffer(n);
    cuda::unary_backward(op, dx.data(), dg.data(), out.data(), n);
    CHECK(rel_err(out.download(), ref) < 2e-6);
  }
  // Bias rows.
  const std::vector<float> m = randv(37 * 129, 32), bias = randv(129, 33);
  DeviceArray<float> dm(m), dbias(bias), out = out_buffer(37 * 129);
  cuda::add_rows(dm.data(), dbias.data(), out.data(), 37, 129);
  CHECK(rel_err(out.download(), t64(m, {37, 129}) + t64(bias, {129})) < 1e-7);
}

TEST_CASE("cuda softmax and row reductions: every version, narrow, odd and wide rows; backward") {
  MM_REQUIRE_CUDA();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {7, 33}, {5, 1024}, {3, 1025}, {64, 4000}, {1000, 77}}) {
    CAPTURE(rows); CAPTURE(cols);
    const std::vector<float> xv = randv(rows * cols, rows * 7 + cols, -6, 6), gv = randv(rows * cols, cols);
    DeviceArray<float> x(xv), g(gv);
    Tensor xt = t64(xv, {rows, cols}).set_requires_grad(true);
    const Tensor ref = softmax(xt, -1);
    for (int v = 1; v <= cuda::version_count("softmax"); ++v) {
      CAPTURE(v);
      DeviceArray<float> y = out_buffer(rows * cols);
      cuda::softmax(x.data(), y.data(), rows, cols, v);
      CHECK(rel_err(y.download(), ref) < 1e-5);
    }
    DeviceArray<float> y(rows * cols), dx = out_buffer(rows * cols);
    cuda::softmax(x.data(), y.data(), rows, cols);
    cuda::softmax_backward(y.data(), g.data(), dx.data(), rows, cols);
    CHECK(rel_err(dx.download(), grad({ref}, {xt}, {t64(gv, {rows, cols})})[0]) < 1e-5);
    DeviceArray<float> s = out_buffer(rows), mx = out_buffer(rows);
    cuda::row_sum(x.data(), s.data(), rows, cols);
    cuda::row_max(x.data(), mx.data(), rows, cols);
    CHECK(rel_err(s.download(), sum(t64(xv, {rows, cols}), {1})) < 1e-5);
    CHECK(rel_err(mx.download(), max(t64(xv, {rows, cols}), 1).first) == 0);
  }
}

TEST_CASE("cuda softmax: rows that begin with -inf (masked positions) match the block-per-row version") {
  MM_REQUIRE_CUDA();
  const int64_t rows = 16, cols = 77;
  std::vector<float> xv = randv(rows * cols, 55, -3, 3);
  for (int64_t r = 0; r < rows; r += 2)
    for (int64_t c = 0; c <= 40; ++c) xv[r * cols + c] = -INFINITY;
  DeviceArray<float> x(xv), y1 = out_buffer(rows * cols), y2 = out_buffer(rows * cols);
  cuda::softmax(x.data(), y1.data(), rows, cols, 1);
  cuda::softmax(x.data(), y2.data(), rows, cols, 2);
  const std::vector<float> a = y1.download(), b = y2.download();
  std::vector<double> ref(xv.size());
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, z = 0;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, double(xv[r * cols + c]));
    for (int64_t c = 0; c < cols; ++c) z += std::exp(double(xv[r * cols + c]) - m);
    for (int64_t c = 0; c < cols; ++c) ref[r * cols + c] = std::exp(double(xv[r * cols + c]) - m) / z;
  }
  CHECK(rel_err(a, ref) < 1e-5);
  CHECK(rel_err(b, ref) < 1e-5);
}

TEST_CASE("cuda layer_norm: every version, with and without affine, forward and backward") {
  MM_REQUIRE_CUDA();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {50, 768}, {9, 1024}, {4, 1030}, {2, 3000}}) {
    for (bool affine : {true, false}) {
      CAPTURE(rows); CAPTURE(cols); CAPTURE(affine);
      const std::vector<float> xv = randv(rows * cols, rows + cols, -2, 3), wv = randv(cols, 2), bv = randv(cols, 3),
                               gv = randv(rows * cols, 4);
      DeviceArray<float> x(xv), w(wv), b(bv), g(gv);
      Tensor xt = t64(xv, {rows, cols}).set_requires_grad(true);
      Tensor wt = t64(wv, {cols}).set_requires_grad(true), bt = t64(bv, {cols}).set_requires_grad(true);
      const Tensor ref = affine ? layer_norm(xt, {cols}, wt, bt, 1e-5) : layer_norm(xt, {cols}, Tensor(), Tensor(), 1e-5);
      const std::vector<Tensor> gr =
          affine ? grad({ref}, {xt, wt, bt}, {t64(gv, {rows, cols})}) : grad({ref}, {xt}, {t64(gv, {rows, cols})});
      for (int v = 1; v <= cuda::version_count("layer_norm"); ++v) {
        CAPTURE(v);
        DeviceArray<float> y = out_buffer(rows * cols), mean = out_buffer(rows), rstd = out_buffer(rows);
        cuda::layer_norm(x.data(), affine ? w.data() : nullptr, affine ? b.data() : nullptr, y.data(), mean.data(),
                         rstd.data(), rows, cols, 1e-5f, v);
        CHECK(rel_err(y.download(), ref) < (cols == 1 ? 1e-3 : 1e-5));
        {  // the backward consumes this version's mean and rstd
          DeviceArray<float> dx = out_buffer(rows * cols), dw = out_buffer(cols), db = out_buffer(cols);
          cuda::layer_norm_backward(x.data(), affine ? w.data() : nullptr, mean.data(), rstd.data(), g.data(), dx.data(),
                                    dw.data(), db.data(), rows, cols);
          if (cols > 1) CHECK(rel_err(dx.download(), gr[0]) < 1e-4);
          if (affine) {
            CHECK(rel_err(dw.download(), gr[1]) < 1e-5);
            CHECK(rel_err(db.download(), gr[2]) < 1e-5);
          }
        }
      }
    }
  }
}

TEST_CASE("cuda group_norm: every version, with and without the fused SiLU, forward and backward") {
  MM_REQUIRE_CUDA();
  struct Case { int64_t N, C, H, W, G; };
  // The last three split their groups in v2 (into 4, 4 and 63 chunks of at least 2048 values,
  // the last case's uneven);
  // the mean of the last is far from 0, where E[x²] − E[x]² would cancel.
  for (const Case c : {Case{1, 4, 1, 1, 2}, Case{2, 64, 9, 7, 32}, Case{1, 32, 16, 16, 32}, Case{3, 12, 5, 5, 3},
                       Case{1, 64, 64, 64, 32}, Case{1, 32, 48, 48, 8}, Case{1, 8, 181, 181, 2}})
  for (int v = 1; v <= cuda::version_count("group_norm"); ++v) {
    for (bool fuse : {false, true}) {
      CAPTURE(c.N); CAPTURE(c.C); CAPTURE(c.H); CAPTURE(c.G); CAPTURE(fuse); CAPTURE(v);
      const int64_t n = c.N * c.C * c.H * c.W, HW = c.H * c.W;
      const double shift = c.H == 181 ? 30.0 : 0.0;
      const std::vector<float> xv = randv(n, n + c.G, shift - 2, shift + 2), wv = randv(c.C, 5), bv = randv(c.C, 6),
                               gv = randv(n, 7);
      DeviceArray<float> x(xv), w(wv), b(bv), g(gv);
      Tensor xt = t64(xv, {c.N, c.C, c.H, c.W}).set_requires_grad(true);
      Tensor wt = t64(wv, {c.C}).set_requires_grad(true), bt = t64(bv, {c.C}).set_requires_grad(true);
      Tensor ref = group_norm(xt, c.G, wt, bt, 1e-6);
      if (fuse) ref = silu(ref);
      DeviceArray<float> y = out_buffer(n), mean = out_buffer(c.N * c.G), rstd = out_buffer(c.N * c.G);
      cuda::group_norm(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), c.N, c.C, HW, c.G, 1e-6f, fuse,
                       v);
      CHECK(rel_err(y.download(), ref) < 1e-5);
      DeviceArray<float> dx = out_buffer(n), dw = out_buffer(c.C), db = out_buffer(c.C);
      cuda::group_norm_backward(x.data(), w.data(), b.data(), mean.data(), rstd.data(), g.data(), dx.data(), dw.data(),
                                db.data(), c.N, c.C, HW, c.G, fuse, v);
      const std::vector<Tensor> gr = grad({ref}, {xt, wt, bt}, {t64(gv, {c.N, c.C, c.H, c.W})});
      // A group of two values normalises to exactly -1 and +1 whatever they are: dx is zero
      // up to eps, and its relative error is rounding noise (as layer_norm's cols == 1).
      if (c.C / c.G * HW > 2) CHECK(rel_err(dx.download(), gr[0]) < 1e-4);
      CHECK(rel_err(dw.download(), gr[1]) < 1e-5);
      CHECK(rel_err(db.download(), gr[2]) < 1e-5);
    }
  }
}

TEST_CASE("cuda gemm: every version and cuBLAS, transposes, awkward sizes; bf16 tensor cores") {
  MM_REQUIRE_CUDA();
  struct Case { int64_t M, N, K; };
  for (const Case c : {Case{1, 1, 1}, Case{17, 33, 5}, Case{128, 128, 8}, Case{129, 257, 65}, Case{300, 200, 513},
                       Case{64, 1, 300}}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        CAPTURE(c.M); CAPTURE(c.N); CAPTURE(c.K); CAPTURE(ta); CAPTURE(tb);
        const std::vector<float> av = randv(c.M * c.K, c.M + c.K), bv = randv(c.K * c.N, c.N + 3 * c.K);
        DeviceArray<float> A(av), B(bv);
        Tensor at = t64(av, ta ? Shape{c.K, c.M} : Shape{c.M, c.K}), bt = t64(bv, tb ? Shape{c.N, c.K} : Shape{c.K, c.N});
        const Tensor ref = matmul(ta ? at.transpose(0, 1) : at, tb ? bt.transpose(0, 1) : bt);
        for (int v = 1; v <= cuda::version_count("gemm"); ++v) {
          CAPTURE(v);
          DeviceArray<float> C = out_buffer(c.M * c.N);
          cuda::gemm(ta, tb, c.M, c.N, c.K, A.data(), B.data(), C.data(), v);
          CHECK(rel_err(C.download(), ref) < 1e-5);
        }
        DeviceArray<float> C = out_buffer(c.M * c.N);
        cuda::cublas_gemm(ta, tb, c.M, c.N, c.K, A.data(), B.data(), C.data(), false);
        CHECK(rel_err(C.download(), ref) < 1e-5);
        cuda::cublas_gemm(ta, tb, c.M, c.N, c.K, A.data(), B.data(), C.data(), true);
        CHECK(rel_err(C.download(), ref) < 2e-3);
      }
    // bf16: both sides multiply the same bf16-rounded values.
    const Bf16Operand a = bf16_operand(c.M * c.K, 90 + c.M), b = bf16_operand(c.K * c.N, 91 + c.N);
    DeviceArray<__nv_bfloat16> A(a.bits), B(b.bits);
    const Tensor ref = matmul(t64(a.values, {c.M, c.K}), t64(b.values, {c.K, c.N}));
    for (int v = 1; v <= cuda::version_count("gemm_bf16"); ++v) {
      CAPTURE(v);
      DeviceArray<float> C = out_buffer(c.M * c.N);
      cuda::gemm_bf16(c.M, c.N, c.K, A.data(), B.data(), C.data(), v);
      CHECK(rel_err(C.download(), ref) < 1e-5);
    }
    DeviceArray<float> C = out_buffer(c.M * c.N);
    cuda::cublas_gemm_bf16(c.M, c.N, c.K, A.data(), B.data(), C.data());
    CHECK(rel_err(C.download(), ref) < 1e-5);
  }
}

TEST_CASE("cuda gemm_bf16 v2 (mma.sync): 16-byte and element loads, several k-tiles, partial tiles, offset operands") {
  MM_REQUIRE_CUDA();
  struct Case { int64_t M, N, K, a_off, b_off; };
  // a_off/b_off: the operands start that many elements into their buffers (1: not 16-byte
  // aligned, so the kernel must take the element path although K and N are multiples of 8)
  for (const Case c : {Case{256, 136, 96, 0, 0}, Case{130, 128, 40, 0, 0}, Case{1, 8, 8, 0, 0},
                       Case{257, 9, 70, 0, 0}, Case{136, 144, 64, 1, 1}, Case{40, 264, 33, 0, 8}}) {
    CAPTURE(c.M); CAPTURE(c.N); CAPTURE(c.K); CAPTURE(c.a_off); CAPTURE(c.b_off);
    const Bf16Operand a = bf16_operand(c.M * c.K, 70 + c.M, c.a_off), b = bf16_operand(c.K * c.N, 71 + c.N, c.b_off);
    DeviceArray<__nv_bfloat16> A(a.bits), B(b.bits);
    const Tensor ref = matmul(t64(a.values, {c.M, c.K}), t64(b.values, {c.K, c.N}));
    DeviceArray<float> C = out_buffer(c.M * c.N);
    cuda::gemm_bf16(c.M, c.N, c.K, A.data() + c.a_off, B.data() + c.b_off, C.data(), 2);
    CHECK(rel_err(C.download(), ref) < 1e-5);
  }
}

TEST_CASE("cuda gemm_bf16_nt (wgmma, sm_90): A·Bᵀ against float64, partial tiles, the stage ring, refusals") {
  MM_REQUIRE_CUDA();
  if (cuda::compute_capability() != 90) {
    MESSAGE("SKIPPED: wgmma needs an sm_90 GPU; this one is sm_", cuda::compute_capability());
    return;
  }
  struct Case { int64_t M, N, K; };
  // K = 520: 9 k-tiles of 64 through the 3-stage ring, the last one partial
  for (const Case c : {Case{128, 128, 64}, Case{1, 8, 8}, Case{200, 136, 200}, Case{257, 300, 520}, Case{64, 256, 1024}}) {
    CAPTURE(c.M); CAPTURE(c.N); CAPTURE(c.K);
    const Bf16Operand a = bf16_operand(c.M * c.K, 80 + c.M), b = bf16_operand(c.N * c.K, 81 + c.N);
    DeviceArray<__nv_bfloat16> A(a.bits), B(b.bits);
    const Tensor ref = matmul(t64(a.values, {c.M, c.K}), t64(b.values, {c.N, c.K}).t());
    DeviceArray<float> C = out_buffer(c.M * c.N);
    cuda::gemm_bf16_nt(c.M, c.N, c.K, A.data(), B.data(), C.data());
    CHECK(rel_err(C.download(), ref) < 1e-5);
  }
  DeviceArray<__nv_bfloat16> A(64 * 16), B(64 * 16);
  DeviceArray<float> C(64 * 64);
  CHECK_THROWS_WITH_AS(cuda::gemm_bf16_nt(64, 64, 12, A.data(), B.data(), C.data()),
                       doctest::Contains("K=12 must be a multiple of 8"), Error);
  CHECK_THROWS_WITH_AS(cuda::gemm_bf16_nt(8, 8, 8, A.data() + 1, B.data(), C.data()),
                       doctest::Contains("A and B must be 16-byte aligned"), Error);
}

TEST_CASE("cuda row_extreme: every version, the first index of the max/min, NaN wins, short and long rows") {
  MM_REQUIRE_CUDA();
  struct Case { int64_t rows, cols; };
  for (const Case c : {Case{1, 1}, Case{7, 5}, Case{9, 31}, Case{3, 32}, Case{5, 33}, Case{4, 100}, Case{2, 1000}}) {
    CAPTURE(c.rows); CAPTURE(c.cols);
    std::vector<float> x = randv(c.rows * c.cols, 60 + c.cols);
    for (float& v : x) v = std::round(v * 4.0f) / 4.0f;  // few distinct values: ties everywhere
    if (c.rows > 2) x[1 * c.cols + c.cols / 2] = NAN, x[1 * c.cols + c.cols - 1] = NAN;  // row 1: the first NaN wins
    DeviceArray<float> dx(x);
    for (const bool max : {true, false})
      for (int v = 1; v <= cuda::version_count("row_extreme"); ++v) {
        CAPTURE(max); CAPTURE(v);
        DeviceArray<float> value = out_buffer(c.rows);
        DeviceArray<int64_t> index(c.rows);
        cuda::row_extreme(dx.data(), value.data(), index.data(), c.rows, c.cols, max, v);
        const std::vector<float> got = value.download();
        const std::vector<int64_t> at = index.download();
        bool ok = true;
        for (int64_t r = 0; r < c.rows; ++r) {
          int64_t want = 0;  // the reference: first NaN, else first occurrence of the extreme
          for (int64_t j = 1; j < c.cols && !std::isnan(x[r * c.cols + want]); ++j) {
            const float a = x[r * c.cols + j], b = x[r * c.cols + want];
            if (std::isnan(a) || (max ? a > b : a < b)) want = j;
          }
          const float wv = x[r * c.cols + want];
          ok = ok && at[r] == want && (std::isnan(wv) ? std::isnan(got[r]) : got[r] == wv);
        }
        CHECK(ok);
      }
  }
}

TEST_CASE("cuda mma_probe: ldmatrix and mma.sync put each element where PTX documents (bf16, fp16)") {
  MM_REQUIRE_CUDA();
  for (bool fp16 : {false, true}) {
    CAPTURE(fp16);
    const std::vector<float> av = randv(256, 5 + fp16), bv = randv(128, 7 + fp16), cv = randv(128, 9 + fp16);
    std::vector<unsigned short> ab(256), bb(128);
    std::vector<float> ar(256), br(128);
    auto round = [&](float x, unsigned short& bits) {
      if (fp16) {
        const __half h = __float2half_rn(x);
        std::memcpy(&bits, &h, 2);
        return __half2float(h);
      }
      const __nv_bfloat16 h = __float2bfloat16(x);
      std::memcpy(&bits, &h, 2);
      return __bfloat162float(h);
    };
    for (int i = 0; i < 256; ++i) ar[i] = round(av[i], ab[i]);
    for (int i = 0; i < 128; ++i) br[i] = round(bv[i], bb[i]);
    const Tensor ref = add(matmul(t64(ar, {16, 16}), t64(br, {16, 8})), t64(cv, {16, 8}));
    DeviceArray<unsigned short> A(ab), B(bb);
    DeviceArray<float> C(cv), D = out_buffer(256);
    cuda::mma_probe(A.data(), B.data(), C.data(), D.data(), fp16);
    const std::vector<float> d = D.download();
    CHECK(rel_err(std::vector<float>(d.begin(), d.begin() + 128), ref) < 1e-6);  // B by ldmatrix .trans
    CHECK(rel_err(std::vector<float>(d.begin() + 128, d.end()), ref) < 1e-6);    // B by ldmatrix
  }
}

namespace {
// Naive attention in double: o, and the gradients for dout.
struct AttnRef {
  std::vector<double> o, dq, dk, dv;
};
AttnRef attention_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                      const std::vector<float>& dout, int64_t BH, int64_t Tq, int64_t Tk, int64_t D, double scale,
                      bool causal) {
  AttnRef r;
  r.o.assign(BH * Tq * D, 0), r.dq.assign(BH * Tq * D, 0), r.dk.assign(BH * Tk * D, 0), r.dv.assign(BH * Tk * D, 0);
  std::vector<double> p(Tk), dp(Tk);
  for (int64_t h = 0; h < BH; ++h)
    for (int64_t i = 0; i < Tq; ++i) {
      const float* qi = &q[(h * Tq + i) * D];
      double m = -INFINITY;
      for (int64_t j = 0; j < Tk; ++j) {
        const bool vis = !causal || j <= i + (Tk - Tq);
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += double(qi[d]) * k[(h * Tk + j) * D + d];
        p[j] = vis ? s * scale : -INFINITY;
        m = std::max(m, p[j]);
      }
      double z = 0;
      for (int64_t j = 0; j < Tk; ++j) z += p[j] = std::exp(p[j] - m);
      for (int64_t j = 0; j < Tk; ++j) p[j] /= z;
      double delta = 0;
      for (int64_t j = 0; j < Tk; ++j) {
        dp[j] = 0;
        for (int64_t d = 0; d < D; ++d) {
          r.o[(h * Tq + i) * D + d] += p[j] * v[(h * Tk + j) * D + d];
          dp[j] += double(dout[(h * Tq + i) * D + d]) * v[(h * Tk + j) * D + d];
        }
        delta += p[j] * dp[j];
      }
      for (int64_t j = 0; j < Tk; ++j) {
        const double ds = p[j] * (dp[j] - delta);
        for (int64_t d = 0; d < D; ++d) {
          r.dq[(h * Tq + i) * D + d] += scale * ds * k[(h * Tk + j) * D + d];
          r.dk[(h * Tk + j) * D + d] += scale * ds * qi[d];
          r.dv[(h * Tk + j) * D + d] += p[j] * dout[(h * Tq + i) * D + d];
        }
      }
    }
  return r;
}
}  // namespace

TEST_CASE("cuda attention: fused forward and backward against naive float64, causal and not; unfused path") {
  MM_REQUIRE_CUDA();
  struct Case { int64_t B, H, Tq, Tk, D; bool causal, sharp = false; };
  for (const Case c : {Case{1, 1, 1, 1, 1, false}, Case{2, 3, 50, 50, 64, false}, Case{1, 2, 77, 77, 64, true},
                       Case{1, 1, 129, 129, 128, false}, Case{1, 1, 33, 33, 100, true}, Case{2, 1, 20, 45, 64, true}, Case{1, 1, 100, 130, 64, true},
                       Case{1, 2, 65, 31, 32, false}, Case{1, 2, 70, 70, 64, false, true}}) {
    CAPTURE(c.B); CAPTURE(c.H); CAPTURE(c.Tq); CAPTURE(c.Tk); CAPTURE(c.D); CAPTURE(c.causal); CAPTURE(c.sharp);
    const int64_t BH = c.B * c.H;
    const std::vector<float> q = randv(BH * c.Tq * c.D, 1 + c.Tq, -2, 2), k = randv(BH * c.Tk * c.D, 2 + c.Tk, -2, 2),
                             v = randv(BH * c.Tk * c.D, 3), dout = randv(BH * c.Tq * c.D, 4);
    // sharp: scaled logits with a spread of about 10 (a max near 30), where 16-bit scores err most
    const double scale = (c.sharp ? 8.0 : 1.0) / std::sqrt(double(c.D));
    const AttnRef ref = attention_ref(q, k, v, dout, BH, c.Tq, c.Tk, c.D, scale, c.causal);
    DeviceArray<float> dq_(q), dk_(k), dv_(v), ddo(dout);
    DeviceArray<float> o = out_buffer(q.size()), lse = out_buffer(BH * c.Tq);
    cuda::attention_forward(dq_.data(), dk_.data(), dv_.data(), o.data(), lse.data(), c.B, c.H, c.Tq, c.Tk, c.D,
                            float(scale), c.causal);
    CHECK(rel_err(o.download(), ref.o) < 1e-5);
    DeviceArray<float> gq = out_buffer(q.size()), gk = out_buffer(k.size()), gv = out_buffer(v.size());
    cuda::attention_backward(dq_.data(), dk_.data(), dv_.data(), o.data(), lse.data(), ddo.data(), gq.data(), gk.data(),
                             gv.data(), c.B, c.H, c.Tq, c.Tk, c.D, float(scale), c.causal);
    CHECK(rel_err(gq.download(), ref.dq) < 1e-4);
    CHECK(rel_err(gk.download(), ref.dk) < 1e-4);
    CHECK(rel_err(gv.download(), ref.dv) < 1e-5);
    DeviceArray<float> o2 = out_buffer(q.size()), scratch(BH * c.Tq * c.Tk);
    cuda::attention_unfused(dq_.data(), dk_.data(), dv_.data(), o2.data(), scratch.data(), c.B, c.H, c.Tq, c.Tk, c.D,
                            float(scale), c.causal);
    CHECK(rel_err(o2.download(), ref.o) < 1e-5);
    // v2: tensor cores on 16-bit operands. Within what bf16 (8 bits) and fp16 (11 bits) allow,
    // and not float32's result (the operands really are rounded). Its lse drives the backward,
    // which reads q, k, v rounded as v2 did: with float32 operands instead, the sharp case's
    // bf16 gradients erred 2.9e-2 (probabilities that no longer sum to 1), past 2·bound.
    const std::vector<float> lse1 = lse.download();  // v1's, the default forward above
    const std::vector<double> lse_ref(lse1.begin(), lse1.end());
    // v3 (mma.sync, the products in registers) and v4 (v3 on 16-bit copies, cp.async) meet the same bounds.
    for (const int version : {2, 3, 4})
    for (const bool fp16 : {false, true}) {
      CAPTURE(version); CAPTURE(fp16);
      DeviceArray<float> o3 = out_buffer(q.size()), lse3 = out_buffer(BH * c.Tq);
      cuda::attention_forward(dq_.data(), dk_.data(), dv_.data(), o3.data(), lse3.data(), c.B, c.H, c.Tq, c.Tk, c.D,
                              float(scale), c.causal, version, fp16);
      const std::vector<float> o3h = o3.download();
      const double bound = fp16 ? 2e-3 : 1e-2;
      CHECK(rel_err(o3h, ref.o) < bound);
      CHECK(rel_err(o3h, ref.o) > 1e-6);
      CHECK(rel_err(lse3.download(), lse_ref) < bound);
      DeviceArray<float> gq3 = out_buffer(q.size()), gk3 = out_buffer(k.size()), gv3 = out_buffer(v.size());
      cuda::attention_backward(dq_.data(), dk_.data(), dv_.data(), o3.data(), lse3.data(), ddo.data(), gq3.data(),
                               gk3.data(), gv3.data(), c.B, c.H, c.Tq, c.Tk, c.D, float(scale), c.causal,
                               fp16 ? 2 : 1, /*version=*/1);
      CHECK(rel_err(gq3.download(), ref.dq) < 2 * bound);
      CHECK(rel_err(gk3.download(), ref.dk) < 2 * bound);
      CHECK(rel_err(gv3.download(), ref.dv) < 2 * bound);
      if (fp16 || version != 3) continue;
      // the backward on the tensor cores (bf16 only): every product on bf16 operands
      DeviceArray<float> gq4 = out_buffer(q.size()), gk4 = out_buffer(k.size()), gv4 = out_buffer(v.size());
      cuda::attention_backward(dq_.data(), dk_.data(), dv_.data(), o3.data(), lse3.data(), ddo.data(), gq4.data(),
                               gk4.data(), gv4.data(), c.B, c.H, c.Tq, c.Tk, c.D, float(scale), c.causal, 1, 2);
      const double eq = rel_err(gq4.download(), ref.dq), ek = rel_err(gk4.download(), ref.dk),
                   ev = rel_err(gv4.download(), ref.dv);
      MESSAGE("bf16 backward v2: dq ", eq, " dk ", ek, " dv ", ev);
      CHECK(eq < 2 * bound);
      CHECK(ek < 2 * bound);
      CHECK(ev < 2 * bound);
    }
  }
}

TEST_CASE("cuda attention: with no keys every forward writes o = 0 and lse = -inf") {
  MM_REQUIRE_CUDA();
  const std::vector<float> q = randv(2 * 5 * 64, 3);
  DeviceArray<float> dq(q);
  for (int version = 1; version <= cuda::version_count("attention"); ++version) {
    CAPTURE(version);
    DeviceArray<float> o = out_buffer(q.size()), lse = out_buffer(2 * 5);
    cuda::attention_forward(dq.data(), nullptr, nullptr, o.data(), lse.data(), 1, 2, 5, 0, 64, 0.125f, false, version);
    for (const float x : o.download()) REQUIRE(x == 0.0f);
    for (const float x : lse.download()) REQUIRE(x == -INFINITY);
  }
}

TEST_CASE("cuda attention: with no queries the backward writes zero key gradients") {
  MM_REQUIRE_CUDA();
  for (const int version : {1, 2}) {
    CAPTURE(version);
    DeviceArray<float> gk = out_buffer(2 * 5 * 64), gv = out_buffer(2 * 5 * 64);  // poisoned
    cuda::attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, gk.data(), gv.data(), 1, 2,
                             0, 5, 64, 0.125f, false, 1, version);
    for (const float x : gk.download()) REQUIRE(x == 0.0f);
    for (const float x : gv.download()) REQUIRE(x == 0.0f);
  }
}

TEST_CASE("cuda vq: nearest code (every version and the unfused baseline), gather, codebook gradient") {
  MM_REQUIRE_CUDA();
  struct Case { int64_t N, K, D; };
  for (const Case c : {Case{1, 1, 1}, Case{5, 7, 3}, Case{100, 512, 32}, Case{257, 1000, 256}, Case{64, 16384, 8}}) {
    CAPTURE(c.N); CAPTURE(c.K); CAPTURE(c.D);
    const std::vector<float> z = randv(c.N * c.D, 5 + c.N), e = randv(c.K * c.D, 6 + c.K);
    DeviceArray<float> dz(z), de(e), esq = out_buffer(c.K);
    cuda::vq_code_norms(de.data(), esq.data(), c.K, c.D);
    // Float64 distances; the GPU's choice must be the nearest up to float32 rounding.
    auto dist = [&](int64_t n, int64_t k) {
      double s = 0;
      for (int64_t d = 0; d < c.D; ++d) s += (double(z[n * c.D + d]) - e[k * c.D + d]) * (double(z[n * c.D + d]) - e[k * c.D + d]);
      return s;
    };
    std::vector<double> best(c.N, INFINITY);
    for (int64_t n = 0; n < c.N; ++n)
      for (int64_t k = 0; k < c.K; ++k) best[n] = std::min(best[n], dist(n, k));
    auto check_indices = [&](const std::vector<int64_t>& idx) {
      int64_t wrong = 0;
      for (int64_t n = 0; n < c.N; ++n)
        if (idx[n] < 0 || idx[n] >= c.K || dist(n, idx[n]) > best[n] + 1e-5 * (1 + best[n])) ++wrong;
      CHECK(wrong == 0);
    };
    for (int v = 1; v <= cuda::version_count("vq"); ++v) {
      CAPTURE(v);
      DeviceArray<int64_t> idx(c.N);
      idx.poison();
      cuda::vq_nearest(dz.data(), de.data(), esq.data(), idx.data(), c.N, c.K, c.D, v);
      check_indices(idx.download());
    }
    DeviceArray<int64_t> idx(c.N);
    idx.poison();
    DeviceArray<float> scratch(c.N * c.K);
    cuda::vq_nearest_unfused(dz.data(), de.data(), esq.data(), idx.data(), scratch.data(), c.N, c.K, c.D);
    const std::vector<int64_t> iv = idx.download();
    check_indices(iv);
    // Gather and scatter against the CPU.
    DeviceArray<float> g = out_buffer(c.N * c.D);
    cuda::gather_rows(de.data(), idx.data(), g.data(), c.N, c.D);
    std::vector<double> gref(c.N * c.D), sref(c.K * c.D, 0.0);
    const std::vector<float> dout = randv(c.N * c.D, 77);
    for (int64_t n = 0; n < c.N; ++n)
      for (int64_t d = 0; d < c.D; ++d) {
        gref[n * c.D + d] = e[iv[n] * c.D + d];
        sref[iv[n] * c.D + d] += dout[n * c.D + d];
      }
    CHECK(rel_err(g.download(), gref) == 0);
    DeviceArray<float> ddout(dout), grad_e(c.K * c.D);
    grad_e.zero();
    cuda::scatter_add_rows(ddout.data(), idx.data(), grad_e.data(), c.N, c.D);
    CHECK(rel_err(grad_e.download(), sref) < 1e-6);
  }
}

namespace {

// The nearest codes of z [N, D] in e [K, D] from every vq_nearest version, then from the
// unfused baseline (indices poisoned before each).
std::vector<std::vector<int64_t>> nearest_codes_every_way(const std::vector<float>& z, const std::vector<float>& e,
                                                          int64_t N, int64_t K, int64_t D) {
  DeviceArray<float> dz(z), de(e), esq(K), scratch(N * K);
  cuda::vq_code_norms(de.data(), esq.data(), K, D);
  std::vector<std::vector<int64_t>> out;
  for (int v = 1; v <= cuda::version_count("vq") + 1; ++v) {
    DeviceArray<int64_t> idx(N);
    idx.poison();
    if (v <= cuda::version_count("vq"))
      cuda::vq_nearest(dz.data(), de.data(), esq.data(), idx.data(), N, K, D, v);
    else
      cuda::vq_nearest_unfused(dz.data(), de.data(), esq.data(), idx.data(), scratch.data(), N, K, D);
    out.push_back(idx.download());
  }
  return out;
}

}  // namespace

TEST_CASE("cuda vq: near ties resolve as taming's (|z|^2 + |e|^2) - 2 z.e in float32, as the CPU") {
  MM_REQUIRE_CUDA();
  // D = 1, z and the codes near 100: |z|^2 ~ 1e4 rounds the distances to ~1e-3, so codes a
  // hair apart tie (or swap) in taming's formula; without |z|^2 the device would separate
  // them. With one dimension every term is a single rounded product, so the device's choice
  // must equal this float32 evaluation exactly.
  const int64_t N = 256, K = 16, D = 1;
  std::vector<float> z(N), e(K);
  for (int64_t n = 0; n < N; ++n) z[n] = 100.0f + 0.001f * static_cast<float>((n * 37) % 101 - 50);
  for (int64_t k = 0; k < K; ++k) e[k] = 100.0f + 0.003f * static_cast<float>((k * 11) % 17 - 8);
  std::vector<int64_t> want(N);
  for (int64_t n = 0; n < N; ++n) {
    float best = INFINITY;
    for (int64_t k = 0; k < K; ++k) {
      const float zz = z[n] * z[n], ee = e[k] * e[k], dot = z[n] * e[k];
      const float d = (zz + ee) + (-2.0f * dot);
      if (d < best) best = d, want[n] = k;
    }
  }
  // the CPU op (engine/ops/vq.h) evaluates the same formula
  CHECK(vector_quantize(Tensor::from_vector(z, {N, D}), Tensor::from_vector(e, {K, D})).indices.to_vector<int64_t>() ==
        want);
  const std::vector<std::vector<int64_t>> got = nearest_codes_every_way(z, e, N, K, D);
  for (size_t way = 0; way < got.size(); ++way) {
    CAPTURE(way);
    CHECK(got[way] == want);
  }
}

TEST_CASE("cuda vq: ties go to the lowest index, across tiles and threads") {
  MM_REQUIRE_CUDA();
  const int64_t N = 37, K = 70, D = 5;
  const std::vector<float> row = randv(D, 3), z = randv(N * D, 4);
  std::vector<float> e;
  for (int64_t k = 0; k < K; ++k) e.insert(e.end(), row.begin(), row.end());  // K identical codes
  const std::vector<std::vector<int64_t>> got = nearest_codes_every_way(z, e, N, K, D);
  for (size_t way = 0; way < got.size(); ++way) {
    CAPTURE(way);
    CHECK(got[way] == std::vector<int64_t>(N, 0));
  }
}

TEST_CASE("cuda conv2d: implicit GEMM forward and backward-data, col2im, cuDNN, against the CPU conv") {
  MM_REQUIRE_CUDA();
  struct Case { int64_t N, C, H, W, O, K, stride, pad; };
  for (const Case c : {Case{1, 1, 1, 1, 1, 1, 1, 0}, Case{1, 3, 7, 7, 5, 3, 1, 1}, Case{2, 4, 9, 8, 6, 3, 2, 1},
                       Case{2, 16, 12, 12, 70, 1, 1, 0}, Case{1, 8, 16, 16, 3, 4, 2, 1}, Case{1, 67, 10, 11, 65, 3, 1, 0}}) {
    CAPTURE(c.N); CAPTURE(c.C); CAPTURE(c.H); CAPTURE(c.W); CAPTURE(c.O); CAPTURE(c.K); CAPTURE(c.stride); CAPTURE(c.pad);
    const std::vector<float> xv = randv(c.N * c.C * c.H * c.W, 8 + c.C), wv = randv(c.O * c.C * c.K * c.K, 9 + c.O),
                             bv = randv(c.O, 10);
    Tensor xt = t64(xv, {c.N, c.C, c.H, c.W}).set_requires_grad(true);
    const Tensor ref = conv2d(xt, t64(wv, {c.O, c.C, c.K, c.K}), t64(bv, {c.O}), conv2d_options(c.stride, c.pad));
    const int64_t ny = ref.numel();
    DeviceArray<float> x(xv), w(wv), b(bv);
    DeviceArray<float> y = out_buffer(ny);
    cuda::conv2d(x.data(), w.data(), b.data(), y.data(), c.N, c.C, c.H, c.W, c.O, c.K, c.K, c.stride, c.pad);
    CHECK(rel_err(y.download(), ref) < 1e-5);
    const std::vector<float> gv = randv(ny, 11);
    DeviceArray<float> g(gv), dx = out_buffer(xv.size());
    cuda::conv2d_backward_data(g.data(), w.data(), dx.data(), c.N, c.C, c.H, c.W, c.O, c.K, c.K, c.stride, c.pad);
    const Tensor dx_ref = grad({ref}, {xt}, {t64(gv, ref.shape())})[0];
    CHECK(rel_err(dx.download(), dx_ref) < 1e-5);
    // The same gradient as col2im(dy's rows · W) (the --precision bf16 path's shape): the
    // GEMM on the CPU here, col2im over all output rows, then again band by band (accumulated).
    {
      const int64_t OH = ref.size(2), OW = ref.size(3), K = c.C * c.K * c.K;
      const Tensor cols = matmul(t64(gv, ref.shape()).permute({0, 2, 3, 1}).reshape({c.N * OH * OW, c.O}),
                                 t64(wv, {c.O, K}))
                              .to(DType::f32);
      const std::vector<float> cv = cols.to_vector<float>();
      DeviceArray<float> dcols(cv), whole(std::vector<float>(xv.size(), 0.0f)), bands(std::vector<float>(xv.size(), 0.0f));
      cuda::col2im(dcols.data(), whole.data(), c.N, c.C, c.H, c.W, c.K, c.K, c.stride, c.pad, 0, OH, true);
      CHECK(rel_err(whole.download(), dx_ref) < 1e-5);
      for (int64_t n = 0; n < c.N; ++n)  // bands of 2 output rows, one sample at a time
        for (int64_t oh0 = 0; oh0 < OH; oh0 += 2) {
          const int64_t oh1 = std::min(OH, oh0 + 2), first = (n * OH + oh0) * OW;
          DeviceArray<float> part(std::vector<float>(cv.begin() + first * K, cv.begin() + (n * OH + oh1) * OW * K));
          cuda::col2im(part.data(), bands.data() + n * c.C * c.H * c.W, 1, c.C, c.H, c.W, c.K, c.K, c.stride, c.pad,
                       oh0, oh1, true);
        }
      CHECK(rel_err(bands.download(), dx_ref) < 1e-5);
    }
    if (cuda::have_cudnn()) {  // the peer last: its failure must not hide ours
      DeviceArray<float> y2 = out_buffer(ny);
      cuda::cudnn_conv2d(x.data(), w.data(), b.data(), y2.data(), c.N, c.C, c.H, c.W, c.O, c.K, c.K, c.stride, c.pad);
      CHECK(rel_err(y2.download(), ref) < 1e-4);  // the peer may pick an FFT or Winograd algorithm
      DeviceArray<float> dx2 = out_buffer(xv.size());
      cuda::cudnn_conv2d_backward_data(g.data(), w.data(), dx2.data(), c.N, c.C, c.H, c.W, c.O, c.K, c.K, c.stride,
                                       c.pad);
      CHECK(rel_err(dx2.download(), dx_ref) < 1e-4);
    }
  }
}

TEST_CASE("cuda resampling: nearest 2x upsampling, average pooling") {
  MM_REQUIRE_CUDA();
  const int64_t P = 6, H = 5, W = 7;
  const std::vector<float> xv = randv(P * H * W, 12);
  DeviceArray<float> x(xv), up = out_buffer(P * 4 * H * W);
  cuda::upsample_nearest2x(x.data(), up.data(), P, H, W);
  std::vector<double> ref(P * 4 * H * W);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < 2 * H; ++i)
      for (int64_t j = 0; j < 2 * W; ++j) ref[(p * 2 * H + i) * 2 * W + j] = xv[(p * H + i / 2) * W + j / 2];
  CHECK(rel_err(up.download(), ref) == 0);
  DeviceArray<float> pooled = out_buffer(P * (H / 2) * (W / 2));
  cuda::avg_pool2d_window(x.data(), pooled.data(), cuda::Pool2d{P, H, W, H / 2, W / 2, 2, 2, 2, 2, 0, 0}, true);
  std::vector<double> pref;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < H / 2; ++i)
      for (int64_t j = 0; j < W / 2; ++j) {
        double s = 0;
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b) s += xv[(p * H + 2 * i + a) * W + 2 * j + b];
        pref.push_back(s / 4);
      }
  CHECK(rel_err(pooled.download(), pref) < 1e-7);
}

// These run everywhere: the argument checks come before any device call.
TEST_CASE("cuda kernels refuse bad arguments with clear errors (no device needed)") {
  CHECK_THROWS_WITH_AS(cuda::group_norm(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 30, 4, 4, 1e-6f, false),
                       doctest::Contains("30 channels do not split into 4 groups"), Error);
  CHECK_THROWS_WITH_AS(cuda::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1, 8, 8, 512, 1.f, false),
                       doctest::Contains("head size 512"), Error);
  CHECK_THROWS_WITH_AS(cuda::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1, 8, 4, 64, 1.f, true),
                       doctest::Contains("causal attention needs Tk >= Tq"), Error);
  CHECK_THROWS_WITH_AS(cuda::attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                nullptr, 1, 1, 8, 8, 64, 1.f, false, 2, 2),
                       doctest::Contains("version 2 multiplies bf16 operands; rounding 2 asks for fp16"), Error);
  CHECK_THROWS_WITH_AS(cuda::gemm(false, false, 4, 4, 4, nullptr, nullptr, nullptr, 9),
                       doctest::Contains("gemm has versions 1..3"), Error);
  CHECK_THROWS_WITH_AS(cuda::conv2d(nullptr, nullptr, nullptr, nullptr, 1, 3, 2, 2, 4, 5, 5, 1, 0),
                       doctest::Contains("does not fit input 2x2"), Error);
  CHECK_THROWS_WITH_AS(cuda::default_version("fft"), doctest::Contains("unknown kernel family 'fft'"), Error);
  CHECK(cuda::default_version("gemm") >= 1);
  if (!cuda::available()) MESSAGE("no CUDA device: only the argument checks ran here");
}
