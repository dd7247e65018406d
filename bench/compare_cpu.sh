#!/usr/bin/env bash
# bench/compare_cpu.sh: mm's CPU kernels against their peers, measured side by side in one run
# with the same thread count: SGEMM vs OpenBLAS (cblas_sgemm) and torch.matmul, and conv2d vs
# torch.nn.functional.conv2d (oneDNN). Prints a table with our/best-peer ratios.
#   bench/compare_cpu.sh                          # threads 2, gemm 512 1024 2048
#   bench/compare_cpu.sh --threads 1 --sizes "1024 2048" --repeat 20 --rounds 3
#   BUILD_DIR=build-gemm bench/compare_cpu.sh      # where mmbench lives (default: build)
#   bench/compare_cpu.sh --head-to-head            # also mm vs OpenBLAS alternating in one process
# Needs: mmbench built (cmake --build $BUILD_DIR --target mmbench), g++ and libopenblas-dev
# (the OpenBLAS peer is compiled here into $BUILD_DIR, never part of the CMake build), and
# optionally Debian's python3-torch under /usr/bin/python3 (its rows say n/a without it).
# --rounds R repeats every measurement R times, interleaved, and keeps each one's best: the
# machine is shared and noisy, so compare ratios from one run. Results go to bench/RESULTS.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
THREADS=2
SIZES="512 1024 2048"
REPEAT=10
ROUNDS=1
HEAD_TO_HEAD=0
PY=/usr/bin/python3   # Debian's python with python3-torch; not a pyenv python3 from PATH

while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --sizes) SIZES="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --head-to-head) HEAD_TO_HEAD=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "compare_cpu.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
  esac
done

MMBENCH="$BUILD_DIR/mmbench"
[[ -x "$MMBENCH" ]] || { echo "compare_cpu.sh: $MMBENCH not found; build it first:" \
  "cmake --build $BUILD_DIR --target mmbench" >&2; exit 1; }

# OpenBLAS 0.3.21 does not recognise Zen 5 and would fall back to SSE3 kernels: force the
# SkylakeX (AVX-512) kernels, N threads, passive waiting, and drop any OPENBLAS_L2_SIZE or
# other OPENBLAS_CORETYPE the environment sets. Applied to the peers' commands only.
PEER_ENV=(env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS="$THREADS"
          OMP_NUM_THREADS="$THREADS" OMP_WAIT_POLICY=PASSIVE)

OPENBLAS_BIN="$BUILD_DIR/openblas_sgemm"
CBLAS_INC=""
[[ -f /usr/include/x86_64-linux-gnu/cblas.h ]] || CBLAS_INC="-I/usr/include/x86_64-linux-gnu/openblas-pthread"
if [[ ! -x "$OPENBLAS_BIN" || "$ROOT/bench/peers/openblas_sgemm.cpp" -nt "$OPENBLAS_BIN" ]]; then
  g++ -O2 $CBLAS_INC "$ROOT/bench/peers/openblas_sgemm.cpp" -lopenblas -o "$OPENBLAS_BIN"
fi

HAVE_TORCH=0
if "$PY" -c "import torch" 2>/dev/null; then
  HAVE_TORCH=1
  # torch.matmul goes through libblas.so.3: make sure that is OpenBLAS, not the reference BLAS.
  ALT=libblas.so.3-x86_64-linux-gnu
  if command -v update-alternatives >/dev/null; then
    CUR="$(update-alternatives --query "$ALT" 2>/dev/null | sed -n 's/^Value: //p')"
    if [[ "$CUR" != *openblas* ]]; then
      OB_LIB="$(update-alternatives --list "$ALT" 2>/dev/null | grep openblas | head -1 || true)"
      if [[ -n "$OB_LIB" && "$(id -u)" = 0 ]]; then
        echo "# setting $ALT -> $OB_LIB (was $CUR)"
        update-alternatives --set "$ALT" "$OB_LIB" >/dev/null
      else
        echo "# warning: $ALT -> $CUR is not OpenBLAS; torch.matmul numbers will be slow" >&2
      fi
    fi
    echo "# torch BLAS: $(update-alternatives --query "$ALT" | sed -n 's/^Value: //p')"
  fi
else
  echo "# $PY has no torch: torch rows are n/a" >&2
fi

