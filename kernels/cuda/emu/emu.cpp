// kernels/cuda/emu/emu.cpp: the CUDA emulator (see cuda_runtime.h here): the scheduler that
// runs a block's threads as fibers, the runtime API over host memory, and cuBLAS's GEMMs.
//
// A block: every thread gets a fiber (ucontext) with its own stack; the scheduler resumes each
// ready fiber in turn, and a fiber runs until it finishes or reaches a barrier. When no fiber
// is ready, the scheduler releases what can be released: a warp whose lanes all wait at the
// same warp operation (a shuffle computes its results then), else __syncthreads once every
// live thread waits there. If neither is possible, the block is deadlocked: an error that
// says where the threads are. Blocks of a grid run one after another.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"
#include "engine/error.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define MM_EMU_ASAN 1
#else
#define MM_EMU_ASAN 0
#endif

namespace mm::emu {

const ThreadCoords* current = nullptr;

namespace {

// ---- errors, as the runtime reports them -----------------------------------------------------
cudaError_t g_last_error = cudaSuccess;
cudaError_t g_detail_error = cudaSuccess;  // the error g_last_detail explains (kept after cudaGetLastError)
std::string g_last_detail;

void set_error(cudaError_t e, std::string detail) {
  g_last_error = g_detail_error = e;
  g_last_detail = std::move(detail);
}

// ---- device memory: host allocations, remembered so pointers can be checked ------------------
std::mutex g_mem_mu;
std::map<uintptr_t, size_t>& allocations() {
  static auto* m = new std::map<uintptr_t, size_t>;
  return *m;
}
// Whether [p, p + bytes) lies inside one live device allocation (bytes 0: p may be its end).
bool device_range(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mem_mu);
  auto& m = allocations();
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = m.upper_bound(a);
  if (it == m.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

// ---- fibers ----------------------------------------------------------------------------------
// A context switch. On x86-64 a few instructions that save the callee-saved registers and the
// floating-point control words on the old stack and load them from the new one (glibc's
// swapcontext also saves the signal mask, a system call per switch, which made the
// emulator's runs mostly kernel time); elsewhere ucontext.
// A stack reused after a kernel was abandoned (a deadlock error) may keep ASan's poisoning of
// the frames it held.
void unpoison_stack(char* stack, size_t size) {
#if MM_EMU_ASAN
  __asan_unpoison_memory_region(stack, size);
#else
  (void)stack, (void)size;
#endif
}

#if defined(__x86_64__)
extern "C" void mm_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl mm_emu_switch
  .type mm_emu_switch, @function
mm_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size mm_emu_switch, .-mm_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
struct Context {
  void* sp = nullptr;
};
void fiber_main();
[[noreturn]] void fiber_trampoline() {
  fiber_main();
  __builtin_unreachable();
}
// A fresh context that starts in fiber_main on [stack, stack + size): the frame mm_emu_switch
// pops (control words, six registers, the return address).
void make_context(Context& c, char* stack, size_t size, Context*) {
  unpoison_stack(stack, size);
  auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15);
  auto* p = reinterpret_cast<uint64_t*>(top - 16);  // after `ret`, rsp = top - 8, as after a call
  p[0] = reinterpret_cast<uint64_t>(&fiber_trampoline);
  p[1] = 0;
  for (int r = 1; r <= 6; ++r) p[-r] = 0;  // rbp rbx r12 r13 r14 r15
  p[-7] = 0x1F80u | (uint64_t(0x037Fu) << 32);  // MXCSR and the x87 control word at their defaults
  c.sp = p - 7;
}
inline void switch_context(Context& from, Context& to) { mm_emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};
void fiber_main();
void make_context(Context& c, char* stack, size_t size, Context* link) {
  unpoison_stack(stack, size);
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = &link->uc;
  makecontext(&c.uc, fiber_main, 0);
}
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

enum class State { ready, at_block_barrier, at_warp, done };

struct Fiber {
  Context ctx;
  ThreadCoords coords;
  State state = State::ready;
  int linear = 0;
  // the warp operation this fiber waits at
  bool shuffle = false;
  unsigned mask = 0;
  const Collective* collective = nullptr;  // a warp-wide instruction (mma.sync, ldmatrix), or null
  void* collective_lane = nullptr;         // this lane's operands and results for it
  Shuffle kind = Shuffle::idx;
  int arg = 0, width = 32;
  uint64_t value = 0, result = 0;
  void* fake_stack = nullptr;  // AddressSanitizer's bookkeeping across switches
  // cp.async: this thread's copies not yet committed, and its committed groups, oldest first
  struct AsyncCopy {
    unsigned char* dst;
    unsigned char data[16];
  };
  std::vector<AsyncCopy> copies_open;
  std::vector<std::vector<AsyncCopy>> copy_groups;
};

// wgmma: a warp's issued products not yet committed, and its committed groups, oldest first
struct Wgmma {
  float* d[32];  // each lane's accumulators
  int n;
  uint64_t desc_a, desc_b;
  int scale_d;
  // the operands' bits as the issue read them (this warp's 16 rows of A, n rows of B)
  std::vector<uint16_t> a, b;
};
struct WarpAsync {
  std::vector<Wgmma> open;
  std::vector<std::vector<Wgmma>> groups;
};

#if MM_EMU_ASAN
constexpr size_t kStack = size_t(512) << 10;  // ASan's redzones make frames larger
#else
constexpr size_t kStack = size_t(128) << 10;
#endif

struct Scheduler {
  Context main;
  std::vector<Fiber> fibers;
  char* stacks = nullptr;
  size_t stack_slots = 0, page = 4096;
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<unsigned char, FreeDeleter> smem;  // 128-byte aligned, as a GPU's shared window
  std::string fault;                                 // set by a faulting thread (fault())
  Fiber* running = nullptr;
  Body body{};
  std::vector<WarpAsync> warp_async;                     // per warp of the block (wgmma)
  std::vector<std::pair<const void*, size_t>> poisoned;  // the static __shared__ arrays this block has poisoned
  size_t dynamic_bytes = 0;                             // this launch's dynamic shared memory
  size_t static_bytes = 0;             // and their bytes
  const void* main_bottom = nullptr;
  size_t main_size = 0;

