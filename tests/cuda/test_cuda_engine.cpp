// tests/cuda/test_cuda_engine.cpp: the engine's ops on device tensors (engine/cuda_ops.h)
// against the same ops on the CPU: transfers and strided copies, every op with a device path,
// a ViT block assembled from them, and the refusals (mixed devices, a backward, an op or a
// dtype without a device path). Tolerance: relative error on the norm, 1e-5 (cuBLAS and our
// kernels sum in other orders), 1e-4 where __expf enters.
// Without a CUDA device each case prints "SKIPPED: ..." (ctest reports the file skipped).
// Run: ./build/mm_tests --source-file=*test_cuda_engine.cpp
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "tests/errors.h"
#include "engine/cuda_ops.h"
#include "engine/mm.h"
#include "tests/cuda/rel_err.h"

using namespace mm;

#define MM_REQUIRE_DEVICE()                                                                   \
  if (!cuda_ops::device_present()) {                                                          \
    MESSAGE("SKIPPED: no CUDA device here (these run on the GPU machine: bench/device_check.sh)"); \
    return;                                                                                   \
  }

using mm::testing::error_of;

namespace {

Tensor rnd(const Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  Generator g(seed);
  return Tensor::uniform(s, g, lo, hi);
}
Tensor dev(const Tensor& t) { return t.to(Device::cuda); }
Tensor dev_like(const Tensor& t, const Tensor& like) { return t.to(like.device()); }

// tests/cuda/rel_err.h's measure of a float32 device (or CPU) result against a CPU one.
double rel_err(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return testing::rel_err(a.to_vector<float>(), b.to_vector<double>());
}

// f(leaves) on both devices: the values and the gradients of sum(f * G) must agree (relative
// error on the norm below tol, grad_tol for the gradients when given). An exception is
// reported as a failure of this check only.
void check(const char* what, const std::vector<Tensor>& inputs,
           const std::function<Tensor(const std::vector<Tensor>&)>& f, double tol = 1e-5, double grad_tol = 0) {
  const std::string name = what;
  CAPTURE(name);
  try {
    std::vector<Tensor> cpu, gpu;
    for (const Tensor& t : inputs) {
      const bool want = is_floating(t.dtype());
      cpu.push_back(want ? t.detach().set_requires_grad(true) : t);
      gpu.push_back(want ? dev(t.detach()).set_requires_grad(true) : dev(t));
    }
    const Tensor yc = f(cpu), yg = f(gpu);
    REQUIRE(yg.device() == Device::cuda);
    REQUIRE(yg.dtype() == yc.dtype());
    if (!is_floating(yc.dtype())) {  // bool and integer results: exactly
      CHECK(yg.to(DType::i64).to_vector<int64_t>() == yc.to(DType::i64).to_vector<int64_t>());
      return;
    }
    CHECK(rel_err(yg, yc) < tol);
    std::vector<Tensor> cl, gl;
    for (size_t j = 0; j < cpu.size(); ++j)
      if (cpu[j].requires_grad()) cl.push_back(cpu[j]), gl.push_back(gpu[j]);
    if (cl.empty() || !yc.requires_grad()) return;
    const Tensor G = rnd(yc.shape(), 99);
    const std::vector<Tensor> want = grad({yc}, cl, {G}), got = grad({yg}, gl, {dev(G)});
    for (size_t j = 0; j < got.size(); ++j) {
      CAPTURE(j);
      REQUIRE(got[j].defined() == want[j].defined());
      if (!want[j].defined()) continue;  // (an input the result does not depend on)
      CHECK(got[j].device() == Device::cuda);
      CHECK(rel_err(got[j], want[j]) < (grad_tol > 0 ? grad_tol : tol));
    }
  } catch (const std::exception& e) {
    FAIL_CHECK(std::string(e.what()));
  }
}

}  // namespace

TEST_CASE("cuda engine: transfers, strided copies, fill, broadcast copy_, cat") {
  MM_REQUIRE_DEVICE();
  // the apps' default device: a real GPU, never the emulator (it is for correctness, not speed)
  CHECK(cuda_ops::default_device() == (cuda_ops::emulated() ? Device::cpu : Device::cuda));
  const Tensor x = rnd({3, 5, 7}, 1);
  const Tensor d = dev(x);
  CHECK(d.device() == Device::cuda);
  CHECK(d.to(Device::cpu).to_vector<float>() == x.to_vector<float>());
  CHECK(d.to_vector<float>() == x.to_vector<float>());
  CHECK(d.at<float>({2, 4, 6}) == x.at<float>({2, 4, 6}));
  // a permuted, narrowed view made dense on the device
  const Tensor v = d.permute({2, 0, 1}).narrow(0, 1, 5).contiguous();
  CHECK(v.device() == Device::cuda);
  CHECK(v.to_vector<float>() == x.permute({2, 0, 1}).narrow(0, 1, 5).contiguous().to_vector<float>());
  // uploading a strided CPU view; downloading into a strided CPU view
  CHECK(dev(x.transpose(0, 2)).to_vector<float>() == x.transpose(0, 2).contiguous().to_vector<float>());
  Tensor host = Tensor::zeros({7, 5, 3});
  host.transpose(0, 2).copy_(d);
  CHECK(host.to_vector<float>() == x.transpose(0, 2).contiguous().to_vector<float>());
  // copy_ with broadcasting into a narrowed device view, and fill_
  Tensor z = Tensor::empty({4, 6}, DType::f32, Device::cuda);
  z.fill_(2.5);
  z.narrow(1, 4, 2).copy_(Tensor::from_vector(std::vector<float>{7, 8}, {2}));  // a host row, broadcast up
  z.narrow(1, 1, 3).copy_(dev(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3})));  // a device row
  const std::vector<float> want = {2.5f, 1, 2, 3, 7, 8};
  const std::vector<float> got = z.to_vector<float>();
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 6; ++c) CHECK(got[r * 6 + c] == want[c]);
  // dtype conversion on the CPU side of a transfer; int64 on the device
  const Tensor x64 = Tensor::empty(x.shape(), DType::f64, Device::cuda);
  Tensor(x64).copy_(x);  // float32 on the host into float64 on the device
  CHECK(x64.to_vector<double>() == x.to(DType::f64).to_vector<double>());
  CHECK(Tensor::empty({3}, DType::f32).copy_(x64.narrow(0, 0, 1).reshape({-1}).narrow(0, 0, 3)).to_vector<float>() ==
        x.reshape({-1}).narrow(0, 0, 3).to_vector<float>());
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{4, 0, 2}, {3});
  CHECK(ids.to(Device::cuda).to_vector<int64_t>() == ids.to_vector<int64_t>());
  // cat of a view and a dense tensor on the device
  const Tensor a = rnd({2, 1, 4}, 2), b = rnd({2, 3, 4}, 3);
  CHECK(rel_err(cat({dev(a).expand({2, 1, 4}), dev(b)}, 1), cat({a, b}, 1)) == 0);
}

