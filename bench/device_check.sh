#!/usr/bin/env bash
# bench/device_check.sh: the one command for a lent GPU machine (the device tool's H200).
# On a bare machine it builds the engine and the CUDA kernels (MM_ENGINE_ONLY: the device
# image lacks the model libraries; doctest travels in .device/, see bench/prepare_device.sh),
# runs the CUDA tests, checks the SASS for tensor-core instructions, runs
# `mmbench all --device cuda` and the PyTorch peers, then compute-sanitizer (memcheck and
# racecheck) on a subset of the tests, and prints a short table last. Every step has a time
# cap inside a 480 s budget, and each step's one-line result is appended to $OUT/status.txt
# as it happens, so a run cut short still says how far it got. Full logs: $OUT (or ./device-out).
#   here:    bash bench/prepare_device.sh
#   device:  run(command="bash bench/device_check.sh", carry=[".device"], timeout_s=560)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
B=/tmp/mm-build
J=$(nproc)
BUDGET=${MM_DEVICE_BUDGET:-480}
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
note() { echo "$1" | tee -a "$OUT/status.txt"; }
# The seconds a step may take: its own cap, or what is left of the budget if less.
cap() { local left=$(( BUDGET - ($(date +%s) - t0) )); [ "$left" -lt "$1" ] && echo $(( left > 5 ? left : 5 )) || echo "$1"; }
: > "$OUT/status.txt"

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1
  nvcc --version | tail -1
  git log -1 --format='commit %H %s' 2>/dev/null; } | tee "$OUT/machine.txt"
# cuDNN may live in the image's Python wheels (nvidia-cudnn-cu13) rather than the toolkit.
CUDNN_ROOT=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
[ -n "$CUDNN_ROOT" ] && export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"
echo "CUDNN_ROOT=${CUDNN_ROOT:-none}" | tee -a "$OUT/machine.txt"

step "build (sm_90, engine + CUDA kernels)"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if timeout "$(cap 240)" cmake -S . -B $B "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DMM_ENGINE_ONLY=ON -DMM_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES=90 -DDOCTEST_INCLUDE_DIR="$PWD/.device/include" ${CUDNN_ROOT:+-DCUDNN_ROOT=$CUDNN_ROOT} \
     >"$OUT/build.log" 2>&1 && timeout "$(cap 240)" cmake --build $B -j"$J" >>"$OUT/build.log" 2>&1; then
  note "build: ok in $(( $(date +%s) - t0 ))s ($(grep -o 'cuDNN: .*' "$OUT/build.log" | head -1))"
else
  tail -40 "$OUT/build.log"
  note "build: FAILED"; exit 1
fi

step "CUDA tests"
TESTS="$B/mm_tests --source-file=*test_cuda_kernels.cpp"
if timeout "$(cap 120)" $TESTS >"$OUT/tests.log" 2>&1; then
  note "tests: passed: $(grep -E 'test cases' "$OUT/tests.log" | tail -1)"
else
  rc=$?
  note "tests: FAILED (rc $rc): $(grep -E 'test cases' "$OUT/tests.log" | tail -1)"
  grep -B3 -A10 -E "ERROR|error" "$OUT/tests.log" | head -60
fi

step "SASS: tensor-core instructions in the bf16 GEMM"
obj=$(find $B -name 'gemm.cu.o' | head -1)
if [ -n "$obj" ] && command -v cuobjdump >/dev/null; then
  note "sass: $(cuobjdump --dump-sass "$obj" | grep -c -E 'HMMA|HGMMA') HMMA/HGMMA instructions in gemm.cu.o"
fi

step "mmbench all --device cuda"
timeout "$(cap 150)" $B/mmbench all --device cuda --repeat 10 >"$OUT/bench.log" 2>&1
note "bench: rc $? ($(grep -c FAILED "$OUT/bench.log") kernel families failed)"

step "PyTorch peers"
PYTHONUNBUFFERED=1 timeout "$(cap 60)" python3 bench/peers/torch_cuda.py >"$OUT/torch.log" 2>&1
note "torch peers: rc $?"

step "compute-sanitizer (memcheck, racecheck) on a subset of the tests, pool off"
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    MM_CUDA_NO_POOL=1 timeout "$(cap 60)" compute-sanitizer --tool $tool --error-exitcode 9 \
      $TESTS --test-case='*softmax*,*layer_norm*,*group_norm*,*attention*,*vq: ties*,*resampling*' \
      >"$OUT/sanitizer-$tool.log" 2>&1
    rc=$?
    if grep -q "Device not supported" "$OUT/sanitizer-$tool.log"; then what="unsupported on this machine"
    elif [ $rc = 0 ]; then what="clean"
    elif [ $rc = 124 ]; then what="timed out"
    else what="errors or test failures"; fi
    note "sanitizer $tool: rc $rc, $what; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1)"
  done
else
  note "sanitizer: compute-sanitizer not on PATH"
fi

step "done"
echo
sed -n '/== summary/,$p' "$OUT/bench.log"
sed -n '/== torch peers/,$p' "$OUT/torch.log"
echo
cat "$OUT/status.txt"
