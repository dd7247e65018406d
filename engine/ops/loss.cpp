// engine/ops/loss.cpp: losses and normalisation written from elementwise, reduction and
// shape ops, so every backward comes from theirs.
// Test: ./build/mm_tests --source-file=*test_loss.cpp
#include "engine/ops/loss.h"

#include <cmath>

#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape_ops.h"

namespace mm {

namespace {

Tensor reduce(const Tensor& per_element, Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return per_element;
    case Reduction::sum: return sum(per_element);
    case Reduction::mean: return mean(per_element);
  }
  throw Error("[loss] invalid Reduction");
}

}  // namespace

// loss_n = -log_softmax(logits)_n,target[n]   (log_softmax's backward: g - softmax * sum(g))
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction) {
  MM_CHECK(logits.defined() && target.defined(), "[cross_entropy] undefined logits or target");
  MM_CHECK(logits.dim() == 2 && target.dim() == 1 && target.size(0) == logits.size(0), "[cross_entropy] logits ",
           shape_str(logits.shape()), " and target ", shape_str(target.shape()), ": expects [N, C] and [N]");
  MM_CHECK(target.dtype() == DType::i64, "[cross_entropy] target ", target.str(), " must be int64");
  const int64_t C = logits.size(1);
  for (int64_t t : target.to_vector<int64_t>())
    MM_CHECK(t >= 0 && t < C, "[cross_entropy] target value ", t, " is out of range [0, ", C, ") for logits ",
             shape_str(logits.shape()));
  // picked: [N, 1] = log_softmax(logits)[n, target[n]]; gather's backward scatters into column target[n]
  Tensor picked = gather(log_softmax(logits, 1), 1, target.reshape({-1, 1}));
  return reduce(neg(picked.reshape({-1})), reduction);
}

Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction reduction) {
  return reduce(square(sub(a, b)), reduction);
}

// y = x / max(|x|_2, eps); the clamp passes the gradient where |x|_2 >= eps (clamp_min).
Tensor normalize(const Tensor& x, int64_t dim, double eps) {
  dim = wrap_dim(dim, x.dim(), "normalize");
  return div(x, clamp(norm(x, 2.0, {dim}, KeepDim::yes), eps, INFINITY));
}

// cos = sum_dim(normalize(a) * normalize(b)), with torch's per-vector eps clamp.
Tensor cosine_similarity(const Tensor& a, const Tensor& b, int64_t dim, double eps) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), "cosine_similarity");
  dim = wrap_dim(dim, static_cast<int64_t>(shape.size()), "cosine_similarity");
  Tensor ae = a.shape() == shape ? a : a.expand(shape);  // the norms run over the broadcast vectors
  Tensor be = b.shape() == shape ? b : b.expand(shape);
  return sum(mul(normalize(ae, dim, eps), normalize(be, dim, eps)), {dim});
}

}  // namespace mm
