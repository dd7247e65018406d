// tests/engine/test_norm.cpp: layer_norm, group_norm, batch_norm (inference): forward against
// direct double loops, float32 against float64, backward against finite differences, with
// and without weight/bias, on awkward and strided shapes.
// Run: ./build/mm_tests --source-file=*test_norm.cpp
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

namespace {

// Rows of N consecutive values normalised: (x - mean) / sqrt(var + eps), var without correction.
std::vector<double> ref_normalise_rows(const std::vector<double>& x, int64_t N, double eps) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / N; ++r) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < N; ++i) m += x[r * N + i];
    m /= N;
    for (int64_t i = 0; i < N; ++i) v += (x[r * N + i] - m) * (x[r * N + i] - m);
    v /= N;
    for (int64_t i = 0; i < N; ++i) y[r * N + i] = (x[r * N + i] - m) / std::sqrt(v + eps);
  }
  return y;
}

Tensor ref_layer_norm(const Tensor& x, int64_t N, const Tensor& w, const Tensor& b, double eps) {
  std::vector<double> y = ref_normalise_rows(x.to_vector<double>(), N, eps);
  const std::vector<double> wv = w.defined() ? w.to_vector<double>() : std::vector<double>();
  const std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>();
  for (size_t i = 0; i < y.size(); ++i) {
    if (w.defined()) y[i] *= wv[i % N];
    if (b.defined()) y[i] += bv[i % N];
  }
  return Tensor::from_vector(y, x.shape());
}

// x [B, C, S...]: groups of C/G channels normalised together, then per-channel affine.
Tensor ref_group_norm(const Tensor& x, int64_t G, const Tensor& w, const Tensor& b, double eps) {
  const int64_t B = x.size(0), C = x.size(1), S = x.numel() / (B * C);
  std::vector<double> y = ref_normalise_rows(x.to_vector<double>(), C / G * S, eps);
  const std::vector<double> wv = w.defined() ? w.to_vector<double>() : std::vector<double>();
  const std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>();
  for (size_t i = 0; i < y.size(); ++i) {
    const int64_t c = static_cast<int64_t>(i) / S % C;
    if (w.defined()) y[i] *= wv[c];
    if (b.defined()) y[i] += bv[c];
  }
  return Tensor::from_vector(y, x.shape());
}

const char* affine_name(bool w, bool b) {
  return w ? (b ? "weight+bias" : "weight only") : (b ? "bias only" : "no affine");
}

}  // namespace

TEST_CASE("layer_norm forward and backward, weight/bias each on and off") {
  struct Case {
    Shape x, normalized;
  };
  const std::vector<Case> cases = {{{3, 5}, {5}}, {{2, 3, 4}, {3, 4}}, {{4, 1}, {1}}, {{7}, {7}}, {{2, 1, 3}, {3}}};
  for (const Case& c : cases) {
    for (int combo = 0; combo < 4; ++combo) {
      const bool with_w = combo & 1, with_b = combo & 2;
      const std::string name = "layer_norm x=" + shape_str(c.x) + " normalized=" + shape_str(c.normalized) + " " +
                               affine_name(with_w, with_b);
      SUBCASE(name.c_str()) {
        Tensor x = rand64(c.x, 1, -2, 2);
        Tensor w = with_w ? rand64(c.normalized, 2) : Tensor(), b = with_b ? rand64(c.normalized, 3) : Tensor();
        const Shape ns = c.normalized;
        check_close(layer_norm(x, ns, w, b, 1e-5), ref_layer_norm(x, numel(ns), w, b, 1e-5), 1e-12, 1e-12, name);
        check_close(layer_norm(x.to(f32), ns, with_w ? w.to(f32) : Tensor(), with_b ? b.to(f32) : Tensor(), 1e-5),
                    ref_layer_norm(x, numel(ns), w, b, 1e-5), 1e-5, 1e-5, name + " f32");
        std::vector<Tensor> inputs = {x};
        if (with_w) inputs.push_back(w);
        if (with_b) inputs.push_back(b);
        check_gradients([&](const std::vector<Tensor>& in) {
          return layer_norm(in[0], ns, with_w ? in[1] : Tensor(), with_b ? in[with_w ? 2 : 1] : Tensor(), 1e-5);
        }, inputs);
      }
    }
  }
  SUBCASE("layer_norm transposed x [5, 3]^T normalized [5], large eps 0.5") {
    Tensor x = rand64({5, 3}, 4), w = rand64({5}, 5), b = rand64({5}, 6);
    check_close(layer_norm(x.t(), {5}, w, b, 0.5), ref_layer_norm(x.t().contiguous(), 5, w, b, 0.5), 1e-12, 1e-12,
                "transposed");
    check_gradients([](const std::vector<Tensor>& in) { return layer_norm(in[0].t(), {5}, in[1], in[2], 0.5); },
                    {x, w, b});
  }
  SUBCASE("layer_norm f32 [40, 768] gradients equal f64 (fixed-block dw/db sums)") {
    Tensor x = rand64({40, 768}, 7, -3, 3), w = rand64({768}, 8), b = rand64({768}, 9), g = rand64({40, 768}, 10);
    auto grads = [&](DType t) {
      Tensor x_ = x.to(t).detach().set_requires_grad(true), w_ = w.to(t).detach().set_requires_grad(true);
      Tensor b_ = b.to(t).detach().set_requires_grad(true);
      return mm::grad({layer_norm(x_, {768}, w_, b_)}, {x_, w_, b_}, {g.to(t)});
    };
    auto g64 = grads(f64), g32 = grads(f32);
    check_close(g32[0], g64[0], 1e-4, 1e-4, "dx");
    check_close(g32[1], g64[1], 1e-4, 1e-4, "dw");
    check_close(g32[2], g64[2], 1e-4, 1e-4, "db");
  }
  SUBCASE("layer_norm errors") {
    CHECK_THROWS_WITH_AS(layer_norm(Tensor::zeros({2, 3}), {4}),
                         "[layer_norm] normalized_shape [4] is not the last dims of x [2, 3]", Error);
    CHECK_THROWS_WITH_AS(layer_norm(Tensor::zeros({2, 3}), {3}, Tensor::zeros({2})),
                         "[layer_norm] weight [2] must be [3] for x [2, 3]", Error);
  }
}

