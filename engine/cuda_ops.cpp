// engine/cuda_ops.cpp: see engine/cuda_ops.h. Compiled into the engine always; the device
// paths exist when mm is built with CUDA (MM_CUDA), and otherwise every entry refuses.
#include "engine/cuda_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "engine/ops/reduce.h"
#include "engine/shape.h"
#include "kernels/cpu/loops.h"
#if MM_CUDA
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"
#endif

namespace mm::cuda_ops {

[[noreturn]] void unsupported(const char* op, const std::string& what) {
  throw Error(str_cat("[", op, "] ", what, " on cuda is not implemented yet; run it on the CPU ",
                              "(--device cpu, or .to(Device::cpu) first)"));
}

bool on_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  bool any_cuda = false, any_cpu = false;
  const Tensor* first_cuda = nullptr;
  const Tensor* first_cpu = nullptr;
  for (const Tensor* t : tensors) {
    if (!t || !t->defined()) continue;
    if (t->device() == Device::cuda) {
      any_cuda = true;
      if (!first_cuda) first_cuda = t;
    } else {
      any_cpu = true;
      if (!first_cpu) first_cpu = t;
    }
  }
  MM_CHECK(!(any_cuda && any_cpu), "[", op, "] tensors on different devices: cuda ", first_cuda->str(), " and cpu ",
           first_cpu->str(), "; move them to one device with .to()");
  return any_cuda;
}

namespace {
thread_local Precision t_precision = Precision::fp32;
}
Precision precision() { return t_precision; }
const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : p == Precision::fp16 ? "fp16" : "fp32"; }
Precision parse_precision(const std::string& name, const char* what) {
  for (Precision p : {Precision::fp32, Precision::bf16, Precision::fp16})
    if (name == precision_name(p)) return p;
  throw Error(str_cat(what, ": --precision must be fp32, bf16 or fp16, got '", name, "'"));
}
Precision backward_precision(Precision forward) { return forward == Precision::fp16 ? Precision::bf16 : forward; }
PrecisionScope::PrecisionScope(std::optional<Precision> p) : saved_(t_precision) {
  if (p) t_precision = *p;
}
PrecisionScope::~PrecisionScope() { t_precision = saved_; }

Device default_device() { return device_present() && !emulated() ? Device::cuda : Device::cpu; }

#if !MM_CUDA

bool built() { return false; }
bool device_present() { return false; }
bool emulated() { return false; }
void* allocate(size_t) { throw Error("cannot allocate on cuda: mm was built without CUDA"); }
void deallocate(void*) {}
MemoryUse memory_use() { return {}; }
void reset_memory_peak() {}
void empty_cache() {}
void copy(const Tensor&, const Tensor&) { unsupported("copy", "mm was built without CUDA:"); }
Tensor unary(const char* op, Unary, const Tensor&) { unsupported(op, "mm was built without CUDA:"); }
Tensor binary(const char* op, Binary, const Tensor&, const Tensor&) { unsupported(op, "mm was built without CUDA:"); }
Tensor linear(const Tensor&, const Tensor&, const Tensor&) { unsupported("linear", "mm was built without CUDA:"); }
Tensor matmul(const Tensor&, const Tensor&) { unsupported("matmul", "mm was built without CUDA:"); }
Tensor layer_norm(const Tensor&, int64_t, const Tensor&, const Tensor&, double) {
  unsupported("layer_norm", "mm was built without CUDA:");
}
Tensor group_norm(const char* op, const Tensor&, int64_t, const Tensor&, const Tensor&, double, bool) {
  unsupported(op, "mm was built without CUDA:");
}
Tensor softmax_last(const Tensor&) { unsupported("softmax", "mm was built without CUDA:"); }
Tensor compare(const char* op, Cmp, const Tensor&, const Tensor&) { unsupported(op, "mm was built without CUDA:"); }
Tensor where(const Tensor&, const Tensor&, const Tensor&) { unsupported("where", "mm was built without CUDA:"); }
Tensor logical_not(const Tensor&) { unsupported("logical_not", "mm was built without CUDA:"); }
void convert(const Tensor&, const Tensor&) { unsupported("to", "mm was built without CUDA:"); }
Tensor index_axis(const char* op, const Tensor&, int64_t, const std::vector<int64_t>&, double) {
  unsupported(op, "mm was built without CUDA:");
}
Tensor gather(const Tensor&, int64_t, const Tensor&) { unsupported("gather", "mm was built without CUDA:"); }
std::pair<Tensor, Tensor> extreme(const char* op, const Tensor&, int64_t, bool) {
  unsupported(op, "mm was built without CUDA:");
}
Tensor avg_pool2d(const Tensor&, const std::array<int64_t, 6>&, bool) {
  unsupported("avg_pool2d", "mm was built without CUDA:");
}
Tensor max_pool2d(const Tensor&, const std::array<int64_t, 6>&) {
  unsupported("max_pool2d", "mm was built without CUDA:");
}
Tensor attention(const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, double) {
  unsupported("scaled_dot_product_attention", "mm was built without CUDA:");
}
Tensor conv2d(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t) {
  unsupported("conv2d", "mm was built without CUDA:");
}
Tensor gather_rows(const char* op, const Tensor&, const Tensor&) { unsupported(op, "mm was built without CUDA:"); }
Tensor sum(const Tensor&, const std::vector<int64_t>&) { unsupported("sum", "mm was built without CUDA:"); }
Tensor math(const char* op, const Tensor&, double, double) { unsupported(op, "mm was built without CUDA:"); }
Tensor clamp_with_grad(const Tensor&, double, double) { unsupported("clamp_with_grad", "mm was built without CUDA:"); }
Tensor maximum(const char* op, const Tensor&, const Tensor&, bool) { unsupported(op, "mm was built without CUDA:"); }
Tensor upsample_nearest2x(const Tensor&) { unsupported("upsample_nearest2d", "mm was built without CUDA:"); }
Tensor adaptive_avg_pool2d(const Tensor&, int64_t, int64_t) {
  unsupported("adaptive_avg_pool2d", "mm was built without CUDA:");
}
Tensor warp_perspective(const Tensor&, const Tensor&, bool, int64_t, int64_t) {
  unsupported("warp_perspective", "mm was built without CUDA:");
}
Tensor nearest_codes(const Tensor&, const Tensor&) { unsupported("vector_quantize", "mm was built without CUDA:"); }
void adam_step(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, double, double, double, double, bool,
               double, double) {
  unsupported("Adam", "mm was built without CUDA:");
}

#else

namespace {

Tensor matmul_forward(const Tensor& a, const Tensor& b);

// A device tensor's float pointer. A CPU tensor here would hand a host pointer to a kernel
// (which faults on a GPU), so it is refused.
float* fptr(const Tensor& t) {
  MM_CHECK(t.device() == Device::cuda, "[cuda] internal: a CPU tensor ", t.str(), " reached a device kernel");
  return static_cast<float*>(t.device_ptr());
}

void check_f32(const char* op, const Tensor& t) {
  if (t.defined() && t.dtype() != DType::f32) unsupported(op, str_cat("dtype ", t.str(), " (float32 only)"));
}

// A contiguous device tensor with t's values (t itself when it already is one).
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), Device::cuda);
  copy(out, t);
  return out;
}

