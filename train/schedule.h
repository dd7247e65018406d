// train/schedule.h: the learning-rate schedule of mm's training loops: linear warm-up from 0
// to the peak, then a cosine decay to final_ratio * peak at the last step.
// Reading order: train/, first. Test: ./build/mm_tests --source-file=*test_train.cpp
//
//   mm::train::LrSchedule s{/*peak=*/1e-3, /*warmup=*/100, /*total=*/2000, /*final_ratio=*/0.05};
//   s.at(0);     // 1e-5: step 0 already trains (lr = peak * 1 / warmup)
//   s.at(99);    // 1e-3
//   s.at(1999);  // 5e-5
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace mm::train {

struct LrSchedule {
  double peak = 1e-3;
  int64_t warmup = 0;
  int64_t total = 1;
  double final_ratio = 0.0;

  // The learning rate of step `step` (0-based).
  double at(int64_t step) const {
    if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
    const int64_t span = std::max<int64_t>(total - 1 - warmup, 1);
    const double t = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(span));
    const double cosine = 0.5 * (1.0 + std::cos(M_PI * t));
    return peak * (final_ratio + (1.0 - final_ratio) * cosine);
  }
};

}  // namespace mm::train
