// models/clip_config.cpp: ClipConfig from a state dict's shapes (OpenAI's build_model) or
// from a clip_*.json file. Test: ./build/mm_tests --source-file=*test_clip.cpp
#include "models/clip_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/error.h"

namespace mm {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Dimension d of tensor `key`, with an error naming the file when it is missing or too small.
int64_t dim_of(const TensorFile& f, const std::string& key, int64_t d) {
  MM_CHECK(f.contains(key), "[clip config] ", f.path, ": tensor '", key,
           "' is missing; cannot infer the CLIP config (is this an OpenAI CLIP state dict? Hugging Face files "
           "need map_hf_clip_names first)");
  const Tensor& t = f.get(key);
  MM_CHECK(d < t.dim(), "[clip config] ", f.path, ": tensor '", key, "' ", shape_str(t.shape()), " has no dim ", d);
  return t.shape()[static_cast<size_t>(d)];
}

// Number of distinct indices N among keys "<prefix>N.*" (build_model's len(set(k.split(".")[i]))).
int64_t count_indices(const TensorFile& f, const std::string& prefix) {
  std::set<std::string> seen;
  for (const auto& [key, t] : f.tensors) {
    (void)t;
    if (!starts_with(key, prefix)) continue;
    const std::string rest = key.substr(prefix.size());
    seen.insert(rest.substr(0, rest.find('.')));
  }
  return static_cast<int64_t>(seen.size());
}

// round(sqrt(n)), checked to be exact: the token grid of a positional embedding.
int64_t grid_side(const TensorFile& f, const std::string& key, int64_t tokens_minus_class) {
  const int64_t side = std::llround(std::sqrt(static_cast<double>(tokens_minus_class)));
  MM_CHECK(side * side == tokens_minus_class, "[clip config] ", f.path, ": '", key, "' has ", tokens_minus_class + 1,
           " rows, not a square grid plus one class token");
  return side;
}

}  // namespace

std::string ClipConfig::str() const {
  std::ostringstream os;
  if (vision == ClipVision::vit) {
    os << "ViT (patch " << vision_patch_size << ", layers " << (vision_layers.empty() ? 0 : vision_layers[0]);
  } else {
    os << "ModifiedResNet (layers [";
    for (size_t i = 0; i < vision_layers.size(); ++i) os << (i ? ", " : "") << vision_layers[i];
    os << "]";
  }
  os << ", width " << vision_width << ", heads " << vision_heads << ", resolution " << image_resolution
     << "); text (width " << transformer_width << ", heads " << transformer_heads << ", layers " << transformer_layers
     << ", context " << context_length << ", vocab " << vocab_size << "); embed_dim " << embed_dim;
  return os.str();
}

ClipConfig infer_clip_config(const TensorFile& f) {
  ClipConfig c;
  if (f.contains("visual.proj")) {
    c.vision = ClipVision::vit;
    c.vision_width = dim_of(f, "visual.conv1.weight", 0);
    int64_t layers = 0;
    for (const auto& [key, t] : f.tensors) {
      (void)t;
      if (starts_with(key, "visual.") && ends_with(key, ".attn.in_proj_weight")) ++layers;
    }
    c.vision_layers = {layers};
    c.vision_patch_size = dim_of(f, "visual.conv1.weight", 3);
    const int64_t grid =
        grid_side(f, "visual.positional_embedding", dim_of(f, "visual.positional_embedding", 0) - 1);
    c.image_resolution = c.vision_patch_size * grid;
    c.vision_heads = c.vision_width / 64;
  } else {
    c.vision = ClipVision::resnet;
    for (int b = 1; b <= 4; ++b) c.vision_layers.push_back(count_indices(f, "visual.layer" + std::to_string(b) + "."));
    c.vision_width = dim_of(f, "visual.layer1.0.conv1.weight", 0);
    const int64_t out_side = grid_side(f, "visual.attnpool.positional_embedding",
                                       dim_of(f, "visual.attnpool.positional_embedding", 0) - 1);
    c.vision_patch_size = 0;
    c.image_resolution = out_side * 32;
    c.vision_heads = c.vision_width * 32 / 64;
  }
  c.embed_dim = dim_of(f, "text_projection", 1);
  c.context_length = dim_of(f, "positional_embedding", 0);
  c.vocab_size = dim_of(f, "token_embedding.weight", 0);
  c.transformer_width = dim_of(f, "ln_final.weight", 0);
  c.transformer_heads = c.transformer_width / 64;
  c.transformer_layers = count_indices(f, "transformer.resblocks.");
  return c;
}

ClipConfig load_clip_config_json(const std::string& path, ClipConfig c) {
  std::ifstream in(path);
  MM_CHECK(in.good(), "[clip config] cannot open ", path);
  std::stringstream text;
  text << in.rdbuf();
  return clip_config_from_json(text.str(), path, std::move(c));
}