  char* stack(size_t i) const { return stacks + i * (kStack + page) + page; }  // a guard page below each
  void ensure_stacks(size_t n) {
    if (n <= stack_slots) return;
    if (stacks) munmap(stacks, stack_slots * (kStack + page));
    const size_t bytes = n * (kStack + page);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    MM_CHECK(p != MAP_FAILED, "[cuda-emu] cannot map ", bytes, " bytes of fiber stacks");
    stacks = static_cast<char*>(p);
    stack_slots = n;
    for (size_t i = 0; i < n; ++i) mprotect(stack(i) - page, page, PROT_NONE);  // overflow faults
  }
};
Scheduler& sched() {
  static Scheduler* s = [] {
    auto* p = new Scheduler;
    p->page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return p;
  }();
  return *s;
}

void asan_start(void** save, const void* bottom, size_t size) {
#if MM_EMU_ASAN
  __sanitizer_start_switch_fiber(save, bottom, size);
#else
  (void)save, (void)bottom, (void)size;
#endif
}
void asan_finish(void* save, const void** bottom, size_t* size) {
#if MM_EMU_ASAN
  __sanitizer_finish_switch_fiber(save, bottom, size);
#else
  (void)save, (void)bottom, (void)size;
#endif
}

void fiber_main() {
  Scheduler& S = sched();
  asan_finish(nullptr, &S.main_bottom, &S.main_size);
  Fiber* f = S.running;
  S.body.call(S.body.state);
  f->state = State::done;
  asan_start(nullptr, S.main_bottom, S.main_size);  // this fiber's fake stack dies with it
  switch_context(f->ctx, S.main);                   // never resumed
}

void resume(Scheduler& S, Fiber& f) {
  S.running = &f;
  current = &f.coords;
  void* save = nullptr;
  asan_start(&save, S.stack(f.linear), kStack);
  switch_context(S.main, f.ctx);
  asan_finish(save, nullptr, nullptr);
  S.running = nullptr;
  current = nullptr;
}

// The fiber of the CUDA thread calling a barrier or warp operation.
Fiber& calling_fiber(const char* what) {
  Fiber* f = sched().running;
  MM_CHECK(f, "[cuda-emu] ", what, " outside a kernel");
  return *f;
}

// Called on a fiber: wait (state already set) until the scheduler resumes us.
void wait_here() {
  Scheduler& S = sched();
  Fiber* f = S.running;
  asan_start(&f->fake_stack, S.main_bottom, S.main_size);
  switch_context(f->ctx, S.main);
  asan_finish(f->fake_stack, nullptr, nullptr);
}

const char* op_name(const Fiber& f) {
  return f.collective ? f.collective->name : f.shuffle ? "a shuffle" : "__syncwarp";
}

const char* state_name(State s) {
  switch (s) {
    case State::ready: return "running";
    case State::at_block_barrier: return "__syncthreads";
    case State::at_warp: return "a warp operation";
    case State::done: return "exited";
  }
  return "?";
}

struct BlockContext {
  const char* kernel;
  const char* where;
  uint3 block;
};

[[noreturn]] void block_error(const BlockContext& b, const std::string& what) {
  throw Error(str_cat("[cuda-emu] kernel ", b.kernel, " (launched at ", b.where, "), block (", b.block.x, ",",
                      b.block.y, ",", b.block.z, "): ", what));
}

// Releases warp w0 / 32 if its lanes all wait at a warp operation (with collectives_only, at a
// warp-wide instruction); true if it was released.
bool release_warp(Scheduler& S, size_t w0, size_t n, const BlockContext& b, bool collectives_only = false) {
  const int lanes = static_cast<int>(std::min<size_t>(32, n - w0));
  Fiber* lane = &S.fibers[w0];
  unsigned waiting = 0, mask = 0;
  for (int l = 0; l < lanes; ++l)
    if (lane[l].state == State::at_warp) waiting |= 1u << l, mask |= lane[l].mask;
  if (!waiting) return false;
  if (collectives_only && !lane[static_cast<int>(__builtin_ctz(waiting))].collective) return false;
  // CUDA requires the non-exited threads named in the mask to take part: lanes that have
  // exited (or do not exist, past the end of a partial warp) are not waited for; reading
  // from one is the error (below).
  bool ready = true;
  for (int l = 0; l < lanes; ++l)
    if ((mask >> l & 1) && lane[l].state != State::done && lane[l].state != State::at_warp) ready = false;
  if (!ready) return false;  // a lane of the mask is at __syncthreads: the deadlock check decides
  for (int l = 0; l < lanes; ++l) {
    if (!(waiting >> l & 1)) continue;
    const Fiber& first = lane[static_cast<int>(__builtin_ctz(waiting))];
    if (lane[l].shuffle != first.shuffle || lane[l].collective != first.collective)
      block_error(b, str_cat("the lanes of warp ", w0 / 32, " wait at different warp operations (",
                             op_name(first), " and ", op_name(lane[l]), ")"));
    for (int m = 0; m < lanes; ++m)  // the lanes a mask names must name the same lanes
      if ((lane[l].mask >> m & 1) && lane[m].state == State::at_warp && lane[m].mask != lane[l].mask)
        block_error(b, str_cat("threads ", w0 + l, " and ", w0 + m, " meet at a warp operation with different masks (0x",
                               std::hex, lane[l].mask, " and 0x", lane[m].mask, std::dec, ")"));
    if (!(lane[l].mask >> l & 1))
      block_error(b, str_cat("thread ", w0 + l, " calls a warp operation whose mask 0x", std::hex, lane[l].mask,
                             std::dec, " does not include itself"));
  }
  // A warp-wide instruction (.sync.aligned): every lane of the warp executes it together,
  // and computes once, from all 32 lanes' registers.
  if (const Collective* c = lane[static_cast<int>(__builtin_ctz(waiting))].collective) {
    for (int l = 0; l < 32; ++l)
      if (l >= lanes || !(waiting >> l & 1))
        block_error(b, str_cat("warp ", w0 / 32, " executes ", c->name, " without lane ", l, " (",
                               l >= lanes ? "past the end of the block" : "it has exited",
                               "): .sync.aligned instructions need all 32 lanes"));
    void* args[32];
    for (int l = 0; l < 32; ++l) args[l] = lane[l].collective_lane;
    c->run(args);
    if (!S.fault.empty()) {
      const std::string what = std::move(S.fault);
      S.fault.clear();
      block_error(b, str_cat("warp ", w0 / 32, ": ", what));
    }
  }
  for (int l = 0; l < lanes; ++l) {
    Fiber& f = lane[l];
    if (!(waiting >> l & 1)) continue;
    if (f.shuffle) {
      const int width = f.width;
      MM_CHECK(width > 0 && width <= 32 && (width & (width - 1)) == 0, "[cuda-emu] kernel ", b.kernel,
               ": shuffle width ", width, " is not a power of two up to 32");
      const int base = l & ~(width - 1);
      int src = l;
      switch (f.kind) {
        case Shuffle::idx: src = base + (f.arg & (width - 1)); break;
        case Shuffle::up: src = l - f.arg >= base ? l - f.arg : l; break;
        case Shuffle::down: src = l + f.arg < base + width ? l + f.arg : l; break;
        case Shuffle::bfly: src = (l ^ f.arg) < base + width ? (l ^ f.arg) : l; break;
      }
      if (src >= lanes || !(waiting >> src & 1) || !(f.mask >> src & 1))
        block_error(b, str_cat("thread ", w0 + l, " shuffles from lane ", src, ", which is not taking part (",
                               src >= lanes ? "past the end of the block" :
                               lane[src].state == State::done ? "it has exited" : "not in the mask or elsewhere",
                               "): the value is undefined on a GPU"));
      f.result = lane[src].value;
    }
    f.state = State::ready;
  }
  return true;
}

// Releases the warps whose lanes all wait at a warp operation; true if any was released.
bool release_warps(Scheduler& S, size_t n, const BlockContext& b) {
  bool released = false;
  for (size_t w0 = 0; w0 < n; w0 += 32) released = release_warp(S, w0, n, b) || released;
  return released;
}

// After f ran: if its warp waits, whole, at a warp-wide instruction (mma.sync, ldmatrix,
// wgmma), the instruction runs at once and the warp's lanes run on (in order) until they wait
// at something else. So a warp runs ahead of the others to the next barrier (a legal schedule
// on a GPU), and a missing __syncthreads between what other warps write (or copy with
// cp.async) and this warp's tensor-core read of it shows as a wrong result. (Shuffles are
// still released once a pass has run every thread, so that lanes meeting a shuffle with
// different masks are seen together.)
void run_ahead(Scheduler& S, const Fiber& f, size_t n, const BlockContext& b) {
  const size_t w0 = size_t(f.linear) / 32 * 32, lanes = std::min<size_t>(32, n - w0);
  while (S.fault.empty() && release_warp(S, w0, n, b, /*collectives_only=*/true))
    for (size_t l = 0; l < lanes; ++l)
      if (S.fibers[w0 + l].state == State::ready) resume(S, S.fibers[w0 + l]);
}

void run_block(Scheduler& S, size_t n, const BlockContext& b, const dim3& block, const dim3& grid, size_t smem) {
  S.ensure_stacks(n);
  S.fibers.resize(n);
  for (size_t i = 0; i < n; ++i) {
    Fiber& f = S.fibers[i];
    f.state = State::ready;
    f.linear = static_cast<int>(i);
    f.coords.thread_idx = {unsigned(i % block.x), unsigned(i / block.x % block.y), unsigned(i / (block.x * block.y))};
    f.coords.block_idx = b.block;
    f.coords.block_dim = block;
    f.coords.grid_dim = grid;
    f.fake_stack = nullptr;
    f.copies_open.clear();
    f.copy_groups.clear();
    make_context(f.ctx, S.stack(i), kStack, &S.main);
  }
  if (smem) std::memset(S.smem.get(), 0xFF, smem);  // NaN: a read before any write shows
  S.dynamic_bytes = smem;
  S.warp_async.assign((n + 31) / 32, WarpAsync{});
  S.poisoned.clear();                                // and the static __shared__ arrays, at first use
  S.static_bytes = 0;
  bool ascending = true;
  for (;;) {
    for (size_t k = 0; k < n; ++k) {
      Fiber& f = S.fibers[ascending ? k : n - 1 - k];
      if (f.state == State::ready) {
        resume(S, f);
        if (f.state == State::at_warp && f.collective) run_ahead(S, f, n, b);
      }
    }
    if (!S.fault.empty()) {
      const std::string what = std::move(S.fault);
      S.fault.clear();
      block_error(b, what);
    }
    size_t done = 0, at_barrier = 0;
    for (const Fiber& f : S.fibers) done += f.state == State::done, at_barrier += f.state == State::at_block_barrier;
    if (done == n) return;
    if (release_warps(S, n, b)) continue;
    if (at_barrier + done == n) {
      for (Fiber& f : S.fibers)
        if (f.state == State::at_block_barrier) f.state = State::ready;
      ascending = !ascending;
      continue;
    }
    std::string where;
    size_t shown = 0;
    for (const Fiber& f : S.fibers) {
      if (f.state == State::done || shown == 8) continue;
      where += str_cat(shown++ ? ", " : "", "thread ", f.linear, " at ", state_name(f.state));
    }
    block_error(b, str_cat("deadlock: ", at_barrier, " threads wait at __syncthreads, ", n - done - at_barrier,
                           " at a warp operation, ", done, " have exited (", where,
                           "): a barrier inside a branch that not every thread takes?"));
  }
}

}  // namespace

void syncthreads() {
  calling_fiber("__syncthreads").state = State::at_block_barrier;
  wait_here();
}

void syncwarp(unsigned mask) {
  Fiber& f = calling_fiber("__syncwarp");
  f.state = State::at_warp, f.shuffle = false, f.mask = mask, f.collective = nullptr;
  wait_here();
}

void warp_collective(const Collective& c, void* lane_args) {
  Fiber& f = calling_fiber(c.name);
  f.state = State::at_warp, f.shuffle = false, f.mask = 0xffffffffu, f.collective = &c;
  f.collective_lane = lane_args;
  wait_here();
  f.collective = nullptr;
}

void collective_fault(const std::string& what) {
  Scheduler& S = sched();
  if (S.fault.empty()) S.fault = what;
}

// ---- the tensor-core instructions, with the register layouts PTX documents -----------------
// (PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type" and "ldmatrix").
// In a warp, lane L has groupID g = L / 4 and threadID_in_group t = L % 4. A 32-bit register
// holds two 16-bit elements, the lower-indexed one in its low half.
//   A (16 x 16, row):  a[i] holds A[g + 8·(i % 2)][2t + 8·(i / 2) + h], h = 0 (low), 1 (high)
//   B (16 x 8, col):   b[i] holds B[2t + 8·i + h][g]
//   C, D (16 x 8 f32): d[i] is D[g + 8·(i / 2)][2t + i % 2]
//   ldmatrix .x4:      lanes 8j..8j+7 give the row addresses of 8 x 8 matrix j (16-byte
//                      aligned rows of 8 elements); r[j] of lane L holds row L / 4, columns
//                      2·(L % 4) + h of matrix j; with .trans, row 2·(L % 4) + h, column L / 4.
namespace {

struct MmaLane {
  float* d;
  const uint32_t* a;
  const uint32_t* b;
};

template <bool FP16>
float element(uint32_t reg, int h) {
  const unsigned short bits = static_cast<unsigned short>(reg >> (16 * h));
  if constexpr (FP16) {
    __half x;
    x.__x = bits;
    return __half2float(x);
  } else {
    __nv_bfloat16 x;
    x.__x = bits;
    return __bfloat162float(x);
  }
}

template <bool FP16>
void mma_run(void* const* lanes) {
  float A[16][16], B[16][8], D[16][8];
  for (int L = 0; L < 32; ++L) {
    const MmaLane& x = *static_cast<const MmaLane*>(lanes[L]);
    const int g = L / 4, t = L % 4;
    for (int i = 0; i < 4; ++i)
      for (int h = 0; h < 2; ++h) A[g + 8 * (i % 2)][2 * t + 8 * (i / 2) + h] = element<FP16>(x.a[i], h);
    for (int i = 0; i < 2; ++i)
      for (int h = 0; h < 2; ++h) B[2 * t + 8 * i + h][g] = element<FP16>(x.b[i], h);
    for (int i = 0; i < 4; ++i) D[g + 8 * (i / 2)][2 * t + i % 2] = x.d[i];
  }
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 8; ++c) {
      float s = D[r][c];  // products of 16-bit values are exact in float32
      for (int k = 0; k < 16; ++k) s += A[r][k] * B[k][c];
      D[r][c] = s;
    }
  for (int L = 0; L < 32; ++L) {
    const MmaLane& x = *static_cast<const MmaLane*>(lanes[L]);
    const int g = L / 4, t = L % 4;
    for (int i = 0; i < 4; ++i) x.d[i] = D[g + 8 * (i / 2)][2 * t + i % 2];
  }
}
const Collective kMmaBf16{"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", mma_run<false>};
const Collective kMmaF16{"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", mma_run<true>};

// Whether [p, p + bytes) lies in this block's shared memory: the dynamic window or one static
// __shared__ array (declared, so poisoned, before use).
bool in_shared(const void* p, size_t bytes) {
  const Scheduler& S = sched();
  auto inside = [&](const void* base, size_t n) {
    const auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(base);
    return a >= b && a + bytes <= b + n;
  };
  if (S.dynamic_bytes && inside(S.smem.get(), S.dynamic_bytes)) return true;
  for (const auto& q : S.poisoned)
    if (inside(q.first, q.second)) return true;
  return false;
}

struct LdmatrixLane {
  uint32_t* r;
  const unsigned char* row;
};

template <int N, bool T>
void ldmatrix_run(void* const* lanes) {
  const char* name = T ? "ldmatrix .trans" : "ldmatrix";
  const unsigned char* rows[32];
  for (int L = 0; L < 8 * N; ++L) {
    rows[L] = static_cast<const LdmatrixLane*>(lanes[L])->row;
    if (reinterpret_cast<uintptr_t>(rows[L]) % 16 != 0)
      return collective_fault(str_cat(name, ": lane ", L, "'s row address ", static_cast<const void*>(rows[L]),
                                      " is not 16-byte aligned"));
    if (!in_shared(rows[L], 16))
      return collective_fault(str_cat(name, ": lane ", L, "'s row address ", static_cast<const void*>(rows[L]),
                                      device_range(rows[L], 1)
                                          ? " is global (device) memory; ldmatrix reads shared memory"
                                          : " does not have 16 bytes of this block's shared memory behind it"));
  }
  auto at = [&](int matrix, int row, int col) {
    unsigned short v;
    std::memcpy(&v, rows[8 * matrix + row] + 2 * col, 2);
    return uint32_t(v);
  };
  for (int L = 0; L < 32; ++L) {
    const LdmatrixLane& x = *static_cast<const LdmatrixLane*>(lanes[L]);
    for (int j = 0; j < N; ++j) {
      const int a = L / 4, b = 2 * (L % 4);
      x.r[j] = T ? at(j, b, a) | at(j, b + 1, a) << 16 : at(j, a, b) | at(j, a, b + 1) << 16;
    }
  }
}
const Collective kLdmatrix[2][3] = {
    {{"ldmatrix.x1", ldmatrix_run<1, false>}, {"ldmatrix.x2", ldmatrix_run<2, false>},
     {"ldmatrix.x4", ldmatrix_run<4, false>}},
    {{"ldmatrix.x1.trans", ldmatrix_run<1, true>}, {"ldmatrix.x2.trans", ldmatrix_run<2, true>},
     {"ldmatrix.x4.trans", ldmatrix_run<4, true>}}};

}  // namespace

