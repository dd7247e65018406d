// kernels/cuda/copy.cu: the strided copy under the engine's device tensors: contiguous() of a
// permuted or narrowed view, cat into slices of its output, copy_ with broadcasting (stride 0),
// and fill_ (a one-element source broadcast everywhere). One thread per destination element:
// its linear index is split into coordinates over `shape`, then dotted with each side's
// strides. The bits are copied as they are (no dtype conversion).
#include "kernels/cuda/common.cuh"

namespace mm::cuda {
namespace {

constexpr int kMaxDims = 8;

struct Geometry {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t dst_strides[kMaxDims];
  int64_t src_strides[kMaxDims];
};

template <typename T>
__global__ void strided_copy_kernel(T* __restrict__ dst, const T* __restrict__ src, Geometry g, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, d_off = 0, s_off = 0;
    for (int d = g.ndim - 1; d >= 0; --d) {
      const int64_t c = rest % g.shape[d];
      rest /= g.shape[d];
      d_off += c * g.dst_strides[d];
      s_off += c * g.src_strides[d];
    }
    dst[d_off] = src[s_off];
  }
}

template <typename T>
void launch(void* dst, const void* src, const Geometry& g, int64_t n) {
  constexpr int threads = 256;
  strided_copy_kernel<T><<<grid_for(n, threads), threads, 0, stream()>>>(static_cast<T*>(dst),
                                                                          static_cast<const T*>(src), g, n);
  MM_CUDA_LAUNCHED("strided_copy");
}

}  // namespace

void strided_copy(void* dst, const int64_t* dst_strides, const void* src, const int64_t* src_strides,
                  const int64_t* shape, int ndim, int elem_size) {
  MM_CHECK(ndim >= 0 && ndim <= kMaxDims, "[cuda strided_copy] ", ndim, " dimensions; at most ", kMaxDims);
  Geometry g{};
  g.ndim = ndim;
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) {
    g.shape[d] = shape[d];
    g.dst_strides[d] = dst_strides[d];
    g.src_strides[d] = src_strides[d];
    n *= shape[d];
  }
  if (n == 0) return;
  switch (elem_size) {
    case 1: return launch<uint8_t>(dst, src, g, n);
    case 2: return launch<uint16_t>(dst, src, g, n);
    case 4: return launch<uint32_t>(dst, src, g, n);
    case 8: return launch<uint64_t>(dst, src, g, n);
  }
  MM_CHECK(false, "[cuda strided_copy] element size ", elem_size, " bytes; expected 1, 2, 4 or 8");
}

}  // namespace mm::cuda
