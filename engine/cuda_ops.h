// engine/cuda_ops.h: the CUDA paths of the engine's ops, for tensors on Device::cuda.
// Reading order: after engine/ops/ and kernels/cuda/. Each op in engine/ops/ that has a device
// path checks its inputs with on_device() first and, for device tensors, calls here; these
// run mm's kernels (kernels/cuda/kernels.h) and cuBLAS/cuDNN on mm's one stream.
//
//   mm::Tensor x = mm::Tensor::randn({4, 8}, gen).to(mm::Device::cuda);
//   mm::Tensor y = mm::quick_gelu(mm::linear(x, w_cuda, b_cuda));   // runs on the GPU
//   std::vector<float> v = y.to_vector<float>();                    // copied back
//
// Every engine op has a device path here, forward and backward, in float32: copies and
// views, broadcasting arithmetic and math, comparisons and where, reductions with indices,
// linear/matmul, the norms, attention (fused, or composed for masks and wide heads), conv2d
// (all three gradients), gathers and index maps, pooling, resizing, VQ search, the warp, Adam.
// Where the engine op's backward is made of ops that run on either device (add, sub, mul,
// div, pow, where, the scalar forms, neg, linear), the engine op records it for both; the
// others record their device backward here (record_op with closures over device ops and
// kernels). So autograd runs on the device end to end. Nothing falls back to the CPU
// silently: a dtype other than float32 in the math is refused with an error that names the
// op (unsupported()). conv2d takes one stride and even padding here; engine/ops/conv.cpp
// composes groups, dilation, uneven padding and unequal strides around it.
// Built without CUDA, no device tensor can exist (Storage::allocate refuses), and these throw.
#pragma once
#include <array>
#include <cstddef>
#include <utility>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mm::cuda_ops {

// The precision of the device's GEMMs (linear, matmul, and so the composed attention and
// conv2d's weight gradient; conv2d's forward as im2col + GEMM, its input gradient as GEMM +
// col2im): fp32, or bf16/fp16 operands
// with float32 accumulation and float32 results, the tensor-core rate. Tensors stay float32
// in memory (the master values of whatever is optimised); operands are rounded to 16 bits
// as each GEMM reads them. The fused attention reads 16-bit q, k, v too (the tensor-core
// kernels defaults.cu picks: attention_16bit_version, and attention_backward_version after a
// bf16 forward); the other ops stay float32, and the CPU always computes in float32. Per
// thread: PrecisionScope sets it for a block (the models
// open one with their own precision, ClipModel/VQGAN::set_precision, so the apps' other
// GEMMs stay float32). Each backward step runs at its forward's precision, except that fp16
// forwards take bf16 backwards: gradients span more range than fp16's 6e-8..65504 and there
// is no loss scaling. fp16 activations beyond 65504 become inf: bf16 is the safer choice.
enum class Precision { fp32, bf16, fp16 };
Precision precision();
Precision backward_precision(Precision forward);  // fp16 -> bf16, else the same
const char* precision_name(Precision p);
Precision parse_precision(const std::string& name, const char* what);  // "fp32" | "bf16" | "fp16"
class PrecisionScope {
 public:
  explicit PrecisionScope(std::optional<Precision> p);  // nullopt: keeps the thread's
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  Precision saved_;
};

bool built();           // mm was built with CUDA
bool device_present();  // built, and a device is there (never throws)
bool emulated();        // the "device" is mm's CPU emulator of CUDA (MM_CUDA_EMULATE; for tests, not speed)
// The apps' default device (--device auto): the GPU when a real one is present, else the CPU.
// The emulator is never the default: it runs kernels one thread at a time, for correctness.
Device default_device();

void* allocate(size_t bytes);  // from the CUDA caching allocator
void deallocate(void* p);
// The caching allocator's bytes (zeros without CUDA): handed out now, the most handed out at
// once since the start or reset_memory_peak, and freed blocks kept in the pool.
struct MemoryUse {
  size_t in_use = 0, peak = 0, cached = 0;
};
MemoryUse memory_use();
void reset_memory_peak();
void empty_cache();  // hands the pool's free blocks back to the driver (waits for the device)

// Whether any of the (defined) tensors lives on the device; then all of them must, or the
// error names the op and both devices. Undefined tensors (an absent bias) are skipped.
bool on_device(const char* op, std::initializer_list<const Tensor*> tensors);
[[noreturn]] void unsupported(const char* op, const std::string& what);

