// kernels/cuda/resample.cu: nearest 2x upsampling (taming's decoder), window average and max
// pooling (ModifiedResNet's anti-aliased downsampling) with their backwards, adaptive average pooling
// (VQGAN+CLIP's cutouts resized by area) and the bilinear perspective warp of the cutouts'
// augmentations, with the backwards generation needs. Memory-bound gathers.
#include "kernels/cuda/common.cuh"

namespace mm::cuda {

namespace {
__global__ void upsample2x_k(const float* __restrict__ x, float* __restrict__ y, int64_t H, int64_t W, int64_t n) {
  const int64_t W2 = 2 * W, H2 = 2 * H;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = t % W2, oh = (t / W2) % H2, p = t / (W2 * H2);
    y[t] = x[(p * H + oh / 2) * W + ow / 2];
  }
}
__global__ void upsample2x_backward_k(const float* __restrict__ dy, float* __restrict__ dx, int64_t H, int64_t W,
                                      int64_t n) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = t % W, h = (t / W) % H, p = t / (W * H);
    const float* r = dy + (p * 2 * H + 2 * h) * 2 * W + 2 * w;
    dx[t] = (r[0] + r[1]) + (r[2 * W] + r[2 * W + 1]);
  }
}

__device__ __forceinline__ int64_t bin_start(int64_t o, int64_t in, int64_t out) { return o * in / out; }
__device__ __forceinline__ int64_t bin_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

__global__ void adaptive_pool_k(const float* __restrict__ x, float* __restrict__ y, int64_t H, int64_t W, int64_t OH,
                                int64_t OW, int64_t n) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = t % OW, oh = (t / OW) % OH, p = t / (OW * OH);
    const int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH), w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
    float s = 0.0f;
    for (int64_t i = h0; i < h1; ++i)
      for (int64_t j = w0; j < w1; ++j) s += x[(p * H + i) * W + j];
    y[t] = s / float((h1 - h0) * (w1 - w0));
  }
}
// Each input pixel sums dy / (bin area) over the bins that hold it: the bins o with
// bin_start(o) <= h < bin_end(o) lie within one of h·OH/H (they overlap by at most a pixel).
__global__ void adaptive_pool_backward_k(const float* __restrict__ dy, float* __restrict__ dx, int64_t H, int64_t W,
                                         int64_t OH, int64_t OW, int64_t n) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = t % W, h = (t / W) % H, p = t / (W * H);
    const int64_t oh_lo = h * OH / H > 0 ? h * OH / H - 1 : 0, ow_lo = w * OW / W > 0 ? w * OW / W - 1 : 0;
    const int64_t oh_hi = (h + 1) * OH / H + 1 < OH ? (h + 1) * OH / H + 1 : OH - 1;
    const int64_t ow_hi = (w + 1) * OW / W + 1 < OW ? (w + 1) * OW / W + 1 : OW - 1;
    float s = 0.0f;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
      const int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
      if (h < h0 || h >= h1) continue;
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        const int64_t w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
        if (w < w0 || w >= w1) continue;
        s += dy[(p * OH + oh) * OW + ow] / float((h1 - h0) * (w1 - w0));
      }
    }
    dx[t] = s;
  }
}

