// engine/ops/attention.cpp: scaled dot-product attention, forward and backward CPU kernels,
// and multi-head attention written from linear + views + sdpa.
// Test: ./build/mm_tests --source-file=*test_attention.cpp
//
// Forward, per head (heads run in parallel, each with its own scratch block):
//   S = scale * Q K^T + mask      S: [Tq, Tk], one GEMM (K^T is K's strides swapped)
//   P = softmax_rows(S)           in place; lse_r = log sum_c exp(S_rc) is saved
//   O = P V                       one GEMM into the output
// Only one [Tq, Tk] block per head in flight is ever allocated, and nothing of size
// [B, NH, Tq, Tk] is saved: the backward recomputes P = exp(S - lse) from q, k and the
// saved lse (as FlashAttention does), trading one GEMM for B*NH*Tq*Tk memory.
#include "engine/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "engine/autograd.h"
#include "engine/cuda_ops.h"
#include "engine/ops/linalg.h"
#include "engine/ops/reduce.h"
#include "engine/parallel.h"
#include "kernels/cpu/loops.h"
#include "kernels/vec.h"

namespace mm {

using kernels::dispatch_float;

namespace {

// Geometry shared by forward and backward: leading (batch) dims, sizes, and per-head offsets.
struct SdpaShape {
  Shape lead;  // [..] = usually [B, NH]
  int64_t BH = 1, Tq = 0, Tk = 0, HS = 0, HSv = 0;
  double scale = 1;
  bool causal = false;
};

// A strided operand viewed as BH matrices: matrix i starts at data + off[i], element (r, c)
// at + r * rs + c * cs.
struct HeadView {
  std::vector<int64_t> off;
  int64_t rs = 0, cs = 0;
};

HeadView head_view(const Tensor& t, const Shape& lead) {
  const int64_t nd = static_cast<int64_t>(lead.size()) + 2;
  const Shape st = kernels::broadcast_strides(t.shape(), t.strides(), [&] {
    Shape full = lead;
    full.push_back(t.shape()[t.dim() - 2]);
    full.push_back(t.shape()[t.dim() - 1]);
    return full;
  }());
  HeadView h;
  h.off = detail::batch_offsets(lead, Shape(st.begin(), st.begin() + (nd - 2)));
  h.rs = st[nd - 2];
  h.cs = st[nd - 1];
  return h;
}

// Scores of head i into S [Tq, Tk]: scale * Q_i K_i^T, plus the additive mask, -inf where a
// bool mask is false or the causal mask hides a key. The caller turns S into probabilities.
template <typename T>
void scores(const SdpaShape& s, int64_t i, const T* q, const HeadView& qv, const T* k, const HeadView& kv,
            const Tensor& mask, const HeadView& mv, T* S) {
  detail::gemm<T>(s.Tq, s.Tk, s.HS, static_cast<T>(s.scale), q + qv.off[i], qv.rs, qv.cs, k + kv.off[i], kv.cs,
                  kv.rs, T(0), S, s.Tk);
  const T neg_inf = -std::numeric_limits<T>::infinity();
  if (mask.defined()) {
    if (mask.dtype() == DType::boolean) {
      const bool* m = mask.data<bool>() + mv.off[i];
      for (int64_t r = 0; r < s.Tq; ++r)
        for (int64_t c = 0; c < s.Tk; ++c)
          if (!m[r * mv.rs + c * mv.cs]) S[r * s.Tk + c] = neg_inf;
    } else {
      const T* m = mask.data<T>() + mv.off[i];
      for (int64_t r = 0; r < s.Tq; ++r)
        for (int64_t c = 0; c < s.Tk; ++c) S[r * s.Tk + c] += m[r * mv.rs + c * mv.cs];
    }
  }
  if (s.causal)
    for (int64_t r = 0; r < s.Tq; ++r)
      for (int64_t c = r + 1; c < s.Tk; ++c) S[r * s.Tk + c] = neg_inf;
}

// row[c] = exp(row[c] - shift): float32 rows through the vector exp of kernels/vec.h.
template <typename T>
void exp_shifted(T* row, int64_t n, T shift) {
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t c = 0; c < n; ++c) row[c] -= shift;
    kernels::vexp(row, row, n);
  } else {
    for (int64_t c = 0; c < n; ++c) row[c] = std::exp(row[c] - shift);
  }
}

