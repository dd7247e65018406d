// engine/ops/reduce.cpp: reductions. Sum is the one kernel with real work in it; mean,
// var and norm are written from sum and elementwise ops, so their gradients come free.
// Single-dim ops (max/min, softmax) view the input as [outer, R, inner] and reduce R.
#include "engine/ops/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/elementwise.h"
#include "kernels/cpu/loops.h"

namespace mm {

using kernels::dispatch_float;

namespace {

// Sorted unique wrapped dims; empty input = all.
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> d;
  if (dims.empty()) {
    for (int64_t i = 0; i < ndim; ++i) d.push_back(i);
    return d;
  }
  for (int64_t x : dims) d.push_back(wrap_dim(x, ndim, op));
  std::sort(d.begin(), d.end());
  MM_CHECK(std::adjacent_find(d.begin(), d.end()) == d.end(), "[", op, "] repeated dim");
  return d;
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, KeepDim keep) {
  Shape out;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    const bool r = std::find(dims.begin(), dims.end(), i) != dims.end();
    if (!r) out.push_back(s[i]);
    else if (keep == KeepDim::yes) out.push_back(1);
  }
  return out;
}

constexpr int64_t kBlock = 8192;  // fixed block for splitting one long row: thread-count independent

// Sum of n contiguous values with a double accumulator.
template <typename T>
double sum_contiguous(const T* p, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += p[i];
  return acc;
}

// out[o] = sum_r x[o, r] for x viewed as [outer, R] (contiguous).
template <typename T>
void sum_rows(const T* x, T* out, int64_t outer, int64_t R) {
  if (outer == 1 && R > 2 * kBlock) {  // one long row: fixed blocks, combined in order
    const int64_t blocks = (R + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(blocks));
    parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        partial[b] = sum_contiguous(x + b * kBlock, std::min(kBlock, R - b * kBlock));
    });
    double acc = 0;
    for (double v : partial) acc += v;
    out[0] = static_cast<T>(acc);
    return;
  }
  parallel_for(0, outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(R, 1)), [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) out[o] = static_cast<T>(sum_contiguous(x + o * R, R));
  });
}

// out[c] = sum_r x[r, c] for x viewed as [R, C] (contiguous): the bias-gradient shape.
template <typename T>
void sum_cols(const T* x, T* out, int64_t R, int64_t C) {
  parallel_for(0, C, 256, [&](int64_t c0, int64_t c1) {
    std::vector<double> acc(static_cast<size_t>(c1 - c0), 0.0);
    for (int64_t r = 0; r < R; ++r) {
      const T* row = x + r * C + c0;
      for (int64_t c = 0; c < c1 - c0; ++c) acc[c] += row[c];
    }
    for (int64_t c = c0; c < c1; ++c) out[c] = static_cast<T>(acc[c - c0]);
  });
}

Tensor sum_forward(const Tensor& x, const std::vector<int64_t>& dims) {
  if (x.device() != Device::cpu) return cuda_ops::sum(x, dims);
  // Move the reduced dims last; when they are already leading or trailing in a contiguous
  // tensor, no copy is needed.
  const int64_t nd = x.dim();
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < nd; ++i)
    if (std::find(dims.begin(), dims.end(), i) == dims.end()) kept.push_back(i);
  Shape out_shape;
  int64_t R = 1, K = 1;
  for (int64_t d : kept) out_shape.push_back(x.shape()[d]), K *= x.shape()[d];
  for (int64_t d : dims) R *= x.shape()[d];
  Tensor out = Tensor::empty(out_shape, x.dtype());
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    bool leading = true;  // reduced dims are exactly 0..k-1
    for (size_t i = 0; i < dims.size(); ++i) leading = leading && dims[i] == static_cast<int64_t>(i);
    if (x.is_contiguous() && leading && !dims.empty() && !kept.empty()) {
      sum_cols(x.data<T>(), out.data<T>(), R, K);
      return;
    }
    std::vector<int64_t> perm = kept;
    perm.insert(perm.end(), dims.begin(), dims.end());
    Tensor xp = x.detach().permute(perm).contiguous();
    sum_rows(xp.data<T>(), out.data<T>(), K, R);
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, KeepDim keep) {
  const std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), "sum");
  Tensor out = sum_forward(x, dims);
  if (keep == KeepDim::yes) out = out.view(reduced_shape(x.shape(), dims, KeepDim::yes));
  if (needs_grad({x})) {
    const Shape in_shape = x.shape(), kept_shape = reduced_shape(x.shape(), dims, KeepDim::yes);
    record_op("sum", {x}, {out}, [in_shape, kept_shape](const Grads& g) {
      return Grads{g[0].reshape(kept_shape).expand(in_shape)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, KeepDim keep) {
  const std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), "mean");
  int64_t n = 1;
  for (int64_t d : dims) n *= x.shape()[d];
  MM_CHECK(n > 0, "[mean] reducing over zero elements of ", x.str());
  return mul(sum(x, dims, keep), 1.0 / static_cast<double>(n));
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims_in, KeepDim keep, int64_t correction) {
  const std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), "var");
  int64_t n = 1;
  for (int64_t d : dims) n *= x.shape()[d];
  MM_CHECK(n - correction > 0, "[var] ", n, " elements with correction ", correction, " in ", x.str());
  Tensor centered = sub(x, mean(x, dims, KeepDim::yes));
  return mul(sum(square(centered), dims, keep), 1.0 / static_cast<double>(n - correction));
}

