// engine/ops/resize.cpp: upsample_nearest2d, resize (separable weights, torch or PIL
// semantics) and resize_uint8_like_pil, each with its backward beneath where it has one.
// Reading order: after engine/ops/resize.h. Test: ./build/mm_tests --source-file=*test_resize.cpp
//
// Every separable resize is two 1-D resamplings, W first then H (PIL's order):
//   tmp[p, h, j] = sum_t wx[j, t] * x[p, h, ix[j, t]]
//   y[p, i, j]   = sum_t wy[i, t] * tmp[p, iy[i, t], j]
// with per-axis tables (AxisWeights) built once per call. The backward runs the transposes
// in reverse order: dtmp[p, iy[i,t], j] += wy[i,t] * dy[p,i,j], dx[p, h, ix[j,t]] += wx[j,t] * dtmp.
#include "engine/ops/resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/linalg.h"
#include "kernels/cpu/loops.h"

namespace mm {

using kernels::dispatch_float;

namespace {

// device_path: the op has a device path of its own; others refuse device tensors by name.
void check_image(const char* op, const Tensor& x, bool device_path = false) {
  MM_CHECK(x.defined(), "[", op, "] undefined input");
  MM_CHECK(x.dim() == 3 || x.dim() == 4, "[", op, "] expects input [B, C, H, W] or [C, H, W], got ", x.str());
  if (x.device() != Device::cpu && !device_path) cuda_ops::unsupported(op, "this op");
  MM_CHECK(x.size(-2) >= 1 && x.size(-1) >= 1, "[", op, "] empty image ", x.str());
}

Shape resized_shape(const Shape& s, int64_t oh, int64_t ow) {
  Shape out = s;
  out[out.size() - 2] = oh;
  out[out.size() - 1] = ow;
  return out;
}

}  // namespace

// ---- upsample_nearest2d ------------------------------------------------------------------------
// y[p, i, j] = x[p, src_h(i), src_w(j)];  backward: dx[p, src_h(i), src_w(j)] += dy[p, i, j].
// The source index follows torch's nearest_idx in float: identity when sizes match,
// i >> 1 for exact doubling, else min(floor(i * scale), in - 1).

namespace {

std::vector<int64_t> nearest_map(int64_t in, int64_t out, double scale_factor) {
  // scale_factor > 0: torch's compute_scales_value uses 1/scale_factor, else in/out.
  const float scale = scale_factor > 0 ? static_cast<float>(1.0 / scale_factor)
                                       : static_cast<float>(in) / static_cast<float>(out);
  std::vector<int64_t> map(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    if (out == in) map[i] = i;
    else if (out == 2 * in) map[i] = i >> 1;
    else map[i] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(i) * scale)), in - 1);
  }
  return map;
}

Tensor upsample_nearest_impl(const Tensor& x, int64_t out_h, int64_t out_w, double scale_h, double scale_w) {
  const int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / (H * W);
  const std::vector<int64_t> mh = nearest_map(H, out_h, scale_h), mw = nearest_map(W, out_w, scale_w);
  if (cuda_ops::on_device("upsample_nearest2d", {&x})) {
    if (out_h == 2 * H && out_w == 2 * W) return cuda_ops::upsample_nearest2x(x);  // taming's decoder
    return cuda_ops::index_axis("upsample_nearest2d", cuda_ops::index_axis("upsample_nearest2d", x, x.dim() - 2, mh),
                                x.dim() - 1, mw);
  }
  const Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(resized_shape(x.shape(), out_h, out_w), x.dtype());
  dispatch_float(x.dtype(), "upsample_nearest2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    parallel_for(0, planes * out_h, std::max<int64_t>(1, 8192 / out_w), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* in = xp + (r / out_h * H + mh[r % out_h]) * W;
        T* out = yp + r * out_w;
        for (int64_t j = 0; j < out_w; ++j) out[j] = in[mw[j]];
      }
    });
  });
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("upsample_nearest2d", {x}, {y}, [in_shape, mh, mw, planes, H, W](const Grads& grads) {
      const Tensor dy = grads[0].contiguous();
      Tensor dx = Tensor::zeros(in_shape, dy.dtype());
      const int64_t oh = static_cast<int64_t>(mh.size()), ow = static_cast<int64_t>(mw.size());
      dispatch_float(dy.dtype(), "upsample_nearest2d_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* g = dy.data<T>();
        T* d = dx.data<T>();
        parallel_for(0, planes, 1, [&](int64_t p0, int64_t p1) {  // planes never share dx
          for (int64_t p = p0; p < p1; ++p)
            for (int64_t i = 0; i < oh; ++i) {
              T* row = d + (p * H + mh[i]) * W;
              const T* go = g + (p * oh + i) * ow;
              for (int64_t j = 0; j < ow; ++j) row[mw[j]] += go[j];
            }
        });
      });
      return Grads{dx};
    });
  }
  return y;
}

}  // namespace

Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_image("upsample_nearest2d", x, /*device_path=*/true);
  MM_CHECK(out_h >= 1 && out_w >= 1, "[upsample_nearest2d] output size must be >= 1, got ", out_h, "x", out_w);
  return upsample_nearest_impl(x, out_h, out_w, 0.0, 0.0);
}

