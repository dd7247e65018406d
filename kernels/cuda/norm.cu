// kernels/cuda/norm.cu: LayerNorm (rows of the last dimension) and GroupNorm ([N, C, HW] in
// G groups, with an optional fused SiLU), forward and backward. Memory-bound: the floor is
// one read of x and one write of y.
// layer_norm v1: a block per row; one pass for the mean, one for the variance, one to write:
//   x is read three times (from L2 after the first).
// layer_norm v2: a warp per row; the row sits in registers (up to kLnMaxCols), x is read
//   once; the variance is the mean of squared deviations from the row mean (no E[x²]−E[x]²
//   cancellation). Wider rows use v1.
// group_norm v1: a block per (sample, group): its Cg·HW values are contiguous. With few
//   groups (a VQGAN decoding one image: 32) that is 32 blocks for the whole GPU.
// group_norm v2: each group split into S chunks, a block per chunk (S chosen for ~512 blocks,
//   chunks of at least kGnMinChunk values): a first kernel writes each chunk's mean and sum of
//   squared deviations, a second combines a group's S pairs (Chan et al.'s pairwise update,
//   no E[x²]−E[x]² cancellation) and normalises its chunk. The backward's two row sums go the
//   same way. Many groups (S = 1) take v1.
#include "kernels/cuda/common.cuh"

namespace mm::cuda {

namespace {

__global__ void layer_norm_v1(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                              float* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ rstd_out,
                              int64_t cols, float eps) {
  __shared__ float shared[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c];
  const float mean = block_sum(s, shared) / cols;
  float q = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = xr[c] - mean;
    q += d * d;
  }
  const float rstd = rsqrtf(block_sum(q, shared) / cols + eps);
  float* yr = y + row * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = (xr[c] - mean) * rstd;
    if (w) v *= w[c];
    if (b) v += b[c];
    yr[c] = v;
  }
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[row] = mean;
    if (rstd_out) rstd_out[row] = rstd;
  }
}

constexpr int kLnPerLane = 32;
constexpr int64_t kLnMaxCols = 32 * kLnPerLane;

__global__ void layer_norm_v2(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                              float* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ rstd_out,
                              int64_t rows, int64_t cols, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const float* xr = x + row * cols;
  float v[kLnPerLane];
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < kLnPerLane; ++i) {
    const int64_t c = lane + 32 * i;
    v[i] = c < cols ? xr[c] : 0.0f;
    s += v[i];
  }
  const float mean = warp_sum(s) / cols;
  float q = 0.0f;
#pragma unroll
  for (int i = 0; i < kLnPerLane; ++i) {
    const int64_t c = lane + 32 * i;
    const float d = c < cols ? v[i] - mean : 0.0f;
    q += d * d;
  }
  const float rstd = rsqrtf(warp_sum(q) / cols + eps);
  float* yr = y + row * cols;
#pragma unroll
  for (int i = 0; i < kLnPerLane; ++i) {
    const int64_t c = lane + 32 * i;
    if (c < cols) {
      float o = (v[i] - mean) * rstd;
      if (w) o *= w[c];
      if (b) o += b[c];
      yr[c] = o;
    }
  }
  if (lane == 0) {
    if (mean_out) mean_out[row] = mean;
    if (rstd_out) rstd_out[row] = rstd;
  }
}

// dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · w, per row.
__global__ void layer_norm_backward_dx(const float* __restrict__ x, const float* __restrict__ w,
                                       const float* __restrict__ mean, const float* __restrict__ rstd,
                                       const float* __restrict__ dy, float* __restrict__ dx, int64_t cols) {
  __shared__ float shared[32];
  const int64_t row = blockIdx.x, off = row * cols;
  const float m = mean[row], r = rstd[row];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float g = dy[off + c] * (w ? w[c] : 1.0f);
    sg += g;
    sgx += g * (x[off + c] - m) * r;
  }
  sg = block_sum(sg, shared) / cols;
  sgx = block_sum(sgx, shared) / cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float g = dy[off + c] * (w ? w[c] : 1.0f);
    dx[off + c] = r * (g - sg - (x[off + c] - m) * r * sgx);
  }
}

