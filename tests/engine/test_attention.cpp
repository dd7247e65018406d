// tests/engine/test_attention.cpp: scaled_dot_product_attention against direct double loops
// and against the same formula written from matmul/softmax, every flag (causal, mask none /
// additive / bool, default or given scale), strided q/k/v, gradients by finite differences;
// multi_head_attention against linear + matmul + softmax written out.
// Run: ./build/mm_tests --source-file=*test_attention.cpp
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

enum class MaskKind { none, additive, boolean };

const char* mask_name(MaskKind m) {
  return m == MaskKind::none ? "no mask" : m == MaskKind::additive ? "additive mask" : "bool mask";
}

// Direct loops: q [BH.., Tq, HS] etc. with leading dims flattened; mask expanded to the scores.
Tensor ref_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal, double scale) {
  const int64_t Tq = q.size(-2), Tk = k.size(-2), HS = q.size(-1), HSv = v.size(-1);
  const int64_t BH = q.numel() / (Tq * HS);
  const std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  Shape score_shape(q.shape().begin(), q.shape().end() - 2);
  score_shape.insert(score_shape.end(), {Tq, Tk});
  std::vector<double> mv;
  if (mask.defined()) mv = mask.expand(score_shape).to_vector<double>();
  std::vector<double> out(static_cast<size_t>(BH * Tq * HSv), 0.0);
  for (int64_t i = 0; i < BH; ++i)
    for (int64_t r = 0; r < Tq; ++r) {
      std::vector<double> s(static_cast<size_t>(Tk));
      double m = -INFINITY;
      for (int64_t c = 0; c < Tk; ++c) {
        double d = 0;
        for (int64_t h = 0; h < HS; ++h) d += qv[(i * Tq + r) * HS + h] * kv[(i * Tk + c) * HS + h];
        s[c] = scale * d;
        if (mask.defined()) {
          const double mval = mv[(i * Tq + r) * Tk + c];
          if (mask.dtype() == DType::boolean) s[c] = mval != 0 ? s[c] : -INFINITY;
          else s[c] += mval;
        }
        if (causal && c > r) s[c] = -INFINITY;
        m = std::max(m, s[c]);
      }
      if (m == -INFINITY) continue;  // fully masked row: zeros
      double z = 0;
      for (int64_t c = 0; c < Tk; ++c) z += std::exp(s[c] - m);
      for (int64_t c = 0; c < Tk; ++c) {
        const double p = std::exp(s[c] - m) / z;
        for (int64_t h = 0; h < HSv; ++h) out[(i * Tq + r) * HSv + h] += p * vv[(i * Tk + c) * HSv + h];
      }
    }
  Shape os(q.shape().begin(), q.shape().end() - 2);
  os.insert(os.end(), {Tq, HSv});
  return Tensor::from_vector(out, os);
}

// The same attention from differentiable ops (the unfused formula).
Tensor ops_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& add_mask, bool causal, double scale) {
  Tensor s = mul(matmul(q, k.transpose(-1, -2)), scale);
  if (add_mask.defined()) s = add(s, add_mask);
  if (causal) {
    const int64_t Tq = q.size(-2), Tk = k.size(-2);
    std::vector<double> cm(static_cast<size_t>(Tq * Tk));
    for (int64_t r = 0; r < Tq; ++r)
      for (int64_t c = 0; c < Tk; ++c) cm[r * Tk + c] = c > r ? -INFINITY : 0.0;
    s = add(s, Tensor::from_vector(cm, {Tq, Tk}).to(q.dtype()));
  }
  return matmul(softmax(s, -1), v);
}

}  // namespace

