// train/common.cpp: see common.h.
#include "train/common.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>

#include "engine/error.h"
#include "engine/random.h"
#include "train/plot.h"

namespace mm::train {

std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  Generator g(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(g.randint(0, i + 1))]);
  return p;
}

uint64_t step_seed(uint64_t seed, int64_t step, uint64_t purpose) {
  return seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ull + purpose;
}

void make_dir(const std::string& d) {
  if (d.empty()) return;
  mkdir(d.c_str(), 0755);
  struct stat st;
  MM_CHECK(stat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "[mmtrain] cannot create the output folder '", d, "'");
}

StepReporter::StepReporter(int64_t start, int64_t end, int64_t batch, bool quiet)
    : start_(start), end_(end), batch_(batch), quiet_(quiet), t0_(std::chrono::steady_clock::now()),
      progress_(end - start) {}

void StepReporter::progress(int64_t step, const std::string& what) {
  if (quiet_) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  char rate[64];
  std::snprintf(rate, sizeof(rate), " %.1f img/s", static_cast<double>((step - start_ + 1) * batch_) / std::max(secs, 1e-9));
  progress_.update(step - start_ + 1, what + rate);
}

void prepare_log(const std::string& log_csv, const std::string& header, int64_t start) {
  std::vector<std::string> keep = {header};
  if (start > 0) {
    std::ifstream in(log_csv);
    MM_CHECK(in.good(), "[mmtrain] resuming at step ", start, " but '", log_csv, "' cannot be read");
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (std::stoll(line.substr(0, line.find(','))) < start) keep.push_back(line);
    }
  }
  std::ofstream out(log_csv, std::ios::trunc);
  for (const auto& l : keep) out << l << "\n";
  MM_CHECK(out.good(), "[mmtrain] cannot write '", log_csv, "'");
}

void plot_log(const std::string& log_csv, int train_col, int val_col, const std::string& val_name,
              const std::string& png) {
  std::vector<std::pair<int64_t, double>> tl, vl;
  std::ifstream in(log_csv);
  MM_CHECK(in.good(), "[mmtrain] cannot read '", log_csv, "'");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    size_t a = 0;
    for (size_t b; (b = line.find(',', a)) != std::string::npos; a = b + 1) f.push_back(line.substr(a, b - a));
    f.push_back(line.substr(a));
    auto cell = [&](int c) { return c < static_cast<int>(f.size()) ? f[static_cast<size_t>(c)] : std::string(); };
    if (!cell(train_col).empty()) tl.emplace_back(std::stoll(f[0]), std::stod(cell(train_col)));
    if (!cell(val_col).empty()) vl.emplace_back(std::stoll(f[0]), std::stod(cell(val_col)));
  }
  std::vector<std::pair<int64_t, double>> smooth;
  const size_t w = std::max<size_t>(1, tl.size() / 100);
  for (size_t i = 0; i < tl.size(); i += w) {
    double s = 0;
    size_t n = 0;
    for (size_t j = i; j < std::min(tl.size(), i + w); ++j) s += tl[j].second, ++n;
    smooth.emplace_back(tl[i].first, s / static_cast<double>(n));
  }
  save_loss_plot(png, {{"train loss", smooth, 31, 119, 180}, {val_name, vl, 214, 39, 40}});
}

}  // namespace mm::train
