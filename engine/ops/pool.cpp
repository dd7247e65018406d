// engine/ops/pool.cpp: avg_pool2d, adaptive_avg_pool2d, max_pool2d and pad, each with its
// backward right beneath. Plain loops over [planes, H, W], parallel over planes.
// Reading order: after engine/ops/pool.h. Test: ./build/mm_tests --source-file=*test_pool.cpp
#include "engine/ops/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "kernels/cpu/loops.h"

namespace mm {

using kernels::dispatch_float;

namespace {

// x viewed as [planes, H, W] -> [planes, OH, OW].
struct PoolGeom {
  int64_t planes, H, W, OH, OW;
  int64_t kh, kw, sh, sw, ph, pw;
};

Shape pooled_shape(const Shape& s, int64_t oh, int64_t ow) {
  Shape out = s;
  out[out.size() - 2] = oh;
  out[out.size() - 1] = ow;
  return out;
}

// device_path: the op has a device path of its own; others refuse device tensors by name.
void check_image(const char* op, const Tensor& x, bool device_path = false) {
  MM_CHECK(x.defined(), "[", op, "] undefined input");
  MM_CHECK(x.dim() == 3 || x.dim() == 4, "[", op, "] expects input [B, C, H, W] or [C, H, W], got ", x.str());
  if (x.device() != Device::cpu && !device_path) cuda_ops::unsupported(op, "this op");
}

PoolGeom plan_window_pool(const char* op, const Tensor& x, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                          std::array<int64_t, 2> p) {
  check_image(op, x, /*device_path=*/true);
  if (s[0] == 0 && s[1] == 0) s = k;
  MM_CHECK(k[0] >= 1 && k[1] >= 1, "[", op, "] kernel must be >= 1, got {", k[0], ", ", k[1], "}");
  MM_CHECK(s[0] >= 1 && s[1] >= 1, "[", op, "] stride must be >= 1, got {", s[0], ", ", s[1], "}");
  MM_CHECK(p[0] >= 0 && p[1] >= 0 && 2 * p[0] <= k[0] && 2 * p[1] <= k[1], "[", op, "] padding {", p[0], ", ",
           p[1], "} must be between 0 and half the kernel {", k[0], ", ", k[1], "}");
  PoolGeom g;
  g.H = x.size(-2), g.W = x.size(-1);
  g.planes = x.numel() / std::max<int64_t>(g.H * g.W, 1);
  g.kh = k[0], g.kw = k[1], g.sh = s[0], g.sw = s[1], g.ph = p[0], g.pw = p[1];
  MM_CHECK(g.H + 2 * g.ph >= g.kh && g.W + 2 * g.pw >= g.kw, "[", op, "] input ", shape_str(x.shape()),
           " (padded ", g.H + 2 * g.ph, "x", g.W + 2 * g.pw, ") is smaller than the kernel ", g.kh, "x", g.kw);
  g.OH = (g.H + 2 * g.ph - g.kh) / g.sh + 1;
  g.OW = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
  return g;
}

// Runs fn(plane) for every plane in parallel.
template <typename F>
void for_each_plane(const PoolGeom& g, F fn) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(g.H * g.W, 1));
  parallel_for(0, g.planes, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) fn(p);
  });
}

// One avg_pool2d window: rows [h0, h1), columns [w0, w1) of the input, and its divisor.
struct Window {
  int64_t h0, h1, w0, w1;
  double divisor;
};
Window avg_window(const PoolGeom& g, int64_t i, int64_t j, CountIncludePad count) {
  int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
  int64_t h1 = std::min(h0 + g.kh, g.H + g.ph), w1 = std::min(w0 + g.kw, g.W + g.pw);
  const int64_t padded_area = (h1 - h0) * (w1 - w0);  // torch: window clipped to the padded input
  h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, g.H), w1 = std::min(w1, g.W);
  const int64_t area = count == CountIncludePad::yes ? padded_area : (h1 - h0) * (w1 - w0);
  return {h0, h1, w0, w1, static_cast<double>(area)};
}

}  // namespace

