// engine/ops/shape_ops.cpp: cat/stack/split and the index ops. Every index read is
// bounds-checked; the backward of an index op scatter-adds into zeros.
#include "engine/ops/shape_ops.h"

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "kernels/cpu/loops.h"

namespace mm {

using kernels::dispatch_float;

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  MM_CHECK(!tensors.empty(), "[cat] needs at least one tensor");
  const Tensor& first = tensors[0];
  dim = wrap_dim(dim, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    MM_CHECK(t.dim() == first.dim() && t.dtype() == first.dtype() && t.device() == first.device(), "[cat] tensor ",
             i, " ", device_name(t.device()), " ", t.str(), " does not match tensor 0 ", device_name(first.device()), " ",
             first.str());
    for (int64_t d = 0; d < t.dim(); ++d)
      MM_CHECK(d == dim || t.shape()[d] == first.shape()[d], "[cat] tensor ", i, " ", t.str(),
               " differs from tensor 0 ", first.str(), " in dim ", d, " (concatenating along ", dim, ")");
    out_shape[dim] += t.shape()[dim];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  {
    NoGradGuard ng;
    int64_t at = 0;
    for (const Tensor& t : tensors) {
      out.narrow(dim, at, t.shape()[dim]).copy_(t);
      at += t.shape()[dim];
    }
  }
  if (needs_grad(tensors)) {
    std::vector<int64_t> sizes;
    for (const Tensor& t : tensors) sizes.push_back(t.shape()[dim]);
    record_op("cat", tensors, {out}, [sizes, dim](const Grads& g) {
      Grads r;
      int64_t at = 0;
      for (int64_t s : sizes) {
        r.push_back(g[0].narrow(dim, at, s));
        at += s;
      }
      return r;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  MM_CHECK(!tensors.empty(), "[stack] needs at least one tensor");
  dim = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    MM_CHECK(tensors[i].shape() == tensors[0].shape(), "[stack] tensor ", i, " ", tensors[i].str(),
             " differs from tensor 0 ", tensors[0].str());
    parts.push_back(tensors[i].unsqueeze(dim));
  }
  return cat(parts, dim);
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "split");
  MM_CHECK(size >= 1, "[split] size must be >= 1, got ", size);
  std::vector<Tensor> out;
  for (int64_t at = 0; at < x.shape()[dim]; at += size)
    out.push_back(x.narrow(dim, at, std::min(size, x.shape()[dim] - at)));
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  MM_CHECK(chunks >= 1, "[chunk] chunks must be >= 1, got ", chunks);
  const int64_t n = x.shape()[wrap_dim(dim, x.dim(), "chunk")];
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), dim);
}

// ---- index ops ---------------------------------------------------------------------------

static void check_index(const char* op, const Tensor& index, int64_t limit, const std::string& what) {
  MM_CHECK(index.dtype() == DType::i64, "[", op, "] index must be int64, got ", index.str());
  Tensor c = index.to(Device::cpu).contiguous();  // (a device index is checked on the host)
  const int64_t* p = c.data<int64_t>();
  for (int64_t i = 0; i < c.numel(); ++i)
    MM_CHECK(p[i] >= 0 && p[i] < limit, "[", op, "] index ", p[i], " out of range [0, ", limit, ") for ", what);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = wrap_dim(dim, x.dim(), "index_select");
  MM_CHECK(index.dim() == 1, "[index_select] index must be 1-D, got ", index.str());
  if (cuda_ops::on_device("index_select", {&x}) && dim == 0 && x.dim() == 2)
    return cuda_ops::gather_rows("index_select", x, index);  // (checks the ids itself)
  check_index("index_select", index, x.shape()[dim], str_cat("dim ", dim, " of ", x.str()));
  if (x.device() == Device::cuda)  // the ids become the axis's index map
    return cuda_ops::index_axis("index_select", x, dim, index.to_vector<int64_t>());
  // View x as [outer, n, inner] and copy the picked rows of n.
  Tensor xc = x.detach().contiguous();
  Tensor idx = index.contiguous();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.shape()[d];
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  const int64_t n = x.shape()[dim], m = idx.numel();
  Shape out_shape = x.shape();
  out_shape[dim] = m;
  Tensor out = Tensor::empty(out_shape, x.dtype());
  const int64_t* ip = idx.data<int64_t>();
  const size_t esize = dtype_size(x.dtype());
  const char* src = static_cast<const char*>(xc.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  parallel_for(0, outer * m, std::max<int64_t>(1, 4096 / std::max<int64_t>(inner, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r / m, j = r % m;
      std::memcpy(dst + (o * m + j) * inner * esize, src + (o * n + ip[j]) * inner * esize, inner * esize);
    }
  });
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("index_select", {x}, {out}, [in_shape, idx, dim, outer, inner, n, m](const Grads& g) {
      Tensor dx = Tensor::zeros(in_shape, g[0].dtype());
      Tensor gc = g[0].contiguous();
      const int64_t* ip = idx.data<int64_t>();
      dispatch_float(g[0].dtype(), "index_select_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* d = dx.data<T>();
        const T* gp = gc.data<T>();
        // parallel over outer, each thread scatter-adds its own rows: deterministic
        parallel_for(0, outer, 1, [&](int64_t o0, int64_t o1) {
          for (int64_t o = o0; o < o1; ++o)
            for (int64_t j = 0; j < m; ++j) {
              T* drow = d + (o * n + ip[j]) * inner;
              const T* grow = gp + (o * m + j) * inner;
              for (int64_t i = 0; i < inner; ++i) drow[i] += grow[i];
            }
        });
      });
      return Grads{dx};
    });
  }
  return out;
}