Tensor upsample_nearest2d(const Tensor& x, double scale_factor) {
  check_image("upsample_nearest2d", x, /*device_path=*/true);
  MM_CHECK(scale_factor > 0, "[upsample_nearest2d] scale_factor must be > 0, got ", scale_factor);
  const int64_t oh = static_cast<int64_t>(std::floor(x.size(-2) * scale_factor));
  const int64_t ow = static_cast<int64_t>(std::floor(x.size(-1) * scale_factor));
  MM_CHECK(oh >= 1 && ow >= 1, "[upsample_nearest2d] scale_factor ", scale_factor, " gives an empty output for ",
           x.str());
  return upsample_nearest_impl(x, oh, ow, scale_factor, scale_factor);
}

// ---- per-axis weights ---------------------------------------------------------------------------

namespace {

// For each output index o: taps source indices index[o*taps + t] with weights weight[o*taps + t]
// (unused taps have weight 0 and a valid index).
struct AxisWeights {
  int64_t in = 0, out = 0, taps = 0;
  std::vector<int64_t> index;
  std::vector<double> weight;
  // PIL's window per output (xmin, count), for the fixed-point uint8 path.
  std::vector<int64_t> first, count;
};

// PIL's filters (src/libImaging/Resample.c), same expressions so the weights round alike.
double pil_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }
double pil_bilinear(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}
double pil_bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// PIL's precompute_coeffs for in -> out samples over the whole axis (box [0, in)).
AxisWeights pil_weights(int64_t in, int64_t out, ResizeFilter filter) {
  double (*f)(double) = filter == ResizeFilter::bicubic ? pil_bicubic
                        : filter == ResizeFilter::bilinear ? pil_bilinear : pil_box;
  const double filter_support = filter == ResizeFilter::bicubic ? 2.0 : filter == ResizeFilter::bilinear ? 1.0 : 0.5;
  const double scale = static_cast<double>(static_cast<float>(in) - 0.0f) / static_cast<double>(out);
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support * filterscale;
  AxisWeights a;
  a.in = in, a.out = out, a.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  a.index.assign(static_cast<size_t>(out * a.taps), 0);
  a.weight.assign(static_cast<size_t>(out * a.taps), 0.0);
  a.first.resize(static_cast<size_t>(out));
  a.count.resize(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const double center = (o + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // int(): truncation toward zero, as PIL's (int) casts.
    const int64_t xmin = std::max<int64_t>(static_cast<int>(center - support + 0.5), 0);
    const int64_t xmax = std::min<int64_t>(static_cast<int>(center + support + 0.5), in) - xmin;
    double ww = 0.0;
    double* w = a.weight.data() + o * a.taps;
    for (int64_t x = 0; x < xmax; ++x) {
      w[x] = f((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int64_t x = 0; x < xmax; ++x)
      if (ww != 0.0) w[x] /= ww;
    for (int64_t t = 0; t < a.taps; ++t) a.index[o * a.taps + t] = std::min(xmin + t, in - 1);
    a.first[o] = xmin;
    a.count[o] = std::max<int64_t>(xmax, 0);
  }
  return a;
}

// torch's upsample_bilinear2d / upsample_bicubic2d (align_corners=False, size given).
AxisWeights torch_weights(int64_t in, int64_t out, ResizeFilter filter) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  AxisWeights a;
  a.in = in, a.out = out;
  if (filter == ResizeFilter::bilinear) {
    a.taps = 2;
    a.index.resize(static_cast<size_t>(2 * out));
    a.weight.resize(static_cast<size_t>(2 * out));
    for (int64_t o = 0; o < out; ++o) {
      const double src = std::max((o + 0.5) * scale - 0.5, 0.0);
      const int64_t i0 = static_cast<int64_t>(src);
      const int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
      const double l1 = src - static_cast<double>(i0);
      a.index[2 * o] = i0, a.index[2 * o + 1] = i1;
      a.weight[2 * o] = 1.0 - l1, a.weight[2 * o + 1] = l1;
    }
  } else if (filter == ResizeFilter::bicubic) {
    // Keys' cubic convolution with torch's A = -0.75.
    const double A = -0.75;
    auto near = [A](double x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };         // |x| <= 1
    auto far = [A](double x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };     // 1 < |x| < 2
    a.taps = 4;
    a.index.resize(static_cast<size_t>(4 * out));
    a.weight.resize(static_cast<size_t>(4 * out));
    for (int64_t o = 0; o < out; ++o) {
      const double src = (o + 0.5) * scale - 0.5;
      const int64_t i = static_cast<int64_t>(std::floor(src));
      const double t = src - static_cast<double>(i);
      const double w[4] = {far(t + 1), near(t), near(1 - t), far(2 - t)};
      for (int64_t k = 0; k < 4; ++k) {
        a.index[4 * o + k] = std::clamp<int64_t>(i - 1 + k, 0, in - 1);
        a.weight[4 * o + k] = w[k];
      }
    }
  } else {  // area: adaptive average pooling bins [floor(o*in/out), ceil((o+1)*in/out))
    a.taps = (in + out - 1) / out + 1;
    a.index.assign(static_cast<size_t>(a.taps * out), 0);
    a.weight.assign(static_cast<size_t>(a.taps * out), 0.0);
    for (int64_t o = 0; o < out; ++o) {
      const int64_t s = (o * in) / out, e = ((o + 1) * in + out - 1) / out;
      for (int64_t t = 0; t < a.taps; ++t) {
        a.index[o * a.taps + t] = std::min(s + t, in - 1);
        a.weight[o * a.taps + t] = s + t < e ? 1.0 / static_cast<double>(e - s) : 0.0;
      }
    }
  }
  return a;
}

// out[p, o, r] = sum_t w[o, t] * in[p, index[o, t], r] for in [P, a.in, R] -> out [P, a.out, R].
template <typename T>
void resample_axis(const AxisWeights& a, const T* in, T* out, int64_t P, int64_t R) {
  const int64_t work = R * a.taps;  // per output row
  parallel_for(0, P * a.out, std::max<int64_t>(1, 32768 / std::max<int64_t>(work, 1)), [&](int64_t q0, int64_t q1) {
    std::vector<double> acc(static_cast<size_t>(R));
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t p = q / a.out, o = q % a.out;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t t = 0; t < a.taps; ++t) {
        const double w = a.weight[o * a.taps + t];
        if (w == 0.0) continue;
        const T* src = in + (p * a.in + a.index[o * a.taps + t]) * R;
        for (int64_t r = 0; r < R; ++r) acc[r] += w * src[r];
      }
      T* dst = out + (p * a.out + o) * R;
      for (int64_t r = 0; r < R; ++r) dst[r] = static_cast<T>(acc[r]);
    }
  });
}

