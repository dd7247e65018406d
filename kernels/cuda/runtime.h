// kernels/cuda/runtime.h: the CUDA backend's runtime: the device, the one stream mm's kernels
// run on, a caching allocator, transfers through pinned host memory, and DeviceArray<T>, an
// owning typed buffer. Reading order: first file of kernels/cuda/ (then check.h, kernels.h).
//
//   if (!mm::cuda::available()) ...                  // false without a driver or a device
//   mm::cuda::DeviceArray<float> x(host_vector);     // upload
//   std::vector<float> back = x.download();
//   mm::cuda::memory_stats().peak_bytes
//
// The allocator. cudaMalloc and cudaFree synchronise the device and cost tens of
// microseconds, so a freed block goes back to a pool, keyed by its size, and the next request
// that fits takes it: after the first step of a loop, no op calls cudaMalloc. Sizes are
// rounded up to 512 bytes (requests under 1 MiB) or to 2 MiB (larger ones), so that similar
// requests share blocks; a request takes a pooled block at most twice its size (small) or
// 2 MiB larger (large). All of mm's work runs on one stream, in order, so a block freed by one
// op can be handed to the next op at once: the stream itself orders the old reads before the
// new writes. When cudaMalloc fails, the pool is released to the driver and the request
// retried once; then the error says how much was asked for, in use, and cached.
// MM_CUDA_NO_POOL=1 turns the pool off (exact sizes, cudaMalloc/cudaFree each time): what
// compute-sanitizer runs use, so that no rounding slack hides an overrun.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"

namespace mm::cuda {

// Number of usable CUDA devices: 0 when there is no driver or no device (never throws).
int device_count();
inline bool available() { return device_count() > 0; }
// "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)".
std::string device_description();
int sm_count();
int compute_capability();  // major * 10 + minor, e.g. 90

// The stream every mm kernel is launched on (created on first use, non-blocking).
cudaStream_t stream();
void synchronize(const char* op = "synchronize");

struct MemoryStats {
  size_t in_use_bytes = 0;   // handed out and not yet freed
  size_t peak_bytes = 0;     // the largest in_use_bytes since the start (or reset_peak)
  size_t cached_bytes = 0;   // freed blocks kept in the pool
  size_t device_allocations = 0;  // cudaMalloc calls so far
  size_t requests = 0;            // allocate() calls so far
};
MemoryStats memory_stats();
void reset_peak();
void empty_cache();  // returns the pooled blocks to the driver

// False under MM_CUDA_NO_POOL=1: every allocate is a cudaMalloc of the exact size.
bool pool_enabled();
void* allocate(size_t bytes, const char* op = "allocate");
void deallocate(void* p);

// Host <-> device copies, staged through a pinned buffer, on mm's stream; they return when
// the data has arrived.
void copy_to_device(void* dst, const void* src, size_t bytes, const char* op = "copy_to_device");
void copy_to_host(void* dst, const void* src, size_t bytes, const char* op = "copy_to_host");
// Fills a buffer with a byte pattern (tests poison outputs with 0xFF: float NaN).
void fill_bytes(void* dst, int byte, size_t bytes);

// An owning device buffer of n values of T from the caching allocator.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n), p_(static_cast<T*>(allocate(n * sizeof(T) + (n == 0)))) {}
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { reset(); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : n_(o.n_), p_(o.p_) { o.n_ = 0, o.p_ = nullptr; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) reset(), n_ = o.n_, p_ = o.p_, o.n_ = 0, o.p_ = nullptr;
    return *this;
  }

  T* data() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  void upload(const std::vector<T>& host) {
    MM_CHECK(host.size() == n_, "[cuda] upload of ", host.size(), " values into a buffer of ", n_);
    copy_to_device(p_, host.data(), bytes());
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    copy_to_host(host.data(), p_, bytes());
    return host;
  }
  void poison() { fill_bytes(p_, 0xFF, bytes()); }  // NaN for float: unwritten outputs show
  void zero() { fill_bytes(p_, 0, bytes()); }
  void reset() {
    if (p_) deallocate(p_);
    p_ = nullptr, n_ = 0;
  }

 private:
  size_t n_ = 0;
  T* p_ = nullptr;
};

// Times fn on mm's stream with CUDA events: warm-up calls first, then the median of
// `repeat` timed calls, in milliseconds.
double time_ms(int repeat, int warmup, const std::function<void()>& fn);

}  // namespace mm::cuda
