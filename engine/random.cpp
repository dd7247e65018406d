// engine/random.cpp: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011) and the scalar draws of Generator.
#include "engine/random.h"

#include <cmath>

#include "engine/error.h"

namespace mm {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(M1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += W0;
    k1 += W1;
  }
  return {c0, c1, c2, c3};
}

double philox_uniform(const std::array<uint32_t, 4>& r) {
  const uint64_t bits = (static_cast<uint64_t>(r[0]) << 21) ^ (r[1] >> 11);  // 53 bits
  return static_cast<double>(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

double philox_normal(const std::array<uint32_t, 4>& r) {
  // Box-Muller with two 53-bit uniforms; u1 in (0, 1] so that log(u1) is finite.
  const uint64_t b1 = ((static_cast<uint64_t>(r[0]) << 21) ^ (r[1] >> 11)) & ((1ull << 53) - 1);
  const uint64_t b2 = ((static_cast<uint64_t>(r[2]) << 21) ^ (r[3] >> 11)) & ((1ull << 53) - 1);
  const double u1 = (static_cast<double>(b1) + 1.0) * (1.0 / 9007199254740992.0);
  const double u2 = static_cast<double>(b2) * (1.0 / 9007199254740992.0);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

double Generator::uniform() { return philox_uniform(philox4x32(seed_, counter_++)); }
double Generator::normal() { return philox_normal(philox4x32(seed_, counter_++)); }

int64_t Generator::randint(int64_t lo, int64_t hi) {
  MM_CHECK(hi > lo, "[randint] empty range [", lo, ", ", hi, ")");
  const uint64_t range = static_cast<uint64_t>(hi - lo);
  const auto r = philox4x32(seed_, counter_++);
  const uint64_t bits = (static_cast<uint64_t>(r[0]) << 32) | r[1];
  return lo + static_cast<int64_t>(bits % range);  // bias < range / 2^64: negligible
}

}  // namespace mm
