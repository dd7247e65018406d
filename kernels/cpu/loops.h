// kernels/cpu/loops.h: the strided loops under every elementwise CPU kernel, and the
// dtype dispatch that turns a runtime DType into a C++ type.
// Reading order: first file of kernels/. Kernels know pointers, shapes and strides only;
// they know nothing of autograd.
//
//   // out[i] = a[i] + b[i] over a broadcast shape, any strides:
//   for_each_row<3>(shape, {out_strides, a_strides, b_strides}, [&](int64_t n, auto off, auto inc) {
//     for (int64_t i = 0; i < n; ++i) o[off[0] + i*inc[0]] = x[off[1] + i*inc[1]] + y[off[2] + i*inc[2]];
//   });
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/parallel.h"
#include "engine/shape.h"

namespace mm::kernels {

// Storage types for the 16-bit floats; arithmetic happens after conversion to float.
struct half_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };

template <typename T> inline double to_double(T v) { return static_cast<double>(v); }
template <> inline double to_double(half_t v) { return half_to_float(v.bits); }
template <> inline double to_double(bf16_t v) { return bf16_to_float(v.bits); }
template <typename T> inline T from_double(double v) { return static_cast<T>(v); }
template <> inline bool from_double(double v) { return v != 0.0; }
template <> inline half_t from_double(double v) { return {float_to_half(static_cast<float>(v))}; }
template <> inline bf16_t from_double(double v) { return {float_to_bf16(static_cast<float>(v))}; }

template <typename T> struct TypeTag { using type = T; };

// Calls f(TypeTag<T>{}) with T the C++ type of dtype `t`.
template <typename F>
auto dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::f16: return f(TypeTag<half_t>{});
    case DType::bf16: return f(TypeTag<bf16_t>{});
    case DType::i32: return f(TypeTag<int32_t>{});
    case DType::i64: return f(TypeTag<int64_t>{});
    case DType::u8: return f(TypeTag<uint8_t>{});
    case DType::boolean: return f(TypeTag<bool>{});
  }
  throw Error("dispatch: invalid dtype");
}

// Float32 and float64 only: the dtypes CPU math runs in.
template <typename F>
auto dispatch_float(DType t, const char* op, F&& f) {
  if (t == DType::f32) return f(TypeTag<float>{});
  if (t == DType::f64) return f(TypeTag<double>{});
  throw Error(str_cat("[", op, "] expects a float32 or float64 tensor, got ", dtype_name(t),
                      " (convert with .to(mm::f32))"));
}

// Iterates over `shape` for N operands with per-operand element strides (0 = broadcast).
// Adjacent dims are merged where every operand allows it; the innermost dim becomes the
// row that f walks: f(row_length, offsets[N], inner_strides[N]). Rows run in parallel.
template <size_t N, typename F>
void for_each_row(const Shape& shape_in, const std::array<Shape, N>& strides_in, F&& f,
                  int64_t min_elements_per_task = 32768) {
  // coalesce
  Shape shape;
  std::array<Shape, N> strides;
  for (size_t d = 0; d < shape_in.size(); ++d) {
    if (shape_in[d] == 1) continue;  // size-1 dims contribute nothing
    bool merge = !shape.empty();
    for (size_t k = 0; k < N && merge; ++k)
      merge = strides[k].back() == strides_in[k][d] * shape_in[d];
    if (merge) {
      shape.back() *= shape_in[d];
      for (size_t k = 0; k < N; ++k) strides[k].back() = strides_in[k][d];
    } else {
      shape.push_back(shape_in[d]);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(strides_in[k][d]);
    }
  }
  for (int64_t s : shape_in)
    if (s == 0) return;
  if (shape.empty()) {  // a single element
    shape.push_back(1);
    for (size_t k = 0; k < N; ++k) strides[k].push_back(0);
  }
  const int64_t ndim = static_cast<int64_t>(shape.size());
  const int64_t row = shape.back();
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < ndim; ++d) rows *= shape[d];
  std::array<int64_t, N> inc;
  for (size_t k = 0; k < N; ++k) inc[k] = strides[k].back();
  const int64_t grain = std::max<int64_t>(1, min_elements_per_task / std::max<int64_t>(row, 1));
  parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    std::array<int64_t, N> off;
    for (int64_t r = r0; r < r1; ++r) {
      off.fill(0);
      int64_t rem = r;
      for (int64_t d = ndim - 2; d >= 0; --d) {
        const int64_t i = rem % shape[d];
        rem /= shape[d];
        for (size_t k = 0; k < N; ++k) off[k] += i * strides[k][d];
      }
      f(row, off, inc);
    }
  });
}

// Strides of `shape_of_operand` seen from the broadcast `out_shape` (0 on broadcast dims).
inline Shape broadcast_strides(const Shape& operand_shape, const Shape& operand_strides, const Shape& out_shape) {
  Shape s(out_shape.size(), 0);
  const size_t lead = out_shape.size() - operand_shape.size();
  for (size_t d = 0; d < operand_shape.size(); ++d)
    s[lead + d] = operand_shape[d] == 1 ? 0 : operand_strides[d];
  return s;
}

}  // namespace mm::kernels