// ---- avg_pool2d -------------------------------------------------------------------------------
// y[i, j] = sum_{window(i, j)} x / divisor(i, j);  backward: dx[h, w] += dy[i, j] / divisor(i, j)
// for every window that covers (h, w).

Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding, CountIncludePad count) {
  const PoolGeom g = plan_window_pool("avg_pool2d", x, kernel, stride, padding);
  if (cuda_ops::on_device("avg_pool2d", {&x}))
    return cuda_ops::avg_pool2d(x, {g.kh, g.kw, g.sh, g.sw, g.ph, g.pw}, count == CountIncludePad::yes);
  const Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(pooled_shape(x.shape(), g.OH, g.OW), x.dtype());
  dispatch_float(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    for_each_plane(g, [&](int64_t p) {
      const T* in = xp + p * g.H * g.W;
      T* out = yp + p * g.OH * g.OW;
      for (int64_t i = 0; i < g.OH; ++i)
        for (int64_t j = 0; j < g.OW; ++j) {
          const Window w = avg_window(g, i, j, count);
          double acc = 0;
          for (int64_t h = w.h0; h < w.h1; ++h)
            for (int64_t c = w.w0; c < w.w1; ++c) acc += in[h * g.W + c];
          out[i * g.OW + j] = static_cast<T>(acc / w.divisor);
        }
    });
  });
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("avg_pool2d", {x}, {y}, [g, in_shape, count](const Grads& grads) {
      const Tensor dy = grads[0].contiguous();
      Tensor dx = Tensor::zeros(in_shape, dy.dtype());
      dispatch_float(dy.dtype(), "avg_pool2d_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* dyp = dy.data<T>();
        T* dxp = dx.data<T>();
        for_each_plane(g, [&](int64_t p) {
          const T* go = dyp + p * g.OH * g.OW;
          T* gi = dxp + p * g.H * g.W;
          for (int64_t i = 0; i < g.OH; ++i)
            for (int64_t j = 0; j < g.OW; ++j) {
              const Window w = avg_window(g, i, j, count);
              const T v = static_cast<T>(go[i * g.OW + j] / w.divisor);
              for (int64_t h = w.h0; h < w.h1; ++h)
                for (int64_t c = w.w0; c < w.w1; ++c) gi[h * g.W + c] += v;
            }
        });
      });
      return Grads{dx};
    });
  }
  return y;
}

// ---- adaptive_avg_pool2d ------------------------------------------------------------------------
// Bin i covers [floor(i*H/OH), ceil((i+1)*H/OH)); y = mean over the bin; backward spreads
// dy / bin_area over the bin.

namespace {
int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
}  // namespace

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_image("adaptive_avg_pool2d", x, /*device_path=*/true);
  MM_CHECK(out_h >= 1 && out_w >= 1, "[adaptive_avg_pool2d] output size must be >= 1, got ", out_h, "x", out_w);
  MM_CHECK(x.size(-2) >= 1 && x.size(-1) >= 1, "[adaptive_avg_pool2d] empty input ", x.str());
  if (cuda_ops::on_device("adaptive_avg_pool2d", {&x})) return cuda_ops::adaptive_avg_pool2d(x, out_h, out_w);
  PoolGeom g{};
  g.H = x.size(-2), g.W = x.size(-1), g.OH = out_h, g.OW = out_w;
  g.planes = x.numel() / (g.H * g.W);
  const Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(pooled_shape(x.shape(), out_h, out_w), x.dtype());
  dispatch_float(x.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    for_each_plane(g, [&](int64_t p) {
      const T* in = xp + p * g.H * g.W;
      T* out = yp + p * g.OH * g.OW;
      for (int64_t i = 0; i < g.OH; ++i) {
        const int64_t h0 = bin_start(i, g.H, g.OH), h1 = bin_end(i, g.H, g.OH);
        for (int64_t j = 0; j < g.OW; ++j) {
          const int64_t w0 = bin_start(j, g.W, g.OW), w1 = bin_end(j, g.W, g.OW);
          double acc = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t c = w0; c < w1; ++c) acc += in[h * g.W + c];
          out[i * g.OW + j] = static_cast<T>(acc / static_cast<double>((h1 - h0) * (w1 - w0)));
        }
      }
    });
  });
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("adaptive_avg_pool2d", {x}, {y}, [g, in_shape](const Grads& grads) {
      const Tensor dy = grads[0].contiguous();
      Tensor dx = Tensor::zeros(in_shape, dy.dtype());
      dispatch_float(dy.dtype(), "adaptive_avg_pool2d_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* dyp = dy.data<T>();
        T* dxp = dx.data<T>();
        for_each_plane(g, [&](int64_t p) {
          const T* go = dyp + p * g.OH * g.OW;
          T* gi = dxp + p * g.H * g.W;
          for (int64_t i = 0; i < g.OH; ++i) {
            const int64_t h0 = bin_start(i, g.H, g.OH), h1 = bin_end(i, g.H, g.OH);
            for (int64_t j = 0; j < g.OW; ++j) {
              const int64_t w0 = bin_start(j, g.W, g.OW), w1 = bin_end(j, g.W, g.OW);
              const T v = static_cast<T>(go[i * g.OW + j] / static_cast<double>((h1 - h0) * (w1 - w0)));
              for (int64_t h = h0; h < h1; ++h)
                for (int64_t c = w0; c < w1; ++c) gi[h * g.W + c] += v;
            }
          }
        });
      });
      return Grads{dx};
    });
  }
  return y;
}

