// train/checkpoint.cpp: see checkpoint.h.
#include "train/checkpoint.h"

#include <cstdio>

#include "engine/error.h"

namespace mm::train {

void save_checkpoint(const std::string& path, const NamedTensors& model,
                     const std::vector<std::pair<std::string, const Optimizer*>>& optimizers, int64_t step,
                     std::map<std::string, std::string> metadata) {
  NamedTensors all;
  for (const auto& [k, t] : model) all.emplace_back("model." + k, t.detach());
  for (const auto& [name, opt] : optimizers)
    for (const auto& [k, t] : opt->state()) all.emplace_back(name + "." + k, t);
  metadata["step"] = std::to_string(step);
  const std::string tmp = path + ".tmp";
  save_safetensors(tmp, all, metadata);
  MM_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "[checkpoint] cannot rename '", tmp, "' to '", path, "'");
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
  TensorFile f = load_safetensors(path);
  LoadedCheckpoint out;
  out.path = path;
  out.metadata = f.metadata;
  out.step = std::stoll(out.meta("step"));
  out.model.path = path;
  for (auto& [k, t] : f.tensors) {
    if (k.rfind("model.", 0) == 0) {
      out.model.tensors.emplace_back(k.substr(6), t.clone());  // own the memory: training writes in place
      continue;
    }
    const size_t dot = k.find('.');
    MM_CHECK(dot != std::string::npos, "[checkpoint] '", path, "': unexpected tensor '", k, "'");
    out.optimizer_states[k.substr(0, dot)].emplace_back(k.substr(dot + 1), t.clone());
  }
  return out;
}

void LoadedCheckpoint::restore(const std::string& name, Optimizer& optimizer) const {
  auto s = optimizer_states.find(name);
  MM_CHECK(s != optimizer_states.end(), "[checkpoint] '", path, "' has no state for optimiser '", name, "'");
  optimizer.load_state(s->second);
}

const std::string& LoadedCheckpoint::meta(const std::string& key) const {
  auto it = metadata.find(key);
  MM_CHECK(it != metadata.end(), "[checkpoint] '", path, "' has no '", key,
           "' in its metadata: not a checkpoint written by mmtrain");
  return it->second;
}

void save_model(const std::string& path, const NamedTensors& model, bool fp16,
                const std::map<std::string, std::string>& metadata) {
  NamedTensors out;
  for (const auto& [k, t] : model) {
    const bool keep32 = !fp16 || t.dim() == 0 || k.find("running_") != std::string::npos;
    out.emplace_back(k, t.detach().to(keep32 ? DType::f32 : DType::f16).contiguous());
  }
  save_safetensors(path, out, metadata);
}

}  // namespace mm::train
