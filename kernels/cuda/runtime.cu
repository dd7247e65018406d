// kernels/cuda/runtime.cu: see runtime.h.
#include "kernels/cuda/runtime.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

namespace mm::cuda {

void fail(const char* call, const char* op, const char* file, int line, const std::string& why) {
  throw Error(str_cat("[cuda] ", op, ": ", call, " failed at ", file, ":", line, ": ", why));
}

const char* cublas_status_name(int status) {
  switch (static_cast<cublasStatus_t>(status)) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver" error
      return 0;
    }
    return n;
  }();
  return count;
}

namespace {
const cudaDeviceProp& props() {
  static const cudaDeviceProp p = [] {
    MM_CHECK(device_count() > 0, "[cuda] no CUDA device is present (cudaGetDeviceCount found none)");
    cudaDeviceProp d{};
    int dev = 0;
    MM_CUDA_CHECK(cudaGetDevice(&dev), "device properties");
    MM_CUDA_CHECK(cudaGetDeviceProperties(&d, dev), "device properties");
    return d;
  }();
  return p;
}
}  // namespace

std::string device_description() {
  const cudaDeviceProp& p = props();
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%.256s (sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MiB)", p.name, p.major, p.minor,
                p.multiProcessorCount, p.totalGlobalMem / double(1 << 30), p.l2CacheSize / double(1 << 20));
  return buf;
}
int sm_count() { return props().multiProcessorCount; }
int compute_capability() { return props().major * 10 + props().minor; }

cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t st = nullptr;
    MM_CHECK(device_count() > 0, "[cuda] no CUDA device is present (cudaGetDeviceCount found none)");
    MM_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
    return st;
  }();
  return s;
}

void synchronize(const char* op) { MM_CUDA_CHECK(cudaStreamSynchronize(stream()), op); }

// ---- the caching allocator ------------------------------------------------------------------
namespace {

constexpr size_t kSmall = size_t(1) << 20;  // requests below 1 MiB round to 512 bytes
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t(2) << 20;

size_t round_size(size_t bytes) {
  const size_t r = bytes < kSmall ? kSmallRound : kLargeRound;
  return std::max<size_t>(r, (bytes + r - 1) / r * r);
}

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;      // size -> block
  std::unordered_map<void*, size_t> live;        // block -> size
  MemoryStats stats;

  void release_free() {
    for (auto& [size, p] : free_blocks) {
      cudaFree(p);
      stats.cached_bytes -= size;
    }
    free_blocks.clear();
  }
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: blocks may be freed during static destruction
  return *p;
}

}  // namespace

// MM_CUDA_NO_POOL=1: exact sizes straight from cudaMalloc/cudaFree, so that compute-sanitizer's
// memcheck sees an overrun of even one byte (the pool's rounding would hide it).
namespace {
bool no_pool() {
  static const bool v = [] {
    const char* s = std::getenv("MM_CUDA_NO_POOL");
    return s && *s && std::strcmp(s, "0") != 0;
  }();
  return v;
}
}  // namespace
bool pool_enabled() { return !no_pool(); }

void* allocate(size_t bytes, const char* op) {
  const size_t size = no_pool() ? std::max<size_t>(bytes, 1) : round_size(bytes);
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  ++P.stats.requests;
  void* p = nullptr;
  auto it = P.free_blocks.lower_bound(size);
  const size_t slack = size < kSmall ? size : kLargeRound;  // how much larger a pooled block may be
  if (!no_pool() && it != P.free_blocks.end() && it->first <= size + slack) {
    p = it->second;
    const size_t got = it->first;
    P.free_blocks.erase(it);
    P.stats.cached_bytes -= got;
    P.live[p] = got;
    P.stats.in_use_bytes += got;
  } else {
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      // pooled blocks may still be read or written by queued work on the stream: let it finish
      // before handing them back (cudaFree would usually wait anyway; this does not rely on it)
      cudaStreamSynchronize(stream());
      P.release_free();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw Error(str_cat("[cuda] ", op, ": cannot allocate ", size, " bytes on the device (", cudaGetErrorString(e),
                          "); in use ", P.stats.in_use_bytes, " bytes, cached ", P.stats.cached_bytes));
    }
    ++P.stats.device_allocations;
    P.live[p] = size;
    P.stats.in_use_bytes += size;
  }
  P.stats.peak_bytes = std::max(P.stats.peak_bytes, P.stats.in_use_bytes);
  return p;
}

