// models/clip_config.h: the hyper-parameters of an OpenAI CLIP model (the arguments of
// clip.model.CLIP / build_model), inferred from a state dict's tensor shapes or read from a
// clip_*.json file. Reading order: models/, before clip.h.
// Test: ./build/mm_tests --source-file=*test_clip.cpp
//
//   mm::TensorFile f = mm::load_weights("ViT-B-32.pt");
//   mm::ClipConfig c = mm::infer_clip_config(f);                 // as build_model does
//   c = mm::load_clip_config_json("clip_vit_tiny.json", c);     // the json's fields win
//   // c.vision == ClipVision::vit, c.vision_patch_size == 32, c.transformer_heads == 8
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "weights_tools/safetensors.h"

namespace mm {

// Which image tower: VisionTransformer ("visual.proj" exists) or ModifiedResNet.
enum class ClipVision { vit, resnet };

// The MLP activation inside the residual attention blocks. OpenAI's checkpoints use
// QuickGELU; Hugging Face configs name it in hidden_act ("quick_gelu" or "gelu").
enum class ClipActivation { quick_gelu, gelu };

struct ClipConfig {
  int64_t embed_dim = 0;
  int64_t image_resolution = 0;
  ClipVision vision = ClipVision::vit;
  std::vector<int64_t> vision_layers;  // {n} for ViT, {n1, n2, n3, n4} for ModifiedResNet
  int64_t vision_width = 0;
  int64_t vision_patch_size = 0;  // ViT only (0 for ModifiedResNet, null in the json)
  int64_t vision_heads = 0;       // CLIP's rule: width / 64 (ViT), width * 32 / 64 (ResNet)
  int64_t context_length = 0;
  int64_t vocab_size = 0;
  int64_t transformer_width = 0;
  int64_t transformer_heads = 0;  // build_model's rule width / 64; the tiny refs use 2
  int64_t transformer_layers = 0;
  ClipActivation activation = ClipActivation::quick_gelu;

  // "ViT: patch 32, res 224, layers 12, width 768, heads 12; text: ..." for messages.
  std::string str() const;
};

// build_model's inference from tensor shapes (OpenAI key names; see map_hf_clip_names for
// Hugging Face files). Head counts follow CLIP's rules, so a text tower whose width is not
// a multiple of 64 gets transformer_heads = 0 and needs the count from a config file.
ClipConfig infer_clip_config(const TensorFile& file);

// The configs of OpenAI's released models by name: "ViT-B/32", "ViT-B/16", "ViT-L/14",
// "ViT-L/14@336px", "RN50", "RN101" (for benchmarks with random weights of the real shapes).
ClipConfig clip_config_preset(const std::string& name);

// Reads a clip_*.json (build_model's argument names, plus vision_heads, hidden_act and the
// informational transformer_heads_by_openai_rule) and overrides the fields of `base` that
// the file sets. vision_layers is an int (ViT) or a list of 4 ints (ResNet); a null
// vision_patch_size means ResNet. An unknown key is an mm::Error naming the file and key.
ClipConfig load_clip_config_json(const std::string& path, ClipConfig base = ClipConfig());
// The same from JSON text; `origin` names where it came from in errors (a file, or a
// safetensors file's "config" metadata, where mmtrain stores the config of its models).
ClipConfig clip_config_from_json(const std::string& text, const std::string& origin, ClipConfig base = ClipConfig());

// The config as the JSON text load_clip_config_json reads back (every field written, so the
// file alone rebuilds the model): what mmtrain writes next to the weights it ships.
std::string clip_config_to_json(const ClipConfig& config);

}  // namespace mm
