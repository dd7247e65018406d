// engine/ops/attention.h: scaled dot-product attention (a CPU kernel that keeps one [Tq, Tk]
// score block per head alive at a time) and multi-head attention as torch.nn.MultiheadAttention.
// Reading order: after linalg.h. Test: ./build/mm_tests --source-file=*test_attention.cpp
//
//   // q: [B, NH, Tq, HS], k: [B, NH, Tk, HS], v: [B, NH, Tk, HSv] -> out [B, NH, Tq, HSv]
//   Tensor o = mm::scaled_dot_product_attention(q, k, v, Tensor(), mm::Causal::yes);
//   // CLIP text transformer block, x [B, T, D]:
//   Tensor a = mm::multi_head_attention(x, x, attn_in_w, attn_in_b, attn_out_w, attn_out_b, 8,
//                                       Tensor(), mm::Causal::yes);
#pragma once
#include <cstdint>
#include <optional>

#include "engine/tensor.h"

namespace mm {

// Causal::yes masks key j for query i when j > i (top-left aligned, as torch's is_causal).
enum class Causal { no, yes };

// out = softmax(scale * q k^T + mask) v per head.
// q [..., Tq, HS], k [..., Tk, HS], v [..., Tk, HSv] with identical leading dims (usually [B, NH]).
// mask (optional): a float tensor added to the scores, or a bool tensor where true = keep;
// either broadcastable to [..., Tq, Tk]. A float mask receives a gradient when it requires one.
// scale defaults to 1 / sqrt(HS). A query row with every key masked gives zeros (torch: NaN).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask = Tensor(),
                                    Causal causal = Causal::no, std::optional<double> scale = std::nullopt);

// torch.nn.MultiheadAttention forward (batch_first, as OpenAI CLIP's ResidualAttentionBlock):
//   q = x_q W_q^T + b_q,  k = x_kv W_k^T + b_k,  v = x_kv W_v^T + b_v   (W_q, W_k, W_v: the three
//   row blocks of in_proj_weight [3D, D], in that order), split into num_heads heads of D / num_heads,
//   o = sdpa(q, k, v, mask, causal), out = o W_out^T + b_out.
// x_q [B, Tq, D], x_kv [B, Tk, D]; biases may be undefined. mask uses this file's convention
// (float: added; bool: true = keep) and broadcasts to [B, NH, Tq, Tk]: pass [Tq, Tk] or
// [B, 1, Tq, Tk]. (torch's bool attn_mask means the opposite, true = masked out.)
Tensor multi_head_attention(const Tensor& x_q, const Tensor& x_kv, const Tensor& in_proj_weight,
                            const Tensor& in_proj_bias, const Tensor& out_proj_weight, const Tensor& out_proj_bias,
                            int64_t num_heads, const Tensor& mask = Tensor(), Causal causal = Causal::no);

}  // namespace mm
