// engine/tensor.h: mm::Tensor, a strided view of reference-counted storage.
// Reading order: after shape.h. The autograd fields live here too (requires_grad, grad,
// grad_fn); the graph machinery is in autograd.h, the ops in engine/ops/.
//
//   mm::Tensor x = mm::Tensor::randn({2, 3}, gen);     // float32 on the CPU
//   mm::Tensor y = x.transpose(0, 1).contiguous();      // [3, 2], a copy
//   mm::Tensor z = x.narrow(1, 0, 2);                   // [2, 2], a view: no copy
//   float v = z.at<float>({1, 1});
//
// A Tensor is a handle: copies share the same data and autograd state (like torch.Tensor).
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/shape.h"

namespace mm {

class Node;
class Generator;

// Reference-counted bytes. `owner` keeps foreign memory (an mmap-ed file) alive.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device = Device::cpu;
  std::shared_ptr<void> owner;
  // GEMM-packed copies of frozen weights in this storage, one per packed view
  // (mm::prepack_linear_weight), type-erased; copy_, fill_ and set_requires_grad(true) on any
  // view of the storage drop them all.
  std::shared_ptr<const void> gemm_pack;

  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  // Wraps memory someone else owns; `owner` is released when the last view goes.
  static std::shared_ptr<Storage> wrap(void* data, size_t nbytes, std::shared_ptr<void> owner);
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  int output_nr = 0;              // which output of grad_fn this tensor is
  std::string name;               // optional, for error messages ("visual.conv1.weight")
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }

  // ---- factories --------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor scalar(double value, DType dtype = DType::f32);  // 0-d tensor
  static Tensor arange(int64_t n, DType dtype = DType::f32);     // 0, 1, ..., n-1
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape);
  static Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape);
  static Tensor uniform(const Shape& shape, Generator& gen, double lo = 0.0, double hi = 1.0,
                        DType dtype = DType::f32);
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32);
  static Tensor randint(const Shape& shape, Generator& gen, int64_t lo, int64_t hi);  // int64 in [lo, hi)

  // ---- metadata ---------------------------------------------------------------------
  const Shape& shape() const { return ref().shape; }
  const Shape& strides() const { return ref().strides; }
  int64_t offset() const { return ref().offset; }
  int64_t dim() const { return static_cast<int64_t>(ref().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return mm::numel(ref().shape); }
  DType dtype() const { return ref().dtype; }
  Device device() const { return ref().storage->device; }
  bool is_contiguous() const;
  std::string str() const;  // "float32[2, 3]"
  const std::string& name() const { return ref().name; }
  Tensor& set_name(std::string name);

  // ---- data access ------------------------------------------------------------------
  // Pointer to the first element (storage + offset); checks the dtype matches T.
  template <typename T> T* data() const;
  void* raw_data() const;    // CPU tensors only, like data<T>()
  void* device_ptr() const;  // the first element's address on whichever device holds it
  double item() const;  // a one-element tensor's value as double
  template <typename T> T at(std::initializer_list<int64_t> index) const;
  // Values in logical (row-major) order, converted to T.
  template <typename T> std::vector<T> to_vector() const;

  // ---- views (no copy; differentiable) ------------------------------------------------
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy; one -1 allowed
  Tensor view(const Shape& shape) const;     // must be a view; errors otherwise
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& shape) const;           // -1 keeps a dim
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor contiguous() const;  // itself when already contiguous

  // ---- copies -------------------------------------------------------------------------
  Tensor clone() const;            // contiguous copy, differentiable
  Tensor to(DType dtype) const;    // conversion, differentiable between float types
  Tensor to(Device device) const;  // a contiguous copy on `device` (itself if already there)
  Tensor detach() const;           // shares data, no grad history
  // In-place copy of src (broadcast to this shape, converting dtype). Not recorded by autograd:
  // allowed on tensors that do not require grad, or inside a NoGradGuard.
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // ---- autograd ---------------------------------------------------------------------
  bool requires_grad() const { return ref().requires_grad; }
  Tensor& set_requires_grad(bool r);  // leaves only
  bool is_leaf() const { return ref().grad_fn == nullptr; }
  Tensor grad() const;                // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g);
  void zero_grad() { ref().grad.reset(); }
  const std::shared_ptr<Node>& grad_fn() const { return ref().grad_fn; }
  // Backpropagates from this tensor. For a non-scalar tensor, pass the gradient.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

 private:
  TensorImpl& ref() const;
  std::shared_ptr<TensorImpl> impl_;
};

// Frees the CPU blocks cached for reuse by Storage::allocate (see tensor.cpp).
void release_cached_memory();

// A new tensor header over the same storage with the given geometry (no autograd).
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

}  // namespace mm
