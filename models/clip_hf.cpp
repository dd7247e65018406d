// models/clip_hf.cpp: Hugging Face CLIPModel key names -> OpenAI state-dict names, so that one
// ClipModel runs both. Reading order: after clip.cpp.
// Test: ./build/mm_tests --source-file=*test_clip.cpp (converts the OpenAI tiny refs to HF
// names and back through this mapping).
//
//   HF                                                   OpenAI
//   text_model.embeddings.token_embedding.weight         token_embedding.weight
//   text_model.embeddings.position_embedding.weight      positional_embedding
//   text_model.encoder.layers.N.self_attn.{q,k,v}_proj   transformer.resblocks.N.attn.in_proj_{weight,bias} (rows q;k;v)
//   ...self_attn.out_proj / layer_norm1 / layer_norm2    ...attn.out_proj / ln_1 / ln_2
//   ...mlp.fc1 / mlp.fc2                                 ...mlp.c_fc / mlp.c_proj
//   text_model.final_layer_norm                          ln_final
//   vision_model.embeddings.class_embedding              visual.class_embedding
//   vision_model.embeddings.patch_embedding.weight       visual.conv1.weight
//   vision_model.embeddings.position_embedding.weight    visual.positional_embedding
//   vision_model.pre_layrnorm / post_layernorm           visual.ln_pre / visual.ln_post
//   vision_model.encoder.layers.N.*                      visual.transformer.resblocks.N.*
//   visual_projection.weight [E, W]                      visual.proj [W, E] (transposed)
//   text_projection.weight [E, D]                        text_projection [D, E] (transposed)
//   *.position_ids                                       dropped (a buffer)
#include <map>

#include "engine/ops/shape_ops.h"
#include "models/clip.h"

namespace mm {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Replaces a leading `from` by `to`; false when s does not start with `from`.
bool swap_prefix(std::string& s, const std::string& from, const std::string& to) {
  if (!starts_with(s, from)) return false;
  s = to + s.substr(from.size());
  return true;
}

// The part of an encoder-layer key after "layers.N.": HF module names -> OpenAI's.
std::string map_layer_tail(std::string tail) {
  (void)(swap_prefix(tail, "self_attn.out_proj.", "attn.out_proj.") || swap_prefix(tail, "layer_norm1.", "ln_1.") ||
      swap_prefix(tail, "layer_norm2.", "ln_2.") || swap_prefix(tail, "mlp.fc1.", "mlp.c_fc.") ||
      swap_prefix(tail, "mlp.fc2.", "mlp.c_proj."));
  return tail;
}

// Pending q/k/v pieces of one attention layer: "<openai prefix>attn.in_proj_" -> {"q.weight": t, ...}.
using QkvParts = std::map<std::string, Tensor>;

}  // namespace

bool map_hf_clip_names(TensorFile& file) {
  bool is_hf = false;
  for (const auto& [key, t] : file.tensors) {
    (void)t;
    if (starts_with(key, "text_model.") || starts_with(key, "vision_model.")) is_hf = true;
  }
  if (!is_hf) return false;

  std::vector<std::pair<std::string, Tensor>> out;
  std::map<std::string, QkvParts> pending;  // keyed by the OpenAI layer prefix
  for (auto& [hf_key, t] : file.tensors) {
    std::string key = hf_key;
    if (key == "text_model.embeddings.position_ids" || key == "vision_model.embeddings.position_ids") continue;
    if (key == "visual_projection.weight" || key == "text_projection.weight") {
      out.emplace_back(key == "visual_projection.weight" ? "visual.proj" : "text_projection", t.t().contiguous());
      continue;
    }
    std::string layer_prefix;  // OpenAI prefix of an encoder layer, when key is one
    static const std::pair<std::string, std::string> kEncoders[] = {
        {"text_model.encoder.layers.", "transformer.resblocks."},
        {"vision_model.encoder.layers.", "visual.transformer.resblocks."}};
    for (const auto& [hf, oa] : kEncoders) {
      if (!starts_with(key, hf)) continue;
      const std::string rest = key.substr(hf.size());  // "N.tail"
      const size_t dot = rest.find('.');
      layer_prefix = oa + rest.substr(0, dot + 1);
      key = layer_prefix + map_layer_tail(rest.substr(dot + 1));
    }
    if (!layer_prefix.empty()) {
      const std::string tail = key.substr(layer_prefix.size());
      if (tail == "self_attn.q_proj.weight" || tail == "self_attn.k_proj.weight" || tail == "self_attn.v_proj.weight" ||
          tail == "self_attn.q_proj.bias" || tail == "self_attn.k_proj.bias" || tail == "self_attn.v_proj.bias") {
        const std::string which = tail.substr(10, 1);                  // q, k or v
        const std::string kind = tail.substr(tail.rfind('.') + 1);     // weight or bias
        QkvParts& parts = pending[layer_prefix + kind];
        parts[which] = t;
        if (parts.size() == 3) {  // rows q; k; v, as nn.MultiheadAttention's in_proj
          std::vector<Tensor> qkv = {parts["q"], parts["k"], parts["v"]};
          if (!(qkv[0].dtype() == qkv[1].dtype() && qkv[0].dtype() == qkv[2].dtype()))
            for (auto& p : qkv) p = p.to(DType::f32);
          out.emplace_back(layer_prefix + "attn.in_proj_" + kind, cat(qkv, 0));
          pending.erase(layer_prefix + kind);
        }
        continue;
      }
    } else {
      (void)(swap_prefix(key, "text_model.embeddings.token_embedding.", "token_embedding.") ||
          swap_prefix(key, "text_model.final_layer_norm.", "ln_final.") ||
          swap_prefix(key, "vision_model.pre_layrnorm.", "visual.ln_pre.") ||
          swap_prefix(key, "vision_model.post_layernorm.", "visual.ln_post.") ||
          swap_prefix(key, "vision_model.embeddings.patch_embedding.", "visual.conv1."));
      if (key == "text_model.embeddings.position_embedding.weight") key = "positional_embedding";
      if (key == "vision_model.embeddings.position_embedding.weight") key = "visual.positional_embedding";
      if (key == "vision_model.embeddings.class_embedding") key = "visual.class_embedding";
    }
    // Keys not named above (logit_scale, or something unexpected) keep their names; the
    // loader's table then reports anything unexpected by name.
    out.emplace_back(key, t);
  }
  for (const auto& [prefix, parts] : pending) {
    std::string have;
    for (const auto& [which, t] : parts) {
      (void)t;
      have += which + "_proj ";
    }
    throw Error(str_cat("[clip hf] ", file.path, ": attention layer '", prefix, "' has only ", have,
                        "of self_attn.{q,k,v}_proj; all three are needed"));
  }
  file.tensors = std::move(out);
  return true;
}

}  // namespace mm
