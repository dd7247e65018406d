// models/clip.cpp: CLIP's weight table and loader, the residual attention transformer shared
// by the text tower and the ViT, encode_text and the logits. The image towers are in
// clip_vision.cpp. Test: ./build/mm_tests --source-file=*test_clip.cpp
#include "models/clip.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>
#include <set>

#include "engine/autograd.h"
#include "engine/ops/attention.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "engine/ops/loss.h"
#include "engine/ops/norm.h"
#include "engine/ops/shape_ops.h"

namespace mm {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void add(std::vector<ClipTensorSpec>& t, const std::string& key, Shape shape) { t.push_back({key, std::move(shape)}); }

// ResidualAttentionBlock of width D: attention (nn.MultiheadAttention), ln_1, MLP 4D, ln_2.
void add_resblocks(std::vector<ClipTensorSpec>& t, const std::string& prefix, int64_t layers, int64_t D) {
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = prefix + "transformer.resblocks." + std::to_string(i) + ".";
    add(t, p + "attn.in_proj_weight", {3 * D, D});
    add(t, p + "attn.in_proj_bias", {3 * D});
    add(t, p + "attn.out_proj.weight", {D, D});
    add(t, p + "attn.out_proj.bias", {D});
    add(t, p + "ln_1.weight", {D});
    add(t, p + "ln_1.bias", {D});
    add(t, p + "mlp.c_fc.weight", {4 * D, D});
    add(t, p + "mlp.c_fc.bias", {4 * D});
    add(t, p + "mlp.c_proj.weight", {D, 4 * D});
    add(t, p + "mlp.c_proj.bias", {D});
    add(t, p + "ln_2.weight", {D});
    add(t, p + "ln_2.bias", {D});
  }
}

// nn.BatchNorm2d(C) parameters and running statistics (num_batches_tracked is skipped).
void add_batch_norm(std::vector<ClipTensorSpec>& t, const std::string& p, int64_t C) {
  for (const char* name : {"weight", "bias", "running_mean", "running_var"}) add(t, p + "." + name, {C});
}

void add_vit(std::vector<ClipTensorSpec>& t, const ClipConfig& c) {
  const int64_t W = c.vision_width, P = c.vision_patch_size, grid = c.image_resolution / P;
  add(t, "visual.class_embedding", {W});
  add(t, "visual.positional_embedding", {grid * grid + 1, W});
  add(t, "visual.proj", {W, c.embed_dim});
  add(t, "visual.conv1.weight", {W, 3, P, P});
  add(t, "visual.ln_pre.weight", {W});
  add(t, "visual.ln_pre.bias", {W});
  add_resblocks(t, "visual.", c.vision_layers.at(0), W);
  add(t, "visual.ln_post.weight", {W});
  add(t, "visual.ln_post.bias", {W});
}

// ModifiedResNet: 3-conv stem (width/2, width/2, width), four stages of Bottlenecks with
// planes width * 2^i (output 4x planes), then AttentionPool2d over the (R/32)^2 grid.
void add_resnet(std::vector<ClipTensorSpec>& t, const ClipConfig& c) {
  const int64_t W = c.vision_width;
  add(t, "visual.conv1.weight", {W / 2, 3, 3, 3});
  add_batch_norm(t, "visual.bn1", W / 2);
  add(t, "visual.conv2.weight", {W / 2, W / 2, 3, 3});
  add_batch_norm(t, "visual.bn2", W / 2);
  add(t, "visual.conv3.weight", {W, W / 2, 3, 3});
  add_batch_norm(t, "visual.bn3", W);
  int64_t inplanes = W;
  for (int64_t stage = 0; stage < 4; ++stage) {
    const int64_t planes = W << stage, stride = stage == 0 ? 1 : 2;
    for (int64_t b = 0; b < c.vision_layers.at(static_cast<size_t>(stage)); ++b) {
      const std::string p = "visual.layer" + std::to_string(stage + 1) + "." + std::to_string(b) + ".";
      add(t, p + "conv1.weight", {planes, inplanes, 1, 1});
      add_batch_norm(t, p + "bn1", planes);
      add(t, p + "conv2.weight", {planes, planes, 3, 3});
      add_batch_norm(t, p + "bn2", planes);
      add(t, p + "conv3.weight", {planes * 4, planes, 1, 1});
      add_batch_norm(t, p + "bn3", planes * 4);
      if (b == 0 && (stride > 1 || inplanes != planes * 4)) {
        add(t, p + "downsample.0.weight", {planes * 4, inplanes, 1, 1});
        add_batch_norm(t, p + "downsample.1", planes * 4);
      }
      inplanes = planes * 4;
    }
  }
  const int64_t E = W * 32, side = c.image_resolution / 32;
  add(t, "visual.attnpool.positional_embedding", {side * side + 1, E});
  for (const char* proj : {"k_proj", "q_proj", "v_proj"}) {
    add(t, std::string("visual.attnpool.") + proj + ".weight", {E, E});
    add(t, std::string("visual.attnpool.") + proj + ".bias", {E});
  }
  add(t, "visual.attnpool.c_proj.weight", {c.embed_dim, E});
  add(t, "visual.attnpool.c_proj.bias", {c.embed_dim});
}