TEST_CASE("cuda engine: elementwise ops with broadcasting, activations") {
  MM_REQUIRE_DEVICE();
  const Tensor a = rnd({2, 3, 33}, 4), b = rnd({33}, 5, 0.5, 2), c = rnd({2, 1, 33}, 6);
  CHECK(rel_err(dev(a) + dev(b), a + b) < 1e-6);
  CHECK(rel_err(dev(a) - dev(c), a - c) < 1e-6);
  CHECK(rel_err(mul(dev(a), dev(c)), mul(a, c)) < 1e-6);
  CHECK(rel_err(div(dev(a), dev(b)), div(a, b)) < 1e-6);
  CHECK(rel_err(mul(dev(a), 3.0), mul(a, 3.0)) < 1e-6);
  CHECK(rel_err(add(dev(a), -0.5), add(a, -0.5)) < 1e-6);
  CHECK(rel_err(neg(dev(a)), neg(a)) == 0);
  CHECK(rel_err(relu(dev(a)), relu(a)) == 0);
  const Tensor w = rnd({5, 1001}, 7, -6, 6);  // a length that is not a multiple of 4
  CHECK(rel_err(exp(dev(w)), exp(w)) < 1e-5);
  CHECK(rel_err(quick_gelu(dev(w)), quick_gelu(w)) < 1e-5);
  CHECK(rel_err(silu(dev(w)), silu(w)) < 1e-5);
}

TEST_CASE("cuda engine: linear, matmul, layer_norm, softmax, attention, conv2d, embedding") {
  MM_REQUIRE_DEVICE();
  const Tensor x = rnd({2, 5, 7}, 8), w = rnd({9, 7}, 9), bias = rnd({9}, 10);
  CHECK(rel_err(linear(dev(x), dev(w), dev(bias)), linear(x, w, bias)) < 1e-5);
  CHECK(rel_err(linear(dev(x), dev(w), Tensor()), linear(x, w, Tensor())) < 1e-5);
  const Tensor x0 = Tensor::zeros({3, 0}), w0 = Tensor::zeros({4, 0}), b0 = rnd({4}, 24);
  CHECK(rel_err(linear(dev(x0), dev(w0), dev(b0)), linear(x0, w0, b0)) == 0);  // an empty sum: the bias
  const Tensor m = rnd({7, 11}, 11), bm = rnd({2, 7, 3}, 12);
  CHECK(rel_err(matmul(dev(x), dev(m)), matmul(x, m)) < 1e-5);
  CHECK(rel_err(matmul(dev(x), dev(bm)), matmul(x, bm)) < 1e-5);
  CHECK(rel_err(matmul(dev(x.select(1, 0)), dev(m)), matmul(x.select(1, 0), m)) < 1e-5);
  const Tensor ln_w = rnd({7}, 13), ln_b = rnd({7}, 14);
  CHECK(rel_err(layer_norm(dev(x), {7}, dev(ln_w), dev(ln_b)), layer_norm(x, {7}, ln_w, ln_b)) < 1e-5);
  const Tensor big = rnd({3, 768}, 15, -3, 5);
  CHECK(rel_err(layer_norm(dev(big), {768}, Tensor(), Tensor()), layer_norm(big, {768}, Tensor(), Tensor())) < 1e-5);
  CHECK(rel_err(softmax(dev(big), -1), softmax(big, -1)) < 1e-5);
  for (int64_t D : {32, 64}) {
    for (Causal causal : {Causal::no, Causal::yes}) {
      CAPTURE(D);
      const Tensor q = rnd({2, 3, 17, D}, 16), k = rnd({2, 3, 17, D}, 17), v = rnd({2, 3, 17, D}, 18);
      CHECK(rel_err(scaled_dot_product_attention(dev(q), dev(k), dev(v), Tensor(), causal),
                    scaled_dot_product_attention(q, k, v, Tensor(), causal)) < 1e-5);
    }
  }
  const Tensor img = rnd({2, 3, 17, 19}, 19), cw = rnd({4, 3, 3, 3}, 20), cb = rnd({4}, 21);
  CHECK(rel_err(conv2d(dev(img), dev(cw), dev(cb), conv2d_options(2, 1)), conv2d(img, cw, cb, conv2d_options(2, 1))) <
        1e-5);
  const Tensor patch = rnd({8, 3, 8, 8}, 22);
  CHECK(rel_err(conv2d(dev(img.narrow(2, 0, 16).narrow(3, 0, 16)), dev(patch), Tensor(), conv2d_options(8)),
                conv2d(img.narrow(2, 0, 16).narrow(3, 0, 16), patch, Tensor(), conv2d_options(8))) < 1e-5);
  const Tensor table = rnd({10, 6}, 23);
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 0, 9, 3}, {2, 2});
  CHECK(rel_err(embedding(ids, dev(table)), embedding(ids, table)) == 0);
  CHECK(rel_err(index_select(dev(table), 0, dev(ids.reshape({-1}))), index_select(table, 0, ids.reshape({-1}))) == 0);
}

