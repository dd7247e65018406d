// kernels/cuda/conv.cu: conv2d as an implicit GEMM, forward and backward-data, and the cuDNN
// production path it is measured against (mmbench conv2d --device cuda).
// Forward: rows m = (n, oh, ow) output pixels, columns = output channels o, reduction over
// kk = (c, kh, kw): y[m, o] = Σ_kk x[n, c, oh·s − p + kh, ow·s − p + kw] · w[o, kk]. The tile
// loader computes those input coordinates on the fly (zero outside the image), so the im2col
// matrix is never built. Backward-data is the same GEMM over input pixels (n, h, w) and input
// channels c, reducing over (o, kh, kw) with oh = (h + p − kh) / s where that divides.
// Tiles: 64 x 64 outputs per 256-thread block, 4 x 4 per thread, 16-deep k steps.
#if MM_HAVE_CUDNN
#include <cudnn.h>
#endif
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <map>
#include <tuple>

#include "kernels/cuda/common.cuh"

namespace mm::cuda {

namespace {

struct ConvShape {
  int64_t N, C, H, W, O, KH, KW, stride, pad, OH, OW;
};

constexpr int kTM = 64, kTN = 64, kTK = 16;

// A(m, kk) and B(kk, col) of the forward GEMM.
struct FwdOps {
  const float* x;
  const float* w;
  ConvShape s;
  __device__ __forceinline__ float a(int64_t m, int64_t kk) const {
    const int64_t ow = m % s.OW, oh = (m / s.OW) % s.OH, n = m / (s.OW * s.OH);
    const int64_t kw = kk % s.KW, kh = (kk / s.KW) % s.KH, c = kk / (s.KW * s.KH);
    const int64_t h = oh * s.stride - s.pad + kh, wc = ow * s.stride - s.pad + kw;
    if (h < 0 || h >= s.H || wc < 0 || wc >= s.W) return 0.0f;
    return x[((n * s.C + c) * s.H + h) * s.W + wc];
  }
  __device__ __forceinline__ float b(int64_t kk, int64_t o) const { return w[o * (s.C * s.KH * s.KW) + kk]; }
  __device__ __forceinline__ int64_t out_index(int64_t m, int64_t o) const {
    const int64_t pix = m % (s.OH * s.OW), n = m / (s.OH * s.OW);
    return (n * s.O + o) * (s.OH * s.OW) + pix;
  }
};

// A(m, kk) and B(kk, c) of the backward-data GEMM: m = (n, h, w), kk = (o, kh, kw).
struct BwdDataOps {
  const float* dy;
  const float* w;
  ConvShape s;
  __device__ __forceinline__ float a(int64_t m, int64_t kk) const {
    const int64_t wc = m % s.W, h = (m / s.W) % s.H, n = m / (s.W * s.H);
    const int64_t kw = kk % s.KW, kh = (kk / s.KW) % s.KH, o = kk / (s.KW * s.KH);
    const int64_t th = h + s.pad - kh, tw = wc + s.pad - kw;
    if (th < 0 || tw < 0 || th % s.stride || tw % s.stride) return 0.0f;
    const int64_t oh = th / s.stride, ow = tw / s.stride;
    if (oh >= s.OH || ow >= s.OW) return 0.0f;
    return dy[((n * s.O + o) * s.OH + oh) * s.OW + ow];
  }
  __device__ __forceinline__ float b(int64_t kk, int64_t c) const {
    const int64_t kw = kk % s.KW, kh = (kk / s.KW) % s.KH, o = kk / (s.KW * s.KH);
    return w[((o * s.C + c) * s.KH + kh) * s.KW + kw];
  }
  __device__ __forceinline__ int64_t out_index(int64_t m, int64_t c) const {
    const int64_t pix = m % (s.H * s.W), n = m / (s.H * s.W);
    return (n * s.C + c) * (s.H * s.W) + pix;
  }
};

template <typename Ops>
__global__ void __launch_bounds__(256) implicit_gemm(Ops ops, const float* __restrict__ bias, float* __restrict__ out,
                                                     int64_t M, int64_t Ncol, int64_t Kdim) {
  __shared__ __align__(16) float As[kTK][kTM];
  __shared__ __align__(16) float Bs[kTK][kTN + 4];  // +4: the k-wise stores spread over banks
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = blockIdx.x * int64_t(kTM), c0 = blockIdx.y * int64_t(kTN);
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (int64_t k0 = 0; k0 < Kdim; k0 += kTK) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int e = tid + 256 * l;  // 1024 = 64 x 16
      {
        const int r = e % kTM, kc = e / kTM;  // consecutive threads: consecutive output pixels
        As[kc][r] = (m0 + r < M && k0 + kc < Kdim) ? ops.a(m0 + r, k0 + kc) : 0.0f;
      }
      {
        const int kc = e % kTK, c = e / kTK;
        Bs[kc][c] = (c0 + c < Ncol && k0 + kc < Kdim) ? ops.b(k0 + kc, c0 + c) : 0.0f;
      }
    }
    __syncthreads();
#pragma unroll
    for (int kc = 0; kc < kTK; ++kc) {
      const float4 a = *reinterpret_cast<const float4*>(&As[kc][4 * ty]);
      const float4 b = *reinterpret_cast<const float4*>(&Bs[kc][4 * tx]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + 4 * ty + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = c0 + 4 * tx + j;
      if (c < Ncol) out[ops.out_index(m, c)] = acc[i][j] + (bias ? bias[c] : 0.0f);
    }
  }
}

ConvShape make_shape(const char* op, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t KH, int64_t KW,
                     int64_t stride, int64_t pad) {
  MM_CHECK(stride >= 1 && pad >= 0 && KH >= 1 && KW >= 1, "[cuda] ", op, ": bad stride ", stride, " / padding ", pad,
           " / kernel ", KH, "x", KW);
  MM_CHECK(H + 2 * pad >= KH && W + 2 * pad >= KW, "[cuda] ", op, ": kernel ", KH, "x", KW,
           " does not fit input ", H, "x", W, " with padding ", pad);
  const int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
  MM_CHECK(OH >= 1 && OW >= 1, "[cuda] ", op, ": kernel ", KH, "x", KW, " does not fit input ", H, "x", W,
           " with padding ", pad);
  return ConvShape{N, C, H, W, O, KH, KW, stride, pad, OH, OW};
}

}  // namespace

