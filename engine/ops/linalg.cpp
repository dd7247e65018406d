// engine/ops/linalg.cpp: matmul and linear, forward and backward, on the strided GEMM of
// kernels/gemm.h. Test: ./build/mm_tests --source-file=*test_linalg.cpp
//
// How a batched matmul is run (out [batch..., M, N] = a [batch..., M, K] @ b [batch..., K, N]):
//   - b the same matrix for every batch entry and a's batch rows evenly strided (x [B, T, K] @ W):
//     one GEMM with M' = batch * M rows (the GEMM threads itself);
//   - big matrices: one GEMM per batch entry in turn, each threaded;
//   - many small matrices (attention heads): parallel_for over the batch; a GEMM called inside
//     a parallel_for runs on its own thread (nested parallel calls run inline, parallel.h).
#include "engine/ops/linalg.h"

#include <algorithm>
#include <memory>
#include <type_traits>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/reduce.h"
#include "engine/parallel.h"
#include "kernels/cpu/loops.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"

namespace mm {

using kernels::dispatch_float;

namespace detail {

template <>
void gemm<float>(int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t a_rs, int64_t a_cs,
                 const float* b, int64_t b_rs, int64_t b_cs, float beta, float* c, int64_t ldc) {
  kernels::sgemm(M, N, K, alpha, {a, a_rs, a_cs}, {b, b_rs, b_cs}, beta, c, ldc);
}

template <>
void gemm<double>(int64_t M, int64_t N, int64_t K, double alpha, const double* a, int64_t a_rs, int64_t a_cs,
                  const double* b, int64_t b_rs, int64_t b_cs, double beta, double* c, int64_t ldc) {
  kernels::dgemm(M, N, K, alpha, {a, a_rs, a_cs}, {b, b_rs, b_cs}, beta, c, ldc);
}

std::vector<int64_t> batch_offsets(const Shape& batch, const Shape& strides) {
  std::vector<int64_t> off(static_cast<size_t>(numel(batch)), 0);
  for (int64_t i = 0; i < static_cast<int64_t>(off.size()); ++i) {
    int64_t rem = i, o = 0;
    for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
      o += (rem % batch[d]) * strides[d];
      rem /= batch[d];
    }
    off[i] = o;
  }
  return off;
}

}  // namespace detail

namespace {

// Per-matrix multiply-adds above which each GEMM gets the whole thread pool.
constexpr int64_t kBigGemm = 64 * 64 * 64;

// True when dims [0, n) of (shape, strides) walk memory with one uniform step per row, i.e.
// they can be flattened into a single row dim of stride strides[n-1].
bool rows_mergeable(const Shape& shape, const Shape& strides) {
  int64_t expected = -1;  // stride the next (outer) dim must have
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (expected >= 0 && strides[d] != expected) return false;
    expected = strides[d] * shape[d];
  }
  return true;
}

// Stride of the innermost non-size-1 dim among [0, n): the merged row stride.
int64_t merged_row_stride(const Shape& shape, const Shape& strides) {
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d)
    if (shape[d] != 1) return strides[d];
  return 0;
}

// out [batch..., M, N] = a [..., M, K] @ b [..., K, N]; a, b at least 2-D, batch dims
// broadcast to `batch`. out is contiguous.
template <typename T>
void matmul_kernel(const Tensor& a, const Tensor& b, const Shape& batch, const Tensor& out) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const int64_t nb = numel(batch);
  if (M == 0 || N == 0 || nb == 0) return;
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2), b_batch(b.shape().begin(), b.shape().end() - 2);
  const Shape a_bstrides = kernels::broadcast_strides(
      a_batch, Shape(a.strides().begin(), a.strides().end() - 2), batch);
  const Shape b_bstrides = kernels::broadcast_strides(
      b_batch, Shape(b.strides().begin(), b.strides().end() - 2), batch);
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* pc = out.data<T>();
  const int64_t a_rs = a.strides()[a.dim() - 2], a_cs = a.strides()[a.dim() - 1];
  const int64_t b_rs = b.strides()[b.dim() - 2], b_cs = b.strides()[b.dim() - 1];

  // Case 1: one GEMM over all rows. b's batch strides are all 0 and a's rows [batch..., M]
  // walk memory uniformly.
  const bool b_shared = std::all_of(b_bstrides.begin(), b_bstrides.end(), [](int64_t s) { return s == 0; });
  Shape rows_shape = batch, rows_strides = a_bstrides;
  rows_shape.push_back(M);
  rows_strides.push_back(a_rs);
  if (nb > 1 && b_shared && rows_mergeable(rows_shape, rows_strides)) {
    detail::gemm<T>(nb * M, N, K, T(1), pa, merged_row_stride(rows_shape, rows_strides), a_cs, pb, b_rs, b_cs,
                    T(0), pc, N);
    return;
  }
  const std::vector<int64_t> a_off = detail::batch_offsets(batch, a_bstrides);
  const std::vector<int64_t> b_off = detail::batch_offsets(batch, b_bstrides);
  auto one = [&](int64_t i) {
    detail::gemm<T>(M, N, K, T(1), pa + a_off[i], a_rs, a_cs, pb + b_off[i], b_rs, b_cs, T(0), pc + i * M * N, N);
  };
  const int64_t work = M * N * std::max<int64_t>(K, 1);
  if (work >= kBigGemm) {  // Case 2: each GEMM threads itself
    for (int64_t i = 0; i < nb; ++i) one(i);
    return;
  }
  // Case 3: many small matrices, one thread each.
  parallel_for(0, nb, std::max<int64_t>(1, kBigGemm / work), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) one(i);
  });
}

