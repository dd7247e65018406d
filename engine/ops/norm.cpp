// engine/ops/norm.cpp: layer_norm (fused forward kernel + analytic backward), group_norm
// with or without a fused SiLU (layer_norm's row kernel per group, then the per-channel
// affine; analytic backward) and inference batch_norm (from elementwise ops, so its backward
// comes free). Test: ./build/mm_tests --source-file=*test_norm.cpp
#include "engine/ops/norm.h"

#include <cmath>
#include <type_traits>
#include <vector>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/parallel.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/norm_row.h"
#include "kernels/vec.h"

namespace mm {

using kernels::dispatch_float;

namespace {

// Per row r of x [R, N] (contiguous):
//   mean_r = sum_i x_ri / N,  rstd_r = 1 / sqrt(sum_i (x_ri - mean_r)^2 / N + eps)
//   y_ri = (x_ri - mean_r) * rstd_r * w_i + b_i
// float32 runs the vector kernel of kernels/vec.h (float lanes); other types accumulate in
// double. mean and rstd are saved for the backward.
template <typename T>
void layer_norm_forward(const T* x, const T* w, const T* b, double eps, int64_t R, int64_t N, T* y, T* mean,
                        T* rstd) {
  parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * N;
      T* yr = y + r * N;
      if constexpr (std::is_same_v<T, float>)  // kernels/vec.h: float lanes
        kernels::vlayer_norm_row(xr, w, b, yr, N, static_cast<float>(eps), mean + r, rstd + r);
      else
        kernels::cpu::layer_norm_row_double(xr, w, b, yr, N, eps, mean + r, rstd + r);
    }
  });
}

constexpr int64_t kRowsPerBlock = 16;  // dw/db partial sums per fixed block of rows: thread-count independent

// Backward of layer_norm with the saved mean and rstd; with xhat = (x - mean) * rstd and
// gw = g * w (g when there is no weight), per row:
//   dx = rstd * (gw - mean_i(gw) - xhat * mean_i(gw * xhat))
//   dw = sum_rows g * xhat,   db = sum_rows g
// dx, dw, db may be null when not wanted.
template <typename T>
void layer_norm_backward(const T* x, const T* g, const T* w, const T* mean, const T* rstd, int64_t R, int64_t N,
                         T* dx, T* dw, T* db) {
  const int64_t blocks = (R + kRowsPerBlock - 1) / kRowsPerBlock;
  std::vector<double> pdw(dw ? static_cast<size_t>(blocks * N) : 0, 0.0);
  std::vector<double> pdb(db ? static_cast<size_t>(blocks * N) : 0, 0.0);
  parallel_for(0, blocks, std::max<int64_t>(1, 4096 / std::max<int64_t>(N * kRowsPerBlock, 1)),
               [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      for (int64_t r = k * kRowsPerBlock; r < std::min(R, (k + 1) * kRowsPerBlock); ++r) {
        const T* xr = x + r * N;
        const T* gr = g + r * N;
        const double m = mean[r], rs = rstd[r];
        if (dx) {
          double sum_gw = 0, sum_gw_xhat = 0;
          for (int64_t i = 0; i < N; ++i) {
            const double gw = w ? gr[i] * static_cast<double>(w[i]) : gr[i];
            sum_gw += gw;
            sum_gw_xhat += gw * (xr[i] - m) * rs;
          }
          const double a = sum_gw / static_cast<double>(N), c = sum_gw_xhat / static_cast<double>(N);
          T* dxr = dx + r * N;
          for (int64_t i = 0; i < N; ++i) {
            const double gw = w ? gr[i] * static_cast<double>(w[i]) : gr[i];
            dxr[i] = static_cast<T>(rs * (gw - a - (xr[i] - m) * rs * c));
          }
        }
        if (dw)
          for (int64_t i = 0; i < N; ++i) pdw[k * N + i] += gr[i] * (xr[i] - m) * rs;
        if (db)
          for (int64_t i = 0; i < N; ++i) pdb[k * N + i] += gr[i];
      }
    }
  });
  // Combine the block partials in block order.
  for (int64_t i = 0; i < N; ++i) {
    double sw = 0, sb = 0;
    for (int64_t k = 0; k < blocks; ++k) {
      if (dw) sw += pdw[k * N + i];
      if (db) sb += pdb[k * N + i];
    }
    if (dw) dw[i] = static_cast<T>(sw);
    if (db) db[i] = static_cast<T>(sb);
  }
}

