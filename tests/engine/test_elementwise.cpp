// tests/engine/test_elementwise.cpp: every elementwise op forward (against std:: math) and
// backward (against float64 central differences), with broadcast and strided inputs.
// Run: ctest --test-dir build -R test_elementwise
#include <doctest/doctest.h>

#include <cmath>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

namespace {
struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;  // input range where the op is smooth
};
double sigm(double v) { return 1 / (1 + std::exp(-v)); }
}  // namespace

TEST_CASE("unary ops: forward matches std:: math, backward matches finite differences") {
  const std::vector<UnaryCase> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double v) { return -v; }, -2, 2},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double v) { return std::exp(v); }, -2, 2},
      {"log", [](const Tensor& x) { return log(x); }, [](double v) { return std::log(v); }, 0.2, 3},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double v) { return std::sqrt(v); }, 0.2, 3},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double v) { return 1 / std::sqrt(v); }, 0.2, 3},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double v) { return std::abs(v); }, 0.1, 2},
      {"abs_neg", [](const Tensor& x) { return abs(x); }, [](double v) { return std::abs(v); }, -2, -0.1},
      {"sin", [](const Tensor& x) { return sin(x); }, [](double v) { return std::sin(v); }, -3, 3},
      {"cos", [](const Tensor& x) { return cos(x); }, [](double v) { return std::cos(v); }, -3, 3},
      {"asin", [](const Tensor& x) { return asin(x); }, [](double v) { return std::asin(v); }, -0.9, 0.9},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double v) { return std::tanh(v); }, -3, 3},
      {"square", [](const Tensor& x) { return square(x); }, [](double v) { return v * v; }, -2, 2},
      {"pow2.5", [](const Tensor& x) { return pow(x, 2.5); }, [](double v) { return std::pow(v, 2.5); }, 0.2, 2},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double v) { return v > 0 ? v : 0; }, -2, 2},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, sigm, -4, 4},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double v) { return v * sigm(v); }, -4, 4},
      {"quick_gelu", [](const Tensor& x) { return quick_gelu(x); }, [](double v) { return v * sigm(1.702 * v); }, -4, 4},
      {"gelu_erf", [](const Tensor& x) { return gelu(x); },
       [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }, -4, 4},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, GeluApprox::tanh); },
       [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); }, -4, 4},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); },
       [](double v) { return std::min(0.7, std::max(-0.5, v)); }, -2, 2},
      {"add_scalar", [](const Tensor& x) { return x + 1.5; }, [](double v) { return v + 1.5; }, -2, 2},
      {"mul_scalar", [](const Tensor& x) { return 3.0 * x; }, [](double v) { return 3 * v; }, -2, 2},
      {"rsub_scalar", [](const Tensor& x) { return 1.0 - x; }, [](double v) { return 1 - v; }, -2, 2},
  };
  for (const auto& c : cases) {
    SUBCASE((std::string(c.name) + " [3, 5] and a transposed view").c_str()) {
      Tensor x = rand64({3, 5}, 17, c.lo, c.hi);
      // keep away from the kinks of relu/clamp where finite differences are not defined
      if (std::string(c.name) == "relu" || std::string(c.name) == "clamp") {
        std::vector<double> v = x.to_vector<double>();
        for (auto& e : v)
          for (double k : {0.0, -0.5, 0.7})
            if (std::abs(e - k) < 0.01) e = k + 0.05;
        x = Tensor::from_vector(v, {3, 5});
      }
      std::vector<double> xs = x.to_vector<double>();
      std::vector<double> ref;
      for (double v : xs) ref.push_back(c.ref(v));
      check_close(c.op(x), Tensor::from_vector(ref, {3, 5}), 1e-12, 1e-12, c.name);
      // float32 forward agrees with float64 to float precision
      check_close(c.op(x.to(f32)).to(f64), Tensor::from_vector(ref, {3, 5}), 1e-6, 1e-5, c.name);
      check_gradients([&](const std::vector<Tensor>& in) { return c.op(in[0]); }, {x});
      check_gradients([&](const std::vector<Tensor>& in) { return c.op(in[0].t()); }, {x});
    }
  }
}

