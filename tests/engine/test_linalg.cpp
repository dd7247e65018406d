// tests/engine/test_linalg.cpp: matmul (1-D, 2-D, batched with broadcasting, strided views,
// the three GEMM paths) and linear: forward against direct double loops, float32 against
// float64, backward against finite differences, error messages.
// Run: ./build/mm_tests --source-file=*test_linalg.cpp
#include <doctest/doctest.h>

#include <string>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

namespace {

// Reference for a, b at least 2-D with broadcast batch dims: both expanded to the full batch,
// then triple loops in double. Returns [batch..., M, N].
Tensor ref_matmul_nd(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                       Shape(b.shape().begin(), b.shape().end() - 2), "ref");
  Shape as = batch, bs = batch, os = batch;
  as.insert(as.end(), {M, K});
  bs.insert(bs.end(), {K, N});
  os.insert(os.end(), {M, N});
  const std::vector<double> av = a.detach().expand(as).to_vector<double>();
  const std::vector<double> bv = b.detach().expand(bs).to_vector<double>();
  std::vector<double> out(static_cast<size_t>(numel(os)), 0.0);
  for (int64_t i = 0; i < numel(batch); ++i)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += av[(i * M + m) * K + k] * bv[(i * K + k) * N + n];
        out[(i * M + m) * N + n] = s;
      }
  return Tensor::from_vector(out, os);
}

// torch's 1-D rules spelled out: promote, multiply, drop the added dims.
Tensor ref_matmul(const Tensor& a, const Tensor& b) {
  Tensor r = ref_matmul_nd(a.dim() == 1 ? a.reshape({1, a.size(0)}) : a, b.dim() == 1 ? b.reshape({b.size(0), 1}) : b);
  Shape s = r.shape();
  if (b.dim() == 1) s.pop_back();
  if (a.dim() == 1) s.erase(s.end() - (b.dim() == 1 ? 1 : 2));
  return r.reshape(s);
}

std::string shape_name(const Shape& a, const Shape& b) { return shape_str(a) + " @ " + shape_str(b); }

}  // namespace

TEST_CASE("matmul shapes: 1-D, 2-D, batched with broadcasting") {
  struct Case {
    Shape a, b, out;
  };
  const std::vector<Case> cases = {
      {{5}, {5}, {}},                         // dot
      {{1}, {1}, {}},                         // size-1 dot
      {{3}, {3, 4}, {4}},                     // row vector
      {{4, 3}, {3}, {4}},                     // matrix-vector
      {{1, 1}, {1, 1}, {1, 1}},               // 1x1
      {{3, 5}, {5, 7}, {3, 7}},               // odd sizes
      {{2, 3, 4}, {4}, {2, 3}},               // batched matrix-vector
      {{4}, {2, 4, 3}, {2, 3}},               // vector-batched matrix
      {{2, 3, 4}, {4, 5}, {2, 3, 5}},         // b shared by the batch (one folded GEMM)
      {{3, 4}, {2, 4, 5}, {2, 3, 5}},         // a shared by the batch
      {{2, 1, 3, 4}, {5, 4, 2}, {2, 5, 3, 2}},  // broadcast batch dims
      {{1, 3, 2, 3}, {2, 1, 3, 1}, {2, 3, 2, 1}},
      {{2, 3, 0}, {0, 4}, {2, 3, 4}},         // K = 0: zeros
  };
  for (const Case& c : cases) {
    const std::string name = "matmul " + shape_name(c.a, c.b);
    SUBCASE(name.c_str()) {
      Tensor a = rand64(c.a, 11), b = rand64(c.b, 12);
      Tensor out = matmul(a, b);
      CHECK(out.shape() == c.out);
      check_close(out, ref_matmul(a, b), 1e-13, 1e-13, name + " float64");
      check_close(matmul(a.to(f32), b.to(f32)), ref_matmul(a, b), 1e-5, 1e-5, name + " float32");
      if (a.numel() > 0 && b.numel() > 0)
        check_gradients([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b});
    }
  }
}