// dw[c] = Σ_rows dy · x̂, db[c] = Σ_rows dy: a block of 32 columns x 8 row strides.
__global__ void layer_norm_backward_dwdb(const float* __restrict__ x, const float* __restrict__ mean,
                                         const float* __restrict__ rstd, const float* __restrict__ dy,
                                         float* __restrict__ dw, float* __restrict__ db, int64_t rows, int64_t cols) {
  __shared__ float sw[8][33], sb[8][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  float aw = 0.0f, ab = 0.0f;
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += 8) {
      const float g = dy[r * cols + c];
      aw += g * (x[r * cols + c] - mean[r]) * rstd[r];
      ab += g;
    }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int i = 1; i < 8; ++i) aw += sw[i][threadIdx.x], ab += sb[i][threadIdx.x];
    if (dw) dw[c] = aw;
    if (db) db[c] = ab;
  }
}

__device__ __forceinline__ float sigmoidf(float z) { return 1.0f / (1.0f + __expf(-z)); }

// One output value of x at channel c: x̂·w_c + b_c, through the SiLU if fused.
__device__ __forceinline__ float gn_out(float xv, float mean, float rstd, const float* w, const float* b, int64_t c,
                                        bool silu) {
  float v = (xv - mean) * rstd;
  if (w) v *= w[c];
  if (b) v += b[c];
  return silu ? v * sigmoidf(v) : v;
}

__global__ void group_norm_k(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                             float* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ rstd_out,
                             int64_t C, int64_t HW, int64_t G, float eps, bool silu) {
  __shared__ float shared[32];
  const int64_t ng = blockIdx.x, g = ng % G, n = ng / G, Cg = C / G, len = Cg * HW;
  const int64_t off = (n * C + g * Cg) * HW;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += x[off + i];
  const float mean = block_sum(s, shared) / len;
  float q = 0.0f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const float d = x[off + i] - mean;
    q += d * d;
  }
  const float rstd = rsqrtf(block_sum(q, shared) / len + eps);
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    y[off + i] = gn_out(x[off + i], mean, rstd, w, b, g * Cg + i / HW, silu);
  }
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[ng] = mean;
    if (rstd_out) rstd_out[ng] = rstd;
  }
}

// The gradient reaching the normalised-and-affine value z = x̂·w + b (through the SiLU if fused).
__device__ __forceinline__ float gn_dz(float dy, float xhat, float wc, float bc, bool silu) {
  if (!silu) return dy;
  const float z = xhat * wc + bc, s = sigmoidf(z);
  return dy * s * (1.0f + z * (1.0f - s));
}

// g = dz·w_c for one value of x at channel c (what dx's row sums read), and x̂ in *xhat.
__device__ __forceinline__ float gn_g(float dy, float xv, float m, float r, const float* w, const float* b, int64_t c,
                                      bool silu, float* xhat) {
  const float wc = w ? w[c] : 1.0f, bc = b ? b[c] : 0.0f;
  *xhat = (xv - m) * r;
  return gn_dz(dy, *xhat, wc, bc, silu) * wc;
}

__global__ void group_norm_backward_dx(const float* __restrict__ x, const float* __restrict__ w,
                                       const float* __restrict__ b, const float* __restrict__ mean,
                                       const float* __restrict__ rstd, const float* __restrict__ dy,
                                       float* __restrict__ dx, int64_t C, int64_t HW, int64_t G, bool silu) {
  __shared__ float shared[32];
  const int64_t ng = blockIdx.x, g = ng % G, n = ng / G, Cg = C / G, len = Cg * HW;
  const int64_t off = (n * C + g * Cg) * HW;
  const float m = mean[ng], r = rstd[ng];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    float xh;
    const float gv = gn_g(dy[off + i], x[off + i], m, r, w, b, g * Cg + i / HW, silu, &xh);
    sg += gv;
    sgx += gv * xh;
  }
  sg = block_sum(sg, shared) / len;
  sgx = block_sum(sgx, shared) / len;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    float xh;
    const float gv = gn_g(dy[off + i], x[off + i], m, r, w, b, g * Cg + i / HW, silu, &xh);
    dx[off + i] = r * (gv - sg - xh * sgx);
  }
}