// Head counts and divisibility, checked before any shape: a zero head count is the usual
// mistake (build_model's width / 64 rule on a narrow text tower).
void check_config(const std::string& path, const ClipConfig& c) {
  MM_CHECK(c.transformer_heads > 0 && c.transformer_width % c.transformer_heads == 0, "[clip] ", path,
           ": text transformer_heads ", c.transformer_heads, " does not divide transformer_width ", c.transformer_width,
           " (build_model's rule width / 64 fails for narrow towers: take the head count from the model's config, "
           "e.g. load_clip_config_json)");
  const int64_t vision_dim = c.vision == ClipVision::vit ? c.vision_width : c.vision_width * 32;
  MM_CHECK(c.vision_heads > 0 && vision_dim % c.vision_heads == 0, "[clip] ", path, ": vision_heads ", c.vision_heads,
           " does not divide the vision attention width ", vision_dim);
  MM_CHECK(c.vision == ClipVision::resnet ? c.vision_layers.size() == 4 : c.vision_layers.size() == 1, "[clip] ",
           path, ": vision_layers has ", c.vision_layers.size(), " entries; expected 1 (ViT) or 4 (ModifiedResNet)");
  if (c.vision == ClipVision::vit)
    MM_CHECK(c.vision_patch_size > 0 && c.image_resolution % c.vision_patch_size == 0, "[clip] ", path,
             ": image_resolution ", c.image_resolution, " is not a multiple of vision_patch_size ", c.vision_patch_size);
  else
    MM_CHECK(c.image_resolution % 32 == 0, "[clip] ", path, ": ModifiedResNet image_resolution ", c.image_resolution,
             " is not a multiple of 32");
}

// Tensors real checkpoints carry that are not weights: TorchScript's int64 scalars and
// BatchNorm's step counters.
bool is_known_extra(const std::string& key) {
  return key == "input_resolution" || key == "context_length" || key == "vocab_size" ||
         ends_with(key, ".num_batches_tracked");
}

}  // namespace

std::vector<ClipTensorSpec> clip_weight_table(const ClipConfig& c) {
  const int64_t D = c.transformer_width;
  std::vector<ClipTensorSpec> t;
  add(t, "positional_embedding", {c.context_length, D});
  add(t, "text_projection", {D, c.embed_dim});
  add(t, "logit_scale", {});
  if (c.vision == ClipVision::vit)
    add_vit(t, c);
  else
    add_resnet(t, c);
  add_resblocks(t, "", c.transformer_layers, D);
  add(t, "token_embedding.weight", {c.vocab_size, D});
  add(t, "ln_final.weight", {D});
  add(t, "ln_final.bias", {D});
  return t;
}

