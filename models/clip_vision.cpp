// models/clip_vision.cpp: CLIP's two image towers: VisionTransformer (patch conv, class
// token, transformer, ln_post of the class token, @ proj) and ModifiedResNet (3-conv stem,
// anti-aliased Bottleneck stages, AttentionPool2d). Reading order: after clip.cpp.
// Test: ./build/mm_tests --source-file=*test_clip.cpp
#include <optional>

#include "engine/autograd.h"
#include "engine/ops/attention.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "engine/ops/norm.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape_ops.h"
#include "models/clip.h"

namespace mm {

Tensor ClipModel::encode_image(const Tensor& pixel_values, ClipTrace* trace) const {
  cuda_ops::PrecisionScope precision(precision_);
  const int64_t R = config_.image_resolution;
  MM_CHECK(pixel_values.dim() == 4 && pixel_values.size(1) == 3 && pixel_values.size(2) == R &&
               pixel_values.size(3) == R,
           "[clip encode_image] pixel_values ", shape_str(pixel_values.shape()), " must be [B, 3, ", R, ", ", R,
           "] (the model's image_resolution)");
  const DType wt = weight("logit_scale").dtype();
  MM_CHECK(pixel_values.dtype() == wt, "[clip encode_image] pixel_values ", pixel_values.str(), " must be ",
           dtype_name(wt), " like the weights");
  // Inference records nothing; with pixel_values requiring grad the graph is kept so that
  // a loss on the features backpropagates into the image (VQGAN+CLIP).
  std::optional<NoGradGuard> no_grad;
  if (!pixel_values.requires_grad() && !trainable_) no_grad.emplace();
  return config_.vision == ClipVision::vit ? encode_image_vit(pixel_values, trace)
                                           : encode_image_resnet(pixel_values, trace);
}

// ---- VisionTransformer ----------------------------------------------------------------

Tensor ClipModel::encode_image_vit(const Tensor& pixel_values, ClipTrace* trace) const {
  const int64_t B = pixel_values.size(0), W = config_.vision_width, P = config_.vision_patch_size;
  // Patch embedding: a PxP stride-P conv without bias. x: [B, W, grid, grid]
  Tensor x = conv2d(pixel_values, weight("visual.conv1.weight"), Tensor(), conv2d_options(P));
  if (trace) trace->visual_conv1_out = x;
  const int64_t patches = x.size(2) * x.size(3);
  x = x.reshape({B, W, patches}).transpose(1, 2);  // [B, grid^2, W], a view
  // Prepend the class token, add positions: [B, grid^2 + 1, W]
  Tensor cls = weight("visual.class_embedding").reshape({1, 1, W}).expand({B, 1, W});
  x = cat({cls, x}, 1) + weight("visual.positional_embedding");
  x = layer_norm(x, {W}, weight("visual.ln_pre.weight"), weight("visual.ln_pre.bias"));
  if (trace) trace->visual_ln_pre_out = x;
  x = transformer("visual.", x, config_.vision_layers[0], config_.vision_heads, Causal::no,
                  trace ? &trace->visual_block0_out : nullptr);
  // ln_post of the class token only, then the projection: [B, W] @ [W, E]
  Tensor cls_out = layer_norm(x.select(1, 0), {W}, weight("visual.ln_post.weight"), weight("visual.ln_post.bias"));
  if (trace) trace->visual_ln_post_out = cls_out;
  return matmul(cls_out, weight("visual.proj"));
}

// ---- ModifiedResNet -------------------------------------------------------------------

// nn.BatchNorm2d, eps 1e-5. x: [B, C, H, W]. Eval mode normalises with the running statistics;
// training mode with the batch's (biased variance) and moves the running ones 10% towards the
// batch's (unbiased variance), as torch does.
Tensor ClipModel::batch_norm(const std::string& p, const Tensor& x) const {
  if (!training_)
    return mm::batch_norm(x, weight(p + ".running_mean"), weight(p + ".running_var"), weight(p + ".weight"),
                          weight(p + ".bias"), 1e-5);
  const int64_t C = x.size(1), n = x.numel() / C;
  MM_CHECK(n > 1, "[clip batch_norm] ", p, ": training needs more than one value per channel, got ", x.str());
  Tensor mu = mean(x, {0, 2, 3}, KeepDim::yes);                      // [1, C, 1, 1]
  Tensor var_b = mean(square(x - mu), {0, 2, 3}, KeepDim::yes);      // biased
  Tensor y = (x - mu) / sqrt(var_b + 1e-5);
  y = y * weight(p + ".weight").reshape({1, C, 1, 1}) + weight(p + ".bias").reshape({1, C, 1, 1});
  {
    NoGradGuard no_grad;
    Tensor rm = weight(p + ".running_mean"), rv = weight(p + ".running_var");
    const double unbias = static_cast<double>(n) / static_cast<double>(n - 1);
    rm.copy_(rm * 0.9 + mu.detach().reshape({C}) * 0.1);
    rv.copy_(rv * 0.9 + var_b.detach().reshape({C}) * (0.1 * unbias));
  }
  return y;
}

// Bottleneck: 1x1 conv -> 3x3 conv -> (avgpool when stride > 1) -> 1x1 conv to 4x planes,
// BatchNorm after each conv, ReLU after all but the last; the identity branch is
// avgpool + 1x1 conv + BN when the block changes the shape (downsample.0 / .1 exist).
// Every conv has stride 1: the avgpool does the downsampling (anti-aliasing).
Tensor ClipModel::bottleneck(const std::string& p, const Tensor& x, int64_t stride) const {
  Tensor out = relu(batch_norm(p + "bn1", conv2d(x, weight(p + "conv1.weight"))));
  out = relu(batch_norm(p + "bn2", conv2d(out, weight(p + "conv2.weight"), Tensor(), conv2d_options(1, 1))));
  if (stride > 1) out = avg_pool2d(out, {stride, stride});
  out = batch_norm(p + "bn3", conv2d(out, weight(p + "conv3.weight")));
  Tensor identity = x;
  if (weights_.count(p + "downsample.0.weight")) {
    Tensor d = stride > 1 ? avg_pool2d(x, {stride, stride}) : x;
    identity = batch_norm(p + "downsample.1", conv2d(d, weight(p + "downsample.0.weight")));
  }
  return relu(out + identity);
}

// AttentionPool2d: the spatial mean is prepended as a query token; only that token attends
// (over itself and all positions) with separate q/k/v projections, then c_proj.
// x: [B, C, H, W] -> [B, embed_dim]
Tensor ClipModel::attention_pool(const Tensor& x) const {
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), T = HW + 1;
  const int64_t NH = config_.vision_heads, HS = C / NH;
  const std::string p = "visual.attnpool.";
  Tensor tokens = x.reshape({B, C, HW}).transpose(1, 2);  // [B, HW, C], a view
  Tensor t = cat({mean(tokens, {1}, KeepDim::yes), tokens}, 1) + weight(p + "positional_embedding");  // [B, T, C]
  Tensor q = linear(t.narrow(1, 0, 1), weight(p + "q_proj.weight"), weight(p + "q_proj.bias"));  // [B, 1, C]
  Tensor k = linear(t, weight(p + "k_proj.weight"), weight(p + "k_proj.bias"));                  // [B, T, C]
  Tensor v = linear(t, weight(p + "v_proj.weight"), weight(p + "v_proj.bias"));                  // [B, T, C]
  // Heads: [B, T, C] -> [B, NH, T, HS] as views; sdpa scales by HS^-0.5 as nn.MultiheadAttention.
  auto heads = [&](const Tensor& a, int64_t n) { return a.reshape({B, n, NH, HS}).permute({0, 2, 1, 3}); };
  Tensor o = scaled_dot_product_attention(heads(q, 1), heads(k, T), heads(v, T));  // [B, NH, 1, HS]
  o = o.permute({0, 2, 1, 3}).reshape({B, C});
  return linear(o, weight(p + "c_proj.weight"), weight(p + "c_proj.bias"));  // [B, embed_dim]
}

