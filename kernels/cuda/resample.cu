// kernels/cuda/resample.cu: nearest 2x upsampling (taming's decoder) and average pooling
// with stride = kernel (ModifiedResNet's anti-aliased downsampling). Memory-bound gathers.
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
__global__ void avg_pool_k(const float* __restrict__ x, float* __restrict__ y, int64_t H, int64_t W, int64_t k,
                           int64_t n) {
  const int64_t OH = H / k, OW = W / k;
  const float inv = 1.0f / float(k * k);
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = t % OW, oh = (t / OW) % OH, p = t / (OW * OH);
    float s = 0.0f;
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) s += x[(p * H + oh * k + i) * W + ow * k + j];
    y[t] = s * inv;
  }
}
}  // namespace

void upsample_nearest2x(const float* x, float* y, int64_t planes, int64_t H, int64_t W) {
  const int64_t n = planes * 4 * H * W;
  if (n == 0) return;
  upsample2x_k<<<grid_for(n, 256), 256, 0, stream()>>>(x, y, H, W, n);
  MM_CUDA_LAUNCHED("upsample_nearest2x");
}

void avg_pool2d(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t k) {
  MM_CHECK(k >= 1 && H >= k && W >= k, "[cuda] avg_pool2d: kernel ", k, " does not fit ", H, "x", W);
  const int64_t n = planes * (H / k) * (W / k);
  if (n == 0) return;
  avg_pool_k<<<grid_for(n, 256), 256, 0, stream()>>>(x, y, H, W, k, n);
  MM_CUDA_LAUNCHED("avg_pool2d");
}

}  // namespace mm::cuda
