// engine/dtype.h: element types, devices, and float16/bfloat16 conversion.
// Reading order: after error.h. CPU math runs in float32 (and float64 for gradient
// checks); float16/bfloat16 are storage types converted on the way in and out.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace mm {

enum class DType : uint8_t { f32, f16, bf16, f64, i32, i64, u8, boolean };

inline constexpr DType f32 = DType::f32;
inline constexpr DType f16 = DType::f16;
inline constexpr DType bf16 = DType::bf16;
inline constexpr DType f64 = DType::f64;
inline constexpr DType i32 = DType::i32;
inline constexpr DType i64 = DType::i64;
inline constexpr DType u8 = DType::u8;
inline constexpr DType boolean = DType::boolean;

size_t dtype_size(DType t);
const char* dtype_name(DType t);
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64;
}

// A device field travels with every tensor so that no API changes when CUDA lands.
enum class Device : uint8_t { cpu, cuda };
const char* device_name(Device d);

// IEEE binary16 <-> binary32, round-to-nearest-even; handles subnormals, inf and NaN.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
// bfloat16 is the top half of a float32; conversion rounds to nearest even, NaN stays NaN.
inline float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t float_to_bf16(float f);

}  // namespace mm
