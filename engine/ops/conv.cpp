// engine/ops/conv.cpp: conv2d forward on the GEMM with an implicit (never materialised)
// im2col, and its backward right beneath.
// Reading order: after engine/ops/conv.h and kernels/gemm.h.
// Test:  ./build/mm_tests --source-file=*test_conv.cpp
// Bench: ./build/mmbench conv2d --c 128 --k 128 --h 64 --w 64 --kh 3 --batch 1 --threads 2
//
// One image b and group g is one GEMM (N = OH*OW output pixels, Kd = C_g*KH*KW taps):
//   Y_bg[O_g, N] = W_g[O_g, Kd] @ cols_bg[Kd, N]
//   cols_bg[(c*KH + p)*KW + q, i*OW + j] = x_pad[b, g*C_g + c, i*sh + p*dh, j*sw + q*dw]
// float32: kernels::sgemm_implicit_b asks for [kc, nc<=32] blocks of cols while it packs B,
//   and im2col_block fills them straight from x (one contiguous copy per tap and output row when
//   sw == 1), so the cols matrix (9x the input for a 3x3 conv) never exists in memory.
// float64: cols is materialised per image and group and multiplied with dgemm (gradcheck sizes).
// A 1x1, stride-1, unpadded conv needs no im2col at all: cols_bg is x_bg viewed as [C_g, H*W].
// Bias: Y is pre-filled with bias[o] and the GEMM accumulates into it (beta = 1).
// Many small GEMMs (batched small images, depthwise convs) run in parallel over (b, g), each
// GEMM single-threaded; large ones run one after the other, each using all threads.
// Measured (bench/compare_cpu.sh, 3x3 128->128 ch, 64x64, batch 1, shared 2-core Zen 5, load ~4):
//   2 threads mm 32.8 vs torch/oneDNN 17.7 GFLOP/s (1.85x); 1 thread 44.6 vs 26.5 (1.68x).
//   im2col inside fill_b is ~13% of the forward's profile, the micro-kernel ~50%.
#include "engine/ops/conv.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/pool.h"
#include "engine/ops/shape_ops.h"
#include "kernels/cpu/loops.h"
#include "kernels/gemm.h"

