// train/patch_discriminator.h: the adversary of mini-VQGAN training, after taming's
// NLayerDiscriminator (pix2pix's PatchGAN): 4x4 convolutions, the first two with stride 2,
// LeakyReLU(0.2), one logit per overlapping patch. taming normalises with BatchNorm; this one
// uses GroupNorm (32 groups), which needs no running statistics and behaves the same in
// training and evaluation. Reading order: after models/vqgan_train.cpp.
// Test: ./build/mm_tests --source-file=*test_train.cpp
//
//   mm::train::PatchDiscriminator d = mm::train::PatchDiscriminator::init(/*ndf=*/32, /*seed=*/1);
//   mm::Tensor logits = d.forward(x);   // x [B, 3, 64, 64] in [-1, 1] -> [B, 1, 14, 14]
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "weights_tools/safetensors.h"

namespace mm::train {

class PatchDiscriminator {
 public:
  // Conv weights N(0, 0.02), norm gammas N(1, 0.02), as taming's weights_init; biases 0.
  static PatchDiscriminator init(int64_t ndf, uint64_t seed);
  // From tensors named "disc.*" (a checkpoint's), with the widths read from their shapes.
  static PatchDiscriminator from_tensors(const TensorFile& f);
  Tensor forward(const Tensor& x) const;
  std::vector<std::pair<std::string, Tensor>> named_tensors() const { return tensors_; }
  std::vector<Tensor> parameters() const;

 private:
  const Tensor& get(const std::string& name) const;
  std::vector<std::pair<std::string, Tensor>> tensors_;
};

}  // namespace mm::train