TEST_CASE("cuda engine: a ViT block (patch conv, class token, positions, attention, MLP) matches the CPU") {
  MM_REQUIRE_DEVICE();
  const int64_t B = 2, W = 64, P = 8, heads = 2, T = 5;  // 16x16 images: 4 patches + the class token
  const Tensor img = rnd({B, 3, 16, 16}, 30), conv_w = rnd({W, 3, P, P}, 31, -0.1, 0.1);
  const Tensor cls = rnd({W}, 32), pos = rnd({T, W}, 33), ln_w = rnd({W}, 34), ln_b = rnd({W}, 35);
  const Tensor in_w = rnd({3 * W, W}, 36, -0.2, 0.2), in_b = rnd({3 * W}, 37), out_w = rnd({W, W}, 38, -0.2, 0.2),
               out_b = rnd({W}, 39), fc_w = rnd({4 * W, W}, 40, -0.2, 0.2), fc_b = rnd({4 * W}, 41),
               proj_w = rnd({W, 4 * W}, 42, -0.1, 0.1), proj_b = rnd({W}, 43);
  auto block = [&](auto to) {
    Tensor x = conv2d(to(img), to(conv_w), Tensor(), conv2d_options(P));
    x = x.reshape({B, W, T - 1}).transpose(1, 2);
    x = cat({to(cls).reshape({1, 1, W}).expand({B, 1, W}), x}, 1) + to(pos);
    Tensor h = layer_norm(x, {W}, to(ln_w), to(ln_b));
    x = x + multi_head_attention(h, h, to(in_w), to(in_b), to(out_w), to(out_b), heads);
    h = quick_gelu(linear(layer_norm(x, {W}, to(ln_w), to(ln_b)), to(fc_w), to(fc_b)));
    return x + linear(h, to(proj_w), to(proj_b));
  };
  const Tensor on_gpu = block([](const Tensor& t) { return dev(t); });
  const Tensor on_cpu = block([](const Tensor& t) { return t; });
  CHECK(on_gpu.device() == Device::cuda);
  CHECK(rel_err(on_gpu, on_cpu) < 1e-4);

  SUBCASE("backward: the gradients of the input and of every parameter but the patch conv's") {
    std::vector<Tensor> cpu_leaves = {img, cls, pos, ln_w, ln_b, in_w, in_b, out_w, out_b, fc_w, fc_b, proj_w, proj_b};
    std::vector<Tensor> gpu_leaves;
    for (Tensor& t : cpu_leaves) {
      t = t.detach().set_requires_grad(true);
      gpu_leaves.push_back(dev(t.detach()).set_requires_grad(true));
    }
    auto block_of = [&](const std::vector<Tensor>& L, auto to) {
      const Tensor &im = L[0], &c = L[1], &p = L[2], &lw = L[3], &lb = L[4], &iw = L[5], &ib = L[6], &ow = L[7],
                   &ob = L[8], &fw = L[9], &fb = L[10], &pw = L[11], &pb = L[12];
      Tensor x = conv2d(im, to(conv_w), Tensor(), conv2d_options(P));
      x = x.reshape({B, W, T - 1}).transpose(1, 2);
      x = cat({c.reshape({1, 1, W}).expand({B, 1, W}), x}, 1) + p;
      Tensor h = layer_norm(x, {W}, lw, lb);
      x = x + multi_head_attention(h, h, iw, ib, ow, ob, heads);
      h = quick_gelu(linear(layer_norm(x, {W}, lw, lb), fw, fb));
      return x + linear(h, pw, pb);
    };
    const Tensor G = rnd({B, T, W}, 44);
    const std::vector<Tensor> want = grad({block_of(cpu_leaves, [](const Tensor& t) { return t; })}, cpu_leaves, {G});
    const std::vector<Tensor> got =
        grad({block_of(gpu_leaves, [](const Tensor& t) { return dev(t); })}, gpu_leaves, {dev(G)});
    REQUIRE(got.size() == want.size());
    for (size_t j = 0; j < got.size(); ++j) {
      CAPTURE(j);
      CHECK(got[j].device() == Device::cuda);
      CHECK(rel_err(got[j], want[j]) < 1e-4);
    }
  }
}

