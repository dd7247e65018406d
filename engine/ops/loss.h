// engine/ops/loss.h: losses and vector normalisation: cross_entropy, mse_loss, normalize
// (F.normalize), cosine_similarity. All written from existing ops, so backward comes free.
// Reading order: after reduce.h. Test: ./build/mm_tests --source-file=*test_loss.cpp
//
//   Tensor l = mm::cross_entropy(logits, labels);                // logits [N, C], labels int64 [N]
//   Tensor f = mm::normalize(features, -1);                      // CLIP: unit-length embeddings
//   Tensor s = mm::cosine_similarity(image_emb, text_emb, -1);   // [B, D], [B, D] -> [B]
//   Tensor m = mm::mse_loss(x_rec, x, mm::Reduction::mean);
#pragma once
#include "engine/tensor.h"

namespace mm {

enum class Reduction { none, mean, sum };

// -log_softmax(logits)[n, target[n]], reduced over n. logits [N, C], target int64 [N] in [0, C).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::mean);

// (a - b)^2 elementwise (a and b broadcast), reduced over all elements.
Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction reduction = Reduction::mean);

// F.normalize with p = 2: x / max(|x|_2, eps) along dim.
Tensor normalize(const Tensor& x, int64_t dim, double eps = 1e-12);

// F.cosine_similarity: sum_dim(a * b) / (max(|a|, eps) * max(|b|, eps)); a and b broadcast,
// dim is removed from the result.
Tensor cosine_similarity(const Tensor& a, const Tensor& b, int64_t dim, double eps = 1e-8);

}  // namespace mm
