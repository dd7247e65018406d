// bench/peers/openblas_sgemm.cpp: the OpenBLAS peer for `mmbench gemm`, built and run by
// bench/compare_cpu.sh (not part of the CMake build, so mm never depends on OpenBLAS):
//   g++ -O2 bench/peers/openblas_sgemm.cpp -lopenblas -o build-gemm/openblas_sgemm
//   OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE \
//     build-gemm/openblas_sgemm --m 1024 --n 1024 --k 1024 --repeat 10
// Times C = A @ B (row-major, no transposes) exactly as mmbench does: warm-up, then the
// median of `repeat` runs with steady_clock. Prints one JSON line in mmbench's format.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  int64_t m = 1024, n = 1024, k = 1024;
  int repeat = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    long v = std::atol(argv[i + 1]);
    if (flag == "--m") m = v;
    else if (flag == "--n") n = v;
    else if (flag == "--k") k = v;
    else if (flag == "--repeat") repeat = static_cast<int>(v);
    else { std::fprintf(stderr, "openblas_sgemm: unknown flag %s\n", argv[i]); return 2; }
  }
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> a(m * k), b(k * n), c(m * n);
  for (auto& x : a) x = dist(rng);
  for (auto& x : b) x = dist(rng);
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.f, a.data(),
                (int)k, b.data(), (int)n, 0.f, c.data(), (int)n);
  };
  // Warm-up: at least two calls and ~0.2 s, so threads are spun up and clocks settled.
  auto w0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2 || std::chrono::steady_clock::now() - w0 < std::chrono::milliseconds(200); ++i) run();
  std::vector<double> ms;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  double med = ms[ms.size() / 2];
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  std::printf("{\"kernel\":\"gemm\",\"impl\":\"openblas\",\"coretype\":\"%s\",\"device\":\"cpu\",\"m\":%ld,"
              "\"n\":%ld,\"k\":%ld,\"threads\":%d,\"ms\":%.4f,\"gflops\":%.2f}\n",
              core ? core : "", (long)m, (long)n, (long)k, openblas_get_num_threads(), med,
              2.0 * m * n * k / (med * 1e6));
  return 0;
}