void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b, bool fp16) {
  MmaLane lane{d, a, b};
  warp_collective(fp16 ? kMmaF16 : kMmaBf16, &lane);
}

void ldmatrix(uint32_t* r, int count, bool trans, const void* row_address) {
  if (count != 1 && count != 2 && count != 4) fault("ldmatrix: the count is not .x1, .x2 or .x4");
  LdmatrixLane lane{r, static_cast<const unsigned char*>(row_address)};
  warp_collective(kLdmatrix[trans][count == 4 ? 2 : count - 1], &lane);
}

// ---- asynchronous copies and products (cp.async, wgmma) -------------------------------------
void cp_async16(void* dst, const void* src, int src_bytes) {
  Fiber& f = calling_fiber("cp.async");
  char what[200];
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0) {
    std::snprintf(what, sizeof what, "cp.async: addresses %p (shared) and %p (global) must be 16-byte aligned", dst, src);
    fault(what);
  }
  if (src_bytes < 0 || src_bytes > 16) fault("cp.async: the source size is not 0..16 bytes");
  if (!in_shared(dst, 16)) {
    std::snprintf(what, sizeof what, "cp.async: destination %p is not 16 bytes of this block's shared memory", dst);
    fault(what);
  }
  if (src_bytes > 0 && !device_range(src, static_cast<size_t>(src_bytes))) {
    std::snprintf(what, sizeof what, "cp.async: source %p (%d bytes) is not device memory", src, src_bytes);
    fault(what);
  }
  Fiber::AsyncCopy c{static_cast<unsigned char*>(dst), {}};
  if (src_bytes > 0) std::memcpy(c.data, src, static_cast<size_t>(src_bytes));
  std::memset(c.data + src_bytes, 0, static_cast<size_t>(16 - src_bytes));
  std::memset(dst, 0xFF, 16);  // NaN until the copy lands
  f.copies_open.push_back(c);
}

