// engine/parallel.cpp: a small persistent thread pool behind parallel_for / parallel_run.
// Workers sleep on a condition variable between jobs; a job is "run fn(t, n) for t < n",
// with thread 0 being the caller. Nested calls run inline, so kernels may call each other.
#include "engine/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/error.h"

namespace mm {
namespace {

int default_threads() {
  if (const char* env = std::getenv("MM_NUM_THREADS")) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= 1024) return static_cast<int>(n);
    throw Error(str_cat("MM_NUM_THREADS must be an integer in [1, 1024], got '", env, "'"));
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

thread_local bool in_parallel_region = false;

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) { start_workers(); }
  ~Pool() { stop_workers(); }

  int threads() const { return threads_; }

  void resize(int threads) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    stop_workers();
    threads_ = threads;
    start_workers();
  }

  void run(int n, const std::function<void(int, int)>& fn) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);  // one job at a time
    n = std::min(n, threads_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      job_threads_ = n;
      pending_ = n - 1;
      error_ = nullptr;
      ++generation_;
    }
    cv_work_.notify_all();
    run_one(0, n, fn);
    std::unique_lock<std::mutex> lock(mutex_);
    cv_done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_one(int t, int n, const std::function<void(int, int)>& fn) {
    in_parallel_region = true;
    try {
      fn(t, n);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    in_parallel_region = false;
  }

  // `seen` starts at the generation current when the worker was created, so a worker
  // started by resize() never picks up a job that finished before it existed.
  void worker(int index, uint64_t seen) {
    for (;;) {
      const std::function<void(int, int)>* fn;
      int n;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_work_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        fn = job_;
        n = job_threads_;
      }
      if (index < n) {
        run_one(index, n, *fn);
        std::lock_guard<std::mutex> lock(mutex_);
        if (--pending_ == 0) cv_done_.notify_one();
      }
    }
  }

  void start_workers() {
    stop_ = false;
    const uint64_t generation = generation_;
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i, generation] { worker(i, generation); });
  }
  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_work_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_work_, cv_done_;
  const std::function<void(int, int)>* job_ = nullptr;
  int job_threads_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().threads(); }

void set_num_threads(int n) {
  MM_CHECK(n >= 1 && n <= 1024, "set_num_threads: expected 1..1024, got ", n);
  if (n != pool().threads()) pool().resize(n);
}

void parallel_run(int threads, const std::function<void(int, int)>& fn) {
  if (threads <= 1 || in_parallel_region || pool().threads() == 1) {
    fn(0, 1);
    return;
  }
  pool().run(threads, fn);
}

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t n = end - begin;
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, num_threads());
  if (chunks <= 1 || in_parallel_region) {
    fn(begin, end);
    return;
  }
  parallel_run(static_cast<int>(chunks), [&](int t, int nt) {
    const int64_t lo = begin + n * t / nt;
    const int64_t hi = begin + n * (t + 1) / nt;
    if (lo < hi) fn(lo, hi);
  });
}

}  // namespace mm