void conv2d(const float* x, const float* w, const float* bias, float* y, int64_t N, int64_t C, int64_t H, int64_t W,
            int64_t O, int64_t KH, int64_t KW, int64_t stride, int64_t pad, int version) {
  const ConvShape s = make_shape("conv2d", N, C, H, W, O, KH, KW, stride, pad);
  resolve_version("conv2d", version);
  const int64_t M = N * s.OH * s.OW;
  if (M == 0 || O == 0) return;
  MM_CHECK(ceil_div(O, kTN) < 65536, "[cuda] conv2d: too many output channels (", O, ")");
  implicit_gemm<<<dim3(ceil_div(M, kTM), ceil_div(O, kTN)), 256, 0, stream()>>>(FwdOps{x, w, s}, bias, y, M, O,
                                                                                 C * KH * KW);
  MM_CUDA_LAUNCHED("conv2d");
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, int64_t N, int64_t C, int64_t H, int64_t W,
                          int64_t O, int64_t KH, int64_t KW, int64_t stride, int64_t pad) {
  const ConvShape s = make_shape("conv2d_backward_data", N, C, H, W, O, KH, KW, stride, pad);
  const int64_t M = N * H * W;
  if (M == 0 || C == 0) return;
  MM_CHECK(ceil_div(C, kTN) < 65536, "[cuda] conv2d_backward_data: too many input channels (", C, ")");
  implicit_gemm<<<dim3(ceil_div(M, kTM), ceil_div(C, kTN)), 256, 0, stream()>>>(BwdDataOps{dy, w, s}, nullptr, dx,
                                                                                 M, C, O * KH * KW);
  MM_CUDA_LAUNCHED("conv2d_backward_data");
}

namespace {
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

template <typename T>
void im2col_as(const float* x, T* cols, const ConvShape& s) {
  const int64_t K = s.C * s.KH * s.KW, n = s.N * s.OH * s.OW * K;
  launch_each(n, "im2col", [=] __device__(int64_t e) {
    const int64_t k = e % K, m = e / K;  // m: output pixel (n, oh, ow); k: (c, kh, kw)
    const int64_t ow = m % s.OW, oh = (m / s.OW) % s.OH, b = m / (s.OW * s.OH);
    const int64_t kw = k % s.KW, kh = (k / s.KW) % s.KH, c = k / (s.KW * s.KH);
    const int64_t h = oh * s.stride - s.pad + kh, w = ow * s.stride - s.pad + kw;
    store(cols + e, h >= 0 && h < s.H && w >= 0 && w < s.W ? x[((b * s.C + c) * s.H + h) * s.W + w] : 0.0f);
  });
}
}  // namespace