template <typename T>
void sdpa_forward(const SdpaShape& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                  const Tensor& out, const Tensor& lse) {
  const HeadView qv = head_view(q, s.lead), kv = head_view(k, s.lead), vv = head_view(v, s.lead);
  const HeadView mv = mask.defined() ? head_view(mask, s.lead) : HeadView{};
  const T* pq = q.data<T>();
  const T* pk = k.data<T>();
  const T* pv = v.data<T>();
  T* po = out.data<T>();
  T* plse = lse.data<T>();
  parallel_for(0, s.BH, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> S(static_cast<size_t>(s.Tq * s.Tk));  // this thread's one score block
    for (int64_t i = i0; i < i1; ++i) {
      scores<T>(s, i, pq, qv, pk, kv, mask, mv, S.data());
      // P = softmax over each row of S, in place. lse_r = max_r + log(sum_c exp(S_rc - max_r)).
      for (int64_t r = 0; r < s.Tq; ++r) {
        T* row = S.data() + r * s.Tk;
        T m;
        if constexpr (std::is_same_v<T, float>) {
          m = kernels::vmax(row, s.Tk);
        } else {
          m = -std::numeric_limits<T>::infinity();
          for (int64_t c = 0; c < s.Tk; ++c) m = std::max(m, row[c]);
        }
        if (m == -std::numeric_limits<T>::infinity()) {  // every key masked: zeros
          for (int64_t c = 0; c < s.Tk; ++c) row[c] = 0;
          plse[i * s.Tq + r] = m;
          continue;
        }
        exp_shifted(row, s.Tk, m);
        double sum = 0;
        for (int64_t c = 0; c < s.Tk; ++c) sum += row[c];
        const T inv = static_cast<T>(1.0 / sum);
        for (int64_t c = 0; c < s.Tk; ++c) row[c] *= inv;
        plse[i * s.Tq + r] = static_cast<T>(m + std::log(sum));
      }
      // O_i = P V_i: [Tq, HSv]
      detail::gemm<T>(s.Tq, s.HSv, s.Tk, T(1), S.data(), s.Tk, 1, pv + vv.off[i], vv.rs, vv.cs, T(0),
                      po + i * s.Tq * s.HSv, s.HSv);
    }
  });
}