// ---- max_pool2d ---------------------------------------------------------------------------------
// y[i, j] = max over the window (padding never wins); the forward saves argmax (h*W + w within
// the plane, int64), and the backward adds dy[i, j] to dx at that index.

Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding) {
  const PoolGeom g = plan_window_pool("max_pool2d", x, kernel, stride, padding);
  if (cuda_ops::on_device("max_pool2d", {&x})) return cuda_ops::max_pool2d(x, {g.kh, g.kw, g.sh, g.sw, g.ph, g.pw});
  const Tensor xc = x.detach().contiguous();
  const Shape out_shape = pooled_shape(x.shape(), g.OH, g.OW);
  Tensor y = Tensor::empty(out_shape, x.dtype());
  Tensor argmax = Tensor::empty(out_shape, DType::i64);
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    int64_t* ap = argmax.data<int64_t>();
    for_each_plane(g, [&](int64_t p) {
      const T* in = xp + p * g.H * g.W;
      for (int64_t i = 0; i < g.OH; ++i)
        for (int64_t j = 0; j < g.OW; ++j) {
          const int64_t h0 = std::max<int64_t>(i * g.sh - g.ph, 0), h1 = std::min(i * g.sh - g.ph + g.kh, g.H);
          const int64_t w0 = std::max<int64_t>(j * g.sw - g.pw, 0), w1 = std::min(j * g.sw - g.pw + g.kw, g.W);
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_at = h0 * g.W + w0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t c = w0; c < w1; ++c) {
              const T v = in[h * g.W + c];
              if (v > best || std::isnan(v)) {
                best = v;
                best_at = h * g.W + c;
                if (std::isnan(v)) h = h1, c = w1;  // NaN wins: stop here
              }
            }
          const int64_t o = p * g.OH * g.OW + i * g.OW + j;
          yp[o] = best;
          ap[o] = best_at;
        }
    });
  });
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("max_pool2d", {x}, {y}, [g, in_shape, argmax](const Grads& grads) {
      const Tensor dy = grads[0].contiguous();
      Tensor dx = Tensor::zeros(in_shape, dy.dtype());
      dispatch_float(dy.dtype(), "max_pool2d_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* dyp = dy.data<T>();
        const int64_t* ap = argmax.data<int64_t>();
        T* dxp = dx.data<T>();
        for_each_plane(g, [&](int64_t p) {
          const int64_t o0 = p * g.OH * g.OW;
          T* gi = dxp + p * g.H * g.W;
          for (int64_t o = o0; o < o0 + g.OH * g.OW; ++o) gi[ap[o]] += dyp[o];
        });
      });
      return Grads{dx};
    });
  }
  return y;
}

// ---- pad ------------------------------------------------------------------------------------
// Each padded dim d has a map src_d[o] from output to input index (-1: the constant value).
// reflect: i < 0 -> -i, i >= n -> 2(n-1) - i; replicate: clamp(i, 0, n-1).
// out[o] = x[src(o)] (or value);  backward: dx[src(o)] += dy[o] (reflect/replicate sources
// receive from several outputs; the loop runs over whole rows in order, sequentially).

