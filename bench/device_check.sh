#!/usr/bin/env bash
# bench/device_check.sh: the one command for a lent GPU machine (the device tool's H200).
# On a bare machine it builds the engine and the CUDA kernels (MM_ENGINE_ONLY: the device
# image lacks the model libraries; doctest travels in .device/, see bench/prepare_device.sh),
# runs the CUDA tests, runs them again under compute-sanitizer (memcheck, racecheck), checks
# the SASS for tensor-core instructions, runs `mmbench all --device cuda` and the PyTorch
# peers, and prints a short table last. Full logs go to $OUT (or ./device-out).
#   here:    bash bench/prepare_device.sh
#   device:  run(command="bash bench/device_check.sh", carry=[".device"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
B=/tmp/mm-build
J=$(nproc)
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
status=()

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$OUT/machine.txt"
nvcc --version | tail -1 | tee -a "$OUT/machine.txt"
git log -1 --format='commit %H %s' 2>/dev/null | tee -a "$OUT/machine.txt"

# cuDNN and friends may live in the image's Python wheels (nvidia-cudnn-cu13) rather than the toolkit.
CUDNN_ROOT=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
[ -n "$CUDNN_ROOT" ] && export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"
echo "CUDNN_ROOT=${CUDNN_ROOT:-none}" | tee -a "$OUT/machine.txt"

step "build (sm_90, engine + CUDA kernels)"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if cmake -S . -B $B "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DMM_ENGINE_ONLY=ON -DMM_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES=90 -DDOCTEST_INCLUDE_DIR="$PWD/.device/include" ${CUDNN_ROOT:+-DCUDNN_ROOT=$CUDNN_ROOT} >"$OUT/build.log" 2>&1 &&
   cmake --build $B -j"$J" >>"$OUT/build.log" 2>&1; then
  status+=("build: ok ($(grep -o 'cuDNN: .*' "$OUT/build.log" | head -1))")
else
  tail -40 "$OUT/build.log"
  echo "BUILD FAILED"; exit 1
fi

step "CUDA tests"
if timeout 180 $B/mm_tests --source-file='*test_cuda_kernels.cpp' >"$OUT/tests.log" 2>&1; then
  status+=("tests: $(grep -E 'test cases' "$OUT/tests.log" | tail -1)")
else
  status+=("tests: FAILED (rc $?) $(grep -E 'test cases' "$OUT/tests.log" | tail -1)")
  grep -B2 -A12 -E "ERROR|error:" "$OUT/tests.log" | head -80
fi

step "SASS: tensor-core instructions in the bf16 GEMM"
obj=$(find $B -name 'gemm.cu.o' | head -1)
if [ -n "$obj" ] && command -v cuobjdump >/dev/null; then
  n=$(cuobjdump --dump-sass "$obj" | grep -c -E 'HMMA|HGMMA')
  status+=("sass: $n HMMA/HGMMA instructions in gemm.cu.o")
fi

step "mmbench all --device cuda"
timeout 240 $B/mmbench all --device cuda --repeat 20 >"$OUT/bench.log" 2>&1
status+=("bench: rc $?")

step "PyTorch peers"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/peers/torch_cuda.py >"$OUT/torch.log" 2>&1
status+=("torch peers: rc $?")

step "compute-sanitizer (memcheck, racecheck) on the CUDA tests"
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 \
      $B/mm_tests --source-file='*test_cuda_kernels.cpp' >"$OUT/sanitizer-$tool.log" 2>&1
    rc=$?
    status+=("sanitizer $tool: rc $rc ($( [ $rc = 0 ] && echo clean || ([ $rc = 124 ] && echo 'timed out' || echo 'errors or failures')); $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1))")
  done
else
  status+=("sanitizer: compute-sanitizer not on PATH")
fi

step "done"
echo
sed -n '/== summary/,$p' "$OUT/bench.log"
sed -n '/== torch peers/,$p' "$OUT/torch.log"
echo
printf '%s\n' "${status[@]}"
