#!/usr/bin/env bash
# scripts/test.sh: installs dependencies, builds, and runs the whole test suite:
#   1. the Release build and every doctest file through ctest;
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build of the same tests, with the
#      CUDA kernels built for the CPU emulator (kernels/cuda/emu/), so that tests/cuda runs
#      here, kernels included, under ASan (skip with MM_SKIP_SANITIZE=1 for a quick local run).
# Tests that need ../shared/refs skip with a message when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh build
ctest --test-dir build --output-on-failure -j"$(nproc)"
if [ "${MM_SKIP_SANITIZE:-0}" != "1" ]; then
  # No GPU here, and the CUDA runtime does not mix with LeakSanitizer: the emulator instead.
  bash scripts/build.sh build-asan -DMM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMM_CUDA=OFF \
    -DMM_CUDA_EMULATE=ON
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$(nproc)"
fi