void cp_async_commit() {
  Fiber& f = calling_fiber("cp.async.commit_group");
  f.copy_groups.push_back(std::move(f.copies_open));
  f.copies_open.clear();
}

void cp_async_wait(int pending) {
  Fiber& f = calling_fiber("cp.async.wait_group");
  size_t done = 0;
  while (f.copy_groups.size() - done > static_cast<size_t>(std::max(pending, 0))) {
    for (const Fiber::AsyncCopy& c : f.copy_groups[done]) std::memcpy(c.dst, c.data, 16);
    ++done;
  }
  f.copy_groups.erase(f.copy_groups.begin(), f.copy_groups.begin() + static_cast<std::ptrdiff_t>(done));
}

uint32_t shared_address(const void* p) {
  const Scheduler& S = sched();
  const auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(S.smem.get());
  if (!S.dynamic_bytes || a < b || a >= b + S.dynamic_bytes)
    fault("__cvta_generic_to_shared: the emulator maps only dynamic shared memory into the shared window");
  return static_cast<uint32_t>(a - b);
}

namespace {

int current_warp() {
  const Fiber* f = sched().running;
  return f->linear / 32;
}

// One K-major, unswizzled operand of a wgmma (rows x 16 of 16-bit elements), as its descriptor
// says: element (row, k) at start + (row / 8)·SBO + (k / 8)·LBO + (row % 8)·16 + (k % 8)·2.
struct Operand16 {
  const unsigned char* start;
  size_t lbo, sbo;
  uint16_t at(int row, int k) const {
    uint16_t x;
    std::memcpy(&x, start + size_t(row / 8) * sbo + size_t(k / 8) * lbo + (row % 8) * 16 + (k % 8) * 2, 2);
    return x;
  }
};
float bf16_bits(uint16_t bits) {
  __nv_bfloat16 x;
  x.__x = bits;
  return __bfloat162float(x);
}
bool decode(uint64_t desc, int rows, Operand16& out, std::string& error) {
  const Scheduler& S = sched();
  const size_t start = size_t(desc & 0x3FFF) << 4, lbo = size_t(desc >> 16 & 0x3FFF) << 4,
               sbo = size_t(desc >> 32 & 0x3FFF) << 4;
  const int base_offset = int(desc >> 49 & 7), swizzle = int(desc >> 62);
  if (swizzle != 0 || base_offset != 0) {
    error = str_cat("descriptor 0x", std::hex, desc, std::dec, ": swizzle mode ", swizzle, ", base offset ",
                    base_offset, " (the emulator implements the unswizzled layout only)");
    return false;
  }
  // the last byte the operand reaches
  const size_t end = start + size_t((rows - 1) / 8) * sbo + lbo + 7 * 16 + 16;
  if (end > S.dynamic_bytes) {
    error = str_cat("descriptor 0x", std::hex, desc, std::dec, " (start ", start, ", LBO ", lbo, ", SBO ", sbo,
                    ") reaches byte ", end, " of ", S.dynamic_bytes, " bytes of dynamic shared memory");
    return false;
  }
  out = Operand16{S.smem.get() + start, lbo, sbo};
  return true;
}

// This warp's operands as the descriptors show them now: its 16 rows of A (64 x 16), B's n rows.
bool read_operands(const Wgmma& w, int warp, std::vector<uint16_t>& a, std::vector<uint16_t>& b, std::string& error) {
  Operand16 A, B;
  if (!decode(w.desc_a, 64, A, error) || !decode(w.desc_b, w.n, B, error)) return false;
  const int row0 = 16 * (warp % 4);
  a.resize(16 * 16), b.resize(size_t(w.n) * 16);
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k) a[r * 16 + k] = A.at(row0 + r, k);
  for (int c = 0; c < w.n; ++c)
    for (int k = 0; k < 16; ++k) b[size_t(c) * 16 + k] = B.at(c, k);
  return true;
}

