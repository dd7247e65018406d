// kernels/cuda/elementwise.cu: unary and binary maps, bias rows, copies. Memory-bound: the
// floor is the bytes moved over the copy bandwidth. v1 moves 4 bytes per load; v2 moves 16
// (float4), with a scalar tail when n is not a multiple of 4 or a pointer is misaligned.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"

namespace mm::cuda {

namespace {

__device__ __forceinline__ float apply(Unary op, float x) {
  switch (op) {
    case Unary::neg: return -x;
    case Unary::exp: return __expf(x);
    case Unary::silu: return x / (1.0f + __expf(-x));
    case Unary::quick_gelu: return x / (1.0f + __expf(-1.702f * x));
    case Unary::gelu_tanh: {
      const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + tanhf(u));
    }
    case Unary::relu: return fmaxf(x, 0.0f);
  }
  return x;
}
__device__ __forceinline__ float apply(Binary op, float a, float b) {
  switch (op) {
    case Binary::add: return a + b;
    case Binary::sub: return a - b;
    case Binary::mul: return a * b;
    case Binary::div: return a / b;
    case Binary::pow: return powf(a, b);
  }
  return a;
}

__global__ void unary_v1(Unary op, const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = apply(op, x[i]);
}
__global__ void unary_v2(Unary op, const float4* __restrict__ x, float4* __restrict__ y, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    float4 v = x[i];
    v.x = apply(op, v.x), v.y = apply(op, v.y), v.z = apply(op, v.z), v.w = apply(op, v.w);
    y[i] = v;
  }
}
__global__ void binary_v1(Binary op, const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                          int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = apply(op, a[i], b[i]);
}
__global__ void binary_v2(Binary op, const float4* __restrict__ a, const float4* __restrict__ b,
                          float4* __restrict__ y, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    const float4 p = a[i], q = b[i];
    y[i] = make_float4(apply(op, p.x, q.x), apply(op, p.y, q.y), apply(op, p.z, q.z), apply(op, p.w, q.w));
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

constexpr int kThreads = 256;

}  // namespace

void unary(Unary op, const float* x, float* y, int64_t n, int version) {
  if (n == 0) return;
  version = resolve_version("elementwise", version);
  int64_t done = 0;
  if (version == 2 && aligned16(x) && aligned16(y)) {
    const int64_t n4 = n / 4;
    if (n4 > 0) {
      unary_v2<<<grid_for(n4, kThreads), kThreads, 0, stream()>>>(op, reinterpret_cast<const float4*>(x),
                                                                  reinterpret_cast<float4*>(y), n4);
      MM_CUDA_LAUNCHED("unary");
    }
    done = n4 * 4;
  }
  if (done < n) {
    unary_v1<<<grid_for(n - done, kThreads), kThreads, 0, stream()>>>(op, x + done, y + done, n - done);
    MM_CUDA_LAUNCHED("unary");
  }
}

void binary(Binary op, const float* a, const float* b, float* y, int64_t n, int version) {
  if (n == 0) return;
  version = resolve_version("elementwise", version);
  int64_t done = 0;
  if (version == 2 && aligned16(a) && aligned16(b) && aligned16(y)) {
    const int64_t n4 = n / 4;
    if (n4 > 0) {
      binary_v2<<<grid_for(n4, kThreads), kThreads, 0, stream()>>>(
          op, reinterpret_cast<const float4*>(a), reinterpret_cast<const float4*>(b), reinterpret_cast<float4*>(y), n4);
      MM_CUDA_LAUNCHED("binary");
    }
    done = n4 * 4;
  }
  if (done < n) {
    binary_v1<<<grid_for(n - done, kThreads), kThreads, 0, stream()>>>(op, a + done, b + done, y + done, n - done);
    MM_CUDA_LAUNCHED("binary");
  }
}

void add_rows(const float* x, const float* bias, float* y, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
      n, [=] __device__(int64_t i) { y[i] = x[i] + bias[i % cols]; });
  MM_CUDA_LAUNCHED("add_rows");
}

