// models/clip_train.cpp: what training a CLIP needs beyond inference: fresh weights drawn the
// way OpenAI's CLIP.initialize_parameters draws them, the list of trainable tensors, and the
// switch that makes the weights record graphs. Reading order: after clip_vision.cpp; the
// training loop is train/clip_trainer.cpp. Test: ./build/mm_tests --source-file=*test_clip_train.cpp
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "engine/random.h"
#include "models/clip.h"

namespace mm {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
bool is_running_stat(const std::string& key) {
  return ends_with(key, ".running_mean") || ends_with(key, ".running_var");
}

// The init of one weight-table entry. OpenAI's rules (clip/model.py, initialize_parameters):
// token embedding N(0, 0.02), text positions N(0, 0.01), text projection N(0, width^-0.5),
// ViT class token / positions / proj N(0, width^-0.5), transformer blocks N(0, width^-0.5)
// for in_proj, N(0, width^-0.5 (2 layers)^-0.5) for out_proj and c_proj, N(0, (2 width)^-0.5)
// for c_fc, attention-pool projections N(0, in^-0.5), and the last BatchNorm gamma of every
// Bottleneck at zero (each residual block starts as the identity). OpenAI leaves the visual
// transformer at torch's defaults; mm gives it the text tower's rules, which train the same
// way and keep one rule per tensor kind. Convolutions: torch's default kaiming_uniform(a=sqrt 5),
// i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Biases 0, norms 1/0, running stats 0/1.
Tensor init_tensor(const std::string& key, const Shape& shape, const ClipConfig& c, Generator& gen) {
  auto normal = [&](double std) { return Tensor::randn(shape, gen) * std; };
  const bool visual = starts_with(key, "visual.");
  const double width = static_cast<double>(visual ? c.vision_width : c.transformer_width);
  const double layers = static_cast<double>(visual ? c.vision_layers.at(0) : c.transformer_layers);
  if (key == "logit_scale") return Tensor::scalar(std::log(1.0 / 0.07));
  if (key == "token_embedding.weight") return normal(0.02);
  if (key == "positional_embedding") return normal(0.01);
  if (key == "text_projection") return normal(std::pow(static_cast<double>(c.transformer_width), -0.5));
  if (key == "visual.class_embedding" || key == "visual.positional_embedding" || key == "visual.proj")
    return normal(std::pow(static_cast<double>(c.vision_width), -0.5));
  if (ends_with(key, "attn.in_proj_weight")) return normal(std::pow(width, -0.5));
  if (ends_with(key, "attn.out_proj.weight") || ends_with(key, "mlp.c_proj.weight"))
    return normal(std::pow(width, -0.5) * std::pow(2.0 * layers, -0.5));
  if (ends_with(key, "mlp.c_fc.weight")) return normal(std::pow(2.0 * width, -0.5));
  if (starts_with(key, "visual.attnpool.") && ends_with(key, "_proj.weight"))
    return normal(std::pow(static_cast<double>(shape[1]), -0.5));
  if (key == "visual.attnpool.positional_embedding")
    return normal(std::pow(static_cast<double>(shape[1]), -0.5));
  if (ends_with(key, ".running_var")) return Tensor::ones(shape);
  if (ends_with(key, ".running_mean")) return Tensor::zeros(shape);
  if (shape.size() == 4) {  // a convolution weight
    const double fan_in = static_cast<double>(shape[1] * shape[2] * shape[3]);
    const double bound = 1.0 / std::sqrt(fan_in);
    return Tensor::uniform(shape, gen, -bound, bound);
  }
  if (starts_with(key, "visual.layer") && ends_with(key, ".bn3.weight")) return Tensor::zeros(shape);  // not the stem's bn3
  if (ends_with(key, ".weight") && shape.size() == 1) return Tensor::ones(shape);  // LayerNorm / BatchNorm gamma
  if (ends_with(key, ".bias") || ends_with(key, "_bias")) return Tensor::zeros(shape);
  throw Error(str_cat("[clip init] no init rule for '", key, "' ", shape_str(shape)));
}

}  // namespace

ClipModel ClipModel::init(const ClipConfig& config, uint64_t seed) {
  TensorFile f;
  f.path = "<init seed " + std::to_string(seed) + ">";
  Generator gen(seed);
  for (const auto& spec : clip_weight_table(config)) f.tensors.emplace_back(spec.key, init_tensor(spec.key, spec.shape, config, gen));
  return load(f, config);
}

std::vector<std::pair<std::string, Tensor>> ClipModel::named_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& spec : clip_weight_table(config_)) out.emplace_back(spec.key, weight(spec.key));
  return out;
}

std::vector<std::pair<std::string, Tensor>> ClipModel::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& spec : clip_weight_table(config_))
    if (!is_running_stat(spec.key)) out.emplace_back(spec.key, weight(spec.key));
  return out;
}

void ClipModel::set_trainable(bool trainable) {
  trainable_ = trainable;
  for (auto& [key, t] : weights_) {
    // Weights loaded from a safetensors file may be views of its read-only mapping: the
    // optimiser and BatchNorm update in place, so a trainable model owns private copies.
    // (16-bit weights kept from a half-precision file become float32: what the optimiser updates.)
    if (trainable) t = is_half_weight(t) ? t.detach().to(DType::f32) : t.detach().clone();
    if (!is_running_stat(key)) t.set_requires_grad(trainable);
  }
}

}  // namespace mm