ClipModel ClipModel::load(const TensorFile& file, const ClipConfig& config) {
  check_config(file.path, config);
  const std::vector<ClipTensorSpec> table = clip_weight_table(config);
  std::unordered_map<std::string, const Shape*> expected;
  for (const auto& spec : table) expected[spec.key] = &spec.shape;

  ClipModel m;
  m.config_ = config;
  for (const auto& [key, t] : file.tensors) {
    if (is_known_extra(key)) continue;
    auto it = expected.find(key);
    MM_CHECK(it != expected.end(), "[clip] ", file.path, ": unexpected tensor '", key, "' ", shape_str(t.shape()),
             " is not part of a CLIP with config ", config.str(),
             " (a Hugging Face file needs map_hf_clip_names; a different model needs its own config)");
    MM_CHECK(t.shape() == *it->second, "[clip] ", file.path, ": tensor '", key, "' has shape ", shape_str(t.shape()),
             " but the config expects ", shape_str(*it->second), " (config ", config.str(), ")");
    MM_CHECK(is_floating(t.dtype()), "[clip] ", file.path, ": tensor '", key, "' is ", t.str(),
             ", expected a floating-point tensor");
    // The linear layers' weights, most of the model, stay as the file stores them: views of
    // the memory-mapped file, 16-bit in OpenAI's releases, which linear() widens exactly
    // (per call, or once by prepack). The rest becomes float32 (fp16 -> fp32 is exact; an f32
    // tensor stays a view of the file). So loading ViT-B/32 costs about its file in memory,
    // not the 1.7x of a float32 copy.
    const bool keep = is_linear_weight_key(key) && t.dim() == 2 && is_half_weight(t);
    m.weights_[key] = keep ? t.detach() : t.detach().to(DType::f32).contiguous();
  }
  for (const auto& spec : table)
    MM_CHECK(m.weights_.count(spec.key), "[clip] ", file.path, ": missing tensor '", spec.key, "' (expected shape ",
             shape_str(spec.shape), " for config ", config.str(), ")");
  return m;
}

ClipModel ClipModel::map_weights(const std::function<Tensor(const Tensor&)>& f) const {
  ClipModel m;
  m.config_ = config_;
  m.training_ = training_;
  m.text_released_ = text_released_;
  m.precision_ = precision_;
  for (const auto& [key, t] : weights_) m.weights_[key] = f(t.detach());
  return m;
}

ClipModel ClipModel::to(DType dtype) const {
  return map_weights([dtype](const Tensor& t) { return t.to(dtype); });
}

ClipModel ClipModel::to(Device device) const {
  // The device computes on float32 weights: 16-bit ones are widened there (copied at 16 bits).
  return map_weights([device](const Tensor& t) {
    return device != Device::cpu && is_half_weight(t) ? t.to(device).to(DType::f32) : t.to(device);
  });
}

bool is_linear_weight_key(const std::string& key) {
  // The weights that reach linear(): attention projections and MLPs (not embeddings, convs or
  // the output projections, which go through matmul).
  static const char* const kLinear[] = {"attn.in_proj_weight", "out_proj.weight", "c_fc.weight", "c_proj.weight",
                                        "q_proj.weight",       "k_proj.weight",   "v_proj.weight"};
  return std::any_of(std::begin(kLinear), std::end(kLinear), [&](const char* e) { return ends_with(key, e); });
}

int64_t ClipModel::prepack(const std::string& prefix) {
  int64_t n = 0;
  for (const auto& [key, t] : weights_)
    if (key.rfind(prefix, 0) == 0 && is_linear_weight_key(key)) n += prepack_linear_weight(t);
  return n;
}

size_t ClipModel::release_text_tower() {
  size_t bytes = 0;
  for (auto it = weights_.begin(); it != weights_.end();) {
    if (it->first.rfind("visual.", 0) != 0 && it->first != "logit_scale") {
      bytes += static_cast<size_t>(it->second.numel()) * dtype_size(it->second.dtype());
      it = weights_.erase(it);
    } else {
      ++it;
    }
  }
  text_released_ = true;
  return bytes;
}

const Tensor& ClipModel::weight(const std::string& key) const {
  auto it = weights_.find(key);
  MM_CHECK(it != weights_.end(), "[clip] no weight '", key, "' in this model (", config_.str(), ")");
  return it->second;
}