TEST_CASE("binary ops with broadcasting") {
  Tensor a = rand64({2, 3, 4}, 1, 0.5, 2.0), b = rand64({3, 1}, 2, 0.5, 2.0);
  const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  auto expect = [&](std::function<double(double, double)> f) {
    std::vector<double> r;
    for (int64_t i = 0; i < 24; ++i) r.push_back(f(av[i], bv[(i / 4) % 3]));
    return Tensor::from_vector(r, {2, 3, 4});
  };
  SUBCASE("forward [2,3,4] op [3,1]") {
    check_close(add(a, b), expect([](double x, double y) { return x + y; }), 0, 1e-15, "add");
    check_close(sub(a, b), expect([](double x, double y) { return x - y; }), 0, 1e-15, "sub");
    check_close(mul(a, b), expect([](double x, double y) { return x * y; }), 0, 1e-15, "mul");
    check_close(div(a, b), expect([](double x, double y) { return x / y; }), 0, 1e-15, "div");
    check_close(pow(a, b), expect([](double x, double y) { return std::pow(x, y); }), 0, 1e-14, "pow");
    check_close(maximum(a, b), expect([](double x, double y) { return std::max(x, y); }), 0, 0, "maximum");
    check_close(minimum(a, b), expect([](double x, double y) { return std::min(x, y); }), 0, 0, "minimum");
    check_close(gt(a, b).to(f64), expect([](double x, double y) { return x > y ? 1.0 : 0.0; }), 0, 0, "gt");
    check_close(le(a, b).to(f64), expect([](double x, double y) { return x <= y ? 1.0 : 0.0; }), 0, 0, "le");
    check_close(eq(a, a).to(f64), Tensor::ones({2, 3, 4}, f64), 0, 0, "eq");
    check_close(ne(a, b).to(f64), Tensor::ones({2, 3, 4}, f64), 0, 0, "ne");
    check_close(lt(a, b).to(f64), expect([](double x, double y) { return x < y ? 1.0 : 0.0; }), 0, 0, "lt");
    check_close(ge(a, b).to(f64), expect([](double x, double y) { return x >= y ? 1.0 : 0.0; }), 0, 0, "ge");
  }
  SUBCASE("backward: both sides broadcast, one side strided") {
    for (auto op : std::vector<std::function<Tensor(const Tensor&, const Tensor&)>>{
             [](const Tensor& x, const Tensor& y) { return add(x, y); },
             [](const Tensor& x, const Tensor& y) { return sub(x, y); },
             [](const Tensor& x, const Tensor& y) { return mul(x, y); },
             [](const Tensor& x, const Tensor& y) { return div(x, y); },
             [](const Tensor& x, const Tensor& y) { return pow(x, y); },
             [](const Tensor& x, const Tensor& y) { return maximum(x, y); },
             [](const Tensor& x, const Tensor& y) { return minimum(x, y); }}) {
      check_gradients([&](const std::vector<Tensor>& in) { return op(in[0], in[1]); }, {a, b});
      check_gradients([&](const std::vector<Tensor>& in) { return op(in[0].permute({2, 1, 0}), in[1].t()); },
                      {rand64({4, 3, 2}, 5, 0.5, 2.0), rand64({4, 1}, 6, 0.5, 2.0)});
    }
  }
  SUBCASE("shape and dtype errors name the op and both shapes") {
    CHECK_THROWS_WITH_AS(add(Tensor::zeros({2, 3}), Tensor::zeros({4})),
                         doctest::Contains("[add] shapes [2, 3] and [4] cannot be broadcast"), Error);
    CHECK_THROWS_WITH_AS(mul(Tensor::zeros({2}), Tensor::zeros({2}, f64)), doctest::Contains("[mul] dtype mismatch"),
                         Error);
    CHECK_THROWS_WITH_AS(exp(Tensor::zeros({2}, i64)), doctest::Contains("[exp] expects a float32 or float64"), Error);
  }
}

TEST_CASE("where, masked_fill, logical_not") {
  Tensor a = rand64({2, 3}, 3), b = rand64({3}, 4);
  Tensor cond = gt(a, Tensor::zeros({}, f64));
  const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> ref;
  for (int i = 0; i < 6; ++i) ref.push_back(av[i] > 0 ? av[i] : bv[i % 3]);
  check_close(where(cond, a, b), Tensor::from_vector(ref, {2, 3}), 0, 0, "where");
  check_gradients([&](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); }, {a, b});
  Tensor filled = masked_fill(a, logical_not(cond), -9.0);
  for (int i = 0; i < 6; ++i) CHECK(filled.to_vector<double>()[i] == (av[i] > 0 ? av[i] : -9.0));
  check_gradients([&](const std::vector<Tensor>& in) { return masked_fill(in[0], cond, 0.0); }, {a});
  CHECK_THROWS_WITH_AS(where(a, a, b), doctest::Contains("must be bool"), Error);
}

TEST_CASE("float32 elementwise results do not depend on the thread count") {
  Generator g(5);
  Tensor x = Tensor::randn({257, 301}, g), y = Tensor::randn({301}, g);
  const int t = num_threads();
  set_num_threads(1);
  std::vector<float> one = gelu(x * y + 1.0).to_vector<float>();
  set_num_threads(2);
  std::vector<float> two = gelu(x * y + 1.0).to_vector<float>();
  set_num_threads(t);
  CHECK(one == two);
}
