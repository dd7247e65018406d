// engine/ops/conv.h: 2-D convolution (NCHW), forward and backward on the CPU, on the GEMM.
// Reading order: after elementwise.h/reduce.h; the GEMM it stands on is kernels/gemm.h.
// Test:  ./build/mm_tests --source-file=*test_conv.cpp
// Bench: ./build/mmbench conv2d --c 128 --k 128 --h 64 --w 64 --kh 3 --batch 1 --threads 2
//        bench/compare_cpu.sh (against torch.nn.functional.conv2d / oneDNN)
//
//   // x [1, 3, 224, 224], w [64, 3, 7, 7] -> y [1, 64, 112, 112]
//   Tensor y = mm::conv2d(x, w, b, mm::conv2d_options(/*stride=*/2, /*padding=*/3));
//   // taming's Downsample: pad (0, 1, 0, 1) then a 3x3 stride-2 conv
//   Conv2dOptions o;
//   o.stride = {2, 2};
//   o.padding = {0, 1, 0, 1};   // top, bottom, left, right
//   Tensor z = mm::conv2d(x, w, b, o);
//
// out[b, o, i, j] = bias[o] + sum_{c, p, q} W[o, c, p, q] * x_pad[b, g*C_g + c, i*sh + p*dh, j*sw + q*dw]
// with g = o / O_g the group of output channel o, C_g = C / groups, O_g = O / groups.
// Output size: OH = (H + top + bottom - dh*(KH-1) - 1) / sh + 1 (floor), likewise OW.
#pragma once
#include <array>
#include <cstdint>

#include "engine/tensor.h"

namespace mm {

struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};        // {sh, sw}
  std::array<int64_t, 4> padding{0, 0, 0, 0};  // {top, bottom, left, right}, zeros
  std::array<int64_t, 2> dilation{1, 1};      // {dh, dw}
  int64_t groups = 1;
};

// Symmetric options as torch.nn.Conv2d(stride=s, padding=p, dilation=d, groups=g).
Conv2dOptions conv2d_options(int64_t stride = 1, int64_t padding = 0, int64_t dilation = 1,
                             int64_t groups = 1);

// x [B, C, H, W], weight [O, C/groups, KH, KW], bias [O] or an undefined Tensor -> [B, O, OH, OW].
// float32 (implicit-im2col SGEMM) or float64 (materialised im2col + DGEMM, for gradient checks).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv2dOptions& options = Conv2dOptions());

}  // namespace mm