// t broadcast to `shape` and made dense on the device.
Tensor dense_as(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return dense(t);
  Tensor out = Tensor::empty(shape, t.dtype(), Device::cuda);
  copy(out, t);
  return out;
}

// A dense float32 device tensor rounded to this thread's 16-bit GEMM precision.
Tensor to_half(const Tensor& t) {
  Tensor h = Tensor::empty(t.shape(), precision() == Precision::fp16 ? DType::f16 : DType::bf16, Device::cuda);
  cuda::convert(t.device_ptr(), static_cast<int>(DType::f32), h.device_ptr(), static_cast<int>(h.dtype()), t.numel());
  return h;
}

// C [M, N] = op(A)·op(B) for dense float32 device operands, at this thread's precision.
void gemm_at_precision(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const Tensor& A, const Tensor& B,
                       float* C) {
  if (precision() == Precision::fp32) return cuda::cublas_gemm(trans_a, trans_b, M, N, K, fptr(A), fptr(B), C, false);
  const Tensor a = to_half(A), b = to_half(B);
  cuda::cublas_gemm_half(trans_a, trans_b, M, N, K, a.device_ptr(), b.device_ptr(), C, precision() == Precision::fp16);
}
// C_i = A_i·B_i over `batch` dense [M, K] and [K, N] blocks.
void gemm_batched_at_precision(int64_t batch, int64_t M, int64_t N, int64_t K, const Tensor& A, const Tensor& B,
                               float* C) {
  if (precision() == Precision::fp32) return cuda::cublas_gemm_batched(false, batch, M, N, K, fptr(A), fptr(B), C);
  const Tensor a = to_half(A), b = to_half(B);
  cuda::cublas_gemm_half_batched(batch, M, N, K, a.device_ptr(), b.device_ptr(), C, precision() == Precision::fp16);
}

// How many samples of a convolution's im2col (per_sample elements each) to build at once:
// about 64M elements, at least one sample.
int64_t samples_per_chunk(int64_t per_sample) {
  return std::max<int64_t>(1, (int64_t(64) << 20) / std::max<int64_t>(per_sample, 1));
}

// The operands of a broadcasting binary op: checked float32, dense in their common shape.
struct Operands {
  Shape shape;
  Tensor a, b;
};
Operands broadcast_operands(const char* op, const Tensor& a, const Tensor& b) {
  check_f32(op, a);
  check_f32(op, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  return {shape, dense_as(a, shape), dense_as(b, shape)};
}

}  // namespace

bool built() { return true; }
bool device_present() { return cuda::available(); }
#if MM_CUDA_EMULATED
bool emulated() { return true; }
#else
bool emulated() { return false; }
#endif

void* allocate(size_t bytes) {
  MM_CHECK(cuda::available(), "cannot allocate on cuda: no CUDA device is present (",
           "mm was built with CUDA, but the driver reports no device)");
  return cuda::allocate(bytes, "tensor");
}
void deallocate(void* p) { cuda::deallocate(p); }
MemoryUse memory_use() {
  if (!cuda::available()) return {};
  const cuda::MemoryStats m = cuda::memory_stats();
  return {m.in_use_bytes, m.peak_bytes, m.cached_bytes};
}
void reset_memory_peak() {
  if (cuda::available()) cuda::reset_peak();
}
void empty_cache() {
  if (cuda::available()) cuda::empty_cache();
}

void copy(const Tensor& dst, const Tensor& src) {
  MM_CHECK(dst.dtype() == src.dtype(), "[copy] ", src.str(), " into ", dst.str(),
           ": a device copy keeps the dtype (convert on the CPU side)");
  const Shape& shape = dst.shape();
  const size_t esize = dtype_size(dst.dtype());
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (dst.device() == Device::cuda && src.device() == Device::cuda) {
    const Shape ss = kernels::broadcast_strides(src.shape(), src.strides(), shape);
    cuda::strided_copy(dst.device_ptr(), dst.strides().data(), src.device_ptr(), ss.data(), shape.data(),
                       static_cast<int>(shape.size()), static_cast<int>(esize));
    return;
  }
  if (dst.device() == Device::cuda) {  // upload src dense in its own shape; broadcast on the device
    const Tensor host = src.contiguous();
    if (dst.is_contiguous() && src.shape() == shape) {
      cuda::copy_to_device(dst.device_ptr(), host.device_ptr(), n * esize, "copy");
    } else {
      Tensor staged = Tensor::empty(src.shape(), src.dtype(), Device::cuda);
      cuda::copy_to_device(staged.device_ptr(), host.device_ptr(), src.numel() * esize, "copy");
      copy(dst, staged);
    }
    return;
  }
  // download: dense on the device, then into dst's layout on the host
  Tensor dev = dense_as(src, shape);
  if (dst.is_contiguous()) {
    cuda::copy_to_host(dst.device_ptr(), dev.device_ptr(), n * esize, "copy");
  } else {
    Tensor host = Tensor::empty(shape, dst.dtype());
    cuda::copy_to_host(host.device_ptr(), dev.device_ptr(), n * esize, "copy");
    Tensor(dst).copy_(host);  // (a handle to the same tensor: copy_ is not const)
  }
}

Tensor unary(const char* op, Unary u, const Tensor& x) {
  check_f32(op, x);
  Tensor xd = dense(x);
  Tensor out = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  cuda::Unary k = cuda::Unary::neg;
  switch (u) {
    case Unary::neg: k = cuda::Unary::neg; break;
    case Unary::exp: k = cuda::Unary::exp; break;
    case Unary::silu: k = cuda::Unary::silu; break;
    case Unary::quick_gelu: k = cuda::Unary::quick_gelu; break;
    case Unary::relu: k = cuda::Unary::relu; break;
  }
  cuda::unary(k, fptr(xd), fptr(out), x.numel());
  if (u != Unary::neg && needs_grad({x})) {  // (neg's backward is recorded by mm::neg for both devices)
    Tensor saved = u == Unary::exp ? out.detach() : xd.detach();
    record_op(op, {x}, {out}, [u, k, saved](const Grads& g) -> Grads {
      if (u == Unary::exp) return {mm::mul(g[0], saved)};  // d exp(x) = exp(x)
      Tensor dy = dense(g[0]);
      Tensor dx = Tensor::empty(saved.shape(), DType::f32, Device::cuda);
      cuda::unary_backward(k, fptr(saved), fptr(dy), fptr(dx), saved.numel());
      return {dx};
    });
  }
  return out;
}

Tensor binary(const char* op, Binary b, const Tensor& x, const Tensor& y) {
  const Operands o = broadcast_operands(op, x, y);
  Tensor out = Tensor::empty(o.shape, DType::f32, Device::cuda);
  static constexpr cuda::Binary kBinary[] = {cuda::Binary::add, cuda::Binary::sub, cuda::Binary::mul,
                                             cuda::Binary::div, cuda::Binary::pow};
  cuda::binary(kBinary[static_cast<int>(b)], fptr(o.a), fptr(o.b), fptr(out), out.numel());
  return out;
}

