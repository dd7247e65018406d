// tests/gradcheck.h: helpers shared by the op tests: finite-difference gradient checks in
// float64 and tensor comparison with a useful failure message.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/mm.h"

namespace mm::testing {

// Compares actual to expected elementwise with |a - e| <= atol + rtol |e|; on failure
// reports the first bad index, both values, the max abs error and the shape.
inline void check_close(const Tensor& actual, const Tensor& expected, double atol, double rtol,
                        const std::string& what = "") {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", shape_str(actual.shape()), " vs expected ",
                  shape_str(expected.shape()));
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double max_err = 0;
  int64_t bad = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::abs(a[i] - e[i]);
    const bool both_nan = std::isnan(a[i]) && std::isnan(e[i]);
    if (!both_nan && (std::isnan(err) || err > max_err)) max_err = std::isnan(err) ? INFINITY : err;
    if (!both_nan && bad < 0 && !(err <= atol + rtol * std::abs(e[i]))) bad = static_cast<int64_t>(i);
  }
  if (bad >= 0)
    FAIL_CHECK(what, " shape ", shape_str(actual.shape()), ": index ", bad, " got ", a[bad], " expected ", e[bad],
               " (max abs err ", max_err, ", atol ", atol, ", rtol ", rtol, ")");
  else
    CHECK(true);
}

// f maps float64 leaves to one output. Checks the analytic gradient of sum(f(x) * w), w a
// fixed random projection, against central differences for every element of every input.
inline void check_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                            std::vector<Tensor> inputs, double eps = 1e-6, double atol = 1e-6,
                            double rtol = 1e-5) {
  for (auto& t : inputs) {
    REQUIRE_MESSAGE(t.dtype() == DType::f64, "gradcheck inputs must be float64, got ", t.str());
    if (!t.requires_grad()) t.set_requires_grad(true);
  }
  Tensor out = f(inputs);
  Generator gen(1234);
  Tensor w = Tensor::uniform(out.shape(), gen, 0.5, 1.5, DType::f64);
  Tensor loss = sum(mul(out, w));
  std::vector<Tensor> analytic = grad({loss}, inputs);
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    Tensor numeric = Tensor::zeros(x.shape(), DType::f64);
    double* p = x.data<double>();
    double* np_ = numeric.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double orig = p[i];
      p[i] = orig + eps;
      const double lp = sum(mul(f(inputs), w)).item();
      p[i] = orig - eps;
      const double lm = sum(mul(f(inputs), w)).item();
      p[i] = orig;
      np_[i] = (lp - lm) / (2 * eps);
    }
    Tensor a = analytic[k].defined() ? analytic[k] : Tensor::zeros(x.shape(), DType::f64);
    check_close(a, numeric, atol, rtol, "gradient of input " + std::to_string(k));
  }
}

inline Tensor rand64(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator gen(seed);
  return Tensor::uniform(shape, gen, lo, hi, DType::f64);
}

}  // namespace mm::testing
