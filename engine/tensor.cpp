// engine/tensor.cpp: Tensor construction, views and copies (see tensor.h).
// Views record their own backward here: reshape back, inverse permutation, scatter into
// zeros for narrow/slice/select, and sum_to for expand.
#include "engine/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/reduce.h"
#include "engine/random.h"
#include "kernels/cpu/loops.h"

namespace mm {

using kernels::dispatch_all;

// ---- construction -------------------------------------------------------------------------

TensorImpl& Tensor::ref() const {
  MM_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) MM_CHECK(s >= 0, "[empty] negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = Storage::allocate(static_cast<size_t>(mm::numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype) { return full(shape, 0.0, dtype); }
Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }
Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = kernels::from_double<T>(static_cast<double>(i));
  });
  return t;
}

template <typename T>
static Tensor from_values(const std::vector<T>& values, const Shape& shape, DType dtype) {
  MM_CHECK(static_cast<int64_t>(values.size()) == mm::numel(shape), "[from_vector] ", values.size(),
           " values do not fill shape ", shape_str(shape), " (", mm::numel(shape), " elements)");
  Tensor t = Tensor::empty(shape, dtype);
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s) { return from_values(v, s, DType::f32); }
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s) { return from_values(v, s, DType::f64); }
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& s) { return from_values(v, s, DType::i64); }

// Random fills: element i uses Philox block (seed, first + i), whatever the thread count.
template <typename Draw>
static Tensor random_fill(const Shape& shape, Generator& gen, DType dtype, Draw draw) {
  Tensor t = Tensor::empty(shape, dtype);
  const int64_t n = t.numel();
  const uint64_t first = gen.reserve(static_cast<uint64_t>(n));
  const uint64_t seed = gen.seed();
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    parallel_for(0, n, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        p[i] = kernels::from_double<T>(draw(philox4x32(seed, first + static_cast<uint64_t>(i))));
    });
  });
  return t;
}

Tensor Tensor::uniform(const Shape& shape, Generator& gen, double lo, double hi, DType dtype) {
  return random_fill(shape, gen, dtype, [&](const std::array<uint32_t, 4>& r) {
    return lo + (hi - lo) * philox_uniform(r);
  });
}
Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype) {
  return random_fill(shape, gen, dtype, [](const std::array<uint32_t, 4>& r) { return philox_normal(r); });
}
Tensor Tensor::randint(const Shape& shape, Generator& gen, int64_t lo, int64_t hi) {
  MM_CHECK(hi > lo, "[randint] empty range [", lo, ", ", hi, ")");
  const uint64_t range = static_cast<uint64_t>(hi - lo);
  return random_fill(shape, gen, DType::i64, [&](const std::array<uint32_t, 4>& r) {
    const uint64_t bits = (static_cast<uint64_t>(r[0]) << 32) | r[1];
    return static_cast<double>(lo + static_cast<int64_t>(bits % range));
  });
}

// ---- metadata -----------------------------------------------------------------------------

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape()[d] == 1) continue;
    if (strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return str_cat(dtype_name(dtype()), shape_str(shape()));
}

Tensor& Tensor::set_name(std::string name) {
  ref().name = std::move(name);
  return *this;
}

template <typename T> static constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<bool>() { return DType::boolean; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::f16; }  // raw 16-bit access
template <> constexpr DType dtype_of<kernels::half_t>() { return DType::f16; }
template <> constexpr DType dtype_of<kernels::bf16_t>() { return DType::bf16; }

template <typename T>
T* Tensor::data() const {
  constexpr DType want = dtype_of<T>();
  const bool ok = dtype() == want || (want == DType::f16 && dtype() == DType::bf16 && std::is_same<T, uint16_t>::value);
  MM_CHECK(ok, "data<", dtype_name(want), ">() called on a ", str(), " tensor");
  MM_CHECK(device() == Device::cpu, "data() on a ", device_name(device()), " tensor; copy it to the CPU first");
  return static_cast<T*>(ref().storage->data) + offset();
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;
template bool* Tensor::data<bool>() const;
template uint16_t* Tensor::data<uint16_t>() const;
template kernels::half_t* Tensor::data<kernels::half_t>() const;
template kernels::bf16_t* Tensor::data<kernels::bf16_t>() const;

void* Tensor::raw_data() const {
  MM_CHECK(device() == Device::cpu, "raw_data() on a ", device_name(device()), " tensor ", str(),
           "; copy it to the CPU first");
  return device_ptr();
}

void* Tensor::device_ptr() const {
  return static_cast<char*>(ref().storage->data) + offset() * static_cast<int64_t>(dtype_size(dtype()));
}

double Tensor::item() const {
  MM_CHECK(numel() == 1, "item() needs a one-element tensor, got ", str());
  if (device() != Device::cpu) return to(Device::cpu).item();
  return dispatch_all(dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    return kernels::to_double(*static_cast<const T*>(raw_data()));
  });
}

