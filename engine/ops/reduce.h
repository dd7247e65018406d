// engine/ops/reduce.h: reductions over any dims (keepdim or not), softmax, log_softmax.
// Reading order: after elementwise.h. Tested by tests/engine/test_reduce.cpp.
//
//   Tensor s = mm::sum(x, {0, 2}, KeepDim::yes);   // x [B, T, C] -> [1, T, 1]
//   auto [v, i] = mm::max(x, -1);                   // values and int64 indices over C
//   Tensor p = mm::softmax(logits, -1);
//
// Results do not depend on the thread count: each output is accumulated by one thread in
// a fixed order (float32 sums accumulate in double).
#pragma once
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace mm {

enum class KeepDim { no, yes };

// Empty dims = all dims.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, KeepDim keep = KeepDim::no);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, KeepDim keep = KeepDim::no);
// Variance with Bessel's correction by default (correction = 1), as torch.var.
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, KeepDim keep = KeepDim::no,
           int64_t correction = 1);
// p-norm over dims (p = 2 is the Euclidean norm).
Tensor norm(const Tensor& x, double p = 2.0, const std::vector<int64_t>& dims = {}, KeepDim keep = KeepDim::no);

// Max/min along one dim: values and int64 indices (first occurrence on ties).
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, KeepDim keep = KeepDim::no);
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, KeepDim keep = KeepDim::no);
Tensor max(const Tensor& x);  // over all elements (gradient split evenly between ties)
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, KeepDim keep = KeepDim::no);
Tensor argmin(const Tensor& x, int64_t dim, KeepDim keep = KeepDim::no);

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
Tensor logsumexp(const Tensor& x, int64_t dim, KeepDim keep = KeepDim::no);

// Sums g over the dims that broadcasting added or expanded, so that the result has `shape`
// (the backward of every broadcasting op).
Tensor sum_to(const Tensor& g, const Shape& shape);

}  // namespace mm
