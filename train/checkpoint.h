// train/checkpoint.h: training checkpoints, in mm's safetensors format: the model's tensors
// under "model.<key>", each optimiser's state under "<name>.<state key>", the step and the
// run's settings in the metadata. Resuming restores all of it, and since every random draw
// of a step is seeded by (seed, step), a resumed run continues bit for bit as if it had never
// stopped. The model tensors alone ("model." stripped) are what mm ships.
// Reading order: after schedule.h. Test: ./build/mm_tests --source-file=*test_train.cpp
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/optim.h"
#include "weights_tools/safetensors.h"

namespace mm::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes path atomically (a .tmp file renamed over it), so an interrupted save never leaves
// a half-written checkpoint behind. metadata gets "step".
void save_checkpoint(const std::string& path, const NamedTensors& model,
                     const std::vector<std::pair<std::string, const Optimizer*>>& optimizers, int64_t step,
                     std::map<std::string, std::string> metadata);

struct LoadedCheckpoint {
  std::string path;
  int64_t step = 0;
  std::map<std::string, std::string> metadata;
  TensorFile model;  // "model." stripped: loadable by ClipModel::load / VQGAN::from_tensors
  std::map<std::string, NamedTensors> optimizer_states;  // by optimiser name

  // Restores optimiser `name` (built over the loaded model's parameters); the error names
  // the file when the checkpoint has no state for it.
  void restore(const std::string& name, Optimizer& optimizer) const;
  // metadata[key]; the error names the file and key.
  const std::string& meta(const std::string& key) const;
};

// Reads a checkpoint written by save_checkpoint; tensors are private copies (training
// updates them in place).
LoadedCheckpoint load_checkpoint(const std::string& path);

// The model tensors as a shippable file: float16 where `fp16` (the tensors whose float16 copy
// is exact enough: everything but scalars and running statistics), else float32.
void save_model(const std::string& path, const NamedTensors& model, bool fp16,
                const std::map<std::string, std::string>& metadata);

}  // namespace mm::train
