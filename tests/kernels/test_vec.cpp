// tests/kernels/test_vec.cpp: the vectorised float32 math of kernels/vec.h against double-
// precision references, for every implementation this CPU can run (forced in turn).
//   ./build/mm_tests --source-file=*test_vec.cpp
// Lengths cross the vector widths (tails of 1..15 elements), inputs include the overflow and
// underflow edges, subnormal results, infinities and NaN.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels/vec.h"

namespace {

std::vector<std::string> isas() {
  std::vector<std::string> out;
  for (const char* n : {"scalar", "avx2", "avx512"})
    if (mm::kernels::vec_isa_available(n)) out.push_back(n);
  return out;
}

// Restores the start-up choice when a test case ends, even on failure.
struct IsaGuard {
  ~IsaGuard() { mm::kernels::set_vec_isa(""); }
};

std::vector<float> inputs(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

const float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("vexp matches exp to 3e-7 relative, with IEEE overflow, underflow and NaN") {
  IsaGuard guard;
  std::vector<float> x = inputs(1000, -90.f, 90.f, 1);
  for (float v : {0.f, -0.f, 1.f, -1.f, 88.72f, 88.73f, 89.f, 100.f, -87.3f, -90.f, -100.f, -103.f, -104.f,
                  -200.f, 1e-30f, kInf, -kInf})
    x.push_back(v);
  for (const std::string& isa : isas()) {
    CAPTURE(isa);
    mm::kernels::set_vec_isa(isa.c_str());
    std::vector<float> y(x.size());
    mm::kernels::vexp(x.data(), y.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      CAPTURE(x[i]);
      const double want = std::exp(static_cast<double>(x[i]));
      if (want > std::numeric_limits<float>::max()) {
        CHECK(y[i] == kInf);
      } else if (want < std::numeric_limits<float>::min()) {  // subnormal or zero: absolute
        CHECK(std::fabs(y[i] - want) <= 2 * std::numeric_limits<float>::denorm_min());
      } else {
        CHECK(std::fabs(y[i] - want) <= 3e-7 * want);
      }
    }
    const float nan = std::numeric_limits<float>::quiet_NaN();
    float yn = 0;
    mm::kernels::vexp(&nan, &yn, 1);
    CHECK(std::isnan(yn));
  }
}

TEST_CASE("vsigmoid_gate: silu and quick_gelu forward and backward against double precision") {
  IsaGuard guard;
  std::vector<float> x = inputs(997, -30.f, 30.f, 2);  // 997: a tail for both widths
  for (float v : {0.f, 1e-3f, -1e-3f, 60.f, -60.f, 200.f, -200.f, kInf}) x.push_back(v);
  const std::vector<float> dy = inputs(x.size(), -2.f, 2.f, 3);
  for (const std::string& isa : isas()) {
    for (float alpha : {1.f, 1.702f}) {
      CAPTURE(isa);
      CAPTURE(alpha);
      mm::kernels::set_vec_isa(isa.c_str());
      const int64_t n = static_cast<int64_t>(x.size());
      std::vector<float> y(x.size()), dx(x.size());
      mm::kernels::vsigmoid_gate(x.data(), y.data(), n, alpha);
      mm::kernels::vsigmoid_gate_backward(x.data(), dy.data(), dx.data(), n, alpha);
      for (size_t i = 0; i < x.size(); ++i) {
        CAPTURE(x[i]);
        const double v = x[i], a = alpha, s = 1.0 / (1.0 + std::exp(-a * v));
        if (std::isinf(v)) {
          CHECK(y[i] == kInf);
          continue;
        }
        // Rounding alpha * x to float alone moves e^(-alpha x) by |alpha x| 2^-24 relative.
        const double cond = 1e-6 + 1.2e-7 * std::fabs(a * v);
        CHECK(std::fabs(y[i] - v * s) <= cond * std::fabs(v * s) + 1e-37);
        const double d = dy[i] * (s + a * v * s * (1 - s));
        CHECK(std::fabs(dx[i] - d) <= cond * std::fabs(dy[i]) * (1 + a * std::fabs(v)));
      }
    }
  }
}

TEST_CASE("vec: every length's tail, in place, and the two vector widths agree bitwise") {
  IsaGuard guard;
  const std::vector<float> x = inputs(67, -10.f, 10.f, 4);
  std::vector<std::vector<float>> results;
  for (const std::string& isa : isas()) {
    if (isa == "scalar") continue;
    CAPTURE(isa);
    mm::kernels::set_vec_isa(isa.c_str());
    std::vector<float> full(x.size());
    mm::kernels::vsigmoid_gate(x.data(), full.data(), static_cast<int64_t>(x.size()), 1.702f);
    for (int64_t n = 0; n <= 33; ++n) {  // each prefix: same values, untouched past n
      std::vector<float> y(x.size(), -7.f);
      mm::kernels::vsigmoid_gate(x.data(), y.data(), n, 1.702f);
      for (int64_t i = 0; i < static_cast<int64_t>(x.size()); ++i) {
        if (i < n) CHECK(y[i] == full[i]);
        else CHECK(y[i] == -7.f);
      }
    }
    std::vector<float> inplace = x;
    mm::kernels::vsigmoid_gate(inplace.data(), inplace.data(), static_cast<int64_t>(x.size()), 1.702f);
    CHECK(inplace == full);
    results.push_back(full);
  }
  for (size_t k = 1; k < results.size(); ++k) CHECK(std::memcmp(results[k].data(), results[0].data(), 67 * 4) == 0);
}

TEST_CASE("vmax and vadd: every length, NaN skipped by vmax") {
  IsaGuard guard;
  const std::vector<float> a = inputs(70, -5.f, 5.f, 5), b = inputs(70, -5.f, 5.f, 6);
  for (const std::string& isa : isas()) {
    CAPTURE(isa);
    mm::kernels::set_vec_isa(isa.c_str());
    CHECK(mm::kernels::vmax(a.data(), 0) == -kInf);
    for (int64_t n = 1; n <= 70; ++n) {
      CAPTURE(n);
      float want = a[0];
      for (int64_t i = 1; i < n; ++i) want = std::max(want, a[static_cast<size_t>(i)]);
      CHECK(mm::kernels::vmax(a.data(), n) == want);
      std::vector<float> y(71, 9.f);
      mm::kernels::vadd(a.data(), b.data(), y.data(), n);
      bool ok = y[static_cast<size_t>(n)] == 9.f;
      for (int64_t i = 0; i < n; ++i) ok = ok && y[static_cast<size_t>(i)] == a[static_cast<size_t>(i)] + b[static_cast<size_t>(i)];
      CHECK(ok);
    }
    std::vector<float> with_nan = a;
    with_nan[3] = std::numeric_limits<float>::quiet_NaN();
    with_nan[40] = 7.f;
    CHECK(mm::kernels::vmax(with_nan.data(), 70) == 7.f);
  }
}

TEST_CASE("vlayer_norm_row against double precision; both vector widths agree bitwise") {
  IsaGuard guard;
  for (int64_t n : {1, 7, 16, 33, 768, 1001}) {
    CAPTURE(n);
    // An offset mean makes the two-pass variance matter.
    std::vector<float> x = inputs(static_cast<size_t>(n), 2.f, 6.f, 7), w = inputs(static_cast<size_t>(n), -1.f, 1.f, 8),
                       b = inputs(static_cast<size_t>(n), -1.f, 1.f, 9);
    double m = 0, v = 0;
    for (float e : x) m += e;
    m /= static_cast<double>(n);
    for (float e : x) v += (e - m) * (e - m);
    const double rs = 1.0 / std::sqrt(v / static_cast<double>(n) + 1e-5);
    std::vector<std::vector<float>> vector_results;
    for (const std::string& isa : isas()) {
      CAPTURE(isa);
      mm::kernels::set_vec_isa(isa.c_str());
      for (int affine = 0; affine < 4; ++affine) {
        CAPTURE(affine);
        const float* pw = (affine & 1) ? w.data() : nullptr;
        const float* pb = (affine & 2) ? b.data() : nullptr;
        std::vector<float> y(static_cast<size_t>(n));
        float mean = 0, rstd = 0;
        mm::kernels::vlayer_norm_row(x.data(), pw, pb, y.data(), n, 1e-5f, &mean, &rstd);
        CHECK(std::fabs(mean - m) <= 1e-6 * std::fabs(m));
        CHECK(std::fabs(rstd - rs) <= 2e-5 * rs);  // the variance of 4-ish numbers, in float
        for (int64_t i = 0; i < n; ++i) {
          double want = (x[static_cast<size_t>(i)] - m) * rs;
          if (pw) want *= pw[i];
          if (pb) want += pb[i];
          CHECK(std::fabs(y[static_cast<size_t>(i)] - want) <= 3e-5 * (1 + std::fabs(want)));
        }
        if (isa != "scalar" && affine == 3) vector_results.push_back(y);
      }
    }
    for (size_t k = 1; k < vector_results.size(); ++k) CHECK(vector_results[k] == vector_results[0]);
  }
}

TEST_CASE("set_vec_isa refuses unknown names") {
  IsaGuard guard;
  CHECK_THROWS_WITH_AS(mm::kernels::set_vec_isa("sse9"), doctest::Contains("must be avx512, avx2 or scalar"),
                       mm::Error);
  mm::kernels::set_vec_isa("scalar");
  CHECK(std::string(mm::kernels::vec_isa_name()) == "scalar");
}
