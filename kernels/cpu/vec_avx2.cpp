// kernels/cpu/vec_avx2.cpp: kernels/vec.h's kernels on 8-float ymm vectors. Compiled with
// -mavx2 -mfma (CMakeLists.txt); kernels/cpu/vec.cpp calls them only when the CPU reports it.
#include <immintrin.h>

#include "kernels/cpu/vec_math.h"

namespace mm::kernels::cpu {
namespace {
struct Ymm {
  using reg = __m256;
  static constexpr int W = 8;
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg set1(float v) { return _mm256_set1_ps(v); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  static reg round(reg a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static reg pow2(reg n) {  // exponent bits (n + 127) << 23
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
};
}  // namespace

VecFns vec_fns_avx2() { return VecMath<Ymm>::fns(); }

}  // namespace mm::kernels::cpu
