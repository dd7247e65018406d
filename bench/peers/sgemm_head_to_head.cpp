// bench/peers/sgemm_head_to_head.cpp: mm's sgemm and OpenBLAS's cblas_sgemm alternating in
// one process, for a fair ratio on a shared, noisy machine: blocks of 5 calls each, in turn,
// with a 150 ms pause between blocks (OpenBLAS workers spin ~0.1 s after a call and would
// steal mm's cores), R rounds; prints best and median GFLOP/s of each and the ratios.
// Built and run by bench/compare_cpu.sh --head-to-head (links $BUILD_DIR/libmm_engine.a):
//   g++ -O2 -I. bench/peers/sgemm_head_to_head.cpp build/libmm_engine.a -lopenblas -lpthread \
//     -o build/sgemm_head_to_head
//   OPENBLAS_CORETYPE=SkylakeX build/sgemm_head_to_head --size 2048 --threads 2 --rounds 8
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/parallel.h"
#include "kernels/gemm.h"

int main(int argc, char** argv) {
  int64_t n = 1024;
  int threads = 2, rounds = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--size") n = std::atol(argv[i + 1]);
    else if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else if (flag == "--rounds") rounds = std::atoi(argv[i + 1]);
    else { std::fprintf(stderr, "sgemm_head_to_head: unknown flag %s\n", argv[i]); return 2; }
  }
  mm::set_num_threads(threads);
  openblas_set_num_threads(threads);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> a(n * n), b(n * n), c(n * n);
  for (auto& x : a) x = dist(rng);
  for (auto& x : b) x = dist(rng);
  auto run_mm = [&] { mm::kernels::sgemm(n, n, n, 1.f, {a.data(), n, 1}, {b.data(), n, 1}, 0.f, c.data(), n); };
  auto run_ob = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.f, a.data(), (int)n,
                b.data(), (int)n, 0.f, c.data(), (int)n);
  };
  std::vector<double> ms_mm, ms_ob;
  auto block = [&](auto& fn, std::vector<double>& out, bool keep) {
    for (int i = 0; i < 5; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (keep && i > 0) out.push_back(ms);  // the first call of a block re-wakes the threads
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  };
  block(run_mm, ms_mm, false);  // warm-up
  block(run_ob, ms_ob, false);
  for (int r = 0; r < rounds; ++r) {
    block(run_mm, ms_mm, true);
    block(run_ob, ms_ob, true);
  }
  auto gflops = [&](double ms) { return 2.0 * n * n * n / (ms * 1e6); };
  std::sort(ms_mm.begin(), ms_mm.end());
  std::sort(ms_ob.begin(), ms_ob.end());
  const double best_mm = gflops(ms_mm.front()), best_ob = gflops(ms_ob.front());
  const double med_mm = gflops(ms_mm[ms_mm.size() / 2]), med_ob = gflops(ms_ob[ms_ob.size() / 2]);
  std::printf("{\"kernel\":\"gemm\",\"mode\":\"head_to_head\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"threads\":%d,"
              "\"micro_kernel\":\"%s\",\"mm_best_gflops\":%.1f,\"openblas_best_gflops\":%.1f,"
              "\"mm_median_gflops\":%.1f,\"openblas_median_gflops\":%.1f,\"ratio_best\":%.3f,\"ratio_median\":%.3f}\n",
              (long long)n, (long long)n, (long long)n, threads, mm::kernels::sgemm_kernel_name(), best_mm,
              best_ob, med_mm, med_ob, best_mm / best_ob, med_mm / med_ob);
  return 0;
}