Tensor norm(const Tensor& x, double p, const std::vector<int64_t>& dims, KeepDim keep) {
  MM_CHECK(p > 0, "[norm] p must be > 0, got ", p);
  if (p == 2.0) return sqrt(sum(square(x), dims, keep));
  if (p == 1.0) return sum(abs(x), dims, keep);
  return pow(sum(pow(abs(x), p), dims, keep), 1.0 / p);
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  MM_CHECK(lead >= 0, "[sum_to] cannot reduce ", g.str(), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < g.dim(); ++i) {
    if (i < lead) dims.push_back(i);
    else if (shape[i - lead] == 1 && g.shape()[i] != 1) dims.push_back(i);
    else MM_CHECK(shape[i - lead] == g.shape()[i], "[sum_to] cannot reduce ", g.str(), " to ", shape_str(shape));
  }
  if (dims.empty()) return g.reshape(shape);
  return sum(g, dims).reshape(shape);
}

// ---- single-dim ops on the [outer, R, inner] view ------------------------------------------

namespace {

struct DimView {
  int64_t outer = 1, R = 1, inner = 1;
};
DimView dim_view(const Shape& s, int64_t d) {
  DimView v;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    if (i < d) v.outer *= s[i];
    else if (i == d) v.R = s[i];
    else v.inner *= s[i];
  }
  return v;
}

// Index of the max (Greater) or min along R for each (outer, inner).
template <bool Greater>
std::pair<Tensor, Tensor> extreme(const Tensor& x_in, int64_t dim, KeepDim keep, const char* op) {
  dim = wrap_dim(dim, x_in.dim(), op);
  MM_CHECK(x_in.dim() == 0 || x_in.shape()[dim] > 0, "[", op, "] empty dim ", dim, " of ", x_in.str());
  if (cuda_ops::on_device(op, {&x_in})) {
    if (x_in.dim() == 0) {  // one element: itself, at index 0
      auto [v, i] = cuda_ops::extreme(op, x_in.reshape({1}), 0, Greater);
      return {v.reshape({}), i.reshape({})};
    }
    auto [v, i] = cuda_ops::extreme(op, x_in, dim, Greater);
    if (keep == KeepDim::yes) return {v, i};
    return {v.squeeze(dim), i.squeeze(dim)};
  }
  Tensor x = x_in.detach().contiguous();
  const DimView v = dim_view(x.shape(), x.dim() == 0 ? 0 : dim);
  Shape out_shape = x.dim() == 0 ? Shape{} : reduced_shape(x.shape(), {dim}, keep);
  Tensor values = Tensor::empty(out_shape, x.dtype());
  Tensor indices = Tensor::empty(out_shape, DType::i64);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = x.data<T>();
    T* vo = values.data<T>();
    int64_t* io = indices.data<int64_t>();
    parallel_for(0, v.outer * v.inner, 1024, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t o = j / v.inner, i = j % v.inner;
        const T* base = p + o * v.R * v.inner + i;
        T best = base[0];
        int64_t arg = 0;
        for (int64_t r = 1; r < v.R; ++r) {
          const T val = base[r * v.inner];
          if (std::isnan(best)) break;  // NaN propagates, as in torch
          if (std::isnan(val) || (Greater ? val > best : val < best)) best = val, arg = r;
        }
        vo[j] = best;
        io[j] = arg;
      }
    });
  });
  if (needs_grad({x_in})) {
    const Shape in_shape = x_in.shape();
    Tensor idx = indices;
    const DType dt = x_in.dtype();
    record_op(op, {x_in}, {values}, [in_shape, idx, v, dt](const Grads& g) {
      Tensor dx = Tensor::zeros(in_shape, dt);
      Tensor gc = g[0].contiguous();
      dispatch_float(dt, "max_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* d = dx.data<T>();
        const T* gp = gc.data<T>();
        const int64_t* ip = idx.data<int64_t>();
        for (int64_t j = 0; j < v.outer * v.inner; ++j) {
          const int64_t o = j / v.inner, i = j % v.inner;
          d[o * v.R * v.inner + ip[j] * v.inner + i] += gp[j];
        }
      });
      return Grads{dx};
    });
  }
  return {values, indices};
}

}  // namespace

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, KeepDim keep) { return extreme<true>(x, dim, keep, "max"); }
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, KeepDim keep) { return extreme<false>(x, dim, keep, "min"); }
Tensor argmax(const Tensor& x, int64_t dim, KeepDim keep) {
  NoGradGuard ng;
  return extreme<true>(x, dim, keep, "argmax").second;
}
Tensor argmin(const Tensor& x, int64_t dim, KeepDim keep) {
  NoGradGuard ng;
  return extreme<false>(x, dim, keep, "argmin").second;
}