// Backward per head, with P recomputed from q, k, mask and the saved lse:
//   P  = exp(S - lse)
//   dV = P^T dO                              [Tk, HSv]
//   dP = dO V^T                              [Tq, Tk]
//   dS = P o (dP - rowsum(dP o P))           (softmax backward)
//   dQ = scale * dS K,  dK = scale * dS^T Q,  dmask = dS (summed later to the mask's shape)
// dq, dk, dv are contiguous [lead.., T, HS]; dmask_full is [lead.., Tq, Tk] or undefined.
template <typename T>
void sdpa_backward(const SdpaShape& s, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                   const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dmask_full) {
  const HeadView qv = head_view(q, s.lead), kv = head_view(k, s.lead), vv = head_view(v, s.lead);
  const HeadView ov = head_view(dout, s.lead);
  const HeadView mv = mask.defined() ? head_view(mask, s.lead) : HeadView{};
  const T* pq = q.data<T>();
  const T* pk = k.data<T>();
  const T* pv = v.data<T>();
  const T* pdo = dout.data<T>();
  const T* plse = lse.data<T>();
  const T sc = static_cast<T>(s.scale);
  parallel_for(0, s.BH, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> P(static_cast<size_t>(s.Tq * s.Tk)), dS(static_cast<size_t>(s.Tq * s.Tk));
    for (int64_t i = i0; i < i1; ++i) {
      scores<T>(s, i, pq, qv, pk, kv, mask, mv, P.data());
      for (int64_t r = 0; r < s.Tq; ++r) {
        const T l = plse[i * s.Tq + r];
        T* row = P.data() + r * s.Tk;
        if (l == -std::numeric_limits<T>::infinity())
          std::fill(row, row + s.Tk, T(0));
        else
          exp_shifted(row, s.Tk, l);
      }
      const T* dO = pdo + ov.off[i];
      if (dv.defined())  // dV = P^T dO: P^T is P with strides swapped
        detail::gemm<T>(s.Tk, s.HSv, s.Tq, T(1), P.data(), 1, s.Tk, dO, ov.rs, ov.cs, T(0),
                        dv.data<T>() + i * s.Tk * s.HSv, s.HSv);
      if (!dq.defined() && !dk.defined() && !dmask_full.defined()) continue;
      // dP = dO V^T
      detail::gemm<T>(s.Tq, s.Tk, s.HSv, T(1), dO, ov.rs, ov.cs, pv + vv.off[i], vv.cs, vv.rs, T(0), dS.data(),
                      s.Tk);
      for (int64_t r = 0; r < s.Tq; ++r) {
        const T* p = P.data() + r * s.Tk;
        T* d = dS.data() + r * s.Tk;
        double dot = 0;
        for (int64_t c = 0; c < s.Tk; ++c) dot += static_cast<double>(d[c]) * p[c];
        for (int64_t c = 0; c < s.Tk; ++c) d[c] = p[c] * (d[c] - static_cast<T>(dot));
      }
      if (dmask_full.defined())
        std::copy(dS.begin(), dS.end(), dmask_full.data<T>() + i * s.Tq * s.Tk);
      if (dq.defined())  // dQ = scale * dS K
        detail::gemm<T>(s.Tq, s.HS, s.Tk, sc, dS.data(), s.Tk, 1, pk + kv.off[i], kv.rs, kv.cs, T(0),
                        dq.data<T>() + i * s.Tq * s.HS, s.HS);
      if (dk.defined())  // dK = scale * dS^T Q
        detail::gemm<T>(s.Tk, s.HS, s.Tq, sc, dS.data(), 1, s.Tk, pq + qv.off[i], qv.rs, qv.cs, T(0),
                        dk.data<T>() + i * s.Tk * s.HS, s.HS);
    }
  });
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                    Causal causal, std::optional<double> scale) {
  const char* op = "scaled_dot_product_attention";
  MM_CHECK(q.defined() && k.defined() && v.defined(), "[", op, "] undefined q, k or v");
  MM_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), "[", op, "] dtype mismatch: q ", q.str(), ", k ",
           k.str(), ", v ", v.str());
  MM_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), "[", op, "] q ", shape_str(q.shape()), ", k ",
           shape_str(k.shape()), ", v ", shape_str(v.shape()), ": expects [..., T, HS] with the same number of dims");
  SdpaShape s;
  s.lead = Shape(q.shape().begin(), q.shape().end() - 2);
  MM_CHECK(Shape(k.shape().begin(), k.shape().end() - 2) == s.lead &&
               Shape(v.shape().begin(), v.shape().end() - 2) == s.lead,
           "[", op, "] q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()),
           ": leading dims differ");
  s.BH = numel(s.lead);
  s.Tq = q.size(-2);
  s.Tk = k.size(-2);
  s.HS = q.size(-1);
  s.HSv = v.size(-1);
  MM_CHECK(k.size(-1) == s.HS, "[", op, "] q ", shape_str(q.shape()), " and k ", shape_str(k.shape()),
           ": head sizes ", s.HS, " and ", k.size(-1), " differ");
  MM_CHECK(v.size(-2) == s.Tk, "[", op, "] k ", shape_str(k.shape()), " and v ", shape_str(v.shape()),
           ": key counts ", s.Tk, " and ", v.size(-2), " differ");
  s.scale = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(s.HS));
  s.causal = causal == Causal::yes;
  Shape score_shape = s.lead;
  score_shape.push_back(s.Tq);
  score_shape.push_back(s.Tk);
  if (mask.defined()) {
    MM_CHECK(mask.dtype() == DType::boolean || mask.dtype() == q.dtype(), "[", op, "] mask ", mask.str(),
             " must be bool or ", dtype_name(q.dtype()), " like q");
    bool ok = mask.dim() <= static_cast<int64_t>(score_shape.size());
    for (int64_t i = 0; ok && i < mask.dim(); ++i) {
      const int64_t ms = mask.shape()[mask.dim() - 1 - i], ss = score_shape[score_shape.size() - 1 - i];
      ok = ms == ss || ms == 1;
    }
    MM_CHECK(ok, "[", op, "] mask ", shape_str(mask.shape()), " does not broadcast to the scores ",
             shape_str(score_shape));
  }
  if (cuda_ops::on_device(op, {&q, &k, &v, &mask})) return cuda_ops::attention(q, k, v, mask, s.causal, s.scale);
  Shape out_shape = s.lead;
  out_shape.push_back(s.Tq);
  out_shape.push_back(s.HSv);
  Tensor out = Tensor::empty(out_shape, q.dtype());
  Tensor lse = Tensor::empty({s.BH, s.Tq}, q.dtype());  // lse: [B*NH, Tq], saved for the backward
  Tensor qd = q.detach(), kd = k.detach(), vd = v.detach(), md = mask.defined() ? mask.detach() : Tensor();
  dispatch_float(q.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sdpa_forward<T>(s, qd, kd, vd, md, out, lse);
  });
  const bool mask_grad = mask.defined() && mask.dtype() != DType::boolean && mask.requires_grad();
  if (needs_grad({q, k, v}) || (mask_grad && grad_enabled())) {
    // Saved: q, k, v, mask (inputs) and lse; P is recomputed.
    const bool want_q = q.requires_grad(), want_k = k.requires_grad(), want_v = v.requires_grad();
    const Shape mask_shape = mask.defined() ? mask.shape() : Shape{};
    record_op("scaled_dot_product_attention", {q, k, v, mask_grad ? mask : Tensor()}, {out},
              [s, qd, kd, vd, md, lse, want_q, want_k, want_v, mask_grad, mask_shape, score_shape](const Grads& g) {
      Tensor dout = g[0];
      Tensor dq = want_q ? Tensor::empty(qd.shape(), qd.dtype()) : Tensor();
      Tensor dk = want_k ? Tensor::empty(kd.shape(), kd.dtype()) : Tensor();
      Tensor dv = want_v ? Tensor::empty(vd.shape(), vd.dtype()) : Tensor();
      Tensor dmask_full = mask_grad ? Tensor::empty(score_shape, qd.dtype()) : Tensor();
      dispatch_float(qd.dtype(), "scaled_dot_product_attention_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        sdpa_backward<T>(s, qd, kd, vd, md, lse, dout, dq, dk, dv, dmask_full);
      });
      return Grads{dq, dk, dv, mask_grad ? sum_to(dmask_full, mask_shape) : Tensor()};
    });
  }
  return out;
}

