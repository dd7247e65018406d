// kernels/cpu/cpu_features.h: whether this CPU can run the files kernels/cpu compiles for one
// instruction set (CMakeLists.txt: MM_KERNEL_AVX512_SOURCES, MM_KERNEL_AVX2_SOURCES). Each check
// names every flag those files are compiled with, since the compiler may use any of them.
// Internal to kernels/cpu: the GEMM (gemm.cpp) and the vector math (vec.cpp) dispatch on them.
#pragma once

namespace mm::kernels::cpu {

inline bool cpu_has_avx512() {  // -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mavx2
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("avx2");
}
inline bool cpu_has_avx2() {  // -mavx2 -mfma
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace mm::kernels::cpu