TEST_CASE("cuda engine: backward of each op with a device path, broadcasting included") {
  MM_REQUIRE_DEVICE();
  const Tensor a = rnd({2, 3, 5}, 60), b = rnd({3, 1}, 61, 0.5, 2), c = rnd({5}, 62);
  check("add", {a, b}, [](auto& t) { return t[0] + t[1]; });
  check("sub", {a, c}, [](auto& t) { return t[0] - t[1]; });
  check("mul", {a, b}, [](auto& t) { return mul(t[0], t[1]); });
  check("div", {a, b}, [](auto& t) { return div(t[0], t[1]); });
  check("scalars", {a}, [](auto& t) { return add(mul(t[0], 3.0), -1.0); });
  check("neg exp", {a}, [](auto& t) { return exp(neg(t[0])); });
  check("relu silu quick_gelu", {a}, [](auto& t) { return quick_gelu(silu(relu(t[0]))); });
  check("sum", {a}, [](auto& t) { return sum(t[0], {0, 2}); });
  check("sum all", {a}, [](auto& t) { return sum(t[0]); });
  check("linear", {a, rnd({4, 5}, 63), rnd({4}, 64)}, [](auto& t) { return linear(t[0], t[1], t[2]); });
  check("matmul 2-D", {a, rnd({5, 6}, 65)}, [](auto& t) { return matmul(t[0], t[1]); });
  check("matmul batched", {rnd({2, 3, 4}, 66), rnd({2, 4, 5}, 67)}, [](auto& t) { return matmul(t[0], t[1]); });
  check("layer_norm", {a, rnd({5}, 68), rnd({5}, 69)}, [](auto& t) { return layer_norm(t[0], {5}, t[1], t[2]); });
  check("softmax", {a}, [](auto& t) { return softmax(t[0], -1); });
  for (Causal causal : {Causal::no, Causal::yes})
    check("attention", {rnd({2, 2, 9, 16}, 70), rnd({2, 2, 9, 16}, 71), rnd({2, 2, 9, 16}, 72)},
          [causal](auto& t) { return scaled_dot_product_attention(t[0], t[1], t[2], Tensor(), causal); });
  const Tensor cw = rnd({4, 3, 3, 3}, 73);
  check("conv2d (input)", {rnd({2, 3, 9, 8}, 74)},
        [cw](auto& t) { return conv2d(t[0], dev_like(cw, t[0]), Tensor(), conv2d_options(2, 1)); });
  const Tensor pw = rnd({5, 3, 4, 4}, 76);  // patches: stride = kernel, the image not a whole number of them
  check("conv2d patchify (input)", {rnd({2, 3, 9, 13}, 77)},
        [pw](auto& t) { return conv2d(t[0], dev_like(pw, t[0]), Tensor(), conv2d_options(4)); });
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 0, 3, 3}, {2, 2});
  check("embedding (repeated rows)", {rnd({5, 6}, 75)}, [ids](auto& t) { return embedding(ids, t[0]); });
  // the math generation needs (VQGAN+CLIP's loss, clamps, the decoder, the cutouts)
  const Tensor u = rnd({3, 7}, 76, -0.9, 0.9), pos = rnd({3, 7}, 77, 0.2, 3);
  check("abs asin square", {u}, [](auto& t) { return square(asin(abs(t[0]))); });
  check("sqrt log rsqrt", {pos}, [](auto& t) { return add(add(sqrt(t[0]), log(t[0])), rsqrt(t[0])); });
  check("tanh sigmoid pow", {pos}, [](auto& t) { return add(tanh(t[0]), pow(sigmoid(t[0]), 3.0)); });
  check("clamp", {u}, [](auto& t) { return clamp(t[0], -0.3, 0.5); });
  check("clamp_with_grad", {u}, [](auto& t) { return clamp_with_grad(mul(t[0], 2.0), -0.3, 0.5); });
  check("maximum minimum, broadcast", {u, rnd({7}, 78)},
        [](auto& t) { return add(maximum(t[0], t[1]), minimum(t[1], t[0])); });
  check("norm normalize mean", {rnd({4, 6}, 79)},
        [](auto& t) { return add(normalize(t[0], 1), mean(norm(t[0], 2.0, {1}, KeepDim::yes))); });
  check("group_norm", {rnd({2, 8, 3, 5}, 80), rnd({8}, 81), rnd({8}, 82)},
        [](auto& t) { return silu(group_norm(t[0], 4, t[1], t[2], 1e-6)); });
  check("group_norm_silu (one kernel each way)", {rnd({2, 8, 3, 5}, 80), rnd({8}, 81), rnd({8}, 82)},
        [](auto& t) { return group_norm_silu(t[0], 4, t[1], t[2], 1e-6); });
  check("group_norm_silu, no affine, 2-D", {rnd({3, 6}, 90)}, [](auto& t) { return group_norm_silu(t[0], 3); });
  check("group_norm_silu, few large groups (the kernel splits each across blocks)",
        {rnd({1, 32, 64, 64}, 91), rnd({32}, 92), rnd({32}, 93)},
        [](auto& t) { return group_norm_silu(t[0], 8, t[1], t[2], 1e-6); });
  check("upsample_nearest2d", {rnd({2, 3, 4, 5}, 83)}, [](auto& t) { return upsample_nearest2d(t[0], 2.0); });
  check("adaptive_avg_pool2d down", {rnd({2, 3, 11, 9}, 84)}, [](auto& t) { return adaptive_avg_pool2d(t[0], 4, 5); });
  check("adaptive_avg_pool2d up", {rnd({1, 2, 3, 5}, 85)}, [](auto& t) { return adaptive_avg_pool2d(t[0], 7, 8); });
  const Tensor M = Tensor::from_vector(std::vector<double>{0.9, -0.2, 1.5, 0.25, 1.1, -0.7, 0.01, -0.02, 1.0,  //
                                                           -1.0, 0.0, 9.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0},
                                       {2, 3, 3});
  for (WarpPadding pad : {WarpPadding::border, WarpPadding::zeros})
    check("warp_perspective", {rnd({2, 3, 8, 9}, 86)}, [M, pad](auto& t) { return warp_perspective(t[0], M, pad); });
  check("attention, head size 160 (GEMM + softmax)", {rnd({1, 2, 6, 160}, 87), rnd({1, 2, 5, 160}, 88), rnd({1, 2, 5, 160}, 89)},
        [](auto& t) { return scaled_dot_product_attention(t[0], t[1], t[2], Tensor(), Causal::no); });
}