// a [..., M, K] @ b [..., K, N], both at least 2-D (the 1-D cases are views around this).
Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2), b_batch(b.shape().begin(), b.shape().end() - 2);
  const size_t nd = std::max(a_batch.size(), b_batch.size());
  Shape batch(nd, 1);
  for (size_t i = 0; i < nd; ++i) {
    const int64_t sa = i < nd - a_batch.size() ? 1 : a_batch[i - (nd - a_batch.size())];
    const int64_t sb = i < nd - b_batch.size() ? 1 : b_batch[i - (nd - b_batch.size())];
    MM_CHECK(sa == sb || sa == 1 || sb == 1, "[matmul] a ", shape_str(a.shape()), " and b ", shape_str(b.shape()),
             ": batch dims ", shape_str(a_batch), " and ", shape_str(b_batch), " do not broadcast");
    batch[i] = sa == 1 ? sb : sa;
  }
  const int64_t M = a.size(-2), N = b.size(-1);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, a.dtype());
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    matmul_kernel<T>(a, b, batch, out);
  });
  if (needs_grad({a, b})) {
    const bool want_a = a.requires_grad(), want_b = b.requires_grad();
    // dA reads b and dB reads a: each kept only when the other's gradient is wanted.
    const Tensor ad = want_b ? a.detach() : Tensor(), bd = want_a ? b.detach() : Tensor();
    const Shape a_shape = a.shape(), b_shape = b.shape();
    record_op("matmul", {a, b}, {out}, [ad, bd, a_shape, b_shape, want_a, want_b](const Grads& g) {
      // dA = dC @ B^T, dB = A^T @ dC, each summed over the batch dims its operand was broadcast on.
      Tensor da, db;
      if (want_a) da = sum_to(matmul(g[0], bd.transpose(-1, -2)), a_shape);
      if (want_b) {
        if (b_shape.size() == 2 && a_shape.size() > 2) {
          // b shared by every batch entry: dB = A_rows^T @ dC_rows, one GEMM instead of a batch + sum.
          // A_rows: [batch * M, K], dC_rows: [batch * M, N]
          db = matmul(ad.reshape({-1, ad.size(-1)}).t(), g[0].reshape({-1, g[0].size(-1)}));
        } else {
          db = sum_to(matmul(ad.transpose(-1, -2), g[0]), b_shape);
        }
      }
      return Grads{da, db};
    });
  }
  return out;
}

void check_float_pair(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b) {
  MM_CHECK(a.defined() && b.defined(), "[", op, "] undefined tensor argument");
  MM_CHECK(a.dtype() == b.dtype() && (a.dtype() == DType::f32 || a.dtype() == DType::f64), "[", op, "] ", na, " ",
           a.str(), " and ", nb, " ", b.str(), ": expects float32 or float64 tensors of one dtype");
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_float_pair("matmul", "a", a, "b", b);
  MM_CHECK(a.dim() >= 1 && b.dim() >= 1, "[matmul] a ", shape_str(a.shape()), " and b ", shape_str(b.shape()),
           ": both need at least one dim");
  const int64_t ka = a.size(-1), kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  MM_CHECK(ka == kb, "[matmul] a ", shape_str(a.shape()), " and b ", shape_str(b.shape()), ": inner dims ", ka,
           " and ", kb, " differ");
  if (cuda_ops::on_device("matmul", {&a, &b})) return cuda_ops::matmul(a, b);
  // 1-D operands become a row [1, K] (a) or a column [K, 1] (b); the added dim is removed after.
  Tensor out = matmul_nd(a.dim() == 1 ? a.unsqueeze(0) : a, b.dim() == 1 ? b.unsqueeze(1) : b);
  if (b.dim() == 1) out = out.squeeze(-1);
  if (a.dim() == 1) out = out.squeeze(b.dim() == 1 ? -1 : -2);
  return out;
}

