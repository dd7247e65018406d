// train/common.h: small pieces both training loops share: seeded permutations, per-step seeds,
// the output folder, and the loss-curve PNG drawn from a run's log.csv.
// Reading order: train/, after schedule.h.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "apps/common/progress.h"

namespace mm::train {

// A permutation of 0..n-1 by Fisher-Yates over Philox draws: the same on every machine.
std::vector<int64_t> permutation(int64_t n, uint64_t seed);
// A seed for one purpose (data order, augmentation, ...) of one step (or epoch) of a run, so
// that a resumed run draws exactly what an uninterrupted one would.
uint64_t step_seed(uint64_t seed, int64_t step, uint64_t purpose);
// Creates the folder (one level); the error names it.
void make_dir(const std::string& dir);
// The per-step bookkeeping both training loops share: the progress line (with images per
// second since the run, or its resumption, began) and when to validate and checkpoint.
class StepReporter {
 public:
  StepReporter(int64_t start, int64_t end, int64_t batch, bool quiet);
  // After step `step` (0-based): "<what> N img/s" on the progress line.
  void progress(int64_t step, const std::string& what);
  // Every `every` steps, but not after the last (the end of a run validates on its own).
  bool validate_after(int64_t step, int64_t every) const {
    return every > 0 && (step + 1) % every == 0 && step + 1 != end_;
  }
  // Every `every` steps, and after the last.
  bool checkpoint_after(int64_t step, int64_t every) const {
    return (every > 0 && (step + 1) % every == 0) || step + 1 == end_;
  }

 private:
  int64_t start_, end_, batch_;
  bool quiet_;
  std::chrono::steady_clock::time_point t0_;
  apps::Progress progress_;
};

// Opens a run's log.csv for writing: a fresh run starts it with `header`; a run resumed at
// step `start` keeps the header and the rows of earlier steps only (a run killed after its
// last checkpoint left rows that the resumed run will write again).
void prepare_log(const std::string& log_csv, const std::string& header, int64_t start);
// Reads columns `train_col` and `val_col` (0-based, empty cells skipped) of log.csv and draws
// the training curve (averaged over 1% of the run) and the validation curve into png.
void plot_log(const std::string& log_csv, int train_col, int val_col, const std::string& val_name,
              const std::string& png);

}  // namespace mm::train
