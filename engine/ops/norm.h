// engine/ops/norm.h: normalisation layers: layer_norm (fused kernel, analytic backward),
// group_norm (written from layer_norm), batch_norm in inference form (from elementwise ops).
// Reading order: after linalg.h. Test: ./build/mm_tests --source-file=*test_norm.cpp
//
//   Tensor y = mm::layer_norm(x, {768}, ln_w, ln_b);            // x [B, T, 768], eps 1e-5
//   Tensor h = mm::group_norm(x, 32, gn_w, gn_b, 1e-6);         // x [B, C, H, W], taming's Normalize
//   Tensor z = mm::batch_norm(x, mean, var, bn_w, bn_b, 1e-5);  // x [B, C, H, W], running stats [C]
//
// weight and bias are optional everywhere: pass Tensor() for none.
#pragma once
#include "engine/tensor.h"

namespace mm {

// torch.nn.functional.layer_norm: normalises over the last dims given by normalized_shape,
//   y = (x - mean) / sqrt(var + eps) * weight + bias   (var without Bessel's correction),
// weight/bias of shape normalized_shape (or undefined).
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

// torch.nn.functional.group_norm: x [B, C, *] split into `groups` groups of C / groups channels;
// each (b, group) is normalised over its channels and spatial positions, then the per-channel
// affine weight [C], bias [C] is applied. Its backward keeps x and each group's mean and 1/std.
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                  double eps = 1e-5);

// silu(group_norm(x, groups, weight, bias, eps)) as one op: taming's Normalize() followed by
// swish, the pair in every VQGAN ResnetBlock, the same op with the SiLU fused. Its backward
// keeps only x and each group's mean and 1/std and recomputes the rest, where silu applied
// apart would also keep group_norm's output (another copy of x, per norm, for the whole
// backward).
Tensor group_norm_silu(const Tensor& x, int64_t groups, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                       double eps = 1e-5);

// torch.nn.functional.batch_norm with training=False: x [B, C, *] normalised per channel with
// the running statistics: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), double eps = 1e-5);

}  // namespace mm