// A block per channel: dw[c] = Σ_{n,hw} dz · x̂, db[c] = Σ dz.
__global__ void group_norm_backward_dwdb(const float* __restrict__ x, const float* __restrict__ w,
                                         const float* __restrict__ b, const float* __restrict__ mean,
                                         const float* __restrict__ rstd, const float* __restrict__ dy,
                                         float* __restrict__ dw, float* __restrict__ db, int64_t N, int64_t C,
                                         int64_t HW, int64_t G, bool silu) {
  __shared__ float shared[32];
  const int64_t c = blockIdx.x, g = c / (C / G);
  const float wc = w ? w[c] : 1.0f, bc = b ? b[c] : 0.0f;
  float aw = 0.0f, ab = 0.0f;
  for (int64_t n = 0; n < N; ++n) {
    const float m = mean[n * G + g], r = rstd[n * G + g];
    const int64_t off = (n * C + c) * HW;
    for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) {
      const float xh = (x[off + i] - m) * r, dz = gn_dz(dy[off + i], xh, wc, bc, silu);
      aw += dz * xh;
      ab += dz;
    }
  }
  aw = block_sum(aw, shared);
  ab = block_sum(ab, shared);
  if (threadIdx.x == 0) {
    if (dw) dw[c] = aw;
    if (db) db[c] = ab;
  }
}

// ---- group_norm v2: groups split into chunks --------------------------------------------------
constexpr int64_t kGnMinChunk = 2048;  // values per block, at least (8 per thread)
constexpr int64_t kGnTargetBlocks = 512;

// The chunk [begin, end) of block s of a group of len values split into S.
struct GnChunk {
  int64_t begin, end;
};
__device__ __forceinline__ GnChunk gn_chunk(int64_t len, int64_t S, int64_t s) {
  const int64_t size = (len + S - 1) / S;
  return {min(len, s * size), min(len, (s + 1) * size)};
}

// Block (ng, s): its chunk's mean and sum of squared deviations from it, into part[2·(ng·S+s)].
__global__ void group_norm_partial_k(const float* __restrict__ x, float* __restrict__ part, int64_t len, int64_t S) {
  __shared__ float shared[32];
  const int64_t ng = blockIdx.x / S, s = blockIdx.x % S;
  const GnChunk c = gn_chunk(len, S, s);
  const float* xg = x + ng * len;
  float sum = 0.0f;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) sum += xg[i];
  const float n = static_cast<float>(c.end - c.begin);
  const float m = n > 0 ? block_sum(sum, shared) / n : 0.0f;
  float q = 0.0f;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const float d = xg[i] - m;
    q += d * d;
  }
  q = block_sum(q, shared);
  if (threadIdx.x == 0) part[2 * blockIdx.x] = m, part[2 * blockIdx.x + 1] = q;
}

// A group's mean and 1/std from its S chunks' (mean, M2), combined pairwise in chunk order.
__device__ __forceinline__ void gn_combine(const float* part, int64_t ng, int64_t len, int64_t S, float eps,
                                           float* mean, float* rstd) {
  float n = 0.0f, m = 0.0f, m2 = 0.0f;
  for (int64_t s = 0; s < S; ++s) {
    const GnChunk c = gn_chunk(len, S, s);
    const float nb = static_cast<float>(c.end - c.begin);
    if (nb == 0) continue;
    const float mb = part[2 * (ng * S + s)], qb = part[2 * (ng * S + s) + 1], nn = n + nb, d = mb - m;
    m += d * (nb / nn);
    m2 += qb + d * d * (n * nb / nn);
    n = nn;
  }
  *mean = m;
  *rstd = rsqrtf(m2 / static_cast<float>(len) + eps);
}