TEST_CASE("sdpa every flag against loops, the op formula and finite differences") {
  struct Dims {
    int64_t B, NH, Tq, Tk, HS, HSv;
  };
  const std::vector<Dims> dims = {{2, 3, 5, 7, 4, 3}, {1, 1, 1, 1, 1, 1}, {1, 2, 4, 4, 3, 5}, {2, 1, 6, 3, 2, 2}};
  for (const Dims& d : dims)
    for (bool causal : {false, true})
      for (MaskKind mk : {MaskKind::none, MaskKind::additive, MaskKind::boolean}) {
        const std::string name = "sdpa B=" + std::to_string(d.B) + " NH=" + std::to_string(d.NH) +
                                 " Tq=" + std::to_string(d.Tq) + " Tk=" + std::to_string(d.Tk) +
                                 " HS=" + std::to_string(d.HS) + " HSv=" + std::to_string(d.HSv) +
                                 (causal ? " causal " : " ") + mask_name(mk);
        SUBCASE(name.c_str()) {
          Tensor q = rand64({d.B, d.NH, d.Tq, d.HS}, 1, -2, 2), k = rand64({d.B, d.NH, d.Tk, d.HS}, 2, -2, 2);
          Tensor v = rand64({d.B, d.NH, d.Tk, d.HSv}, 3);
          Tensor mask;
          if (mk == MaskKind::additive) mask = rand64({d.Tq, d.Tk}, 4);           // broadcast over B, NH
          if (mk == MaskKind::boolean) {
            Tensor r = rand64({d.B, 1, d.Tq, d.Tk}, 5);
            // keep the first key for every query so no row is fully masked
            for (int64_t i = 0; i < d.B * d.Tq; ++i) r.data<double>()[i * d.Tk] = 1.0;
            mask = gt(r, -0.5);  // bool [B, 1, Tq, Tk], ~75% kept
          }
          const Causal c = causal ? Causal::yes : Causal::no;
          const double scale = 1.0 / std::sqrt(static_cast<double>(d.HS));
          Tensor ref = ref_sdpa(q, k, v, mask, causal, scale);
          check_close(scaled_dot_product_attention(q, k, v, mask, c), ref, 1e-12, 1e-12, name);
          if (mk != MaskKind::boolean)
            check_close(ops_sdpa(q, k, v, mask, causal, scale), ref, 1e-12, 1e-12, name + " ops formula");
          Tensor mask32 = mk == MaskKind::additive ? mask.to(f32) : mask;
          check_close(scaled_dot_product_attention(q.to(f32), k.to(f32), v.to(f32), mask32, c), ref, 1e-5, 1e-5,
                      name + " f32");
          check_gradients([&](const std::vector<Tensor>& in) {
            return scaled_dot_product_attention(in[0], in[1], in[2], mask, c);
          }, {q, k, v});
          if (mk == MaskKind::additive)  // the additive mask's gradient, summed over B and NH
            check_gradients([&](const std::vector<Tensor>& in) {
              return scaled_dot_product_attention(q, k, v, in[0], c);
            }, {mask});
        }
      }
}

