// models/vqgan.h: taming-transformers' VQGAN (VQModel): encoder, vector quantiser, decoder.
// Reading order: models/, after the CLIP towers. Tested by tests/models/test_vqgan.cpp
// against ../shared/refs/vqgan_tiny_* (made with taming's own code).
//
//   mm::VQGAN vq = mm::VQGAN::load("last.ckpt", "model.yaml");  // or a .safetensors
//   mm::Tensor h = vq.encode(x);                   // x [B, 3, H, W] in [-1, 1] -> h [B, D, H/f, W/f]
//   mm::VQCodes q = vq.quantize(h);                // indices [B, H/f, W/f] and z_q
//   mm::Tensor img = vq.decode(q.z_q);             // [B, 3, H, W], roughly in [-1, 1]
//
// Weights are frozen (no gradient), but decode() is differentiable w.r.t. its input: that
// is what VQGAN+CLIP optimises. Tensor names mirror taming's state dict
// (encoder.down.0.block.1.norm1.weight, decoder.up.2.upsample.conv.weight, ...).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/cuda_ops.h"
#include "engine/tensor.h"
#include "weights_tools/safetensors.h"

namespace mm {

// taming's ddconfig plus the quantiser sizes. attn_levels[i] says whether resolution level i
// (full size / 2^i) has attention blocks; taming states this as attn_resolutions + resolution.
struct VQGANConfig {
  int64_t embed_dim = 256;
  int64_t n_embed = 1024;
  int64_t z_channels = 256;
  int64_t resolution = 256;
  int64_t in_channels = 3;
  int64_t out_ch = 3;
  int64_t ch = 128;
  std::vector<int64_t> ch_mult = {1, 1, 2, 2, 4};
  int64_t num_res_blocks = 2;
  std::vector<int64_t> attn_resolutions = {16};
  bool double_z = false;
  // taming's GumbelVQ (e.g. its openimages f8-8192 model) instead of VQModel: the quantiser
  // is quantize.proj (a 1x1 convolution to n_embed logits) and the codebook quantize.embed;
  // a VQModel's codebook is quantize.embedding.
  bool gumbel = false;

  int64_t num_levels() const { return static_cast<int64_t>(ch_mult.size()); }
  int64_t downsample_factor() const { return int64_t{1} << (num_levels() - 1); }
  bool attn_at_level(int64_t level) const;
  std::string str() const;
};

// Reads taming's model.yaml (model.params.{embed_dim, n_embed, ddconfig}); unknown ddconfig
// keys are an error naming the key.
VQGANConfig load_vqgan_yaml(const std::string& path);
// The config as JSON with ddconfig's names (plus embed_dim, n_embed): mmtrain stores it in its
// safetensors files' "config" metadata, where VQGAN::load finds it.
std::string vqgan_config_to_json(const VQGANConfig& c);
VQGANConfig vqgan_config_from_json(const std::string& text, const std::string& origin);
// Infers the config from tensor shapes. Resolution cannot be seen in the weights: levels
// with attention are mapped to attn_resolutions assuming `resolution`.
VQGANConfig infer_vqgan_config(const TensorFile& f, int64_t resolution = 256);

// Every tensor of taming's VQModel for this config (loss.* excluded), with its shape.
std::map<std::string, Shape> vqgan_weight_table(const VQGANConfig& config);

struct VQCodes {
  Tensor indices;  // int64 [B, h, w]
  Tensor z_q;      // [B, D, h, w]: codebook rows; straight-through to h when h requires grad
};

class VQGAN {
 public:
  // Loads a taming .ckpt / torch file / safetensors; yaml_path may be empty (then the config
  // comes from the file's "config" metadata, as mmtrain writes it, or is inferred from
  // shapes). Every loss.* tensor is ignored.
  static VQGAN load(const std::string& weights_path, const std::string& yaml_path = "");
  static VQGAN from_tensors(const TensorFile& f, const VQGANConfig& config);