TEST_CASE("matmul on strided views: transposed, sliced, permuted, expanded") {
  SUBCASE("matmul a^T @ b^T [4, 3]^T @ [5, 4]^T") {
    Tensor a = rand64({4, 3}, 1), b = rand64({5, 4}, 2);
    check_close(matmul(a.t(), b.t()), ref_matmul(a.t(), b.t()), 1e-13, 1e-13, "f64");
    check_close(matmul(a.t().to(f32), b.to(f32).t()), ref_matmul(a.t(), b.t()), 1e-5, 1e-5, "f32");
    check_gradients([](const std::vector<Tensor>& in) { return matmul(in[0].t(), in[1].t()); }, {a, b});
  }
  SUBCASE("matmul sliced step 2 rows and cols [7, 9][::2, 1::2] @ [4, 3]") {
    Tensor a = rand64({7, 9}, 3), b = rand64({4, 3}, 4);
    Tensor as = a.slice(0, 0, 7, 2).slice(1, 1, 9, 2);  // [4, 4], both strides non-unit
    check_close(matmul(as, b), ref_matmul(as, b), 1e-13, 1e-13, "f64");
    check_close(matmul(as.to(f32), b.to(f32)), ref_matmul(as, b), 1e-5, 1e-5, "f32");
    check_gradients([](const std::vector<Tensor>& in) {
      return matmul(in[0].slice(0, 0, 7, 2).slice(1, 1, 9, 2), in[1]);
    }, {a, b});
  }
  SUBCASE("matmul permuted batch [3, 2, 4]->[2, 3, 4] @ [2, 5, 4]^T") {
    Tensor a = rand64({3, 2, 4}, 5), b = rand64({2, 5, 4}, 6);
    Tensor ap = a.permute({1, 0, 2}), bt = b.transpose(1, 2);
    check_close(matmul(ap, bt), ref_matmul(ap, bt), 1e-13, 1e-13, "f64");
    check_gradients([](const std::vector<Tensor>& in) {
      return matmul(in[0].permute({1, 0, 2}), in[1].transpose(1, 2));
    }, {a, b});
  }
  SUBCASE("matmul expanded b [4, 5] -> [3, 4, 5] and 1-D column slice") {
    Tensor a = rand64({3, 2, 4}, 7), b = rand64({4, 5}, 8);
    Tensor be = b.expand({3, 4, 5});
    check_close(matmul(a, be), ref_matmul(a, b), 1e-13, 1e-13, "expanded");
    Tensor m = rand64({4, 3}, 9);
    Tensor col = m.select(1, 1);  // [4], stride 3
    check_close(matmul(a, col), ref_matmul(a, col), 1e-13, 1e-13, "column slice");
    check_gradients([](const std::vector<Tensor>& in) { return matmul(in[0], in[1].expand({3, 4, 5})); }, {a, b});
    check_gradients([](const std::vector<Tensor>& in) { return matmul(in[0], in[1].select(1, 1)); }, {a, m});
  }
}

TEST_CASE("matmul float32 on each GEMM path equals float64") {
  struct Case {
    Shape a, b;
  };
  const std::vector<Case> cases = {
      {{3, 40, 70}, {70, 50}},      // folded: one GEMM over 120 rows
      {{2, 80, 90}, {2, 90, 70}},   // big matrices: one threaded GEMM each
      {{64, 5, 6}, {64, 6, 7}},     // many small: parallel over the batch
      {{2, 3, 17, 9}, {3, 9, 33}},  // broadcast, small
      {{1, 300}, {300, 1}},         // long K
  };
  for (const Case& c : cases) {
    const std::string name = "matmul f32 " + shape_name(c.a, c.b);
    SUBCASE(name.c_str()) {
      Tensor a = rand64(c.a, 21), b = rand64(c.b, 22);
      Tensor ref = ref_matmul(a, b);
      check_close(matmul(a, b), ref, 1e-12, 1e-12, name + " f64");
      check_close(matmul(a.to(f32), b.to(f32)), ref, 1e-4, 1e-4, name);
    }
  }
  SUBCASE("matmul backward f32 [3, 40, 70] @ [70, 50] vs f64") {
    Tensor a = rand64({3, 40, 70}, 23), b = rand64({70, 50}, 24), g = rand64({3, 40, 50}, 25);
    auto grads = [&](DType t) {
      Tensor a_ = a.to(t).detach().set_requires_grad(true), b_ = b.to(t).detach().set_requires_grad(true);
      return mm::grad({matmul(a_, b_)}, {a_, b_}, {g.to(t)});
    };
    auto g64 = grads(f64), g32 = grads(f32);
    check_close(g32[0], g64[0], 1e-4, 1e-4, "da");
    check_close(g32[1], g64[1], 1e-4, 1e-4, "db");
  }
}

TEST_CASE("matmul errors name both shapes") {
  CHECK_THROWS_WITH_AS(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})),
                       "[matmul] a [2, 3] and b [4, 5]: inner dims 3 and 4 differ", Error);
  CHECK_THROWS_WITH_AS(matmul(Tensor::zeros({3}), Tensor::zeros({4})),
                       "[matmul] a [3] and b [4]: inner dims 3 and 4 differ", Error);
  CHECK_THROWS_WITH_AS(matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 4})),
                       doctest::Contains("[matmul] a [2, 2, 3] and b [3, 3, 4]: batch dims [2] and [3]"), Error);
  CHECK_THROWS_WITH_AS(matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 4}, f64)), doctest::Contains("[matmul]"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(Tensor::scalar(1), Tensor::zeros({3})), doctest::Contains("at least one dim"), Error);
}

