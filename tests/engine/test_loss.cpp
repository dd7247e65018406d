// tests/engine/test_loss.cpp: cross_entropy, mse_loss (every Reduction), normalize and
// cosine_similarity (dims, broadcasting, the eps clamp): forward against direct double loops,
// backward against finite differences.
// Run: ./build/mm_tests --source-file=*test_loss.cpp
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

namespace {

const char* reduction_name(Reduction r) {
  return r == Reduction::none ? "none" : r == Reduction::sum ? "sum" : "mean";
}

Tensor reduce_ref(const std::vector<double>& per, Reduction r, const Shape& shape) {
  if (r == Reduction::none) return Tensor::from_vector(per, shape);
  double s = 0;
  for (double v : per) s += v;
  return Tensor::from_vector(std::vector<double>{r == Reduction::sum ? s : s / per.size()}, {});
}

}  // namespace

TEST_CASE("cross_entropy against log-sum-exp loops") {
  for (Reduction r : {Reduction::none, Reduction::sum, Reduction::mean}) {
    for (int64_t C : {1, 5}) {
      const std::string name = std::string("cross_entropy N=4 C=") + std::to_string(C) + " " + reduction_name(r);
      SUBCASE(name.c_str()) {
        Tensor logits = rand64({4, C}, 1, -3, 3);
        std::vector<int64_t> t = {0, C - 1, C / 2, 0};
        Tensor target = Tensor::from_vector(t, {4});
        const std::vector<double> lv = logits.to_vector<double>();
        std::vector<double> per(4);
        for (int64_t n = 0; n < 4; ++n) {
          double m = -INFINITY, s = 0;
          for (int64_t c = 0; c < C; ++c) m = std::max(m, lv[n * C + c]);
          for (int64_t c = 0; c < C; ++c) s += std::exp(lv[n * C + c] - m);
          per[n] = m + std::log(s) - lv[n * C + t[n]];
        }
        check_close(cross_entropy(logits, target, r), reduce_ref(per, r, {4}), 1e-12, 1e-12, name);
        check_close(cross_entropy(logits.to(f32), target, r), reduce_ref(per, r, {4}), 1e-5, 1e-5, name + " f32");
        check_gradients([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target, r); }, {logits});
        check_gradients([&](const std::vector<Tensor>& in) { return cross_entropy(in[0].t(), target, r); },
                        {rand64({C, 4}, 2)});  // transposed logits
      }
    }
  }
  SUBCASE("cross_entropy errors") {
    CHECK_THROWS_WITH_AS(cross_entropy(Tensor::zeros({2, 3}), Tensor::from_vector(std::vector<int64_t>{0, 3}, {2})),
                         "[cross_entropy] target value 3 is out of range [0, 3) for logits [2, 3]", Error);
    CHECK_THROWS_WITH_AS(cross_entropy(Tensor::zeros({2, 3}), Tensor::from_vector(std::vector<int64_t>{0}, {1})),
                         "[cross_entropy] logits [2, 3] and target [1]: expects [N, C] and [N]", Error);
  }
}

TEST_CASE("mse_loss every reduction, broadcast b") {
  for (Reduction r : {Reduction::none, Reduction::sum, Reduction::mean}) {
    const std::string name = std::string("mse_loss a=[3, 4] b=[4] ") + reduction_name(r);
    SUBCASE(name.c_str()) {
      Tensor a = rand64({3, 4}, 3), b = rand64({4}, 4);
      const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
      std::vector<double> per(12);
      for (int i = 0; i < 12; ++i) per[i] = (av[i] - bv[i % 4]) * (av[i] - bv[i % 4]);
      check_close(mse_loss(a, b, r), reduce_ref(per, r, {3, 4}), 1e-14, 1e-14, name);
      check_gradients([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1], r); }, {a, b});
    }
  }
}

TEST_CASE("normalize and cosine_similarity") {
  for (int64_t dim : {0, 1, -1}) {
    const std::string name = "normalize x=[3, 4] dim=" + std::to_string(dim);
    SUBCASE(name.c_str()) {
      Tensor x = rand64({3, 4}, 5);
      const std::vector<double> xv = x.to_vector<double>();
      const int64_t d = dim < 0 ? dim + 2 : dim;
      std::vector<double> ref(12);
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 4; ++j) {
          double s = 0;
          for (int k = 0; k < (d == 0 ? 3 : 4); ++k) {
            const double v = d == 0 ? xv[k * 4 + j] : xv[i * 4 + k];
            s += v * v;
          }
          ref[i * 4 + j] = xv[i * 4 + j] / std::max(std::sqrt(s), 1e-12);
        }
      check_close(normalize(x, dim), Tensor::from_vector(ref, {3, 4}), 1e-14, 1e-14, name);
      check_gradients([&](const std::vector<Tensor>& in) { return normalize(in[0], dim); }, {x});
    }
  }
  SUBCASE("normalize below eps divides by eps") {
    Tensor x = Tensor::from_vector(std::vector<double>{3e-13, -4e-13, 0, 0}, {2, 2});
    check_close(normalize(x, 1), Tensor::from_vector(std::vector<double>{0.3, -0.4, 0, 0}, {2, 2}), 1e-15, 1e-12, "eps");
    check_close(normalize(x, 1, 1e-13), Tensor::from_vector(std::vector<double>{0.6, -0.8, 0, 0}, {2, 2}), 1e-15,
                1e-12, "eps 1e-13: the norm 5e-13 wins");
  }
  struct Case {
    Shape a, b;
    int64_t dim;
  };
  const std::vector<Case> cases = {{{3, 4}, {3, 4}, 1}, {{3, 4}, {4}, -1}, {{3, 4}, {3, 4}, 0}, {{2, 1, 5}, {3, 5}, 2},
                                   {{3, 1}, {3, 4}, 1}};
  for (const Case& c : cases) {
    const std::string name = "cosine_similarity a=" + shape_str(c.a) + " b=" + shape_str(c.b) + " dim=" +
                             std::to_string(c.dim);
    SUBCASE(name.c_str()) {
      Tensor a = rand64(c.a, 6), b = rand64(c.b, 7);
      const Shape s = broadcast_shapes(c.a, c.b, "test");
      const int64_t nd = static_cast<int64_t>(s.size()), d = c.dim < 0 ? c.dim + nd : c.dim;
      // reference: move dim last on the expanded tensors, then loop over vectors
      std::vector<int64_t> perm;
      for (int64_t i = 0; i < nd; ++i)
        if (i != d) perm.push_back(i);
      perm.push_back(d);
      const std::vector<double> av = a.expand(s).permute(perm).to_vector<double>();
      const std::vector<double> bv = b.expand(s).permute(perm).to_vector<double>();
      const int64_t L = s[d], V = numel(s) / L;
      std::vector<double> ref(static_cast<size_t>(V));
      for (int64_t v = 0; v < V; ++v) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t l = 0; l < L; ++l) {
          ab += av[v * L + l] * bv[v * L + l];
          aa += av[v * L + l] * av[v * L + l];
          bb += bv[v * L + l] * bv[v * L + l];
        }
        ref[v] = ab / (std::max(std::sqrt(aa), 1e-8) * std::max(std::sqrt(bb), 1e-8));
      }
      Shape os = s;
      os.erase(os.begin() + d);
      check_close(cosine_similarity(a, b, c.dim), Tensor::from_vector(ref, os), 1e-14, 1e-14, name);
      check_gradients([&](const std::vector<Tensor>& in) { return cosine_similarity(in[0], in[1], c.dim); }, {a, b});
    }
  }
}
