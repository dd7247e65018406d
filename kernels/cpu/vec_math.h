// kernels/cpu/vec_math.h: the kernels of kernels/vec.h, written once over a vector type V and
// compiled per instruction set by vec_avx512.cpp (V = 16 floats) and vec_avx2.cpp (8 floats).
// Internal to kernels/cpu. V provides: W (lanes), load/store (unaligned), set1, add, sub, mul,
// div, fma(a, b, c) = a*b + c, max, min (NaN in the second operand passes through), round
// (to nearest even), and pow2(n) = 2^n for integral n in [-126, 127] (exact).
// Both instruction sets run the same operations in the same order: bitwise the same results.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace mm::kernels::cpu {

struct VecFns {
  void (*exp)(const float*, float*, int64_t);
  void (*sigmoid_gate)(const float*, float*, int64_t, float);
  void (*sigmoid_gate_backward)(const float*, const float*, float*, int64_t, float);
  float (*max)(const float*, int64_t);
  void (*add)(const float*, const float*, float*, int64_t);
  void (*layer_norm_row)(const float*, const float*, const float*, float*, int64_t, float, float*, float*);
};
VecFns vec_fns_avx512();
VecFns vec_fns_avx2();

template <class V>
struct VecMath {
  using R = typename V::reg;

  // e^x: n = round(x log2 e), r = x - n ln2 (ln2 split in two so r is exact to ~1e-10),
  // e^r = 1 + r + r^2 p(r), result e^r 2^n1 2^n2 with n1 + n2 = n, each power exact, so the
  // result overflows to inf above ~88.72 and sinks through the subnormals to 0 below ~-103.3
  // as IEEE exp does. The clamp to [-104, 89] keeps n in [-151, 129] (and lets NaN through).
  static R exp(R x) {
    x = V::min(V::set1(89.f), V::max(V::set1(-104.f), x));
    const R n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
    R r = V::fma(n, V::set1(-0.693359375f), x);
    r = V::fma(n, V::set1(2.12194440e-4f), r);
    R p = V::set1(1.9875691500e-4f);
    p = V::fma(p, r, V::set1(1.3981999507e-3f));
    p = V::fma(p, r, V::set1(8.3334519073e-3f));
    p = V::fma(p, r, V::set1(4.1665795894e-2f));
    p = V::fma(p, r, V::set1(1.6666665459e-1f));
    p = V::fma(p, r, V::set1(5.0000001201e-1f));
    const R r2 = V::mul(r, r);
    const R er = V::add(V::fma(p, r2, r), V::set1(1.f));
    const R n1 = V::round(V::mul(n, V::set1(0.5f)));
    return V::mul(V::mul(er, V::pow2(n1)), V::pow2(V::sub(n, n1)));
  }
  // s = 1 / (1 + e^(-alpha x))
  static R sigmoid(R x, R neg_alpha) { return V::div(V::set1(1.f), V::add(V::set1(1.f), exp(V::mul(neg_alpha, x)))); }

  // Runs f over whole vectors, then the tail through a zero-padded stack buffer (so the
  // tail gets exactly the arithmetic of a full vector).
  template <int In, class F>
  static void map(const float* const (&in)[In], float* out, int64_t n, F f) {
    int64_t i = 0;
    for (; i + V::W <= n; i += V::W) {
      R a[In];
      for (int k = 0; k < In; ++k) a[k] = V::load(in[k] + i);
      V::store(out + i, apply(f, a));
    }
    if (i < n) {
      alignas(64) float buf[In][V::W] = {};
      alignas(64) float res[V::W];
      R a[In];
      for (int k = 0; k < In; ++k) {
        std::memcpy(buf[k], in[k] + i, sizeof(float) * static_cast<size_t>(n - i));
        a[k] = V::load(buf[k]);
      }
      V::store(res, apply(f, a));
      std::memcpy(out + i, res, sizeof(float) * static_cast<size_t>(n - i));
    }
  }
  template <class F> static R apply(F& f, R (&a)[1]) { return f(a[0]); }
  template <class F> static R apply(F& f, R (&a)[2]) { return f(a[0], a[1]); }
  template <class F> static R apply(F& f, R (&a)[3]) { return f(a[0], a[1], a[2]); }

