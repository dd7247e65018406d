// train/patch_discriminator.cpp: see patch_discriminator.h.
#include "train/patch_discriminator.h"

#include "engine/ops/conv.h"
#include "engine/random.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/norm.h"

namespace mm::train {

namespace {
// The layers: (name, in, out, stride, normalised). ndf, 2 ndf, 4 ndf, then 1 logit.
struct Layer {
  const char* name;
  int64_t in_mult, out_mult, stride;
  bool norm;
};
constexpr Layer kLayers[] = {{"disc.0", 0, 1, 2, false}, {"disc.1", 1, 2, 2, true}, {"disc.2", 2, 4, 1, true},
                             {"disc.3", 4, -1, 1, false}};

Tensor leaky_relu(const Tensor& x) { return relu(x) - relu(-x) * 0.2; }
}  // namespace

PatchDiscriminator PatchDiscriminator::init(int64_t ndf, uint64_t seed) {
  PatchDiscriminator d;
  Generator gen(seed);
  for (const Layer& l : kLayers) {
    const int64_t in = l.in_mult == 0 ? 3 : l.in_mult * ndf, out = l.out_mult < 0 ? 1 : l.out_mult * ndf;
    d.tensors_.emplace_back(std::string(l.name) + ".weight", Tensor::randn({out, in, 4, 4}, gen) * 0.02);
    d.tensors_.emplace_back(std::string(l.name) + ".bias", Tensor::zeros({out}));
    if (l.norm) {
      d.tensors_.emplace_back(std::string(l.name) + ".norm.weight", Tensor::randn({out}, gen) * 0.02 + 1.0);
      d.tensors_.emplace_back(std::string(l.name) + ".norm.bias", Tensor::zeros({out}));
    }
  }
  for (auto& [k, t] : d.tensors_) t = t.detach().contiguous(), t.set_requires_grad(true);
  return d;
}

PatchDiscriminator PatchDiscriminator::from_tensors(const TensorFile& f) {
  PatchDiscriminator d;
  for (const Layer& l : kLayers) {
    std::vector<std::string> names = {std::string(l.name) + ".weight", std::string(l.name) + ".bias"};
    if (l.norm) names.insert(names.end(), {std::string(l.name) + ".norm.weight", std::string(l.name) + ".norm.bias"});
    for (const auto& n : names) {
      MM_CHECK(f.contains(n), "[PatchDiscriminator] '", f.path, "' has no tensor '", n, "'");
      Tensor t = f.get(n).to(DType::f32).clone();
      t.set_requires_grad(true);
      d.tensors_.emplace_back(n, t);
    }
  }
  return d;
}

const Tensor& PatchDiscriminator::get(const std::string& name) const {
  for (const auto& [k, t] : tensors_)
    if (k == name) return t;
  throw Error(str_cat("[PatchDiscriminator] no tensor '", name, "'"));
}

std::vector<Tensor> PatchDiscriminator::parameters() const {
  std::vector<Tensor> out;
  for (const auto& [k, t] : tensors_) out.push_back(t);
  return out;
}

Tensor PatchDiscriminator::forward(const Tensor& x) const {
  MM_CHECK(x.dim() == 4 && x.size(1) == 3, "[PatchDiscriminator] expects [B, 3, H, W], got ", x.str());
  Tensor h = x;
  for (const Layer& l : kLayers) {
    const std::string p = l.name;
    h = conv2d(h, get(p + ".weight"), get(p + ".bias"), conv2d_options(l.stride, 1));
    if (l.norm) h = group_norm(h, 32, get(p + ".norm.weight"), get(p + ".norm.bias"));
    if (l.out_mult > 0) h = leaky_relu(h);
  }
  return h;
}

}  // namespace mm::train