Tensor compare(const char* op, Cmp c, const Tensor& a, const Tensor& b) {
  const Operands o = broadcast_operands(op, a, b);
  Tensor y = Tensor::empty(o.shape, DType::boolean, Device::cuda);
  static constexpr cuda::Cmp kCmp[] = {cuda::Cmp::eq, cuda::Cmp::ne, cuda::Cmp::lt,
                                       cuda::Cmp::le, cuda::Cmp::gt, cuda::Cmp::ge};
  cuda::compare(kCmp[static_cast<int>(c)], fptr(o.a), fptr(o.b), static_cast<bool*>(y.device_ptr()), y.numel());
  return y;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_f32("where", a);
  check_f32("where", b);
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor cd = dense_as(cond, shape), ad = dense_as(a, shape), bd = dense_as(b, shape);
  Tensor y = Tensor::empty(shape, DType::f32, Device::cuda);
  cuda::select(static_cast<const bool*>(cd.device_ptr()), fptr(ad), fptr(bd), fptr(y), y.numel());
  return y;
}

Tensor logical_not(const Tensor& mask) {
  Tensor md = dense(mask);
  Tensor y = Tensor::empty(mask.shape(), DType::boolean, Device::cuda);
  cuda::logical_not(static_cast<const bool*>(md.device_ptr()), static_cast<bool*>(y.device_ptr()), y.numel());
  return y;
}

void convert(const Tensor& dst, const Tensor& src) {
  MM_CHECK(dst.shape() == src.shape() && dst.device() == Device::cuda && src.device() == Device::cuda,
           "[to] internal: a device conversion of ", src.str(), " into ", dst.str());
  Tensor sd = dense(src);
  Tensor out = dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), Device::cuda);
  cuda::convert(sd.device_ptr(), static_cast<int>(src.dtype()), out.device_ptr(), static_cast<int>(dst.dtype()),
                src.numel());
  if (!dst.is_contiguous()) copy(dst, out);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  for (const Tensor* t : {&x, &w, &b}) check_f32("linear", *t);
  const int64_t in = w.size(1), out_f = w.size(0);
  Tensor x2 = dense(x), wd = dense(w);
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  const int64_t R = numel(Shape(out_shape.begin(), out_shape.end() - 1));  // rows, also when in == 0
  Tensor y = Tensor::empty(out_shape, DType::f32, Device::cuda);
  if (in == 0) cuda::fill_bytes(y.device_ptr(), 0, y.numel() * sizeof(float));  // an empty sum
  // y [R, out] = x [R, in] . w^T, with w [out, in] row-major read transposed
  gemm_at_precision(false, true, R, out_f, in, x2, wd, fptr(y));
  if (b.defined()) {
    Tensor yb = Tensor::empty(out_shape, DType::f32, Device::cuda);
    cuda::add_rows(fptr(y), fptr(dense(b)), fptr(yb), R, out_f);
    return yb;
  }
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_f32("matmul", a);
  check_f32("matmul", b);
  Tensor y = matmul_forward(a, b);
  if (needs_grad({a, b})) {
    const bool want_a = a.requires_grad(), want_b = b.requires_grad();
    // dA reads b and dB reads a: each kept only when the other's gradient is wanted.
    const Tensor as = want_b ? a.detach() : Tensor(), bs = want_a ? b.detach() : Tensor();
    const Shape b_shape = b.shape();
    const Precision prec = backward_precision(precision());
    record_op("matmul", {a, b}, {y}, [=](const Grads& g) -> Grads {
      PrecisionScope scope(prec);  // the backward's GEMMs at the forward's precision (see backward_precision)
      const Tensor& G = g[0];
      if (b_shape.size() == 2) {  // [.., M, K] @ [K, N]: dA = G·Bᵀ; dB = Aᵀ·G over all rows
        const int64_t K = b_shape[0], N = b_shape[1];
        return {want_a ? mm::matmul(G, bs.t()) : Tensor(),
                want_b ? mm::matmul(as.reshape({-1, K}).t(), G.reshape({-1, N})) : Tensor()};
      }
      return {want_a ? mm::matmul(G, bs.transpose(1, 2)) : Tensor(),
              want_b ? mm::matmul(as.transpose(1, 2), G) : Tensor()};
    });
  }
  return y;
}

namespace {
Tensor matmul_forward(const Tensor& a, const Tensor& b) {
  if (b.dim() == 2 && a.dim() >= 2) {  // [.., M, K] @ [K, N]: one GEMM over all rows
    const int64_t K = b.size(0), N = b.size(1);
    MM_CHECK(a.size(-1) == K, "[matmul] ", a.str(), " @ ", b.str(), ": inner dims differ");
    Shape out_shape = a.shape();
    out_shape.back() = N;
    const int64_t R = numel(Shape(out_shape.begin(), out_shape.end() - 1));
    Tensor y = Tensor::empty(out_shape, DType::f32, Device::cuda);
    if (K == 0) cuda::fill_bytes(y.device_ptr(), 0, y.numel() * sizeof(float));
    gemm_at_precision(false, false, R, N, K, dense(a), dense(b), fptr(y));
    return y;
  }
  if (a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0)) {
    const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
    MM_CHECK(b.size(1) == K, "[matmul] ", a.str(), " @ ", b.str(), ": inner dims differ");
    Tensor y = Tensor::empty({B, M, N}, DType::f32, Device::cuda);
    if (K == 0) cuda::fill_bytes(y.device_ptr(), 0, y.numel() * sizeof(float));
    gemm_batched_at_precision(B, M, N, K, dense(a), dense(b), fptr(y));
    return y;
  }
  unsupported("matmul", str_cat("the shapes ", a.str(), " @ ", b.str(),
                                        " (device paths: [.., M, K] @ [K, N] and [B, M, K] @ [B, K, N])"));
}
}  // namespace

Tensor layer_norm(const Tensor& x, int64_t N, const Tensor& w, const Tensor& b, double eps) {
  for (const Tensor* t : {&x, &w, &b}) check_f32("layer_norm", *t);
  Tensor xd = dense(x), wd = w.defined() ? dense(w) : Tensor();
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  const int64_t rows = x.numel() / std::max<int64_t>(N, 1);
  const bool grad = needs_grad({x, w, b});
  // the backward reads each row's mean and 1/std from the forward
  Tensor mean = grad ? Tensor::empty({rows}, DType::f32, Device::cuda) : Tensor();
  Tensor rstd = grad ? Tensor::empty({rows}, DType::f32, Device::cuda) : Tensor();
  cuda::layer_norm(fptr(xd), w.defined() ? fptr(wd) : nullptr, b.defined() ? fptr(dense(b)) : nullptr, fptr(y),
                   grad ? fptr(mean) : nullptr, grad ? fptr(rstd) : nullptr, rows, N, static_cast<float>(eps));
  if (grad) {
    Tensor xs = xd.detach(), ws = wd.defined() ? wd.detach() : Tensor();
    const bool want_w = w.defined() && w.requires_grad(), want_b = b.defined() && b.requires_grad();
    const Shape w_shape = w.defined() ? w.shape() : Shape{}, b_shape = b.defined() ? b.shape() : Shape{};
    record_op("layer_norm", {x, w, b}, {y}, [=](const Grads& g) -> Grads {
      Tensor dy = dense(g[0]);
      Tensor dx = Tensor::empty(xs.shape(), DType::f32, Device::cuda);
      Tensor dw = want_w ? Tensor::empty({N}, DType::f32, Device::cuda) : Tensor();
      Tensor db = want_b ? Tensor::empty({N}, DType::f32, Device::cuda) : Tensor();
      cuda::layer_norm_backward(fptr(xs), ws.defined() ? fptr(ws) : nullptr, fptr(mean), fptr(rstd), fptr(dy),
                                fptr(dx), want_w ? fptr(dw) : nullptr, want_b ? fptr(db) : nullptr, rows, N);
      return {dx, want_w ? dw.reshape(w_shape) : Tensor(), want_b ? db.reshape(b_shape) : Tensor()};
    });
  }
  return y;
}

