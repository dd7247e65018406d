#!/usr/bin/env bash
# bench/compare_models.sh: mm's model benchmarks against PyTorch eager on the CPU, side by side
# in one run with the same thread count: CLIP ViT-B/32 image encoding (batch 1 and 8) and one
# VQGAN+CLIP step (256x256, --cutn 8 by default), random weights of the real shapes.
#   bench/compare_models.sh [--threads 2] [--cutn 8] [--rounds 1]
# Needs mmbench built in $BUILD_DIR (default build), Debian's python3-torch and libopenblas0-pthread
# (benchmarking only; apt-get install python3-torch libopenblas0-pthread).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
THREADS=2 CUTN=8 ROUNDS=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --cutn) CUTN="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) echo "compare_models.sh: unknown flag '$1'" >&2; exit 2 ;;
  esac
done
PY=/usr/bin/python3
"$PY" -c "import torch" 2>/dev/null || { echo "compare_models.sh: needs Debian's python3-torch (apt-get install python3-torch)" >&2; exit 1; }
# Debian's torch calls whatever libblas.so.3 the alternatives point at: without OpenBLAS that is
# the reference BLAS, about 40x slower, and the comparison would be meaningless.
if ! update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep -q '^Value: .*openblas'; then
  echo "compare_models.sh: libblas.so.3 is not OpenBLAS, so torch would run on the reference BLAS;" \
       "apt-get install libopenblas0-pthread" >&2
  exit 1
fi
PEER_ENV=(env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" OMP_WAIT_POLICY=PASSIVE)
field() { sed -E "s/.*\"$1\": ?([0-9.e+-]+).*/\1/"; }
printf "%-28s %12s %12s %8s\n" "benchmark (threads $THREADS)" "mm ms" "torch ms" "speedup"
for round in $(seq "$ROUNDS"); do
  for b in 1 8; do
    mm=$("$BUILD_DIR/mmbench" clip-image --batch $b --threads "$THREADS" --repeat 5 --json | field ms_per_image)
    th=$("${PEER_ENV[@]}" "$PY" "$ROOT/bench/peers/torch_models.py" clip-image --batch $b --threads "$THREADS" | field ms_per_image)
    printf "%-28s %12.1f %12.1f %7.2fx\n" "clip-image ViT-B/32 b$b /img" "$mm" "$th" "$(awk -v a="$th" -v b="$mm" 'BEGIN{print a/b}')"
  done
  mm=$("$BUILD_DIR/mmbench" vqgan-clip-step --size 256 --cutn "$CUTN" --threads "$THREADS" --repeat 3 --json | field ms)
  th=$("${PEER_ENV[@]}" "$PY" "$ROOT/bench/peers/torch_models.py" vqgan-clip-step --size 256 --cutn "$CUTN" --threads "$THREADS" --repeat 3 | field ms)
  printf "%-28s %12.1f %12.1f %7.2fx\n" "vqgan-clip-step 256 cutn$CUTN" "$mm" "$th" "$(awk -v a="$th" -v b="$mm" 'BEGIN{print a/b}')"
done
