// tests/engine/test_tensor.cpp: tensor construction, views, copies, dtypes and random numbers.
// Run: ctest --test-dir build -R test_tensor   (or ./build/mm_tests --source-file=*test_tensor.cpp)
#include <doctest/doctest.h>

#include <cmath>

#include "engine/cuda_ops.h"
#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;

TEST_CASE("views share storage and index correctly") {
  Tensor x = Tensor::arange(24).reshape({2, 3, 4});
  CHECK(x.is_contiguous());
  CHECK(x.at<float>({1, 2, 3}) == 23.0f);

  SUBCASE("permute [2,3,4] -> [4,2,3]") {
    Tensor p = x.permute({2, 0, 1});
    CHECK(p.shape() == Shape{4, 2, 3});
    CHECK(!p.is_contiguous());
    CHECK(p.at<float>({3, 1, 2}) == x.at<float>({1, 2, 3}));
    Tensor c = p.contiguous();
    CHECK(c.is_contiguous());
    CHECK(c.at<float>({3, 1, 2}) == 23.0f);
    CHECK(c.to_vector<float>()[1] == 4.0f);  // p[0,0,1] = x[0,1,0]
  }
  SUBCASE("narrow and slice with step") {
    Tensor n = x.narrow(2, 1, 2);
    CHECK(n.shape() == Shape{2, 3, 2});
    CHECK(n.at<float>({1, 0, 0}) == 13.0f);
    Tensor s = x.slice(2, 0, 4, 2);
    CHECK(s.to_vector<float>() == std::vector<float>{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22});
    Tensor sel = x.select(1, -1);
    CHECK(sel.shape() == Shape{2, 4});
    CHECK(sel.at<float>({1, 0}) == 20.0f);
  }
  SUBCASE("writes through a view reach the base") {
    Tensor n = x.narrow(0, 1, 1);
    n.fill_(-1);
    CHECK(x.at<float>({1, 0, 0}) == -1.0f);
    CHECK(x.at<float>({0, 2, 3}) == 11.0f);
  }
  SUBCASE("expand, squeeze, unsqueeze, flatten") {
    Tensor b = Tensor::arange(3).reshape({3, 1}).expand({2, 3, 4});
    CHECK(b.strides() == Shape{0, 1, 0});
    CHECK(b.at<float>({1, 2, 3}) == 2.0f);
    CHECK(x.unsqueeze(0).shape() == Shape{1, 2, 3, 4});
    CHECK(x.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
    CHECK(x.unsqueeze(0).squeeze(0).shape() == Shape{2, 3, 4});
    CHECK(x.flatten(1).shape() == Shape{2, 12});
  }
  SUBCASE("reshape of a non-contiguous tensor copies, view refuses") {
    Tensor t = x.transpose(1, 2);
    CHECK_THROWS_WITH_AS(t.view({2, 12}), doctest::Contains("use reshape"), Error);
    Tensor r = t.reshape({2, 12});
    CHECK(r.at<float>({0, 1}) == 4.0f);
    CHECK(x.reshape({-1, 4}).shape() == Shape{6, 4});
    CHECK_THROWS_WITH_AS(x.reshape({5, -1}), doctest::Contains("[reshape] cannot reshape [2, 3, 4]"), Error);
  }
}

TEST_CASE("dtype conversion round trips") {
  SUBCASE("float16 exact values and rounding") {
    Tensor x = Tensor::from_vector(std::vector<float>{0.f, 1.f, -2.5f, 65504.f, 6.1035156e-05f, 5.9604645e-08f,
                                                      1.0009765625f, 70000.f, 1e-9f},
                                   {9});
    std::vector<float> h = x.to(f16).to(f32).to_vector<float>();
    CHECK(h[0] == 0.f);
    CHECK(h[1] == 1.f);
    CHECK(h[2] == -2.5f);
    CHECK(h[3] == 65504.f);
    CHECK(h[4] == 6.1035156e-05f);  // smallest normal
    CHECK(h[5] == 5.9604645e-08f);  // smallest subnormal
    CHECK(h[6] == 1.0009765625f);   // 1 + 2^-10
    CHECK(std::isinf(h[7]));
    CHECK(h[8] == 0.f);
    // round to nearest even: 1 + 2^-11 is a tie between 1 and 1 + 2^-10 -> 1
    CHECK(half_to_float(float_to_half(1.00048828125f)) == 1.0f);
    CHECK(half_to_float(float_to_half(1.00146484375f)) == 1.001953125f);  // tie -> even (up)
  }
  SUBCASE("bfloat16 rounds to nearest even") {
    CHECK(bf16_to_float(float_to_bf16(1.0f)) == 1.0f);
    CHECK(bf16_to_float(float_to_bf16(1.00390625f)) == 1.0f);       // tie -> even
    CHECK(bf16_to_float(float_to_bf16(1.01171875f)) == 1.015625f);  // tie -> even (up)
    CHECK(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  }
  SUBCASE("integer and bool conversions") {
    Tensor x = Tensor::from_vector(std::vector<float>{-1.7f, 0.f, 2.9f}, {3});
    CHECK(x.to(i64).to_vector<int64_t>() == std::vector<int64_t>{-1, 0, 2});
    CHECK(x.to(boolean).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});
    CHECK(x.to(f64).to(f32).to_vector<float>() == x.to_vector<float>());
  }
}

TEST_CASE("random numbers are seeded, reproducible and thread-count independent") {
  Generator g1(7), g2(7), g3(8);
  Tensor a = Tensor::randn({1000}, g1), b = Tensor::randn({1000}, g2), c = Tensor::randn({1000}, g3);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  CHECK(a.to_vector<float>() != c.to_vector<float>());
  Tensor a2 = Tensor::randn({1000}, g1);  // the counter moved on
  CHECK(a2.to_vector<float>() != a.to_vector<float>());

  const int threads = num_threads();
  set_num_threads(1);
  Generator s1(3);
  std::vector<float> one = Tensor::uniform({100000}, s1).to_vector<float>();
  set_num_threads(2);
  Generator s2(3);
  std::vector<float> two = Tensor::uniform({100000}, s2).to_vector<float>();
  set_num_threads(threads);
  CHECK(one == two);

  // moments
  Generator g(11);
  Tensor n = Tensor::randn({200000}, g, f64);
  CHECK(std::abs(mean(n).item()) < 0.01);
  CHECK(std::abs(var(n).item() - 1.0) < 0.02);
  Tensor u = Tensor::uniform({200000}, g, 2.0, 4.0, f64);
  CHECK(std::abs(mean(u).item() - 3.0) < 0.01);
  CHECK(min(u).item() >= 2.0);
  CHECK(max(u).item() < 4.0);
  Tensor r = Tensor::randint({10000}, g, -3, 5);
  CHECK(min(r.to(f64)).item() == -3.0);
  CHECK(max(r.to(f64)).item() == 4.0);
}

TEST_CASE("errors name the op and the shapes") {
  Tensor x = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(x.permute({0}), doctest::Contains("[permute]"), Error);
  CHECK_THROWS_WITH_AS(x.narrow(1, 2, 2), doctest::Contains("[narrow] range [2, 4) out of bounds for dim 1 of float32[2, 3]"), Error);
  CHECK_THROWS_WITH_AS(x.expand({4, 3, 2}), doctest::Contains("[expand] cannot expand float32[2, 3] to [4, 3, 2]"), Error);
  CHECK_THROWS_WITH_AS(x.size(5), doctest::Contains("dim 5 out of range"), Error);
  CHECK_THROWS_WITH_AS(x.at<float>({2, 0}), doctest::Contains("index 2 out of range"), Error);
  CHECK_THROWS_WITH_AS(x.data<double>(), doctest::Contains("data<float64>() called on a float32[2, 3]"), Error);
  if (!cuda_ops::device_present()) CHECK_THROWS_AS(Tensor::empty({2}, f32, Device::cuda), Error);
  Tensor undefined;
  CHECK_THROWS_WITH_AS(undefined.shape(), doctest::Contains("undefined tensor"), Error);
}

TEST_CASE("copy_ broadcasts and converts; in-place on a grad leaf is refused") {
  Tensor dst = Tensor::zeros({2, 3}, f64);
  dst.copy_(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}));
  CHECK(dst.to_vector<double>() == std::vector<double>{1, 2, 3, 1, 2, 3});
  Tensor w = Tensor::zeros({3}).set_requires_grad(true);
  CHECK_THROWS_WITH_AS(w.fill_(1), doctest::Contains("in-place"), Error);
  {
    NoGradGuard ng;
    w.fill_(2);
  }
  CHECK(w.to_vector<float>() == std::vector<float>{2, 2, 2});
  // overlapping self-copy goes through a temporary
  Tensor a = Tensor::arange(5);
  a.narrow(0, 1, 4).copy_(a.narrow(0, 0, 4));
  CHECK(a.to_vector<float>() == std::vector<float>{0, 0, 1, 2, 3});
}

