// models/clip.h: OpenAI CLIP on the mm engine: the text transformer and either image tower
// (VisionTransformer or ModifiedResNet with its attention pool), loaded from OpenAI's state
// dict keys (.pt, TorchScript .pt, safetensors) or from Hugging Face names after
// map_hf_clip_names. Reading order: after clip_config.h; clip.cpp (loading, text tower,
// logits), clip_vision.cpp (both image towers), clip_hf.cpp (Hugging Face names).
// Test: ./build/mm_tests --source-file=*test_clip.cpp
//
//   mm::TensorFile f = mm::load_weights("ViT-B-32.pt");
//   mm::ClipModel clip = mm::ClipModel::load(f, mm::infer_clip_config(f));
//   mm::Tensor img = clip.encode_image(pixel_values);   // [B, 3, R, R] normalised -> [B, E]
//   mm::Tensor txt = clip.encode_text(tokens);          // int64 [B, 77] -> [B, E]
//   auto [per_image, per_text] = clip.logits(img, txt); // [B_img, B_txt], [B_txt, B_img]
//
// Weights are float32 copies held by checkpoint key ("visual.transformer.resblocks.0.ln_1.weight"),
// checked at load against the table of keys and shapes that the config implies. They never
// require grad; encode_image records a graph when pixel_values requires grad (VQGAN+CLIP
// backpropagates into the image) and otherwise runs under NoGradGuard.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/cuda_ops.h"
#include "engine/ops/attention.h"
#include "engine/tensor.h"
#include "models/clip_config.h"
#include "weights_tools/safetensors.h"

namespace mm {

// CLIP's input normalisation (clip/clip.py, _transform): pixel = (x - mean) / std per channel.
inline constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
inline constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
// x [B, 3, H, W] with values in [0, 1] -> (x - mean) / std per channel, in x's dtype;
// differentiable (VQGAN+CLIP backpropagates through it).
Tensor clip_normalize_pixels(const Tensor& x);

// Intermediate activations for tests and debugging, in the layouts of the reference files
// (transformer activations batch-first [B, T, D]). Fields of the tower not run stay undefined.
struct ClipTrace {
  // ViT
  Tensor visual_conv1_out;    // [B, width, grid, grid]
  Tensor visual_ln_pre_out;   // [B, grid^2 + 1, width]
  Tensor visual_block0_out;   // [B, grid^2 + 1, width]
  Tensor visual_ln_post_out;  // [B, width], class token only
  // ModifiedResNet
  Tensor visual_stem_out;  // [B, width, R/4, R/4]
  Tensor visual_layer_out[4];  // layer1..4: [B, width*4*2^i, R/4/2^i, R/4/2^i]
  // text
  Tensor text_block0_out;    // [B, T, transformer_width]
  Tensor text_ln_final_out;  // [B, T, transformer_width], every position
};

// One (key, shape) row of a model's weight table.
struct ClipTensorSpec {
  std::string key;
  Shape shape;
};

// Every tensor a CLIP with this config has, in state-dict order, with its shape.
std::vector<ClipTensorSpec> clip_weight_table(const ClipConfig& config);
// Whether `key` names a weight that goes through linear() (attention and MLP projections).
bool is_linear_weight_key(const std::string& key);

class ClipModel {
 public:
  // Checks `file` against clip_weight_table(config): a missing key, a wrong shape or an
  // unknown key is an mm::Error naming the file and the key (input_resolution,
  // context_length, vocab_size and *.num_batches_tracked are skipped). Linear weights stored
  // at 16 bits stay so, as views of the file (linear() widens them exactly); the rest is
  // converted to float32.
  static ClipModel load(const TensorFile& file, const ClipConfig& config);

  // pixel_values [B, 3, R, R] float32 (or float64 after to(f64)), normalised with CLIP's
  // mean/std -> image features [B, embed_dim], not normalised. Differentiable.
  Tensor encode_image(const Tensor& pixel_values, ClipTrace* trace = nullptr) const;
  // tokens int64 [B, T] with T <= context_length -> [B, embed_dim], taken at the first
  // position of each row's largest id (the first EOT, as torch's argmax).
  Tensor encode_text(const Tensor& tokens, ClipTrace* trace = nullptr) const;
  // exp(logit_scale) * normalize(image) @ normalize(text)^T: {per_image [Bi, Bt], per_text [Bt, Bi]}.
  std::pair<Tensor, Tensor> logits(const Tensor& image_features, const Tensor& text_features) const;