__global__ void group_norm_apply_k(const float* __restrict__ x, const float* __restrict__ part,
                                   const float* __restrict__ w, const float* __restrict__ b, float* __restrict__ y,
                                   float* __restrict__ mean_out, float* __restrict__ rstd_out, int64_t C, int64_t HW,
                                   int64_t G, int64_t S, float eps, bool silu) {
  __shared__ float stats[2];
  const int64_t ng = blockIdx.x / S, s = blockIdx.x % S, g = ng % G, Cg = C / G, len = Cg * HW;
  if (threadIdx.x == 0) gn_combine(part, ng, len, S, eps, &stats[0], &stats[1]);
  __syncthreads();
  const float mean = stats[0], rstd = stats[1];
  const GnChunk c = gn_chunk(len, S, s);
  const int64_t off = ng * len;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    y[off + i] = gn_out(x[off + i], mean, rstd, w, b, g * Cg + i / HW, silu);
  }
  if (s == 0 && threadIdx.x == 0) {
    if (mean_out) mean_out[ng] = mean;
    if (rstd_out) rstd_out[ng] = rstd;
  }
}

// Block (ng, s): its chunk's Σ g and Σ g·x̂ (g = dz·w_c), into part[2·(ng·S+s)].
__global__ void group_norm_backward_partial_k(const float* __restrict__ x, const float* __restrict__ w,
                                              const float* __restrict__ b, const float* __restrict__ mean,
                                              const float* __restrict__ rstd, const float* __restrict__ dy,
                                              float* __restrict__ part, int64_t C, int64_t HW, int64_t G, int64_t S,
                                              bool silu) {
  __shared__ float shared[32];
  const int64_t ng = blockIdx.x / S, s = blockIdx.x % S, g = ng % G, Cg = C / G, len = Cg * HW;
  const GnChunk c = gn_chunk(len, S, s);
  const int64_t off = ng * len;
  const float m = mean[ng], r = rstd[ng];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    float xh;
    const float gv = gn_g(dy[off + i], x[off + i], m, r, w, b, g * Cg + i / HW, silu, &xh);
    sg += gv;
    sgx += gv * xh;
  }
  sg = block_sum(sg, shared);
  sgx = block_sum(sgx, shared);
  if (threadIdx.x == 0) part[2 * blockIdx.x] = sg, part[2 * blockIdx.x + 1] = sgx;
}

__global__ void group_norm_backward_apply_k(const float* __restrict__ x, const float* __restrict__ w,
                                            const float* __restrict__ b, const float* __restrict__ mean,
                                            const float* __restrict__ rstd, const float* __restrict__ dy,
                                            const float* __restrict__ part, float* __restrict__ dx, int64_t C,
                                            int64_t HW, int64_t G, int64_t S, bool silu) {
  __shared__ float shared[32];
  const int64_t ng = blockIdx.x / S, s = blockIdx.x % S, g = ng % G, Cg = C / G, len = Cg * HW;
  float sg = 0.0f, sgx = 0.0f;  // the group's S partial sums, spread over the block's threads
  for (int64_t t = threadIdx.x; t < S; t += blockDim.x) sg += part[2 * (ng * S + t)], sgx += part[2 * (ng * S + t) + 1];
  sg = block_sum(sg, shared) / len;
  sgx = block_sum(sgx, shared) / len;
  const GnChunk c = gn_chunk(len, S, s);
  const int64_t off = ng * len;
  const float m = mean[ng], r = rstd[ng];
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    float xh;
    const float gv = gn_g(dy[off + i], x[off + i], m, r, w, b, g * Cg + i / HW, silu, &xh);
    dx[off + i] = r * (gv - sg - xh * sgx);
  }
}

// Chunks per group for v2: enough blocks to fill the GPU, chunks not too small; 1 means v1.
int64_t gn_splits(int64_t NG, int64_t len) {
  const int64_t want = (kGnTargetBlocks + NG - 1) / NG, most = len / kGnMinChunk;  // chunks >= kGnMinChunk
  return std::max<int64_t>(1, std::min(want, most));
}

int row_threads(int64_t cols) { return cols >= 1024 ? 512 : cols >= 256 ? 256 : 128; }

}  // namespace

void layer_norm(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows,
                int64_t cols, float eps, int version) {
  if (rows == 0) return;
  MM_CHECK(cols > 0, "[cuda] layer_norm: rows of width 0");
  version = resolve_version("layer_norm", version);
  if (version == 2 && cols <= kLnMaxCols) {
    constexpr int kWarps = 4;
    layer_norm_v2<<<ceil_div(rows, kWarps), 32 * kWarps, 0, stream()>>>(x, w, b, y, mean, rstd, rows, cols, eps);
  } else {
    layer_norm_v1<<<static_cast<unsigned>(rows), row_threads(cols), 0, stream()>>>(x, w, b, y, mean, rstd, cols, eps);
  }
  MM_CUDA_LAUNCHED("layer_norm");
}