TEST_CASE("group_norm and group_norm_silu (the SiLU fused): forward and backward") {
  struct Case {
    Shape x;
    int64_t groups;
  };
  const std::vector<Case> cases = {{{2, 6, 3, 5}, 3}, {{2, 4, 7}, 2},  {{1, 3, 2, 2}, 1},     {{2, 4, 1, 1}, 4},
                                   {{1, 5, 3}, 5},     {{3, 4}, 2},     {{1, 64, 3, 5}, 32}};
  auto to32 = [](const Tensor& t) { return t.defined() ? t.to(DType::f32) : Tensor(); };
  for (const Case& c : cases)
    for (bool fused : {false, true})
      for (int combo = 0; combo < 4; ++combo) {
        const bool with_w = combo & 1, with_b = combo & 2;
        const std::string name = std::string(fused ? "group_norm_silu" : "group_norm") + " x=" + shape_str(c.x) +
                                 " G=" + std::to_string(c.groups) + " " + affine_name(with_w, with_b);
        SUBCASE(name.c_str()) {
          const int64_t C = c.x[1], G = c.groups;
          const Tensor x = rand64(c.x, 11, -2, 2);
          const Tensor w = with_w ? rand64({C}, 12, -2, 2) : Tensor(), b = with_b ? rand64({C}, 13, -2, 2) : Tensor();
          auto op = [&](const Tensor& xi, const Tensor& wi, const Tensor& bi, double eps) {
            return fused ? group_norm_silu(xi, G, wi, bi, eps) : group_norm(xi, G, wi, bi, eps);
          };
          const Tensor plain = ref_group_norm(x, G, w, b, 1e-6), ref = fused ? silu(plain) : plain;
          check_close(op(x, w, b, 1e-6), ref, 1e-12, 1e-12, name);
          check_close(op(to32(x), to32(w), to32(b), 1e-6), ref, 1e-5, 1e-5, name + " f32");
          std::vector<Tensor> inputs{x, w, b};  // the defined ones
          inputs.erase(std::remove_if(inputs.begin(), inputs.end(), [](const Tensor& t) { return !t.defined(); }),
                       inputs.end());
          // eps 1e-3 keeps the size-1 groups (variance 0) well-conditioned for finite differences
          auto f = [&](const std::vector<Tensor>& in) {
            return op(in[0], with_w ? in[1] : Tensor(), with_b ? in[with_w ? 2 : 1] : Tensor(), 1e-3);
          };
          check_gradients(f, inputs);  // float64 against finite differences
          if (fused) {  // float32 (the vector kernels) against group_norm then silu, gradients included
            std::vector<Tensor> in32;
            for (const Tensor& t : inputs) in32.push_back(to32(t).detach().set_requires_grad(true));
            const Tensor ya = f(in32);
            const Tensor yb = silu(group_norm(in32[0], G, with_w ? in32[1] : Tensor(),
                                              with_b ? in32[with_w ? 2 : 1] : Tensor(), 1e-3));
            const Tensor dy = rand64(ya.shape(), 24).to(DType::f32);
            check_close(ya, yb, 1e-5, 1e-5, name + " f32 vs apart");
            const std::vector<Tensor> ga = grad({ya}, in32, {dy}), gb = grad({yb}, in32, {dy});
            for (size_t i = 0; i < ga.size(); ++i)
              check_close(ga[i], gb[i], 1e-4, 1e-4, name + " f32 grad " + std::to_string(i));
          }
        }
      }
  SUBCASE("permuted x [3, 2, 4] -> [2, 4, 3] G=2, and x alone or the affine alone wanting a gradient") {
    Tensor x = rand64({3, 2, 4}, 14), w = rand64({4}, 15), b = rand64({4}, 16);
    Tensor xp = x.permute({1, 2, 0});
    check_close(group_norm(xp, 2, w, b), ref_group_norm(xp.contiguous(), 2, w, b, 1e-5), 1e-12, 1e-12, "permuted");
    check_close(group_norm_silu(xp, 2, w, b), silu(ref_group_norm(xp.contiguous(), 2, w, b, 1e-5)), 1e-12, 1e-12,
                "permuted, fused");
    check_gradients([](const std::vector<Tensor>& in) { return group_norm(in[0].permute({1, 2, 0}), 2, in[1], in[2]); },
                    {x, w, b});
    check_gradients([&](const std::vector<Tensor>& in) { return group_norm_silu(in[0].permute({1, 2, 0}), 2, w, b); },
                    {x});
    check_gradients([&](const std::vector<Tensor>& in) { return group_norm_silu(x.permute({1, 2, 0}), 2, in[0], in[1]); },
                    {w, b});
  }
  SUBCASE("group_norm taming shape [1, 64, 4, 4] G=32 eps=1e-6 f32") {
    Tensor x = rand64({1, 64, 4, 4}, 17), w = rand64({64}, 18), b = rand64({64}, 19);
    check_close(group_norm(x.to(f32), 32, w.to(f32), b.to(f32), 1e-6), ref_group_norm(x, 32, w, b, 1e-6), 1e-5, 1e-5,
                "f32");
  }
  SUBCASE("errors name the op") {
    CHECK_THROWS_WITH_AS(group_norm(Tensor::zeros({2, 6, 3}), 4),
                         "[group_norm] x [2, 6, 3] has 6 channels, not divisible into 4 groups", Error);
    CHECK_THROWS_WITH_AS(group_norm(Tensor::zeros({2, 6, 3}), 3, Tensor::zeros({3})),
                         "[group_norm] weight [3] must be [6] for x [2, 6, 3]", Error);
    CHECK_THROWS_WITH_AS(group_norm_silu(Tensor::zeros({2, 6, 3}), 4),
                         "[group_norm_silu] x [2, 6, 3] has 6 channels, not divisible into 4 groups", Error);
    CHECK_THROWS_WITH_AS(group_norm_silu(Tensor::zeros({2, 6, 3}), 3, Tensor(), Tensor::zeros({3})),
                         "[group_norm_silu] bias [3] must be [6] for x [2, 6, 3]", Error);
  }
}

