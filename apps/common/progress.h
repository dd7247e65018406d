// apps/common/progress.h: a one-line progress bar on stderr: step, it/s, loss, ETA.
// On a terminal the line is redrawn in place; otherwise a line is printed every 10%.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace mm::apps {

class Progress {
 public:
  explicit Progress(int64_t total) : total_(total), start_(std::chrono::steady_clock::now()), tty_(isatty(2)) {}

  void update(int64_t done, const std::string& extra) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = done > 0 && s > 0 ? done / s : 0;
    const double eta = rate > 0 ? (total_ - done) / rate : 0;
    const int width = 24, filled = static_cast<int>(width * done / std::max<int64_t>(total_, 1));
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    char line[512];
    std::snprintf(line, sizeof(line), "%lld/%lld [%s] %.2f it/s %s ETA %d:%02d", static_cast<long long>(done),
                  static_cast<long long>(total_), bar.c_str(), rate, extra.c_str(), static_cast<int>(eta) / 60,
                  static_cast<int>(eta) % 60);
    if (tty_) {
      std::fprintf(stderr, "\r%s\033[K", line);
      if (done == total_) std::fprintf(stderr, "\n");
    } else if (done == total_ || done == 1 || done * 10 / std::max<int64_t>(total_, 1) != last_decile_) {
      last_decile_ = done * 10 / std::max<int64_t>(total_, 1);
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }
  void finish_line() {
    if (tty_) std::fprintf(stderr, "\n");
  }

 private:
  int64_t total_;
  std::chrono::steady_clock::time_point start_;
  bool tty_;
  int64_t last_decile_ = -1;
};

}  // namespace mm::apps