// The four bilinear taps of output pixel (i, j) (as the CPU op: coordinates in float64).
struct Taps {
  int64_t idx[4];
  float w[4];
};
__device__ Taps warp_taps(const double* m, int64_t H, int64_t W, int64_t i, int64_t j, bool border) {
  const double x = j + 0.5, y = i + 0.5;
  const double d = m[6] * x + m[7] * y + m[8];
  double sx = (m[0] * x + m[1] * y + m[2]) / d - 0.5, sy = (m[3] * x + m[4] * y + m[5]) / d - 0.5;
  if (!isfinite(sx) || !isfinite(sy)) sx = sy = -1e9;
  if (border) {
    sx = fmin(fmax(sx, 0.0), double(W - 1));
    sy = fmin(fmax(sy, 0.0), double(H - 1));
  }
  const double fx = floor(sx), fy = floor(sy);
  const int64_t x0 = int64_t(fmax(-2.0, fmin(fx, double(W) + 1))), y0 = int64_t(fmax(-2.0, fmin(fy, double(H) + 1)));
  const double ax = sx - fx, ay = sy - fy;
  Taps t;
  for (int k = 0; k < 4; ++k) {
    const int64_t xx = x0 + (k & 1), yy = y0 + (k >> 1);
    const bool inside = xx >= 0 && xx < W && yy >= 0 && yy < H;
    t.idx[k] = inside ? yy * W + xx : -1;
    t.w[k] = inside ? float(((k & 1) ? ax : 1 - ax) * ((k >> 1) ? ay : 1 - ay)) : 0.0f;
  }
  return t;
}
// One thread per output pixel of one image; the channels reuse its taps.
__global__ void warp_k(const float* __restrict__ x, const double* __restrict__ m, float* __restrict__ y, int64_t C,
                       int64_t H, int64_t W, int64_t OH, int64_t OW, bool border, int64_t n) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = t % OW, i = (t / OW) % OH, b = t / (OW * OH);
    const Taps tp = warp_taps(m + b * 9, H, W, i, j, border);
    for (int64_t c = 0; c < C; ++c) {
      const float* src = x + (b * C + c) * H * W;
      float acc = 0.0f;
      for (int k = 0; k < 4; ++k)
        if (tp.idx[k] >= 0) acc += tp.w[k] * src[tp.idx[k]];
      y[((b * C + c) * OH + i) * OW + j] = acc;
    }
  }
}
__global__ void warp_backward_k(const float* __restrict__ dy, const double* __restrict__ m, float* __restrict__ dx,
                                int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, bool border, int64_t n) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = t % OW, i = (t / OW) % OH, b = t / (OW * OH);
    const Taps tp = warp_taps(m + b * 9, H, W, i, j, border);
    for (int64_t c = 0; c < C; ++c) {
      const float g = dy[((b * C + c) * OH + i) * OW + j];
      float* dst = dx + (b * C + c) * H * W;
      for (int k = 0; k < 4; ++k)
        if (tp.idx[k] >= 0) atomicAdd(dst + tp.idx[k], tp.w[k] * g);
    }
  }
}
}  // namespace

void upsample_nearest2x_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W) {
  const int64_t n = planes * H * W;
  if (n == 0) return;
  upsample2x_backward_k<<<grid_for(n, 256), 256, 0, stream()>>>(dy, dx, H, W, n);
  MM_CUDA_LAUNCHED("upsample_nearest2x_backward");
}

void adaptive_avg_pool2d(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  MM_CHECK(H > 0 && W > 0 && OH > 0 && OW > 0, "[cuda] adaptive_avg_pool2d: ", H, "x", W, " to ", OH, "x", OW);
  const int64_t n = planes * OH * OW;
  if (n == 0) return;
  adaptive_pool_k<<<grid_for(n, 256), 256, 0, stream()>>>(x, y, H, W, OH, OW, n);
  MM_CUDA_LAUNCHED("adaptive_avg_pool2d");
}

void adaptive_avg_pool2d_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                  int64_t OW) {
  MM_CHECK(H > 0 && W > 0 && OH > 0 && OW > 0, "[cuda] adaptive_avg_pool2d_backward: ", H, "x", W, " to ", OH, "x", OW);
  const int64_t n = planes * H * W;
  if (n == 0) return;
  adaptive_pool_backward_k<<<grid_for(n, 256), 256, 0, stream()>>>(dy, dx, H, W, OH, OW, n);
  MM_CUDA_LAUNCHED("adaptive_avg_pool2d_backward");
}

void warp_perspective(const float* x, const double* m, float* y, int64_t B, int64_t C, int64_t H, int64_t W,
                      int64_t OH, int64_t OW, bool border) {
  const int64_t n = B * OH * OW;
  if (n == 0 || C == 0) return;
  warp_k<<<grid_for(n, 256), 256, 0, stream()>>>(x, m, y, C, H, W, OH, OW, border, n);
  MM_CUDA_LAUNCHED("warp_perspective");
}

void warp_perspective_backward(const float* dy, const double* m, float* dx, int64_t B, int64_t C, int64_t H,
                               int64_t W, int64_t OH, int64_t OW, bool border) {
  fill_bytes(dx, 0, size_t(B * C * H * W) * sizeof(float));
  const int64_t n = B * OH * OW;
  if (n == 0 || C == 0) return;
  warp_backward_k<<<grid_for(n, 256), 256, 0, stream()>>>(dy, m, dx, C, H, W, OH, OW, border, n);
  MM_CUDA_LAUNCHED("warp_perspective_backward");
}

void upsample_nearest2x(const float* x, float* y, int64_t planes, int64_t H, int64_t W) {
  const int64_t n = planes * 4 * H * W;
  if (n == 0) return;
  upsample2x_k<<<grid_for(n, 256), 256, 0, stream()>>>(x, y, H, W, n);
  MM_CUDA_LAUNCHED("upsample_nearest2x");
}