// A [C] tensor viewed as [1, C, 1, ...] to broadcast over x [B, C, *].
Tensor per_channel(const Tensor& t, int64_t ndim) {
  Shape s(static_cast<size_t>(ndim), 1);
  s[1] = t.numel();
  return t.reshape(s);
}

void check_affine(const char* op, const char* name, const Tensor& t, const Shape& expected, const Tensor& x) {
  if (!t.defined()) return;
  MM_CHECK(t.dtype() == x.dtype(), "[", op, "] ", name, " ", t.str(), " and x ", x.str(), ": dtype mismatch");
  MM_CHECK(t.shape() == expected, "[", op, "] ", name, " ", shape_str(t.shape()), " must be ", shape_str(expected),
           " for x ", shape_str(x.shape()));
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  MM_CHECK(x.defined(), "[layer_norm] undefined x");
  const int64_t nd = static_cast<int64_t>(normalized_shape.size());
  bool match = nd >= 1 && nd <= x.dim();
  for (int64_t i = 0; match && i < nd; ++i) match = x.shape()[x.dim() - nd + i] == normalized_shape[i];
  MM_CHECK(match, "[layer_norm] normalized_shape ", shape_str(normalized_shape), " is not the last dims of x ",
           shape_str(x.shape()));
  check_affine("layer_norm", "weight", weight, normalized_shape, x);
  check_affine("layer_norm", "bias", bias, normalized_shape, x);
  const int64_t N = numel(normalized_shape);
  if (cuda_ops::on_device("layer_norm", {&x, &weight, &bias})) return cuda_ops::layer_norm(x, N, weight, bias, eps);
  int64_t R = 1;
  for (int64_t d = 0; d < x.dim() - nd; ++d) R *= x.shape()[d];
  Tensor xc = x.detach().contiguous();  // xc: [R, N] in memory
  Tensor wc = weight.defined() ? weight.detach().contiguous() : Tensor();
  Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  Tensor mean = Tensor::empty({R}, x.dtype()), rstd = Tensor::empty({R}, x.dtype());
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_forward<T>(xc.data<T>(), wc.defined() ? wc.data<T>() : nullptr, bc.defined() ? bc.data<T>() : nullptr,
                          eps, R, N, y.data<T>(), mean.data<T>(), rstd.data<T>());
  });
  if (needs_grad({x, weight, bias})) {
    // Saved: the contiguous input, the weight, and the forward's per-row mean and rstd.
    const bool want_x = x.requires_grad(), want_w = weight.defined() && weight.requires_grad();
    const bool want_b = bias.defined() && bias.requires_grad();
    const Shape x_shape = x.shape(), w_shape = normalized_shape;
    record_op("layer_norm", {x, weight, bias}, {y},
              [xc, wc, mean, rstd, R, N, want_x, want_w, want_b, x_shape, w_shape](const Grads& g) {
      Tensor gc = g[0].contiguous();
      Tensor dx = want_x ? Tensor::empty(x_shape, xc.dtype()) : Tensor();
      Tensor dw = want_w ? Tensor::empty(w_shape, xc.dtype()) : Tensor();
      Tensor db = want_b ? Tensor::empty(w_shape, xc.dtype()) : Tensor();
      dispatch_float(xc.dtype(), "layer_norm_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        layer_norm_backward<T>(xc.data<T>(), gc.data<T>(), wc.defined() ? wc.data<T>() : nullptr, mean.data<T>(),
                               rstd.data<T>(), R, N, want_x ? dx.data<T>() : nullptr,
                               want_w ? dw.data<T>() : nullptr, want_b ? db.data<T>() : nullptr);
      });
      return Grads{dx, dw, db};
    });
  }
  return y;
}

