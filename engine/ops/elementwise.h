// engine/ops/elementwise.h: elementwise ops with NumPy broadcasting, activations,
// comparisons and the custom-gradient helpers. Forward and backward on the CPU.
// Reading order: first of engine/ops/. Tested by tests/engine/test_elementwise.cpp.
//
//   Tensor y = mm::gelu(mm::add(x, bias));        // bias [C] broadcasts over x [B, T, C]
//   Tensor z = x * 2.0 + mm::exp(-x);             // operators for the common cases
//
// Binary ops need both tensors of one float dtype (float32 or float64); a double argument
// is a scalar in the tensor's dtype. Comparisons return bool tensors.
#pragma once
#include "engine/tensor.h"

namespace mm {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor pow(const Tensor& a, const Tensor& exponent);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient to the larger (a on ties)
Tensor minimum(const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor asin(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor square(const Tensor& x);
// Clamps into [lo, hi]; the gradient passes where lo <= x <= hi (as torch.clamp).
Tensor clamp(const Tensor& x, double lo, double hi);

// Activations.
Tensor relu(const Tensor& x);
enum class GeluApprox { none, tanh };  // erf form, or the tanh approximation
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::none);
Tensor quick_gelu(const Tensor& x);  // x * sigmoid(1.702 x), as OpenAI CLIP
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);        // x * sigmoid(x), "swish" in taming

// Selection. cond/mask are bool tensors broadcast against the others.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// Comparisons (no gradient), bool results.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor logical_not(const Tensor& mask);

// ---- custom gradients (written with record_op, see autograd.h) ---------------------------
// Forward value of `value`, gradient passed unchanged to `grad_to` (and none to `value`):
// the straight-through estimator z + (z_q - z).detach() of VQ-VAE / taming.
Tensor straight_through(const Tensor& value, const Tensor& grad_to);
// Forward clamp(x, lo, hi); backward passes the gradient except where following it would
// push x further outside [lo, hi]: dx = g where g * (x - clamp(x)) >= 0, else 0
// (the ClampWithGrad of the VQGAN+CLIP notebooks).
Tensor clamp_with_grad(const Tensor& x, double lo, double hi);

// Operators for the common cases.
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return add(neg(b), a); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }

}  // namespace mm