namespace {

// Hugging Face's CLIPConfig (config.json beside model.safetensors): the sizes it gives override
// the inferred ones; what it leaves out takes transformers' defaults where the shapes cannot
// tell (8 text and 12 vision heads, quick_gelu); its many other keys (architectures,
// initializer_factor, ...) say nothing about the forward pass.
ClipConfig clip_config_from_hf_json(const nlohmann::json& j, const std::string& path, ClipConfig c) {
  auto get = [&](const nlohmann::json& obj, const char* section, const char* key, int64_t& out) {
    if (!obj.contains(key) || obj[key].is_null()) return;
    MM_CHECK(obj[key].is_number_integer(), "[clip config] ", path, ": ", section, ".", key, " must be an integer, got ",
             obj[key].dump());
    out = obj[key].get<int64_t>();
  };
  std::string act;
  auto activation = [&](const nlohmann::json& obj, const char* section) {
    const std::string a = !obj.contains("hidden_act") ? "quick_gelu"  // transformers' default
                          : obj["hidden_act"].is_string() ? obj["hidden_act"].get<std::string>()
                                                          : obj["hidden_act"].dump();
    MM_CHECK(a == "quick_gelu" || a == "gelu", "[clip config] ", path, ": ", section, ".hidden_act '", a,
             "' is not supported (quick_gelu or gelu)");
    MM_CHECK(act.empty() || act == a, "[clip config] ", path, ": the text and vision towers' hidden_act differ (", act,
             ", ", a, "): mm uses one activation for both");
    act = a;
  };
  get(j, "config", "projection_dim", c.embed_dim);
  // (older transformers wrote text_config_dict / vision_config_dict)
  const char* text_key = j.contains("text_config") ? "text_config" : "text_config_dict";
  const char* vision_key = j.contains("vision_config") ? "vision_config" : "vision_config_dict";
  if (j.contains(text_key) && j[text_key].is_object()) {
    const nlohmann::json& t = j[text_key];
    c.transformer_heads = 8;  // CLIPTextConfig's default when num_attention_heads is left out
    get(t, "text_config", "hidden_size", c.transformer_width);
    get(t, "text_config", "num_attention_heads", c.transformer_heads);
    get(t, "text_config", "num_hidden_layers", c.transformer_layers);
    get(t, "text_config", "max_position_embeddings", c.context_length);
    get(t, "text_config", "vocab_size", c.vocab_size);
    activation(t, "text_config");
  }
  if (j.contains(vision_key) && j[vision_key].is_object()) {
    const nlohmann::json& v = j[vision_key];
    MM_CHECK(c.vision == ClipVision::vit, "[clip config] ", path,
             ": a Hugging Face vision_config describes a ViT, but the weights are a ModifiedResNet");
    c.vision_heads = 12;  // CLIPVisionConfig's default
    get(v, "vision_config", "hidden_size", c.vision_width);
    get(v, "vision_config", "num_attention_heads", c.vision_heads);
    int64_t layers = c.vision_layers.empty() ? 0 : c.vision_layers[0];
    get(v, "vision_config", "num_hidden_layers", layers);
    c.vision_layers = {layers};
    get(v, "vision_config", "patch_size", c.vision_patch_size);
    get(v, "vision_config", "image_size", c.image_resolution);
    activation(v, "vision_config");
  }
  if (!act.empty()) c.activation = act == "gelu" ? ClipActivation::gelu : ClipActivation::quick_gelu;
  return c;
}

}  // namespace

