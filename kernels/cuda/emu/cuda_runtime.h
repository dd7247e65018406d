// kernels/cuda/emu/cuda_runtime.h: the CUDA emulator's stand-in for <cuda_runtime.h>.
//
// Why it exists: the machines mm is written on have no GPU, and a device is lent to few
// sessions. Built with -DMM_CUDA_EMULATE=ON, mm compiles its CUDA kernels (kernels/cuda/*.cu)
// as ordinary C++ against this header instead of the CUDA toolkit, and runs them on the CPU
// with CUDA's execution model: a grid of blocks, each block's threads as fibers that meet at
// __syncthreads, warps that exchange values at __shfl_*_sync. So the kernels' index
// arithmetic, bounds, tails, launch configurations, shared-memory use, barriers and the
// cuBLAS argument conventions are checked by the same tests (tests/cuda/) that run on a real
// device, on every CI run, under AddressSanitizer (scripts/test.sh builds the sanitized
// configuration this way): an out-of-bounds read in a kernel is an ASan report here.
//
// What it checks beyond running the code (each an mm::Error naming the kernel):
//   - launch configurations CUDA refuses (empty grids, > 1024 threads, grid.y > 65535, more
//     dynamic shared memory than an H200 block can have, or over 48 KiB without
//     cudaFuncSetAttribute for a launch that names one function: kernel<T><<<...>>>)
//     -> cudaGetLastError, as on a device;
//   - WMMA loads and stores from pointers that are not 32-byte aligned, or with a leading
//     dimension that is not a multiple of 16 bytes (a fault that stops the launch). Dynamic
//     shared memory starts 128-byte aligned here; on a device it follows the kernel's static
//     __shared__ arrays, aligned only as declared;
//   - static plus dynamic shared memory over 48 KiB (or over the static bytes plus what
//     cudaFuncSetAttribute allowed), for launches that name one function: found once the
//     first block has declared its static arrays, which a GPU knows before it launches;
//   - pointer arguments of a kernel that are not device memory (a host pointer passed to a
//     kernel works here but faults on a GPU);
//   - barriers that cannot complete: a warp shuffle whose mask names lanes that exited or wait
//     at __syncthreads ("deadlock"). Threads that have exited do not hold up a __syncthreads
//     (as on the hardware), so an early `return` before a barrier is accepted;
//   - a shuffle reading a lane that is not taking part (exited, or outside its mask).
// Threads run one at a time, each until its next barrier; the order alternates between
// ascending and descending thread index at every barrier, so a missing barrier between a
// shared-memory write and another thread's read shows up as a wrong result one way or the
// other. Shared memory, dynamic and static, is poisoned (NaN) in every block before its first
// use; device allocations are poisoned too.
//
//   - mma.sync and ldmatrix (kernels/cuda/ptx.cuh) run with the register layouts PTX
//     documents, computed once per warp from all 32 lanes' registers: a kernel that puts an
//     element in the wrong lane or register gets a wrong result here as on a GPU. A warp that
//     reaches them without all 32 lanes, and ldmatrix rows that are not 16-byte aligned or
//     outside shared memory, are errors. cp.async and wgmma are asynchronous here too: a copy
//     lands only at the wait that completes its group, and a wgmma reads its operands at the
//     issue, computes at the wait, and faults if shared memory under it changed in between.
//     A warp that reaches one of these warp-wide instructions runs it at once and runs on to
//     its next barrier, ahead of the other warps, so a missing __syncthreads between other
//     warps' writes (or copies) and a tensor-core read of them shows.
//     What the async proxy needs on a GPU (fence.proxy.async between ordinary stores and a
//     wgmma's reads) cannot show here.
// What it cannot check: speed (nothing here says anything about performance), the memory
// model between blocks (blocks run one after another), the hardware's approximate intrinsics
// (__expf is expf here), WMMA's fragment layouts (unspecified by CUDA: a WMMA fragment holds
// its whole tile in every lane here; mma.sync's are emulated as documented), cuDNN (absent: mm's own convolution is used), and anything timing-related.
//
// Reading order: this file, then emu.cpp (the fiber scheduler, the runtime, cuBLAS's GEMMs).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#define MM_CUDA_EMULATED 1