namespace mm {

using kernels::dispatch_float;

Conv2dOptions conv2d_options(int64_t stride, int64_t padding, int64_t dilation, int64_t groups) {
  Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {padding, padding, padding, padding};
  o.dilation = {dilation, dilation};
  o.groups = groups;
  return o;
}

namespace {

// Everything about one conv2d call's sizes.
struct ConvGeom {
  int64_t B, C, H, W;      // input
  int64_t O, KH, KW;       // weight [O, C_g, KH, KW]
  int64_t OH, OW;          // output
  int64_t sh, sw, pt, pl, dh, dw;
  int64_t groups, Cg, Og;
  int64_t taps() const { return Cg * KH * KW; }  // Kd: GEMM depth
  int64_t pixels() const { return OH * OW; }     // N: GEMM width
  bool is_pointwise() const {                    // 1x1, stride 1, no padding: cols = x
    return KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
  }
};

ConvGeom check_and_plan(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  MM_CHECK(x.defined() && weight.defined(), "[conv2d] undefined input or weight");
  MM_CHECK(x.dim() == 4, "[conv2d] expects input [B, C, H, W], got ", x.str());
  MM_CHECK(weight.dim() == 4, "[conv2d] expects weight [O, C/groups, KH, KW], got ", weight.str());
  MM_CHECK(x.dtype() == weight.dtype(), "[conv2d] dtype mismatch: input ", x.str(), ", weight ", weight.str());
  MM_CHECK(o.groups >= 1, "[conv2d] groups must be >= 1, got ", o.groups);
  MM_CHECK(o.stride[0] >= 1 && o.stride[1] >= 1, "[conv2d] stride must be >= 1, got {", o.stride[0], ", ",
           o.stride[1], "}");
  MM_CHECK(o.dilation[0] >= 1 && o.dilation[1] >= 1, "[conv2d] dilation must be >= 1, got {", o.dilation[0],
           ", ", o.dilation[1], "}");
  for (int64_t p : o.padding)
    MM_CHECK(p >= 0, "[conv2d] padding must be >= 0, got {", o.padding[0], ", ", o.padding[1], ", ",
             o.padding[2], ", ", o.padding[3], "} (top, bottom, left, right)");
  ConvGeom g;
  g.B = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = weight.size(0), g.KH = weight.size(2), g.KW = weight.size(3);
  g.groups = o.groups;
  g.sh = o.stride[0], g.sw = o.stride[1], g.dh = o.dilation[0], g.dw = o.dilation[1];
  g.pt = o.padding[0], g.pl = o.padding[2];
  MM_CHECK(g.KH >= 1 && g.KW >= 1 && g.O >= 1, "[conv2d] empty weight ", weight.str());
  MM_CHECK(weight.size(1) * g.groups == g.C, "[conv2d] weight ", shape_str(weight.shape()), " expects ",
           weight.size(1) * g.groups, " input channels", g.groups > 1 ? str_cat(" (", g.groups, " groups)") : "",
           ", got input ", shape_str(x.shape()));
  MM_CHECK(g.O % g.groups == 0, "[conv2d] ", g.O, " output channels of weight ", shape_str(weight.shape()),
           " do not split into ", g.groups, " groups");
  g.Cg = g.C / g.groups, g.Og = g.O / g.groups;
  const int64_t eff_h = g.dh * (g.KH - 1) + 1, eff_w = g.dw * (g.KW - 1) + 1;
  const int64_t padded_h = g.H + o.padding[0] + o.padding[1], padded_w = g.W + o.padding[2] + o.padding[3];
  MM_CHECK(padded_h >= eff_h && padded_w >= eff_w, "[conv2d] input ", shape_str(x.shape()), " (padded ", padded_h,
           "x", padded_w, ") is smaller than the kernel of weight ", shape_str(weight.shape()), " (dilated ", eff_h,
           "x", eff_w, ")");
  g.OH = (padded_h - eff_h) / g.sh + 1;
  g.OW = (padded_w - eff_w) / g.sw + 1;
  if (bias.defined()) {
    MM_CHECK(bias.dtype() == x.dtype(), "[conv2d] dtype mismatch: input ", x.str(), ", bias ", bias.str());
    MM_CHECK(bias.dim() == 1 && bias.size(0) == g.O, "[conv2d] bias ", shape_str(bias.shape()),
             " does not match weight ", shape_str(weight.shape()), " (expected [", g.O, "])");
  }
  return g;
}

// dst[0:n] = src[0:n] for the short runs of im2col (usually 32 floats): fixed-size memcpy
// compiles to inline vector moves, where a libc memcpy call per run (or a scalar loop, which
// -O2 does not vectorise for fear of aliasing) cost more than the copy itself.
template <typename T>
inline void copy_run(T* dst, const T* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) std::memcpy(dst + i, src + i, 16 * sizeof(T));  // inlined vector moves
  for (; i < n; ++i) dst[i] = src[i];
}

// dst[0:n] += src[0:n] for col2im's runs, vectorised the same way (through a local block, so
// the compiler need not prove dst and src apart).
template <typename T>
inline void add_run(T* dst, const T* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    T a[16], b[16];
    std::memcpy(a, dst + i, sizeof(a));
    std::memcpy(b, src + i, sizeof(b));
    for (int k = 0; k < 16; ++k) a[k] += b[k];
    std::memcpy(dst + i, a, sizeof(a));
  }
  for (; i < n; ++i) dst[i] += src[i];
}