template <typename T>
T Tensor::at(std::initializer_list<int64_t> index) const {
  MM_CHECK(static_cast<int64_t>(index.size()) == dim(), "at(): ", index.size(), " indices for ", str());
  if (device() != Device::cpu) return to(Device::cpu).at<T>(index);
  int64_t off = 0, d = 0;
  for (int64_t i : index) {
    MM_CHECK(i >= 0 && i < shape()[d], "at(): index ", i, " out of range for dim ", d, " of ", str());
    off += i * strides()[d++];
  }
  return dispatch_all(dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    return static_cast<T>(kernels::to_double(static_cast<const S*>(raw_data())[off]));
  });
}
template float Tensor::at<float>(std::initializer_list<int64_t>) const;
template double Tensor::at<double>(std::initializer_list<int64_t>) const;
template int64_t Tensor::at<int64_t>(std::initializer_list<int64_t>) const;

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = device() == Device::cpu ? contiguous() : to(Device::cpu);
  std::vector<T> out(static_cast<size_t>(numel()));
  dispatch_all(dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* p = static_cast<const S*>(c.raw_data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(kernels::to_double(p[i]));
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

// ---- views --------------------------------------------------------------------------------

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Resolves one -1 in a requested shape.
static Shape infer_shape(const Shape& requested, int64_t n, const char* op, const Shape& from) {
  Shape s = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MM_CHECK(infer < 0, "[", op, "] only one -1 allowed in ", shape_str(requested));
      infer = static_cast<int64_t>(i);
    } else {
      MM_CHECK(s[i] >= 0, "[", op, "] invalid size in ", shape_str(requested));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    MM_CHECK(known != 0 && n % known == 0, "[", op, "] cannot reshape ", shape_str(from), " to ",
             shape_str(requested));
    s[infer] = n / known;
  }
  MM_CHECK(mm::numel(s) == n, "[", op, "] cannot reshape ", shape_str(from), " (", n, " elements) to ",
           shape_str(requested));
  return s;
}

// Strides for viewing (shape, strides) as new_shape without a copy, or empty when impossible.
static bool view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape, Shape& out) {
  // Group old dims into contiguous chunks and match new dims against each chunk.
  out.assign(new_shape.size(), 0);
  const int64_t n = mm::numel(shape);
  if (n == 0 || shape.empty()) {
    out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

Tensor Tensor::view(const Shape& requested) const {
  const Shape s = infer_shape(requested, numel(), "view", shape());
  Shape st;
  MM_CHECK(view_strides(shape(), strides(), s, st), "[view] cannot view ", str(), " with strides ",
           shape_str(strides()), " as ", shape_str(s), " without a copy; use reshape()");
  Tensor out = make_view(*this, s, st, offset());
  if (needs_grad({*this})) {
    const Shape in_shape = shape();
    record_op("view", {*this}, {out}, [in_shape](const Grads& g) { return Grads{g[0].reshape(in_shape)}; });
  }
  return out;
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape s = infer_shape(requested, numel(), "reshape", shape());
  Shape st;
  if (view_strides(shape(), strides(), s, st)) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim(), "flatten");
  end_dim = wrap_dim(end_dim, dim(), "flatten");
  MM_CHECK(start_dim <= end_dim, "[flatten] start_dim ", start_dim, " > end_dim ", end_dim);
  Shape s(shape().begin(), shape().begin() + start_dim);
  int64_t m = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d) m *= shape()[d];
  s.push_back(m);
  s.insert(s.end(), shape().begin() + end_dim + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  MM_CHECK(static_cast<int64_t>(dims.size()) == dim(), "[permute] ", dims.size(), " dims given for ", str());
  Shape s(dims.size()), st(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], dim(), "permute");
    MM_CHECK(inverse[d] < 0, "[permute] dim ", d, " repeated");
    inverse[d] = static_cast<int64_t>(i);
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(*this, s, st, offset());
  if (needs_grad({*this}))
    record_op("permute", {*this}, {out}, [inverse](const Grads& g) { return Grads{g[0].permute(inverse)}; });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> p(static_cast<size_t>(dim()));
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[wrap_dim(d0, dim(), "transpose")], p[wrap_dim(d1, dim(), "transpose")]);
  return permute(p);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  MM_CHECK(step >= 1, "[slice] step must be >= 1, got ", step);
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = make_view(*this, s, st, offset() + start * strides()[d]);
  if (needs_grad({*this})) {
    const Shape in_shape = shape();
    record_op("slice", {*this}, {out}, [=](const Grads& g) {
      Tensor dx = Tensor::empty(in_shape, g[0].dtype(), g[0].device());  // on the gradient's device
      dx.fill_(0.0);
      dx.slice(d, start, end, step).copy_(g[0]);
      return Grads{dx};
    });
  }
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  MM_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d], "[narrow] range [", start, ", ",
           start + length, ") out of bounds for dim ", d, " of ", str());
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  const int64_t n = shape()[d];
  MM_CHECK(index >= -n && index < n, "[select] index ", index, " out of range for dim ", d, " of ", str());
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& requested) const {
  MM_CHECK(static_cast<int64_t>(requested.size()) >= dim(), "[expand] cannot expand ", str(), " to ",
           shape_str(requested));
  const size_t lead = requested.size() - shape().size();
  Shape s(requested.size()), st(requested.size(), 0);
  for (size_t i = 0; i < requested.size(); ++i) {
    if (i < lead) {
      MM_CHECK(requested[i] >= 0, "[expand] -1 not allowed for new leading dims in ", shape_str(requested));
      s[i] = requested[i];
      continue;
    }
    const int64_t have = shape()[i - lead];
    const int64_t want = requested[i] == -1 ? have : requested[i];
    MM_CHECK(have == want || have == 1, "[expand] cannot expand ", str(), " to ", shape_str(requested),
             " (dim ", i, ": ", have, " vs ", want, ")");
    s[i] = want;
    st[i] = have == want ? strides()[i - lead] : 0;
  }
  Tensor out = make_view(*this, s, st, offset());
  if (needs_grad({*this})) {
    const Shape in_shape = shape();
    record_op("expand", {*this}, {out}, [in_shape](const Grads& g) { return Grads{sum_to(g[0], in_shape)}; });
  }
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return view(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return view(s);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

// ---- copies -------------------------------------------------------------------------------

// dst[i] = convert(src[i]) over dst's shape, src broadcast to it; any strides and dtypes.
// With a device tensor on either side the copy runs there (engine/cuda_ops.h); a dtype
// conversion is done on the CPU side of a transfer, or on the device when both are there.
static void copy_kernel(const Tensor& dst, const Tensor& src) {
  if (dst.device() != Device::cpu || src.device() != Device::cpu) {
    if (dst.dtype() == src.dtype()) return cuda_ops::copy(dst, src);
    if (dst.device() == Device::cpu) {  // download as it is, convert here
      Tensor host = Tensor::empty(src.shape(), src.dtype());
      cuda_ops::copy(host, src);
      return copy_kernel(dst, host);
    }
    if (src.device() == Device::cpu) {  // convert here, then upload
      Tensor host = Tensor::empty(dst.shape(), dst.dtype());
      copy_kernel(host, src);
      return cuda_ops::copy(dst, host);
    }
    if (src.shape() == dst.shape()) return cuda_ops::convert(dst, src);  // both on the device
    Tensor converted = Tensor::empty(src.shape(), dst.dtype(), Device::cuda);  // convert, then broadcast
    cuda_ops::convert(converted, src);
    return cuda_ops::copy(dst, converted);
  }
  const Shape& shape = dst.shape();
  const Shape src_strides = kernels::broadcast_strides(src.shape(), src.strides(), shape);
  dispatch_all(dst.dtype(), [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_all(src.dtype(), [&](auto stag) {
      using S = typename decltype(stag)::type;
      D* o = static_cast<D*>(dst.raw_data());
      const S* x = static_cast<const S*>(src.raw_data());
      kernels::for_each_row<2>(shape, {dst.strides(), src_strides}, [&](int64_t n, auto off, auto inc) {
        D* op = o + off[0];
        const S* xp = x + off[1];
        if constexpr (std::is_same<D, S>::value) {
          if (inc[0] == 1 && inc[1] == 1) {
            std::memcpy(op, xp, static_cast<size_t>(n) * sizeof(D));
            return;
          }
          for (int64_t i = 0; i < n; ++i) op[i * inc[0]] = xp[i * inc[1]];
        } else if constexpr (std::is_arithmetic<D>::value && std::is_arithmetic<S>::value &&
                             !std::is_same<D, bool>::value) {
          for (int64_t i = 0; i < n; ++i) op[i * inc[0]] = static_cast<D>(xp[i * inc[1]]);
        } else {
          for (int64_t i = 0; i < n; ++i)
            op[i * inc[0]] = kernels::from_double<D>(kernels::to_double(xp[i * inc[1]]));
        }
      });
    });
  });
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_kernel(out, *this);
  if (needs_grad({*this})) record_op("clone", {*this}, {out}, [](const Grads& g) { return Grads{g[0]}; });
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = empty(shape(), t, device());
  copy_kernel(out, *this);
  if (needs_grad({*this})) {
    MM_CHECK(is_floating(t), "[to] cannot differentiate a conversion from ", dtype_name(dtype()), " to ",
             dtype_name(t));
    const DType from = dtype();
    record_op("to", {*this}, {out}, [from](const Grads& g) { return Grads{g[0].to(from)}; });
  }
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor out = empty(shape(), dtype(), d);
  copy_kernel(out, *this);
  if (needs_grad({*this})) {
    const Device from = device();
    record_op("to_device", {*this}, {out}, [from](const Grads& g) { return Grads{g[0].to(from)}; });
  }
  return out;
}

Tensor Tensor::detach() const {
  Tensor out = make_view(*this, shape(), strides(), offset());
  out.impl_->name = ref().name;
  return out;
}

static void check_inplace(const Tensor& t, const char* op) {
  MM_CHECK(!(t.requires_grad() && grad_enabled()), "[", op, "] in-place change of ", t.str(),
           " that requires grad; do it inside a NoGradGuard or on a detached tensor");
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  broadcast_shapes(src.shape(), shape(), "copy_");
  MM_CHECK(src.dim() <= dim(), "[copy_] cannot copy ", src.str(), " into ", str());
  for (int64_t i = 0; i < src.dim(); ++i) {
    const int64_t s = src.shape()[src.dim() - 1 - i], d = shape()[dim() - 1 - i];
    MM_CHECK(s == d || s == 1, "[copy_] cannot broadcast ", src.str(), " into ", str());
  }
  std::atomic_store(&ref().storage->gemm_pack, std::shared_ptr<const void>());
  if (src.impl_ == impl_) return *this;
  // Overlapping views of one storage (other than the identical view) are copied through a temporary.
  if (src.impl()->storage == ref().storage && src.impl_ != impl_) {
    Tensor tmp = empty(src.shape(), src.dtype(), src.device());
    copy_kernel(tmp, src);
    copy_kernel(*this, tmp);
  } else {
    copy_kernel(*this, src);
  }
  return *this;
}

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  std::atomic_store(&ref().storage->gemm_pack, std::shared_ptr<const void>());
  if (device() != Device::cpu) {  // one value, broadcast by the device copy
    copy_kernel(*this, full({}, value, dtype()));
    return *this;
  }
  dispatch_all(dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = kernels::from_double<T>(value);
    T* p = static_cast<T*>(raw_data());
    kernels::for_each_row<1>(shape(), {strides()}, [&](int64_t n, auto off, auto inc) {
      for (int64_t i = 0; i < n; ++i) p[off[0] + i * inc[0]] = v;
    });
  });
  return *this;
}

// ---- autograd accessors -------------------------------------------------------------------

Tensor& Tensor::set_requires_grad(bool r) {
  MM_CHECK(is_leaf(), "set_requires_grad on a non-leaf tensor ", str(), "; use detach() first");
  MM_CHECK(!r || is_floating(dtype()), "only floating-point tensors can require grad, got ", str());
  ref().requires_grad = r;
  if (r) std::atomic_store(&ref().storage->gemm_pack, std::shared_ptr<const void>());  // a weight about to be trained must not be read packed
  return *this;
}

Tensor Tensor::grad() const { return ref().grad ? Tensor(ref().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (!g.defined()) {
    ref().grad.reset();
    return;
  }
  MM_CHECK(g.shape() == shape(), "set_grad: gradient ", g.str(), " does not match ", str());
  ref().grad = g.impl();
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  run_backward({*this}, {gradient}, retain_graph);
}

}  // namespace mm