namespace {

struct PadPlan {
  Shape in_shape, out_shape;
  std::vector<std::vector<int64_t>> src;  // one map per dim (identity for unpadded dims)
};

PadPlan plan_pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode) {
  MM_CHECK(x.defined(), "[pad] undefined input");
  MM_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) / 2 <= x.dim(), "[pad] pads has ",
           pads.size(), " entries; expects pairs (before, after) for at most ", x.dim(), " dims of input ",
           x.str());
  PadPlan plan;
  plan.in_shape = x.shape();
  plan.out_shape = x.shape();
  const int64_t nd = x.dim();
  plan.src.resize(static_cast<size_t>(nd));
  for (int64_t d = 0; d < nd; ++d) {
    const int64_t k = nd - 1 - d;  // pads[2k], pads[2k+1] belong to dim d
    const int64_t before = 2 * k < static_cast<int64_t>(pads.size()) ? pads[2 * k] : 0;
    const int64_t after = 2 * k < static_cast<int64_t>(pads.size()) ? pads[2 * k + 1] : 0;
    const int64_t n = x.size(d), m = n + before + after;
    if (mode != PadMode::constant && (before != 0 || after != 0)) {
      MM_CHECK(before >= 0 && after >= 0, "[pad] negative padding (", before, ", ", after, ") of dim ", d,
               " is only allowed in constant mode; input ", x.str());
      MM_CHECK(mode != PadMode::reflect || (before < n && after < n), "[pad] reflect padding (", before, ", ",
               after, ") of dim ", d, " must be smaller than its size ", n, "; input ", x.str());
      MM_CHECK(n >= 1, "[pad] replicate padding of empty dim ", d, " of input ", x.str());
    }
    MM_CHECK(m >= 0, "[pad] padding (", before, ", ", after, ") of dim ", d, " leaves a negative size; input ",
             x.str());
    plan.out_shape[d] = m;
    std::vector<int64_t>& map = plan.src[d];
    map.resize(static_cast<size_t>(m));
    for (int64_t o = 0; o < m; ++o) {
      int64_t i = o - before;
      if (i < 0 || i >= n) {
        if (mode == PadMode::constant) i = -1;
        else if (mode == PadMode::reflect) i = i < 0 ? -i : 2 * (n - 1) - i;
        else i = std::clamp<int64_t>(i, 0, n - 1);
      }
      map[o] = i;
    }
  }
  return plan;
}

// Calls fn(out_row_offset, in_row_offset or -1) for every row (all dims but the last) of the
// output, with contiguous strides of in_shape and out_shape.
template <typename F>
void for_each_pad_row(const PadPlan& plan, int64_t r0, int64_t r1, F fn) {
  const int64_t nd = static_cast<int64_t>(plan.out_shape.size());
  const Shape in_strides = contiguous_strides(plan.in_shape);
  const int64_t row_out = plan.out_shape[nd - 1];
  for (int64_t r = r0; r < r1; ++r) {
    int64_t rem = r, in_off = 0;
    for (int64_t d = nd - 2; d >= 0 && in_off >= 0; --d) {
      const int64_t o = rem % plan.out_shape[d];
      rem /= plan.out_shape[d];
      const int64_t i = plan.src[d][o];
      in_off = i < 0 ? -1 : in_off + i * in_strides[d];
    }
    fn(r * row_out, in_off);
  }
}

}  // namespace

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode, double value) {
  MM_CHECK(x.defined() && x.dim() >= 1, "[pad] expects a tensor with at least one dim");
  const PadPlan plan = plan_pad(x, pads, mode);
  if (cuda_ops::on_device("pad", {&x})) {  // the index map of each dim it changes (-1: the value)
    Tensor y = x;
    for (int64_t d = 0; d < x.dim(); ++d) {
      const std::vector<int64_t>& map = plan.src[d];
      bool identity = plan.out_shape[d] == plan.in_shape[d];
      for (size_t o = 0; identity && o < map.size(); ++o) identity = map[o] == static_cast<int64_t>(o);
      if (!identity) y = cuda_ops::index_axis("pad", y, d, map, value);
    }
    return y;
  }
  const Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(plan.out_shape, x.dtype());
  const int64_t nd = x.dim(), row = plan.out_shape[nd - 1];
  const int64_t rows = row == 0 ? 0 : numel(plan.out_shape) / row;
  const std::vector<int64_t>& last = plan.src[nd - 1];
  dispatch_float(x.dtype(), "pad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    const T fill = static_cast<T>(value);
    parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(row, 1)), [&](int64_t r0, int64_t r1) {
      for_each_pad_row(plan, r0, r1, [&](int64_t out_off, int64_t in_off) {
        T* out = yp + out_off;
        if (in_off < 0) {
          std::fill(out, out + row, fill);
          return;
        }
        for (int64_t o = 0; o < row; ++o) out[o] = last[o] < 0 ? fill : xp[in_off + last[o]];
      });
    });
  });
  if (needs_grad({x})) {
    record_op("pad", {x}, {y}, [plan, rows, row](const Grads& grads) {
      const Tensor dy = grads[0].contiguous();
      Tensor dx = Tensor::zeros(plan.in_shape, dy.dtype());
      const std::vector<int64_t>& last = plan.src.back();
      dispatch_float(dy.dtype(), "pad_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* dyp = dy.data<T>();
        T* dxp = dx.data<T>();
        for_each_pad_row(plan, 0, rows, [&](int64_t out_off, int64_t in_off) {
          if (in_off < 0) return;
          for (int64_t o = 0; o < row; ++o)
            if (last[o] >= 0) dxp[in_off + last[o]] += dyp[out_off + o];
        });
      });
      return Grads{dx};
    });
  }
  return y;
}

}  // namespace mm