TEST_CASE("view gradients: permute, slice, expand, reshape, select") {
  using testing::check_gradients;
  using testing::rand64;
  check_gradients([](const std::vector<Tensor>& in) { return in[0].permute({1, 0, 2}).slice(2, 1, 4, 2) * 3.0; },
                  {rand64({2, 3, 4}, 1)});
  check_gradients([](const std::vector<Tensor>& in) { return in[0].unsqueeze(0).expand({3, 2, 4}); },
                  {rand64({2, 4}, 2)});
  check_gradients([](const std::vector<Tensor>& in) { return in[0].transpose(0, 1).reshape({-1}).select(0, 3); },
                  {rand64({2, 3}, 3)});
  check_gradients([](const std::vector<Tensor>& in) { return in[0].to(f32).to(f64); }, {rand64({5}, 4)}, 1e-3,
                  1e-5, 1e-5);
}

TEST_CASE("device tensors without a usable device: a clear error, never a crash") {
  if (cuda_ops::device_present()) return;  // tests/cuda/test_cuda_engine.cpp covers the device
  const std::string why = cuda_ops::built() ? "no CUDA device is present" : "mm was built without CUDA";
  CHECK_THROWS_WITH_AS(Tensor::empty({2, 3}, DType::f32, Device::cuda), doctest::Contains(why.c_str()), Error);
  Generator g(1);
  CHECK_THROWS_WITH_AS(Tensor::randn({4}, g).to(Device::cuda), doctest::Contains(why.c_str()), Error);
  // a CPU tensor asked for its CPU device stays itself
  const Tensor x = Tensor::ones({2});
  CHECK(x.to(Device::cpu).impl() == x.impl());
}