// D (16 rows of this warp x n) = A (its 16 rows of 64 x 16) · B (16 x n) [+ D], from the
// operands the issue read; shared memory under them must not have changed since (on a GPU the
// tensor cores read it at some point in between). Lane L holds
// d[q] = D[16·(warp % 4) + g + 8·((q % 4) / 2)][8·(q / 4) + 2t + q % 2].
void run_wgmma(const Wgmma& w, int warp) {
  std::vector<uint16_t> a, b;
  std::string error;
  if (!read_operands(w, warp, a, b, error)) return collective_fault(str_cat("wgmma: ", error));
  if (a != w.a || b != w.b)
    return collective_fault("wgmma: shared memory under a pending wgmma changed between its issue and its wait");
  for (int L = 0; L < 32; ++L) {
    const int g = L / 4, t = L % 4;
    for (int q = 0; q < w.n / 2; ++q) {
      const int row = g + 8 * ((q % 4) / 2), col = 8 * (q / 4) + 2 * t + q % 2;
      float s = w.scale_d ? w.d[L][q] : 0.0f;
      for (int k = 0; k < 16; ++k) s += bf16_bits(w.a[size_t(row) * 16 + k]) * bf16_bits(w.b[size_t(col) * 16 + k]);
      w.d[L][q] = s;
    }
  }
}

