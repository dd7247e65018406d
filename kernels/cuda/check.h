// kernels/cuda/check.h: every CUDA, cuBLAS and cuDNN call goes through one of these macros.
// A failure throws mm::Error naming the op, the call, and file:line, e.g.
//   [cuda] layer_norm: cudaMalloc(&p, bytes) failed at kernels/cuda/runtime.cu:88: out of memory
// Kernel launches are followed by MM_CUDA_LAUNCHED("op"), which reads cudaGetLastError (bad
// launch configurations surface there, not at the launch).
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "engine/error.h"

namespace mm::cuda {
[[noreturn]] void fail(const char* call, const char* op, const char* file, int line, const std::string& why);
const char* cublas_status_name(int status);
}  // namespace mm::cuda

#define MM_CUDA_CHECK(call, op)                                                             \
  do {                                                                                      \
    const cudaError_t mm_e_ = (call);                                                       \
    if (mm_e_ != cudaSuccess) ::mm::cuda::fail(#call, op, __FILE__, __LINE__, cudaGetErrorString(mm_e_)); \
  } while (0)

#define MM_CUDA_LAUNCHED(op) MM_CUDA_CHECK(cudaGetLastError(), op)

#define MM_CUBLAS_CHECK(call, op)                                                           \
  do {                                                                                      \
    const int mm_s_ = static_cast<int>(call);                                               \
    if (mm_s_ != 0) ::mm::cuda::fail(#call, op, __FILE__, __LINE__, ::mm::cuda::cublas_status_name(mm_s_)); \
  } while (0)

#define MM_CUDNN_CHECK(call, op)                                                            \
  do {                                                                                      \
    const cudnnStatus_t mm_s_ = (call);                                                     \
    if (mm_s_ != CUDNN_STATUS_SUCCESS) ::mm::cuda::fail(#call, op, __FILE__, __LINE__, cudnnGetErrorString(mm_s_)); \
  } while (0)
