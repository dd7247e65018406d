// engine/ops/vq.cpp: vector_quantize: a tiled nearest-code search on the GEMM; the
// codebook rows are then read with embedding (shape_ops.h), whose backward scatter-adds.
// Test: ./build/mm_tests --source-file=*test_vq.cpp
//
// The N x K distance matrix is never formed: rows of z go in tiles of kRowTile (in parallel),
// and each tile walks the codebook in tiles of kCodeTile codes with one GEMM per tile,
// keeping a running argmin. Scratch per task: kRowTile x kCodeTile values.
#include "engine/ops/vq.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "engine/cuda_ops.h"
#include "engine/ops/linalg.h"
#include "engine/ops/shape_ops.h"
#include "engine/parallel.h"
#include "kernels/cpu/loops.h"

namespace mm {

using kernels::dispatch_float;

namespace {

constexpr int64_t kRowTile = 256;    // rows of z per task
constexpr int64_t kCodeTile = 1024;  // codes per GEMM

// idx[n] = argmin_k (|z_n|^2 + |e_k|^2) - 2 z_n . e_k, lowest k on ties.
// z [N, D] and e [K, D] are strided: element (n, d) of z at z[n * z_rs + d * z_cs].
template <typename T>
void nearest_codes(const T* z, int64_t z_rs, int64_t z_cs, const T* e, int64_t e_rs, int64_t e_cs, int64_t N,
                   int64_t K, int64_t D, int64_t* idx) {
  auto sq_norm = [D](const T* p, int64_t step) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += static_cast<double>(p[d * step]) * p[d * step];
    return static_cast<T>(s);
  };
  std::vector<T> ee(static_cast<size_t>(K));  // |e_k|^2
  parallel_for(0, K, 1024, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) ee[k] = sq_norm(e + k * e_rs, e_cs);
  });
  const int64_t row_tiles = (N + kRowTile - 1) / kRowTile;
  parallel_for(0, row_tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> dot(static_cast<size_t>(std::min(N, kRowTile) * std::min(K, kCodeTile)));
    std::vector<T> zz(static_cast<size_t>(kRowTile)), best(static_cast<size_t>(kRowTile));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * kRowTile, rows = std::min(kRowTile, N - n0);
      for (int64_t r = 0; r < rows; ++r) {
        zz[r] = sq_norm(z + (n0 + r) * z_rs, z_cs);
        best[r] = std::numeric_limits<T>::infinity();
        idx[n0 + r] = 0;
      }
      for (int64_t k0 = 0; k0 < K; k0 += kCodeTile) {
        const int64_t kt = std::min(kCodeTile, K - k0);
        // dot [rows, kt] = -2 z_tile @ e_tile^T   (e^T: e's strides swapped)
        detail::gemm<T>(rows, kt, D, T(-2), z + n0 * z_rs, z_rs, z_cs, e + k0 * e_rs, e_cs, e_rs, T(0), dot.data(),
                        kt);
        for (int64_t r = 0; r < rows; ++r) {
          const T* drow = dot.data() + r * kt;
          for (int64_t c = 0; c < kt; ++c) {
            const T dist = (zz[r] + ee[k0 + c]) + drow[c];
            if (dist < best[r]) {  // strict: the first (lowest) index wins ties
              best[r] = dist;
              idx[n0 + r] = k0 + c;
            }
          }
        }
      }
    }
  });
}

}  // namespace

Quantized vector_quantize(const Tensor& z, const Tensor& codebook) {
  MM_CHECK(z.defined() && codebook.defined(), "[vector_quantize] undefined z or codebook");
  MM_CHECK(z.dim() == 2 && codebook.dim() == 2 && z.size(1) == codebook.size(1), "[vector_quantize] z ",
           shape_str(z.shape()), " and codebook ", shape_str(codebook.shape()), ": expects z [N, D] and codebook [K, D]");
  MM_CHECK(z.dtype() == codebook.dtype(), "[vector_quantize] z ", z.str(), " and codebook ", codebook.str(),
           ": dtype mismatch");
  const int64_t N = z.size(0), K = codebook.size(0), D = z.size(1);
  MM_CHECK(K > 0, "[vector_quantize] empty codebook ", shape_str(codebook.shape()));
  if (cuda_ops::on_device("vector_quantize", {&z, &codebook})) {
    Tensor indices = cuda_ops::nearest_codes(z, codebook);
    return {indices, embedding(indices, codebook)};
  }
  Tensor indices = Tensor::empty({N}, DType::i64);
  dispatch_float(z.dtype(), "vector_quantize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    nearest_codes<T>(z.data<T>(), z.strides()[0], z.strides()[1], codebook.data<T>(), codebook.strides()[0],
                     codebook.strides()[1], N, K, D, indices.data<int64_t>());
  });
  // z_q = codebook[indices]; embedding's backward scatter-adds dz_q into the codebook rows.
  return {indices, embedding(indices, codebook)};
}

}  // namespace mm
