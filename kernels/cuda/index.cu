// kernels/cuda/index.cu: moving values by index: one axis through an index map (padding,
// index_select on any dim, nearest resampling), gathers along the last dim, and the max/min
// of rows with their index. Memory-bound and simple: a thread per output element, and
// atomics for the backward's scatter where several outputs read one input.
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

void row_extreme(const float* x, float* value, int64_t* index, int64_t rows, int64_t cols, bool max) {
  // a thread per row: reductions over a dim other than the widest one (argmax of logits,
  // the max of a few channels); a long single row would want a block.
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
