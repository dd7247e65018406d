// engine/ops/warp.cpp: bilinear sampling at perspective-mapped positions, forward and the
// scatter-add backward (the transpose of the same bilinear weights).
#include "engine/ops/warp.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "kernels/cpu/loops.h"

namespace mm {

namespace {

// For output pixel (i, j) of image b: the four input taps and their weights; taps outside
// the input are clamped (border) or dropped (zeros).
struct Taps {
  int64_t idx[4];
  double w[4];
};

template <typename F>
void for_each_tap(const double* m, int64_t H, int64_t W, int64_t OH, int64_t OW, WarpPadding pad, F f) {
  for (int64_t i = 0; i < OH; ++i)
    for (int64_t j = 0; j < OW; ++j) {
      const double x = j + 0.5, y = i + 0.5;
      const double d = m[6] * x + m[7] * y + m[8];
      double sx = (m[0] * x + m[1] * y + m[2]) / d - 0.5;  // to index space: centres at integers
      double sy = (m[3] * x + m[4] * y + m[5]) / d - 0.5;
      if (!std::isfinite(sx) || !std::isfinite(sy)) sx = sy = -1e9;
      if (pad == WarpPadding::border) {
        sx = std::min(std::max(sx, 0.0), static_cast<double>(W - 1));
        sy = std::min(std::max(sy, 0.0), static_cast<double>(H - 1));
      }
      const double fx = std::floor(sx), fy = std::floor(sy);
      const int64_t x0 = static_cast<int64_t>(std::max(-2.0, std::min(fx, double(W) + 1)));
      const int64_t y0 = static_cast<int64_t>(std::max(-2.0, std::min(fy, double(H) + 1)));
      const double ax = sx - fx, ay = sy - fy;
      Taps t;
      const int64_t xs[2] = {x0, x0 + 1}, ys[2] = {y0, y0 + 1};
      const double wx[2] = {1 - ax, ax}, wy[2] = {1 - ay, ay};
      for (int k = 0; k < 4; ++k) {
        const int64_t xx = xs[k & 1], yy = ys[k >> 1];
        const bool inside = xx >= 0 && xx < W && yy >= 0 && yy < H;
        t.idx[k] = inside ? yy * W + xx : -1;
        t.w[k] = inside ? wx[k & 1] * wy[k >> 1] : 0.0;
      }
      f(i * OW + j, t);
    }
}

}  // namespace

Tensor warp_perspective(const Tensor& x_in, const Tensor& M_in, WarpPadding padding, int64_t out_h, int64_t out_w) {
  MM_CHECK(x_in.dim() == 4, "[warp_perspective] expects x [B, C, H, W], got ", x_in.str());
  const int64_t B = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  MM_CHECK(M_in.dim() == 3 && M_in.size(0) == B && M_in.size(1) == 3 && M_in.size(2) == 3,
           "[warp_perspective] expects M [", B, ", 3, 3] for x ", x_in.str(), ", got ", M_in.str());
  MM_CHECK(H > 0 && W > 0, "[warp_perspective] empty image ", x_in.str());
  const int64_t OH = out_h > 0 ? out_h : H, OW = out_w > 0 ? out_w : W;
  if (cuda_ops::on_device("warp_perspective", {&x_in}))  // M may stay on the CPU: it is read as numbers
    return cuda_ops::warp_perspective(x_in, M_in, padding == WarpPadding::border, OH, OW);
  Tensor x = x_in.detach().contiguous();
  const std::vector<double> m = M_in.detach().to_vector<double>();
  Tensor out = Tensor::zeros({B, C, OH, OW}, x.dtype());
  kernels::dispatch_float(x.dtype(), "warp_perspective", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        for_each_tap(m.data() + b * 9, H, W, OH, OW, padding, [&](int64_t o, const Taps& t) {
          for (int64_t c = 0; c < C; ++c) {
            const T* src = xp + (b * C + c) * H * W;
            double acc = 0;
            for (int k = 0; k < 4; ++k)
              if (t.idx[k] >= 0) acc += t.w[k] * src[t.idx[k]];
            op[(b * C + c) * OH * OW + o] = static_cast<T>(acc);
          }
        });
    });
  });
  if (needs_grad({x_in})) {
    // dx[tap] += w * dy[o]: the transpose of the sampling. Saved: the matrices (as doubles).
    record_op("warp_perspective", {x_in}, {out}, [m, B, C, H, W, OH, OW, padding](const Grads& g) {
      Tensor gy = g[0].contiguous();
      Tensor dx = Tensor::zeros({B, C, H, W}, gy.dtype());
      kernels::dispatch_float(gy.dtype(), "warp_perspective_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* gp = gy.data<T>();
        T* dp = dx.data<T>();
        parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {  // each image scatters into its own dx
          for (int64_t b = b0; b < b1; ++b)
            for_each_tap(m.data() + b * 9, H, W, OH, OW, padding, [&](int64_t o, const Taps& t) {
              for (int64_t c = 0; c < C; ++c) {
                const T gv = gp[(b * C + c) * OH * OW + o];
                T* dst = dp + (b * C + c) * H * W;
                for (int k = 0; k < 4; ++k)
                  if (t.idx[k] >= 0) dst[t.idx[k]] += static_cast<T>(t.w[k] * gv);
              }
            });
        });
      });
      return Grads{dx};
    });
  }
  return out;
}

}  // namespace mm
