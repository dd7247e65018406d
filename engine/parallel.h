// engine/parallel.h: the engine's thread pool.
// Reading order: after error.h; every CPU kernel splits its work with parallel_for.
//
//   mm::parallel_for(0, rows, /*grain=*/64, [&](int64_t r0, int64_t r1) {
//     for (int64_t r = r0; r < r1; ++r) ...;   // each chunk runs on one thread
//   });
//
// The thread count is MM_NUM_THREADS when set, else the number of cores; set_num_threads
// changes it at run time. Chunk boundaries depend only on (begin, end, grain) and the
// thread count, so kernels that must give identical results for any thread count split
// their work by a fixed size themselves and combine partial results in a fixed order.
#pragma once
#include <cstdint>
#include <functional>

namespace mm {

int num_threads();
void set_num_threads(int n);

// Calls fn(chunk_begin, chunk_end) over [begin, end) in chunks of at least `grain`
// elements, on up to num_threads() threads (the calling thread takes part). Runs inline
// when the range is small or when called from inside another parallel_for.
// An exception thrown by fn is rethrown on the calling thread.
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn);

// Runs fn(thread_index, thread_count) once on each of `threads` threads (capped at num_threads()).
void parallel_run(int threads, const std::function<void(int, int)>& fn);

}  // namespace mm
