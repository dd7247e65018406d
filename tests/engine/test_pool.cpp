// tests/engine/test_pool.cpp: avg_pool2d (both CountIncludePad branches), adaptive_avg_pool2d,
// max_pool2d and pad (constant / reflect / replicate) forward against direct loops written
// here from the torch definitions, backward against central differences (also on permuted
// inputs), float32 against float64, and the error messages.
// Run: ./build/mm_tests --source-file=*test_pool.cpp
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

namespace {

// Distinct values (no max-pool ties): ((i * 7919) % n) / n - 0.5 plus a little noise.
Tensor distinct64(const Shape& shape, uint64_t seed) {
  const int64_t n = numel(shape);
  std::vector<double> noise = rand64(shape, seed, 0.0, 0.1 / static_cast<double>(n)).to_vector<double>();
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>((i * 7919) % n) / static_cast<double>(n) - 0.5 + noise[i];
  return Tensor::from_vector(v, shape);
}

// Reference pools over x [P, H, W] (flattened leading dims), window positions enumerated in
// padded coordinates: each tap (h, w) = (i*sh - ph + a, j*sw - pw + b), a < kh, b < kw.
enum class Kind { avg_include, avg_exclude, max };
Tensor naive_pool(const Tensor& x, Kind kind, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const int64_t H = x.size(-2), W = x.size(-1), P = x.numel() / (H * W);
  const int64_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
  const std::vector<double> xv = x.contiguous().to_vector<double>();
  std::vector<double> out;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        double sum = 0, mx = -INFINITY;
        int64_t inside = 0, in_padded = 0;
        for (int64_t a = 0; a < kh; ++a)
          for (int64_t b = 0; b < kw; ++b) {
            const int64_t h = i * sh - ph + a, w = j * sw - pw + b;
            if (h < H + ph && w < W + pw) ++in_padded;  // torch clips the window to the padded input
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const double v = xv[(p * H + h) * W + w];
            sum += v, mx = std::max(mx, v), ++inside;
          }
        out.push_back(kind == Kind::max ? mx
                                        : sum / static_cast<double>(kind == Kind::avg_include ? in_padded : inside));
      }
  Shape s = x.shape();
  s[s.size() - 2] = OH, s[s.size() - 1] = OW;
  return Tensor::from_vector(out, s);
}

Tensor naive_adaptive(const Tensor& x, int64_t OH, int64_t OW) {
  const int64_t H = x.size(-2), W = x.size(-1), P = x.numel() / (H * W);
  const std::vector<double> xv = x.contiguous().to_vector<double>();
  std::vector<double> out;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        const int64_t h0 = static_cast<int64_t>(std::floor(double(i) * H / OH));
        const int64_t h1 = static_cast<int64_t>(std::ceil(double(i + 1) * H / OH));
        const int64_t w0 = static_cast<int64_t>(std::floor(double(j) * W / OW));
        const int64_t w1 = static_cast<int64_t>(std::ceil(double(j + 1) * W / OW));
        double sum = 0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) sum += xv[(p * H + h) * W + w];
        out.push_back(sum / double((h1 - h0) * (w1 - w0)));
      }
  Shape s = x.shape();
  s[s.size() - 2] = OH, s[s.size() - 1] = OW;
  return Tensor::from_vector(out, s);
}

