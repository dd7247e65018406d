// engine/ops/vq.h: vector quantisation: the nearest codebook entry for each vector, as in
// taming-transformers' VectorQuantizer. Forward and backward on the CPU.
// Reading order: after linalg.h. Test: ./build/mm_tests --source-file=*test_vq.cpp
//
//   // z: [N, D] (VQGAN: the encoder output permuted to [B, H, W, D] and flattened),
//   // codebook: [K, D] (quantize.embedding.weight)
//   auto [indices, z_q] = mm::vector_quantize(z, codebook);   // int64 [N], [N, D]
//   Tensor z_st = mm::straight_through(z_q, z);                // z + (z_q - z).detach()
#pragma once
#include "engine/tensor.h"

namespace mm {

struct Quantized {
  Tensor indices;  // int64 [N]: the nearest code per row (the lowest index on ties)
  Tensor z_q;      // [N, D] = codebook[indices]
};

// Nearest code by squared distance, computed as taming does:
//   d[n, k] = |z_n|^2 + |e_k|^2 - 2 z_n . e_k.
// z_q's gradient flows into the codebook rows it was read from (scatter-add); indices and
// z_q have no gradient with respect to z (pair with straight_through for that).
Quantized vector_quantize(const Tensor& z, const Tensor& codebook);

}  // namespace mm
