// engine/ops/elementwise.cpp: elementwise forward kernels and their backward, op by op.
// The CPU loops come from kernels/cpu/loops.h; math runs in the tensor's float type.
#include "engine/ops/elementwise.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/reduce.h"
#include "kernels/cpu/loops.h"
#include "kernels/vec.h"

namespace mm {

using kernels::dispatch_float;
using kernels::for_each_row;

namespace {

void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  MM_CHECK(a.defined() && b.defined(), "[", op, "] undefined tensor argument");
  MM_CHECK(a.device() == b.device(), "[", op, "] tensors on different devices: ", device_name(a.device()),
           " ", a.str(), " and ", device_name(b.device()), " ", b.str());
  MM_CHECK(a.dtype() == b.dtype(), "[", op, "] dtype mismatch: ", a.str(), " and ", b.str());
}

// The vectorised float32 kernels of kernels/vec.h, for inputs that are contiguous float32 CPU
// tensors of one shape: kernel(inputs..., out, n) over chunks split across threads. Returns an undefined
// Tensor otherwise, and the caller takes its generic path (other dtypes, strided views).
constexpr int64_t kVecGrain = 16384;
template <typename K>
Tensor vec_map(const Tensor& x, K kernel) {
  if (x.device() != Device::cpu || x.dtype() != DType::f32 || !x.is_contiguous()) return Tensor();
  Tensor out = Tensor::empty(x.shape(), DType::f32);
  const float* px = x.data<float>();
  float* po = out.data<float>();
  parallel_for(0, x.numel(), kVecGrain, [&](int64_t i0, int64_t i1) { kernel(px + i0, po + i0, i1 - i0); });
  return out;
}
template <typename K>
Tensor vec_map2(const Tensor& a, const Tensor& b, K kernel) {
  if (a.device() != Device::cpu || b.device() != Device::cpu || a.dtype() != DType::f32 ||
      b.dtype() != DType::f32 || a.shape() != b.shape() || !a.is_contiguous() || !b.is_contiguous())
    return Tensor();
  Tensor out = Tensor::empty(a.shape(), DType::f32);
  const float *pa = a.data<float>(), *pb = b.data<float>();
  float* po = out.data<float>();
  parallel_for(0, a.numel(), kVecGrain,
               [&](int64_t i0, int64_t i1) { kernel(pa + i0, pb + i0, po + i0, i1 - i0); });
  return out;
}

// out = f(x) elementwise; out is a new contiguous tensor of x's float dtype.
template <typename F>
Tensor unary_map(const char* op, const Tensor& x, F f) {
  if (x.device() != Device::cpu) cuda_ops::unsupported(op, "this op");  // these loops are the CPU's
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = out.data<T>();
    const T* p = x.data<T>();
    for_each_row<2>(x.shape(), {out.strides(), x.strides()}, [&](int64_t n, auto off, auto inc) {
      T* op_ = o + off[0];
      const T* xp = p + off[1];
      if (inc[1] == 1) {
        for (int64_t i = 0; i < n; ++i) op_[i] = f(xp[i]);
      } else {
        for (int64_t i = 0; i < n; ++i) op_[i] = f(xp[i * inc[1]]);
      }
    });
  });
  return out;
}