// Index of output position o of a dim of size n padded by `before`, or -1 for the constant.
int64_t source_index(int64_t o, int64_t n, int64_t before, PadMode mode) {
  int64_t i = o - before;
  if (i >= 0 && i < n) return i;
  if (mode == PadMode::constant) return -1;
  if (mode == PadMode::replicate) return i < 0 ? 0 : n - 1;
  // reflect: bounce off the edges (e.g. n = 4: -2 -> 2, -1 -> 1, 4 -> 2, 5 -> 1)
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

// pad of a 4-D x [A, B, H, W] with pads {left, right, top, bottom} (and optionally front/back of B).
Tensor naive_pad4(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode, double value) {
  const Shape s = x.shape();
  std::vector<int64_t> before(4, 0), after(4, 0);
  for (size_t k = 0; k < pads.size() / 2; ++k) before[3 - k] = pads[2 * k], after[3 - k] = pads[2 * k + 1];
  Shape os(4);
  for (int d = 0; d < 4; ++d) os[d] = s[d] + before[d] + after[d];
  const std::vector<double> xv = x.contiguous().to_vector<double>();
  std::vector<double> out;
  for (int64_t a = 0; a < os[0]; ++a)
    for (int64_t b = 0; b < os[1]; ++b)
      for (int64_t h = 0; h < os[2]; ++h)
        for (int64_t w = 0; w < os[3]; ++w) {
          const int64_t ia = source_index(a, s[0], before[0], mode), ib = source_index(b, s[1], before[1], mode);
          const int64_t ih = source_index(h, s[2], before[2], mode), iw = source_index(w, s[3], before[3], mode);
          const bool constant = ia < 0 || ib < 0 || ih < 0 || iw < 0;
          out.push_back(constant ? value : xv[((ia * s[1] + ib) * s[2] + ih) * s[3] + iw]);
        }
  return Tensor::from_vector(out, os);
}

struct WindowCase {
  Shape shape;
  int64_t kh, kw, sh, sw, ph, pw;
  std::string name() const {
    return str_cat(shape_str(shape), " k=", kh, "x", kw, " s=", sh, "x", sw, " p=", ph, "x", pw);
  }
};

const std::vector<WindowCase> kWindowCases = {
    {{2, 3, 7, 9}, 2, 2, 2, 2, 0, 0},  // plain 2x2 (odd sizes: last row/column dropped)
    {{1, 2, 8, 8}, 3, 3, 2, 2, 1, 1},  // ResNet max-pool shape
    {{2, 1, 5, 6}, 3, 2, 1, 2, 1, 1},  // rectangular kernel, padding on both
    {{3, 5, 6}, 4, 3, 3, 1, 2, 0},     // [C, H, W] input, padding = kernel/2
    {{1, 1, 3, 3}, 3, 3, 1, 1, 0, 0},  // one window
};

}  // namespace

TEST_CASE("avg_pool2d and max_pool2d forward match direct loops; backward matches finite differences") {
  for (const WindowCase& c : kWindowCases) {
    SUBCASE(c.name().c_str()) {
      Tensor x = distinct64(c.shape, 1);
      const std::array<int64_t, 2> k{c.kh, c.kw}, s{c.sh, c.sw}, p{c.ph, c.pw};
      check_close(avg_pool2d(x, k, s, p, CountIncludePad::yes),
                  naive_pool(x, Kind::avg_include, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw), 1e-14, 1e-14, "avg include");
      check_close(avg_pool2d(x, k, s, p, CountIncludePad::no),
                  naive_pool(x, Kind::avg_exclude, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw), 1e-14, 1e-14, "avg exclude");
      check_close(max_pool2d(x, k, s, p), naive_pool(x, Kind::max, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw), 0, 0, "max");
      check_close(avg_pool2d(x.to(f32), k, s, p).to(f64), avg_pool2d(x, k, s, p), 1e-6, 1e-6, "avg f32");
      check_close(max_pool2d(x.to(f32), k, s, p).to(f64), max_pool2d(x, k, s, p), 1e-6, 1e-6, "max f32");
      for (auto count : {CountIncludePad::yes, CountIncludePad::no})
        check_gradients([&](const std::vector<Tensor>& in) { return avg_pool2d(in[0], k, s, p, count); }, {x});
      check_gradients([&](const std::vector<Tensor>& in) { return max_pool2d(in[0], k, s, p); }, {x});
    }
  }
  SUBCASE("default stride is the kernel") {
    Tensor x = distinct64({1, 2, 6, 6}, 2);
    check_close(avg_pool2d(x, {3, 2}), avg_pool2d(x, {3, 2}, {3, 2}), 0, 0, "avg");
    check_close(max_pool2d(x, {3, 2}), max_pool2d(x, {3, 2}, {3, 2}), 0, 0, "max");
  }
  SUBCASE("permuted input") {
    Tensor x = distinct64({6, 5, 2}, 3);  // [H, W, C] viewed as [C, H, W]
    check_gradients(
        [](const std::vector<Tensor>& in) {
          return max_pool2d(in[0].permute({2, 0, 1}), {2, 2}, {1, 1});
        },
        {x});
    check_gradients(
        [](const std::vector<Tensor>& in) {
          return avg_pool2d(in[0].permute({2, 0, 1}), {3, 3}, {2, 2}, {1, 1}, CountIncludePad::no);
        },
        {x});
  }
  SUBCASE("max_pool2d propagates NaN") {
    Tensor x = Tensor::from_vector(std::vector<double>{1, NAN, 3, 4}, {1, 1, 2, 2});
    CHECK(std::isnan(max_pool2d(x, {2, 2}).item()));
  }
}