struct WgmmaLane {
  float* d;
  int n;
  uint64_t desc_a, desc_b;
  int scale_d, warp;
};
void wgmma_issue_run(void* const* lanes) {
  const WgmmaLane& l0 = *static_cast<const WgmmaLane*>(lanes[0]);
  if (l0.n < 8 || l0.n > 256 || l0.n % 8 != 0) return collective_fault(str_cat("wgmma: N = ", l0.n, " (8..256, a multiple of 8)"));
  // a warpgroup: 4 consecutive warps from a multiple of 4, all in the block
  if (size_t(l0.warp / 4 * 4 + 4) * 32 > sched().fibers.size())
    return collective_fault(str_cat("wgmma: warp ", l0.warp, "'s warpgroup (warps ", l0.warp / 4 * 4, "..",
                                    l0.warp / 4 * 4 + 3, ") is not all in this block of ", sched().fibers.size(),
                                    " threads"));
  Wgmma w{{}, l0.n, l0.desc_a, l0.desc_b, l0.scale_d, {}, {}};
  std::string error;
  if (!read_operands(w, l0.warp, w.a, w.b, error)) return collective_fault(str_cat("wgmma: ", error));
  for (int L = 0; L < 32; ++L) {
    const WgmmaLane& x = *static_cast<const WgmmaLane*>(lanes[L]);
    if (x.n != l0.n || x.desc_a != l0.desc_a || x.desc_b != l0.desc_b || x.scale_d != l0.scale_d)
      return collective_fault(str_cat("wgmma: lane ", L, "'s descriptors or scale differ from lane 0's"));
    w.d[L] = x.d;
  }
  sched().warp_async[static_cast<size_t>(l0.warp)].open.push_back(std::move(w));
}
void wgmma_commit_run(void* const* lanes) {
  WarpAsync& a = sched().warp_async[static_cast<size_t>(static_cast<const int*>(lanes[0])[0])];
  a.groups.push_back(std::move(a.open));
  a.open.clear();
}
void wgmma_wait_run(void* const* lanes) {
  const int* arg = static_cast<const int*>(lanes[0]);  // {warp, pending}
  WarpAsync& a = sched().warp_async[static_cast<size_t>(arg[0])];
  size_t done = 0;
  while (a.groups.size() - done > static_cast<size_t>(std::max(arg[1], 0))) {
    for (const Wgmma& w : a.groups[done]) run_wgmma(w, arg[0]);
    ++done;
  }
  a.groups.erase(a.groups.begin(), a.groups.begin() + static_cast<std::ptrdiff_t>(done));
}
const Collective kWgmma{"wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16", wgmma_issue_run};
const Collective kWgmmaCommit{"wgmma.commit_group.sync.aligned", wgmma_commit_run};
const Collective kWgmmaWait{"wgmma.wait_group.sync.aligned", wgmma_wait_run};

}  // namespace

void wgmma_bf16(float* d, int n, uint64_t desc_a, uint64_t desc_b, int scale_d) {
  WgmmaLane lane{d, n, desc_a, desc_b, scale_d, current_warp()};
  warp_collective(kWgmma, &lane);
}
void wgmma_commit() {
  int arg[2] = {current_warp(), 0};
  warp_collective(kWgmmaCommit, arg);
}
void wgmma_wait(int pending) {
  int arg[2] = {current_warp(), pending};
  warp_collective(kWgmmaWait, arg);
}

uint64_t shuffle(unsigned mask, uint64_t value, Shuffle kind, int arg, int width) {
  Fiber& f = calling_fiber("a warp shuffle");
  f.state = State::at_warp, f.shuffle = true, f.mask = mask, f.collective = nullptr;
  f.kind = kind, f.arg = arg, f.width = width, f.value = value;
  wait_here();
  return f.result;
}

void* dynamic_shared() { return sched().smem.get(); }

void fault(const char* what) {
  Scheduler& S = sched();
  Fiber& f = calling_fiber("a fault");
  if (S.fault.empty()) S.fault = str_cat("thread ", f.linear, ": ", what);
  f.state = State::done;  // never resumed; the block's launch throws (run_block)
  wait_here();
  std::abort();  // not reached
}

namespace {
std::mutex g_smem_mutex;
std::map<const void*, size_t>& smem_limits() {
  static std::map<const void*, size_t> m;
  return m;
}
}  // namespace

void set_max_dynamic_shared(const void* kernel, int bytes) {
  std::lock_guard<std::mutex> lock(g_smem_mutex);
  smem_limits()[kernel] = static_cast<size_t>(bytes);
}

namespace {
// The dynamic bytes a block of `kernel` may have beside static_bytes of static shared memory:
// 48 KiB of both together by default; what cudaFuncSetAttribute set, once set (and static plus
// that within the block's 227 KiB).
size_t dynamic_allowed(const void* kernel, size_t static_bytes) {
  std::lock_guard<std::mutex> lock(g_smem_mutex);
  const auto it = smem_limits().find(kernel);
  if (it == smem_limits().end()) return static_bytes >= 49152 ? 0 : 49152 - static_bytes;
  return static_bytes + it->second > 232448 ? 0 : it->second;
}
}  // namespace

size_t max_dynamic_shared(const void* kernel) { return dynamic_allowed(kernel, 0); }

void poison_shared(void* p, size_t bytes) {
  Scheduler& S = sched();
  for (const auto& q : S.poisoned)
    if (q.first == p) return;  // once per block: the first thread to reach the declaration
  S.poisoned.emplace_back(p, bytes);
  S.static_bytes += bytes;
  std::memset(p, 0xFF, bytes);
}

bool check_pointer_argument(const char* kernel, int index, const void* p) {
  if (!p || device_range(p, 0)) return true;
  set_error(cudaErrorLaunchFailure,
            str_cat("kernel ", kernel, ": argument ", index, " is a pointer outside device memory (", p,
                    "): a host pointer passed to a kernel faults on a GPU"));
  return false;
}

// MM_CUDA_EMULATE_NO_COMPUTE=1: a dry run that keeps every allocation, launch check and
// host-side decision of the program but computes nothing: kernels and GEMMs are checked and
// skipped, copies to the device and within it are skipped, and copies back to the host read
// zeros (so indices are in range and losses finite). Device memory is not touched, so a
// large model's allocator peak (memory_stats) can be measured in little time and RAM; no
// value the program computes means anything.
bool no_compute() {
  static const bool v = [] {
    const char* s = std::getenv("MM_CUDA_EMULATE_NO_COMPUTE");
    return s && *s && std::strcmp(s, "0") != 0;
  }();
  return v;
}