TEST_CASE("cuda engine: every other engine op, forward and backward, against the CPU") {
  MM_REQUIRE_DEVICE();
  const Tensor a = rnd({2, 3, 5}, 100), b = rnd({3, 1}, 101), pos = rnd({2, 3, 5}, 102, 0.2, 2);
  // elementwise math, comparisons and selection
  check("sin cos", {a}, [](auto& t) { return mul(sin(t[0]), cos(t[0])); });
  check("gelu (erf, tanh)", {rnd({4, 33}, 103, -4, 4)},
        [](auto& t) { return add(gelu(t[0]), gelu(t[0], GeluApprox::tanh)); });
  check("pow (tensor exponent, broadcast)", {pos, b}, [](auto& t) { return pow(t[0], t[1]); });
  const Tensor ties = Tensor::from_vector(std::vector<float>{0.5f, -1, 2, 0.5f, 3, -1}, {2, 3}),
               other = Tensor::from_vector(std::vector<float>{0.5f, 0, 2}, {3});
  for (const auto& [x, y] : {std::pair{a, b}, std::pair{ties, other}}) {
    check("eq ne lt le gt ge, into bool", {x, y}, [](auto& t) {
      const std::vector<Tensor> r = {eq(t[0], t[1]), ne(t[0], t[1]), lt(t[0], t[1]),
                                     le(t[0], t[1]), gt(t[0], t[1]), ge(t[0], t[1])};
      Tensor code = r[0].to(DType::f32);  // the six bits of each element as one number
      for (size_t i = 1; i < r.size(); ++i) code = add(code, mul(r[i].to(DType::f32), double(1 << i)));
      return code;
    });
    check("logical_not, scalar comparisons", {x}, [](auto& t) { return logical_not(gt(t[0], 0.5)); });
  }
  check("where (broadcast cond and operands)", {a, b},
        [](auto& t) { return where(gt(t[1], 0.0), t[0], mul(t[1], 2.0)); });
  check("masked_fill", {a, b}, [](auto& t) { return masked_fill(mul(t[0], t[1]), lt(t[1], 0.0), -7.0); });
  check("straight_through", {a, pos}, [](auto& t) { return straight_through(t[0], t[1]); });
  // reductions
  check("var mean", {a}, [](auto& t) { return add(var(t[0], {0, 2}), mean(t[0], {0, 2})); });
  check("norm p=1, p=3", {a}, [](auto& t) { return add(norm(t[0], 1.0, {2}), norm(t[0], 3.0, {2})); });
  for (int64_t d : {0, 1, 2}) {
    CAPTURE(d);
    check("max/min over a dim", {a}, [d](auto& t) { return add(max(t[0], d).first, sum(min(t[0], d, KeepDim::yes).first, {d})); });
    check("argmax", {a}, [d](auto& t) { return argmax(t[0], d); });
    check("argmin", {a}, [d](auto& t) { return argmin(t[0], d, KeepDim::yes); });
    check("softmax/log_softmax over any dim", {a}, [d](auto& t) { return add(softmax(t[0], d), log_softmax(t[0], d)); });
    check("logsumexp", {a}, [d](auto& t) { return logsumexp(t[0], d, KeepDim::yes); });
  }
  check("max/min of all", {a}, [](auto& t) { return add(max(t[0]), min(t[0])); });
  check("max of a 0-dim tensor", {Tensor::scalar(0.25)}, [](auto& t) { return max(t[0], 0).first; });
  const Tensor nan_ties = Tensor::from_vector(std::vector<float>{1, 3, 3, NAN, 2, 2, -1, -1}, {2, 4});
  for (int64_t d : {0, 1}) {  // ties pick the first, NaN wins
    check("argmax/argmin with ties and NaN", {nan_ties}, [d](auto& t) { return add(mul(argmax(t[0], d).to(DType::f32), 10.0), argmin(t[0], d).to(DType::f32)); });
  }
  // losses
  const Tensor target = Tensor::from_vector(std::vector<int64_t>{2, 0, 4, 4}, {4});
  check("cross_entropy", {rnd({4, 5}, 104), target}, [](auto& t) { return cross_entropy(t[0], t[1]); });
  check("mse_loss cosine_similarity", {rnd({4, 6}, 105), rnd({4, 6}, 106)},
        [](auto& t) { return add(mse_loss(t[0], t[1]), sum(cosine_similarity(t[0], t[1], 1))); });
  // shape and index ops
  check("stack split chunk", {a}, [](auto& t) {
    const auto s = split(t[0], 2, 2);
    const auto c = chunk(t[0], 2, 1);
    return add(sum(stack({s[0], s[1]}, 0), {0}), cat({c[0], c[1]}, 1).narrow(2, 0, 2));
  });
  const Tensor sel = Tensor::from_vector(std::vector<int64_t>{4, 0, 4, 2}, {4});
  check("index_select on dim 2 of a 3-D tensor", {a, sel}, [](auto& t) { return index_select(t[0], 2, t[1]); });
  const Tensor gi = Tensor::from_vector(std::vector<int64_t>{1, 0, 2, 2, 1, 1, 0, 0}, {2, 2, 2});
  check("gather on dim 1", {a, gi}, [](auto& t) { return gather(t[0], 1, t[1]); });
  check("gather on dim 2", {a, gi}, [](auto& t) { return gather(t[0], 2, t[1]); });
  check("gather on dim 0, a longer index", {rnd({3, 4}, 137), Tensor::from_vector(std::vector<int64_t>{2, 0, 1, 2, 2, 1}, {3, 2})},
        [](auto& t) { return gather(t[0], 0, t[1]); });
  // conversions on the device, integers as the CPU converts them (wrapping)
  const Tensor ints = Tensor::from_vector(std::vector<int64_t>{-1, 300, 7, 0, (int64_t(1) << 40) + 3}, {5});
  for (DType to : {DType::u8, DType::i32, DType::f32, DType::boolean}) {
    const std::string dtype = dtype_name(to);
    CAPTURE(dtype);
    check("to(dtype) of int64", {ints}, [to](auto& t) { return t[0].to(to).to(DType::f64).to(DType::f32); });
  }
  check("to(f16) and back", {mul(a, 100.0)}, [](auto& t) { return t[0].to(DType::f16).to(DType::f32); }, 1e-12);
  // normalisation
  check("batch_norm", {rnd({2, 4, 3, 3}, 107), rnd({4}, 108), rnd({4}, 109, 0.5, 2), rnd({4}, 110), rnd({4}, 111)},
        [](auto& t) { return batch_norm(t[0], t[1], t[2], t[3], t[4], 1e-5); });
  // pooling and padding
  const Tensor img = rnd({2, 3, 9, 8}, 112);
  check("avg_pool2d", {img}, [](auto& t) { return avg_pool2d(t[0], {2, 2}); });
  check("avg_pool2d, stride and padding, both counts", {img}, [](auto& t) {
    return add(avg_pool2d(t[0], {3, 3}, {2, 2}, {1, 1}),
               avg_pool2d(t[0], {3, 3}, {2, 2}, {1, 1}, CountIncludePad::no));
  });
  check("max_pool2d", {img}, [](auto& t) { return max_pool2d(t[0], {3, 3}, {2, 2}, {1, 1}); });
  check("pools with kh != kw, sh != sw, ph != pw", {img}, [](auto& t) {
    return add(max_pool2d(t[0], {3, 2}, {1, 2}, {1, 0}), avg_pool2d(t[0], {3, 2}, {1, 2}, {1, 0}, CountIncludePad::no));
  });
  for (PadMode mode : {PadMode::constant, PadMode::reflect, PadMode::replicate})
    check("pad", {img}, [mode](auto& t) { return pad(t[0], {2, 1, 0, 3}, mode, 0.5); });
  check("pad, negative (crop)", {img}, [](auto& t) { return pad(t[0], {-1, 2, 1, -2}); });
  // resampling
  check("upsample_nearest2d, other sizes", {img}, [](auto& t) {
    return add(sum(upsample_nearest2d(t[0], 13, 5), {2, 3}), sum(upsample_nearest2d(t[0], 3.0), {2, 3}));
  });
  for (ResizeFilter f : {ResizeFilter::bilinear, ResizeFilter::bicubic, ResizeFilter::box})
    for (Antialias aa : {Antialias::no, Antialias::yes}) {
      check("resize down", {img}, [f, aa](auto& t) { return resize(t[0], 4, 5, f, aa); });
      check("resize up", {img}, [f, aa](auto& t) { return resize(t[0], 14, 11, f, aa); });
    }
  // convolution: weight and bias gradients, uneven padding, 1x1
  check("conv2d (input, weight, bias)", {rnd({2, 3, 9, 8}, 113), rnd({4, 3, 3, 3}, 114), rnd({4}, 115)},
        [](auto& t) { return conv2d(t[0], t[1], t[2], conv2d_options(2, 1)); });
  check("conv2d patchify (weight)", {rnd({2, 3, 9, 13}, 116), rnd({5, 3, 4, 4}, 117)},
        [](auto& t) { return conv2d(t[0], t[1], Tensor(), conv2d_options(4)); });
  Conv2dOptions down;  // taming's Downsample: pad right and bottom by 1, stride 2
  down.stride = {2, 2}, down.padding = {0, 1, 0, 1};
  check("conv2d, uneven padding", {rnd({1, 4, 8, 7}, 118), rnd({4, 4, 3, 3}, 119), rnd({4}, 120)},
        [down](auto& t) { return conv2d(t[0], t[1], t[2], down); });
  check("conv2d 1x1", {rnd({2, 6, 5, 4}, 121), rnd({3, 6, 1, 1}, 122)},
        [](auto& t) { return conv2d(t[0], t[1], Tensor()); });
  // the options composed around the device convolution: groups (2, and depthwise), dilation,
  // unequal strides, and all of them with uneven padding
  check("conv2d, 2 groups", {rnd({2, 6, 7, 6}, 160), rnd({4, 3, 3, 3}, 161), rnd({4}, 162)},
        [](auto& t) { return conv2d(t[0], t[1], t[2], conv2d_options(1, 1, 1, 2)); });
  check("conv2d, depthwise, stride 2", {rnd({1, 4, 9, 8}, 163), rnd({8, 1, 3, 3}, 164)},
        [](auto& t) { return conv2d(t[0], t[1], Tensor(), conv2d_options(2, 1, 1, 4)); });
  check("conv2d, dilation 2", {rnd({2, 3, 11, 10}, 165), rnd({4, 3, 3, 3}, 166), rnd({4}, 167)},
        [](auto& t) { return conv2d(t[0], t[1], t[2], conv2d_options(1, 2, 2)); });
  Conv2dOptions mixed;  // strides (2, 3), dilation (1, 2), padding {1, 0, 2, 1}, 2 groups
  mixed.stride = {2, 3}, mixed.dilation = {1, 2}, mixed.padding = {1, 0, 2, 1}, mixed.groups = 2;
  check("conv2d, unequal strides and dilations, uneven padding, groups", {rnd({2, 4, 9, 11}, 168),
        rnd({6, 2, 2, 3}, 169), rnd({6}, 170)},
        [mixed](auto& t) { return conv2d(t[0], t[1], t[2], mixed); });
  // attention with masks, causal with Tq != Tk, and the multi-head layer
  const Tensor q = rnd({2, 2, 5, 8}, 123), k = rnd({2, 2, 7, 8}, 124), v = rnd({2, 2, 7, 8}, 125);
  const Tensor keep = gt(rnd({5, 7}, 126), -0.5);
  check("attention, bool mask", {q, k, v}, [keep](auto& t) {
    return scaled_dot_product_attention(t[0], t[1], t[2], keep.to(t[0].device()));
  });
  check("attention, float mask (with its gradient)", {q, k, v, rnd({2, 1, 5, 7}, 127)},
        [](auto& t) { return scaled_dot_product_attention(t[0], t[1], t[2], t[3]); });
  check("attention, causal, Tq != Tk", {q, k, v},
        [](auto& t) { return scaled_dot_product_attention(t[0], t[1], t[2], Tensor(), Causal::yes); });
  const Tensor row_masked = gt(Tensor::from_vector(std::vector<float>{0, 0, 0, 1, 1, 1, 1, 0, 1}, {3, 3}), 0.5);
  check("attention, a fully masked row gives zeros", {rnd({1, 1, 3, 4}, 128), rnd({1, 1, 3, 4}, 129), rnd({1, 1, 3, 4}, 130)},
        [row_masked](auto& t) { return scaled_dot_product_attention(t[0], t[1], t[2], row_masked.to(t[0].device())); });
  check("multi_head_attention (cross, causal)", {rnd({2, 4, 16}, 131), rnd({2, 6, 16}, 132), rnd({48, 16}, 133),
                                                  rnd({48}, 134), rnd({16, 16}, 135), rnd({16}, 136)},
        [](auto& t) { return multi_head_attention(t[0], t[1], t[2], t[3], t[4], t[5], 4, Tensor(), Causal::yes); });
}