Tensor ClipModel::encode_image_resnet(const Tensor& pixel_values, ClipTrace* trace) const {
  // Stem: three 3x3 convs (the first with stride 2), each with BN + ReLU, then a 2x2 avgpool.
  Tensor x = relu(batch_norm("visual.bn1", conv2d(pixel_values, weight("visual.conv1.weight"), Tensor(),
                                                  conv2d_options(2, 1))));
  x = relu(batch_norm("visual.bn2", conv2d(x, weight("visual.conv2.weight"), Tensor(), conv2d_options(1, 1))));
  x = relu(batch_norm("visual.bn3", conv2d(x, weight("visual.conv3.weight"), Tensor(), conv2d_options(1, 1))));
  x = avg_pool2d(x, {2, 2});  // [B, width, R/4, R/4]
  if (trace) trace->visual_stem_out = x;
  for (int64_t stage = 0; stage < 4; ++stage) {
    for (int64_t b = 0; b < config_.vision_layers[static_cast<size_t>(stage)]; ++b) {
      const int64_t stride = stage > 0 && b == 0 ? 2 : 1;
      x = bottleneck("visual.layer" + std::to_string(stage + 1) + "." + std::to_string(b) + ".", x, stride);
    }
    if (trace) trace->visual_layer_out[stage] = x;
  }
  return attention_pool(x);
}

}  // namespace mm