  // A copy whose weights are converted to dtype (f64 for finite-difference gradient checks).
  ClipModel to(DType dtype) const;
  // A copy with its weights on `device` (both image towers and the text tower run there,
  // forward and backward).
  ClipModel to(Device device) const;
  Device device() const { return weight("logit_scale").device(); }
  // The precision of this model's GEMMs on the device (engine/cuda_ops.h), for encode_image and
  // encode_text and their backward; unset, they take the thread's. Kept by to() copies.
  void set_precision(std::optional<cuda_ops::Precision> p) { precision_ = p; }

  // ---- training (models/clip_train.cpp; apps/mmtrain trains mm-mini's CLIPs) ----
  // Fresh weights drawn as OpenAI's CLIP.initialize_parameters does (normal with its std rules,
  // torch's default conv init, zero-initialised bn3 gammas, logit_scale = log(1/0.07)),
  // from a Philox generator seeded with `seed`, so a seed gives the same model everywhere.
  static ClipModel init(const ClipConfig& config, uint64_t seed);
  // Every tensor by checkpoint key, in weight-table order: what a checkpoint stores.
  std::vector<std::pair<std::string, Tensor>> named_tensors() const;
  // The trainable tensors (all but BatchNorm running statistics), in weight-table order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  // requires_grad on every parameter: encode_image/encode_text then record graphs back to
  // the weights. Off (the default) they run under NoGradGuard unless their input requires grad.
  void set_trainable(bool trainable);
  // Training mode: BatchNorm normalises with the batch's statistics and updates the running
  // ones (momentum 0.1, unbiased variance), as nn.BatchNorm2d.train(). Off by default.
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }

  // Packs the linear layers' weights under `prefix` ("visual." for the image tower) for the
  // GEMM once (mm::prepack_linear_weight), so repeated encodes skip repacking them: about a
  // quarter of ViT-B/32's encode_image time on the CPU. Costs a second copy of those weights.
  // For frozen models: set_trainable(true) drops the packs. Returns how many were packed.
  int64_t prepack(const std::string& prefix = "");

  // Drops the text tower's weights (all but visual.* and logit_scale): VQGAN+CLIP needs it only
  // for its prompts. encode_text then fails with an error saying so. Returns the bytes of the
  // tensors dropped (views of a memory-mapped file give back page cache, not process memory).
  size_t release_text_tower();

  const ClipConfig& config() const { return config_; }
  // The weight called `key` (an OpenAI state-dict key); the error names the key.
  const Tensor& weight(const std::string& key) const;

 private:
  // A copy with f applied to every (detached) weight: to(DType), to(Device).
  ClipModel map_weights(const std::function<Tensor(const Tensor&)>& f) const;
  // x [B, T, D] through transformer.resblocks.* (prefix "" or "visual."), NH heads.
  Tensor transformer(const std::string& prefix, Tensor x, int64_t layers, int64_t heads, Causal causal,
                     Tensor* block0_out) const;
  Tensor encode_image_vit(const Tensor& pixel_values, ClipTrace* trace) const;
  Tensor encode_image_resnet(const Tensor& pixel_values, ClipTrace* trace) const;
  Tensor bottleneck(const std::string& prefix, const Tensor& x, int64_t stride) const;
  Tensor attention_pool(const Tensor& x) const;
  Tensor batch_norm(const std::string& prefix, const Tensor& x) const;

  ClipConfig config_;
  std::unordered_map<std::string, Tensor> weights_;  // checkpoint key -> float32 tensor
  bool trainable_ = false;
  bool training_ = false;
  bool text_released_ = false;
  std::optional<cuda_ops::Precision> precision_;
};

// Renames a Hugging Face CLIPModel state dict (vision_model.*, text_model.*,
// visual_projection.weight, text_projection.weight, logit_scale) to OpenAI's keys in place:
// q/k/v_proj are concatenated into attn.in_proj_weight/bias, the projections are transposed
// ([E, width] -> [width, E]), position_ids buffers are dropped. Returns false (and changes
// nothing) when the file has no Hugging Face keys. HF's text config gives the head count
// (num_attention_heads) and hidden_act: set them in the ClipConfig.
bool map_hf_clip_names(TensorFile& file);

}  // namespace mm
