// kernels/cpu/norm_row.h: one row of layer_norm with double accumulation, for any float type:
// the engine's path for float64 (and the reference the float32 vector kernels of kernels/vec.h
// are measured against), and vec.cpp's scalar path for float32.
//   mean = sum_i x_i / n,  rstd = 1 / sqrt(sum_i (x_i - mean)^2 / n + eps)
//   y_i = (x_i - mean) * rstd * w_i + b_i        (w, b may be null)
#pragma once
#include <cmath>
#include <cstdint>

namespace mm::kernels::cpu {

template <typename T>
void layer_norm_row_double(const T* x, const T* w, const T* b, T* y, int64_t n, double eps, T* mean, T* rstd) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  const double m = s / static_cast<double>(n);
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += (x[i] - m) * (x[i] - m);
  const double rs = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) {
    double v = (x[i] - m) * rs;
    if (w) v *= w[i];
    if (b) v += b[i];
    y[i] = static_cast<T>(v);
  }
  *mean = static_cast<T>(m);
  *rstd = static_cast<T>(rs);
}

}  // namespace mm::kernels::cpu
