// engine/shape.h: shapes, strides and the shape letters used across mm.
// Reading order: after dtype.h.
//
// Shape letters (used in comments such as `// q: [B, NH, T, HS]`):
//   B batch, T tokens, C channels, H/W spatial, NH heads, HS head size,
//   K codebook entries, D code dimension.
// Layout follows the checkpoints: NCHW for images, [B, T, C] for sequences, last dim innermost.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mm {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"

// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// Broadcast two shapes NumPy-style; throws naming `op` and both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace mm
