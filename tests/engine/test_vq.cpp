// tests/engine/test_vq.cpp: vector_quantize against a brute-force double search (several code
// and row tiles, ties, strided inputs), float32 against float64 distances, and the codebook
// gradient (scatter-add) against finite differences.
// Run: ./build/mm_tests --source-file=*test_vq.cpp
#include <doctest/doctest.h>

#include <string>

#include "engine/mm.h"
#include "tests/gradcheck.h"

using namespace mm;
using testing::check_close;
using testing::check_gradients;
using testing::rand64;

namespace {

// Squared distances d[n][k] in double and the first argmin per row.
struct Ref {
  std::vector<std::vector<double>> dist;
  std::vector<int64_t> idx;
};
Ref ref_vq(const Tensor& z, const Tensor& e) {
  const int64_t N = z.size(0), K = e.size(0), D = z.size(1);
  const std::vector<double> zv = z.to_vector<double>(), ev = e.to_vector<double>();
  Ref r;
  r.dist.assign(N, std::vector<double>(K));
  r.idx.assign(N, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      for (int64_t d = 0; d < D; ++d) s += (zv[n * D + d] - ev[k * D + d]) * (zv[n * D + d] - ev[k * D + d]);
      r.dist[n][k] = s;
      if (s < r.dist[n][r.idx[n]]) r.idx[n] = k;
    }
  return r;
}

Tensor rows_of(const Tensor& e, const std::vector<int64_t>& idx) {
  const int64_t D = e.size(1);
  const std::vector<double> ev = e.to_vector<double>();
  std::vector<double> out;
  for (int64_t i : idx) out.insert(out.end(), ev.begin() + i * D, ev.begin() + (i + 1) * D);
  return Tensor::from_vector(out, {static_cast<int64_t>(idx.size()), D});
}

}  // namespace

TEST_CASE("vector_quantize nearest codes against brute force") {
  struct Case {
    int64_t N, K, D;
  };
  // K > 1024 and N > 256 cross the code and row tiles; 1 and odd sizes.
  const std::vector<Case> cases = {{1, 1, 1}, {5, 7, 3}, {300, 2500, 4}, {257, 1025, 1}, {16, 1024, 8}};
  for (const Case& c : cases) {
    const std::string name = "vq N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " D=" + std::to_string(c.D);
    SUBCASE(name.c_str()) {
      Tensor z = rand64({c.N, c.D}, 1), e = rand64({c.K, c.D}, 2);
      const Ref ref = ref_vq(z, e);
      Quantized q = vector_quantize(z, e);
      CHECK(q.indices.dtype() == DType::i64);
      CHECK(q.indices.shape() == Shape{c.N});
      CHECK(q.indices.to_vector<int64_t>() == ref.idx);
      check_close(q.z_q, rows_of(e, ref.idx), 0, 0, name + " z_q");
      // float32: the chosen code is nearest up to float rounding of the distances
      Quantized q32 = vector_quantize(z.to(f32), e.to(f32));
      const std::vector<int64_t> i32 = q32.indices.to_vector<int64_t>();
      int64_t off = 0;
      for (int64_t n = 0; n < c.N; ++n)
        if (ref.dist[n][i32[n]] > ref.dist[n][ref.idx[n]] + 1e-5) ++off;
      CHECK_MESSAGE(off == 0, name, ": ", off, " float32 rows picked a code farther than 1e-5 from the nearest");
      check_close(q32.z_q, rows_of(e.to(f32), i32), 0, 0, name + " z_q f32");
    }
  }
}

TEST_CASE("vector_quantize ties, strided inputs, gradient") {
  SUBCASE("vq ties go to the lowest index") {
    // codes 1 and 3 are equal; z = code 1 exactly; z = 0 is equidistant from codes 0 and 2
    Tensor e = Tensor::from_vector(std::vector<double>{1, 0, 0.9, 0.9, -1, 0, 0.9, 0.9}, {4, 2});
    Tensor z = Tensor::from_vector(std::vector<double>{0.9, 0.9, 0, 0}, {2, 2});
    CHECK(vector_quantize(z, e).indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0});
    CHECK(vector_quantize(z.to(f32), e.to(f32)).indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  }
  SUBCASE("vq transposed z [3, 40]^T and strided codebook [30, 6][:, ::2]") {
    Tensor zt = rand64({3, 40}, 3), e = rand64({30, 6}, 4);
    Tensor z = zt.t(), es = e.slice(1, 0, 6, 2);
    const Ref ref = ref_vq(z.contiguous(), es.contiguous());
    Quantized q = vector_quantize(z, es);
    CHECK(q.indices.to_vector<int64_t>() == ref.idx);
    check_close(q.z_q, rows_of(es.contiguous(), ref.idx), 0, 0, "strided z_q");
    CHECK(vector_quantize(z.to(f32), es.to(f32)).indices.to_vector<int64_t>() == ref.idx);
  }
  SUBCASE("vq codebook gradient N=9 K=4 D=3 (rows sharing a code accumulate)") {
    Tensor z = rand64({9, 3}, 5), e = rand64({4, 3}, 6);
    check_gradients([&](const std::vector<Tensor>& in) { return vector_quantize(z, in[0]).z_q; }, {e});
    // every row of dz_q = 1 lands on its code: dcodebook[k] = count(k) per element
    Tensor e_ = e.detach().set_requires_grad(true);
    Quantized q = vector_quantize(z, e_);
    sum(q.z_q).backward();
    std::vector<double> counts(4, 0.0);
    for (int64_t i : q.indices.to_vector<int64_t>()) counts[i] += 1;
    const std::vector<double> g = e_.grad().to_vector<double>();
    for (int64_t k = 0; k < 4; ++k)
      for (int64_t d = 0; d < 3; ++d) CHECK(g[k * 3 + d] == counts[k]);
  }
  SUBCASE("vq errors") {
    CHECK_THROWS_WITH_AS(vector_quantize(Tensor::zeros({4, 3}), Tensor::zeros({5, 2})),
                         "[vector_quantize] z [4, 3] and codebook [5, 2]: expects z [N, D] and codebook [K, D]", Error);
    CHECK_THROWS_WITH_AS(vector_quantize(Tensor::zeros({4, 3}), Tensor::zeros({5, 3}, f64)),
                         doctest::Contains("dtype mismatch"), Error);
  }
}
