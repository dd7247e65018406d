// engine/ops/warp.h: differentiable geometric warps by bilinear sampling: the affine and
// perspective augmentations of VQGAN+CLIP's cutouts. Tested by tests/engine/test_warp.cpp.
//
//   // out(x, y) = in(M · (x, y, 1)) for each image, in pixel coordinates (pixel centres at
//   // integer + 0.5), with border replication outside the input:
//   Tensor y = mm::warp_perspective(x, M, WarpPadding::border);   // x [B, C, H, W], M [B, 3, 3]
//
// The gradient flows to x (the sampling positions are constants).
#pragma once
#include "engine/tensor.h"

namespace mm {

enum class WarpPadding { zeros, border };

// M maps output pixel coordinates to input pixel coordinates (homogeneous, divided by the
// third row). Output has the input's spatial size unless out_h/out_w are given.
Tensor warp_perspective(const Tensor& x, const Tensor& M, WarpPadding padding = WarpPadding::border,
                        int64_t out_h = -1, int64_t out_w = -1);

}  // namespace mm
