// kernels/cuda/emu/cuda_bf16.h: the CUDA emulator's stand-in for <cuda_bf16.h> (see
// cuda_runtime.h here): bfloat16 as its 16 bits, float conversion rounding to nearest even.
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f);  // NOLINT: implicit, as CUDA's
  operator float() const;  // NOLINT
};

inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  __nv_bfloat16 b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.__x = static_cast<unsigned short>((u >> 16) | 0x40u);  // NaN stays NaN (quiet)
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
    b.__x = static_cast<unsigned short>(u >> 16);
  }
  return b;
}
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = uint32_t(b.__x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16::__nv_bfloat16(float f) : __x(__float2bfloat16(f).__x) {}
inline __nv_bfloat16::operator float() const { return __bfloat162float(*this); }
