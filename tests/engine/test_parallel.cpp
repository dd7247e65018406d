// tests/engine/test_parallel.cpp: the thread pool: chunking covers the range exactly once,
// exceptions propagate, nested calls run inline, and resizing the pool repeatedly is safe.
// Run: ctest --test-dir build -R test_parallel
#include <doctest/doctest.h>

#include <atomic>
#include <vector>

#include "engine/mm.h"

using namespace mm;

TEST_CASE("parallel_for covers every index once, with any thread count, across resizes") {
  const int original = num_threads();
  for (int threads : {1, 2, 3, 1, 4, 2, 2, 1, 2}) {
    set_num_threads(threads);
    CHECK(num_threads() == threads);
    std::vector<std::atomic<int>> hits(1000);
    parallel_for(0, 1000, 7, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) hits[i]++;
    });
    for (auto& h : hits) CHECK(h.load() == 1);
  }
  set_num_threads(original);
}

TEST_CASE("exceptions from workers reach the caller; nested calls run inline") {
  set_num_threads(2);
  CHECK_THROWS_WITH_AS(parallel_for(0, 100, 1, [](int64_t a, int64_t) {
                         if (a > 0) throw Error("boom from a worker");
                       }),
                       "boom from a worker", Error);
  std::atomic<int> inner{0};
  parallel_for(0, 4, 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) parallel_for(0, 10, 1, [&](int64_t c, int64_t d) { inner += static_cast<int>(d - c); });
  });
  CHECK(inner.load() == 40);
  CHECK_THROWS_AS(set_num_threads(0), Error);
}