// dst[kk * ld + nn] = cols[k0 + kk][n0 + nn] for kk < kc, nn < nc, for one image and group;
// x_g points at that image's channel g*C_g ([C_g, H, W] contiguous). Zeros where the tap
// falls into the padding. Walks taps (c, p, q) incrementally and each output row in one run.
template <typename T>
void im2col_block(const ConvGeom& g, const T* x_g, int64_t k0, int64_t kc, int64_t n0, int64_t nc, T* dst,
                  int64_t ld) {
  const int64_t KK = g.KH * g.KW, HW = g.H * g.W;
  int64_t c = k0 / KK, p = (k0 % KK) / g.KW, q = k0 % g.KW;
  const int64_t i0 = n0 / g.OW, j0 = n0 % g.OW;
  for (int64_t kk = 0; kk < kc; ++kk) {
    const T* plane = x_g + c * HW;
    T* d = dst + kk * ld;
    const int64_t ih_off = p * g.dh - g.pt, iw_off = q * g.dw - g.pl;
    int64_t i = i0, j = j0, nn = 0;
    while (nn < nc) {
      const int64_t seg = std::min(nc - nn, g.OW - j);  // pixels left in output row i
      const int64_t ih = i * g.sh + ih_off;
      T* out = d + nn;
      if (ih < 0 || ih >= g.H) {
        std::fill(out, out + seg, T(0));
      } else if (g.sw == 1) {
        // iw = j + s + iw_off for s < seg; valid where 0 <= iw < W.
        const T* row = plane + ih * g.W + j + iw_off;
        const int64_t lo = std::clamp<int64_t>(-(j + iw_off), 0, seg);
        const int64_t hi = std::clamp<int64_t>(g.W - (j + iw_off), lo, seg);
        for (int64_t s = 0; s < lo; ++s) out[s] = T(0);
        copy_run(out + lo, row + lo, hi - lo);
        for (int64_t s = hi; s < seg; ++s) out[s] = T(0);
      } else {
        const T* row = plane + ih * g.W;
        for (int64_t s = 0; s < seg; ++s) {
          const int64_t iw = (j + s) * g.sw + iw_off;
          out[s] = (iw >= 0 && iw < g.W) ? row[iw] : T(0);
        }
      }
      nn += seg;
      j = 0;
      ++i;
    }
    if (++q == g.KW) {
      q = 0;
      if (++p == g.KH) p = 0, ++c;
    }
  }
}

// The transpose of im2col_block: dx_g[...] += src[kk * ld + nn] at the positions im2col reads.
// Callers split work by whole channels (k0 a multiple of KH*KW), so threads never share a plane.
template <typename T>
void col2im_block(const ConvGeom& g, T* dx_g, int64_t k0, int64_t kc, int64_t n0, int64_t nc, const T* src,
                  int64_t ld) {
  const int64_t KK = g.KH * g.KW, HW = g.H * g.W;
  int64_t c = k0 / KK, p = (k0 % KK) / g.KW, q = k0 % g.KW;
  const int64_t i0 = n0 / g.OW, j0 = n0 % g.OW;
  for (int64_t kk = 0; kk < kc; ++kk) {
    T* plane = dx_g + c * HW;
    const T* s_row = src + kk * ld;
    const int64_t ih_off = p * g.dh - g.pt, iw_off = q * g.dw - g.pl;
    int64_t i = i0, j = j0, nn = 0;
    while (nn < nc) {
      const int64_t seg = std::min(nc - nn, g.OW - j);
      const int64_t ih = i * g.sh + ih_off;
      if (ih >= 0 && ih < g.H) {
        const T* in = s_row + nn;
        if (g.sw == 1) {
          T* row = plane + ih * g.W + j + iw_off;
          const int64_t lo = std::clamp<int64_t>(-(j + iw_off), 0, seg);
          const int64_t hi = std::clamp<int64_t>(g.W - (j + iw_off), lo, seg);
          add_run(row + lo, in + lo, hi - lo);
        } else {
          T* row = plane + ih * g.W;
          for (int64_t s = 0; s < seg; ++s) {
            const int64_t iw = (j + s) * g.sw + iw_off;
            if (iw >= 0 && iw < g.W) row[iw] += in[s];
          }
        }
      }
      nn += seg;
      j = 0;
      ++i;
    }
    if (++q == g.KW) {
      q = 0;
      if (++p == g.KH) p = 0, ++c;
    }
  }
}

// Materialises cols[:, n0:n0+nc] ([Kd, nc] row-major) in parallel over channels.
template <typename T>
void im2col(const ConvGeom& g, const T* x_g, int64_t n0, int64_t nc, T* cols) {
  const int64_t KK = g.KH * g.KW;
  parallel_for(0, g.Cg, std::max<int64_t>(1, 65536 / std::max<int64_t>(KK * nc, 1)), [&](int64_t c0, int64_t c1) {
    im2col_block(g, x_g, c0 * KK, (c1 - c0) * KK, n0, nc, cols + c0 * KK * nc, nc);
  });
}