void unary_backward(Unary op, const float* x, const float* dy, float* dx, int64_t n) {
  if (n == 0) return;
  MM_CHECK(op == Unary::silu || op == Unary::quick_gelu || op == Unary::relu || op == Unary::neg,
           "[cuda] unary_backward: not implemented for this op");
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t i) {
    const float v = x[i];
    float d = 0.0f;
    switch (op) {
      case Unary::silu: {
        const float s = 1.0f / (1.0f + __expf(-v));
        d = s * (1.0f + v * (1.0f - s));
        break;
      }
      case Unary::quick_gelu: {
        const float s = 1.0f / (1.0f + __expf(-1.702f * v));
        d = s * (1.0f + 1.702f * v * (1.0f - s));
        break;
      }
      case Unary::relu: d = v > 0.0f ? 1.0f : 0.0f; break;
      default: d = -1.0f; break;
    }
    dx[i] = dy[i] * d;
  });
  MM_CUDA_LAUNCHED("unary_backward");
}

namespace {
__device__ __forceinline__ float apply_map(Map op, float x, float a, float b) {
  switch (op) {
    case Map::abs: return fabsf(x);
    case Map::asin: return asinf(x);
    case Map::sqrt: return sqrtf(x);
    case Map::rsqrt: return 1.0f / sqrtf(x);
    case Map::log: return logf(x);
    case Map::square: return x * x;
    case Map::tanh: return tanhf(x);
    case Map::sigmoid: return 1.0f / (1.0f + expf(-x));
    case Map::clamp: return x < a ? a : (x > b ? b : x);
    case Map::pow: return powf(x, a);
    case Map::clamp_grad_rule: return x;
    case Map::sin: return sinf(x);
    case Map::cos: return cosf(x);
    case Map::gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case Map::gelu_tanh: {
      const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + tanhf(u));
    }
  }
  return x;
}
// dy/dx of y = op(x)
__device__ __forceinline__ float map_derivative(Map op, float x, float y, float a, float b, float dy) {
  switch (op) {
    case Map::abs: return float((x > 0.0f) - (x < 0.0f));
    case Map::asin: return 1.0f / sqrtf(1.0f - x * x);
    case Map::sqrt: return 0.5f / y;
    case Map::rsqrt: return -0.5f * y * y * y;
    case Map::log: return 1.0f / x;
    case Map::square: return 2.0f * x;
    case Map::tanh: return 1.0f - y * y;
    case Map::sigmoid: return y * (1.0f - y);
    case Map::clamp: return x >= a && x <= b ? 1.0f : 0.0f;
    case Map::pow: return a * powf(x, a - 1.0f);
    case Map::clamp_grad_rule: return dy * (x - y) >= 0.0f ? 1.0f : 0.0f;
    case Map::sin: return cosf(x);
    case Map::cos: return -sinf(x);
    case Map::gelu:  // Phi(x) + x phi(x)
      return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
    case Map::gelu_tanh: {
      const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      const float t = tanhf(u), du = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * x * x);
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
  }
  return 0.0f;
}
}  // namespace

void map(Map op, const float* x, float* y, int64_t n, float a, float b) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
      n, [=] __device__(int64_t i) { y[i] = apply_map(op, x[i], a, b); });
  MM_CUDA_LAUNCHED("map");
}

void map_backward(Map op, const float* x, const float* y, const float* dy, float* dx, int64_t n, float a, float b) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t i) {
    const float g = dy[i];
    dx[i] = g * map_derivative(op, x ? x[i] : 0.0f, y ? y[i] : 0.0f, a, b, g);
  });
  MM_CUDA_LAUNCHED("map_backward");
}

void maximum(const float* a, const float* b, float* y, int64_t n, bool min) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t i) {
    const float p = a[i], q = b[i];
    y[i] = (min ? p <= q : p >= q) ? p : q;
  });
  MM_CUDA_LAUNCHED(min ? "minimum" : "maximum");
}

void maximum_backward(const float* a, const float* b, const float* dy, float* da, float* db, int64_t n, bool min) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t i) {
    const float p = a[i], q = b[i], g = dy[i];
    const bool pick_a = min ? p <= q : p >= q;
    da[i] = pick_a ? g : 0.0f;
    db[i] = pick_a ? 0.0f : g;
  });
  MM_CUDA_LAUNCHED(min ? "minimum_backward" : "maximum_backward");
}

