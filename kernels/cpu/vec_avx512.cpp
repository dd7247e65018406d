// kernels/cpu/vec_avx512.cpp: kernels/vec.h's kernels on 16-float zmm vectors. Compiled with
// -mavx512f... (CMakeLists.txt); kernels/cpu/vec.cpp calls them only when the CPU reports it.
// GCC 12 reports the _mm512_undefined_*() placeholders inside its own unmasked intrinsics
// (max, min, roundscale, cvtps, slli) as "may be used uninitialized": a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/cpu/vec_math.h"

namespace mm::kernels::cpu {
namespace {
struct Zmm {
  using reg = __m512;
  static constexpr int W = 16;
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg set1(float v) { return _mm512_set1_ps(v); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  static reg round(reg a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static reg pow2(reg n) {  // exponent bits (n + 127) << 23
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
};
}  // namespace

VecFns vec_fns_avx512() { return VecMath<Zmm>::fns(); }

}  // namespace mm::kernels::cpu
