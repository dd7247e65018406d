// engine/ops/shape_ops.h: ops that build tensors from others by position: cat, stack,
// split, index_select, gather, embedding. (Views such as reshape/permute/narrow are
// methods of Tensor, in engine/tensor.h.) Tested by tests/engine/test_shape_ops.cpp.
//
//   Tensor xy = mm::cat({x, y}, 1);                  // [B, 3] and [B, 5] -> [B, 8]
//   auto parts = mm::split(qkv, 512, -1);            // three [B, T, 512] views
//   Tensor tok = mm::embedding(ids, token_embedding); // ids int64 [B, T] -> [B, T, D]
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace mm {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// Views of `size` elements along dim (the last may be shorter), as torch.split.
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);

// out = x.index_select(dim, index): index int64 [n] picks slices along dim.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (torch.gather); index int64, same rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// Rows of weight [V, D] picked by ids (any shape, int64): result [..., D].
Tensor embedding(const Tensor& ids, const Tensor& weight);

}  // namespace mm