void adam_step(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
               double eps, double weight_decay, bool decoupled, double step_size, double sqrt_bc2) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t j) {
    double pj = p[j], gj = g[j];
    if (decoupled)
      pj *= 1 - lr * weight_decay;
    else
      gj += weight_decay * pj;
    const double mj = beta1 * m[j] + (1 - beta1) * gj, vj = beta2 * v[j] + (1 - beta2) * gj * gj;
    m[j] = float(mj);
    v[j] = float(vj);
    p[j] = float(pj - step_size * mj / (sqrt(vj) / sqrt_bc2 + eps));
  });
  MM_CUDA_LAUNCHED("adam_step");
}

void compare(Cmp op, const float* a, const float* b, bool* y, int64_t n) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t i) {
    const float p = a[i], q = b[i];
    switch (op) {
      case Cmp::eq: y[i] = p == q; break;
      case Cmp::ne: y[i] = p != q; break;
      case Cmp::lt: y[i] = p < q; break;
      case Cmp::le: y[i] = p <= q; break;
      case Cmp::gt: y[i] = p > q; break;
      case Cmp::ge: y[i] = p >= q; break;
    }
  });
  MM_CUDA_LAUNCHED("compare");
}

void select(const bool* c, const float* a, const float* b, float* y, int64_t n) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t i) { y[i] = c[i] ? a[i] : b[i]; });
  MM_CUDA_LAUNCHED("select");
}

void logical_not(const bool* x, bool* y, int64_t n) {
  if (n == 0) return;
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t i) { y[i] = !x[i]; });
  MM_CUDA_LAUNCHED("logical_not");
}

namespace {
// Reads element i of an integer or bool buffer as int64 (exact).
__device__ __forceinline__ int64_t load_as_int64(const void* x, int t, int64_t i) {
  switch (t) {
    case 4: return static_cast<const int32_t*>(x)[i];
    case 5: return static_cast<const int64_t*>(x)[i];
    case 6: return static_cast<const uint8_t*>(x)[i];
    default: return static_cast<const bool*>(x)[i] ? 1 : 0;
  }
}
// Reads element i of a float buffer as double (exact).
__device__ __forceinline__ double load_as_double(const void* x, int t, int64_t i) {
  switch (t) {
    case 0: return static_cast<const float*>(x)[i];
    case 1: return __half2float(static_cast<const __half*>(x)[i]);
    case 2: return __bfloat162float(static_cast<const __nv_bfloat16*>(x)[i]);
    default: return static_cast<const double*>(x)[i];
  }
}
// Element i of y (type t) = v, with C++'s conversion from V (as the CPU's static_cast).
template <typename V>
__device__ __forceinline__ void store_as(void* y, int t, int64_t i, V v) {
  switch (t) {
    case 0: static_cast<float*>(y)[i] = float(v); break;
    case 1: static_cast<__half*>(y)[i] = __float2half_rn(float(v)); break;
    case 2: static_cast<__nv_bfloat16*>(y)[i] = __float2bfloat16(float(v)); break;
    case 3: static_cast<double*>(y)[i] = double(v); break;
    case 4: static_cast<int32_t*>(y)[i] = int32_t(v); break;
    case 5: static_cast<int64_t*>(y)[i] = int64_t(v); break;
    case 6: static_cast<uint8_t*>(y)[i] = uint8_t(v); break;
    default: static_cast<bool*>(y)[i] = v != V(0); break;
  }
}
}  // namespace

void convert(const void* x, int from, void* y, int to, int64_t n) {
  if (n == 0) return;
  MM_CHECK(from >= 0 && from <= 7 && to >= 0 && to <= 7, "[cuda] convert: unknown type ", from, " -> ", to);
  each_index_k<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(n, [=] __device__(int64_t i) {
    if (from >= 4) store_as(y, to, i, load_as_int64(x, from, i));  // integers convert exactly, or wrap
    else store_as(y, to, i, load_as_double(x, from, i));
  });
  MM_CUDA_LAUNCHED("convert");
}

void copy(const float* x, float* y, int64_t n) {
  if (n == 0) return;
  MM_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, stream()), "copy");
}

void to_bf16(const float* x, __nv_bfloat16* y, int64_t n) { convert(x, /*float32*/ 0, y, /*bfloat16*/ 2, n); }

}  // namespace mm::cuda
