#!/bin/sh
# kernels/cuda/emu/translate.sh IN.cu OUT.cpp: rewrites the two pieces of CUDA syntax that are
# not C++ so that the CUDA emulator (cuda_runtime.h here) can compile a kernel file:
#   kernel<<<grid, block, smem, stream>>>(args)  ->  ::mm::emu::launch("kernel", __FILE__,
#       __LINE__, [](auto... a) { kernel(a...); }, grid, block, smem, stream)(args)
#   kernel<T, N><<<...>>>(args): launch_known, which also passes &kernel<T, N> (a template-id
#       names one function, so its address exists), so the launch can check the dynamic
#       shared memory against what cudaFuncSetAttribute allowed that function
#   extern __shared__ [__align__(n)] T name[];  ->  T* name = static_cast<T*>(::mm::emu::dynamic_shared());
#   __shared__ T a[..], b[..];   ->  __shared__ T a[..]; ::mm::emu::poison_shared(a, sizeof a); (each)
# Lines stay where they were (#line names the original file), so errors point at the .cu.
set -eu
in=$1
out=$2
{
  printf '#line 1 "%s"\n' "$in"
  sed -E \
    -e 's/extern __shared__ (__align__\([0-9]+\) )?([A-Za-z0-9_:]+) ([A-Za-z0-9_]+)\[\];/\2* \3 = static_cast<\2*>(::mm::emu::dynamic_shared());/' \
    -e 's/^( *)__shared__ ([^;]*[^ ;]) ([A-Za-z_][A-Za-z0-9_]*)((\[[^];]*\])+), ([A-Za-z_][A-Za-z0-9_]*)((\[[^];]*\])+);/\1__shared__ \2 \3\4; __shared__ \2 \6\7;/' \
    -e 's/__shared__ ([^;]*[^ ;]) ([A-Za-z_][A-Za-z0-9_]*)((\[[^];]*\])+);/__shared__ \1 \2\3; ::mm::emu::poison_shared(\2, sizeof \2);/g' \
    -e 's/([A-Za-z_][A-Za-z0-9_]*<[^<>;()]*>)<<<(([^>]|>[^>]|>>[^>])*)>>>\(/::mm::emu::launch_known("\1", __FILE__, __LINE__, [](auto... mm_emu_a) { \1(mm_emu_a...); }, ::mm::emu::kernel_address(\&\1), \2)(/g' \
    -e 's/([A-Za-z_][A-Za-z0-9_]*)<<<(([^>]|>[^>]|>>[^>])*)>>>\(/::mm::emu::launch("\1", __FILE__, __LINE__, [](auto... mm_emu_a) { \1(mm_emu_a...); }, \2)(/g' \
    "$in"
} > "$out.tmp"
mv "$out.tmp" "$out"