void run_grid(const char* kernel, const char* where, dim3 grid, dim3 block, size_t smem, Body body,
              const void* kernel_addr) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  std::string bad;
  if (!grid.x || !grid.y || !grid.z || !block.x || !block.y || !block.z)
    bad = str_cat("an empty grid or block (grid ", grid.x, "x", grid.y, "x", grid.z, ", block ", block.x, "x", block.y,
                  "x", block.z, ")");
  else if (threads > 1024 || block.z > 64)
    bad = str_cat("a block of ", block.x, "x", block.y, "x", block.z, " threads (at most 1024, z at most 64)");
  else if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    bad = str_cat("grid ", grid.x, "x", grid.y, "x", grid.z, " (y and z at most 65535)");
  if (!bad.empty()) {
    set_error(cudaErrorInvalidConfiguration, str_cat("kernel ", kernel, " at ", where, ": ", bad));
    return;
  }
  if (smem > 232448) {  // an H100/H200 block's opt-in maximum, 227 KiB
    set_error(cudaErrorInvalidValue,
              str_cat("kernel ", kernel, " at ", where, ": ", smem, " bytes of dynamic shared memory (at most 232448)"));
    return;
  }
  if (kernel_addr && smem > max_dynamic_shared(kernel_addr)) {
    set_error(cudaErrorInvalidValue,
              str_cat("kernel ", kernel, " at ", where, ": ", smem, " bytes of dynamic shared memory, over the ",
                      max_dynamic_shared(kernel_addr), " allowed (over 49152 needs cudaFuncSetAttribute(kernel, ",
                      "cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) first)"));
    return;
  }
  Scheduler& S = sched();
  MM_CHECK(!S.running, "[cuda-emu] kernel ", kernel, " launched from inside a kernel");
  if (no_compute()) return;
  S.body = body;
  S.smem.reset(static_cast<unsigned char*>(std::aligned_alloc(128, (smem + 127) / 128 * 128 + 128)));
  bool first = true;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        run_block(S, static_cast<size_t>(threads), BlockContext{kernel, where, uint3{x, y, z}}, block, grid, smem);
        // The static __shared__ bytes are known once a block has declared them: CUDA counts
        // them with the dynamic ones (a GPU would refuse the launch; here the rest is skipped).
        if (first && kernel_addr && smem > 0 && smem > dynamic_allowed(kernel_addr, S.static_bytes)) {
          set_error(cudaErrorInvalidValue,
                    str_cat("kernel ", kernel, " at ", where, ": ", S.static_bytes, " bytes of static and ", smem,
                            " of dynamic shared memory, over what the block may have (48 KiB of both, or the static ",
                            "bytes plus what cudaFuncSetAttribute allowed)"));
          return;
        }
        first = false;
      }
}

}  // namespace mm::emu

// ---- the runtime API ---------------------------------------------------------------------------
using mm::emu::device_range;
using mm::emu::set_error;

struct CUstream_st {
  int unused;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};

namespace {
cudaError_t fail(cudaError_t e, std::string detail) {
  set_error(e, std::move(detail));
  return e;
}
}  // namespace

const char* cudaGetErrorString(cudaError_t e) {
  const char* name = "unknown error";
  switch (e) {
    case cudaSuccess: name = "no error"; break;
    case cudaErrorInvalidValue: name = "invalid argument"; break;
    case cudaErrorMemoryAllocation: name = "out of memory"; break;
    case cudaErrorInvalidConfiguration: name = "invalid configuration argument"; break;
    case cudaErrorNoDevice: name = "no CUDA-capable device is detected"; break;
    case cudaErrorLaunchFailure: name = "unspecified launch failure"; break;
  }
  if (e == mm::emu::g_detail_error && !mm::emu::g_last_detail.empty()) {
    static thread_local std::string s;
    s = mm::str_cat(name, " [emulator: ", mm::emu::g_last_detail, "]");
    return s.c_str();
  }
  return name;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = mm::emu::g_last_error;
  mm::emu::g_last_error = cudaSuccess;
  return e;
}

namespace {
int emulated_devices() {
  static const int n = [] {
    const char* s = std::getenv("MM_CUDA_EMULATE_DEVICES");  // 0: behave as a machine without a GPU
    return s && *s ? std::atoi(s) : 1;
  }();
  return n;
}
}  // namespace

cudaError_t cudaGetDeviceCount(int* n) {
  *n = emulated_devices();
  return *n ? cudaSuccess : fail(cudaErrorNoDevice, "MM_CUDA_EMULATE_DEVICES=0");
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return fail(cudaErrorInvalidValue, "one emulated device");
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof(p->name), "mm CUDA emulator on the CPU");
  p->major = 9, p->minor = 0;
  p->multiProcessorCount = 2;  // small, so that grid-stride loops go round more than once
  p->totalGlobalMem = size_t(16) << 30;
  p->sharedMemPerBlock = 48 << 10, p->sharedMemPerBlockOptin = 232448;
  p->maxThreadsPerBlock = 1024, p->warpSize = 32;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  void* q = nullptr;
  // exact size, so that AddressSanitizer sees a one-byte overrun; 256-byte aligned as cudaMalloc
  if (posix_memalign(&q, 256, bytes ? bytes : 1) != 0) return fail(cudaErrorMemoryAllocation, "posix_memalign");
  if (!mm::emu::no_compute()) std::memset(q, 0xFF, bytes);  // device memory starts as garbage: NaN here
  {
    std::lock_guard<std::mutex> lock(mm::emu::g_mem_mu);
    mm::emu::allocations()[reinterpret_cast<uintptr_t>(q)] = bytes;
  }
  *p = q;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(mm::emu::g_mem_mu);
    auto& m = mm::emu::allocations();
    auto it = m.find(reinterpret_cast<uintptr_t>(p));
    if (it == m.end()) return fail(cudaErrorInvalidValue, "cudaFree of a pointer cudaMalloc did not return");
    m.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "malloc");
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (!bytes) return cudaSuccess;
  const bool dst_dev = device_range(dst, bytes), src_dev = device_range(src, bytes);
  const bool want_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool want_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyDefault && (dst_dev != want_dst || src_dev != want_src))
    return fail(cudaErrorInvalidValue,
                mm::str_cat("cudaMemcpy kind ", int(kind), " but the destination is ", dst_dev ? "" : "not ",
                            "device memory and the source is ", src_dev ? "" : "not ", "device memory (", bytes,
                            " bytes)"));
  if (mm::emu::no_compute() && (dst_dev || src_dev)) {
    if (!dst_dev) std::memset(dst, 0, bytes);  // the device computed nothing: read back zeros
    return cudaSuccess;
  }
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (!bytes) return cudaSuccess;
  if (!device_range(dst, bytes))
    return fail(cudaErrorInvalidValue, mm::str_cat("cudaMemset of ", bytes, " bytes outside device memory"));
  if (!mm::emu::no_compute()) std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) { return cudaMemset(dst, value, bytes); }
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = new CUstream_st{};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st{};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}

