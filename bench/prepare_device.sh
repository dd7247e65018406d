#!/usr/bin/env bash
# bench/prepare_device.sh: fills .device/ (ignored by git) with what bench/device_check.sh
# needs on the GPU machine and cannot install there: the doctest header.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device/include/doctest
cp /usr/include/doctest/doctest.h .device/include/doctest/
du -sh .device

# The model benchmarks (bench/device_models.sh: mmbench vqgan-clip-step and clip-image on the
# device) need the model libraries (ICU, PCRE2, yaml-cpp, minizip), which the GPU machine
# lacks: carry an mmbench built here with CUDA (build/, sm_80 and sm_90) and the shared
# libraries it links beyond glibc, libstdc++ and CUDA's own (ICU's data xz-compressed).
if [ -f build/CMakeCache.txt ] && grep -q '^MM_CUDA:BOOL=ON' build/CMakeCache.txt; then
  cmake --build build --target mmbench -j"$(nproc)" >/dev/null
  rm -rf .device/bin .device/lib
  mkdir -p .device/bin .device/lib
  cp build/mmbench .device/bin/mmbench
  strip .device/bin/mmbench
  ldd build/mmbench | awk '$3 ~ /^\// {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libcuda|libcudart|libcublas|libcublasLt|libcudnn)[.-]' |
    while read -r lib; do
      name=$(basename "$lib")
      case "$name" in
        libicudata*) xz -T0 -6 -c "$lib" >".device/lib/$name.xz" ;;
        *) cp -L "$lib" ".device/lib/$name" ;;
      esac
    done
  ls .device/lib
else
  echo "prepare_device: build/ is not a CUDA build (configure with -DMM_CUDA=ON): the model benchmarks will be skipped"
fi
du -sh .device