namespace {

// What prepack_linear_weight leaves in the weight's storage: for each view it packed, the
// view and its pack. One storage may hold many weights (a memory-mapped file's tensors).
struct LinearPack {
  int64_t offset, rs, cs;
  DType dtype;
  kernels::PackedB b;
  bool packs(const Tensor& w) const {
    return offset == w.offset() && rs == w.strides()[1] && cs == w.strides()[0] && dtype == w.dtype() &&
           b.K == w.size(1) && b.N == w.size(0);
  }
};
using LinearPacks = std::vector<LinearPack>;

// A 16-bit weight widened to float32 (exactly) for one use; any other tensor as it is.
Tensor widened(const Tensor& weight) { return is_half_weight(weight) ? weight.detach().to(DType::f32) : weight; }

// The usable pack of this exact view of a weight (b null if none), with the list that holds
// it: the storage's slot is read and replaced atomically, and a reader keeps its list alive
// while a prepack of another view publishes a new one.
struct PackRef {
  std::shared_ptr<const void> list;
  const kernels::PackedB* b = nullptr;
};
PackRef pack_of(const Tensor& weight) {
  PackRef r{std::atomic_load(&weight.impl()->storage->gemm_pack)};
  if (!r.list || weight.requires_grad()) return r;
  for (const LinearPack& p : *static_cast<const LinearPacks*>(r.list.get()))
    if (p.packs(weight)) {
      if (p.b.usable()) r.b = &p.b;
      break;
    }
  return r;
}

}  // namespace

bool prepack_linear_weight(const Tensor& weight) {
  if (!weight.defined() || weight.dim() != 2 || !(weight.dtype() == DType::f32 || is_half_weight(weight)) ||
      weight.requires_grad() || weight.device() != Device::cpu || weight.numel() == 0)
    return false;
  // B = W^T [in, out]: element (k, j) = W[j, k]. A 16-bit weight is widened (exactly) into a
  // temporary first: the pack is float32 either way.
  const Tensor w = widened(weight);
  LinearPack pack{weight.offset(), weight.strides()[1], weight.strides()[0], weight.dtype(),
                  kernels::pack_b(w.size(1), w.size(0), {w.data<float>(), w.strides()[1], w.strides()[0]})};
  // The storage's list is immutable once published: a new list with this view's pack added
  // (or replaced), stored atomically. (Two prepacks of one storage at once may lose one pack,
  // never a list a reader holds.)
  std::shared_ptr<const void>* slot = &weight.impl()->storage->gemm_pack;
  const std::shared_ptr<const void> old = std::atomic_load(slot);
  auto packs = std::make_shared<LinearPacks>();
  if (old)
    for (const LinearPack& p : *static_cast<const LinearPacks*>(old.get()))
      if (!p.packs(weight)) packs->push_back(p);
  packs->push_back(std::move(pack));
  std::atomic_store(slot, std::shared_ptr<const void>(std::move(packs)));
  return true;
}

bool is_half_weight(const Tensor& weight) {
  return weight.defined() && (weight.dtype() == DType::f16 || weight.dtype() == DType::bf16);
}

