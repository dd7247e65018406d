// engine/ops/pool.h: 2-D pooling (average, adaptive average, max) and padding
// (constant / reflect / replicate), forward and backward on the CPU.
// Reading order: after conv.h. Test: ./build/mm_tests --source-file=*test_pool.cpp
//
//   Tensor y = mm::avg_pool2d(x, {2, 2});                  // x [B, C, H, W] -> [B, C, H/2, W/2]
//   Tensor z = mm::adaptive_avg_pool2d(x, 7, 7);            // -> [B, C, 7, 7]
//   Tensor m = mm::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});   // ResNet stem
//   Tensor p = mm::pad(x, {0, 1, 0, 1});                   // right 1, bottom 1 (taming Downsample)
//   Tensor r = mm::pad(x, {2, 2, 2, 2}, PadMode::reflect);
//
// The pools take [B, C, H, W] or [C, H, W] (any leading dims are planes) in float32/float64,
// with torch.nn.functional semantics: stride {0, 0} means stride = kernel, padding is
// implicit (zeros for average, -inf for max) and at most half the kernel, floor output size
// OH = (H + 2*ph - kh) / sh + 1 (ceil_mode is not supported).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace mm {

// Average pooling divisor at the borders: the whole window (padding zeros count, torch's
// default) or only the input elements the window covers.
enum class CountIncludePad { no, yes };

Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                  std::array<int64_t, 2> padding = {0, 0}, CountIncludePad count = CountIncludePad::yes);

// Output cell (i, j) averages rows [floor(i*H/OH), ceil((i+1)*H/OH)) and the same for
// columns, as torch.nn.functional.adaptive_avg_pool2d (bins may overlap).
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

// Max over each window; the gradient goes to the (first) maximum. NaN propagates as in torch.
Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                  std::array<int64_t, 2> padding = {0, 0});

// ---- padding -------------------------------------------------------------------------------
// torch.nn.functional.pad: pads = {last_before, last_after, second_last_before, ...}, so
// {left, right, top, bottom} pads W then H. constant: `value` (negative pads crop);
// reflect: mirror without repeating the edge (pad < size); replicate: repeat the edge.
enum class PadMode { constant, reflect, replicate };

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode = PadMode::constant,
           double value = 0.0);

}  // namespace mm