MHZ="$(grep -m1 'cpu MHz' /proc/cpuinfo | awk '{print $4}')"
echo "# $(date)  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, ${MHZ} MHz nominal"
echo "# threads=$THREADS repeat=$REPEAT rounds=$ROUNDS  mm micro-kernel: ${MM_GEMM_KERNEL:-auto}  load: $(cut -d' ' -f1-3 /proc/loadavg)"

RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT
run_json() {  # label, command...: appends "label json" or "label null"
  local label="$1"; shift
  local line
  line="$("$@" 2>/dev/null | grep '^{' | tail -1 || true)"
  echo "$label ${line:-null}" >> "$RESULTS"
}

HAS_CONV=0
"$MMBENCH" --list | grep -q '^conv2d' && HAS_CONV=1

for ((round = 0; round < ROUNDS; ++round)); do
  for s in $SIZES; do
    run_json "gemm/$s/mm" "$MMBENCH" gemm --m "$s" --n "$s" --k "$s" --threads "$THREADS" --repeat "$REPEAT" --json
    run_json "gemm/$s/openblas" "${PEER_ENV[@]}" "$OPENBLAS_BIN" --m "$s" --n "$s" --k "$s" --repeat "$REPEAT"
    [[ $HAVE_TORCH = 1 ]] && run_json "gemm/$s/torch" "${PEER_ENV[@]}" "$PY" "$ROOT/bench/peers/torch_cpu.py" \
      matmul --m "$s" --n "$s" --k "$s" --threads "$THREADS" --repeat "$REPEAT"
  done
  # conv2d 3x3, 128 -> 128 channels, 64x64, batch 1, padding 1. mmbench's conv2d comes from
  # another issue: until `mmbench --list` shows it, its row says n/a.
  [[ $HAS_CONV = 1 ]] && run_json "conv2d/128x64x64/mm" "$MMBENCH" conv2d --batch 1 --c-in 128 \
    --c-out 128 --h 64 --w 64 --kernel 3 --padding 1 --threads "$THREADS" --repeat "$REPEAT" --json
  [[ $HAVE_TORCH = 1 ]] && run_json "conv2d/128x64x64/torch" "${PEER_ENV[@]}" "$PY" \
    "$ROOT/bench/peers/torch_cpu.py" conv2d --threads "$THREADS" --repeat "$REPEAT"
done

# Table: best GFLOP/s per (case, impl) over the rounds; ratio = mm / best peer.
"$PY" - "$RESULTS" <<'PYEOF'
import json, sys
best, order = {}, []
for line in open(sys.argv[1]):
    label, payload = line.rstrip("\n").split(" ", 1)
    case, impl = label.rsplit("/", 1)
    if case not in order:
        order.append(case)
    obj = None if payload == "null" else json.loads(payload)
    g = obj.get("gflops") if obj else None
    if g is not None and (best.get((case, impl)) is None or g > best[(case, impl)]):
        best[(case, impl)] = g
    best.setdefault((case, impl), None)
fmt = lambda v: "n/a" if v is None else f"{v:8.1f}"
print(f"{'case':<22}{'mm':>10}{'openblas':>10}{'torch':>10}{'mm/best':>10}   (GFLOP/s)")
for case in order:
    mm = best.get((case, "mm"))
    peers = [best.get((case, p)) for p in ("openblas", "torch")]
    have = [p for p in peers if p is not None]
    ratio = f"{mm / max(have):9.2f}x" if mm is not None and have else "n/a"
    print(f"{case:<22}{fmt(mm):>10}{fmt(peers[0]):>10}{fmt(peers[1]):>10}{ratio:>10}")
PYEOF

# Head to head: mm and OpenBLAS alternate in one process (bench/peers/sgemm_head_to_head.cpp),
# so both see the same background load; the fairest ratio this shared machine gives.
if [[ $HEAD_TO_HEAD = 1 ]]; then
  H2H_BIN="$BUILD_DIR/sgemm_head_to_head"
  g++ -O2 -std=c++17 -I"$ROOT" $CBLAS_INC "$ROOT/bench/peers/sgemm_head_to_head.cpp" \
    "$BUILD_DIR/libmm_engine.a" -lopenblas -lpthread -o "$H2H_BIN"
  for s in $SIZES; do
    "${PEER_ENV[@]}" "$H2H_BIN" --size "$s" --threads "$THREADS" --rounds $((ROUNDS * 4))
  done
fi