// ResidualAttentionBlock, repeated:  x = x + attn(ln_1(x));  x = x + c_proj(act(c_fc(ln_2(x)))).
// x: [B, T, D]. OpenAI runs it on [T, B, D]; batch-first gives the same numbers.
Tensor ClipModel::transformer(const std::string& prefix, Tensor x, int64_t layers, int64_t heads, Causal causal,
                              Tensor* block0_out) const {
  const int64_t D = x.size(-1);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = prefix + "transformer.resblocks." + std::to_string(i) + ".";
    Tensor h = layer_norm(x, {D}, weight(p + "ln_1.weight"), weight(p + "ln_1.bias"));
    x = x + multi_head_attention(h, h, weight(p + "attn.in_proj_weight"), weight(p + "attn.in_proj_bias"),
                                 weight(p + "attn.out_proj.weight"), weight(p + "attn.out_proj.bias"), heads, Tensor(),
                                 causal);
    h = layer_norm(x, {D}, weight(p + "ln_2.weight"), weight(p + "ln_2.bias"));
    h = linear(h, weight(p + "mlp.c_fc.weight"), weight(p + "mlp.c_fc.bias"));  // h: [B, T, 4D]
    h = config_.activation == ClipActivation::quick_gelu ? quick_gelu(h) : gelu(h);
    x = x + linear(h, weight(p + "mlp.c_proj.weight"), weight(p + "mlp.c_proj.bias"));
    if (i == 0 && block0_out) *block0_out = x;
  }
  return x;
}

Tensor ClipModel::encode_text(const Tensor& tokens, ClipTrace* trace) const {
  MM_CHECK(!text_released_, "[clip encode_text] this model's text tower was released (release_text_tower: generation "
           "keeps only the image tower once its prompts are encoded)");
  cuda_ops::PrecisionScope precision(precision_);
  MM_CHECK(tokens.dtype() == DType::i64 && tokens.dim() == 2, "[clip encode_text] tokens ", tokens.str(),
           " must be int64 [B, T]");
  const int64_t B = tokens.size(0), T = tokens.size(1), D = config_.transformer_width;
  MM_CHECK(T >= 1 && T <= config_.context_length, "[clip encode_text] tokens ", shape_str(tokens.shape()), " have ", T,
           " positions; the model has context_length ", config_.context_length);
  std::optional<NoGradGuard> no_grad;  // ids in: only trainable weights can need a graph
  if (!trainable_) no_grad.emplace();
  const Tensor& pos = weight("positional_embedding");
  // x: [B, T, D]. With T < context_length the causal mask makes this equal to padding.
  Tensor x = embedding(tokens, weight("token_embedding.weight")) + pos.narrow(0, 0, T);
  x = transformer("", x, config_.transformer_layers, config_.transformer_heads, Causal::yes,
                  trace ? &trace->text_block0_out : nullptr);
  x = layer_norm(x, {D}, weight("ln_final.weight"), weight("ln_final.bias"));
  if (trace) trace->text_ln_final_out = x;
  // Pool at each row's first largest id (the EOT token 49407 in CLIP's vocabulary), as
  // x[arange(B), tokens.argmax(-1)]: rows of x viewed as [B*T, D].
  const std::vector<int64_t> ids = tokens.to_vector<int64_t>();
  std::vector<int64_t> rows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    int64_t best = 0;
    for (int64_t t = 1; t < T; ++t)
      if (ids[static_cast<size_t>(b * T + t)] > ids[static_cast<size_t>(b * T + best)]) best = t;
    rows[static_cast<size_t>(b)] = b * T + best;
  }
  Tensor pooled = index_select(x.reshape({B * T, D}), 0, Tensor::from_vector(rows, {B}));  // [B, D]
  return matmul(pooled, weight("text_projection"));                                         // [B, E]
}

Tensor clip_normalize_pixels(const Tensor& x) {
  const std::vector<float> mean(kClipMean, kClipMean + 3), stdv(kClipStd, kClipStd + 3);
  Tensor m = Tensor::from_vector(mean, {1, 3, 1, 1}).to(x.dtype()).to(x.device());
  Tensor s = Tensor::from_vector(stdv, {1, 3, 1, 1}).to(x.dtype()).to(x.device());
  return div(sub(x, m), s);
}

std::pair<Tensor, Tensor> ClipModel::logits(const Tensor& image_features, const Tensor& text_features) const {
  MM_CHECK(image_features.dim() == 2 && text_features.dim() == 2 && image_features.size(1) == text_features.size(1),
           "[clip logits] image features ", shape_str(image_features.shape()), " and text features ",
           shape_str(text_features.shape()), " must be [Bi, E] and [Bt, E]");
  const double scale = std::exp(weight("logit_scale").item());
  Tensor per_image = matmul(normalize(image_features, -1), normalize(text_features, -1).t()) * scale;  // [Bi, Bt]
  return {per_image, per_image.t().contiguous()};
}

}  // namespace mm
