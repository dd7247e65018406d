// tests/engine/test_warp.cpp: warp_perspective: identity, integer shifts, border padding,
// bilinear interpolation, and its gradient against finite differences.
// Run: ctest --test-dir build -R test_warp
#include <doctest/doctest.h>

#include "engine/mm.h"
#include "engine/ops/warp.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

namespace {
Tensor matrices(const std::vector<double>& m, int64_t B) {
  std::vector<double> all;
  for (int64_t b = 0; b < B; ++b) all.insert(all.end(), m.begin(), m.end());
  return Tensor::from_vector(all, {B, 3, 3});
}
}  // namespace

TEST_CASE("warp_perspective forward") {
  Tensor x = rand64({2, 3, 5, 7}, 1);
  SUBCASE("identity") { check_close(warp_perspective(x, matrices({1, 0, 0, 0, 1, 0, 0, 0, 1}, 2)), x, 1e-12, 0, "identity"); }
  SUBCASE("shift by one pixel right: out(x) = in(x - 1), border repeats column 0") {
    Tensor y = warp_perspective(x, matrices({1, 0, -1, 0, 1, 0, 0, 0, 1}, 2), WarpPadding::border);
    check_close(y.narrow(3, 1, 6), x.narrow(3, 0, 6), 1e-12, 0, "shifted");
    check_close(y.narrow(3, 0, 1), x.narrow(3, 0, 1), 1e-12, 0, "border");
    Tensor z = warp_perspective(x, matrices({1, 0, -1, 0, 1, 0, 0, 0, 1}, 2), WarpPadding::zeros);
    check_close(z.narrow(3, 0, 1), Tensor::zeros({2, 3, 5, 1}, f64), 0, 0, "zeros");
  }
  SUBCASE("half-pixel shift averages neighbours") {
    Tensor y = warp_perspective(x, matrices({1, 0, 0.5, 0, 1, 0, 0, 0, 1}, 2));
    check_close(y.narrow(3, 0, 6), (x.narrow(3, 0, 6) + x.narrow(3, 1, 6)) * 0.5, 1e-12, 0, "bilinear");
  }
  SUBCASE("output size and errors") {
    CHECK(warp_perspective(x, matrices({2, 0, 0, 0, 2, 0, 0, 0, 1}, 2), WarpPadding::border, 3, 4).shape() == Shape{2, 3, 3, 4});
    CHECK_THROWS_WITH_AS(warp_perspective(x, Tensor::zeros({1, 3, 3}, f64)), doctest::Contains("expects M [2, 3, 3]"), Error);
  }
}

TEST_CASE("warp_perspective gradient, affine and perspective, both paddings") {
  const std::vector<double> rot = {0.9, -0.2, 0.8, 0.25, 1.05, -0.6, 0.0, 0.0, 1.0};
  const std::vector<double> persp = {1.0, 0.1, 0.3, -0.05, 0.95, 0.2, 0.02, -0.03, 1.0};
  for (const auto& mat : {rot, persp})
    for (WarpPadding p : {WarpPadding::border, WarpPadding::zeros})
      check_gradients([&](const std::vector<Tensor>& in) { return warp_perspective(in[0], matrices(mat, 2), p); },
                      {rand64({2, 2, 4, 5}, 3)});
}