TEST_CASE("cuda engine: frozen layers keep only what their input's gradient reads (the allocator's bytes)") {
  MM_REQUIRE_DEVICE();
  // The bytes a forward leaves held once its temporaries are gone: the result and whatever
  // the graph saved for the backward.
  auto held = [](const std::function<Tensor()>& f) {
    cuda_ops::empty_cache();  // fresh blocks: a cached one may be up to twice the size asked for
    const size_t before = cuda_ops::memory_use().in_use;
    const Tensor y = f();
    return static_cast<double>(cuda_ops::memory_use().in_use - before);
  };
  // x wants a gradient; the weights do not (mmgen's decoder and CLIP)
  const Tensor x = dev(rnd({1, 64, 32, 32}, 1)).set_requires_grad(true), w = dev(rnd({64}, 2)), b = dev(rnd({64}, 3));
  const double xb = static_cast<double>(x.numel()) * sizeof(float);
  const double fused = held([&] { return group_norm_silu(x, 32, w, b, 1e-6); });
  const double apart = held([&] { return silu(group_norm(x, 32, w, b, 1e-6)); });
  MESSAGE("held after the forward, in units of x: group_norm_silu " << fused / xb << ", silu(group_norm) " << apart / xb);
  CHECK(fused < 1.25 * xb);  // the result; x, mean and 1/std are what the backward reads
  CHECK(apart > 1.75 * xb);  // also the normalised values that silu's backward reads
  // A linear layer with a frozen weight does not keep its input: here gelu(x), which nothing
  // else holds (gelu's backward reads x).
  const Tensor x2 = dev(rnd({64, 1024}, 4)).set_requires_grad(true), w2 = dev(rnd({16, 1024}, 5));
  const double gb = static_cast<double>(x2.numel()) * sizeof(float);
  const double lin = held([&] { return linear(gelu(x2), w2, Tensor()); });
  MESSAGE("linear(gelu(x)) holds " << lin << " bytes; gelu(x) is " << gb);
  CHECK(lin < 0.25 * gb);
}

