// kernels/cuda/index.cu: moving values by index: one axis through an index map (padding,
// index_select on any dim, nearest resampling), gathers along the last dim, and the max/min
// of rows with their index. Memory-bound and simple: a thread per output element, and
// atomics for the backward's scatter where several outputs read one input; the row max/min
// a thread per row (v1) or a warp per row (v2).
#include "kernels/cuda/common.cuh"

namespace mm::cuda {

void index_axis(const float* x, const int64_t* map, float* y, int64_t outer, int64_t n_in, int64_t n_out,
                int64_t inner, float fill) {
  launch_each(outer * n_out * inner, "index_axis", [=] __device__(int64_t e) {
    const int64_t i = e % inner, j = (e / inner) % n_out, o = e / (inner * n_out);
    const int64_t src = map[j];
    y[e] = src < 0 ? fill : x[(o * n_in + src) * inner + i];
  });
}

void index_axis_backward(const float* dy, const int64_t* map, float* dx, int64_t outer, int64_t n_in, int64_t n_out,
                         int64_t inner) {
  fill_bytes(dx, 0, outer * n_in * inner * sizeof(float));
  launch_each(outer * n_out * inner, "index_axis_backward", [=] __device__(int64_t e) {
    const int64_t i = e % inner, j = (e / inner) % n_out, o = e / (inner * n_out);
    const int64_t src = map[j];
    if (src >= 0) atomicAdd(dx + (o * n_in + src) * inner + i, dy[e]);
  });
}

void gather_last(const float* x, const int64_t* idx, float* y, int64_t rows, int64_t n, int64_t m) {
  launch_each(rows * m, "gather_last", [=] __device__(int64_t e) { y[e] = x[(e / m) * n + idx[e]]; });
}

void gather_last_backward(const float* dy, const int64_t* idx, float* dx, int64_t rows, int64_t n, int64_t m) {
  fill_bytes(dx, 0, rows * n * sizeof(float));
  launch_each(rows * m, "gather_last_backward",
         [=] __device__(int64_t e) { atomicAdd(dx + (e / m) * n + idx[e], dy[e]); });
}

namespace {

// The better of two (value, index) candidates for a row's max (or min): NaN wins, then the
// larger (smaller) value, then the lower index, as torch.max/min pick the first occurrence.
__device__ __forceinline__ bool better(float v, int64_t i, float w, int64_t j, bool max) {
  const bool vn = isnan(v), wn = isnan(w);
  if (vn || wn) return vn && (!wn || i < j);
  if (v != w) return max ? v > w : v < w;
  return i < j;
}

// v2: a warp per row: each lane scans columns lane, lane + 32, ... (coalesced), then the warp
// combines its 32 candidates with shuffles.
__global__ void row_extreme_warp(const float* __restrict__ x, float* __restrict__ value, int64_t* __restrict__ index,
                                 int64_t rows, int64_t cols, bool max) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + (threadIdx.x >> 5);
  if (r >= rows) return;  // whole warps: rows are per warp
  const int lane = threadIdx.x & 31;
  const float* p = x + r * cols;
  float best = lane < cols ? p[lane] : NAN;
  int64_t at = lane < cols ? lane : INT64_MAX;  // (an empty lane: index past every real one)
  if (lane >= cols) best = max ? -INFINITY : INFINITY;
  for (int64_t c = lane + 32; c < cols; c += 32)
    if (better(p[c], c, best, at, max)) best = p[c], at = c;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t i = __shfl_xor_sync(0xffffffffu, at, o);
    if (better(v, i, best, at, max)) best = v, at = i;
  }
  if (lane == 0) value[r] = best, index[r] = at;
}

}  // namespace

void row_extreme(const float* x, float* value, int64_t* index, int64_t rows, int64_t cols, bool max, int version) {
  if (rows == 0) return;
  MM_CHECK(cols >= 1, "[cuda] row_extreme: rows of ", cols, " columns have no max or min");
  if (resolve_version("row_extreme", version) == 2) {
    row_extreme_warp<<<ceil_div(rows, 8), 256, 0, stream()>>>(x, value, index, rows, cols, max);
    MM_CUDA_LAUNCHED(max ? "row_max" : "row_min");
    return;
  }
  // v1: a thread per row
  launch_each(rows, max ? "row_max" : "row_min", [=] __device__(int64_t r) {
    const float* p = x + r * cols;
    float best = p[0];
    int64_t at = 0;
    for (int64_t c = 1; c < cols && !isnan(best); ++c) {
      const float v = p[c];
      if (isnan(v) || (max ? v > best : v < best)) best = v, at = c;
    }
    value[r] = best;
    index[r] = at;
  });
}

}  // namespace mm::cuda
