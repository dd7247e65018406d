// tests/engine/test_autograd.cpp: the backward engine: accumulation, leaves and non-leaves,
// no-grad scopes, freed graphs, custom backward functions and mm::grad.
// Run: ctest --test-dir build -R test_autograd
#include <doctest/doctest.h>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;

TEST_CASE("backward accumulates into leaves") {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}).set_requires_grad(true);
  Tensor y = sum(x * x);  // dy/dx = 2x
  CHECK(!y.is_leaf());
  CHECK(y.requires_grad());
  y.backward();
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 4, 6});
  sum(x * 3.0).backward();  // accumulates
  CHECK(x.grad().to_vector<float>() == std::vector<float>{5, 7, 9});
  x.zero_grad();
  CHECK(!x.grad().defined());
}

TEST_CASE("a tensor used twice gets the sum of both paths (diamond)") {
  Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1.0}, {2}).set_requires_grad(true);
  Tensor a = exp(x);
  Tensor b = a * x + a;  // d/dx = e^x x + e^x + e^x
  sum(b).backward();
  std::vector<double> g = x.grad().to_vector<double>();
  CHECK(g[0] == doctest::Approx(std::exp(0.5) * 2.5));
  CHECK(g[1] == doctest::Approx(std::exp(-1.0) * 1.0));
}

TEST_CASE("backward with an explicit gradient for a non-scalar output") {
  Tensor x = Tensor::ones({2, 2}).set_requires_grad(true);
  Tensor y = x * 2.0;
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("implicit only for one-element"), Error);
  y.backward(Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}));
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 4, 6, 8});
}

TEST_CASE("the graph is freed after backward unless retained") {
  Tensor x = Tensor::ones({3}).set_requires_grad(true);
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();  // second backward allowed: the first retained the graph
  CHECK(x.grad().to_vector<float>()[0] == doctest::Approx(2 * std::exp(1.0f)));
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("backward through the graph a second time"), Error);
}

TEST_CASE("no-grad scope, detach and leaf semantics") {
  Tensor w = Tensor::ones({2}).set_requires_grad(true);
  {
    NoGradGuard ng;
    Tensor y = w * 2.0;
    CHECK(!y.requires_grad());
    CHECK(y.is_leaf());
  }
  Tensor d = (w * 2.0).detach();
  CHECK(!d.requires_grad());
  CHECK_THROWS_WITH_AS(sum(d).backward(), doctest::Contains("does not require grad"), Error);
  Tensor nl = w * 2.0;
  CHECK_THROWS_WITH_AS(nl.set_requires_grad(false), doctest::Contains("non-leaf"), Error);
  CHECK_THROWS_AS(Tensor::zeros({2}, i64).set_requires_grad(true), Error);
  // a branch that does not require grad contributes nothing
  Tensor c = Tensor::ones({2});
  sum(w * c + c).backward();
  CHECK(!c.grad().defined());
  CHECK(w.grad().to_vector<float>() == std::vector<float>{1, 1});
}

TEST_CASE("mm::grad returns gradients without touching .grad") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2}, {2}).set_requires_grad(true);
  Tensor h = x * x;  // non-leaf input
  Tensor y = sum(h * 3.0);
  auto g = grad({y}, {x, h});
  CHECK(g[0].to_vector<double>() == std::vector<double>{6, 12});
  CHECK(g[1].to_vector<double>() == std::vector<double>{3, 3});
  CHECK(!x.grad().defined());
}

TEST_CASE("mm::grad runs only the nodes that lead to the requested inputs") {
  // loss = sum(f(x) * w): the gradient w.r.t. w needs f's output, not f's backward.
  Tensor x = Tensor::full({3}, 1.0).set_requires_grad(true);
  Tensor w = Tensor::full({3}, 3.0).set_requires_grad(true);
  int calls = 0;
  Tensor y = Tensor::full({3}, 2.0);
  record_op("counted", {x}, {y}, [&calls](const Grads& g) {
    ++calls;
    return Grads{g[0]};
  });
  Tensor loss = sum(y * w);
  const Tensor gw = grad({loss}, {w}, {}, /*retain_graph=*/true)[0];
  CHECK(calls == 0);
  CHECK(gw.to_vector<float>() == std::vector<float>{2, 2, 2});
  const std::vector<Tensor> both = grad({loss}, {x, w}, {}, /*retain_graph=*/true);
  CHECK(calls == 1);
  CHECK(both[0].to_vector<float>() == std::vector<float>{3, 3, 3});
  CHECK(both[1].to_vector<float>() == std::vector<float>{2, 2, 2});
  loss.backward();  // plain backward runs everything
  CHECK(calls == 2);
  CHECK(x.grad().to_vector<float>() == std::vector<float>{3, 3, 3});
}

TEST_CASE("custom backward: straight-through and clamp_with_grad") {
  SUBCASE("straight_through: value of the first, gradient to the second") {
    Tensor z = Tensor::from_vector(std::vector<float>{0.2f, 0.7f}, {2}).set_requires_grad(true);
    Tensor q = Tensor::from_vector(std::vector<float>{0.0f, 1.0f}, {2});
    Tensor out = straight_through(q, z);
    CHECK(out.to_vector<float>() == q.to_vector<float>());
    sum(out * out).backward();  // d/dz = 2 * q
    CHECK(z.grad().to_vector<float>() == std::vector<float>{0.0f, 2.0f});
  }
  SUBCASE("clamp_with_grad passes gradients that pull values back into range") {
    Tensor x = Tensor::from_vector(std::vector<float>{-0.5f, 0.5f, 1.5f, -0.5f, 1.5f}, {5}).set_requires_grad(true);
    Tensor y = clamp_with_grad(x, 0.0, 1.0);
    CHECK(y.to_vector<float>() == std::vector<float>{0.0f, 0.5f, 1.0f, 0.0f, 1.0f});
    // g * (x - clamp(x)) >= 0 passes: x=-0.5 with g=-1 (descent raises x) passes; g=+1 blocked
    y.backward(Tensor::from_vector(std::vector<float>{-1, 1, 1, 1, -1}, {5}));
    CHECK(x.grad().to_vector<float>() == std::vector<float>{-1, 1, 1, 0, 0});
  }
  SUBCASE("a user-written op with record_op") {
    // y = x^3 with a hand-written backward 3 x^2
    Tensor x = testing::rand64({4}, 9);
    testing::check_gradients(
        [](const std::vector<Tensor>& in) {
          Tensor out;
          {
            NoGradGuard ng;
            out = in[0] * in[0] * in[0];
          }
          if (needs_grad({in[0]})) {
            Tensor xd = in[0].detach();
            record_op("cube", {in[0]}, {out}, [xd](const Grads& g) { return Grads{g[0] * xd * xd * 3.0}; });
          }
          return out;
        },
        {x});
  }
}