// ---- cuBLAS: column-major GEMMs with cuBLAS's argument checks ---------------------------------
struct cublasContext {
  cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext{nullptr};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}

namespace {

float to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
  std::memcpy(&x, &u, 4);
  return x;
}

template <typename T>
float load(const T* p, bool tf32) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(*p);
  else if constexpr (std::is_same_v<T, __half>)
    return __half2float(*p);
  else
    return tf32 ? to_tf32(*p) : *p;
}

// C = alpha·op(A)·op(B) + beta·C, column-major, one matrix; false if an operand's span is not
// device memory.
template <typename T>
bool gemm_one(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const T* A, int lda,
              const T* B, int ldb, float beta, float* C, int ldc, bool tf32) {
  const size_t a_cols = ta == CUBLAS_OP_N ? k : m, b_cols = tb == CUBLAS_OP_N ? n : k;
  auto span = [](size_t cols, int ld) { return cols ? (cols - 1) * size_t(ld) : 0; };
  const size_t a_rows = ta == CUBLAS_OP_N ? m : k, b_rows = tb == CUBLAS_OP_N ? k : n;
  if (k > 0 && (!device_range(A, (span(a_cols, lda) + a_rows) * sizeof(T)) ||
                !device_range(B, (span(b_cols, ldb) + b_rows) * sizeof(T))))
    return false;
  if (!device_range(C, (span(n, ldc) + m) * sizeof(float))) return false;
  if (mm::emu::no_compute()) return true;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int l = 0; l < k; ++l) {
        const T* a = ta == CUBLAS_OP_N ? A + i + size_t(l) * lda : A + l + size_t(i) * lda;
        const T* b = tb == CUBLAS_OP_N ? B + l + size_t(j) * ldb : B + j + size_t(l) * ldb;
        s += double(load(a, tf32)) * double(load(b, tf32));
      }
      float& c = C[i + size_t(j) * ldc];
      c = beta == 0.0f ? float(alpha * s) : float(alpha * s + double(beta) * c);  // beta 0: C is not read
    }
  return true;
}

bool bad_dims(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc) {
  const int need_a = ta == CUBLAS_OP_N ? m : k, need_b = tb == CUBLAS_OP_N ? k : n;
  return m < 0 || n < 0 || k < 0 || lda < std::max(1, need_a) || ldb < std::max(1, need_b) || ldc < std::max(1, m) ||
         (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T);
}

}  // namespace

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bad_dims(ta, tb, m, n, k, lda, ldb, ldc)) return CUBLAS_STATUS_INVALID_VALUE;
  if (!m || !n) return CUBLAS_STATUS_SUCCESS;
  return gemm_one(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc, false) ? CUBLAS_STATUS_SUCCESS
                                                                                  : CUBLAS_STATUS_EXECUTION_FAILED;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long strideA,
                                         const float* B, int ldb, long long strideB, const float* beta, float* C,
                                         int ldc, long long strideC, int batch) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bad_dims(ta, tb, m, n, k, lda, ldb, ldc) || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (!m || !n) return CUBLAS_STATUS_SUCCESS;
  for (int b = 0; b < batch; ++b)
    if (!gemm_one(ta, tb, m, n, k, *alpha, A + b * strideA, lda, B + b * strideB, ldb, *beta, C + b * strideC, ldc,
                  false))
      return CUBLAS_STATUS_EXECUTION_FAILED;
  return CUBLAS_STATUS_SUCCESS;
}

namespace {
// GemmEx and its strided batches: float32 or 16-bit operands (both alike), float32 C.
cublasStatus_t gemm_ex(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                       const void* alpha, const void* A, cudaDataType Atype, int lda, long long strideA,
                       const void* B, cudaDataType Btype, int ldb, long long strideB, const void* beta, void* C,
                       cudaDataType Ctype, int ldc, long long strideC, int batch, cublasComputeType_t compute) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bad_dims(ta, tb, m, n, k, lda, ldb, ldc) || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (Atype != Btype || Ctype != CUDA_R_32F ||
      (Atype != CUDA_R_32F && Atype != CUDA_R_16BF && Atype != CUDA_R_16F) ||
      (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) ||
      (Atype != CUDA_R_32F && compute != CUBLAS_COMPUTE_32F))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!m || !n) return CUBLAS_STATUS_SUCCESS;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    for (int b = 0; b < batch; ++b)
      if (!gemm_one(ta, tb, m, n, k, al, static_cast<const T*>(A) + b * strideA, lda,
                    static_cast<const T*>(B) + b * strideB, ldb, be, static_cast<float*>(C) + b * strideC, ldc,
                    compute == CUBLAS_COMPUTE_32F_FAST_TF32))
        return false;
    return true;
  };
  const bool ok = Atype == CUDA_R_32F ? run(float()) : Atype == CUDA_R_16BF ? run(__nv_bfloat16()) : run(__half());
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
}  // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
  return gemm_ex(h, ta, tb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta, C, Ctype, ldc, 0, 1, compute);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
                                          long long strideA, const void* B, cudaDataType Btype, int ldb,
                                          long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t) {
  return gemm_ex(h, ta, tb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB, beta, C, Ctype, ldc,
                 strideC, batch, compute);
}