bool linear_weight_packed(const Tensor& weight) { return weight.defined() && pack_of(weight).b != nullptr; }

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (is_half_weight(weight)) {
    MM_CHECK(x.defined() && x.dtype() == DType::f32, "[linear] weight ", weight.str(), " is 16-bit: x must be float32, got ",
             x.defined() ? x.str() : std::string("undefined"));
    MM_CHECK(!weight.requires_grad(), "[linear] weight ", weight.str(),
             " requires grad: a trained weight must be float32 (convert it with to(DType::f32))");
  } else {
    check_float_pair("linear", "x", x, "weight", weight);
  }
  MM_CHECK(weight.dim() == 2, "[linear] weight ", shape_str(weight.shape()), " must be 2-D [out, in]");
  MM_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "[linear] x ", shape_str(x.shape()), " and weight ",
           shape_str(weight.shape()), ": x's last dim must equal weight's in-features ", weight.size(1));
  const int64_t in = weight.size(1), out_f = weight.size(0);
  if (bias.defined()) {
    MM_CHECK(bias.dtype() == x.dtype(), "[linear] bias ", bias.str(), " and x ", x.str(), ": dtype mismatch");
    MM_CHECK(bias.dim() == 1 && bias.size(0) == out_f, "[linear] bias ", shape_str(bias.shape()), " and weight ",
             shape_str(weight.shape()), ": bias must be [", out_f, "]");
  }
  int64_t R = 1;  // rows: all leading dims of x
  for (int64_t d = 0; d + 1 < x.dim(); ++d) R *= x.shape()[d];
  Tensor x2 = x.detach().reshape({R, in});  // x2: [R, in], a view when x's rows allow it
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  // (on the device cuBLAS computes y; the backward below is shared)
  const bool device = cuda_ops::on_device("linear", {&x, &weight, &bias});
  Tensor y = device ? cuda_ops::linear(x, widened(weight), bias).reshape({R, out_f}) : Tensor::empty({R, out_f}, x.dtype());
  if (!device) dispatch_float(x.dtype(), "linear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* py = y.data<T>();
    // W^T [in, out] is weight [out, in] with its strides swapped.
    PackRef packed;  // (holds the pack while sgemm_packed reads it)
    // (Below sgemm's small-problem size the packed path would not be bitwise the plain one.)
    if constexpr (std::is_same_v<T, float>)
      if (R * out_f * in >= 32 * 32 * 32) packed = pack_of(weight);
    if (packed.b) {
      kernels::sgemm_packed(R, out_f, in, 1.f, {x2.data<float>(), x2.strides()[0], x2.strides()[1]}, *packed.b, 0.f,
                            reinterpret_cast<float*>(py), out_f);
    } else {
      const Tensor w = widened(weight);  // (a 16-bit weight, a model kept as its file stores it)
      detail::gemm<T>(R, out_f, in, T(1), x2.data<T>(), x2.strides()[0], x2.strides()[1], w.data<T>(),
                      w.strides()[1], w.strides()[0], T(0), py, out_f);
    }
    if (bias.defined()) {  // y[r, :] += bias, while the rows are still warm from the GEMM
      const T* pbias = bias.data<T>();
      const int64_t bs = bias.strides()[0];
      parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(out_f, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          if constexpr (std::is_same_v<T, float>) {
            if (bs == 1) {
              kernels::vadd(py + r * out_f, pbias, py + r * out_f, out_f);
              continue;
            }
          }
          for (int64_t j = 0; j < out_f; ++j) py[r * out_f + j] += pbias[j * bs];
        }
      });
    }
  });
  y = y.view(out_shape);
  if (needs_grad({x, weight, bias})) {
    const Shape x_shape = x.shape();
    const bool want_x = x.requires_grad(), want_w = weight.requires_grad();
    const bool want_b = bias.defined() && bias.requires_grad();
    // Keep only what the wanted gradients read: a frozen weight's layer does not hold on to
    // its input (mmgen's CLIP: the activations would otherwise outlive the forward).
    const Tensor wd = want_x ? weight.detach() : Tensor(), xs = want_w ? x2 : Tensor();
    const cuda_ops::Precision prec = cuda_ops::backward_precision(cuda_ops::precision());
    auto backward = [xs, wd, x_shape, R, out_f, want_x, want_w, want_b, prec](const Grads& g) {
      cuda_ops::PrecisionScope scope(prec);  // (the device's GEMMs at the forward's precision)
      // dY: [R, out];  dX = dY @ W,  dW = dY^T @ X,  db = sum over rows of dY
      Tensor dy = g[0].reshape({R, out_f});
      return Grads{want_x ? matmul(dy, widened(wd)).reshape(x_shape) : Tensor(),
                   want_w ? matmul(dy.t(), xs) : Tensor(),
                   want_b ? sum(dy, {0}) : Tensor()};
    };
    record_op("linear", {x, weight, bias}, {y}, backward);
  }
  return y;
}

}  // namespace mm