namespace {
// Output (i, j)'s window: rows [h0, h1), columns [w0, w1) of the input, and torch's divisor.
struct Window {
  int64_t h0, h1, w0, w1;
  float divisor;
};
__device__ __forceinline__ Window avg_window(const Pool2d& g, int64_t i, int64_t j, bool count_pad) {
  int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
  int64_t h1 = min(h0 + g.kh, g.H + g.ph), w1 = min(w0 + g.kw, g.W + g.pw);
  const int64_t padded_area = (h1 - h0) * (w1 - w0);
  h0 = max(h0, int64_t(0)), w0 = max(w0, int64_t(0)), h1 = min(h1, g.H), w1 = min(w1, g.W);
  return {h0, h1, w0, w1, float(count_pad ? padded_area : (h1 - h0) * (w1 - w0))};
}
}  // namespace

void avg_pool2d_window(const float* x, float* y, const Pool2d& g, bool count_pad) {
  launch_each(g.planes * g.OH * g.OW, "avg_pool2d", [=] __device__(int64_t t) {
    const int64_t j = t % g.OW, i = (t / g.OW) % g.OH, p = t / (g.OW * g.OH);
    const Window w = avg_window(g, i, j, count_pad);
    const float* in = x + p * g.H * g.W;
    float s = 0.0f;
    for (int64_t h = w.h0; h < w.h1; ++h)
      for (int64_t c = w.w0; c < w.w1; ++c) s += in[h * g.W + c];
    y[t] = s / w.divisor;
  });
}

void avg_pool2d_window_backward(const float* dy, float* dx, const Pool2d& g, bool count_pad) {
  // a gather: each input pixel sums dy / divisor over the windows that cover it
  launch_each(g.planes * g.H * g.W, "avg_pool2d_backward", [=] __device__(int64_t t) {
    const int64_t c = t % g.W, h = (t / g.W) % g.H, p = t / (g.W * g.H);
    // windows i with i·sh - ph <= h < i·sh - ph + kh
    const int64_t i0 = max(int64_t(0), (h + g.ph - g.kh + g.sh) / g.sh), i1 = min(g.OH - 1, (h + g.ph) / g.sh);
    const int64_t j0 = max(int64_t(0), (c + g.pw - g.kw + g.sw) / g.sw), j1 = min(g.OW - 1, (c + g.pw) / g.sw);
    const float* go = dy + p * g.OH * g.OW;
    float s = 0.0f;
    for (int64_t i = i0; i <= i1; ++i)
      for (int64_t j = j0; j <= j1; ++j) {
        const Window w = avg_window(g, i, j, count_pad);
        if (h >= w.h0 && h < w.h1 && c >= w.w0 && c < w.w1) s += go[i * g.OW + j] / w.divisor;
      }
    dx[t] = s;
  });
}

void max_pool2d(const float* x, float* y, int64_t* argmax, const Pool2d& g) {
  launch_each(g.planes * g.OH * g.OW, "max_pool2d", [=] __device__(int64_t t) {
    const int64_t j = t % g.OW, i = (t / g.OW) % g.OH, p = t / (g.OW * g.OH);
    const int64_t h0 = max(i * g.sh - g.ph, int64_t(0)), h1 = min(i * g.sh - g.ph + g.kh, g.H);
    const int64_t w0 = max(j * g.sw - g.pw, int64_t(0)), w1 = min(j * g.sw - g.pw + g.kw, g.W);
    const float* in = x + p * g.H * g.W;
    float best = -INFINITY;
    int64_t at = h0 * g.W + w0;
    for (int64_t h = h0; h < h1 && !isnan(best); ++h)
      for (int64_t c = w0; c < w1; ++c) {
        const float v = in[h * g.W + c];
        if (v > best || isnan(v)) {
          best = v, at = h * g.W + c;
          if (isnan(v)) break;
        }
      }
    y[t] = best;
    argmax[t] = at;
  });
}

void max_pool2d_backward(const float* dy, const int64_t* argmax, float* dx, const Pool2d& g) {
  fill_bytes(dx, 0, g.planes * g.H * g.W * sizeof(float));
  launch_each(g.planes * g.OH * g.OW, "max_pool2d_backward", [=] __device__(int64_t t) {
    const int64_t p = t / (g.OW * g.OH);
    atomicAdd(dx + p * g.H * g.W + argmax[t], dy[t]);
  });
}

}  // namespace mm::cuda