// The transpose: din[p, index[o, t], r] += w[o, t] * dout[p, o, r] (din zeroed by the caller).
template <typename T>
void resample_axis_backward(const AxisWeights& a, const T* dout, T* din, int64_t P, int64_t R) {
  parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {  // each p owns its slice of din
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t o = 0; o < a.out; ++o) {
        const T* g = dout + (p * a.out + o) * R;
        for (int64_t t = 0; t < a.taps; ++t) {
          const T w = static_cast<T>(a.weight[o * a.taps + t]);
          if (w == T(0)) continue;
          T* dst = din + (p * a.in + a.index[o * a.taps + t]) * R;
          for (int64_t r = 0; r < R; ++r) dst[r] += w * g[r];
        }
      }
  });
}

}  // namespace

// ---- resize (float) ---------------------------------------------------------------------------

namespace {
// The pass as a dense matrix [a.out, a.in] (taps that clamp to one index add up), transposed
// to [a.in, a.out] and moved to `device`: x [.., in] @ it resamples the last dim.
Tensor axis_matrix_t(const AxisWeights& a, Device device) {
  std::vector<float> m(static_cast<size_t>(a.in * a.out), 0.0f);
  std::vector<double> acc(static_cast<size_t>(a.in));
  for (int64_t o = 0; o < a.out; ++o) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t t = 0; t < a.taps; ++t) acc[a.index[o * a.taps + t]] += a.weight[o * a.taps + t];
    for (int64_t i = 0; i < a.in; ++i) m[i * a.out + o] = static_cast<float>(acc[i]);
  }
  return Tensor::from_vector(m, {a.in, a.out}).to(device);
}
}  // namespace