void deallocate(void* p) {
  if (!p) return;
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  auto it = P.live.find(p);
  if (it == P.live.end()) return;  // not ours: never hand a foreign pointer to the pool
  P.stats.in_use_bytes -= it->second;
  if (no_pool()) {
    P.live.erase(it);
    cudaStreamSynchronize(stream());  // work queued on the block finishes before it goes back
    cudaFree(p);
    return;
  }
  P.stats.cached_bytes += it->second;
  P.free_blocks.emplace(it->second, p);
  P.live.erase(it);
}

MemoryStats memory_stats() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  return P.stats;
}

void reset_peak() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  P.stats.peak_bytes = P.stats.in_use_bytes;
}

void empty_cache() {
  synchronize("empty_cache");
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  P.release_free();
}

// ---- transfers through a pinned staging buffer --------------------------------------------
namespace {
struct Staging {
  std::mutex mu;
  void* host = nullptr;
  size_t bytes = 0;
  void* get(size_t want) {
    if (want > bytes) {
      if (host) cudaFreeHost(host);
      host = nullptr;
      MM_CUDA_CHECK(cudaMallocHost(&host, want), "pinned staging buffer");
      bytes = want;
    }
    return host;
  }
};
Staging& staging() {
  static Staging* s = new Staging;
  return *s;
}
constexpr size_t kChunk = size_t(32) << 20;  // 32 MiB per staged copy
}  // namespace

void copy_to_device(void* dst, const void* src, size_t bytes, const char* op) {
  Staging& S = staging();
  std::lock_guard<std::mutex> lock(S.mu);
  char* buf = static_cast<char*>(S.get(std::min(bytes, kChunk) + 1));
  for (size_t off = 0; off < bytes; off += kChunk) {
    const size_t n = std::min(kChunk, bytes - off);
    std::memcpy(buf, static_cast<const char*>(src) + off, n);
    MM_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, buf, n, cudaMemcpyHostToDevice, stream()), op);
    MM_CUDA_CHECK(cudaStreamSynchronize(stream()), op);  // the buffer is reused next chunk
  }
}

void copy_to_host(void* dst, const void* src, size_t bytes, const char* op) {
  Staging& S = staging();
  std::lock_guard<std::mutex> lock(S.mu);
  char* buf = static_cast<char*>(S.get(std::min(bytes, kChunk) + 1));
  for (size_t off = 0; off < bytes; off += kChunk) {
    const size_t n = std::min(kChunk, bytes - off);
    MM_CUDA_CHECK(cudaMemcpyAsync(buf, static_cast<const char*>(src) + off, n, cudaMemcpyDeviceToHost, stream()), op);
    MM_CUDA_CHECK(cudaStreamSynchronize(stream()), op);
    std::memcpy(static_cast<char*>(dst) + off, buf, n);
  }
}

void fill_bytes(void* dst, int byte, size_t bytes) {
  MM_CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, stream()), "fill_bytes");
}

double time_ms(int repeat, int warmup, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t a, b;
  MM_CUDA_CHECK(cudaEventCreate(&a), "time_ms");
  MM_CUDA_CHECK(cudaEventCreate(&b), "time_ms");
  std::vector<float> ms;
  for (int r = 0; r < repeat; ++r) {
    MM_CUDA_CHECK(cudaEventRecord(a, stream()), "time_ms");
    fn();
    MM_CUDA_CHECK(cudaEventRecord(b, stream()), "time_ms");
    MM_CUDA_CHECK(cudaEventSynchronize(b), "time_ms");
    float t = 0;
    MM_CUDA_CHECK(cudaEventElapsedTime(&t, a, b), "time_ms");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms.empty() ? 0.0 : ms[ms.size() / 2];
}

}  // namespace mm::cuda
