// engine/storage.cpp: Storage allocation (with the CPU block cache) and wrapping of foreign
// memory such as memory-mapped weight files. See Storage in engine/tensor.h.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

#include "engine/cuda_ops.h"
#include "engine/tensor.h"

namespace mm {

namespace {

// A cache of large CPU blocks. Training and generation loops allocate the same activation
// sizes every step; glibc serves blocks this large with fresh mmap pages each time, and the
// page faults cost as much as the arithmetic of a small conv. Freed blocks of >= 256 KiB go
// back into size classes (1/16 of a power of two, so at most 6% waste) and are reused.
// Disabled under AddressSanitizer, which must see every free to catch use-after-free.
class BlockCache {
 public:
  static constexpr size_t kMinCached = size_t{256} << 10;

  static size_t size_class(size_t n) {
    if (n < kMinCached) return (n + 63) / 64 * 64;
    size_t p = size_t{1} << (63 - __builtin_clzll(n));  // largest power of two <= n
    const size_t step = p / 16;
    return (n + step - 1) / step * step;
  }

  void* take(size_t cls) {
    if (cls >= kMinCached && enabled()) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(cls);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_bytes_ -= cls;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, cls);
    if (p == nullptr) {  // release the cache and try once more
      trim();
      p = std::aligned_alloc(64, cls);
    }
    return p;
  }

  void give(void* p, size_t cls) {
    if (cls >= kMinCached && enabled()) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + cls <= limit_) {
        free_.emplace(cls, p);
        cached_bytes_ += cls;
        return;
      }
    }
    std::free(p);
  }

  void trim() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [cls, p] : free_) std::free(p);
    free_.clear();
    cached_bytes_ = 0;
  }

 private:
  static bool enabled() {
#if defined(__SANITIZE_ADDRESS__)
    return false;
#else
    return true;
#endif
  }
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_bytes_ = 0;
  size_t limit_ = size_t{2} << 30;  // keep at most 2 GiB of free blocks
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();  // never destroyed: storages may die after main
  return *cache;
}

}  // namespace

void release_cached_memory() { block_cache().trim(); }

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  auto s = std::make_shared<Storage>();
  if (device == Device::cuda) {  // the CUDA caching allocator (kernels/cuda/runtime.h)
    void* p = cuda_ops::allocate(std::max<size_t>(nbytes, 1));
    s->data = p;
    s->nbytes = nbytes;
    s->device = device;
    s->owner = std::shared_ptr<void>(p, [](void* q) { cuda_ops::deallocate(q); });
    return s;
  }
  const size_t cls = BlockCache::size_class(std::max<size_t>(nbytes, 1));
  void* p = block_cache().take(cls);
  MM_CHECK(p != nullptr, "out of memory allocating ", nbytes, " bytes");
  s->data = p;
  s->nbytes = nbytes;
  s->device = device;
  s->owner = std::shared_ptr<void>(p, [cls](void* q) { block_cache().give(q, cls); });
  return s;
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t nbytes, std::shared_ptr<void> owner) {
  auto s = std::make_shared<Storage>();
  s->data = data;
  s->nbytes = nbytes;
  s->owner = std::move(owner);
  return s;
}

}  // namespace mm