namespace {

template <typename T>
T silu_derivative(T z) {  // d/dz [z sigmoid(z)] = s (1 + z (1 - s))
  const T s = T(1) / (T(1) + std::exp(-z));
  return s * (T(1) + z * (T(1) - s));
}

// GroupNorm's forward on contiguous x [N, C, HW] (HW: the spatial size): the Cg·HW values of
// each (sample, group) are one row r = n·G + g, normalised by layer_norm's row kernel; then,
// channel by channel, z = x̂·w_c + b_c, and y = z or, fused, silu(z).
template <typename T>
void group_norm_forward(const T* x, const T* w, const T* b, double eps, int64_t NG, int64_t G, int64_t Cg, int64_t HW,
                        bool silu, T* y, T* mean, T* rstd) {
  const int64_t len = Cg * HW;
  parallel_for(0, NG, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * len;
      T* yr = y + r * len;
      if constexpr (std::is_same_v<T, float>)
        kernels::vlayer_norm_row(xr, nullptr, nullptr, yr, len, static_cast<float>(eps), mean + r, rstd + r);
      else
        kernels::cpu::layer_norm_row_double(xr, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), yr,
                                            len, eps, mean + r, rstd + r);
      for (int64_t c = 0; c < Cg; ++c) {
        const int64_t ch = (r % G) * Cg + c;
        const T wc = w ? w[ch] : T(1), bc = b ? b[ch] : T(0);
        T* yc = yr + c * HW;
        if (w || b)
          for (int64_t i = 0; i < HW; ++i) yc[i] = yc[i] * wc + bc;
        if (!silu) continue;
        if constexpr (std::is_same_v<T, float>)
          kernels::vsigmoid_gate(yc, yc, HW, 1.0f);
        else
          for (int64_t i = 0; i < HW; ++i) yc[i] = yc[i] / (T(1) + std::exp(-yc[i]));
      }
    }
  });
}

// Its backward, row by row. With z = x̂·w_c + b_c recomputed from x, mean and rstd:
//   dz = dy (· silu'(z) if fused),  g = dz · w_c,  dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) over the row,
//   and per (sample, channel) the partial sums of dz · x̂ (for dw) and dz (for db); the caller
//   sums those over the samples. dx, dw_n, db_n may be null.
template <typename T>
void group_norm_backward(const T* x, const T* w, const T* b, const T* mean, const T* rstd, const T* dy, T* dx,
                         T* dw_n, T* db_n, int64_t NG, int64_t G, int64_t Cg, int64_t HW, bool silu) {
  const int64_t len = Cg * HW;
  parallel_for(0, NG, 1, [&](int64_t r0, int64_t r1) {
    std::vector<T> z(static_cast<size_t>(HW)), gw(dx ? static_cast<size_t>(len) : 0);
    for (int64_t r = r0; r < r1; ++r) {
      const T m = mean[r], rs = rstd[r];
      const int64_t off = r * len;
      double sg = 0, sgx = 0;
      for (int64_t c = 0; c < Cg; ++c) {
        const int64_t ch = (r % G) * Cg + c, n = r / G, at = off + c * HW;
        const T wc = w ? w[ch] : T(1), bc = b ? b[ch] : T(0);
        if (silu)
          for (int64_t i = 0; i < HW; ++i) z[i] = (x[at + i] - m) * rs * wc + bc;
        T* dz = dx ? gw.data() + c * HW : z.data();  // dz overwrites z when dx is not wanted
        if (!silu)
          std::copy(dy + at, dy + at + HW, dz);
        else if constexpr (std::is_same_v<T, float>)
          kernels::vsigmoid_gate_backward(z.data(), dy + at, dz, HW, 1.0f);
        else
          for (int64_t i = 0; i < HW; ++i) dz[i] = dy[at + i] * silu_derivative(z[i]);
        double s = 0, sx = 0;
        for (int64_t i = 0; i < HW; ++i) {
          s += dz[i];
          sx += double(dz[i]) * ((x[at + i] - m) * rs);
        }
        if (dw_n) dw_n[n * G * Cg + ch] = static_cast<T>(sx);
        if (db_n) db_n[n * G * Cg + ch] = static_cast<T>(s);
        sg += wc * s;
        sgx += wc * sx;
        if (dx)
          for (int64_t i = 0; i < HW; ++i) dz[i] *= wc;  // g = dz · w_c
      }
      if (!dx) continue;
      const T mg = static_cast<T>(sg / len), mgx = static_cast<T>(sgx / len);
      for (int64_t i = 0; i < len; ++i) dx[off + i] = rs * (gw[i] - mg - (x[off + i] - m) * rs * mgx);
    }
  });
}