// out = f(a, b) over the broadcast shape; R is the result element type (T, or bool).
template <typename R_is_bool = std::false_type, typename F>
Tensor binary_map(const char* op, const Tensor& a, const Tensor& b, F f) {
  check_binary(op, a, b);
  if (a.device() != Device::cpu) cuda_ops::unsupported(op, "this op");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, R_is_bool::value ? DType::boolean : a.dtype());
  auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    using R = std::conditional_t<R_is_bool::value, bool, T>;
    R* o = out.data<R>();
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    const Shape sa = kernels::broadcast_strides(a.shape(), a.strides(), shape);
    const Shape sb = kernels::broadcast_strides(b.shape(), b.strides(), shape);
    for_each_row<3>(shape, {out.strides(), sa, sb}, [&](int64_t n, auto off, auto inc) {
      R* op_ = o + off[0];
      const T* xa = pa + off[1];
      const T* xb = pb + off[2];
      if (inc[1] == 1 && inc[2] == 1) {
        for (int64_t i = 0; i < n; ++i) op_[i] = f(xa[i], xb[i]);
      } else if (inc[1] == 1 && inc[2] == 0) {
        const T vb = xb[0];
        for (int64_t i = 0; i < n; ++i) op_[i] = f(xa[i], vb);
      } else if (inc[1] == 0 && inc[2] == 1) {
        const T va = xa[0];
        for (int64_t i = 0; i < n; ++i) op_[i] = f(va, xb[i]);
      } else {
        for (int64_t i = 0; i < n; ++i) op_[i] = f(xa[i * inc[1]], xb[i * inc[2]]);
      }
    });
  };
  dispatch_float(a.dtype(), op, run);  // throws for non-float dtypes
  return out;
}

// A 0-dim tensor of x's dtype on x's device.
Tensor scalar_like(const Tensor& x, double v) { return Tensor::scalar(v, x.dtype()).to(x.device()); }

}  // namespace

