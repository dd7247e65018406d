// kernels/cuda/emu/cuda_fp16.h: the CUDA emulator's stand-in for <cuda_fp16.h> (see
// cuda_runtime.h here): IEEE binary16 as its 16 bits; conversions go through the compiler's
// _Float16 (GCC 12+ on x86-64), which rounds to nearest even as __float2half_rn does.
#pragma once
#include <cstring>

struct __half {
  unsigned short __x;
  operator float() const;  // NOLINT: as CUDA's __half converts (WMMA's emulated mma reads it)
};

inline __half __float2half_rn(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  __half out;
  std::memcpy(&out.__x, &h, 2);
  return out;
}
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) {
  _Float16 v;
  std::memcpy(&v, &h.__x, 2);
  return static_cast<float>(v);
}
inline __half::operator float() const { return __half2float(*this); }