TEST_CASE("adaptive_avg_pool2d matches floor/ceil bins and finite differences") {
  for (auto [shape, oh, ow] : std::vector<std::tuple<Shape, int64_t, int64_t>>{{{2, 3, 7, 9}, 3, 4},
                                                                               {{1, 2, 5, 5}, 5, 5},
                                                                               {{1, 1, 4, 6}, 7, 8},
                                                                               {{3, 10, 7}, 1, 1},
                                                                               {{1, 2, 13, 11}, 7, 7}}) {
    SUBCASE(str_cat("adaptive ", shape_str(shape), " -> ", oh, "x", ow).c_str()) {
      Tensor x = rand64(shape, 4);
      check_close(adaptive_avg_pool2d(x, oh, ow), naive_adaptive(x, oh, ow), 1e-14, 1e-14, "adaptive");
      check_close(adaptive_avg_pool2d(x.to(f32), oh, ow).to(f64), naive_adaptive(x, oh, ow), 1e-6, 1e-6, "f32");
      check_gradients([&](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], oh, ow); }, {x});
    }
  }
}

TEST_CASE("pad: constant, reflect, replicate forward and backward") {
  struct PadCase {
    std::vector<int64_t> pads;
    PadMode mode;
    double value;
  };
  const std::vector<PadCase> cases = {
      {{0, 1, 0, 1}, PadMode::constant, 0.0},                                            // taming Downsample
      {{2, 1, 3, 0}, PadMode::constant, -1.5},       {{1, 2}, PadMode::constant, 0.25},  // last dim only
      {{-1, 2, 1, -2}, PadMode::constant, 0.0},                                          // negative pads crop
      {{2, 1, 3, 2}, PadMode::reflect, 0.0},         {{3, 3}, PadMode::reflect, 0.0},
      {{1, 0, 2, 1, 1, 1}, PadMode::reflect, 0.0},  // three dims
      {{2, 3, 1, 4}, PadMode::replicate, 0.0},       {{0, 0, 5, 5}, PadMode::replicate, 0.0},
      {{1, 1, 1, 1, 2, 0}, PadMode::replicate, 0.0},
  };
  for (const PadCase& c : cases) {
    std::string pads;
    for (int64_t p : c.pads) pads += std::to_string(p) + " ";
    SUBCASE(str_cat("pad mode=", int(c.mode), " pads=", pads, "value=", c.value).c_str()) {
      Tensor x = rand64({2, 3, 4, 5}, 9);
      check_close(pad(x, c.pads, c.mode, c.value), naive_pad4(x, c.pads, c.mode, c.value), 0, 0, "forward");
      check_close(pad(x.to(f32), c.pads, c.mode, c.value).to(f64), naive_pad4(x, c.pads, c.mode, c.value), 1e-7, 1e-7,
                  "f32");
      check_gradients([&](const std::vector<Tensor>& in) { return pad(in[0], c.pads, c.mode, c.value); },
                      {rand64({1, 3, 4, 5}, 10)});
      // permuted input: x stored [W, H, B, A] and viewed as [A, B, H, W]
      check_gradients(
          [&](const std::vector<Tensor>& in) {
            return pad(in[0].permute({3, 2, 1, 0}), c.pads, c.mode, c.value);
          },
          {rand64({5, 4, 3, 1}, 11)});
    }
  }
}

TEST_CASE("pool and pad error messages") {
  Tensor x = Tensor::zeros({1, 3, 4, 4});
  CHECK_THROWS_WITH_AS(avg_pool2d(x, {0, 2}), "[avg_pool2d] kernel must be >= 1, got {0, 2}", Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x, {3, 3}, {1, 1}, {2, 1}),
                       "[max_pool2d] padding {2, 1} must be between 0 and half the kernel {3, 3}", Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x, {5, 5}),
                       "[max_pool2d] input [1, 3, 4, 4] (padded 4x4) is smaller than the kernel 5x5", Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(Tensor::zeros({4, 4}), {2, 2}),
                       "[avg_pool2d] expects input [B, C, H, W] or [C, H, W], got float32[4, 4]", Error);
  CHECK_THROWS_WITH_AS(adaptive_avg_pool2d(x, 0, 3), "[adaptive_avg_pool2d] output size must be >= 1, got 0x3", Error);
  CHECK_THROWS_WITH_AS(
      pad(x, {4, 0}, PadMode::reflect),
      "[pad] reflect padding (4, 0) of dim 3 must be smaller than its size 4; input float32[1, 3, 4, 4]", Error);
  CHECK_THROWS_WITH_AS(
      pad(x, {1, 2, 3}),
      "[pad] pads has 3 entries; expects pairs (before, after) for at most 4 dims of input float32[1, 3, 4, 4]", Error);
  CHECK_THROWS_WITH_AS(
      pad(x, {-1, 0}, PadMode::replicate),
      "[pad] negative padding (-1, 0) of dim 3 is only allowed in constant mode; input float32[1, 3, 4, 4]", Error);
  CHECK_THROWS_AS(avg_pool2d(Tensor::zeros({1, 3, 4, 4}, DType::i64), {2, 2}), Error);
}
