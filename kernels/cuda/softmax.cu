// kernels/cuda/softmax.cu: softmax over the last dimension, its backward, and row
// reductions. Memory-bound: the floor is one read and one write of the matrix.
// v1 (block per row) reads the row three times: for the max, for the sum, for the output.
// v2 (warp per row) reads it once into registers, folding max and sum together online
// (m' = max(m, x), s' = s·e^(m−m') + e^(x−m')), then writes: rows up to kV2MaxCols wide;
// wider rows fall back to v1.
#include "kernels/cuda/common.cuh"

namespace mm::cuda {

namespace {

__global__ void softmax_v1(const float* __restrict__ x, float* __restrict__ y, int64_t cols) {
  __shared__ float shared[32];
  const float* xr = x + blockIdx.x * cols;
  float* yr = y + blockIdx.x * cols;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
  m = block_max(m, shared);
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += __expf(xr[c] - m);
  s = block_sum(s, shared);
  const float inv = 1.0f / s;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = __expf(xr[c] - m) * inv;
}

constexpr int kV2PerLane = 32;  // values per lane held in registers
constexpr int64_t kV2MaxCols = 32 * kV2PerLane;

__global__ void softmax_v2(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const float* xr = x + row * cols;
  float v[kV2PerLane];
  float m = -INFINITY, s = 0.0f;
#pragma unroll
  for (int i = 0; i < kV2PerLane; ++i) {
    const int64_t c = lane + 32 * i;
    v[i] = c < cols ? xr[c] : -INFINITY;
    if (c < cols) {
      const float m2 = fmaxf(m, v[i]);
      if (m2 != -INFINITY) {  // all -inf so far (masked): nothing to add yet, and e^(-inf - -inf) is NaN
        s = s * __expf(m - m2) + __expf(v[i] - m2);
        m = m2;
      }
    }
  }
  // Combine the lanes' (max, sum) pairs.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float mo = __shfl_xor_sync(0xffffffffu, m, o), so = __shfl_xor_sync(0xffffffffu, s, o);
    const float m2 = fmaxf(m, mo);
    s = (m == -INFINITY ? 0.0f : s * __expf(m - m2)) + (mo == -INFINITY ? 0.0f : so * __expf(mo - m2));
    m = m2;
  }
  const float inv = 1.0f / s;
  float* yr = y + row * cols;
#pragma unroll
  for (int i = 0; i < kV2PerLane; ++i) {
    const int64_t c = lane + 32 * i;
    if (c < cols) yr[c] = __expf(v[i] - m) * inv;
  }
}

// dx = y * (dy - sum(dy * y))
__global__ void softmax_backward_k(const float* __restrict__ y, const float* __restrict__ dy, float* __restrict__ dx,
                                   int64_t cols) {
  __shared__ float shared[32];
  const int64_t off = blockIdx.x * cols;
  float d = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d += dy[off + c] * y[off + c];
  d = block_sum(d, shared);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dx[off + c] = y[off + c] * (dy[off + c] - d);
}

template <bool kMax>
__global__ void row_reduce(const float* __restrict__ x, float* __restrict__ y, int64_t cols) {
  __shared__ float shared[32];
  const float* xr = x + blockIdx.x * cols;
  float a = kMax ? -INFINITY : 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) a = kMax ? fmaxf(a, xr[c]) : a + xr[c];
  a = kMax ? block_max(a, shared) : block_sum(a, shared);
  if (threadIdx.x == 0) y[blockIdx.x] = a;
}

int row_threads(int64_t cols) { return cols >= 1024 ? 512 : cols >= 256 ? 256 : 128; }

}  // namespace

void softmax(const float* x, float* y, int64_t rows, int64_t cols, int version) {
  if (rows == 0 || cols == 0) return;
  MM_CHECK(rows < (int64_t(1) << 31), "[cuda] softmax: too many rows (", rows, ")");
  version = resolve_version("softmax", version);
  if (version == 2 && cols <= kV2MaxCols) {
    constexpr int kWarps = 4;
    softmax_v2<<<ceil_div(rows, kWarps), 32 * kWarps, 0, stream()>>>(x, y, rows, cols);
  } else {
    softmax_v1<<<static_cast<unsigned>(rows), row_threads(cols), 0, stream()>>>(x, y, cols);
  }
  MM_CUDA_LAUNCHED("softmax");
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return;
  softmax_backward_k<<<static_cast<unsigned>(rows), row_threads(cols), 0, stream()>>>(y, dy, dx, cols);
  MM_CUDA_LAUNCHED("softmax_backward");
}

void row_sum(const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  row_reduce<false><<<static_cast<unsigned>(rows), row_threads(cols), 0, stream()>>>(x, y, cols);
  MM_CUDA_LAUNCHED("row_sum");
}
void row_max(const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  row_reduce<true><<<static_cast<unsigned>(rows), row_threads(cols), 0, stream()>>>(x, y, cols);
  MM_CUDA_LAUNCHED("row_max");
}

}  // namespace mm::cuda
