// tests/refs.h: locating ../shared/refs (the reference outputs made with the official
// PyTorch code). A test that needs a missing file prints "SKIPPED: ..." (ctest then reports
// the test file as skipped, see CMakeLists.txt) and returns: never a silent pass.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mm::testing {

inline std::string refs_path(const std::string& file) { return std::string(MM_SHARED_DIR) + "/refs/" + file; }

inline bool refs_available(const std::string& file) {
  std::ifstream f(refs_path(file));
  if (f.good()) return true;
  MESSAGE("SKIPPED: reference file " << refs_path(file) << " is missing (../shared/refs beside the clone)");
  return false;
}

// The refs' error measure (refs/README.md "Tolerances"): max |a - e| / max |e|, over tensors of
// one size; a NaN in `actual` counts as an infinite error.
inline double max_rel(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  REQUIRE_MESSAGE(a.size() == e.size(), "max_rel: ", actual.str(), " vs ", expected.str());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::isnan(a[i]) ? INFINITY : std::abs(a[i] - e[i]));
    scale = std::max(scale, std::abs(e[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

}  // namespace mm::testing

// Use at the top of a test case: returns from it (after saying so) when the file is missing.
#define MM_REQUIRE_REFS(file) \
  if (!::mm::testing::refs_available(file)) return
