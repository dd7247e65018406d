// tests/engine/test_conv.cpp: conv2d forward against a direct 7-loop convolution in double on
// awkward shapes (odd sizes, groups 1/2/depthwise, stride 2, dilation 2, asymmetric padding,
// bias or none, batch 1 and 3, 1x1), float32 against float64, backward against central
// differences (x, weight, bias; permuted inputs), and the error messages.
// Run: ./build/mm_tests --source-file=*test_conv.cpp
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

namespace {

struct ConvCase {
  int64_t B, C, H, W, O, KH, KW;
  Conv2dOptions opt;
  bool bias;
  std::string name() const {
    return str_cat("conv2d B=", B, " C=", C, " HxW=", H, "x", W, " O=", O, " K=", KH, "x", KW,
                   " stride=", opt.stride[0], ",", opt.stride[1], " pad=", opt.padding[0], ",", opt.padding[1], ",",
                   opt.padding[2], ",", opt.padding[3], " dil=", opt.dilation[0], ",", opt.dilation[1],
                   " groups=", opt.groups, bias ? " bias" : " no-bias");
  }
};

Conv2dOptions opts(std::array<int64_t, 2> s, std::array<int64_t, 4> p, std::array<int64_t, 2> d, int64_t g) {
  Conv2dOptions o;
  o.stride = s, o.padding = p, o.dilation = d, o.groups = g;
  return o;
}

// out[b,o,i,j] = bias[o] + sum_{c,p,q} w[o,c,p,q] x[b, g*Cg + c, i*sh - pt + p*dh, j*sw - pl + q*dw]
Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& o) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), Cg = w.size(1), KH = w.size(2), KW = w.size(3), Og = O / o.groups;
  const int64_t OH = (H + o.padding[0] + o.padding[1] - o.dilation[0] * (KH - 1) - 1) / o.stride[0] + 1;
  const int64_t OW = (W + o.padding[2] + o.padding[3] - o.dilation[1] * (KW - 1) - 1) / o.stride[1] + 1;
  const std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  const std::vector<double> bv = bias.defined() ? bias.to_vector<double>() : std::vector<double>(O, 0.0);
  std::vector<double> out(static_cast<size_t>(B * O * OH * OW));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t oc = 0; oc < O; ++oc) {
      const int64_t g = oc / Og;
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double acc = bv[oc];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t p = 0; p < KH; ++p)
              for (int64_t q = 0; q < KW; ++q) {
                const int64_t ih = i * o.stride[0] - o.padding[0] + p * o.dilation[0];
                const int64_t iw = j * o.stride[1] - o.padding[2] + q * o.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += wv[((oc * Cg + c) * KH + p) * KW + q] * xv[((b * C + g * Cg + c) * H + ih) * W + iw];
              }
          out[((b * O + oc) * OH + i) * OW + j] = acc;
        }
    }
  return Tensor::from_vector(out, {B, O, OH, OW});
}

const std::vector<ConvCase>& forward_cases() {
  static const std::vector<ConvCase> cases = {
      {1, 3, 7, 9, 4, 3, 3, conv2d_options(1, 1), true},
      {3, 4, 8, 7, 6, 3, 3, opts({2, 2}, {0, 1, 0, 1}, {1, 1}, 2), true},   // taming Downsample, 2 groups
      {2, 5, 6, 6, 5, 3, 3, conv2d_options(1, 1, 1, 5), false},             // depthwise
      {2, 4, 6, 5, 8, 3, 3, conv2d_options(2, 1, 1, 4), true},              // depthwise, multiplier 2
      {1, 2, 9, 8, 3, 3, 2, opts({1, 1}, {2, 2, 1, 1}, {2, 2}, 1), false},  // dilation 2
      {3, 6, 5, 4, 7, 1, 1, conv2d_options(), true},                        // pointwise (no im2col)
      {1, 3, 5, 5, 2, 1, 1, conv2d_options(2), false},                      // 1x1 stride 2
      {1, 3, 17, 15, 8, 7, 7, conv2d_options(2, 3), true},                  // ResNet stem shape
      {1, 3, 6, 5, 4, 2, 3, opts({1, 2}, {0, 1, 2, 0}, {1, 1}, 1), true},   // rectangular, uneven
      {1, 16, 20, 23, 40, 3, 3, conv2d_options(1, 1), true},                // packed GEMM, 23-wide rows
      {3, 12, 13, 11, 36, 3, 3, opts({2, 1}, {1, 0, 0, 1}, {1, 2}, 3), false},
      {2, 64, 9, 10, 64, 3, 3, conv2d_options(1, 1, 1, 64), true},  // depthwise, many groups
      {1, 32, 6, 40, 48, 5, 5, opts({1, 1}, {2, 2, 2, 2}, {1, 1}, 1), false},
  };
  return cases;
}

}  // namespace