template <typename T>
void col2im(const ConvGeom& g, T* dx_g, int64_t n0, int64_t nc, const T* cols) {
  const int64_t KK = g.KH * g.KW;
  parallel_for(0, g.Cg, std::max<int64_t>(1, 65536 / std::max<int64_t>(KK * nc, 1)), [&](int64_t c0, int64_t c1) {
    col2im_block(g, dx_g, c0 * KK, (c1 - c0) * KK, n0, nc, cols + c0 * KK * nc, nc);
  });
}

// C[M,N] = A @ B + beta*C with strided A and B, in float (sgemm) or double (dgemm).
void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t ars, int64_t acs, const float* b, int64_t brs,
          int64_t bcs, float beta, float* c, int64_t ldc) {
  kernels::sgemm(M, N, K, 1.f, {a, ars, acs}, {b, brs, bcs}, beta, c, ldc);
}
void gemm(int64_t M, int64_t N, int64_t K, const double* a, int64_t ars, int64_t acs, const double* b, int64_t brs,
          int64_t bcs, double beta, double* c, int64_t ldc) {
  kernels::dgemm(M, N, K, 1.0, {a, ars, acs}, {b, brs, bcs}, beta, c, ldc);
}

// Output pixels per chunk when a backward materialises cols: whole output rows, about 1M
// elements of cols (4 MiB in float32, L3-resident between im2col and the GEMM), so a
// 256x256 VQGAN layer does not need a 300 MB buffer.
int64_t chunk_pixels(const ConvGeom& g) {
  const int64_t rows = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(g.taps() * g.OW, 1));
  return std::min(g.pixels(), rows * g.OW);
}

// The cols buffer of the backward, kept per thread between calls: a fresh multi-MiB buffer
// costs more in page faults (and std::vector's zeroing) than the im2col that fills it.
template <typename T>
T* scratch(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// Runs fn(b, grp) for every image and group: in parallel over them when each GEMM is small
// (each GEMM then runs on one thread), else one after the other with multi-threaded GEMMs.
template <typename F>
void for_each_image_group(const ConvGeom& g, F fn) {
  const int64_t jobs = g.B * g.groups;
  const int64_t work = g.Og * g.pixels() * g.taps();  // multiply-adds of one GEMM
  if (jobs > 1 && work < (int64_t{1} << 22)) {
    parallel_for(0, jobs, 1, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) fn(j / g.groups, j % g.groups);
    });
  } else {
    for (int64_t j = 0; j < jobs; ++j) fn(j / g.groups, j % g.groups);
  }
}

template <typename T>
void conv2d_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t Kd = g.taps(), N = g.pixels();
  for_each_image_group(g, [&](int64_t b, int64_t grp) {
    const T* x_g = x + (b * g.C + grp * g.Cg) * g.H * g.W;  // [C_g, H, W]
    const T* w_g = w + grp * g.Og * Kd;                     // [O_g, Kd]
    T* y_g = y + (b * g.O + grp * g.Og) * N;                // [O_g, N]
    if (bias)
      for (int64_t o = 0; o < g.Og; ++o) std::fill(y_g + o * N, y_g + (o + 1) * N, bias[grp * g.Og + o]);
    const T beta = bias ? T(1) : T(0);
    if (g.is_pointwise()) {
      gemm(g.Og, N, Kd, w_g, Kd, 1, x_g, N, 1, beta, y_g, N);
    } else if constexpr (std::is_same_v<T, float>) {
      const kernels::FillB fill = [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* dst) {
        im2col_block(g, x_g, k0, kc, n0, nc, dst, nc);
      };
      kernels::sgemm_implicit_b(g.Og, N, Kd, 1.f, {w_g, Kd, 1}, fill, beta, y_g, N);
    } else {
      std::vector<T> cols(static_cast<size_t>(Kd * N));
      im2col(g, x_g, 0, N, cols.data());
      gemm(g.Og, N, Kd, w_g, Kd, 1, cols.data(), N, 1, beta, y_g, N);
    }
  });
}

