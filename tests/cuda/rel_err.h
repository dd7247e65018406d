// tests/cuda/rel_err.h: the error measure of the CUDA tests, ‖a − b‖ / ‖b‖ (‖a − b‖ when b is
// all zeros), infinity if a holds a non-finite value where b does not (an unwritten, NaN-
// poisoned element).
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace mm::testing {

inline double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) && std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace mm::testing
