// tests/engine/test_reduce.cpp: sum/mean/var/norm over any dims, max/min/argmax, softmax,
// log_softmax, sum_to: forward against direct loops, backward against finite differences.
// Run: ctest --test-dir build -R test_reduce
#include <doctest/doctest.h>

#include <cmath>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

TEST_CASE("sum over every combination of dims, keepdim both ways") {
  Tensor x = rand64({2, 3, 4}, 1);
  const std::vector<double> v = x.to_vector<double>();
  const std::vector<std::vector<int64_t>> combos = {{}, {0}, {1}, {2}, {-1}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2}};
  for (const auto& dims : combos) {
    for (KeepDim keep : {KeepDim::no, KeepDim::yes}) {
      std::string name = "sum dims=" + std::to_string(dims.size()) + (keep == KeepDim::yes ? " keepdim" : "");
      for (int64_t d : dims) name += " " + std::to_string(d);
      SUBCASE(name.c_str()) {
        Tensor s = sum(x, dims, keep);
        // reference: accumulate each element into its output slot
        bool r[3] = {dims.empty(), dims.empty(), dims.empty()};
        for (int64_t d : dims) r[(d + 3) % 3] = true;
        Shape os = {r[0] ? 1 : 2, r[1] ? 1 : 3, r[2] ? 1 : 4};
        std::vector<double> ref(static_cast<size_t>(numel(os)), 0.0);
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 4; ++k)
              ref[((r[0] ? 0 : i) * os[1] + (r[1] ? 0 : j)) * os[2] + (r[2] ? 0 : k)] += v[(i * 3 + j) * 4 + k];
        CHECK(s.numel() == static_cast<int64_t>(ref.size()));
        check_close(s.reshape({-1}), Tensor::from_vector(ref, {static_cast<int64_t>(ref.size())}), 1e-14, 1e-14, name);
        check_gradients([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keep); }, {x});
        check_gradients([&](const std::vector<Tensor>& in) { return sum(in[0].permute({2, 0, 1}), dims, keep); },
                        {rand64({4, 2, 3}, 2)});
      }
    }
  }
}

TEST_CASE("mean, var, norm") {
  Tensor x = rand64({3, 5}, 3);
  const std::vector<double> v = x.to_vector<double>();
  double m = 0;
  for (double e : v) m += e;
  m /= 15;
  double ss = 0;
  for (double e : v) ss += (e - m) * (e - m);
  CHECK(mean(x).item() == doctest::Approx(m).epsilon(1e-14));
  CHECK(var(x).item() == doctest::Approx(ss / 14).epsilon(1e-13));
  CHECK(var(x, {}, KeepDim::no, 0).item() == doctest::Approx(ss / 15).epsilon(1e-13));
  double n2 = 0, n1 = 0, n3 = 0;
  for (double e : v) n2 += e * e, n1 += std::abs(e), n3 += std::pow(std::abs(e), 3);
  CHECK(norm(x).item() == doctest::Approx(std::sqrt(n2)).epsilon(1e-14));
  CHECK(norm(x, 1).item() == doctest::Approx(n1).epsilon(1e-14));
  CHECK(norm(x, 3).item() == doctest::Approx(std::cbrt(n3)).epsilon(1e-13));
  check_gradients([](const std::vector<Tensor>& in) { return mean(in[0], {1}); }, {x});
  check_gradients([](const std::vector<Tensor>& in) { return var(in[0], {0}, KeepDim::yes); }, {x});
  check_gradients([](const std::vector<Tensor>& in) { return norm(in[0], 2, {1}); }, {x});
  check_gradients([](const std::vector<Tensor>& in) { return norm(in[0].t(), 3, {0}); }, {x});
}

