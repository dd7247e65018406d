// bench/bench_cuda.h: `mmbench KERNEL --device cuda`: mm's CUDA kernels (kernels/cuda/) timed
// with CUDA events beside their library peers (cuBLAS, cuDNN) and the machine's measured
// ceilings (device-to-device copy bandwidth, cuBLAS bf16 rate), all in one run.
#pragma once

namespace mm::bench {
// argv as given to mmbench (argv[1] is the kernel name, or "all"). Returns the exit code.
int cuda_main(int argc, char** argv);
}  // namespace mm::bench
