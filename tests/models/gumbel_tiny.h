// tests/models/gumbel_tiny.h: ../shared/refs' vqgan_tiny as taming's GumbelVQ would store it,
// for tests of the Gumbel-quantiser variant (there is no reference Gumbel checkpoint).
#pragma once
#include "engine/mm.h"
#include "weights_tools/safetensors.h"

namespace mm::testing {

// The codebook renamed quantize.embedding -> quantize.embed, and a quantize.proj whose logits
// 2·e_k·h − |e_k|² rank the codes as their squared distance to h does: the Gumbel quantiser's
// argmax must then pick taming's VQ codes.
inline TensorFile gumbel_from_vq(const TensorFile& vq) {
  TensorFile g;
  g.path = vq.path + " (as a GumbelVQ)";
  Tensor e;
  for (const auto& [name, t] : vq.tensors) {
    if (name == "quantize.embedding.weight") {
      e = t.to(DType::f32);
      g.tensors.push_back({"quantize.embed.weight", t});
    } else {
      g.tensors.push_back({name, t});
    }
  }
  REQUIRE(e.defined());
  g.tensors.push_back({"quantize.proj.weight", mul(e, 2.0).reshape({e.size(0), e.size(1), 1, 1})});
  g.tensors.push_back({"quantize.proj.bias", neg(sum(square(e), {1}))});
  return g;
}

}  // namespace mm::testing
