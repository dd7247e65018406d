// kernels/cpu/vec.cpp: picks the implementation of kernels/vec.h at first use (AVX-512, else
// AVX2 + FMA, else scalar loops over std::exp; MM_VEC forces one) and holds the scalar path.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>

#include "engine/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/norm_row.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/vec.h"

namespace mm::kernels {
namespace {

void exp_scalar(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}
void sigmoid_gate_scalar(const float* x, float* y, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.f + std::exp(-alpha * x[i]));
}
void sigmoid_gate_backward_scalar(const float* x, const float* dy, float* dx, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.f / (1.f + std::exp(-alpha * x[i]));
    dx[i] = dy[i] * (s + alpha * x[i] * s * (1.f - s));
  }
}

float max_scalar(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}
void add_scalar(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void layer_norm_row_scalar(const float* x, const float* w, const float* b, float* y, int64_t n, float eps,
                           float* mean, float* rstd) {
  cpu::layer_norm_row_double(x, w, b, y, n, eps, mean, rstd);
}

struct Chosen {
  const char* name;
  cpu::VecFns fns;
};

using cpu::cpu_has_avx2;
using cpu::cpu_has_avx512;

// `want`: "" for the CPU's best, else a name; `who` names the source of the request in errors.
Chosen choose(const std::string& want, const char* who) {
  const cpu::VecFns scalar{exp_scalar, sigmoid_gate_scalar, sigmoid_gate_backward_scalar, max_scalar, add_scalar,
                           layer_norm_row_scalar};
  MM_CHECK(want.empty() || want == "avx512" || want == "avx2" || want == "scalar",
           "[vec] ", who, " must be avx512, avx2 or scalar, got '", want, "'");
  if (want == "scalar") return {"scalar", scalar};
  if (want == "avx512" || (want.empty() && cpu_has_avx512())) {
    MM_CHECK(cpu_has_avx512(), "[vec] ", who, " asks for avx512, but this CPU does not report all of avx512f/bw/vl/dq, avx2 and fma");
    return {"avx512", cpu::vec_fns_avx512()};
  }
  if (want == "avx2" || (want.empty() && cpu_has_avx2())) {
    MM_CHECK(cpu_has_avx2(), "[vec] ", who, " asks for avx2, but this CPU does not report avx2/fma");
    return {"avx2", cpu::vec_fns_avx2()};
  }
  return {"scalar", scalar};
}

Chosen startup_choice() {
  const char* env = std::getenv("MM_VEC");
  return choose(env ? env : "", "MM_VEC");
}

Chosen g_chosen;
std::once_flag g_once;

const Chosen& chosen() {
  std::call_once(g_once, [] { g_chosen = startup_choice(); });
  return g_chosen;
}

}  // namespace

void vexp(const float* x, float* y, int64_t n) { chosen().fns.exp(x, y, n); }
void vsigmoid_gate(const float* x, float* y, int64_t n, float alpha) { chosen().fns.sigmoid_gate(x, y, n, alpha); }
void vsigmoid_gate_backward(const float* x, const float* dy, float* dx, int64_t n, float alpha) {
  chosen().fns.sigmoid_gate_backward(x, dy, dx, n, alpha);
}
float vmax(const float* x, int64_t n) { return chosen().fns.max(x, n); }
void vadd(const float* a, const float* b, float* y, int64_t n) { chosen().fns.add(a, b, y, n); }
void vlayer_norm_row(const float* x, const float* w, const float* b, float* y, int64_t n, float eps, float* mean,
                     float* rstd) {
  chosen().fns.layer_norm_row(x, w, b, y, n, eps, mean, rstd);
}
const char* vec_isa_name() { return chosen().name; }

bool vec_isa_available(const char* name) {
  const std::string n = name;
  return n == "scalar" || (n == "avx2" && cpu_has_avx2()) || (n == "avx512" && cpu_has_avx512());
}

void set_vec_isa(const char* name) {
  chosen();  // the once-flag is spent, so a later first use cannot overwrite this choice
  g_chosen = name[0] ? choose(name, "set_vec_isa") : startup_choice();
}

}  // namespace mm::kernels