TEST_CASE("max/min/argmax/argmin along a dim") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 5, 3, 5, -2, 0, 7, 7}, {2, 4});
  auto [v, i] = max(x, 1);
  CHECK(v.to_vector<double>() == std::vector<double>{5, 7});
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{1, 2});  // first occurrence
  auto [mv, mi] = min(x, 0, KeepDim::yes);
  CHECK(mv.shape() == Shape{1, 4});
  CHECK(mv.to_vector<double>() == std::vector<double>{-2, 0, 3, 5});
  CHECK(mi.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 0});
  CHECK(argmax(x, 0).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 1, 1});
  CHECK(argmin(x, -1).to_vector<int64_t>() == std::vector<int64_t>{0, 0});
  CHECK(max(x).item() == 7.0);
  CHECK(min(x).item() == -2.0);
  Tensor y = rand64({3, 4, 5}, 4);
  check_gradients([](const std::vector<Tensor>& in) { return max(in[0], 1).first; }, {y});
  check_gradients([](const std::vector<Tensor>& in) { return min(in[0].permute({2, 1, 0}), 0).first; }, {y});
  check_gradients([](const std::vector<Tensor>& in) { return max(in[0]); }, {y});
  // NaN propagates
  Tensor n = Tensor::from_vector(std::vector<double>{1, NAN, 3}, {3});
  CHECK(std::isnan(max(n, 0).first.item()));
}

TEST_CASE("softmax, log_softmax, logsumexp") {
  Tensor x = rand64({2, 3, 4}, 5, -3, 3);
  for (int64_t dim : {0, 1, 2}) {
    SUBCASE(("softmax dim=" + std::to_string(dim)).c_str()) {
      Tensor p = softmax(x, dim);
      check_close(sum(p, {dim}), Tensor::ones(sum(p, {dim}).shape(), f64), 1e-14, 0, "softmax sums to 1");
      Tensor ref = div(exp(x), sum(exp(x), {dim}, KeepDim::yes));
      check_close(p, ref, 1e-15, 1e-13, "softmax");
      check_close(log_softmax(x, dim), log(ref), 1e-13, 1e-13, "log_softmax");
      check_close(logsumexp(x, dim), log(sum(exp(x), {dim})), 1e-13, 1e-13, "logsumexp");
      check_gradients([dim](const std::vector<Tensor>& in) { return softmax(in[0], dim); }, {x});
      check_gradients([dim](const std::vector<Tensor>& in) { return log_softmax(in[0].transpose(0, 2), dim); }, {x});
      check_gradients([dim](const std::vector<Tensor>& in) { return logsumexp(in[0], dim); }, {x});
    }
  }
  // large logits do not overflow
  Tensor big = Tensor::from_vector(std::vector<float>{1000, 1001, -1000}, {3});
  std::vector<float> p = softmax(big, 0).to_vector<float>();
  CHECK(p[1] == doctest::Approx(1 / (1 + std::exp(-1.0))));
  CHECK(p[2] == 0.0f);
}

TEST_CASE("sum_to undoes broadcasting") {
  Tensor g = rand64({2, 3, 4}, 6);
  check_close(sum_to(g, {3, 1}), sum(g, {0, 2}, KeepDim::yes).squeeze(0), 1e-15, 0, "sum_to [3,1]");
  check_close(sum_to(g, {4}), sum(g, {0, 1}), 1e-15, 0, "sum_to [4]");
  CHECK_THROWS_WITH_AS(sum_to(g, {5}), doctest::Contains("[sum_to] cannot reduce"), Error);
}

TEST_CASE("reductions do not depend on the thread count (float32)") {
  Generator gen(9);
  Tensor x = Tensor::randn({300000}, gen);
  Tensor m = Tensor::randn({513, 257}, gen);
  const int t = num_threads();
  std::vector<float> r1, r2;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::vector<float>& r = threads == 1 ? r1 : r2;
    r.push_back(sum(x).item());
    for (float v : sum(m, {0}).to_vector<float>()) r.push_back(v);
    for (float v : sum(m, {1}).to_vector<float>()) r.push_back(v);
    for (float v : softmax(m, 0).to_vector<float>()) r.push_back(v);
    r.push_back(var(m).item());
  }
  set_num_threads(t);
  CHECK(r1 == r2);
  // float32 sum of 300k normals is accurate (double accumulation)
  double ref = 0;
  for (float v : x.to_vector<float>()) ref += v;
  CHECK(sum(x).item() == doctest::Approx(ref).epsilon(1e-6));
}