namespace {

// y[r, o] = sum_i x[r, i] w[o, i] + b[o] over the rows of x [..., in].
Tensor ref_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t in = w.size(1), out_f = w.size(0), R = x.numel() / in;
  const std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  const std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(out_f, 0.0);
  std::vector<double> y(static_cast<size_t>(R * out_f));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t o = 0; o < out_f; ++o) {
      double s = bv[o];
      for (int64_t i = 0; i < in; ++i) s += xv[r * in + i] * wv[o * in + i];
      y[r * out_f + o] = s;
    }
  Shape s = x.shape();
  s.back() = out_f;
  return Tensor::from_vector(y, s);
}

}  // namespace

TEST_CASE("linear with and without bias, any leading dims, strided x and weight") {
  const std::vector<Shape> x_shapes = {{4}, {1, 4}, {3, 4}, {2, 3, 4}, {2, 1, 5, 4}};
  for (const Shape& xs : x_shapes) {
    for (bool with_bias : {true, false}) {
      const std::string name = "linear x=" + shape_str(xs) + " w=[5, 4]" + (with_bias ? " bias" : " no bias");
      SUBCASE(name.c_str()) {
        Tensor x = rand64(xs, 31), w = rand64({5, 4}, 32), b = with_bias ? rand64({5}, 33) : Tensor();
        Tensor y = linear(x, w, b);
        check_close(y, ref_linear(x, w, b), 1e-13, 1e-13, name);
        check_close(linear(x.to(f32), w.to(f32), with_bias ? b.to(f32) : Tensor()), ref_linear(x, w, b), 1e-5, 1e-5,
                    name + " f32");
        if (with_bias)
          check_gradients([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }, {x, w, b});
        else
          check_gradients([](const std::vector<Tensor>& in) { return linear(in[0], in[1], Tensor()); }, {x, w});
      }
    }
  }
  SUBCASE("linear transposed x [4, 3]^T, transposed weight [4, 5]^T, strided bias") {
    Tensor x = rand64({4, 3}, 34), w = rand64({4, 5}, 35), b = rand64({10}, 36);
    Tensor xt = x.t(), wt = w.t(), bs = b.slice(0, 0, 10, 2);
    check_close(linear(xt, wt, bs), ref_linear(xt.contiguous(), wt.contiguous(), bs.contiguous()), 1e-13, 1e-13,
                "strided");
    check_gradients([](const std::vector<Tensor>& in) {
      return linear(in[0].t(), in[1].t(), in[2].slice(0, 0, 10, 2));
    }, {x, w, b});
  }
  SUBCASE("linear f32 [3, 50, 64] x [96, 64] equals f64") {
    Tensor x = rand64({3, 50, 64}, 37), w = rand64({96, 64}, 38), b = rand64({96}, 39);
    check_close(linear(x.to(f32), w.to(f32), b.to(f32)), ref_linear(x, w, b), 1e-4, 1e-4, "f32");
  }
  SUBCASE("linear errors") {
    CHECK_THROWS_WITH_AS(linear(Tensor::zeros({2, 3}), Tensor::zeros({5, 4}), Tensor()),
                         "[linear] x [2, 3] and weight [5, 4]: x's last dim must equal weight's in-features 4", Error);
    CHECK_THROWS_WITH_AS(linear(Tensor::zeros({2, 4}), Tensor::zeros({5, 4}), Tensor::zeros({4})),
                         doctest::Contains("[linear] bias [4] and weight [5, 4]"), Error);
  }
}

