// kernels/cuda/emu/mma.h: the CUDA emulator's stand-in for <mma.h> (WMMA; see cuda_runtime.h
// here). A fragment holds its whole tile in every lane (the hardware spreads it over the warp
// in a layout CUDA does not specify), so load, mma and store compute the exact tile product;
// kernels that index fragment elements by lane (x[i]) are not emulated faithfully. Each
// *_sync call is a warp barrier, as on the device: every lane of the warp must reach it. Here
// it is also a memory fence between the lanes, which on the device it is not: a missing
// __syncwarp between lanes' shared-memory writes and a WMMA load of them (or a store and the
// lanes' reads) cannot show here. Loads and stores check CUDA's alignment rules.
#pragma once
#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace nvcuda::wmma {

// CUDA's rules for load/store_matrix_sync: the pointer 256-bit (32-byte) aligned, ldm a
// multiple of 16 bytes (8 elements of 16 bits, 4 of float). A GPU faults or misreads
// otherwise; the emulator stops the thread with a fault that names the call.
inline void check_wmma_memory(const char* call, const void* p, unsigned ldm, size_t elem_bytes) {
  char what[160];
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) {
    std::snprintf(what, sizeof what, "%s: pointer %p is not 256-bit aligned", call, p);
    ::mm::emu::fault(what);
  }
  if (ldm * elem_bytes % 16 != 0) {
    std::snprintf(what, sizeof what, "%s: ldm %u is not a multiple of 16 bytes (%zu-byte elements)", call, ldm,
                  elem_bytes);
    ::mm::emu::fault(what);
  }
}

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K>
struct tile_shape;
template <int M, int N, int K>
struct tile_shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile_shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct tile_shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = tile_shape<Use, M, N, K>::rows, cols = tile_shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[num_elements];  // row-major tile
};

template <typename Use, int M, int N, int K, typename T, typename L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, T v) {
  for (T& e : f.x) e = v;
}

template <typename Use, int M, int N, int K, typename T, typename L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm) {
  check_wmma_memory("wmma::load_matrix_sync", p, ldm, sizeof(T));
  __syncwarp();
  using F = fragment<Use, M, N, K, T, L>;
  constexpr bool col = std::is_same_v<L, col_major>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = col ? p[c * size_t(ldm) + r] : p[r * size_t(ldm) + c];
}
template <int M, int N, int K, typename T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
  check_wmma_memory("wmma::load_matrix_sync", p, ldm, sizeof(T));
  __syncwarp();
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = layout == mem_col_major ? p[c * size_t(ldm) + r] : p[r * size_t(ldm) + c];
}
template <int M, int N, int K, typename T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  check_wmma_memory("wmma::store_matrix_sync", p, ldm, sizeof(T));
  __syncwarp();
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      (layout == mem_col_major ? p[c * size_t(ldm) + r] : p[r * size_t(ldm) + c]) = f.x[r * N + c];
}
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
  __syncwarp();
  TC out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = static_cast<float>(c.x[i * N + j]);
      for (int k = 0; k < K; ++k) s += static_cast<float>(a.x[i * K + k]) * static_cast<float>(b.x[k * N + j]);
      out[i * N + j] = s;
    }
  for (int e = 0; e < M * N; ++e) d.x[e] = out[e];
}

}  // namespace nvcuda::wmma
