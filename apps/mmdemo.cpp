// apps/mmdemo.cpp: a small end-to-end demo of the engine until the models land: a
// coordinate network (Fourier features -> MLP) learns to paint a procedural picture by
// backpropagation and Adam, then writes target | result side by side as a PNG.
//
//   ./build/mmdemo --out demo.png [--size 64] [--steps 300] [--seed 0] [--threads N]
//
// Everything it touches is engine code: tensors, autograd, linear/matmul on our SGEMM,
// sin/gelu, mean-squared error, AdamW.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "apps/common/args.h"
#include "apps/common/image_io.h"
#include "engine/mm.h"
#include "engine/ops/linalg.h"

using namespace mm;

namespace {

// A target picture: a warm sun over a sea of stripes.
Tensor make_target(int64_t n) {
  Tensor img = Tensor::empty({3, n, n});
  float* p = img.data<float>();
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) {
      const double u = (x + 0.5) / n, v = (y + 0.5) / n;
      double r = 0.25 + 0.5 * v, g = 0.45 + 0.3 * v, b = 0.85 - 0.2 * v;  // sky
      if (v > 0.6) {  // sea with waves
        const double wave = 0.5 + 0.5 * std::sin(40 * v + 6 * std::sin(8 * u));
        r = 0.05 + 0.1 * wave, g = 0.25 + 0.2 * wave, b = 0.5 + 0.3 * wave;
      }
      const double d = std::hypot(u - 0.5, v - 0.42);
      if (d < 0.18) r = 1.0, g = 0.75 - 1.5 * d, b = 0.2;  // sun
      p[0 * n * n + y * n + x] = static_cast<float>(r);
      p[1 * n * n + y * n + x] = static_cast<float>(g);
      p[2 * n * n + y * n + x] = static_cast<float>(b);
    }
  return img;
}

struct Args {
  std::string out = "demo.png";
  int64_t size = 64, steps = 300, seed = 0;
  int threads = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      MM_CHECK(i + 1 < argc, "mmdemo: option ", k, " needs a value");
      return argv[++i];
    };
    auto integer = [&](int64_t lo, int64_t hi) { return apps::parse_int("mmdemo", k, value(), lo, hi); };
    if (k == "--out") a.out = value();
    else if (k == "--size") a.size = integer(8, 512);
    else if (k == "--steps") a.steps = integer(1, 100000);
    else if (k == "--seed") a.seed = integer(0, INT64_MAX);
    else if (k == "--threads") a.threads = static_cast<int>(integer(1, 1024));
    else if (k == "--help" || k == "-h") {
      std::printf("usage: mmdemo [--out demo.png] [--size 64] [--steps 300] [--seed 0] [--threads N]\n");
      std::exit(0);
    } else {
      throw Error(str_cat("mmdemo: unknown option '", k, "' (see --help)"));
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    if (args.threads > 0) set_num_threads(args.threads);
    const int64_t n = args.size, pixels = n * n, features = 32, hidden = 128;
    Generator gen(static_cast<uint64_t>(args.seed));

    // Inputs: pixel coordinates in [-1, 1] -> random Fourier features [P, 2F].
    Tensor coords = Tensor::empty({pixels, 2});
    float* c = coords.data<float>();
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x) c[(y * n + x) * 2] = 2.f * (x + 0.5f) / n - 1, c[(y * n + x) * 2 + 1] = 2.f * (y + 0.5f) / n - 1;
    Tensor freq = Tensor::randn({2, features}, gen) * 6.0;
    Tensor proj = matmul(coords, freq);         // [P, F]
    Tensor feats = cat({sin(proj), cos(proj)}, 1);  // [P, 2F]

    auto param = [&](Shape s, double scale) { return (Tensor::randn(s, gen) * scale).set_requires_grad(true); };
    Tensor w1 = param({hidden, 2 * features}, 1.0 / std::sqrt(2.0 * features)), b1 = param({hidden}, 0.0);
    Tensor w2 = param({hidden, hidden}, 1.0 / std::sqrt(double(hidden))), b2 = param({hidden}, 0.0);
    Tensor w3 = param({3, hidden}, 1.0 / std::sqrt(double(hidden))), b3 = param({3}, 0.0);
    AdamW opt({w1, b1, w2, b2, w3, b3}, {.lr = 3e-3, .weight_decay = 0.0});

    Tensor target = make_target(n).reshape({3, pixels}).t();  // [P, 3]
    auto forward = [&]() {
      Tensor h = gelu(linear(feats, w1, b1));
      h = gelu(linear(h, w2, b2));
      return sigmoid(linear(h, w3, b3));  // [P, 3]
    };
    std::printf("mmdemo: fitting a %lldx%lld picture with a %lld-unit MLP on %d threads\n", (long long)n, (long long)n,
                (long long)hidden, num_threads());
    const auto t0 = std::chrono::steady_clock::now();
    double loss_value = 0;
    for (int64_t step = 1; step <= args.steps; ++step) {
      opt.zero_grad();
      Tensor loss = mean(square(forward() - target));
      loss.backward();
      opt.step();
      loss_value = loss.item();
      if (step == 1 || step % 50 == 0 || step == args.steps) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("  step %4lld/%lld  loss %.5f  PSNR %.2f dB  %.1f it/s\n", (long long)step, (long long)args.steps,
                    loss_value, -10 * std::log10(loss_value), step / s);
      }
    }
    Tensor fitted;
    {
      NoGradGuard ng;
      fitted = forward().t().reshape({3, n, n});
    }
    apps::save_png(args.out, cat({target.t().reshape({3, n, n}), fitted}, 2));
    std::printf("mmdemo: wrote %s (target | learned), final PSNR %.2f dB\n", args.out.c_str(), -10 * std::log10(loss_value));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
