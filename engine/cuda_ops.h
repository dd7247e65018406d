// engine/cuda_ops.h: the CUDA paths of the engine's ops, for tensors on Device::cuda.
// Reading order: after engine/ops/ and kernels/cuda/. Each op in engine/ops/ that has a device
// path checks its inputs with on_device() first and, for device tensors, calls here; these
// run mm's kernels (kernels/cuda/kernels.h) and cuBLAS/cuDNN on mm's one stream.
//
//   mm::Tensor x = mm::Tensor::randn({4, 8}, gen).to(mm::Device::cuda);
//   mm::Tensor y = mm::quick_gelu(mm::linear(x, w_cuda, b_cuda));   // runs on the GPU
//   std::vector<float> v = y.to_vector<float>();                    // copied back
//
// What exists so far are the ops CLIP's towers use (float32), forward and backward: copies
// and views, broadcasting add/sub/mul/div, neg/exp/silu/quick_gelu/relu, sum over dims,
// linear, matmul, layer_norm, softmax over the last dim, attention (causal or not, no mask),
// conv2d (the input's gradient; not yet the weight's), embedding/index_select of rows.
// Where the engine op's backward is made of ops that run on either device (add, sub, mul,
// div, the scalar forms, neg, linear), the engine op records it for both; the others record
// their device backward here (record_op with closures over device ops and kernels). So
// autograd runs on the device end to end. Nothing falls back to the CPU silently: an op
// without a device path, a dtype other than float32, or a gradient not written yet is
// refused with an error that names the op (unsupported()).
// Built without CUDA, no device tensor can exist (Storage::allocate refuses), and these throw.
#pragma once
#include <cstddef>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mm::cuda_ops {

bool built();           // mm was built with CUDA
bool device_present();  // built, and a device is there (never throws)

void* allocate(size_t bytes);  // from the CUDA caching allocator
void deallocate(void* p);

// Whether any of the (defined) tensors lives on the device; then all of them must, or the
// error names the op and both devices. Undefined tensors (an absent bias) are skipped.
bool on_device(const char* op, std::initializer_list<const Tensor*> tensors);
// Refuses a device op whose inputs need a gradient (for a backward not written yet).
void forward_only(const char* op, std::initializer_list<const Tensor*> tensors);
[[noreturn]] void unsupported(const char* op, const std::string& what);

// dst = src (src broadcast to dst's shape; same dtype), any strides, where at least one of
// the two is on the device.
void copy(const Tensor& dst, const Tensor& src);

enum class Unary { neg, exp, silu, quick_gelu, relu };
enum class Binary { add, sub, mul, div };
Tensor unary(const char* op, Unary u, const Tensor& x);
Tensor binary(const char* op, Binary b, const Tensor& x, const Tensor& y);  // broadcasting
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);            // b may be undefined
Tensor matmul(const Tensor& a, const Tensor& b);  // [M, K] @ [K, N]; [.., M, K] @ [K, N]; [B, M, K] @ [B, K, N]
Tensor layer_norm(const Tensor& x, int64_t N, const Tensor& w, const Tensor& b, double eps);
Tensor softmax_last(const Tensor& x);
// q [B, H, Tq, D], k/v [B, H, Tk, D] (any strides) -> [B, H, Tq, D]
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale);
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t pad);
// out[i] = table[ids[i]] for rows of a 2-D table; ids int64 on either device.
Tensor gather_rows(const char* op, const Tensor& table, const Tensor& ids);
// The sum over `dims` (sorted, distinct), the kept dims in order: sum_forward's device path.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims);
// Elementwise math by name: "abs", "asin", "sqrt", "rsqrt", "log", "square", "tanh",
// "sigmoid", "clamp" (a = lo, b = hi), "pow" (a = exponent).
Tensor math(const char* op, const Tensor& x, double a = 0, double b = 0);
Tensor clamp_with_grad(const Tensor& x, double lo, double hi);
Tensor maximum(const char* op, const Tensor& a, const Tensor& b, bool min);  // broadcasting
// x [.., H, W] -> [.., 2H, 2W]
Tensor upsample_nearest2x(const Tensor& x);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
// x [B, C, H, W]; M [B, 3, 3] on either device (read as float64)
Tensor warp_perspective(const Tensor& x, const Tensor& M, bool border, int64_t out_h, int64_t out_w);
// nearest codebook rows of z [N, D] (int64 [N], on the device)
Tensor nearest_codes(const Tensor& z, const Tensor& codebook);
// One Adam step on a device parameter (as Adam::step on the CPU: float64 arithmetic per element).
void adam_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, double step_size, double sqrt_bc2);

}  // namespace mm::cuda_ops