  const VQGANConfig& config() const { return config_; }
  // A copy with every weight on `device` (mmgen --device cuda).
  VQGAN to(Device device) const;
  Device device() const { return codebook().device(); }
  // The precision of encode's and decode's GEMMs on the device (engine/cuda_ops.h) and of
  // their backward; unset, they take the thread's. Kept by to() copies.
  void set_precision(std::optional<cuda_ops::Precision> p) { precision_ = p; }
  const Tensor& codebook() const { return get(codebook_key(config_)); }  // [K, D]
  static const char* codebook_key(const VQGANConfig& c) {
    return c.gumbel ? "quantize.embed.weight" : "quantize.embedding.weight";
  }

  // Drops the encoder's weights (encoder.*, quant_conv.*): generation past its initial
  // latent only decodes. encode() then fails with an error saying so. Returns the bytes freed.
  size_t release_encoder();
  Tensor encoder(const Tensor& x) const;         // [B, C, H, W] -> [B, z_channels, h, w]
  Tensor encode(const Tensor& x) const;          // encoder + quant_conv -> h [B, D, h, w]
  // The model's own quantiser. A VQModel's: nearest codes, z_q = h + (e - h).detach()
  // (nearest_codes). A GumbelVQ's: the code with the largest logit of quantize.proj(h), the
  // mode of taming's Gumbel sampling (taming's eval adds Gumbel noise first; mm does not, so
  // encoding is deterministic), z_q = its codebook row, with no gradient to h.
  VQCodes quantize(const Tensor& h) const;
  // Nearest codebook rows by squared distance, straight-through (z_q has h's gradient): the
  // quantisation VQGAN+CLIP applies to its latent, for both kinds of model (as the classic
  // notebooks do with a Gumbel model's quantize.embed).
  VQCodes nearest_codes(const Tensor& h) const;
  Tensor decode(const Tensor& z_q) const;        // post_quant_conv + decoder
  Tensor codes_to_latent(const Tensor& indices) const;  // [B, h, w] int64 -> [B, D, h, w]
  // taming's VectorQuantizer2 legacy loss, beta = 0.25: the codebook term mean((e - sg(h))^2)
  // moves the chosen codebook rows e towards the encoder output, the commitment term
  // beta * mean((sg(e) - h)^2) moves the encoder towards its codes. Its value is
  // mean((e - h)^2) * (1 + beta).
  Tensor quantization_loss(const Tensor& h, const VQCodes& codes) const;

  // ---- training (models/vqgan_train.cpp; apps/mmtrain trains mm-mini's VQGAN) ----
  // Fresh weights with torch's default initialisation (convolutions and their biases
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)), GroupNorm 1/0) and taming's codebook U(-1/K, 1/K),
  // drawn from a Philox generator seeded with `seed`.
  static VQGAN init(const VQGANConfig& config, uint64_t seed);
  // Every tensor by taming's state-dict key, in key order: what a checkpoint stores.
  std::vector<std::pair<std::string, Tensor>> named_tensors() const;
  // Private copies of the weights with requires_grad on (or off): encode/decode then record
  // graphs back to the weights.
  void set_trainable(bool trainable);
  // The decoder's last convolution weight: where taming measures the gradient norms that set
  // the adversarial weight.
  const Tensor& last_layer() const { return get("decoder.conv_out.weight"); }
  // Replaces codebook rows in place (dead-code restarts): row rows[i] := values[i].
  void reset_codes(const std::vector<int64_t>& rows, const Tensor& values);

 private:
  const Tensor& get(const std::string& key) const;
  Tensor conv(const std::string& prefix, const Tensor& x, int64_t padding = 0) const;
  Tensor norm(const std::string& prefix, const Tensor& x) const;
  Tensor norm_silu(const std::string& prefix, const Tensor& x) const;
  Tensor resnet_block(const std::string& prefix, const Tensor& x) const;
  Tensor attn_block(const std::string& prefix, const Tensor& x) const;

  VQGANConfig config_;
  std::map<std::string, Tensor> weights_;
  std::string path_;
  std::optional<cuda_ops::Precision> precision_;
  bool encoder_released_ = false;
};

}  // namespace mm