// One kernel each way (kernels/cuda/norm.cu, the SiLU fused or not): the backward reads x, the
// weight and bias, and each group's mean and 1/std, and recomputes the normalised values.
Tensor group_norm(const char* op, const Tensor& x, int64_t groups, const Tensor& w, const Tensor& b, double eps,
                  bool silu) {
  for (const Tensor* t : {&x, &w, &b}) check_f32(op, *t);
  const int64_t N = x.size(0), C = x.size(1), HW = C ? x.numel() / std::max<int64_t>(N * C, 1) : 0;
  const Tensor xd = dense(x), wd = w.defined() ? dense(w) : Tensor(), bd = b.defined() ? dense(b) : Tensor();
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  const bool grad = needs_grad({x, w, b});
  Tensor mean = grad ? Tensor::empty({N * groups}, DType::f32, Device::cuda) : Tensor();
  Tensor rstd = grad ? Tensor::empty({N * groups}, DType::f32, Device::cuda) : Tensor();
  auto p = [](const Tensor& t) { return t.defined() ? fptr(t) : nullptr; };
  if (x.numel() > 0)
    cuda::group_norm(fptr(xd), p(wd), p(bd), fptr(y), p(mean), p(rstd), N, C, HW, groups, static_cast<float>(eps),
                     silu);
  if (grad) {
    const Tensor xs = xd.detach(), ws = wd.defined() ? wd.detach() : Tensor(), bs = bd.defined() ? bd.detach() : Tensor();
    const bool want_x = x.requires_grad(), want_w = w.defined() && w.requires_grad();
    const bool want_b = b.defined() && b.requires_grad();
    record_op(op, {x, w, b}, {y}, [=](const Grads& g) -> Grads {
      const Tensor dy = dense(g[0]);
      Tensor dx = want_x ? Tensor::empty(xs.shape(), DType::f32, Device::cuda) : Tensor();
      Tensor dw = want_w ? Tensor::empty({C}, DType::f32, Device::cuda) : Tensor();
      Tensor db = want_b ? Tensor::empty({C}, DType::f32, Device::cuda) : Tensor();
      if (N * C * HW == 0) {  // empty sums
        for (Tensor* t : {&dw, &db})
          if (t->defined()) t->fill_(0.0);
      } else {
        cuda::group_norm_backward(fptr(xs), p(ws), p(bs), fptr(mean), fptr(rstd), fptr(dy), p(dx), p(dw), p(db), N, C,
                                  HW, groups, silu);
      }
      return {dx, dw, db};
    });
  }
  return y;
}

Tensor softmax_last(const Tensor& x) {
  check_f32("softmax", x);
  Tensor xd = dense(x);
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1), rows = x.numel() / std::max<int64_t>(cols, 1);
  cuda::softmax(fptr(xd), fptr(y), rows, cols);
  if (needs_grad({x})) {
    Tensor ys = y.detach();  // dx = y (dy - sum(dy y))
    record_op("softmax", {x}, {y}, [ys, rows, cols](const Grads& g) -> Grads {
      Tensor dy = dense(g[0]);
      Tensor dx = Tensor::empty(ys.shape(), DType::f32, Device::cuda);
      cuda::softmax_backward(fptr(ys), fptr(dy), fptr(dx), rows, cols);
      return {dx};
    });
  }
  return y;
}

namespace {
// Attention as S = scale·QKᵀ, masking, softmax, O = P·V, each a device op with its own
// backward: what the fused kernel does not take (a mask, causal with Tq != Tk, head sizes
// beyond 128 such as VQGAN's single 512-wide head).
Tensor attention_composed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                          double scale) {
  const int64_t Tq = q.size(-2), D = q.size(-1), Tk = k.size(-2), Dv = v.size(-1);
  const Shape lead(q.shape().begin(), q.shape().end() - 2);
  const int64_t BH = numel(lead);
  Shape score_shape = lead, out_shape = lead;
  score_shape.push_back(Tq), score_shape.push_back(Tk);
  out_shape.push_back(Tq), out_shape.push_back(Dv);
  Tensor s = mm::mul(mm::matmul(q.reshape({BH, Tq, D}), k.reshape({BH, Tk, D}).transpose(1, 2)), scale)
                 .reshape(score_shape);
  const bool masked = mask.defined() || causal;
  if (mask.defined() && mask.dtype() != DType::boolean) s = mm::add(s, mask);
  const Tensor minus_inf = masked ? Tensor::scalar(-INFINITY, DType::f32).to(Device::cuda) : Tensor();
  if (mask.defined() && mask.dtype() == DType::boolean) s = mm::where(mask, s, minus_inf);
  if (causal) {  // key j is masked for query i when j > i (top-left aligned)
    std::vector<float> keep(static_cast<size_t>(Tq * Tk));
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t j = 0; j < Tk; ++j) keep[i * Tk + j] = j <= i ? 1.0f : 0.0f;
    const Tensor keep_mask = mm::gt(Tensor::from_vector(keep, {Tq, Tk}).to(Device::cuda), 0.5);
    s = mm::where(keep_mask, s, minus_inf);
  }
  Tensor p;
  if (masked) {
    // A row with every key masked gives zeros, and no NaN reaches softmax's backward: such
    // rows are softmaxed as zeros (finite) and then replaced by 0. (A row holding NaN stays
    // NaN, as on the CPU: its max is NaN, which is not -inf.)
    Tensor row_ok;
    {
      NoGradGuard no_grad;
      row_ok = mm::ne(mm::max(s.detach(), -1, KeepDim::yes).first, minus_inf);
    }
    const Tensor zero = Tensor::scalar(0.0, DType::f32).to(Device::cuda);
    p = mm::where(row_ok, mm::softmax(mm::where(row_ok, s, zero), -1), zero);
  } else {
    p = mm::softmax(s, -1);
  }
  return mm::matmul(p.reshape({BH, Tq, Tk}), v.reshape({BH, Tk, Dv})).reshape(out_shape);
}
}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal, double scale) {
  const char* op = "scaled_dot_product_attention";
  for (const Tensor* t : {&q, &k, &v, &mask})
    if (t->defined() && t->dtype() != DType::boolean) check_f32(op, *t);
  const bool fused = !mask.defined() && q.dim() == 4 && q.size(3) <= 128 && v.size(-1) == q.size(3) &&
                     (!causal || q.size(2) == k.size(2));
  if (!fused) return attention_composed(q, k, v, mask, causal, scale);
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3), Tk = k.size(2);
  Tensor qd = dense(q), kd = dense(k), vd = dense(v);
  Tensor o = Tensor::empty({B, H, Tq, D}, DType::f32, Device::cuda);
  Tensor lse = Tensor::empty({B, H, Tq}, DType::f32, Device::cuda);
  // --precision bf16|fp16: a tensor-core forward (defaults.cu's attention_16bit_version) on
  // 16-bit q, k, v and probabilities
  const Precision prec = precision();
  const int version = prec == Precision::fp32 ? 1 : cuda::attention_16bit_version(Tk);
  cuda::attention_forward(fptr(qd), fptr(kd), fptr(vd), fptr(o), fptr(lse), B, H, Tq, Tk, D,
                          static_cast<float>(scale), causal, version, prec == Precision::fp16);
  const int rounding = prec == Precision::fp32 ? 0 : prec == Precision::bf16 ? 1 : 2;  // as the forward read q, k, v
  if (needs_grad({q, k, v})) {
    // the backward recomputes the probabilities tile by tile from the forward's log-sum-exp,
    // from q, k, v rounded as the forward read them: on the bf16 tensor cores after a bf16
    // forward, in float32 arithmetic otherwise (fp16 forwards take float32 backwards here, as
    // bf16 GEMM backwards elsewhere: gradients need the range)
    Tensor qs = qd.detach(), ks = kd.detach(), vs = vd.detach(), os = o.detach();
    record_op(op, {q, k, v}, {o}, [=](const Grads& g) -> Grads {
      Tensor dout = dense(g[0]);
      Tensor dq = Tensor::empty(qs.shape(), DType::f32, Device::cuda);
      Tensor dk = Tensor::empty(ks.shape(), DType::f32, Device::cuda);
      Tensor dv = Tensor::empty(vs.shape(), DType::f32, Device::cuda);
      cuda::attention_backward(fptr(qs), fptr(ks), fptr(vs), fptr(os), fptr(lse), fptr(dout), fptr(dq), fptr(dk),
                               fptr(dv), B, H, Tq, Tk, D, static_cast<float>(scale), causal, rounding);
      return {dq, dk, dv};
    });
  }
  return o;
}