// ---- the kernel language ------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// A block's threads run one after another on one host thread, and blocks one after another,
// so a function-local static is exactly what __shared__ memory is: one per block at a time.
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// Device math: CUDA's global overloads, and its fast intrinsics as the exact functions.
template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}
using std::isfinite;
using std::isinf;
using std::isnan;
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
// One host thread runs every CUDA thread and switches only at barriers: a read-modify-write
// is atomic by construction.
template <typename T>
inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}

// ---- the runtime API subset mm uses ----------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
constexpr unsigned cudaStreamNonBlocking = 1;

struct cudaDeviceProp {
  char name[256];
  int major, minor;
  int multiProcessorCount;
  size_t totalGlobalMem;
  int l2CacheSize;
  size_t sharedMemPerBlock, sharedMemPerBlockOptin;
  int maxThreadsPerBlock, warpSize;
  int clockRate, memoryClockRate, memoryBusWidth;
};

const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
template <typename T>
inline cudaError_t cudaMallocHost(T** p, size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
namespace mm::emu {
// What cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) allowed
// each kernel (by address); 49152 bytes, CUDA's default, for any other.
void set_max_dynamic_shared(const void* kernel, int bytes);
size_t max_dynamic_shared(const void* kernel);
template <typename F>
inline const void* kernel_address(F* f) {
  return reinterpret_cast<const void*>(f);
}
}  // namespace mm::emu
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F* f, cudaFuncAttribute attr, int value) {
  if (value < 0 || value > 232448) return cudaErrorInvalidValue;  // 227 KiB: an H100/H200 block's maximum
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) ::mm::emu::set_max_dynamic_shared(::mm::emu::kernel_address(f), value);
  return cudaSuccess;
}

// ---- the emulator's own interface -------------------------------------------------------------
namespace mm::emu {

// The calling CUDA thread's coordinates (valid only inside a kernel).
struct ThreadCoords {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
extern const ThreadCoords* current;

void syncthreads();
void syncwarp(unsigned mask);
enum class Shuffle { idx, up, down, bfly };
uint64_t shuffle(unsigned mask, uint64_t value, Shuffle kind, int arg, int width);
// A warp-wide instruction (mma.sync, ldmatrix: .sync.aligned): every lane of the warp calls
// warp_collective with its own operands (lane_args); once all 32 have, run computes the
// instruction once from all of them (lanes[l] is lane l's lane_args), as the hardware does
// from the lanes' registers. run may call collective_fault to stop the launch.
struct Collective {
  const char* name;
  void (*run)(void* const* lanes);
};
void warp_collective(const Collective& c, void* lane_args);
void collective_fault(const std::string& what);
// The PTX instructions kernels/cuda/ptx.cuh wraps, with PTX's documented register layouts
// (emu.cpp): mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 with D = C = d,
// and ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 (count = 1, 2, 4).
void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b, bool fp16);
void ldmatrix(uint32_t* r, int count, bool trans, const void* row_address);
// cp.async.cg.shared.global (16 bytes; zero-filled past src_bytes), commit_group and
// wait_group, per thread: a copy lands only at the wait that completes its group (its
// destination reads as NaN until then), so a missing wait or barrier shows.
void cp_async16(void* dst, const void* src, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending);
// wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16 with both operands in shared memory
// (K-major, no swizzle: the descriptors' start, leading and stride byte offsets), commit_group
// and wait_group, per warp (each warp of the warpgroup computes its 16 rows). The operands are
// read at the issue; the product is computed at the wait that completes its group, into the
// accumulators the lanes named at the issue: reading them before the wait gives their old
// values, and shared memory under the operands changing before it is a fault.
void wgmma_bf16(float* d, int n, uint64_t desc_a, uint64_t desc_b, int scale_d);
void wgmma_commit();
void wgmma_wait(int pending);
// __cvta_generic_to_shared: the offset of p in this block's dynamic shared memory (the only
// shared memory the emulator's wgmma descriptors may point into).
uint32_t shared_address(const void* p);
void* dynamic_shared();  // this block's dynamic shared memory (the launch's smem bytes, 128-byte aligned)
// A fault of the calling CUDA thread (a misaligned WMMA pointer, ...): the thread stops, and
// the launch throws mm::Error naming the kernel, block, thread and `what`.
[[noreturn]] void fault(const char* what);  // (a C string: the thread's stack is abandoned, nothing on it is freed)
// Fills a static __shared__ array with 0xFF bytes (NaN) the first time a block reaches its
// declaration (translate.sh adds the call), so that a read before any write shows.
void poison_shared(void* p, size_t bytes);

// Runs body once per CUDA thread of the grid, returning when every block is done. Throws
// mm::Error on a deadlock; a launch configuration CUDA refuses sets the error that
// cudaGetLastError returns, as on a device.
struct Body {
  void (*call)(void*);
  void* state;
};
// kernel_addr: the kernel's address when the launch names one function (launch_known), else
// null; with it, dynamic shared memory over 48 KiB needs cudaFuncSetAttribute first, as on a GPU.
void run_grid(const char* kernel, const char* where, dim3 grid, dim3 block, size_t smem, Body body,
              const void* kernel_addr = nullptr);
// False (and the launch error set) when p is neither null nor inside device memory.
bool check_pointer_argument(const char* kernel, int index, const void* p);

// kernel<<<grid, block, smem, stream>>>(args...) is rewritten at build time (translate.sh) to
//   ::mm::emu::launch("kernel", __FILE__, __LINE__, [](auto... a) { kernel(a...); }, grid,
//                     block, smem, stream)(args...)
// The arguments are copied once, as CUDA copies them into the kernel's parameter space, and
// every thread receives its own copy of them.
template <typename F>
struct Launch {
  const char* kernel;
  const char* file;
  int line;
  F f;
  dim3 grid, block;
  size_t smem;
  const void* kernel_addr;

