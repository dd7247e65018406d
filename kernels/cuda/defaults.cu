// kernels/cuda/defaults.cu: the one place that names each kernel family's default version
// (what version 0 selects) and how many versions it has. Change a default here, after
// `mmbench ... --device cuda` shows the new one faster and tests/cuda/ shows it correct.
#include <cstring>

#include "kernels/cuda/common.cuh"

namespace mm::cuda {

namespace {
struct Family {
  const char* name;
  int default_version;
  int versions;
};
constexpr Family kFamilies[] = {
    {"elementwise", 2, 2},  // v2: 16-byte loads
    {"softmax", 2, 2},      // v2: a warp per row, online max/sum
    {"layer_norm", 2, 2},   // v2: a warp per row in registers
    {"group_norm", 2, 2},   // v2: few groups split across blocks
    {"gemm", 3, 3},         // v3: register-tiled SGEMM (float32; gemm_bf16 is the tensor-core one)
    {"gemm_bf16", 1, 2},    // v1: WMMA (v2, mma.sync + ldmatrix, is unmeasured)
    {"attention", 1, 4},    // v1: flash-style, float32 (v2..v4 are tensor-core ones: attention_16bit_version)
    {"attention_backward", 1, 2},  // v1: float32 arithmetic (v2: bf16 tensor cores, attention_backward_version)
    {"vq", 2, 2},           // v2: fused tiled search
    {"row_extreme", 2, 2},  // v2: a warp per row (v1, a thread per row, crawls along long rows)
    {"conv2d", 1, 1},       // v1: implicit GEMM
};
const Family& find(const char* family) {
  for (const Family& f : kFamilies)
    if (std::strcmp(f.name, family) == 0) return f;
  throw Error(str_cat("[cuda] unknown kernel family '", family, "'"));
}
}  // namespace

int default_version(const char* family) { return find(family).default_version; }

// The forward --precision bf16|fp16 runs, by design (unmeasured until the device script
// runs): v3 (mma.sync, products in registers, float32 q, k, v read and rounded as they are
// staged) for short key sequences, where converting q, k and v first would cost more than it
// saves; v4 (v3 on 16-bit copies, K and V double-buffered by cp.async) from 512 keys, where
// each K and V row is read 8 or more times.
int attention_16bit_version(int64_t keys) { return keys >= 512 ? 4 : 3; }

// The backward for q, k, v rounded as the forward read them (rounding 0 float32, 1 bf16, 2
// fp16): v2 (mma.sync on bf16 operands, by design, unmeasured) after a bf16 forward; v1
// (float32 arithmetic) otherwise: fp16 products would lose dS's small values.
int attention_backward_version(int rounding) { return rounding == 1 ? 2 : default_version("attention_backward"); }
int version_count(const char* family) { return find(family).versions; }

int resolve_version(const char* family, int version) {
  const Family& f = find(family);
  if (version == 0) return f.default_version;
  MM_CHECK(version >= 1 && version <= f.versions, "[cuda] ", family, " has versions 1..", f.versions, ", asked for ",
           version);
  return version;
}

}  // namespace mm::cuda
