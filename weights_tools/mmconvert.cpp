// weights_tools/mmconvert.cpp: the weight-file command line.
//
//   mmconvert info FILE                                  list tensors: name, dtype, shape, and the
//                                                        model config inferred from them
//   mmconvert FILE OUT.safetensors [--dtype fp16|fp32|keep]   convert to mm's format
//
// FILE may be an OpenAI .pt (TorchScript), a torch.save checkpoint (pytorch_model.bin,
// Lightning .ckpt: the state_dict inside), or safetensors. Conversion keeps names and
// order; --dtype changes floating-point tensors only (integer buffers stay as they are).
#include <cstdio>
#include <string>

#include "engine/mm.h"
#include "models/clip.h"
#include "models/clip_config.h"
#include "models/vqgan.h"
#include "weights_tools/torch_file.h"

using namespace mm;

namespace {

int usage(FILE* f) {
  std::fprintf(f,
               "usage:\n"
               "  mmconvert info FILE\n"
               "  mmconvert FILE OUT.safetensors [--dtype fp16|fp32|keep]\n"
               "FILE: OpenAI .pt, torch.save checkpoint (.bin/.ckpt) or .safetensors\n");
  return f == stdout ? 0 : 2;
}

int info(const std::string& path) {
  TensorFile f = load_weights(path);
  int64_t total = 0, bytes = 0;
  size_t width = 0;
  for (const auto& [name, t] : f.tensors) width = std::max(width, name.size());
  for (const auto& [name, t] : f.tensors) {
    std::printf("%-*s  %-8s  %s\n", static_cast<int>(width), name.c_str(), dtype_name(t.dtype()),
                shape_str(t.shape()).c_str());
    total += t.numel();
    bytes += t.numel() * static_cast<int64_t>(dtype_size(t.dtype()));
  }
  std::printf("%zu tensors, %lld elements, %.1f MB\n", f.tensors.size(), static_cast<long long>(total), bytes / 1e6);
  for (const auto& [k, v] : f.metadata) std::printf("metadata %s = %s\n", k.c_str(), v.c_str());
  // The model, as the apps would infer it from these shapes.
  try {
    if (f.contains("encoder.conv_in.weight") && f.contains("quant_conv.weight")) {
      std::printf("model: taming %s (inferred; resolution and attn_resolutions assume 256: model.yaml has the "
                  "real ones)\n",
                  infer_vqgan_config(f, 256).str().c_str());
    } else {
      const bool hf = map_hf_clip_names(f);
      if (f.contains("token_embedding.weight") && (f.contains("visual.proj") || f.contains("visual.attnpool.c_proj.weight"))) {
        const ClipConfig c = infer_clip_config(f);
        std::printf("model: CLIP %s (inferred%s%s)\n", c.str().c_str(), hf ? " from Hugging Face names" : "",
                    c.transformer_heads == 0 ? "; text heads by OpenAI's width/64 rule: 0, give them with --model-config"
                                             : "");
      }
      else
        std::printf("model: not a CLIP or taming VQGAN that mm knows (tensors only)\n");
    }
  } catch (const std::exception& e) {
    std::printf("model: cannot infer a config: %s\n", e.what());
  }
  return 0;
}

int convert(const std::string& in, const std::string& out, const std::string& dtype) {
  MM_CHECK(dtype == "fp16" || dtype == "fp32" || dtype == "keep", "mmconvert: --dtype must be fp16, fp32 or keep, got '",
           dtype, "'");
  TensorFile f = load_weights(in);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, t] : f.tensors) {
    Tensor c = t;
    if (is_floating(t.dtype()) && dtype != "keep") c = t.to(dtype == "fp16" ? DType::f16 : DType::f32);
    tensors.push_back({name, c});
  }
  save_safetensors(out, tensors, {{"format", "pt"}, {"converted_by", "mmconvert"}, {"source", in}});
  std::printf("wrote %s: %zu tensors\n", out.c_str(), tensors.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) return usage(stderr);
    const std::string cmd = argv[1];
    if (cmd == "--help" || cmd == "-h") return usage(stdout);
    if (cmd == "info") {
      if (argc != 3) return usage(stderr);
      return info(argv[2]);
    }
    if (argc != 3 && argc != 5) return usage(stderr);
    std::string dtype = "keep";
    if (argc == 5) {
      MM_CHECK(std::string(argv[3]) == "--dtype", "mmconvert: unknown option '", argv[3], "'");
      dtype = argv[4];
    }
    return convert(argv[1], argv[2], dtype);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
