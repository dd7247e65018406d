// engine/ops/linalg.h: matrix products: matmul (torch semantics, batched with broadcasting)
// and linear (x @ W^T + b). Forward and backward on the CPU, on kernels/gemm.h.
// Reading order: after reduce.h; norm, attention and vq stand on it.
// Test: ./build/mm_tests --source-file=*test_linalg.cpp
//
//   Tensor y = mm::matmul(a, b);               // a [B, 1, M, K] @ b [NH, K, N] -> [B, NH, M, N]
//   Tensor v = mm::matmul(m, x);               // m [M, K] @ x [K] -> [M] (1-D operands as torch)
//   Tensor h = mm::linear(x, w, bias);         // x [B, T, in], w [out, in], bias [out] -> [B, T, out]
//   Tensor z = mm::linear(x, w, Tensor());     // no bias
//
// Both take float32 (sgemm) or float64 (dgemm) tensors of one dtype. Inputs may be any
// strided views: transposed or sliced matrices are handed to the GEMM as strided views,
// with no copy.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace mm {

// torch.matmul: 1-D x 1-D is a dot product; a 1-D first operand is a row [1, K] and a 1-D
// second operand a column [K, 1] (the added dim is removed from the result); otherwise the
// last two dims are the matrices and the leading (batch) dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);

// y = x @ weight^T + bias over the last dim of x, as one GEMM over all rows of x.
// x [..., in], weight [out, in], bias [out] or undefined -> y [..., out].
// A frozen weight may be float16/bfloat16 with float32 x (a model kept in its file's dtype,
// memory-mapped): it is widened exactly, per call or once by prepack_linear_weight, and the
// result is bitwise that of the float32 weight. Input gradients flow; the weight's cannot.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
bool is_half_weight(const Tensor& weight);  // float16 or bfloat16: what linear widens

// Packs a frozen float32 linear weight [out, in] for the GEMM once, so that later linear()
// calls with this weight skip packing it on every call (at transformer sizes that costs a
// third of the multiply; kernels/gemm.h, PackedB). Results are bitwise the same. Costs a second
// copy of the weight. The weight must not change afterwards: copy_, fill_ and
// set_requires_grad(true) drop the pack, writes through data<T>() do not. Returns false (and
// does nothing) for weights that require grad or are not float32/16-bit 2-D. A 16-bit weight
// is packed as float32 (the pack then replaces its per-call widening).
bool prepack_linear_weight(const Tensor& weight);
// Whether linear() will read this exact view of `weight` from a pack.
bool linear_weight_packed(const Tensor& weight);

// ---- helpers for other ops' CPU kernels (attention, vq) ---------------------------------
namespace detail {

// C[M,N] = alpha * A[M,K] @ B[K,N] + beta * C on strided views: element (i, j) of A is
// a[i * a_rs + j * a_cs]; C is row-major with leading dimension ldc. float -> kernels::sgemm,
// double -> kernels::dgemm. Inside a parallel_for it runs on the calling thread only.
template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, T alpha, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
          int64_t b_rs, int64_t b_cs, T beta, T* c, int64_t ldc);

// Element offset of every batch entry: entry i (row-major over `batch`) starts at
// sum_d index_d(i) * strides[d]. Broadcast dims have stride 0.
std::vector<int64_t> batch_offsets(const Shape& batch, const Shape& strides);

}  // namespace detail
}  // namespace mm