// group_norm and group_norm_silu: one op, the SiLU fused or not. Saved for the backward: the
// contiguous input, the weight and bias, each group's mean and rstd.
Tensor group_norm_op(const char* op, const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias,
                     double eps, bool silu) {
  MM_CHECK(x.defined() && x.dim() >= 2, "[", op, "] x must be [B, C, *], got ",
           x.defined() ? shape_str(x.shape()) : "undefined");
  const int64_t B = x.size(0), C = x.size(1);
  MM_CHECK(groups > 0 && C % groups == 0, "[", op, "] x ", shape_str(x.shape()), " has ", C,
           " channels, not divisible into ", groups, " groups");
  check_affine(op, "weight", weight, {C}, x);
  check_affine(op, "bias", bias, {C}, x);
  if (cuda_ops::on_device(op, {&x, &weight, &bias})) return cuda_ops::group_norm(op, x, groups, weight, bias, eps, silu);
  const int64_t HW = C ? x.numel() / std::max<int64_t>(B * C, 1) : 0, Cg = C / groups, NG = B * groups;
  const Tensor xc = x.detach().contiguous();
  const Tensor wc = weight.defined() ? weight.detach().contiguous() : Tensor();
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  Tensor mean = Tensor::empty({NG}, x.dtype()), rstd = Tensor::empty({NG}, x.dtype());
  if (x.numel() > 0)
    dispatch_float(x.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      group_norm_forward<T>(xc.data<T>(), wc.defined() ? wc.data<T>() : nullptr, bc.defined() ? bc.data<T>() : nullptr,
                            eps, NG, groups, Cg, HW, silu, y.data<T>(), mean.data<T>(), rstd.data<T>());
    });
  if (needs_grad({x, weight, bias})) {
    const bool want_x = x.requires_grad(), want_w = weight.defined() && weight.requires_grad();
    const bool want_b = bias.defined() && bias.requires_grad();
    const Shape x_shape = x.shape();
    record_op(op, {x, weight, bias}, {y},
              [op, xc, wc, bc, mean, rstd, B, C, HW, Cg, groups, silu, want_x, want_w, want_b, x_shape](const Grads& g) {
                const Tensor dy = g[0].contiguous();
                Tensor dx = want_x ? Tensor::empty(x_shape, xc.dtype()) : Tensor();
                Tensor dw_n = want_w ? Tensor::empty({B, C}, xc.dtype()) : Tensor();  // per sample; summed below
                Tensor db_n = want_b ? Tensor::empty({B, C}, xc.dtype()) : Tensor();
                if (xc.numel() > 0)
                  dispatch_float(xc.dtype(), op, [&](auto tag) {
                    using T = typename decltype(tag)::type;
                    auto p = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
                    group_norm_backward<T>(xc.data<T>(), p(wc), p(bc), mean.data<T>(), rstd.data<T>(), dy.data<T>(),
                                           p(dx), p(dw_n), p(db_n), B * groups, groups, Cg, HW, silu);
                  });
                else if (dw_n.defined() || db_n.defined()) {  // an empty sum
                  if (dw_n.defined()) dw_n.fill_(0.0);
                  if (db_n.defined()) db_n.fill_(0.0);
                }
                return Grads{dx, want_w ? sum(dw_n, {0}) : Tensor(), want_b ? sum(db_n, {0}) : Tensor()};
              });
  }
  return y;
}

}  // namespace

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, double eps) {
  return group_norm_op("group_norm", x, groups, weight, bias, eps, false);
}

Tensor group_norm_silu(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, double eps) {
  return group_norm_op("group_norm_silu", x, groups, weight, bias, eps, true);
}

// Inference BatchNorm folded into one scale and shift per channel:
//   scale = weight / sqrt(running_var + eps),  shift = bias - running_mean * scale,
//   y = x * scale + shift   (scale, shift: [C] viewed as [1, C, 1, ...]).
// Written from elementwise ops, so gradients reach x, weight, bias and the statistics.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, double eps) {
  MM_CHECK(x.defined() && x.dim() >= 2, "[batch_norm] x must be [B, C, *], got ",
           x.defined() ? shape_str(x.shape()) : "undefined");
  const int64_t C = x.size(1);
  MM_CHECK(running_mean.defined() && running_var.defined(), "[batch_norm] inference form needs running_mean and "
           "running_var");
  check_affine("batch_norm", "running_mean", running_mean, {C}, x);
  check_affine("batch_norm", "running_var", running_var, {C}, x);
  check_affine("batch_norm", "weight", weight, {C}, x);
  check_affine("batch_norm", "bias", bias, {C}, x);
  Tensor scale = rsqrt(add(running_var, eps));
  if (weight.defined()) scale = mul(weight, scale);
  Tensor shift = neg(mul(running_mean, scale));
  if (bias.defined()) shift = add(bias, shift);
  return add(mul(x, per_channel(scale, x.dim())), per_channel(shift, x.dim()));
}

}  // namespace mm