Tensor resize(const Tensor& x, int64_t out_h, int64_t out_w, ResizeFilter filter, Antialias antialias) {
  check_image("resize", x, /*device_path=*/true);
  MM_CHECK(out_h >= 1 && out_w >= 1, "[resize] output size must be >= 1, got ", out_h, "x", out_w, " for input ",
           x.str());
  const int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / (H * W);
  auto weights = [&](int64_t in, int64_t out) {
    return antialias == Antialias::yes ? pil_weights(in, out, filter) : torch_weights(in, out, filter);
  };
  // A pass whose size does not change is the identity in both semantics: skip it (as PIL).
  const bool do_w = out_w != W, do_h = out_h != H;
  const AxisWeights ax = do_w ? weights(W, out_w) : AxisWeights(), ay = do_h ? weights(H, out_h) : AxisWeights();
  // On the device each pass is one GEMM with its dense weight matrix (float32). Its zero
  // weights multiply too, so a non-finite pixel spreads along its row or column there
  // (the CPU skips zero taps).
  if (cuda_ops::on_device("resize", {&x})) {
    MM_CHECK(x.dtype() == DType::f32, "[resize] float32 only on cuda, got ", x.str());
    cuda_ops::PrecisionScope fp32(cuda_ops::Precision::fp32);  // pixels and weights unrounded
    Tensor y = x;
    if (do_w) y = matmul(y, axis_matrix_t(ax, Device::cuda));                                    // [.., H, OW]
    if (do_h) y = matmul(y.transpose(-1, -2), axis_matrix_t(ay, Device::cuda)).transpose(-1, -2);  // [.., OH, OW]
    return y;
  }
  const Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(resized_shape(x.shape(), out_h, out_w), x.dtype());
  dispatch_float(x.dtype(), "resize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // tmp [planes, H, out_w]: after the horizontal pass.
    std::vector<T> tmp(do_w && do_h ? static_cast<size_t>(planes * H * out_w) : 0);
    const T* mid = xc.data<T>();
    if (do_w) {
      T* dst = do_h ? tmp.data() : y.data<T>();
      resample_axis(ax, xc.data<T>(), dst, planes * H, 1);
      mid = dst;
    }
    if (do_h) resample_axis(ay, mid, y.data<T>(), planes, out_w);
    if (!do_w && !do_h) std::copy(mid, mid + x.numel(), y.data<T>());
  });
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("resize", {x}, {y}, [in_shape, ax, ay, do_w, do_h, planes, H, W, out_w](const Grads& grads) {
      const Tensor dy = grads[0].contiguous();
      Tensor dx = Tensor::zeros(in_shape, dy.dtype());
      dispatch_float(dy.dtype(), "resize_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* g = dy.data<T>();
        std::vector<T> dtmp;
        if (do_h) {
          T* dst = do_w ? (dtmp.assign(static_cast<size_t>(planes * H * out_w), T(0)), dtmp.data()) : dx.data<T>();
          resample_axis_backward(ay, g, dst, planes, out_w);
          g = dst;
        }
        if (do_w) resample_axis_backward(ax, g, dx.data<T>(), planes * H, 1);
        if (!do_w && !do_h) std::copy(g, g + dy.numel(), dx.data<T>());
      });
      return Grads{dx};
    });
  }
  return y;
}