  template <typename... A>
  void operator()(A&&... a) const {
    int index = 0;
    bool pointers_ok = true;
    (
        [&](const auto& arg) {
          using T = std::decay_t<decltype(arg)>;
          if constexpr (std::is_pointer_v<T>) pointers_ok = pointers_ok && check_pointer_argument(kernel, index, arg);
          ++index;
        }(a),
        ...);
    if (!pointers_ok) return;
    struct State {
      const F* f;
      std::tuple<std::decay_t<A>...> args;
    } state{&f, std::tuple<std::decay_t<A>...>(std::forward<A>(a)...)};
    char where[512];
    std::snprintf(where, sizeof(where), "%s:%d", file, line);
    run_grid(kernel, where, grid, block, smem,
             Body{[](void* s) {
                    State& st = *static_cast<State*>(s);
                    auto copy = st.args;  // a thread may modify its parameters
                    std::apply(*st.f, copy);
                  },
                  &state},
             kernel_addr);
  }
};
template <typename F>
Launch<F> launch(const char* kernel, const char* file, int line, F f, dim3 grid, dim3 block, size_t smem = 0,
                 cudaStream_t = nullptr) {
  return Launch<F>{kernel, file, line, f, grid, block, smem, nullptr};
}
template <typename F>
Launch<F> launch_known(const char* kernel, const char* file, int line, F f, const void* kernel_addr, dim3 grid,
                       dim3 block, size_t smem = 0, cudaStream_t = nullptr) {
  return Launch<F>{kernel, file, line, f, grid, block, smem, kernel_addr};
}

}  // namespace mm::emu

inline size_t __cvta_generic_to_shared(const void* p) { return ::mm::emu::shared_address(p); }

#define threadIdx (::mm::emu::current->thread_idx)
#define blockIdx (::mm::emu::current->block_idx)
#define blockDim (::mm::emu::current->block_dim)
#define gridDim (::mm::emu::current->grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { ::mm::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::mm::emu::syncwarp(mask); }

namespace mm::emu {
template <typename T>
inline T shuffle_as(unsigned mask, T v, Shuffle kind, int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shuffle(mask, bits, kind, arg, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
}  // namespace mm::emu
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return ::mm::emu::shuffle_as(mask, v, ::mm::emu::Shuffle::idx, src_lane, width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::mm::emu::shuffle_as(mask, v, ::mm::emu::Shuffle::up, int(delta), width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::mm::emu::shuffle_as(mask, v, ::mm::emu::Shuffle::down, int(delta), width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::mm::emu::shuffle_as(mask, v, ::mm::emu::Shuffle::bfly, lane_mask, width);
}
