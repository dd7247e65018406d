// kernels/cuda/ptx.cuh: the warp-level tensor-core instructions behind attention v3/v4 and
// gemm_bf16 v2, as inline PTX, and cp.async (at the end). Unlike WMMA, whose fragments are opaque, these come with
// register layouts that PTX documents, so a kernel can work on the accumulators in its own
// registers (rescale a row of O, turn S into the next product's operand) without a trip
// through shared memory. The layouts, for lane L of the warp, g = L / 4, t = L % 4, and a
// 32-bit register holding two 16-bit elements (the lower-indexed one in the low half):
//   mma m16n8k16 (D = A·B + C, f32 accumulators, bf16 or fp16 operands):
//     A 16x16: a[i] = A[g + 8·(i%2)][2t + 8·(i/2) + {0,1}]
//     B 16x8:  b[i] = B[2t + 8·i + {0,1}][g]
//     D 16x8:  d[i] = D[g + 8·(i/2)][2t + i%2]
//   ldmatrix .x4 (four 8x8 matrices of 16-bit elements from shared memory): lanes 8j..8j+7
//     name the rows of matrix j (16-byte aligned); r[j] = M_j[L/4][2·(L%4) + {0,1}], or with
//     .trans M_j[2·(L%4) + {0,1}][L/4]. So an x4 of a 16x16 row-major tile, rows given by
//     lanes in the order (rows 0-7, cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15),
//     (rows 8-15, cols 8-15), is exactly an A fragment, and x4.trans of a [k][n] tile gives
//     B fragments.
// On the CUDA emulator (kernels/cuda/emu/) the same calls run emu.cpp's implementations of
// these layouts, once per warp from all 32 lanes' registers, so the tests check the index
// arithmetic of the kernels that use them; cuda::mma_probe (gemm.cu) checks the layouts
// themselves on a real device.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>  // (on the emulator: mm::emu's mma_m16n8k16 and ldmatrix)

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace mm::cuda::ptx {

template <typename T16>
__device__ __forceinline__ T16 to16(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 to16<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}
template <>
__device__ __forceinline__ __half to16<__half>(float x) {
  return __float2half_rn(x);
}

__device__ __forceinline__ uint32_t pack(unsigned short lo, unsigned short hi) { return lo | uint32_t(hi) << 16; }

// Two floats rounded to T16 and packed into one register, lo in the low half.
template <typename T16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  const T16 l = to16<T16>(lo), h = to16<T16>(hi);
  unsigned short lb, hb;
  std::memcpy(&lb, &l, 2);
  std::memcpy(&hb, &h, 2);
  return pack(lb, hb);
}

// d = A·B + d on one 16x8x16 tile (layouts above).
template <typename T16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  static_assert(std::is_same_v<T16, __nv_bfloat16> || std::is_same_v<T16, __half>, "bf16 or fp16 operands");
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::mma_m16n8k16(d, a, b, std::is_same_v<T16, __half>);
#elif defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T16, __half>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Four 8x8 matrices from shared memory; `row` is this lane's row address (layout above).
template <bool Trans>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::ldmatrix(r, 4, Trans, row);
#elif defined(__CUDA_ARCH__)
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  if constexpr (Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
#endif
}

// Two 8x8 matrices (lanes 0-15 name the rows; the other lanes' addresses are ignored).
template <bool Trans>
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::ldmatrix(r, 2, Trans, row);
#elif defined(__CUDA_ARCH__)
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  if constexpr (Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr)
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr)
                 : "memory");
#endif
}

// cp.async.cg.shared.global: 16 bytes from global memory into shared memory without passing
// through registers, the bytes past src_bytes zero-filled (src_bytes 0: src is not read, but
// must still be a valid address); commit_group closes this thread's batch of copies,
// wait_group<N> waits until at most N of its batches are still in flight.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::cp_async16(dst, src, src_bytes);
#elif defined(__CUDA_ARCH__)
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(src_bytes) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::cp_async_commit();
#elif defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(MM_CUDA_EMULATED)
  ::mm::emu::cp_async_wait(Pending);
#elif defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
#endif
}

}  // namespace mm::cuda::ptx