namespace {
// conv2d's input gradient at --precision bf16/fp16: for a band of output pixels, cols =
// dy's rows [pixels, O] · W [O, C·KH·KW] (one GEMM on 16-bit operands, float32 sums), then
// col2im adds each window's column back onto the input pixels it covers. Bands are whole
// samples, or rows of one sample, so that cols stays under ~64 MB.
Tensor conv2d_input_grad_gemm(const Tensor& g, const Tensor& w, int64_t C, int64_t H, int64_t W, int64_t stride,
                              int64_t pad) {
  const int64_t N = g.size(0), O = g.size(1), OH = g.size(2), OW = g.size(3), KH = w.size(2), KW = w.size(3);
  const int64_t K = C * KH * KW, budget = int64_t(16) << 20;  // cols elements per band
  // Both operands rounded to 16 bits once; the bands read slices of them.
  const Tensor rows = to_half(dense(g.permute({0, 2, 3, 1}))), wh = to_half(dense(w));  // [N·OH·OW, O], [O, K]
  const auto* rows_p = static_cast<const uint16_t*>(rows.device_ptr());
  Tensor dx = Tensor::empty({N, C, H, W}, DType::f32, Device::cuda);
  cuda::fill_bytes(dx.device_ptr(), 0, dx.numel() * sizeof(float));
  auto band = [&](int64_t n0, int64_t nb, int64_t oh0, int64_t oh1) {
    const int64_t pixels = nb * (oh1 - oh0) * OW, first = (n0 * OH + oh0) * OW;
    if (pixels == 0 || K == 0) return;
    Tensor cols = Tensor::empty({pixels, K}, DType::f32, Device::cuda);
    cuda::cublas_gemm_half(false, false, pixels, K, O, rows_p + first * O, wh.device_ptr(), fptr(cols),
                           precision() == Precision::fp16);
    cuda::col2im(fptr(cols), fptr(dx) + n0 * C * H * W, nb, C, H, W, KH, KW, stride, pad, oh0, oh1, true);
  };
  const int64_t per_sample = OH * OW * K;
  if (per_sample <= budget) {
    const int64_t step = std::max<int64_t>(1, budget / std::max<int64_t>(per_sample, 1));
    for (int64_t n0 = 0; n0 < N; n0 += step) band(n0, std::min(step, N - n0), 0, OH);
  } else {
    const int64_t step = std::max<int64_t>(1, budget / std::max<int64_t>(OW * K, 1));  // output rows per band
    for (int64_t n = 0; n < N; ++n)
      for (int64_t oh0 = 0; oh0 < OH; oh0 += step) band(n, 1, oh0, std::min(OH, oh0 + step));
  }
  return dx;
}
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t pad) {
  for (const Tensor* t : {&x, &w, &b}) check_f32("conv2d", *t);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), KH = w.size(2), KW = w.size(3);
  const int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
  Tensor xd = dense(x), wd = dense(w);
  Tensor bd = b.defined() ? dense(b) : Tensor();
  Tensor y = Tensor::empty({N, O, OH, OW}, DType::f32, Device::cuda);
  const float* pb = bd.defined() ? fptr(bd) : nullptr;
  if (precision() != Precision::fp32) {
    // 16-bit operands on the tensor cores: the patches of a few samples at a time (im2col,
    // rounded as they are written, under ~128 MB), one GEMM with the rounded weights, the
    // bias, and the rows [n, oh, ow, o] laid out as [n, o, oh, ow].
    const int64_t K = C * KH * KW, P = OH * OW;
    const DType half = precision() == Precision::fp16 ? DType::f16 : DType::bf16;
    const Tensor wh = to_half(wd);
    const int64_t step = samples_per_chunk(P * K);
    for (int64_t n0 = 0; n0 < N; n0 += step) {
      const int64_t nb = std::min(step, N - n0);
      Tensor cols = Tensor::empty({nb * P, K}, half, Device::cuda);
      cuda::im2col(fptr(xd) + n0 * C * H * W, cols.device_ptr(), static_cast<int>(half), nb, C, H, W, KH, KW, stride,
                   pad);
      Tensor rows = Tensor::empty({nb * P, O}, DType::f32, Device::cuda);
      if (K == 0) cuda::fill_bytes(rows.device_ptr(), 0, rows.numel() * sizeof(float));  // an empty sum
      cuda::cublas_gemm_half(false, true, nb * P, O, K, cols.device_ptr(), wh.device_ptr(), fptr(rows),
                             half == DType::f16);
      if (pb) cuda::add_rows(fptr(rows), pb, fptr(rows), nb * P, O);
      copy(y.narrow(0, n0, nb), rows.reshape({nb, OH, OW, O}).permute({0, 3, 1, 2}));
    }
  } else if (cuda::have_cudnn())
    cuda::cudnn_conv2d(fptr(xd), fptr(wd), pb, fptr(y), N, C, H, W, O, KH, KW, stride, pad);
  else
    cuda::conv2d(fptr(xd), fptr(wd), pb, fptr(y), N, C, H, W, O, KH, KW, stride, pad);
  if (needs_grad({x, w, b})) {
    const bool want_x = x.requires_grad(), want_w = w.requires_grad(), want_b = b.defined() && b.requires_grad();
    Tensor ws = want_x ? wd.detach() : Tensor(), xs = want_w ? xd.detach() : Tensor();
    const bool patchify = stride == KH && stride == KW && pad == 0;
    const Precision prec = backward_precision(precision());
    // The input gradient takes 16-bit operands only after a bf16 forward: after an fp16 one
    // the backward's bf16 would round dy to 8 bits, which cost the reference step's dloss/dz
    // accuracy (max_rel 0.0068 -> 0.0115); it stays float32 there.
    const bool half_dx = precision() == Precision::bf16;
    record_op("conv2d", {x, w, b}, {y}, [=](const Grads& g) -> Grads {
      PrecisionScope scope(prec);  // the backward's GEMMs at the forward's precision (see backward_precision)
      Tensor dx, dw, db;
      if (want_x && patchify) {
        // Non-overlapping patches (a ViT's patch embedding): dx's patches are one GEMM,
        // dy [N·OH·OW, O] · W [O, C·KH·KW], laid back out as an image. The implicit GEMM of
        // the general case would walk all O·KH·KW taps for each input pixel, of which only O
        // are non-zero here.
        Tensor cols = mm::matmul(g[0].permute({0, 2, 3, 1}).reshape({N * OH * OW, O}), ws.reshape({O, C * KH * KW}));
        Tensor img = cols.reshape({N, OH, OW, C, KH, KW}).permute({0, 3, 1, 4, 2, 5}).reshape({N, C, OH * KH, OW * KW});
        if (OH * KH == H && OW * KW == W) {
          dx = img;
        } else {
          dx = Tensor::empty({N, C, H, W}, DType::f32, Device::cuda);  // rows/cols no patch covers: 0
          dx.fill_(0.0);
          dx.narrow(2, 0, OH * KH).narrow(3, 0, OW * KW).copy_(img);
        }
      } else if (want_x && half_dx) {
        dx = conv2d_input_grad_gemm(g[0], ws, C, H, W, stride, pad);
      } else if (want_x) {
        Tensor dy = dense(g[0]);
        dx = Tensor::empty({N, C, H, W}, DType::f32, Device::cuda);
        if (cuda::have_cudnn())
          cuda::cudnn_conv2d_backward_data(fptr(dy), fptr(ws), fptr(dx), N, C, H, W, O, KH, KW, stride, pad);
        else
          cuda::conv2d_backward_data(fptr(dy), fptr(ws), fptr(dx), N, C, H, W, O, KH, KW, stride, pad);
      }
      if (want_w) {
        // dW [O, C·KH·KW] = dy as [O, N·OH·OW] · cols [N·OH·OW, C·KH·KW], the patches of x
        // (im2col), built for a few samples at a time so that cols stays under ~256 MB.
        const int64_t K = C * KH * KW, step = samples_per_chunk(OH * OW * K);
        Tensor dyt = dense(g[0].permute({1, 0, 2, 3})).reshape({O, N * OH * OW});
        for (int64_t n0 = 0; n0 < N; n0 += step) {
          const int64_t nb = std::min(step, N - n0);
          Tensor cols = Tensor::empty({nb * OH * OW, K}, DType::f32, Device::cuda);
          cuda::im2col(fptr(xs) + n0 * C * H * W, fptr(cols), 0, nb, C, H, W, KH, KW, stride, pad);
          Tensor part = mm::matmul(dyt.narrow(1, n0 * OH * OW, nb * OH * OW), cols);
          dw = dw.defined() ? mm::add(dw, part) : part;
        }
        dw = dw.reshape({O, C, KH, KW});
      }
      if (want_b) db = mm::sum(g[0], {0, 2, 3});
      return {dx, dw, db};
    });
  }
  return y;
}

