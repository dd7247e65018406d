#!/usr/bin/env bash
# bench/device_check.sh: the one command for a lent GPU machine (the device tool's H200).
# On a bare machine it builds the engine and the CUDA kernels (MM_ENGINE_ONLY: the device
# image lacks the model libraries; doctest travels in .device/, see bench/prepare_device.sh),
# runs the CUDA tests, checks the SASS for tensor-core instructions, runs
# `mmbench all --device cuda` and the PyTorch peers, the model benchmarks with mm's carried
# full binary beside torch (bench/device_models.sh), then compute-sanitizer (memcheck and
# racecheck) on a subset of the tests, and prints a short table last. Every step has a time
# cap inside a 450 s budget (MM_DEVICE_BUDGET), and each step's one-line result is appended to status.txt
# as it happens, so a run cut short still says how far it got. $OUT gets status, test, bench and
# torch logs and logs.tgz with every log (OUT defaults to ./device-out).
#   here:    bash bench/prepare_device.sh
#   device:  run(command="bash bench/device_check.sh", carry=[".device"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-out}
L=/tmp/mm-device-logs   # every log; at exit the few that matter are copied to $OUT with a tarball of all
rm -rf "$L"; mkdir -p "$OUT" "$L"
pack() {
  for f in status.txt machine.txt tests.log bench.log torch.log models.log; do [ -f "$L/$f" ] && cp "$L/$f" "$OUT/"; done
  tar czf "$OUT/logs.tgz" -C "$L" . 2>/dev/null
}
trap pack EXIT
B=/tmp/mm-build
J=$(nproc)
BUDGET=${MM_DEVICE_BUDGET:-450}
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
note() { echo "$1" | tee -a "$L/status.txt"; }
# The seconds a step may take: its own cap, or what is left of the budget if less.
cap() { local left=$(( BUDGET - ($(date +%s) - t0) )); [ "$left" -lt "$1" ] && echo $(( left > 5 ? left : 5 )) || echo "$1"; }
: > "$L/status.txt"

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1
  nvcc --version | tail -1
  git log -1 --format='commit %H %s' 2>/dev/null; } | tee "$L/machine.txt"
# cuDNN may live in the image's Python wheels (nvidia-cudnn-cu13) rather than the toolkit.
CUDNN_ROOT=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
[ -n "$CUDNN_ROOT" ] && export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"
echo "CUDNN_ROOT=${CUDNN_ROOT:-none}" | tee -a "$L/machine.txt"

step "build (sm_90, engine + CUDA kernels)"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if timeout "$(cap 240)" cmake -S . -B $B "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DMM_ENGINE_ONLY=ON -DMM_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES=90 -DDOCTEST_INCLUDE_DIR="$PWD/.device/include" ${CUDNN_ROOT:+-DCUDNN_ROOT=$CUDNN_ROOT} \
     >"$L/build.log" 2>&1 && timeout "$(cap 240)" cmake --build $B -j"$J" >>"$L/build.log" 2>&1; then
  note "build: ok in $(( $(date +%s) - t0 ))s ($(grep -o 'cuDNN: .*' "$L/build.log" | head -1))"
else
  tail -40 "$L/build.log"
  note "build: FAILED"; exit 1
fi

step "CUDA tests"
TESTS="$B/mm_tests --source-file=*test_cuda_kernels.cpp,*test_cuda_engine.cpp"
if timeout "$(cap 120)" $TESTS >"$L/tests.log" 2>&1; then
  note "tests: passed: $(grep -E 'test cases' "$L/tests.log" | tail -1)"