TEST_CASE("prepack_linear_weight: bitwise the same linear, gradients to x, dropped when the weight changes") {
  Tensor x = rand64({3, 50, 64}, 41).to(f32), w = rand64({96, 64}, 42).to(f32), b = rand64({96}, 43).to(f32);
  const std::vector<float> plain = linear(x, w, b).to_vector<float>();
  REQUIRE(prepack_linear_weight(w));
  CHECK(w.impl()->storage->gemm_pack != nullptr);
  CHECK(linear(x, w, b).to_vector<float>() == plain);
  // A strided view of the same storage is not the packed view: it must not read the pack.
  Tensor half = w.narrow(0, 0, 48);
  check_close(linear(x, half, Tensor()), ref_linear(x.to(f64), half.to(f64), Tensor()), 1e-4, 1e-4, "other view");
  // mmgen's case: the input requires grad, the packed weight does not.
  Tensor xg = x.detach().set_requires_grad(true);
  sum(linear(xg, w, b)).backward();
  Tensor xr = x.detach().set_requires_grad(true);
  Tensor w_copy = w.clone();  // unpacked twin
  sum(linear(xr, w_copy, b)).backward();
  CHECK(xg.grad().to_vector<float>() == xr.grad().to_vector<float>());
  // An in-place change drops the pack, so linear sees the new values.
  w.fill_(0.5);
  CHECK(w.impl()->storage->gemm_pack == nullptr);
  check_close(linear(x, w, b), ref_linear(x.to(f64), w.to(f64), b.to(f64)), 1e-4, 1e-4, "after fill_");
  REQUIRE(prepack_linear_weight(w));
  w.set_requires_grad(true);
  CHECK(w.impl()->storage->gemm_pack == nullptr);
  // Not packed: weights that require grad, float64, not 2-D.
  CHECK_FALSE(prepack_linear_weight(w));
  CHECK_FALSE(prepack_linear_weight(rand64({4, 4}, 44)));
  CHECK_FALSE(prepack_linear_weight(b));
}

TEST_CASE("linear with a 16-bit weight: bitwise the widened float32 weight's result, packed or not, gradients to x") {
  for (DType half : {DType::f16, DType::bf16}) {
    CAPTURE(dtype_name(half));
    // 96 x 64 weights and 150 rows: above sgemm's small-problem size, so packs are used
    Tensor x = rand64({3, 50, 64}, 51).to(f32), b = rand64({96}, 53).to(f32);
    Tensor wh = rand64({96, 64}, 52).to(half);
    Tensor wf = wh.to(f32);  // exact
    const std::vector<float> want = linear(x, wf, b).to_vector<float>();
    CHECK(linear(x, wh, b).to_vector<float>() == want);
    // strided 16-bit views (a slice of in_proj, a transpose) widen the same way
    check_close(linear(x, wh.narrow(0, 32, 32), Tensor()), linear(x, wf.narrow(0, 32, 32), Tensor()), 0, 0, "slice");
    // the input gradient, with the weight widened again in the backward
    Tensor xa = x.detach().set_requires_grad(true), xb = x.detach().set_requires_grad(true);
    sum(mul(linear(xa, wh, b), linear(xa, wh, b))).backward();
    sum(mul(linear(xb, wf, b), linear(xb, wf, b))).backward();
    CHECK(xa.grad().to_vector<float>() == xb.grad().to_vector<float>());
    // packed from 16 bits: the same result, read from the pack
    REQUIRE(prepack_linear_weight(wh));
    CHECK(linear_weight_packed(wh));
    CHECK_FALSE(linear_weight_packed(wh.narrow(0, 0, 48)));
    CHECK(linear(x, wh, b).to_vector<float>() == want);
    // errors: a 16-bit weight with non-float32 x, or one that would be trained
    CHECK_THROWS_WITH(linear(x.to(f64), wh, b), doctest::Contains("is 16-bit: x must be float32, got float64"));
    Tensor wt = rand64({96, 64}, 54).to(half).set_requires_grad(true);
    CHECK_THROWS_WITH(linear(x, wt, b), doctest::Contains("a trained weight must be float32"));
  }
}

TEST_CASE("prepack_linear_weight: several weights that view one storage (a mapped file) each keep their pack") {
  Tensor file = rand64({3 * 96 * 64}, 61).to(f32);  // three [96, 64] weights back to back
  std::vector<Tensor> ws;
  for (int i = 0; i < 3; ++i) ws.push_back(file.narrow(0, i * 96 * 64, 96 * 64).reshape({96, 64}));
  Tensor x = rand64({2, 40, 64}, 62).to(f32);
  std::vector<std::vector<float>> plain;
  for (const Tensor& w : ws) plain.push_back(linear(x, w, Tensor()).to_vector<float>());
  for (const Tensor& w : ws) REQUIRE(prepack_linear_weight(w));
  for (int i = 0; i < 3; ++i) {
    CHECK(linear_weight_packed(ws[i]));
    CHECK(linear(x, ws[i], Tensor()).to_vector<float>() == plain[i]);
  }
  REQUIRE(prepack_linear_weight(ws[1]));  // packed again: replaced, not added twice
  CHECK(linear_weight_packed(ws[0]));
  CHECK(linear_weight_packed(ws[1]));
  ws[2].fill_(0.25);  // a write through any view drops every pack of the storage
  for (const Tensor& w : ws) CHECK_FALSE(linear_weight_packed(w));
}
