// tests/engine/test_optim.cpp: SGD (momentum, nesterov), Adam, AdamW against step-by-step
// scalar recurrences written out here, plus convergence and state round trips.
// Run: ctest --test-dir build -R test_optim
#include <doctest/doctest.h>

#include <cmath>

#include "engine/mm.h"
#include "engine/optim.h"

using namespace mm;

namespace {
// loss = sum(c * p^2) with c = [1, 2, 3]: grad = 2 c p
Tensor quadratic(const Tensor& p) {
  return sum(mul(Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}), square(p)));
}
}  // namespace

TEST_CASE("SGD with momentum and nesterov follows torch.optim.SGD's recurrence") {
  for (bool nesterov : {false, true}) {
    SUBCASE(nesterov ? "nesterov" : "momentum") {
      Tensor p = Tensor::from_vector(std::vector<double>{1, -1, 0.5}, {3}).set_requires_grad(true);
      SGD opt({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.0, .weight_decay = 0.01, .nesterov = nesterov});
      std::vector<double> ref = {1, -1, 0.5}, buf(3, 0.0);
      const double c[3] = {1, 2, 3};
      for (int step = 0; step < 5; ++step) {
        opt.zero_grad();
        quadratic(p).backward();
        opt.step();
        for (int i = 0; i < 3; ++i) {
          double g = 2 * c[i] * ref[i] + 0.01 * ref[i];
          buf[i] = step == 0 ? g : 0.9 * buf[i] + g;
          ref[i] -= 0.1 * (nesterov ? g + 0.9 * buf[i] : buf[i]);
        }
      }
      std::vector<double> got = p.to_vector<double>();
      for (int i = 0; i < 3; ++i) CHECK(got[i] == doctest::Approx(ref[i]).epsilon(1e-12));
    }
  }
}

TEST_CASE("Adam and AdamW follow torch.optim's recurrences") {
  for (WeightDecay wd : {WeightDecay::l2, WeightDecay::decoupled}) {
    SUBCASE(wd == WeightDecay::l2 ? "Adam (L2)" : "AdamW (decoupled)") {
      Tensor p = Tensor::from_vector(std::vector<double>{1, -1, 0.5}, {3}).set_requires_grad(true);
      Adam opt({p}, {.lr = 0.05, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1}, wd);
      std::vector<double> ref = {1, -1, 0.5}, m(3, 0), v(3, 0);
      const double c[3] = {1, 2, 3};
      for (int t = 1; t <= 6; ++t) {
        opt.zero_grad();
        quadratic(p).backward();
        opt.step();
        for (int i = 0; i < 3; ++i) {
          double g = 2 * c[i] * ref[i];
          if (wd == WeightDecay::l2) g += 0.1 * ref[i];
          else ref[i] *= 1 - 0.05 * 0.1;
          m[i] = 0.9 * m[i] + 0.1 * g;
          v[i] = 0.99 * v[i] + 0.01 * g * g;
          const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.99, t));
          ref[i] -= 0.05 * mh / (std::sqrt(vh) + 1e-8);
        }
      }
      std::vector<double> got = p.to_vector<double>();
      for (int i = 0; i < 3; ++i) CHECK(got[i] == doctest::Approx(ref[i]).epsilon(1e-12));
    }
  }
  SUBCASE("first Adam step moves each coordinate by lr against the gradient's sign") {
    Tensor p = Tensor::from_vector(std::vector<float>{3, -2}, {2}).set_requires_grad(true);
    Adam opt({p}, {.lr = 0.1});
    sum(square(p)).backward();
    opt.step();
    std::vector<float> got = p.to_vector<float>();
    CHECK(got[0] == doctest::Approx(2.9f));
    CHECK(got[1] == doctest::Approx(-1.9f));
  }
}

TEST_CASE("optimisers converge on a quadratic and their state round-trips") {
  Tensor p = Tensor::from_vector(std::vector<double>{1, -1, 0.5}, {3}).set_requires_grad(true);
  AdamW opt({p}, {.lr = 0.05});
  for (int i = 0; i < 500; ++i) {
    opt.zero_grad();
    quadratic(p).backward();
    opt.step();
  }
  CHECK(quadratic(p).item() < 1e-6);
  // resume: a copy of params + state continues identically
  Tensor q = p.detach().clone().set_requires_grad(true);
  AdamW opt2({q}, {.lr = 0.05});
  opt2.load_state(opt.state());
  for (Adam* o : {static_cast<Adam*>(&opt), static_cast<Adam*>(&opt2)}) {
    o->zero_grad();
    quadratic(o->params()[0]).backward();
    o->step();
  }
  CHECK(p.to_vector<double>() == q.to_vector<double>());
  CHECK_THROWS_WITH_AS(opt2.load_state({{"bogus.0", Tensor::zeros({3}, f64)}}), doctest::Contains("unknown state"), Error);
  CHECK_THROWS_AS(SGD({Tensor::zeros({2})}, {}), Error);  // not requiring grad
}

TEST_CASE("clip_grad_norm rescales to the max norm") {
  Tensor a = Tensor::from_vector(std::vector<float>{3, 0}, {2}).set_requires_grad(true);
  Tensor b = Tensor::from_vector(std::vector<float>{0, 4}, {2}).set_requires_grad(true);
  sum(a * a * 0.5 + b * b * 0.5).backward();  // grads [3, 0] and [0, 4]: norm 5
  const double n = clip_grad_norm({a, b}, 1.0);
  CHECK(n == doctest::Approx(5.0));
  CHECK(a.grad().to_vector<float>()[0] == doctest::Approx(0.6f).epsilon(1e-5));
  CHECK(b.grad().to_vector<float>()[1] == doctest::Approx(0.8f).epsilon(1e-5));
}
