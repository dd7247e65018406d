// engine/random.h: seeded, counter-based random numbers (Philox4x32-10).
// Reading order: after tensor.h. Element i of a random tensor depends only on the seed and
// the generator's counter at the time of the call, never on the thread count, so results
// reproduce run to run and machine to machine.
//
//   mm::Generator gen(42);
//   mm::Tensor x = mm::Tensor::randn({4, 8}, gen);   // advances gen's counter by 32
//   double u = gen.uniform();                        // a scalar draw in [0, 1)
#pragma once
#include <array>
#include <cstdint>

namespace mm {

// One Philox4x32-10 block: 128 random bits from (key, counter). Pure function.
std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  void manual_seed(uint64_t seed) { seed_ = seed; counter_ = 0; }

  // Reserves n counters for a bulk draw and returns the first; the caller evaluates
  // philox4x32(seed(), first + i) for element i.
  uint64_t reserve(uint64_t n) { const uint64_t c = counter_; counter_ += n; return c; }
  uint64_t counter() const { return counter_; }
  void set_counter(uint64_t c) { counter_ = c; }

  double uniform();                        // [0, 1)
  double normal();                         // N(0, 1)
  int64_t randint(int64_t lo, int64_t hi);  // [lo, hi)

 private:
  uint64_t seed_;
  uint64_t counter_ = 0;
};

// Helpers shared by the bulk fills: 53-bit uniform in [0, 1) and a Box-Muller normal
// from one Philox block.
double philox_uniform(const std::array<uint32_t, 4>& r);
double philox_normal(const std::array<uint32_t, 4>& r);

}  // namespace mm
