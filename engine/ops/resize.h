// engine/ops/resize.h: image resizing: nearest upsampling, separable bilinear/bicubic/box
// resampling with torch or PIL semantics (forward and backward), and a bit-exact copy of
// PIL's uint8 Image.resize for CLIP-style preprocessing.
// Reading order: after pool.h. Test: ./build/mm_tests --source-file=*test_resize.cpp
//
//   Tensor up = mm::upsample_nearest2d(x, 2.0);                   // taming Upsample, [B,C,2H,2W]
//   Tensor a  = mm::resize(x, 224, 224, ResizeFilter::bicubic, Antialias::yes);  // PIL / torch AA
//   Tensor b  = mm::resize(x, 224, 224, ResizeFilter::bilinear, Antialias::no);  // F.interpolate
//   Tensor img = mm::resize_uint8_like_pil(rgb_hwc_u8, 224, 298, ResizeFilter::bicubic);
//
// Which semantics is which:
//   Antialias::yes = PIL's ImagingResample on float images (mode "F") = torch's
//     F.interpolate(..., antialias=True, align_corners=False): a separable filter whose
//     support widens by the scale when downscaling, center = (i + 0.5) * in/out, window
//     [int(center - support + 0.5), int(center + support + 0.5)) clipped to the image,
//     weights filter((x - center + 0.5) / max(scale, 1)) normalised to sum 1. Bicubic uses
//     a = -0.5 (Keys), bilinear the triangle, box the unit box. Applies when upscaling too.
//   Antialias::no = torch's F.interpolate(..., size=(out_h, out_w), align_corners=False):
//     src = (i + 0.5) * in/out - 0.5; bilinear clamps src at 0 and uses 2 taps; bicubic
//     uses 4 taps with clamped indices and a = -0.75 (torch's, not PIL's); box is
//     mode="area", i.e. adaptive_avg_pool2d bins.
//   resize_uint8_like_pil = PIL's Image.resize on 8-bit images (RGB, L): the Antialias::yes
//     weights in fixed point (22 fraction bits), horizontal pass first, rounded and clipped to
//     uint8 between the passes. Bit-exact with Pillow (checked against 9.4).
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mm {

// Nearest upsampling of [B, C, H, W] (or [C, H, W]) as torch's mode="nearest":
// src = min(floor(dst * scale), in - 1) with scale = in/out (size given) or 1/scale_factor.
Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor upsample_nearest2d(const Tensor& x, double scale_factor);  // out = floor(in * scale)

enum class ResizeFilter { bilinear, bicubic, box };
enum class Antialias { no, yes };

// x float32/float64 [B, C, H, W] or [C, H, W] -> [..., out_h, out_w]; differentiable (the
// backward applies the transposed weights).
Tensor resize(const Tensor& x, int64_t out_h, int64_t out_w, ResizeFilter filter, Antialias antialias);

// image uint8 [H, W, C] (PIL's layout, C = 1..4 channels resampled independently) ->
// uint8 [out_h, out_w, C], bit-exact with PIL.Image.resize((out_w, out_h), filter).
// No gradient. (RGBA would need PIL's premultiplied alpha, which is not reproduced.)
Tensor resize_uint8_like_pil(const Tensor& image, int64_t out_h, int64_t out_w, ResizeFilter filter);

}  // namespace mm