TEST_CASE("batch_norm inference form") {
  for (int combo = 0; combo < 4; ++combo) {
    const bool with_w = combo & 1, with_b = combo & 2;
    const std::string name = std::string("batch_norm x=[2, 3, 2, 3] ") + affine_name(with_w, with_b);
    SUBCASE(name.c_str()) {
      Tensor x = rand64({2, 3, 2, 3}, 21), m = rand64({3}, 22), v = rand64({3}, 23, 0.5, 1.5);
      Tensor w = with_w ? rand64({3}, 24) : Tensor(), b = with_b ? rand64({3}, 25) : Tensor();
      const std::vector<double> xv = x.to_vector<double>(), mv = m.to_vector<double>(), vv = v.to_vector<double>();
      std::vector<double> ref(xv.size());
      for (size_t i = 0; i < xv.size(); ++i) {
        const int64_t c = static_cast<int64_t>(i) / 6 % 3;
        ref[i] = (xv[i] - mv[c]) / std::sqrt(vv[c] + 1e-5);
        if (with_w) ref[i] *= w.to_vector<double>()[c];
        if (with_b) ref[i] += b.to_vector<double>()[c];
      }
      check_close(batch_norm(x, m, v, w, b), Tensor::from_vector(ref, x.shape()), 1e-12, 1e-12, name);
      std::vector<Tensor> inputs = {x, m, v};
      if (with_w) inputs.push_back(w);
      if (with_b) inputs.push_back(b);
      check_gradients([&](const std::vector<Tensor>& in) {
        return batch_norm(in[0], in[1], in[2], with_w ? in[3] : Tensor(), with_b ? in[with_w ? 4 : 3] : Tensor());
      }, inputs);
    }
  }
  SUBCASE("batch_norm [4, 2] (no spatial dims) and errors") {
    Tensor x = rand64({4, 2}, 26), m = rand64({2}, 27), v = rand64({2}, 28, 0.5, 1.5);
    check_gradients([&](const std::vector<Tensor>& in) { return batch_norm(in[0], m, v); }, {x});
    CHECK_THROWS_WITH_AS(batch_norm(Tensor::zeros({2, 3}), Tensor::zeros({2}), Tensor::ones({3})),
                         "[batch_norm] running_mean [2] must be [3] for x [2, 3]", Error);
  }
}