Tensor gather_rows(const char* op, const Tensor& table, const Tensor& ids) {
  check_f32(op, table);
  MM_CHECK(table.dim() == 2 && ids.dtype() == DType::i64, "[", op, "] table ", table.str(), " and ids ", ids.str(),
           ": expects a 2-D table and int64 ids");
  // The ids are checked on the host: the gather kernel reads table rows without bounds.
  Tensor host_ids = ids.device() == Device::cuda ? ids.to(Device::cpu) : ids.contiguous();
  const int64_t rows = table.size(0), D = table.size(1), n = ids.numel();
  const int64_t* p = host_ids.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    MM_CHECK(p[i] >= 0 && p[i] < rows, "[", op, "] id ", p[i], " at position ", i, " is out of range for ", rows,
             " rows of ", table.str());
  Tensor dev_ids = host_ids.to(Device::cuda);
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  Tensor out = Tensor::empty(out_shape, DType::f32, Device::cuda);
  cuda::gather_rows(fptr(dense(table)), static_cast<const int64_t*>(dev_ids.device_ptr()), fptr(out), n, D);
  if (needs_grad({table})) {
    const Shape t_shape = table.shape();
    record_op(op, {table}, {out}, [dev_ids, t_shape, D, n](const Grads& g) -> Grads {
      Tensor dout = dense(g[0]);
      Tensor dt = Tensor::empty(t_shape, DType::f32, Device::cuda);
      cuda::fill_bytes(dt.device_ptr(), 0, dt.numel() * sizeof(float));
      cuda::scatter_add_rows(fptr(dout), static_cast<const int64_t*>(dev_ids.device_ptr()), fptr(dt), n, D);
      return {dt};  // rows that repeat add up (atomics)
    });
  }
  return out;
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims) {
  check_f32("sum", x);
  // kept dims first, reduced dims last, dense: then one reduction per row
  std::vector<int64_t> order;
  Shape out_shape;
  int64_t rows = 1, cols = 1;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (std::find(dims.begin(), dims.end(), d) == dims.end())
      order.push_back(d), out_shape.push_back(x.size(d)), rows *= x.size(d);
  for (int64_t d : dims) order.push_back(d), cols *= x.size(d);
  Tensor xd = dense(x.permute(order));
  Tensor out = Tensor::empty(out_shape, DType::f32, Device::cuda);
  if (rows == 0) return out;
  if (cols == 0) {
    cuda::fill_bytes(out.device_ptr(), 0, rows * sizeof(float));
    return out;
  }
  cuda::row_sum(fptr(xd), fptr(out), rows, cols);
  return out;
}

Tensor math(const char* op, const Tensor& x, double a, double b) {
  check_f32(op, x);
  static const std::pair<const char*, cuda::Map> kMaps[] = {
      {"abs", cuda::Map::abs},         {"asin", cuda::Map::asin},   {"sqrt", cuda::Map::sqrt},
      {"rsqrt", cuda::Map::rsqrt},     {"log", cuda::Map::log},     {"square", cuda::Map::square},
      {"tanh", cuda::Map::tanh},       {"sigmoid", cuda::Map::sigmoid}, {"clamp", cuda::Map::clamp},
      {"pow", cuda::Map::pow},         {"sin", cuda::Map::sin},     {"cos", cuda::Map::cos},
      {"gelu", cuda::Map::gelu},       {"gelu_tanh", cuda::Map::gelu_tanh}};
  const cuda::Map* m = nullptr;
  for (const auto& [name, k] : kMaps)
    if (std::strcmp(name, op) == 0) m = &k;
  if (!m) unsupported(op, "this op");
  const cuda::Map k = *m;
  const float fa = static_cast<float>(a), fb = static_cast<float>(b);
  Tensor xd = dense(x);
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  cuda::map(k, fptr(xd), fptr(y), y.numel(), fa, fb);
  if (needs_grad({x})) {
    // The derivative reads y for these and x for the rest: keep only that one.
    const bool reads_y = k == cuda::Map::sqrt || k == cuda::Map::rsqrt || k == cuda::Map::tanh || k == cuda::Map::sigmoid;
    const Tensor xs = reads_y ? Tensor() : xd.detach(), ys = reads_y ? y.detach() : Tensor();
    record_op(op, {x}, {y}, [k, xs, ys, fa, fb](const Grads& g) -> Grads {
      Tensor dy = dense(g[0]);
      Tensor dx = Tensor::empty(g[0].shape(), DType::f32, Device::cuda);
      cuda::map_backward(k, xs.defined() ? fptr(xs) : nullptr, ys.defined() ? fptr(ys) : nullptr, fptr(dy), fptr(dx),
                         dx.numel(), fa, fb);
      return {dx};
    });
  }
  return y;
}