ClipConfig clip_config_from_json(const std::string& text, const std::string& path, ClipConfig c) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(str_cat("[clip config] ", path, ": not valid JSON: ", e.what()));
  }
  MM_CHECK(j.is_object(), "[clip config] ", path, ": expected a JSON object of build_model arguments");
  if (j.contains("text_config") || j.contains("vision_config")) return clip_config_from_hf_json(j, path, std::move(c));
  auto integer = [&](const std::string& key) -> int64_t {
    const auto& v = j.at(key);
    MM_CHECK(v.is_number_integer(), "[clip config] ", path, ": '", key, "' must be an integer, got ", v.dump());
    return v.get<int64_t>();
  };
  for (const auto& [key, value] : j.items()) {
    if (key == "embed_dim") c.embed_dim = integer(key);
    else if (key == "image_resolution") c.image_resolution = integer(key);
    else if (key == "vision_width") c.vision_width = integer(key);
    else if (key == "vision_heads") c.vision_heads = integer(key);
    else if (key == "context_length") c.context_length = integer(key);
    else if (key == "vocab_size") c.vocab_size = integer(key);
    else if (key == "transformer_width") c.transformer_width = integer(key);
    else if (key == "transformer_heads") c.transformer_heads = integer(key);
    else if (key == "transformer_layers") c.transformer_layers = integer(key);
    else if (key == "transformer_heads_by_openai_rule") continue;  // informational: width / 64
    else if (key == "vision_layers") {
      if (value.is_number_integer()) {
        c.vision = ClipVision::vit;
        c.vision_layers = {value.get<int64_t>()};
      } else {
        MM_CHECK(value.is_array() && value.size() == 4, "[clip config] ", path,
                 ": 'vision_layers' must be an int (ViT) or a list of 4 ints (ResNet), got ", value.dump());
        c.vision = ClipVision::resnet;
        c.vision_layers.clear();
        for (const auto& n : value) {
          MM_CHECK(n.is_number_integer(), "[clip config] ", path, ": 'vision_layers' entry ", n.dump(),
                   " is not an integer");
          c.vision_layers.push_back(n.get<int64_t>());
        }
      }
    } else if (key == "vision_patch_size") {
      c.vision_patch_size = value.is_null() ? 0 : integer(key);
    } else if (key == "hidden_act") {
      const std::string act = value.is_string() ? value.get<std::string>() : value.dump();
      MM_CHECK(act == "quick_gelu" || act == "gelu", "[clip config] ", path, ": hidden_act '", act,
               "' is not supported (quick_gelu or gelu)");
      c.activation = act == "gelu" ? ClipActivation::gelu : ClipActivation::quick_gelu;
    } else {
      throw Error(str_cat("[clip config] ", path, ": unknown key '", key,
                          "' (expected build_model's arguments: embed_dim, image_resolution, vision_layers, "
                          "vision_width, vision_patch_size, context_length, vocab_size, transformer_width, "
                          "transformer_heads, transformer_layers, plus vision_heads, hidden_act)"));
    }
  }
  // Head counts the file leaves out follow CLIP's rules for the (possibly new) widths.
  if (!j.contains("vision_heads") && j.contains("vision_width"))
    c.vision_heads = c.vision == ClipVision::vit ? c.vision_width / 64 : c.vision_width * 32 / 64;
  if (!j.contains("transformer_heads") && j.contains("transformer_width")) c.transformer_heads = c.transformer_width / 64;
  MM_CHECK((c.vision == ClipVision::vit) == (c.vision_patch_size > 0), "[clip config] ", path, ": vision_layers ",
           j.contains("vision_layers") ? j["vision_layers"].dump() : "(inferred)", " and vision_patch_size ",
           c.vision_patch_size, " disagree (ViT needs a patch size, ModifiedResNet a null one)");
  return c;
}

ClipConfig clip_config_preset(const std::string& name) {
  ClipConfig c;
  c.context_length = 77;
  c.vocab_size = 49408;
  c.transformer_layers = 12;
  struct Vit {
    const char* name;
    int64_t embed, res, layers, width, patch, text_width;
  };
  static const Vit vits[] = {{"ViT-B/32", 512, 224, 12, 768, 32, 512},
                             {"ViT-B/16", 512, 224, 12, 768, 16, 512},
                             {"ViT-L/14", 768, 224, 24, 1024, 14, 768},
                             {"ViT-L/14@336px", 768, 336, 24, 1024, 14, 768}};
  for (const Vit& v : vits)
    if (name == v.name) {
      c.vision = ClipVision::vit;
      c.embed_dim = v.embed;
      c.image_resolution = v.res;
      c.vision_layers = {v.layers};
      c.vision_width = v.width;
      c.vision_patch_size = v.patch;
      c.vision_heads = v.width / 64;
      c.transformer_width = v.text_width;
      c.transformer_heads = v.text_width / 64;
      return c;
    }
  if (name == "RN50" || name == "RN101") {
    c.vision = ClipVision::resnet;
    c.embed_dim = name == "RN50" ? 1024 : 512;
    c.image_resolution = 224;
    c.vision_layers = name == "RN50" ? std::vector<int64_t>{3, 4, 6, 3} : std::vector<int64_t>{3, 4, 23, 3};
    c.vision_width = 64;
    c.vision_heads = 64 * 32 / 64;
    c.transformer_width = 512;
    c.transformer_heads = 8;
    return c;
  }
  throw Error(str_cat("unknown CLIP model name '", name, "' (known: ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px, RN50, RN101)"));
}

std::string clip_config_to_json(const ClipConfig& c) {
  nlohmann::ordered_json j;
  j["embed_dim"] = c.embed_dim;
  j["image_resolution"] = c.image_resolution;
  if (c.vision == ClipVision::vit) {
    j["vision_layers"] = c.vision_layers.at(0);
    j["vision_patch_size"] = c.vision_patch_size;
  } else {
    j["vision_layers"] = c.vision_layers;
    j["vision_patch_size"] = nullptr;
  }
  j["vision_width"] = c.vision_width;
  j["vision_heads"] = c.vision_heads;
  j["context_length"] = c.context_length;
  j["vocab_size"] = c.vocab_size;
  j["transformer_width"] = c.transformer_width;
  j["transformer_heads"] = c.transformer_heads;
  j["transformer_layers"] = c.transformer_layers;
  j["hidden_act"] = c.activation == ClipActivation::gelu ? "gelu" : "quick_gelu";
  return j.dump(1) + "\n";
}

}  // namespace mm