Tensor embedding(const Tensor& ids, const Tensor& weight) {
  MM_CHECK(weight.dim() == 2, "[embedding] weight must be [V, D], got ", weight.str());
  Shape out_shape = ids.shape();
  out_shape.push_back(weight.shape()[1]);
  return index_select(weight, 0, ids.reshape({-1})).reshape(out_shape);
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const bool device = cuda_ops::on_device("gather", {&x, &index});
  dim = wrap_dim(dim, x.dim(), "gather");
  MM_CHECK(index.dim() == x.dim(), "[gather] index ", index.str(), " must have the rank of input ", x.str());
  for (int64_t d = 0; d < x.dim(); ++d)
    MM_CHECK(d == dim || index.shape()[d] <= x.shape()[d], "[gather] index ", index.str(), " larger than input ",
             x.str(), " in dim ", d);
  check_index("gather", index, x.shape()[dim], str_cat("dim ", dim, " of ", x.str()));
  if (device) return cuda_ops::gather(x, dim, index);
  Tensor idx = index.contiguous();
  Tensor out = Tensor::empty(index.shape(), x.dtype());
  const Shape& is = idx.shape();
  const Shape cs = contiguous_strides(is);
  const int64_t total = idx.numel();
  const int64_t* ip = idx.data<int64_t>();
  // offset of element i of index in x, with dim replaced by the index value
  auto source_offset = [&](int64_t i) {
    int64_t off = x.offset(), rem = i;
    for (int64_t d = 0; d < x.dim(); ++d) {
      const int64_t c = rem / cs[d];
      rem %= cs[d];
      off += (d == dim ? ip[i] : c) * x.strides()[d];
    }
    return off;
  };
  dispatch_float(x.dtype(), "gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* base = static_cast<const T*>(x.raw_data()) - x.offset();  // source_offset adds the offset
    T* o = out.data<T>();
    for (int64_t i = 0; i < total; ++i) o[i] = base[source_offset(i)];
  });
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record_op("gather", {x}, {out}, [in_shape, idx, dim](const Grads& g) {
      Tensor dx = Tensor::zeros(in_shape, g[0].dtype());
      Tensor gc = g[0].contiguous();
      const Shape cs = contiguous_strides(idx.shape());
      const Shape xs = dx.strides();
      const int64_t* ip = idx.data<int64_t>();
      dispatch_float(g[0].dtype(), "gather_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* d = dx.data<T>();
        const T* gp = gc.data<T>();
        for (int64_t i = 0; i < idx.numel(); ++i) {
          int64_t off = 0, rem = i;
          for (int64_t k = 0; k < static_cast<int64_t>(cs.size()); ++k) {
            const int64_t c = rem / cs[k];
            rem %= cs[k];
            off += (k == dim ? ip[i] : c) * xs[k];
          }
          d[off] += gp[i];
        }
      });
      return Grads{dx};
    });
  }
  return out;
}

}  // namespace mm