TEST_CASE("conv2d forward matches a direct convolution (float64 and float32)") {
  for (const ConvCase& c : forward_cases()) {
    SUBCASE(c.name().c_str()) {
      Tensor x = rand64({c.B, c.C, c.H, c.W}, 1);
      Tensor w = rand64({c.O, c.C / c.opt.groups, c.KH, c.KW}, 2);
      Tensor b = c.bias ? rand64({c.O}, 3) : Tensor();
      const Tensor ref = naive_conv(x, w, b, c.opt);
      check_close(conv2d(x, w, b, c.opt), ref, 1e-12, 1e-12, c.name() + " f64");
      Tensor y32 = conv2d(x.to(f32), w.to(f32), c.bias ? b.to(f32) : Tensor(), c.opt);
      CHECK(y32.dtype() == DType::f32);
      check_close(y32.to(f64), ref, 2e-5, 1e-5, c.name() + " f32");
    }
  }
}

TEST_CASE("conv2d forward: large 3x3 128->128 channels 64x64 float32 (the benchmark shape)") {
  Generator gen(7);
  Tensor x = Tensor::uniform({1, 128, 64, 64}, gen, -1, 1);
  Tensor w = Tensor::uniform({128, 128, 3, 3}, gen, -0.1, 0.1);
  Tensor y = conv2d(x, w, Tensor(), conv2d_options(1, 1));
  // Compare a scattered sample of outputs with the direct sum (full reference is slow in a test).
  const std::vector<float> xv = x.to_vector<float>(), wv = w.to_vector<float>(), yv = y.to_vector<float>();
  double max_err = 0;
  for (int64_t s = 0; s < 200; ++s) {
    const int64_t o = (s * 37) % 128, i = (s * 13) % 64, j = (s * 29 + s / 7) % 64;
    double acc = 0;
    for (int64_t c = 0; c < 128; ++c)
      for (int64_t p = 0; p < 3; ++p)
        for (int64_t q = 0; q < 3; ++q) {
          const int64_t ih = i - 1 + p, iw = j - 1 + q;
          if (ih < 0 || ih >= 64 || iw < 0 || iw >= 64) continue;
          acc += double(wv[((o * 128 + c) * 3 + p) * 3 + q]) * xv[(c * 64 + ih) * 64 + iw];
        }
    max_err = std::max(max_err, std::abs(acc - yv[(o * 64 + i) * 64 + j]));
  }
  INFO("max abs err over 200 samples: ", max_err);
  CHECK(max_err < 1e-4);
}

TEST_CASE("conv2d backward matches finite differences (x, weight, bias)") {
  const std::vector<ConvCase> cases = {
      {1, 2, 5, 4, 3, 3, 3, conv2d_options(1, 1), true},
      {2, 4, 5, 6, 4, 3, 3, opts({2, 2}, {0, 1, 0, 1}, {1, 1}, 2), true},
      {2, 3, 5, 5, 3, 3, 3, conv2d_options(1, 1, 1, 3), false},            // depthwise
      {1, 2, 7, 6, 2, 2, 3, opts({1, 2}, {2, 0, 1, 2}, {2, 1}, 1), true},  // dilation, uneven pads
      {2, 3, 3, 4, 5, 1, 1, conv2d_options(), true},                       // pointwise path
      {1, 2, 5, 5, 3, 1, 1, conv2d_options(2, 1), false},                  // 1x1 with stride and pad
  };
  for (const ConvCase& c : cases) {
    SUBCASE(c.name().c_str()) {
      Tensor x = rand64({c.B, c.C, c.H, c.W}, 11);
      Tensor w = rand64({c.O, c.C / c.opt.groups, c.KH, c.KW}, 12);
      if (c.bias) {
        Tensor b = rand64({c.O}, 13);
        check_gradients([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], c.opt); }, {x, w, b});
      } else {
        check_gradients([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), c.opt); }, {x, w});
      }
    }
  }
}

TEST_CASE("conv2d backward on permuted (non-contiguous) input and weight") {
  // x stored as [B, H, W, C] and viewed as [B, C, H, W]; w stored as [KH, KW, C, O].
  Tensor x_nhwc = rand64({2, 5, 4, 3}, 21);
  Tensor w_hwio = rand64({3, 3, 3, 4}, 22);
  Tensor b = rand64({4}, 23);
  const Conv2dOptions o = conv2d_options(1, 1);
  check_gradients(
      [&](const std::vector<Tensor>& in) {
        return conv2d(in[0].permute({0, 3, 1, 2}), in[1].permute({3, 2, 0, 1}), in[2], o);
      },
      {x_nhwc, w_hwio, b});
  // Forward on the views agrees with forward on contiguous copies.
  Tensor xv = x_nhwc.permute({0, 3, 1, 2}), wv = w_hwio.permute({3, 2, 0, 1});
  check_close(conv2d(xv, wv, b, o), naive_conv(xv.contiguous(), wv.contiguous(), b, o), 1e-12, 1e-12, "permuted");
}