  static void vexp(const float* x, float* y, int64_t n) {
    map<1>({x}, y, n, [](R v) { return exp(v); });
  }
  static void sigmoid_gate(const float* x, float* y, int64_t n, float alpha) {
    const R na = V::set1(-alpha);
    map<1>({x}, y, n, [na](R v) { return V::div(v, V::add(V::set1(1.f), exp(V::mul(na, v)))); });
  }
  static void sigmoid_gate_backward(const float* x, const float* dy, float* dx, int64_t n, float alpha) {
    const R na = V::set1(-alpha), a = V::set1(alpha), one = V::set1(1.f);
    map<2>({x, dy}, dx, n, [na, a, one](R v, R g) {
      const R s = sigmoid(v, na);
      // s + alpha x s (1 - s)
      const R d = V::fma(V::mul(V::mul(a, v), s), V::sub(one, s), s);
      return V::mul(g, d);
    });
  }
  static float vmax(const float* x, int64_t n) {
    R acc = V::set1(-std::numeric_limits<float>::infinity());
    int64_t i = 0;
    for (; i + V::W <= n; i += V::W) acc = V::max(V::load(x + i), acc);  // a NaN element loses
    alignas(64) float lanes[V::W];
    V::store(lanes, acc);
    float m = lanes[0];
    for (int k = 1; k < V::W; ++k) m = lanes[k] > m ? lanes[k] : m;
    for (; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
  }
  static void vadd(const float* a, const float* b, float* y, int64_t n) {
    map<2>({a, b}, y, n, [](R u, R v) { return V::add(u, v); });
  }
  // Sums in a fixed order whatever the vector width: lane j of 16 takes x[16q + j] over the
  // whole 16-blocks (AVX2 keeps the 16 lanes in two registers), then lanes 0..15 in order,
  // then the tail. f(v) maps each loaded vector first.
  template <class F>
  static float sum16(const float* x, int64_t n, F f) {
    constexpr int K = 16 / V::W;
    R acc[K];
    for (int k = 0; k < K; ++k) acc[k] = V::set1(0.f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      for (int k = 0; k < K; ++k) acc[k] = V::add(acc[k], f(V::load(x + i + k * V::W)));
    alignas(64) float lanes[16];
    for (int k = 0; k < K; ++k) V::store(lanes + k * V::W, acc[k]);
    float s = 0.f;
    for (float l : lanes) s += l;
    if (i < n) {
      alignas(64) float buf[V::W];
      for (; i < n; i += V::W) {  // the tail, one padded vector at a time; padding maps to 0
        const int64_t m = std::min<int64_t>(V::W, n - i);
        std::memcpy(buf, x + i, sizeof(float) * static_cast<size_t>(m));
        V::store(buf, f(V::load(buf)));
        for (int64_t k = 0; k < m; ++k) s += buf[k];
      }
    }
    return s;
  }
  // One row of layer_norm: mean, then the variance around it (two passes, float lanes), then
  // y = (x - mean) * rstd * w + b; w and b may be null.
  static void layer_norm_row(const float* x, const float* w, const float* b, float* y, int64_t n, float eps,
                             float* mean_out, float* rstd_out) {
    const float inv_n = 1.f / static_cast<float>(n);
    const float mean = sum16(x, n, [](R v) { return v; }) * inv_n;
    const R vm = V::set1(mean);
    const float var = sum16(x, n, [vm](R v) {
                        const R d = V::sub(v, vm);
                        return V::mul(d, d);
                      }) * inv_n;
    const float rstd = 1.f / std::sqrt(var + eps);
    const R vr = V::set1(rstd);
    if (w && b) {
      map<3>({x, w, b}, y, n, [vm, vr](R v, R g, R h) { return V::fma(V::mul(V::sub(v, vm), vr), g, h); });
    } else if (w) {
      map<2>({x, w}, y, n, [vm, vr](R v, R g) { return V::mul(V::mul(V::sub(v, vm), vr), g); });
    } else if (b) {
      map<2>({x, b}, y, n, [vm, vr](R v, R h) { return V::add(V::mul(V::sub(v, vm), vr), h); });
    } else {
      map<1>({x}, y, n, [vm, vr](R v) { return V::mul(V::sub(v, vm), vr); });
    }
    *mean_out = mean;
    *rstd_out = rstd;
  }
  static VecFns fns() { return {vexp, sigmoid_gate, sigmoid_gate_backward, vmax, vadd, layer_norm_row}; }
};

}  // namespace mm::kernels::cpu