// ---- arithmetic ---------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out;
  if (cuda_ops::on_device("add", {&a, &b})) {  // the device computes; the backward below is shared
    out = cuda_ops::binary("add", cuda_ops::Binary::add, a, b);
  } else {
    out = vec_map2(a, b, kernels::vadd);  // same-shape float32: a residual sum
    if (!out.defined()) out = binary_map("add", a, b, [](auto x, auto y) { return x + y; });
  }
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    record_op("add", {a, b}, {out}, [sa, sb](const Grads& g) {
      return Grads{sum_to(g[0], sa), sum_to(g[0], sb)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = cuda_ops::on_device("sub", {&a, &b}) ? cuda_ops::binary("sub", cuda_ops::Binary::sub, a, b)
                                                    : binary_map("sub", a, b, [](auto x, auto y) { return x - y; });
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    record_op("sub", {a, b}, {out}, [sa, sb](const Grads& g) {
      return Grads{sum_to(g[0], sa), neg(sum_to(g[0], sb))};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = cuda_ops::on_device("mul", {&a, &b}) ? cuda_ops::binary("mul", cuda_ops::Binary::mul, a, b)
                                                    : binary_map("mul", a, b, [](auto x, auto y) { return x * y; });
  if (needs_grad({a, b})) {
    // d(a*b) = g*b da + g*a db; save the inputs only when the other needs a gradient.
    Tensor sa = b.requires_grad() ? a.detach() : Tensor();
    Tensor sb = a.requires_grad() ? b.detach() : Tensor();
    const Shape shape_a = a.shape(), shape_b = b.shape();
    record_op("mul", {a, b}, {out}, [sa, sb, shape_a, shape_b](const Grads& g) {
      return Grads{sb.defined() ? sum_to(mul(g[0], sb), shape_a) : Tensor(),
                   sa.defined() ? sum_to(mul(g[0], sa), shape_b) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = cuda_ops::on_device("div", {&a, &b}) ? cuda_ops::binary("div", cuda_ops::Binary::div, a, b)
                                                    : binary_map("div", a, b, [](auto x, auto y) { return x / y; });
  if (needs_grad({a, b})) {
    // d(a/b) = g/b da - g*a/b^2 db = g/b da - g*out/b db
    const bool want_b = b.requires_grad();
    const Tensor bd = b.detach(), od = want_b ? out.detach() : Tensor();
    const Shape shape_a = a.shape(), shape_b = b.shape();
    record_op("div", {a, b}, {out}, [bd, od, shape_a, shape_b, want_b](const Grads& g) {
      Tensor g_over_b = div(g[0], bd);
      return Grads{sum_to(g_over_b, shape_a), want_b ? neg(sum_to(mul(g_over_b, od), shape_b)) : Tensor()};
    });
  }
  return out;
}

Tensor add(const Tensor& a, double b) {
  Tensor out = cuda_ops::on_device("add", {&a})
                   ? cuda_ops::binary("add", cuda_ops::Binary::add, a, scalar_like(a, b))
                   : binary_map("add", a, scalar_like(a, b), [](auto x, auto y) { return x + y; });
  if (needs_grad({a})) record_op("add_scalar", {a}, {out}, [](const Grads& g) { return Grads{g[0]}; });
  return out;
}

Tensor mul(const Tensor& a, double b) {
  Tensor out = cuda_ops::on_device("mul", {&a})
                   ? cuda_ops::binary("mul", cuda_ops::Binary::mul, a, scalar_like(a, b))
                   : binary_map("mul", a, scalar_like(a, b), [](auto x, auto y) { return x * y; });
  if (needs_grad({a})) record_op("mul_scalar", {a}, {out}, [b](const Grads& g) { return Grads{mul(g[0], b)}; });
  return out;
}

Tensor pow(const Tensor& a, double p) {
  if (cuda_ops::on_device("pow", {&a})) return cuda_ops::math("pow", a, p);
  Tensor out = unary_map("pow", a, [p](auto x) { return static_cast<decltype(x)>(std::pow(x, p)); });
  if (needs_grad({a})) {
    Tensor ad = a.detach();
    record_op("pow_scalar", {a}, {out}, [ad, p](const Grads& g) {
      Tensor d = unary_map("pow_backward", ad, [p](auto x) {
        return static_cast<decltype(x)>(p * std::pow(x, p - 1.0));
      });
      return Grads{mul(g[0], d)};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& e) {
  Tensor out = cuda_ops::on_device("pow", {&a, &e})
                   ? cuda_ops::binary("pow", cuda_ops::Binary::pow, a, e)
                   : binary_map("pow", a, e, [](auto x, auto y) { return static_cast<decltype(x)>(std::pow(x, y)); });
  if (needs_grad({a, e})) {
    Tensor ad = a.detach(), ed = e.detach(), od = out.detach();
    const bool want_a = a.requires_grad(), want_e = e.requires_grad();
    record_op("pow", {a, e}, {out}, [ad, ed, od, want_a, want_e](const Grads& g) {
      // d/da = e * a^(e-1); d/de = a^e * log(a)   (ops of either device)
      Tensor da = want_a ? sum_to(mul(g[0], mul(ed, pow(ad, add(ed, -1.0)))), ad.shape()) : Tensor();
      Tensor de = want_e ? sum_to(mul(mul(g[0], od), log(ad)), ed.shape()) : Tensor();
      return Grads{da, de};
    });
  }
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  if (cuda_ops::on_device("maximum", {&a, &b})) return cuda_ops::maximum("maximum", a, b, false);
  Tensor out = binary_map("maximum", a, b, [](auto x, auto y) { return x >= y ? x : y; });
  if (needs_grad({a, b})) {
    Tensor mask = ge(a.detach(), b.detach());
    const Shape sa = a.shape(), sb = b.shape();
    record_op("maximum", {a, b}, {out}, [mask, sa, sb](const Grads& g) {
      Tensor zero = Tensor::zeros({}, g[0].dtype());
      return Grads{sum_to(where(mask, g[0], zero), sa), sum_to(where(mask, zero, g[0]), sb)};
    });
  }
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  if (cuda_ops::on_device("minimum", {&a, &b})) return cuda_ops::maximum("minimum", a, b, true);
  Tensor out = binary_map("minimum", a, b, [](auto x, auto y) { return x <= y ? x : y; });
  if (needs_grad({a, b})) {
    Tensor mask = le(a.detach(), b.detach());
    const Shape sa = a.shape(), sb = b.shape();
    record_op("minimum", {a, b}, {out}, [mask, sa, sb](const Grads& g) {
      Tensor zero = Tensor::zeros({}, g[0].dtype());
      return Grads{sum_to(where(mask, g[0], zero), sa), sum_to(where(mask, zero, g[0]), sb)};
    });
  }
  return out;
}

// ---- unary math -----------------------------------------------------------------------------
// Each op: forward map, then a backward that multiplies g by the local derivative,
// computed from the saved input x or the saved output y (named in the comment).

// Records `name` with backward g * deriv(x) (or of y when use_output).
template <typename D>
static void record_unary(const char* name, const Tensor& x, const Tensor& out, bool use_output, D deriv) {
  Tensor saved = use_output ? out.detach() : x.detach();
  record_op(name, {x}, {out}, [saved, deriv, name](const Grads& g) {
    return Grads{binary_map(name, g[0], saved, [deriv](auto gv, auto v) { return gv * deriv(v); })};
  });
}

Tensor neg(const Tensor& x) {
  Tensor out = cuda_ops::on_device("neg", {&x}) ? cuda_ops::unary("neg", cuda_ops::Unary::neg, x)
                                               : unary_map("neg", x, [](auto v) { return -v; });
  if (needs_grad({x})) record_op("neg", {x}, {out}, [](const Grads& g) { return Grads{neg(g[0])}; });
  return out;
}

Tensor exp(const Tensor& x) {  // dy/dx = y
  if (cuda_ops::on_device("exp", {&x})) return cuda_ops::unary("exp", cuda_ops::Unary::exp, x);
  Tensor out = vec_map(x, kernels::vexp);
  if (!out.defined()) out = unary_map("exp", x, [](auto v) { return std::exp(v); });
  if (needs_grad({x})) record_unary("exp", x, out, true, [](auto y) { return y; });
  return out;
}

Tensor log(const Tensor& x) {  // dy/dx = 1/x
  if (cuda_ops::on_device("log", {&x})) return cuda_ops::math("log", x);
  Tensor out = unary_map("log", x, [](auto v) { return std::log(v); });
  if (needs_grad({x})) record_unary("log", x, out, false, [](auto v) { return 1 / v; });
  return out;
}

Tensor sqrt(const Tensor& x) {  // dy/dx = 0.5 / y
  if (cuda_ops::on_device("sqrt", {&x})) return cuda_ops::math("sqrt", x);
  Tensor out = unary_map("sqrt", x, [](auto v) { return std::sqrt(v); });
  if (needs_grad({x})) record_unary("sqrt", x, out, true, [](auto y) { return static_cast<decltype(y)>(0.5) / y; });
  return out;
}

Tensor rsqrt(const Tensor& x) {  // y = x^-1/2, dy/dx = -0.5 y^3
  if (cuda_ops::on_device("rsqrt", {&x})) return cuda_ops::math("rsqrt", x);
  Tensor out = unary_map("rsqrt", x, [](auto v) { return 1 / std::sqrt(v); });
  if (needs_grad({x}))
    record_unary("rsqrt", x, out, true, [](auto y) { return static_cast<decltype(y)>(-0.5) * y * y * y; });
  return out;
}

Tensor abs(const Tensor& x) {  // dy/dx = sign(x), 0 at 0
  if (cuda_ops::on_device("abs", {&x})) return cuda_ops::math("abs", x);
  Tensor out = unary_map("abs", x, [](auto v) { return std::abs(v); });
  if (needs_grad({x}))
    record_unary("abs", x, out, false, [](auto v) { return static_cast<decltype(v)>((v > 0) - (v < 0)); });
  return out;
}

Tensor sin(const Tensor& x) {  // dy/dx = cos x
  if (cuda_ops::on_device("sin", {&x})) return cuda_ops::math("sin", x);
  Tensor out = unary_map("sin", x, [](auto v) { return std::sin(v); });
  if (needs_grad({x})) record_unary("sin", x, out, false, [](auto v) { return std::cos(v); });
  return out;
}

Tensor cos(const Tensor& x) {  // dy/dx = -sin x
  if (cuda_ops::on_device("cos", {&x})) return cuda_ops::math("cos", x);
  Tensor out = unary_map("cos", x, [](auto v) { return std::cos(v); });
  if (needs_grad({x})) record_unary("cos", x, out, false, [](auto v) { return -std::sin(v); });
  return out;
}

Tensor asin(const Tensor& x) {  // dy/dx = 1 / sqrt(1 - x^2)
  if (cuda_ops::on_device("asin", {&x})) return cuda_ops::math("asin", x);
  Tensor out = unary_map("asin", x, [](auto v) { return std::asin(v); });
  if (needs_grad({x})) record_unary("asin", x, out, false, [](auto v) { return 1 / std::sqrt(1 - v * v); });
  return out;
}

Tensor tanh(const Tensor& x) {  // dy/dx = 1 - y^2
  if (cuda_ops::on_device("tanh", {&x})) return cuda_ops::math("tanh", x);
  Tensor out = unary_map("tanh", x, [](auto v) { return std::tanh(v); });
  if (needs_grad({x})) record_unary("tanh", x, out, true, [](auto y) { return 1 - y * y; });
  return out;
}

Tensor square(const Tensor& x) {  // dy/dx = 2x
  if (cuda_ops::on_device("square", {&x})) return cuda_ops::math("square", x);
  Tensor out = unary_map("square", x, [](auto v) { return v * v; });
  if (needs_grad({x})) record_unary("square", x, out, false, [](auto v) { return 2 * v; });
  return out;
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  MM_CHECK(lo <= hi, "[clamp] lo ", lo, " > hi ", hi);
  if (cuda_ops::on_device("clamp", {&x})) return cuda_ops::math("clamp", x, lo, hi);
  Tensor out = unary_map("clamp", x, [lo, hi](auto v) {
    using T = decltype(v);
    return v < static_cast<T>(lo) ? static_cast<T>(lo) : (v > static_cast<T>(hi) ? static_cast<T>(hi) : v);
  });
  if (needs_grad({x}))
    record_unary("clamp", x, out, false, [lo, hi](auto v) {
      return static_cast<decltype(v)>(v >= lo && v <= hi ? 1 : 0);
    });
  return out;
}

// ---- activations -----------------------------------------------------------------------------

Tensor relu(const Tensor& x) {  // dy/dx = [x > 0]
  if (cuda_ops::on_device("relu", {&x})) return cuda_ops::unary("relu", cuda_ops::Unary::relu, x);
  Tensor out = unary_map("relu", x, [](auto v) { return v > 0 ? v : static_cast<decltype(v)>(0); });
  if (needs_grad({x})) record_unary("relu", x, out, true, [](auto y) { return static_cast<decltype(y)>(y > 0); });
  return out;
}

constexpr double kInvSqrt2 = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588, kCubic = 0.044715;

Tensor gelu(const Tensor& x, GeluApprox approx) {
  if (cuda_ops::on_device("gelu", {&x})) return cuda_ops::math(approx == GeluApprox::none ? "gelu" : "gelu_tanh", x);
  Tensor out;
  if (approx == GeluApprox::none) {  // x * Phi(x)
    out = unary_map("gelu", x, [](auto v) {
      using T = decltype(v);
      return static_cast<T>(0.5) * v * (1 + std::erf(v * static_cast<T>(kInvSqrt2)));
    });
    if (needs_grad({x}))  // Phi(x) + x * phi(x)
      record_unary("gelu", x, out, false, [](auto v) {
        using T = decltype(v);
        return static_cast<T>(0.5) * (1 + std::erf(v * static_cast<T>(kInvSqrt2))) +
               v * static_cast<T>(kInvSqrt2Pi) * std::exp(static_cast<T>(-0.5) * v * v);
      });
  } else {  // 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
    out = unary_map("gelu_tanh", x, [](auto v) {
      using T = decltype(v);
      const T u = static_cast<T>(kSqrt2OverPi) * (v + static_cast<T>(kCubic) * v * v * v);
      return static_cast<T>(0.5) * v * (1 + std::tanh(u));
    });
    if (needs_grad({x}))
      record_unary("gelu_tanh", x, out, false, [](auto v) {
        using T = decltype(v);
        const T u = static_cast<T>(kSqrt2OverPi) * (v + static_cast<T>(kCubic) * v * v * v);
        const T t = std::tanh(u);
        const T du = static_cast<T>(kSqrt2OverPi) * (1 + 3 * static_cast<T>(kCubic) * v * v);
        return static_cast<T>(0.5) * (1 + t) + static_cast<T>(0.5) * v * (1 - t * t) * du;
      });
  }
  return out;
}

Tensor sigmoid(const Tensor& x) {  // dy/dx = y (1 - y)
  if (cuda_ops::on_device("sigmoid", {&x})) return cuda_ops::math("sigmoid", x);
  Tensor out = unary_map("sigmoid", x, [](auto v) { return 1 / (1 + std::exp(-v)); });
  if (needs_grad({x})) record_unary("sigmoid", x, out, true, [](auto y) { return y * (1 - y); });
  return out;
}

// y = x s(alpha x) with s the logistic sigmoid: quick_gelu (alpha 1.702, OpenAI CLIP's MLP) and
// silu (alpha 1, taming's swish). dy/dx = s + alpha x s (1 - s).
static Tensor sigmoid_gate(const char* name, const Tensor& x, double alpha) {
  if (cuda_ops::on_device(name, {&x}))
    return cuda_ops::unary(name, alpha == 1.0 ? cuda_ops::Unary::silu : cuda_ops::Unary::quick_gelu, x);
  const float af = static_cast<float>(alpha);
  Tensor out = vec_map(x, [af](const float* p, float* o, int64_t n) { kernels::vsigmoid_gate(p, o, n, af); });
  if (!out.defined())
    out = unary_map(name, x, [alpha](auto v) {
      using T = decltype(v);
      return v / (1 + std::exp(static_cast<T>(-alpha) * v));
    });
  if (needs_grad({x})) {
    Tensor saved = x.detach();
    record_op(name, {x}, {out}, [saved, alpha, af, name](const Grads& g) {
      Tensor dx = vec_map2(saved, g[0], [af](const float* v, const float* gv, float* o, int64_t n) {
        kernels::vsigmoid_gate_backward(v, gv, o, n, af);
      });
      if (!dx.defined())
        dx = binary_map(name, g[0], saved, [alpha](auto gv, auto v) {
          using T = decltype(v);
          const T a = static_cast<T>(alpha), s = 1 / (1 + std::exp(-a * v));
          return gv * (s + a * v * s * (1 - s));
        });
      return Grads{dx};
    });
  }
  return out;
}

Tensor quick_gelu(const Tensor& x) { return sigmoid_gate("quick_gelu", x, 1.702); }
Tensor silu(const Tensor& x) { return sigmoid_gate("silu", x, 1.0); }

// ---- selection and comparison ------------------------------------------------------------------

static void check_mask(const char* op, const Tensor& m) {
  MM_CHECK(m.dtype() == DType::boolean, "[", op, "] mask/condition must be bool, got ", m.str());
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_mask("where", cond);
  check_binary("where", a, b);
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  // (on the device the kernel selects; the backward below is shared)
  const bool device = cuda_ops::on_device("where", {&cond, &a, &b});
  Tensor out = device ? cuda_ops::where(cond, a, b) : Tensor::empty(shape, a.dtype());
  if (!device) dispatch_float(a.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = out.data<T>();
    const bool* pc = static_cast<const bool*>(cond.raw_data());
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    for_each_row<4>(shape,
                    {out.strides(), kernels::broadcast_strides(cond.shape(), cond.strides(), shape),
                     kernels::broadcast_strides(a.shape(), a.strides(), shape),
                     kernels::broadcast_strides(b.shape(), b.strides(), shape)},
                    [&](int64_t n, auto off, auto inc) {
                      for (int64_t i = 0; i < n; ++i)
                        o[off[0] + i] = pc[off[1] + i * inc[1]] ? pa[off[2] + i * inc[2]] : pb[off[3] + i * inc[3]];
                    });
  });
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    Tensor c = cond.detach();
    record_op("where", {a, b}, {out}, [c, sa, sb](const Grads& g) {
      Tensor zero = scalar_like(g[0], 0.0);
      return Grads{sum_to(where(c, g[0], zero), sa), sum_to(where(c, zero, g[0]), sb)};
    });
  }
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_mask("masked_fill", mask);
  MM_CHECK(broadcast_shapes(mask.shape(), x.shape(), "masked_fill") == x.shape(), "[masked_fill] mask ",
           mask.str(), " does not broadcast to ", x.str());
  return where(mask, scalar_like(x, value).expand(x.shape()), x);
}

#define MM_COMPARISON(NAME, EXPR)                                                                \
  Tensor NAME(const Tensor& a, const Tensor& b) {                                                \
    if (cuda_ops::on_device(#NAME, {&a, &b})) return cuda_ops::compare(#NAME, cuda_ops::Cmp::NAME, a, b); \
    return binary_map<std::true_type>(#NAME, a, b, [](auto x, auto y) { return EXPR; });      \
  }
MM_COMPARISON(eq, x == y)
MM_COMPARISON(ne, x != y)
MM_COMPARISON(lt, x < y)
MM_COMPARISON(le, x <= y)
MM_COMPARISON(gt, x > y)
MM_COMPARISON(ge, x >= y)
#undef MM_COMPARISON
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_like(a, b)); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_like(a, b)); }

Tensor logical_not(const Tensor& mask) {
  check_mask("logical_not", mask);
  if (cuda_ops::on_device("logical_not", {&mask})) return cuda_ops::logical_not(mask);
  Tensor out = Tensor::empty(mask.shape(), DType::boolean);
  bool* o = out.data<bool>();
  const bool* p = static_cast<const bool*>(mask.raw_data());
  for_each_row<2>(mask.shape(), {out.strides(), mask.strides()}, [&](int64_t n, auto off, auto inc) {
    for (int64_t i = 0; i < n; ++i) o[off[0] + i] = !p[off[1] + i * inc[1]];
  });
  return out;
}

// ---- custom gradients ---------------------------------------------------------------------------

Tensor straight_through(const Tensor& value, const Tensor& grad_to) {
  MM_CHECK(value.shape() == grad_to.shape(), "[straight_through] value ", value.str(), " and grad_to ",
           grad_to.str(), " must have one shape");
  Tensor out = value.detach().clone();
  if (needs_grad({grad_to}))
    record_op("straight_through", {grad_to}, {out}, [](const Grads& g) { return Grads{g[0]}; });
  return out;
}

Tensor clamp_with_grad(const Tensor& x, double lo, double hi) {
  if (cuda_ops::on_device("clamp_with_grad", {&x})) return cuda_ops::clamp_with_grad(x, lo, hi);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = clamp(x, lo, hi);
  }
  if (needs_grad({x})) {
    Tensor xd = x.detach(), od = out.detach();
    record_op("clamp_with_grad", {x}, {out}, [xd, od](const Grads& g) {
      // pass g where g * (x - clamp(x)) >= 0
      Tensor outside = sub(xd, od);
      Tensor keep = ge(mul(g[0], outside), Tensor::zeros({}, g[0].dtype()));
      return Grads{where(keep, g[0], Tensor::zeros({}, g[0].dtype()))};
    });
  }
  return out;
}

}  // namespace mm
