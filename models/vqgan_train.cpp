// models/vqgan_train.cpp: what training a VQGAN needs beyond inference: fresh weights with
// torch's default initialisation, the checkpoint list, trainable copies and dead-code restarts.
// Reading order: after vqgan.cpp; the training loop is train/vqgan_trainer.cpp.
// Test: ./build/mm_tests --source-file=*test_vqgan_train.cpp
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/random.h"
#include "models/vqgan.h"

namespace mm {

VQGAN VQGAN::init(const VQGANConfig& config, uint64_t seed) {
  MM_CHECK(!config.gumbel, "[VQGAN.init] training a Gumbel-quantiser VQGAN is not supported (only taming's VQModel)");
  TensorFile f;
  f.path = "<init seed " + std::to_string(seed) + ">";
  Generator gen(seed);
  const std::map<std::string, Shape> table = vqgan_weight_table(config);
  for (const auto& [key, shape] : table) {
    Tensor t;
    if (key == "quantize.embedding.weight") {
      const double k = 1.0 / static_cast<double>(config.n_embed);
      t = Tensor::uniform(shape, gen, -k, k);
    } else if (shape.size() == 4) {  // conv weight [out, in, kh, kw]: kaiming_uniform(a = sqrt 5)
      const double bound = 1.0 / std::sqrt(static_cast<double>(shape[1] * shape[2] * shape[3]));
      t = Tensor::uniform(shape, gen, -bound, bound);
    } else if (key.size() > 5 && key.compare(key.size() - 5, 5, ".bias") == 0 &&
               table.count(key.substr(0, key.size() - 5) + ".weight") &&
               table.at(key.substr(0, key.size() - 5) + ".weight").size() == 4) {  // conv bias
      const Shape& w = table.at(key.substr(0, key.size() - 5) + ".weight");
      const double bound = 1.0 / std::sqrt(static_cast<double>(w[1] * w[2] * w[3]));
      t = Tensor::uniform(shape, gen, -bound, bound);
    } else if (key.compare(key.size() - 7, 7, ".weight") == 0) {  // GroupNorm gamma
      t = Tensor::ones(shape);
    } else {  // GroupNorm beta
      t = Tensor::zeros(shape);
    }
    f.tensors.emplace_back(key, t);
  }
  return from_tensors(f, config);
}

std::vector<std::pair<std::string, Tensor>> VQGAN::named_tensors() const {
  return {weights_.begin(), weights_.end()};
}

void VQGAN::set_trainable(bool trainable) {
  for (auto& [key, t] : weights_) {
    if (trainable) t = t.detach().clone();  // never update a read-only file mapping in place
    t.set_requires_grad(trainable);
  }
}

void VQGAN::reset_codes(const std::vector<int64_t>& rows, const Tensor& values) {
  const int64_t D = config_.embed_dim;
  MM_CHECK(values.dim() == 2 && values.size(0) == static_cast<int64_t>(rows.size()) && values.size(1) == D,
           "[VQGAN.reset_codes] values ", values.str(), " must be [", rows.size(), ", ", D, "]");
  NoGradGuard no_grad;
  Tensor cb = weights_.at(codebook_key(config_));
  for (size_t i = 0; i < rows.size(); ++i) {
    MM_CHECK(rows[i] >= 0 && rows[i] < config_.n_embed, "[VQGAN.reset_codes] row ", rows[i], " outside [0, ",
             config_.n_embed, ")");
    Tensor row = cb.select(0, rows[i]);
    row.copy_(values.select(0, static_cast<int64_t>(i)));
  }
}

}  // namespace mm