// ---- backward -----------------------------------------------------------------------------
// With dY_bg [O_g, N] the output gradient of one image and group:
//   dbias[o] = sum_{b, i, j} dY[b, o, i, j]
//   dW_g     = sum_b dY_bg @ cols_bg^T                 [O_g, Kd]
//   dx_bg    = col2im(W_g^T @ dY_bg)                   (col2im scatter-adds each tap back)
// cols and dcols are materialised a chunk of output pixels at a time (chunk_pixels), in
// float32 too: the GEMMs dominate, and a transposed implicit B would be a strided fill.
template <typename T>
void conv2d_backward(const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias) {
  const int64_t Kd = g.taps(), N = g.pixels(), HW = g.H * g.W;
  if (dbias) {
    for (int64_t o = 0; o < g.O; ++o) {
      double acc = 0;
      for (int64_t b = 0; b < g.B; ++b) {
        const T* p = dy + (b * g.O + o) * N;
        for (int64_t n = 0; n < N; ++n) acc += p[n];
      }
      dbias[o] = static_cast<T>(acc);
    }
  }
  if (!dx && !dw) return;
  const int64_t chunk = chunk_pixels(g);
  T* cols = g.is_pointwise() ? nullptr : scratch<T>(static_cast<size_t>(Kd * chunk));
  if (dx) std::fill(dx, dx + g.B * g.C * HW, T(0));
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    const T* w_g = w + grp * g.Og * Kd;
    T* dw_g = dw ? dw + grp * g.Og * Kd : nullptr;
    for (int64_t b = 0; b < g.B; ++b) {
      const T* x_g = x + (b * g.C + grp * g.Cg) * HW;
      T* dx_g = dx ? dx + (b * g.C + grp * g.Cg) * HW : nullptr;
      const T* dy_g = dy + (b * g.O + grp * g.Og) * N;
      if (g.is_pointwise()) {
        // dW_g += dY_bg @ x_bg^T ; dx_bg = W_g^T @ dY_bg
        if (dw_g) gemm(g.Og, Kd, N, dy_g, N, 1, x_g, 1, N, b == 0 ? T(0) : T(1), dw_g, Kd);
        if (dx_g) gemm(Kd, N, g.Og, w_g, 1, Kd, dy_g, N, 1, T(0), dx_g, N);
        continue;
      }
      for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t nc = std::min(chunk, N - n0);
        if (dw_g) {
          im2col(g, x_g, n0, nc, cols);  // cols [Kd, nc]
          const bool first = b == 0 && n0 == 0;
          gemm(g.Og, Kd, nc, dy_g + n0, N, 1, cols, 1, nc, first ? T(0) : T(1), dw_g, Kd);
        }
        if (dx_g) {
          gemm(Kd, nc, g.Og, w_g, 1, Kd, dy_g + n0, N, 1, T(0), cols, nc);  // dcols [Kd, nc]
          col2im(g, dx_g, n0, nc, cols);
        }
      }
    }
  }
}