Tensor clamp_with_grad(const Tensor& x, double lo, double hi) {
  check_f32("clamp_with_grad", x);
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
  Tensor xd = dense(x);
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  cuda::map(cuda::Map::clamp, fptr(xd), fptr(y), y.numel(), flo, fhi);
  if (needs_grad({x})) {
    Tensor xs = xd.detach(), ys = y.detach();
    record_op("clamp_with_grad", {x}, {y}, [xs, ys](const Grads& g) -> Grads {
      Tensor dy = dense(g[0]);
      Tensor dx = Tensor::empty(xs.shape(), DType::f32, Device::cuda);
      cuda::map_backward(cuda::Map::clamp_grad_rule, fptr(xs), fptr(ys), fptr(dy), fptr(dx), dx.numel());
      return {dx};
    });
  }
  return y;
}

Tensor maximum(const char* op, const Tensor& a, const Tensor& b, bool min) {
  const Operands o = broadcast_operands(op, a, b);
  const Tensor &ad = o.a, &bd = o.b;
  Tensor y = Tensor::empty(o.shape, DType::f32, Device::cuda);
  cuda::maximum(fptr(ad), fptr(bd), fptr(y), y.numel(), min);
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const bool want_a = a.requires_grad(), want_b = b.requires_grad();
    Tensor as = ad.detach(), bs = bd.detach();
    record_op(op, {a, b}, {y}, [=](const Grads& g) -> Grads {
      Tensor dy = dense(g[0]);
      Tensor da = Tensor::empty(dy.shape(), DType::f32, Device::cuda), db = Tensor::empty(dy.shape(), DType::f32, Device::cuda);
      cuda::maximum_backward(fptr(as), fptr(bs), fptr(dy), fptr(da), fptr(db), dy.numel(), min);
      return {want_a ? sum_to(da, sa) : Tensor(), want_b ? sum_to(db, sb) : Tensor()};
    });
  }
  return y;
}

Tensor upsample_nearest2x(const Tensor& x) {
  check_f32("upsample_nearest2d", x);
  const int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / std::max<int64_t>(H * W, 1);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = 2 * H, out_shape.back() = 2 * W;
  Tensor y = Tensor::empty(out_shape, DType::f32, Device::cuda);
  cuda::upsample_nearest2x(fptr(dense(x)), fptr(y), planes, H, W);
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("upsample_nearest2d", {x}, {y}, [in_shape, planes, H, W](const Grads& g) -> Grads {
      Tensor dx = Tensor::empty(in_shape, DType::f32, Device::cuda);
      cuda::upsample_nearest2x_backward(fptr(dense(g[0])), fptr(dx), planes, H, W);
      return {dx};
    });
  }
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_f32("adaptive_avg_pool2d", x);
  const int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / std::max<int64_t>(H * W, 1);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = out_h, out_shape.back() = out_w;
  Tensor y = Tensor::empty(out_shape, DType::f32, Device::cuda);
  cuda::adaptive_avg_pool2d(fptr(dense(x)), fptr(y), planes, H, W, out_h, out_w);
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("adaptive_avg_pool2d", {x}, {y}, [=](const Grads& g) -> Grads {
      Tensor dx = Tensor::empty(in_shape, DType::f32, Device::cuda);
      cuda::adaptive_avg_pool2d_backward(fptr(dense(g[0])), fptr(dx), planes, H, W, out_h, out_w);
      return {dx};
    });
  }
  return y;
}

Tensor warp_perspective(const Tensor& x, const Tensor& M, bool border, int64_t out_h, int64_t out_w) {
  check_f32("warp_perspective", x);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Tensor m = M.detach().to(Device::cpu).to(DType::f64).contiguous().to(Device::cuda);
  Tensor y = Tensor::empty({B, C, out_h, out_w}, DType::f32, Device::cuda);
  const double* pm = static_cast<const double*>(m.device_ptr());
  cuda::warp_perspective(fptr(dense(x)), pm, fptr(y), B, C, H, W, out_h, out_w, border);
  if (needs_grad({x})) {
    record_op("warp_perspective", {x}, {y}, [=](const Grads& g) -> Grads {
      Tensor dx = Tensor::empty({B, C, H, W}, DType::f32, Device::cuda);
      cuda::warp_perspective_backward(fptr(dense(g[0])), static_cast<const double*>(m.device_ptr()), fptr(dx), B, C,
                                      H, W, out_h, out_w, border);
      return {dx};
    });
  }
  return y;
}

Tensor index_axis(const char* op, const Tensor& x, int64_t dim, const std::vector<int64_t>& map, double fill) {
  check_f32(op, x);
  const int64_t n_in = x.size(dim), n_out = static_cast<int64_t>(map.size());
  for (size_t j = 0; j < map.size(); ++j)
    MM_CHECK(map[j] < n_in, "[", op, "] index ", map[j], " at position ", j, " is out of range for dim ", dim,
             " of ", x.str());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < dim) outer *= x.size(d);
    if (d > dim) inner *= x.size(d);
  }
  Shape out_shape = x.shape();
  out_shape[dim] = n_out;
  Tensor y = Tensor::empty(out_shape, DType::f32, Device::cuda);
  Tensor dev_map = Tensor::from_vector(map, {n_out}).to(Device::cuda);
  const int64_t* pm = static_cast<const int64_t*>(dev_map.device_ptr());
  cuda::index_axis(fptr(dense(x)), pm, fptr(y), outer, n_in, n_out, inner, static_cast<float>(fill));
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op(op, {x}, {y}, [=](const Grads& g) -> Grads {
      Tensor dx = Tensor::empty(in_shape, DType::f32, Device::cuda);
      cuda::index_axis_backward(fptr(dense(g[0])), static_cast<const int64_t*>(dev_map.device_ptr()), fptr(dx), outer,
                                n_in, n_out, inner);
      return {dx};
    });
  }
  return y;
}