else
  rc=$?
  note "tests: FAILED (rc $rc): $(grep -E 'test cases' "$L/tests.log" | tail -1)"
  grep -B3 -A12 -E "ERROR|error" "$L/tests.log" | head -60
  # A sticky CUDA error (an illegal address) poisons every later case in the same process:
  # run each case alone to tell which ones fail by themselves.
  $TESTS --list-test-cases 2>/dev/null | grep '^cuda ' | while IFS= read -r tc; do
    pat=$(printf '%s' "$tc" | sed 's/[][*?,]/?/g')
    if timeout "$(cap 40)" $TESTS --test-case="$pat" >>"$L/tests-each.log" 2>&1; then r=ok; else r="FAILED rc $?"; fi
    note "  case: $r: $tc"
  done
fi

step "SASS: tensor-core instructions in the bf16 GEMMs"
if command -v cuobjdump >/dev/null; then
  for f in gemm.cu.o gemm_sm90.cu.o attention.cu.o; do
    obj=$(find $B -name "$f" | head -1)
    [ -n "$obj" ] && note "sass: $f: $(cuobjdump --dump-sass "$obj" | grep -c 'HMMA') HMMA, $(cuobjdump --dump-sass "$obj" | grep -c 'HGMMA') HGMMA"
  done
fi

step "mmbench all --device cuda"
timeout "$(cap 150)" $B/mmbench all --device cuda --repeat 10 >"$L/bench.log" 2>&1
rc=$?
note "bench: rc $rc ($(grep -c FAILED "$L/bench.log") kernel families failed)"
if [ $rc != 0 ]; then
  # The run died (a sticky CUDA error or a timeout ends every later family): one family per process.
  for k in elementwise softmax layernorm groupnorm gemm attention vq conv2d vit; do
    timeout "$(cap 40)" $B/mmbench $k --device cuda --repeat 10 >"$L/bench-$k.log" 2>&1
    r=$?
    note "  bench $k: rc $r"
    sed -n '/== summary/,/^$/p' "$L/bench-$k.log" | grep -E "^\| $k " >>"$L/bench-each.md"
  done
fi

step "PyTorch peers"
PYTHONUNBUFFERED=1 timeout "$(cap 60)" python3 bench/peers/torch_cuda.py >"$L/torch.log" 2>&1
note "torch peers: rc $?"

step "models: a VQGAN+CLIP step and ViT-B/32 encoding, mm beside torch eager (bench/device_models.sh)"
timeout "$(cap 150)" bash bench/device_models.sh "$L" 45 >"$L/models-run.log" 2>&1
rc=$?
timed=$(grep -c '"ms"' "$L/models.log" 2>/dev/null); failed=$(grep -c '"error"' "$L/models.log" 2>/dev/null)
note "models: rc $rc, ${timed:-0} timed runs, ${failed:-0} failed $(grep -o 'skipped.*' "$L/models-run.log" 2>/dev/null | head -1)"

step "compute-sanitizer (memcheck, racecheck) on a subset of the tests, pool off"
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    MM_CUDA_NO_POOL=1 timeout "$(cap 60)" compute-sanitizer --tool $tool --error-exitcode 9 \
      $TESTS --test-case='*softmax*,*layer_norm*,*group_norm*,*attention*,*vq: ties*,*resampling*,*gemm_bf16*,*mma_probe*' \
      >"$L/sanitizer-$tool.log" 2>&1
    rc=$?
    if grep -q "Device not supported" "$L/sanitizer-$tool.log"; then what="unsupported on this machine"
    elif [ $rc = 0 ]; then what="clean"
    elif [ $rc = 124 ]; then what="timed out"
    else what="errors or test failures"; fi
    note "sanitizer $tool: rc $rc, $what; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$L/sanitizer-$tool.log" | tail -1)"
  done
else
  note "sanitizer: compute-sanitizer not on PATH"
fi

step "done"
echo
sed -n '/== summary/,$p' "$L/bench.log"
[ -f "$L/bench-each.md" ] && cat "$L/bench-each.md"
sed -n '/== torch peers/,$p' "$L/torch.log"
[ -f "$L/models.log" ] && { echo "== models (JSON, one run per line)"; cat "$L/models.log"; }
echo
cat "$L/status.txt"