TEST_CASE("conv2d float32 backward agrees with float64 (packed GEMM paths, chunked cols)") {
  struct Big {
    ConvCase c;
    const char* what;
  };
  const std::vector<Big> cases = {
      {{2, 16, 12, 13, 24, 3, 3, conv2d_options(1, 1), true}, "3x3"},
      {{1, 8, 11, 9, 16, 3, 3, opts({2, 2}, {0, 1, 0, 1}, {1, 1}, 2), true}, "stride 2 groups 2"},
      {{2, 32, 5, 7, 40, 1, 1, conv2d_options(), true}, "pointwise"},
      // taps * OW = 4608 * 1000 > 2^20: one output row per chunk of cols.
      {{1, 512, 3, 1000, 2, 3, 3, conv2d_options(1, 1), false}, "chunked"},
  };
  for (const Big& bc : cases) {
    const ConvCase& c = bc.c;
    SUBCASE(c.name().c_str()) {
      Tensor x = rand64({c.B, c.C, c.H, c.W}, 31), w = rand64({c.O, c.C / c.opt.groups, c.KH, c.KW}, 32);
      Tensor b = c.bias ? rand64({c.O}, 33) : Tensor();
      auto grads_of = [&](DType t) {
        Tensor xt = x.to(t).detach().set_requires_grad(true), wt = w.to(t).detach().set_requires_grad(true);
        Tensor bt = c.bias ? b.to(t).detach().set_requires_grad(true) : Tensor();
        Tensor y = conv2d(xt, wt, bt, c.opt);
        Tensor gy = rand64(y.shape(), 34).to(t);
        std::vector<Tensor> ins = {xt, wt};
        if (c.bias) ins.push_back(bt);
        return grad({y}, ins, {gy});
      };
      const std::vector<Tensor> g32 = grads_of(f32), g64 = grads_of(f64);
      for (size_t k = 0; k < g64.size(); ++k)
        check_close(g32[k].to(f64), g64[k], 2e-4, 1e-4, str_cat(bc.what, " gradient ", k));
    }
  }
}

TEST_CASE("conv2d error messages name the op and the shapes") {
  Tensor x = Tensor::zeros({1, 4, 224, 224});
  Tensor w = Tensor::zeros({64, 3, 7, 7});
  CHECK_THROWS_WITH_AS(conv2d(x, w),
                       "[conv2d] weight [64, 3, 7, 7] expects 3 input channels, got input [1, 4, 224, 224]", Error);
  CHECK_THROWS_WITH_AS(
      conv2d(Tensor::zeros({1, 4, 8, 8}), Tensor::zeros({6, 3, 3, 3}), Tensor(), conv2d_options(1, 0, 1, 2)),
      "[conv2d] weight [6, 3, 3, 3] expects 6 input channels (2 groups), got input [1, 4, 8, 8]", Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros({1, 3, 8, 8}), Tensor::zeros({5, 3, 3, 3}), Tensor(), conv2d_options(0)),
                       "[conv2d] stride must be >= 1, got {0, 0}", Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros({1, 3, 4, 4}), Tensor::zeros({5, 3, 7, 7})),
                       "[conv2d] input [1, 3, 4, 4] (padded 4x4) is smaller than the kernel of weight [5, 3, 7, 7] "
                       "(dilated 7x7)",
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros({1, 3, 8, 8}), Tensor::zeros({5, 3, 3, 3}), Tensor::zeros({4})),
                       "[conv2d] bias [4] does not match weight [5, 3, 3, 3] (expected [5])", Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros({3, 8, 8}), Tensor::zeros({5, 3, 3, 3})),
                       "[conv2d] expects input [B, C, H, W], got float32[3, 8, 8]", Error);
  CHECK_THROWS_WITH_AS(
      conv2d(Tensor::zeros({1, 6, 8, 8}), Tensor::zeros({5, 3, 3, 3}), Tensor(), conv2d_options(1, 0, 1, 2)),
      "[conv2d] 5 output channels of weight [5, 3, 3, 3] do not split into 2 groups", Error);
  CHECK_THROWS_AS(conv2d(Tensor::zeros({1, 3, 8, 8}), Tensor::zeros({5, 3, 3, 3}, f64)), Error);
}
