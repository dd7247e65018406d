// tests/engine/test_shape_ops.cpp: cat/stack/split/chunk, index_select, gather, embedding.
// Run: ctest --test-dir build -R test_shape_ops
#include <doctest/doctest.h>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

TEST_CASE("cat and stack") {
  Tensor a = Tensor::arange(6).reshape({2, 3}), b = Tensor::arange(4).reshape({2, 2}) + 10.0;
  Tensor c = cat({a, b}, 1);
  CHECK(c.shape() == Shape{2, 5});
  CHECK(c.to_vector<float>() == std::vector<float>{0, 1, 2, 10, 11, 3, 4, 5, 12, 13});
  Tensor s = stack({a, a * 2.0}, 0);
  CHECK(s.shape() == Shape{2, 2, 3});
  CHECK(s.at<float>({1, 1, 2}) == 10.0f);
  CHECK(stack({a, a}, -1).shape() == Shape{2, 3, 2});
  check_gradients([](const std::vector<Tensor>& in) { return cat({in[0], in[1].t(), in[0]}, 0); },
                  {rand64({2, 3}, 1), rand64({3, 1}, 2)});
  check_gradients([](const std::vector<Tensor>& in) { return stack({in[0], in[1]}, 1); },
                  {rand64({2, 3}, 3), rand64({2, 3}, 4)});
  CHECK_THROWS_WITH_AS(cat({a, b}, 0), doctest::Contains("[cat] tensor 1 float32[2, 2] differs from tensor 0 float32[2, 3] in dim 1"), Error);
  CHECK_THROWS_WITH_AS(stack({a, b}, 0), doctest::Contains("[stack]"), Error);
}

TEST_CASE("split and chunk are views") {
  Tensor x = Tensor::arange(10).reshape({2, 5});
  auto parts = split(x, 2, 1);
  REQUIRE(parts.size() == 3);
  CHECK(parts[2].shape() == Shape{2, 1});
  CHECK(parts[1].to_vector<float>() == std::vector<float>{2, 3, 7, 8});
  auto ch = chunk(x, 2, 1);
  CHECK(ch.size() == 2);
  CHECK(ch[0].shape() == Shape{2, 3});
  check_gradients([](const std::vector<Tensor>& in) { return split(in[0], 2, 1)[1] * 2.0; }, {rand64({3, 5}, 5)});
}

TEST_CASE("index_select, embedding, gather") {
  Tensor x = Tensor::arange(12).reshape({3, 4});
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{2, 0, 2}, {3});
  CHECK(index_select(x, 0, idx).to_vector<float>() == std::vector<float>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11});
  CHECK(index_select(x, 1, idx).to_vector<float>() == std::vector<float>{2, 0, 2, 6, 4, 6, 10, 8, 10});
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 1, 0, 2}, {2, 2});
  Tensor e = embedding(ids, x);
  CHECK(e.shape() == Shape{2, 2, 4});
  CHECK(e.at<float>({1, 0, 3}) == 3.0f);
  Tensor gi = Tensor::from_vector(std::vector<int64_t>{3, 0, 1, 1, 2, 2}, {3, 2});
  CHECK(gather(x, 1, gi).to_vector<float>() == std::vector<float>{3, 0, 5, 5, 10, 10});
  // repeated indices accumulate in the backward
  check_gradients([&](const std::vector<Tensor>& in) { return index_select(in[0], 0, idx); }, {rand64({3, 4}, 6)});
  check_gradients([&](const std::vector<Tensor>& in) { return index_select(in[0].t(), 1, idx); }, {rand64({4, 3}, 7)});
  check_gradients([&](const std::vector<Tensor>& in) { return embedding(ids, in[0]); }, {rand64({3, 4}, 8)});
  check_gradients([&](const std::vector<Tensor>& in) { return gather(in[0], 1, gi); }, {rand64({3, 4}, 9)});
  check_gradients([&](const std::vector<Tensor>& in) { return gather(in[0].t(), 0, gi.t().contiguous()); },
                  {rand64({3, 4}, 10)});
  CHECK_THROWS_WITH_AS(index_select(x, 0, Tensor::from_vector(std::vector<int64_t>{3}, {1})),
                       doctest::Contains("[index_select] index 3 out of range [0, 3) for dim 0 of float32[3, 4]"), Error);
  CHECK_THROWS_WITH_AS(embedding(Tensor::from_vector(std::vector<int64_t>{-1}, {1}), x),
                       doctest::Contains("index -1 out of range"), Error);
  CHECK_THROWS_WITH_AS(index_select(x, 0, Tensor::zeros({1})), doctest::Contains("index must be int64"), Error);
}