void layer_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dw, float* db, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  if (dx) {
    layer_norm_backward_dx<<<static_cast<unsigned>(rows), row_threads(cols), 0, stream()>>>(x, w, mean, rstd, dy, dx,
                                                                                            cols);
    MM_CUDA_LAUNCHED("layer_norm_backward");
  }
  if (dw || db) {
    layer_norm_backward_dwdb<<<ceil_div(cols, 32), dim3(32, 8), 0, stream()>>>(x, mean, rstd, dy, dw, db, rows, cols);
    MM_CUDA_LAUNCHED("layer_norm_backward");
  }
}

void group_norm(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t N,
                int64_t C, int64_t HW, int64_t G, float eps, bool silu, int version) {
  MM_CHECK(G > 0 && C % G == 0, "[cuda] group_norm: ", C, " channels do not split into ", G, " groups");
  if (N == 0 || C == 0 || HW == 0) return;
  version = resolve_version("group_norm", version);
  const int64_t NG = N * G, len = C / G * HW, S = version == 2 ? gn_splits(NG, len) : 1;
  if (S == 1) {
    group_norm_k<<<static_cast<unsigned>(NG), 256, 0, stream()>>>(x, w, b, y, mean, rstd, C, HW, G, eps, silu);
    MM_CUDA_LAUNCHED("group_norm");
    return;
  }
  DeviceArray<float> part(static_cast<size_t>(2 * NG * S));
  group_norm_partial_k<<<static_cast<unsigned>(NG * S), 256, 0, stream()>>>(x, part.data(), len, S);
  MM_CUDA_LAUNCHED("group_norm");
  group_norm_apply_k<<<static_cast<unsigned>(NG * S), 256, 0, stream()>>>(x, part.data(), w, b, y, mean, rstd, C, HW,
                                                                          G, S, eps, silu);
  MM_CUDA_LAUNCHED("group_norm");
}

void group_norm_backward(const float* x, const float* w, const float* b, const float* mean, const float* rstd,
                         const float* dy, float* dx, float* dw, float* db, int64_t N, int64_t C, int64_t HW,
                         int64_t G, bool silu, int version) {
  MM_CHECK(G > 0 && C % G == 0, "[cuda] group_norm_backward: ", C, " channels do not split into ", G, " groups");
  if (N == 0 || C == 0 || HW == 0) return;
  version = resolve_version("group_norm", version);
  const int64_t NG = N * G, len = C / G * HW, S = version == 2 ? gn_splits(NG, len) : 1;
  if (dx && S == 1) {
    group_norm_backward_dx<<<static_cast<unsigned>(NG), 256, 0, stream()>>>(x, w, b, mean, rstd, dy, dx, C, HW, G,
                                                                           silu);
    MM_CUDA_LAUNCHED("group_norm_backward");
  } else if (dx) {
    DeviceArray<float> part(static_cast<size_t>(2 * NG * S));
    group_norm_backward_partial_k<<<static_cast<unsigned>(NG * S), 256, 0, stream()>>>(x, w, b, mean, rstd, dy,
                                                                                        part.data(), C, HW, G, S, silu);
    MM_CUDA_LAUNCHED("group_norm_backward");
    group_norm_backward_apply_k<<<static_cast<unsigned>(NG * S), 256, 0, stream()>>>(x, w, b, mean, rstd, dy,
                                                                                      part.data(), dx, C, HW, G, S,
                                                                                      silu);
    MM_CUDA_LAUNCHED("group_norm_backward");
  }
  if (dw || db) {
    group_norm_backward_dwdb<<<static_cast<unsigned>(C), 256, 0, stream()>>>(x, w, b, mean, rstd, dy, dw, db, N, C,
                                                                            HW, G, silu);
    MM_CUDA_LAUNCHED("group_norm_backward");
  }
}

}  // namespace mm::cuda