Tensor multi_head_attention(const Tensor& x_q, const Tensor& x_kv, const Tensor& in_proj_weight,
                            const Tensor& in_proj_bias, const Tensor& out_proj_weight, const Tensor& out_proj_bias,
                            int64_t num_heads, const Tensor& mask, Causal causal) {
  const char* op = "multi_head_attention";
  MM_CHECK(x_q.defined() && x_kv.defined() && in_proj_weight.defined() && out_proj_weight.defined(), "[", op,
           "] undefined input or weight");
  MM_CHECK(x_q.dim() == 3 && x_kv.dim() == 3 && x_q.size(0) == x_kv.size(0) && x_q.size(2) == x_kv.size(2), "[", op,
           "] x_q ", shape_str(x_q.shape()), " and x_kv ", shape_str(x_kv.shape()), ": expects [B, Tq, D] and [B, Tk, D]");
  const int64_t B = x_q.size(0), Tq = x_q.size(1), Tk = x_kv.size(1), D = x_q.size(2);
  MM_CHECK(num_heads > 0 && D % num_heads == 0, "[", op, "] embedding dim ", D, " of x_q ", shape_str(x_q.shape()),
           " is not divisible by num_heads ", num_heads);
  MM_CHECK(in_proj_weight.shape() == (Shape{3 * D, D}), "[", op, "] in_proj_weight ",
           shape_str(in_proj_weight.shape()), " must be [", 3 * D, ", ", D, "] for x_q ", shape_str(x_q.shape()));
  MM_CHECK(out_proj_weight.shape() == (Shape{D, D}), "[", op, "] out_proj_weight ",
           shape_str(out_proj_weight.shape()), " must be [", D, ", ", D, "]");
  const int64_t NH = num_heads, HS = D / NH;
  auto rows = [](const Tensor& t, int64_t start, int64_t n) { return t.defined() ? t.narrow(0, start, n) : Tensor(); };
  Tensor q, k, v;  // each [B, T, D]
  if (x_q.impl() == x_kv.impl()) {
    // Self-attention: one GEMM against all of in_proj. qkv: [B, T, 3D]
    Tensor qkv = linear(x_q, in_proj_weight, in_proj_bias);
    q = qkv.narrow(2, 0, D);
    k = qkv.narrow(2, D, D);
    v = qkv.narrow(2, 2 * D, D);
  } else {
    q = linear(x_q, rows(in_proj_weight, 0, D), rows(in_proj_bias, 0, D));
    Tensor kv = linear(x_kv, rows(in_proj_weight, D, 2 * D), rows(in_proj_bias, D, 2 * D));  // kv: [B, Tk, 2D]
    k = kv.narrow(2, 0, D);
    v = kv.narrow(2, D, D);
  }
  // [B, T, D] -> [B, T, NH, HS] -> [B, NH, T, HS] (views; sdpa takes the strides as they are)
  auto heads = [&](const Tensor& t, int64_t T) { return t.reshape({B, T, NH, HS}).permute({0, 2, 1, 3}); };
  Tensor o = scaled_dot_product_attention(heads(q, Tq), heads(k, Tk), heads(v, Tk), mask, causal);
  // o: [B, NH, Tq, HS] -> [B, Tq, NH, HS] -> [B, Tq, D]
  Tensor merged = o.permute({0, 2, 1, 3}).reshape({B, Tq, D});
  return linear(merged, out_proj_weight, out_proj_bias);
}

}  // namespace mm