namespace {
// The permutation that moves `dim` last, and its inverse.
std::vector<int64_t> dim_last(int64_t ndim, int64_t dim) {
  std::vector<int64_t> order;
  for (int64_t d = 0; d < ndim; ++d)
    if (d != dim) order.push_back(d);
  order.push_back(dim);
  return order;
}
std::vector<int64_t> inverse(const std::vector<int64_t>& order) {
  std::vector<int64_t> inv(order.size());
  for (size_t i = 0; i < order.size(); ++i) inv[static_cast<size_t>(order[i])] = static_cast<int64_t>(i);
  return inv;
}
}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_f32("gather", x);
  const int64_t n = x.size(dim);
  // x narrowed to the index's extent in the other dims, the gathered dim moved last: then
  // each row gathers from its own row.
  Tensor xn = x;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim && index.size(d) != x.size(d)) xn = xn.narrow(d, 0, index.size(d));
  const std::vector<int64_t> order = dim_last(x.dim(), dim), back = inverse(order);
  Tensor xp = dense(xn.permute(order)), ip = dense(index.permute(order));
  const int64_t m = index.size(dim), rows = index.numel() / std::max<int64_t>(m, 1);
  Tensor y = Tensor::empty(ip.shape(), DType::f32, Device::cuda);
  const int64_t* pi = static_cast<const int64_t*>(ip.device_ptr());
  cuda::gather_last(fptr(xp), pi, fptr(y), rows, n, m);
  Tensor out = dense(y.permute(back));
  if (needs_grad({x})) {
    const Shape x_shape = x.shape(), xp_shape = xp.shape();
    const bool narrowed = xn.shape() != x.shape();
    Tensor ips = ip;
    record_op("gather", {x}, {out}, [=](const Grads& g) -> Grads {
      Tensor dxp = Tensor::empty(xp_shape, DType::f32, Device::cuda);
      cuda::gather_last_backward(fptr(dense(g[0].permute(order))), static_cast<const int64_t*>(ips.device_ptr()),
                                 fptr(dxp), rows, n, m);
      Tensor dxn = dxp.permute(back);
      if (!narrowed) return {dense(dxn)};
      Tensor dx = Tensor::empty(x_shape, DType::f32, Device::cuda);
      dx.fill_(0.0);
      Tensor view = dx;
      for (int64_t d = 0; d < static_cast<int64_t>(x_shape.size()); ++d)
        if (d != dim && dxn.size(d) != x_shape[d]) view = view.narrow(d, 0, dxn.size(d));
      view.copy_(dxn);
      return {dx};
    });
  }
  return out;
}

std::pair<Tensor, Tensor> extreme(const char* op, const Tensor& x, int64_t dim, bool max) {
  check_f32(op, x);
  const std::vector<int64_t> order = dim_last(x.dim(), dim);
  Tensor xp = dense(x.permute(order));
  const int64_t R = x.size(dim), rows = x.numel() / std::max<int64_t>(R, 1);
  Shape kept = x.shape();
  kept[dim] = 1;
  Tensor values = Tensor::empty(kept, DType::f32, Device::cuda), indices = Tensor::empty(kept, DType::i64, Device::cuda);
  // (kept has the rows in the permuted order too: the dim of size 1 moves nothing)
  cuda::row_extreme(fptr(xp), fptr(values), static_cast<int64_t*>(indices.device_ptr()), rows, R, max);
  if (needs_grad({x})) {
    const Shape xp_shape = xp.shape();
    const std::vector<int64_t> back = inverse(order);
    record_op(op, {x}, {values}, [=](const Grads& g) -> Grads {
      Tensor dxp = Tensor::empty(xp_shape, DType::f32, Device::cuda);
      cuda::gather_last_backward(fptr(dense(g[0])), static_cast<const int64_t*>(indices.device_ptr()), fptr(dxp),
                                 rows, R, 1);
      return {dense(dxp.permute(back))};
    });
  }
  return {values, indices};
}

namespace {
cuda::Pool2d pool_geometry(const Tensor& x, const std::array<int64_t, 6>& w) {
  const int64_t H = x.size(-2), W = x.size(-1);
  return {x.numel() / std::max<int64_t>(H * W, 1), H, W, (H + 2 * w[4] - w[0]) / w[2] + 1,
          (W + 2 * w[5] - w[1]) / w[3] + 1, w[0], w[1], w[2], w[3], w[4], w[5]};
}
Shape pooled(const Tensor& x, const cuda::Pool2d& g) {
  Shape s = x.shape();
  s[s.size() - 2] = g.OH, s.back() = g.OW;
  return s;
}
}  // namespace

Tensor avg_pool2d(const Tensor& x, const std::array<int64_t, 6>& window, bool count_include_pad) {
  check_f32("avg_pool2d", x);
  const cuda::Pool2d g = pool_geometry(x, window);
  Tensor y = Tensor::empty(pooled(x, g), DType::f32, Device::cuda);
  cuda::avg_pool2d_window(fptr(dense(x)), fptr(y), g, count_include_pad);
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("avg_pool2d", {x}, {y}, [=](const Grads& grads) -> Grads {
      Tensor dx = Tensor::empty(in_shape, DType::f32, Device::cuda);
      cuda::avg_pool2d_window_backward(fptr(dense(grads[0])), fptr(dx), g, count_include_pad);
      return {dx};
    });
  }
  return y;
}

Tensor max_pool2d(const Tensor& x, const std::array<int64_t, 6>& window) {
  check_f32("max_pool2d", x);
  const cuda::Pool2d g = pool_geometry(x, window);
  const Shape out_shape = pooled(x, g);
  Tensor y = Tensor::empty(out_shape, DType::f32, Device::cuda);
  Tensor argmax = Tensor::empty(out_shape, DType::i64, Device::cuda);
  cuda::max_pool2d(fptr(dense(x)), fptr(y), static_cast<int64_t*>(argmax.device_ptr()), g);
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("max_pool2d", {x}, {y}, [=](const Grads& grads) -> Grads {
      Tensor dx = Tensor::empty(in_shape, DType::f32, Device::cuda);
      cuda::max_pool2d_backward(fptr(dense(grads[0])), static_cast<const int64_t*>(argmax.device_ptr()), fptr(dx), g);
      return {dx};
    });
  }
  return y;
}

Tensor nearest_codes(const Tensor& z, const Tensor& codebook) {
  check_f32("vector_quantize", z);
  check_f32("vector_quantize", codebook);
  const int64_t N = z.size(0), D = z.size(1), K = codebook.size(0);
  Tensor zd = dense(z.detach()), ed = dense(codebook.detach());
  Tensor e_sq = Tensor::empty({K}, DType::f32, Device::cuda);
  Tensor idx = Tensor::empty({N}, DType::i64, Device::cuda);
  cuda::vq_code_norms(fptr(ed), fptr(e_sq), K, D);
  cuda::vq_nearest(fptr(zd), fptr(ed), fptr(e_sq), static_cast<int64_t*>(idx.device_ptr()), N, K, D);
  return idx;
}

void adam_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, double step_size, double sqrt_bc2) {
  for (const Tensor* t : {&p, &g, &m, &v}) {
    check_f32("Adam", *t);
    MM_CHECK(t->is_contiguous() && t->device() == Device::cuda, "[Adam] the parameter, its gradient and moments must "
             "be dense on the device, got ", t->str());
  }
  cuda::adam_step(fptr(p), fptr(g), fptr(m), fptr(v), p.numel(), lr, beta1, beta2, eps, weight_decay, decoupled,
                  step_size, sqrt_bc2);
}

#endif

}  // namespace mm::cuda_ops