// ---- resize_uint8_like_pil ------------------------------------------------------------------------
// PIL's ImagingResampleHorizontal_8bpc / ImagingResampleVertical_8bpc: weights scaled by
// 2^22 and rounded half away from zero to int32; each output is
//   clip8((1 << 21) + sum_t pixel * k_t) = clamp(sum >> 22, 0, 255)
// with 32-bit int arithmetic (22 = 32 - 8 - 2 bits: 8 for the pixel, 2 of headroom for
// negative lobes / sums above 1).

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

std::vector<int32_t> fixed_point(const AxisWeights& a) {
  std::vector<int32_t> k(a.weight.size());
  for (size_t i = 0; i < k.size(); ++i) {
    const double v = a.weight[i] * (1 << kPrecisionBits);
    k[i] = static_cast<int32_t>(a.weight[i] < 0 ? -0.5 + v : 0.5 + v);
  }
  return k;
}

uint8_t clip8(int32_t v) { return static_cast<uint8_t>(std::clamp(v >> kPrecisionBits, 0, 255)); }

// out[p, o, r] from in[p, first[o] + t, r], t < count[o] ([P, in, R] -> [P, out, R], R = C or W*C).
void resample_axis_u8(const AxisWeights& a, const std::vector<int32_t>& k, const uint8_t* in, uint8_t* out,
                      int64_t P, int64_t R) {
  parallel_for(0, P * a.out, std::max<int64_t>(1, 8192 / std::max<int64_t>(R, 1)), [&](int64_t q0, int64_t q1) {
    std::vector<int32_t> acc(static_cast<size_t>(R));
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t p = q / a.out, o = q % a.out;
      std::fill(acc.begin(), acc.end(), int32_t{1} << (kPrecisionBits - 1));
      for (int64_t t = 0; t < a.count[o]; ++t) {
        const int32_t w = k[o * a.taps + t];
        const uint8_t* src = in + (p * a.in + a.first[o] + t) * R;
        for (int64_t r = 0; r < R; ++r) acc[r] += static_cast<int32_t>(src[r]) * w;
      }
      uint8_t* dst = out + (p * a.out + o) * R;
      for (int64_t r = 0; r < R; ++r) dst[r] = clip8(acc[r]);
    }
  });
}

}  // namespace

Tensor resize_uint8_like_pil(const Tensor& image, int64_t out_h, int64_t out_w, ResizeFilter filter) {
  MM_CHECK(image.defined() && image.dim() == 3 && image.dtype() == DType::u8,
           "[resize_uint8_like_pil] expects a uint8 image [H, W, C], got ",
           image.defined() ? image.str() : std::string("an undefined tensor"));
  MM_CHECK(image.device() == Device::cpu, "[resize_uint8_like_pil] CPU tensors only here");
  const int64_t H = image.size(0), W = image.size(1), C = image.size(2);
  MM_CHECK(H >= 1 && W >= 1 && C >= 1 && C <= 4, "[resize_uint8_like_pil] image ", image.str(),
           " must be non-empty with 1 to 4 channels");
  MM_CHECK(out_h >= 1 && out_w >= 1, "[resize_uint8_like_pil] output size must be >= 1, got ", out_h, "x", out_w);
  const Tensor img = image.contiguous();
  Tensor out = Tensor::empty({out_h, out_w, C}, DType::u8);
  const bool do_w = out_w != W, do_h = out_h != H;
  std::vector<uint8_t> tmp(do_w && do_h ? static_cast<size_t>(H * out_w * C) : 0);
  const uint8_t* mid = img.data<uint8_t>();
  if (do_w) {  // rows are [W, C]: resample axis W with R = C, P = H
    const AxisWeights ax = pil_weights(W, out_w, filter);
    uint8_t* dst = do_h ? tmp.data() : out.data<uint8_t>();
    resample_axis_u8(ax, fixed_point(ax), img.data<uint8_t>(), dst, H, C);
    mid = dst;
  }
  if (do_h) {  // the image is [H, out_w * C]: resample axis H with R = out_w * C, P = 1
    const AxisWeights ay = pil_weights(H, out_h, filter);
    resample_axis_u8(ay, fixed_point(ay), mid, out.data<uint8_t>(), 1, out_w * C);
  }
  if (!do_w && !do_h) std::copy(mid, mid + img.numel(), out.data<uint8_t>());
  return out;
}

}  // namespace mm