void im2col(const float* x, void* cols, int dtype, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
            int64_t KW, int64_t stride, int64_t pad) {
  const ConvShape s = make_shape("im2col", N, C, H, W, 1, KH, KW, stride, pad);
  MM_CHECK(dtype >= 0 && dtype <= 2, "[cuda] im2col: dtype ", dtype, " (float32, float16 or bfloat16)");
  if (dtype == 0) im2col_as(x, static_cast<float*>(cols), s);
  if (dtype == 1) im2col_as(x, static_cast<__half*>(cols), s);
  if (dtype == 2) im2col_as(x, static_cast<__nv_bfloat16*>(cols), s);
}

// dx[n, c, h, w] (+)= Σ over the taps (kh, kw) whose window covers (h, w) of
// cols[(n, oh − oh0, ow), (c, kh, kw)], with oh = (h + pad − kh) / stride where that divides and
// oh0 <= oh < oh1: the adjoint of im2col for a band of output rows, as a gather (each dx
// element sums its own taps: no atomics). Only the input rows the band's windows touch are
// visited.
void col2im(const float* cols, float* dx, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
            int64_t stride, int64_t pad, int64_t oh0, int64_t oh1, bool accumulate) {
  const ConvShape s = make_shape("col2im", N, C, H, W, 1, KH, KW, stride, pad);
  MM_CHECK(0 <= oh0 && oh0 <= oh1 && oh1 <= s.OH, "[cuda] col2im: output rows [", oh0, ", ", oh1, ") outside [0, ",
           s.OH, ")");
  if (oh0 == oh1) return;
  const int64_t K = s.C * s.KH * s.KW, band = oh1 - oh0;
  const int64_t h_lo = std::max<int64_t>(0, oh0 * s.stride - s.pad);
  const int64_t h_hi = std::min<int64_t>(s.H, (oh1 - 1) * s.stride - s.pad + s.KH), rows = h_hi - h_lo;
  if (rows <= 0) return;
  launch_each(s.N * s.C * rows * s.W, "col2im", [=] __device__(int64_t e) {
    const int64_t w = e % s.W, h = h_lo + (e / s.W) % rows, c = (e / (s.W * rows)) % s.C, b = e / (s.W * rows * s.C);
    float acc = 0.0f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t th = h + s.pad - kh;
      if (th < 0 || th % s.stride != 0 || th / s.stride < oh0 || th / s.stride >= oh1) continue;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t tw = w + s.pad - kw;
        if (tw < 0 || tw % s.stride != 0 || tw / s.stride >= s.OW) continue;
        const int64_t m = (b * band + th / s.stride - oh0) * s.OW + tw / s.stride;
        acc += cols[m * K + (c * s.KH + kh) * s.KW + kw];
      }
    }
    float& out = dx[((b * s.C + c) * s.H + h) * s.W + w];
    out = accumulate ? out + acc : acc;
  });
}

// ---- cuDNN -------------------------------------------------------------------------------------
#if MM_HAVE_CUDNN
namespace {

cudnnHandle_t cudnn() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t handle = nullptr;
    MM_CUDNN_CHECK(cudnnCreate(&handle), "cudnn");
    MM_CUDNN_CHECK(cudnnSetStream(handle, stream()), "cudnn");
    return handle;
  }();
  return h;
}

// Descriptors and the chosen algorithm for one shape, made once.
struct CudnnConv {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, b = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo{};
  size_t workspace = 0;
  bool have_bwd = false;  // the backward-data algorithm, chosen on first use
  cudnnConvolutionBwdDataAlgo_t bwd_algo{};
  size_t bwd_workspace = 0;
};