// Full reductions: the gradient is shared evenly between tied extremes (as torch.max()).
static Tensor extreme_all(const Tensor& x, bool greater, const char* op) {
  MM_CHECK(x.numel() > 0, "[", op, "] of an empty tensor");
  Tensor flat = x.reshape({-1});
  Tensor value;
  {
    NoGradGuard ng;
    value = greater ? max(flat, 0).first : min(flat, 0).first;
  }
  if (needs_grad({x})) {
    Tensor xd = x.detach(), vd = value.detach();
    record_op(op, {x}, {value}, [xd, vd](const Grads& g) {
      Tensor hit = eq(xd, vd).to(xd.dtype());
      return Grads{mul(div(hit, sum(hit)), g[0])};
    });
  }
  return value;
}
Tensor max(const Tensor& x) { return extreme_all(x, true, "max"); }
Tensor min(const Tensor& x) { return extreme_all(x, false, "min"); }

// Softmax over R: y = exp(x - max) / sum(exp(x - max)); log form y = x - max - log(sum).
template <bool Log>
static Tensor softmax_forward(const Tensor& x_in, int64_t dim, const char* op) {
  Tensor x = x_in.detach().contiguous();
  const DimView v = dim_view(x.shape(), dim);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = x.data<T>();
    T* o = out.data<T>();
    parallel_for(0, v.outer * v.inner, std::max<int64_t>(1, 8192 / std::max<int64_t>(v.R, 1)), [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t oo = j / v.inner, i = j % v.inner;
        const T* base = p + oo * v.R * v.inner + i;
        T* ob = o + oo * v.R * v.inner + i;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t r = 0; r < v.R; ++r) m = std::max(m, base[r * v.inner]);
        if (m == -std::numeric_limits<T>::infinity()) m = 0;  // an all -inf row stays finite-safe
        double s = 0;
        for (int64_t r = 0; r < v.R; ++r) {
          const T e = std::exp(base[r * v.inner] - m);
          if (!Log) ob[r * v.inner] = e;
          s += e;
        }
        if (Log) {
          const T ls = static_cast<T>(std::log(s)) + m;
          for (int64_t r = 0; r < v.R; ++r) ob[r * v.inner] = base[r * v.inner] - ls;
        } else {
          const T inv = static_cast<T>(1.0 / s);
          for (int64_t r = 0; r < v.R; ++r) ob[r * v.inner] *= inv;
        }
      }
    });
  });
  return out;
}

Tensor softmax(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "softmax");
  if (cuda_ops::on_device("softmax", {&x})) {
    if (dim == x.dim() - 1) return cuda_ops::softmax_last(x);
    return cuda_ops::softmax_last(x.transpose(dim, -1)).transpose(dim, -1);  // the dim moved last and back
  }
  Tensor out = softmax_forward<false>(x, dim, "softmax");
  if (needs_grad({x})) {
    Tensor y = out.detach();  // saved output: dx = y * (g - sum(g * y))
    record_op("softmax", {x}, {out}, [y, dim](const Grads& g) {
      return Grads{mul(y, sub(g[0], sum(mul(g[0], y), {dim}, KeepDim::yes)))};
    });
  }
  return out;
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "log_softmax");
  if (cuda_ops::on_device("log_softmax", {&x})) return sub(x, logsumexp(x, dim, KeepDim::yes));
  Tensor out = softmax_forward<true>(x, dim, "log_softmax");
  if (needs_grad({x})) {
    Tensor y = out.detach();  // saved output: dx = g - exp(y) * sum(g)
    record_op("log_softmax", {x}, {out}, [y, dim](const Grads& g) {
      return Grads{sub(g[0], mul(exp(y), sum(g[0], {dim}, KeepDim::yes)))};
    });
  }
  return out;
}

Tensor logsumexp(const Tensor& x, int64_t dim, KeepDim keep) {
  dim = wrap_dim(dim, x.dim(), "logsumexp");
  Tensor m;
  {
    NoGradGuard ng;
    m = max(x, dim, KeepDim::yes).first;
    const Tensor minus_inf = Tensor::scalar(-INFINITY, x.dtype()).to(x.device());
    m = where(eq(m, minus_inf), Tensor::zeros({}, x.dtype()).to(x.device()), m);
  }
  Tensor r = add(log(sum(exp(sub(x, m)), {dim}, KeepDim::yes)), m);
  return keep == KeepDim::yes ? r : r.squeeze(dim);
}

}  // namespace mm