TEST_CASE("cuda engine: --precision bf16 and fp16: the GEMMs round their operands, accumulate in float32") {
  MM_REQUIRE_DEVICE();
  using cuda_ops::Precision;
  const Tensor x = rnd({3, 7, 40}, 140), w = rnd({24, 40}, 141), bias = rnd({24}, 142);
  const Tensor img = rnd({2, 5, 9, 8}, 143), cw = rnd({6, 5, 3, 3}, 144), cb = rnd({6}, 145);
  struct Case {
    const char* name;
    std::vector<Tensor> inputs;
    std::function<Tensor(const std::vector<Tensor>&)> f;
  };
  const std::vector<Case> cases = {
      {"linear", {x, w, bias}, [](auto& t) { return linear(t[0], t[1], t[2]); }},
      {"matmul 2-D", {x, w}, [](auto& t) { return matmul(t[0], t[1].t()); }},
      {"matmul batched", {x}, [](auto& t) { return matmul(t[0], t[0].transpose(1, 2)); }},
      {"conv2d (input, weight, bias)", {img, cw, cb},
       [](auto& t) { return conv2d(t[0], t[1], t[2], conv2d_options(2, 1)); }},
      {"conv2d patchify", {rnd({2, 3, 8, 12}, 146), rnd({4, 3, 4, 4}, 147)},
       [](auto& t) { return conv2d(t[0], t[1], Tensor(), conv2d_options(4)); }},
      {"attention with a mask (composed: its GEMMs rounded)",
       {rnd({1, 2, 5, 16}, 148), rnd({1, 2, 6, 16}, 149), rnd({1, 2, 6, 16}, 150), rnd({5, 6}, 151)},
       [](auto& t) { return scaled_dot_product_attention(t[0], t[1], t[2], t[3]); }},
      {"fused attention, causal (the tensor-core forward: two tiles of keys)",
       {rnd({1, 2, 70, 64}, 154), rnd({1, 2, 70, 64}, 155), rnd({1, 2, 70, 64}, 156)},
       [](auto& t) { return scaled_dot_product_attention(t[0], t[1], t[2], Tensor(), Causal::yes); }},
  };
  for (Precision p : {Precision::bf16, Precision::fp16}) {
    const std::string precision = cuda_ops::precision_name(p);
    CAPTURE(precision);
    // bf16 keeps 8 bits of mantissa, fp16 11: the errors on the norm that rounding both
    // operands of a float32-accumulated product leaves (fp16's backward runs in bf16)
    const double tol = p == Precision::bf16 ? 1e-2 : 2e-3;
    for (const Case& c : cases) {
      std::vector<Tensor> on_device;
      for (const Tensor& t : c.inputs) on_device.push_back(dev(t));
      const Tensor exact = c.f(on_device);
      Tensor rounded;
      {
        cuda_ops::PrecisionScope scope(p);
        rounded = c.f(on_device);
        check(c.name, c.inputs, c.f, tol, 1e-2);  // values and gradients against the CPU's float32
      }
      CHECK(cuda_ops::precision() == Precision::fp32);  // the scope ended
      CAPTURE(c.name);
      CHECK(rel_err(rounded, exact.to(Device::cpu)) > 1e-6);  // the operands were rounded
    }
  }
  // conv2d's input gradient runs on 16-bit operands too (dy's rows · W, then col2im): close to
  // float32's, and not equal to it. Taming's 3x3 convolution, and a strided one.
  for (int64_t stride : {1, 2}) {
    CAPTURE(stride);
    const Tensor G = dev(rnd({2, 6, stride == 1 ? 9 : 5, stride == 1 ? 8 : 4}, 153));
    auto dx_at = [&](Precision p) {
      cuda_ops::PrecisionScope scope(p);
      Tensor xd = dev(img).set_requires_grad(true);
      return grad({sum(mul(conv2d(xd, dev(cw), dev(cb), conv2d_options(stride, 1)), G))}, {xd})[0].to(Device::cpu);
    };
    const Tensor exact = dx_at(Precision::fp32), rounded = dx_at(Precision::bf16);
    const double e = rel_err(rounded, exact);
    MESSAGE("conv2d input gradient, bf16 against float32: " << e);
    CHECK(e > 1e-6);
    CHECK(e < 1e-2);
  }
  // A backward runs at the precision its forward ran at (bf16 for an fp16 forward), wherever
  // it is called from.
  for (Precision p : {Precision::bf16, Precision::fp16}) {
    const Tensor G = dev(rnd({3, 7, 24}, 152));
    auto grads = [&](bool backward_in_scope) {
      Tensor xd = dev(x).set_requires_grad(true), wd = dev(w).set_requires_grad(true);
      std::optional<cuda_ops::PrecisionScope> scope;
      scope.emplace(p);
      const Tensor y = linear(xd, wd, dev(bias));
      if (!backward_in_scope) scope.reset();
      return grad({sum(mul(y, G))}, {xd, wd});
    };
    const std::vector<Tensor> inside = grads(true), outside = grads(false);
    CHECK(rel_err(outside[0], inside[0].to(Device::cpu)) == 0);
    CHECK(rel_err(outside[1], inside[1].to(Device::cpu)) == 0);  // (a float32 backward would differ)
  }
  CHECK(error_of([] { (void)cuda_ops::parse_precision("fp8", "mmgen"); }).find("fp32, bf16 or fp16, got 'fp8'") !=
        std::string::npos);
}

