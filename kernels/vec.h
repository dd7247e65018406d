// kernels/vec.h: vectorised float32 math over contiguous arrays, for the elementwise ops that
// call exp (the activations of CLIP's MLP and taming's ResnetBlocks, softmax rows).
// Reading order: after kernels/gemm.h; like it, it knows nothing of Tensor or the graph.
//
//   float x[5] = {...}, y[5];
//   mm::kernels::vsigmoid_gate(x, y, 5, 1.702f);  // y = quick_gelu(x), as OpenAI CLIP
//
// exp is computed as 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2, and a degree-6 polynomial
// for e^r (the classic Cephes expf coefficients; relative error ~2e-7, i.e. 1-2 ulp). Like
// IEEE exp it overflows to inf above ~88.72, underflows through the subnormals to 0 below
// ~-103.3, and keeps NaN.
// AVX-512 and AVX2 run the same operation sequence and give bitwise the same results; other
// CPUs take scalar loops over std::exp. Every element is independent of its neighbours, so a
// caller may split the arrays across threads freely.
// Implementation: kernels/cpu/vec.cpp (dispatch, scalar path), kernels/cpu/vec_math.h (the
// kernels, written once over a vector type), kernels/cpu/vec_avx512.cpp, vec_avx2.cpp.
// Test:  ./build/mm_tests --source-file=*test_vec.cpp
#pragma once
#include <cstdint>

namespace mm::kernels {

void vexp(const float* x, float* y, int64_t n);  // y = e^x
// y = x * sigmoid(alpha x) = x / (1 + e^(-alpha x)): silu (alpha 1), quick_gelu (alpha 1.702).
void vsigmoid_gate(const float* x, float* y, int64_t n, float alpha);
// dx = dy * d/dx[x sigmoid(alpha x)] = dy * (s + alpha x s (1 - s)), s = sigmoid(alpha x).
void vsigmoid_gate_backward(const float* x, const float* dy, float* dx, int64_t n, float alpha);
// The largest element (-inf for n = 0; NaN elements are skipped): a softmax row's shift.
float vmax(const float* x, int64_t n);
void vadd(const float* a, const float* b, float* y, int64_t n);  // y = a + b (y may alias either)
// One row of layer_norm over n > 0 elements: y = (x - mean) * rstd * w + b (w, b may be null),
// rstd = 1 / sqrt(var + eps) with the biased variance; mean and rstd are returned for the
// backward. The vector paths sum in float lanes in a fixed order (the same for both widths);
// the scalar path sums in double.
void vlayer_norm_row(const float* x, const float* w, const float* b, float* y, int64_t n, float eps, float* mean,
                     float* rstd);

// Which implementation runs: "avx512", "avx2" or "scalar". At first use the best the CPU
// supports is chosen; MM_VEC=scalar|avx2|avx512 forces one (an ISA the CPU lacks is an error).
const char* vec_isa_name();
bool vec_isa_available(const char* name);  // whether this CPU can run it
// Forces one for all later calls ("" = the start-up choice again). Throws mm::Error if unknown
// or unsupported. For tests and benchmarks; not thread-safe against concurrent calls.
void set_vec_isa(const char* name);

}  // namespace mm::kernels
