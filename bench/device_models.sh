#!/usr/bin/env bash
# bench/device_models.sh: the model benchmarks on the GPU machine, mm beside PyTorch eager in
# one run: one VQGAN+CLIP step (taming's f16-16384 decoder + ViT-B/32, cutn 32) at 256² and
# 512² in float32 (and bf16 for mm) with each allocator's peak, and ViT-B/32 encoding at
# batch 256 (torch in fp32 and fp16; mm's engine path is `mmbench vit` in device_check.sh).
# mm's binary is the one bench/prepare_device.sh carried in .device/bin (built with the model
# libraries, which the GPU machine lacks). Called by bench/device_check.sh; usage:
#   bash bench/device_models.sh LOG_DIR SECONDS_PER_RUN
# (The carried binary uses the machine's libstdc++, which must be as new as GCC 12's: if it
# is older, the mm runs fail at load time and models-stderr.log says so.)
set -uo pipefail
cd "$(dirname "$0")/.."
L=${1:-/tmp/mm-device-logs}
T=${2:-60}
M=.device/bin/mmbench
mkdir -p "$L"
if [ ! -x $M ]; then
  echo "models: skipped (no .device/bin/mmbench: run bash bench/prepare_device.sh on a CUDA build)"
  exit 0
fi
# The carried libraries, ICU's data unpacked (python's lzma: xz may be missing there).
LIB=/tmp/mm-device-lib
mkdir -p $LIB
for f in .device/lib/*; do
  case "$f" in
    *.xz) python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
            "$f" "$LIB/$(basename "$f" .xz)" ;;
    *) cp "$f" $LIB/ ;;
  esac
done
# CUDA's libraries: where this machine's own CUDA build (device_check.sh's) finds them.
CU=$(ldd /tmp/mm-build/mmbench 2>/dev/null | awk '/libcudart|libcublas|libcudnn/ && $3 ~ /^\// {print $3}' |
     xargs -r -n1 dirname | sort -u | tr '\n' ':')
LDP="$LIB${CU:+:${CU%:}}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # no empty entry (it would mean the current folder)
run_mm() { LD_LIBRARY_PATH="$LDP" timeout "$T" $M "$@" --json 2>>"$L/models-stderr.log"; }
run_torch() { PYTHONUNBUFFERED=1 timeout "$T" python3 bench/peers/torch_models.py "$@" --device cuda 2>>"$L/models-stderr.log"; }
{
  # In order of what the issues ask first, in case the time runs out: the float32 step beside
  # torch at both sizes, then bf16, then ViT-B/32 at batch 256.
  for s in 256 512; do
    run_mm vqgan-clip-step --device cuda --size $s --cutn 32 --repeat 5 || echo "{\"kernel\":\"vqgan-clip-step\",\"impl\":\"mm\",\"size\":$s,\"error\":1}"
    run_torch vqgan-clip-step --size $s --cutn 32 --repeat 5 || echo "{\"kernel\":\"vqgan-clip-step\",\"impl\":\"torch\",\"size\":$s,\"error\":1}"
  done
  for s in 256 512; do
    run_mm vqgan-clip-step --device cuda --size $s --cutn 32 --repeat 5 --precision bf16 || echo "{\"kernel\":\"vqgan-clip-step\",\"impl\":\"mm bf16\",\"size\":$s,\"error\":1}"
  done
  run_torch clip-image --batch 256 --repeat 5 --dtype fp16 || echo '{"kernel":"clip-image","impl":"torch fp16","error":1}'
  run_mm clip-image --device cuda --batch 256 --repeat 5 --precision bf16 || echo '{"kernel":"clip-image","impl":"mm bf16","error":1}'
  run_mm clip-image --device cuda --batch 256 --repeat 5 || echo '{"kernel":"clip-image","impl":"mm","error":1}'
  run_torch clip-image --batch 256 --repeat 5 --dtype fp32 || echo '{"kernel":"clip-image","impl":"torch fp32","error":1}'
} | tee "$L/models.log"