TEST_CASE("cuda engine: vector quantisation and Adam on the device") {
  MM_REQUIRE_DEVICE();
  const Tensor z = rnd({37, 8}, 90), codebook = rnd({50, 8}, 91);
  const Quantized c = vector_quantize(z, codebook), d = vector_quantize(dev(z), dev(codebook));
  CHECK(d.indices.device() == Device::cuda);
  CHECK(d.indices.to_vector<int64_t>() == c.indices.to_vector<int64_t>());
  CHECK(rel_err(d.z_q, c.z_q) == 0);
  // a few Adam steps on the same gradients
  Tensor pc = rnd({5, 7}, 92).set_requires_grad(true), pd = dev(pc.detach()).set_requires_grad(true);
  Adam oc({pc}, AdamOptions{.lr = 0.1}), od({pd}, AdamOptions{.lr = 0.1});
  for (int step = 0; step < 3; ++step) {
    const Tensor G = rnd({5, 7}, 93 + step);
    oc.zero_grad(), od.zero_grad();
    sum(mul(square(pc), G)).backward();
    sum(mul(square(pd), dev(G))).backward();
    oc.step(), od.step();
  }
  CHECK(pd.device() == Device::cuda);
  CHECK(rel_err(pd, pc) < 1e-6);
}

TEST_CASE("cuda engine: refusals name the op") {
  MM_REQUIRE_DEVICE();
  const Tensor a = rnd({2, 3}, 50);
  CHECK(error_of([&] { (void)add(dev(a), a); }).find("different devices") != std::string::npos);
  CHECK(error_of([&] { (void)quick_gelu(a.to(DType::f64).to(Device::cuda)); }).find("float32 only") !=
        std::string::npos);
  // conversions run on the device; the math stays float32
  CHECK(dev(a).to(DType::f64).to_vector<double>() == a.to(DType::f64).to_vector<double>());
  CHECK(dev(a).to(DType::bf16).to(DType::f32).to_vector<float>() == a.to(DType::bf16).to(DType::f32).to_vector<float>());
  CHECK(dev(mul(a, 7.0)).to(DType::i64).to_vector<int64_t>() == mul(a, 7.0).to(DType::i64).to_vector<int64_t>());
  // mixed devices and bad indices: errors that name the op, no crash, no silent copy to the CPU
  const Tensor gi = Tensor::from_vector(std::vector<int64_t>{0, 1, 0}, {1, 3});
  CHECK(error_of([&] { (void)gather(dev(a), 0, gi); }).find("different devices") != std::string::npos);
  const Tensor far = Tensor::from_vector(std::vector<int64_t>{0, 3, 0}, {1, 3});
  CHECK(error_of([&] { (void)gather(dev(a), 1, dev(far)); }).find("[gather] index 3 out of range [0, 3)") !=
        std::string::npos);
  const Tensor table = rnd({4, 3}, 51);
  const Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 4}, {2});
  CHECK(error_of([&] { (void)index_select(dev(table), 0, bad); }).find("out of range") != std::string::npos);
  CHECK(error_of([&] { (void)index_select(dev(table), 1, bad); }).find("out of range") != std::string::npos);
}