TEST_CASE("sdpa on strided q/k/v, given scale, fully masked rows") {
  SUBCASE("sdpa B=2 NH=2 T=3 HS=2 from [B, T, NH, HS] permuted, k transposed twice, scale 0.3") {
    Tensor q = rand64({2, 3, 2, 2}, 6), k = rand64({2, 2, 2, 3}, 7), v = rand64({2, 3, 2, 4}, 8);
    auto run = [](const std::vector<Tensor>& in) {
      return scaled_dot_product_attention(in[0].permute({0, 2, 1, 3}), in[1].transpose(2, 3),
                                          in[2].permute({0, 2, 1, 3}).slice(3, 0, 4, 2), Tensor(), Causal::no, 0.3);
    };
    Tensor ref = ref_sdpa(q.permute({0, 2, 1, 3}).contiguous(), k.transpose(2, 3).contiguous(),
                          v.permute({0, 2, 1, 3}).slice(3, 0, 4, 2).contiguous(), Tensor(), false, 0.3);
    check_close(run({q, k, v}), ref, 1e-12, 1e-12, "strided");
    check_gradients(run, {q, k, v});
  }
  SUBCASE("sdpa 3-D q [NH=2, T=4, HS=3] with a bool padding mask [1, 4]") {
    Tensor q = rand64({2, 4, 3}, 9), k = rand64({2, 4, 3}, 10), v = rand64({2, 4, 3}, 11);
    Tensor mask = Tensor::from_vector(std::vector<double>{1, 1, 0, 1}, {1, 4});
    Tensor bmask = gt(mask, 0.5);
    check_close(scaled_dot_product_attention(q, k, v, bmask), ref_sdpa(q, k, v, bmask, false, 1 / std::sqrt(3.0)),
                1e-12, 1e-12, "padding mask");
  }
  SUBCASE("sdpa fully masked row gives zeros and zero gradients") {
    Tensor q = rand64({1, 1, 2, 2}, 12), k = rand64({1, 1, 3, 2}, 13), v = rand64({1, 1, 3, 2}, 14);
    Tensor bmask = gt(Tensor::from_vector(std::vector<double>{0, 0, 0, 1, 0, 1}, {2, 3}), 0.5);  // row 0: none kept
    Tensor out = scaled_dot_product_attention(q, k, v, bmask);
    CHECK(out.to_vector<double>()[0] == 0.0);
    CHECK(out.to_vector<double>()[1] == 0.0);
    check_close(out, ref_sdpa(q, k, v, bmask, false, 1 / std::sqrt(2.0)), 1e-12, 1e-12, "masked row");
    check_gradients([&](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], bmask); },
                    {q, k, v});
  }
  SUBCASE("sdpa f32 B=2 NH=4 T=77 HS=32 causal (CLIP text shape) vs f64") {
    Tensor q = rand64({2, 4, 77, 32}, 15), k = rand64({2, 4, 77, 32}, 16), v = rand64({2, 4, 77, 32}, 17);
    Tensor g = rand64({2, 4, 77, 32}, 18);
    auto grads = [&](DType t) {
      Tensor q_ = q.to(t).detach().set_requires_grad(true), k_ = k.to(t).detach().set_requires_grad(true);
      Tensor v_ = v.to(t).detach().set_requires_grad(true);
      Tensor o = scaled_dot_product_attention(q_, k_, v_, Tensor(), Causal::yes);
      std::vector<Tensor> r = mm::grad({o}, {q_, k_, v_}, {g.to(t)});
      r.push_back(o.detach());
      return r;
    };
    auto g64 = grads(f64), g32 = grads(f32);
    check_close(g64[3], ref_sdpa(q, k, v, Tensor(), true, 1 / std::sqrt(32.0)), 1e-12, 1e-12, "out f64");
    const char* names[] = {"dq", "dk", "dv", "out"};
    for (int i = 0; i < 4; ++i) check_close(g32[i], g64[i], 1e-4, 1e-4, names[i]);
  }
  SUBCASE("sdpa errors") {
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(Tensor::zeros({1, 2, 3, 4}), Tensor::zeros({1, 2, 3, 5}),
                                                      Tensor::zeros({1, 2, 3, 4})),
                         doctest::Contains("q [1, 2, 3, 4] and k [1, 2, 3, 5]: head sizes 4 and 5 differ"), Error);
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(Tensor::zeros({1, 2, 3, 4}), Tensor::zeros({1, 2, 3, 4}),
                                                      Tensor::zeros({1, 2, 3, 4}), Tensor::zeros({2, 3})),
                         doctest::Contains("mask [2, 3] does not broadcast to the scores [1, 2, 3, 3]"), Error);
  }
}

namespace {

// torch.nn.MultiheadAttention written out with linear, matmul and softmax.
Tensor ref_mha(const Tensor& xq, const Tensor& xkv, const Tensor& in_w, const Tensor& in_b, const Tensor& out_w,
               const Tensor& out_b, int64_t NH, bool causal) {
  const int64_t B = xq.size(0), Tq = xq.size(1), Tk = xkv.size(1), D = xq.size(2), HS = D / NH;
  auto part = [&](const Tensor& t, int64_t i) { return t.defined() ? t.narrow(0, i * D, D) : Tensor(); };
  Tensor q = linear(xq, part(in_w, 0), part(in_b, 0)), k = linear(xkv, part(in_w, 1), part(in_b, 1));
  Tensor v = linear(xkv, part(in_w, 2), part(in_b, 2));
  auto heads = [&](const Tensor& t, int64_t T) { return t.reshape({B, T, NH, HS}).permute({0, 2, 1, 3}); };
  Tensor o = ops_sdpa(heads(q, Tq), heads(k, Tk), heads(v, Tk), Tensor(), causal, 1 / std::sqrt(double(HS)));
  return linear(o.permute({0, 2, 1, 3}).reshape({B, Tq, D}), out_w, out_b);
}

}  // namespace