// On the device, cuda_ops::conv2d takes one stride and the same padding on every side, with
// no groups or dilation. The other options are composed around it from differentiable device
// ops, so autograd gives their gradients:
//   groups           one convolution per group of channels, concatenated;
//   dilation         the kernel spread out, zeros between its taps: (KH - 1)·dh + 1 rows;
//   uneven padding   pad x explicitly, then convolve unpadded (taming's Downsample);
//   unequal strides  convolve at stride 1, keep every sh-th row and every sw-th column.
// All but uneven padding cost extra work (small GEMMs, zero taps, discarded outputs); none of
// the models mm implements uses them.
Tensor conv2d_device(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  Conv2dOptions rest = o;
  if (o.groups > 1) {
    const int64_t G = o.groups, Cg = x.size(1) / G, Og = weight.size(0) / G;
    rest.groups = 1;
    std::vector<Tensor> outs;
    for (int64_t g = 0; g < G; ++g)
      outs.push_back(conv2d_device(x.narrow(1, g * Cg, Cg), weight.narrow(0, g * Og, Og),
                                   bias.defined() ? bias.narrow(0, g * Og, Og) : Tensor(), rest));
    return cat(outs, 1);
  }
  const int64_t dh = o.dilation[0], dw = o.dilation[1];
  if (dh > 1 || dw > 1) {
    const int64_t O = weight.size(0), C = weight.size(1), KH = weight.size(2), KW = weight.size(3);
    // [O, C, KH, 1, KW, 1] padded to [O, C, KH, dh, KW, dw]: each tap followed by zeros
    const Tensor spread = pad(weight.reshape({O, C, KH, 1, KW, 1}), {0, dw - 1, 0, 0, 0, dh - 1})
                              .reshape({O, C, KH * dh, KW * dw})
                              .narrow(2, 0, (KH - 1) * dh + 1)
                              .narrow(3, 0, (KW - 1) * dw + 1);
    rest.dilation = {1, 1};
    return conv2d_device(x, spread, bias, rest);
  }
  const auto& p = o.padding;  // {top, bottom, left, right}
  if (!(p[0] == p[1] && p[0] == p[2] && p[0] == p[3])) {
    rest.padding = {0, 0, 0, 0};
    return conv2d_device(pad(x, {p[2], p[3], p[0], p[1]}), weight, bias, rest);
  }
  const int64_t sh = o.stride[0], sw = o.stride[1];
  if (sh != sw) {
    rest.stride = {1, 1};
    const Tensor y = conv2d_device(x, weight, bias, rest);
    auto every = [](int64_t n, int64_t step) {  // 0, step, 2·step, ... < n (index_select reads it on the host)
      std::vector<int64_t> idx;
      for (int64_t i = 0; i < n; i += step) idx.push_back(i);
      const int64_t count = static_cast<int64_t>(idx.size());
      return Tensor::from_vector(idx, {count});
    };
    return index_select(index_select(y, 2, every(y.size(2), sh)), 3, every(y.size(3), sw));
  }
  return cuda_ops::conv2d(x, weight, bias, sh, p[0]);
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  const ConvGeom g = check_and_plan(x, weight, bias, options);
  if (cuda_ops::on_device("conv2d", {&x, &weight, &bias})) return conv2d_device(x, weight, bias, options);
  // Computation runs on contiguous detached copies; the graph records the caller's tensors.
  const Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty({g.B, g.O, g.OH, g.OW}, x.dtype());
  dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv2d_forward<T>(g, xc.data<T>(), wc.data<T>(), bc.defined() ? bc.data<T>() : nullptr, y.data<T>());
  });
  std::vector<Tensor> inputs = {x, weight};
  if (bias.defined()) inputs.push_back(bias);
  if (needs_grad(inputs)) {
    const bool want_x = x.requires_grad(), want_w = weight.requires_grad();
    const bool has_bias = bias.defined(), want_b = has_bias && bias.requires_grad();
    // Saved: x only when dW is wanted, W only when dx is wanted.
    const Tensor x_saved = want_w ? xc : Tensor(), w_saved = want_x ? wc : Tensor();
    record_op("conv2d", inputs, {y}, [g, x_saved, w_saved, want_x, want_w, has_bias, want_b](const Grads& grads) {
      const Tensor dy = grads[0].contiguous();
      Tensor dx = want_x ? Tensor::empty({g.B, g.C, g.H, g.W}, dy.dtype()) : Tensor();
      Tensor dw = want_w ? Tensor::empty({g.O, g.Cg, g.KH, g.KW}, dy.dtype()) : Tensor();
      Tensor db = want_b ? Tensor::empty({g.O}, dy.dtype()) : Tensor();
      dispatch_float(dy.dtype(), "conv2d_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        conv2d_backward<T>(g, want_w ? x_saved.data<T>() : nullptr, want_x ? w_saved.data<T>() : nullptr,
                           dy.data<T>(), want_x ? dx.data<T>() : nullptr, want_w ? dw.data<T>() : nullptr,
                           want_b ? db.data<T>() : nullptr);
      });
      Grads out = {dx, dw};
      if (has_bias) out.push_back(db);
      return out;
    });
  }
  return y;
}

}  // namespace mm