CudnnConv& cudnn_plan(const ConvShape& s) {
  static std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>,
                  CudnnConv>
      plans;
  const auto key = std::make_tuple(s.N, s.C, s.H, s.W, s.O, s.KH, s.KW, s.stride, s.pad);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  const char* op = "cudnn_conv2d";
  CudnnConv p;
  MM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x), op);
  MM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y), op);
  MM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.b), op);
  MM_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w), op);
  MM_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv), op);
  MM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(s.N), int(s.C), int(s.H),
                                            int(s.W)), op);
  MM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(s.N), int(s.O), int(s.OH),
                                            int(s.OW)), op);
  MM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, int(s.O), 1, 1), op);
  MM_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(s.O), int(s.C), int(s.KH),
                                            int(s.KW)), op);
  MM_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv, int(s.pad), int(s.pad), int(s.stride), int(s.stride), 1, 1,
                                                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT), op);
  // float32 means float32: no TF32 tensor-op math behind our back.
  MM_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, CUDNN_FMA_MATH), op);
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  int found = 0;
  MM_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cudnn(), p.x, p.w, p.conv, p.y, 8, &found, perf), op);
  int pick = -1;  // the fastest supported algorithm in plain float32 (no TF32 tensor-op math)
  for (int i = 0; i < found && pick < 0; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].mathType != CUDNN_TENSOR_OP_MATH) pick = i;
  MM_CHECK(pick >= 0, "[cuda] cudnn_conv2d: cuDNN offers no float32 algorithm for this shape");
  p.algo = perf[pick].algo;
  MM_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(cudnn(), p.x, p.w, p.conv, p.y, p.algo, &p.workspace), op);
  return plans.emplace(key, p).first->second;
}

}  // namespace

void cudnn_conv2d(const float* x, const float* w, const float* bias, float* y, int64_t N, int64_t C, int64_t H,
                  int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t stride, int64_t pad) {
  const ConvShape s = make_shape("cudnn_conv2d", N, C, H, W, O, KH, KW, stride, pad);
  if (N == 0) return;
  const CudnnConv& p = cudnn_plan(s);
  DeviceArray<char> ws(p.workspace);
  const float one = 1.0f, zero = 0.0f;
  MM_CUDNN_CHECK(cudnnConvolutionForward(cudnn(), &one, p.x, x, p.w, w, p.conv, p.algo, ws.data(), p.workspace, &zero,
                                         p.y, y),
                 "cudnn_conv2d");
  if (bias) MM_CUDNN_CHECK(cudnnAddTensor(cudnn(), &one, p.b, bias, &one, p.y, y), "cudnn_conv2d");
}
void cudnn_conv2d_backward_data(const float* dy, const float* w, float* dx, int64_t N, int64_t C, int64_t H,
                                int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t stride, int64_t pad) {
  const char* op = "cudnn_conv2d_backward_data";
  const ConvShape s = make_shape(op, N, C, H, W, O, KH, KW, stride, pad);
  if (N == 0) return;
  CudnnConv& p = cudnn_plan(s);
  if (!p.have_bwd) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[8];
    int found = 0;
    MM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnn(), p.w, p.y, p.conv, p.x, 8, &found, perf), op);
    int pick = -1;  // as the forward: the fastest in plain float32
    for (int i = 0; i < found && pick < 0; ++i)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].mathType != CUDNN_TENSOR_OP_MATH) pick = i;
    MM_CHECK(pick >= 0, "[cuda] ", op, ": cuDNN offers no float32 algorithm for this shape");
    p.bwd_algo = perf[pick].algo;
    MM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(cudnn(), p.w, p.y, p.conv, p.x, p.bwd_algo,
                                                                &p.bwd_workspace),
                   op);
    p.have_bwd = true;
  }
  DeviceArray<char> ws(p.bwd_workspace);
  const float one = 1.0f, zero = 0.0f;
  MM_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn(), &one, p.w, w, p.y, dy, p.conv, p.bwd_algo, ws.data(),
                                              p.bwd_workspace, &zero, p.x, dx),
                 op);
}
bool have_cudnn() { return true; }
#else
void cudnn_conv2d(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                  int64_t, int64_t, int64_t, int64_t) {
  throw Error("[cuda] cudnn_conv2d: mm was built without cuDNN (CMake found no libcudnn; set CUDNN_ROOT)");
}
void cudnn_conv2d_backward_data(const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                int64_t, int64_t, int64_t, int64_t) {
  throw Error("[cuda] cudnn_conv2d_backward_data: mm was built without cuDNN (CMake found no libcudnn; set CUDNN_ROOT)");
}
bool have_cudnn() { return false; }
#endif

}  // namespace mm::cuda