// dst = src (src broadcast to dst's shape; same dtype), any strides, where at least one of
// the two is on the device.
void copy(const Tensor& dst, const Tensor& src);

enum class Unary { neg, exp, silu, quick_gelu, relu };
enum class Binary { add, sub, mul, div, pow };
Tensor unary(const char* op, Unary u, const Tensor& x);
Tensor binary(const char* op, Binary b, const Tensor& x, const Tensor& y);  // broadcasting
enum class Cmp { eq, ne, lt, le, gt, ge };
Tensor compare(const char* op, Cmp c, const Tensor& a, const Tensor& b);  // broadcasting, into bool
// cond ? a : b over the broadcast shape (its gradient is recorded by mm::where, for both devices)
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& mask);
// dst = src converted to dst's dtype (one shape, both on the device)
void convert(const Tensor& dst, const Tensor& src);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);            // b may be undefined
Tensor matmul(const Tensor& a, const Tensor& b);  // [M, K] @ [K, N]; [.., M, K] @ [K, N]; [B, M, K] @ [B, K, N]
Tensor layer_norm(const Tensor& x, int64_t N, const Tensor& w, const Tensor& b, double eps);
Tensor group_norm(const char* op, const Tensor& x, int64_t groups, const Tensor& w, const Tensor& b, double eps,
                  bool silu);
Tensor softmax_last(const Tensor& x);
// q [.., Tq, D], k/v [.., Tk, D] (any strides) -> [.., Tq, Dv], mm::scaled_dot_product_attention's
// semantics (mask: bool keep or float added; causal top-left aligned; a row with every key
// masked gives zeros). The fused kernel takes [B, H, T, D] with D <= 128 and no mask; the
// rest runs as GEMM, masking, softmax, GEMM, each with its own backward.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal, double scale);
// Symmetric stride and padding (the engine pads first for uneven padding); gradients for x, w, b.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t pad);
// out[i] = table[ids[i]] for rows of a 2-D table; ids int64 on either device.
Tensor gather_rows(const char* op, const Tensor& table, const Tensor& ids);
// The sum over `dims` (sorted, distinct), the kept dims in order: sum_forward's device path.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims);
// Elementwise math by name: "abs", "asin", "sqrt", "rsqrt", "log", "square", "tanh",
// "sigmoid", "clamp" (a = lo, b = hi), "pow" (a = exponent), "sin", "cos", "gelu", "gelu_tanh".
Tensor math(const char* op, const Tensor& x, double a = 0, double b = 0);
Tensor clamp_with_grad(const Tensor& x, double lo, double hi);
Tensor maximum(const char* op, const Tensor& a, const Tensor& b, bool min);  // broadcasting
// x [.., H, W] -> [.., 2H, 2W]
Tensor upsample_nearest2x(const Tensor& x);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
// x [B, C, H, W]; M [B, 3, 3] on either device (read as float64)
Tensor warp_perspective(const Tensor& x, const Tensor& M, bool border, int64_t out_h, int64_t out_w);
// Dim `dim` of x re-indexed through map: y.size(dim) = map.size(), y[.., j, ..] = x[.., map[j], ..],
// or `fill` where map[j] < 0 (padding, index_select on any dim, nearest resampling).
Tensor index_axis(const char* op, const Tensor& x, int64_t dim, const std::vector<int64_t>& map, double fill = 0);
// torch.gather along dim; index int64 on the device, already checked against x.size(dim) by
// mm::gather (the kernel reads x without bounds).
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// The max (or min) along dim, the dim kept with size 1: values and int64 indices (first on ties; NaN wins).
std::pair<Tensor, Tensor> extreme(const char* op, const Tensor& x, int64_t dim, bool max);
// Window pooling of x [.., H, W]; window = {kh, kw, sh, sw, ph, pw}, torch's semantics.
Tensor avg_pool2d(const Tensor& x, const std::array<int64_t, 6>& window, bool count_include_pad);
Tensor max_pool2d(const Tensor& x, const std::array<int64_t, 6>& window);
// nearest codebook rows of z [N, D] (int64 [N], on the device)
Tensor nearest_codes(const Tensor& z, const Tensor& codebook);
// One Adam step on a device parameter (as Adam::step on the CPU: float64 arithmetic per element).
void adam_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, double step_size, double sqrt_bc2);

}  // namespace mm::cuda_ops
