// apps/common/args.h: checked number and device parsing for the apps' command lines. The error names
// the app, the option, the accepted range and what was given.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/cuda_ops.h"
#include "engine/error.h"

namespace mm::apps {

inline int64_t parse_int(const char* app, const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  char* end = nullptr;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  MM_CHECK(end != v.c_str() && *end == '\0' && n >= lo && n <= hi, app, ": ", opt, " expects an integer in [", lo, ", ",
           hi, "], got '", v, "'");
  return n;
}

// --device cpu|cuda|auto: "cuda" needs a CUDA build and a device, and the error says which is
// missing; "auto" (the apps' default) is the GPU when one is present, else the CPU.
inline Device parse_device(const char* app, const std::string& v) {
  MM_CHECK(v == "cpu" || v == "cuda" || v == "auto", app, ": --device must be cpu, cuda or auto, got '", v, "'");
  if (v == "auto") return cuda_ops::default_device();
  if (v == "cpu") return Device::cpu;
  MM_CHECK(cuda_ops::built(), app, ": --device cuda: this mm was built without CUDA (configure with -DMM_CUDA=ON, ",
           "which needs nvcc)");
  MM_CHECK(cuda_ops::device_present(), app, ": --device cuda: no CUDA device is present (the driver reports none)");
  return Device::cuda;
}

inline double parse_double(const char* app, const std::string& opt, const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  MM_CHECK(end != v.c_str() && *end == '\0' && std::isfinite(d), app, ": ", opt, " expects a number, got '", v, "'");
  return d;
}

}  // namespace mm::apps