TEST_CASE("multi_head_attention matches torch.nn.MultiheadAttention written out") {
  for (bool self : {true, false})
    for (bool causal : {false, true})
      for (bool with_bias : {true, false}) {
        const std::string name = std::string("mha B=2 T=3") + (self ? " self" : " cross Tk=4") + " D=4 NH=2" +
                                 (causal ? " causal" : "") + (with_bias ? " bias" : " no bias");
        SUBCASE(name.c_str()) {
          Tensor xq = rand64({2, 3, 4}, 21), xkv = self ? xq : rand64({2, 4, 4}, 22);
          Tensor in_w = rand64({12, 4}, 23), out_w = rand64({4, 4}, 24);
          Tensor in_b = with_bias ? rand64({12}, 25) : Tensor(), out_b = with_bias ? rand64({4}, 26) : Tensor();
          const Causal c = causal ? Causal::yes : Causal::no;
          check_close(multi_head_attention(xq, xkv, in_w, in_b, out_w, out_b, 2, Tensor(), c),
                      ref_mha(xq, xkv, in_w, in_b, out_w, out_b, 2, causal), 1e-12, 1e-12, name);
          std::vector<Tensor> inputs = {xq, in_w, out_w};
          if (!self) inputs.push_back(xkv);
          if (with_bias) inputs.insert(inputs.end(), {in_b, out_b});
          check_gradients([&](const std::vector<Tensor>& in) {
            const Tensor& kv = self ? in[0] : in[3];
            const size_t bi = self ? 3 : 4;
            return multi_head_attention(in[0], kv, in[1], with_bias ? in[bi] : Tensor(), in[2],
                                        with_bias ? in[bi + 1] : Tensor(), 2, Tensor(), c);
          }, inputs);
        }
      }
  SUBCASE("mha with an additive [T, T] mask equals Causal::yes (CLIP's build_attention_mask)") {
    Tensor x = rand64({1, 5, 6}, 27), in_w = rand64({18, 6}, 28), in_b = rand64({18}, 29);
    Tensor out_w = rand64({6, 6}, 30), out_b = rand64({6}, 31);
    std::vector<double> m(25);
    for (int r = 0; r < 5; ++r)
      for (int cc = 0; cc < 5; ++cc) m[r * 5 + cc] = cc > r ? -INFINITY : 0.0;
    Tensor mask = Tensor::from_vector(m, {5, 5});
    check_close(multi_head_attention(x, x, in_w, in_b, out_w, out_b, 3, mask),
                multi_head_attention(x, x, in_w, in_b, out_w, out_b, 3, Tensor(), Causal::yes), 1e-14, 1e-14, "mask");
  }
  SUBCASE("mha errors") {
    CHECK_THROWS_WITH_AS(multi_head_attention(Tensor::zeros({1, 2, 6}), Tensor::zeros({1, 2, 6}), Tensor::zeros({18, 6}),
                                              Tensor(), Tensor::zeros({6, 6}), Tensor(), 4),
                         doctest::Contains("embedding dim 6 of x_q [1, 2, 6] is not divisible by num_heads 4"), Error);
    CHECK_THROWS_WITH_AS(multi_head_attention(Tensor::zeros({1, 2, 6}), Tensor::zeros({1, 2, 6}), Tensor::zeros({12, 6}),
                                              Tensor(), Tensor::zeros({6, 6}), Tensor(), 2),
                         doctest::Contains("in_proj_weight [12, 6] must be [18, 6]"), Error);
  }
}
