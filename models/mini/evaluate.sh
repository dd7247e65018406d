#!/usr/bin/env bash
# models/mini/evaluate.sh: the numbers in mm-mini's model cards. Writes models/mini/metrics/:
#   <model>.val.json     on all held-out emoji (needs the fetched dataset, data/emoji/pairs.jsonl)
#   <model>.subset.json  on the committed subset tests/data/emoji_subset (tests/train/test_mini_models.cpp
#                        checks the shipped weights still give these)
#   mmgen.json + mmgen_grid.png: 20 prompts generated with mmgen's defaults, judged by clip_resnet
# and the VQGAN's reconstruction grid (vqgan_reconstructions.png).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=./build
M=models/mini
mkdir -p $M/metrics
SUBSET=tests/data/emoji_subset/pairs.jsonl
for m in clip_vit clip_resnet; do
  $B/mmtrain eval-clip --data $SUBSET --model $M/$m.safetensors --train > $M/metrics/$m.subset.json
done
$B/mmtrain eval-vqgan --data $SUBSET --model $M/vqgan.safetensors > $M/metrics/vqgan.subset.json
if [ -f data/emoji/pairs.jsonl ]; then
  for m in clip_vit clip_resnet; do
    $B/mmtrain eval-clip --data data/emoji/pairs.jsonl --model $M/$m.safetensors --train > $M/metrics/$m.val.json
  done
  $B/mmtrain eval-vqgan --data data/emoji/pairs.jsonl --model $M/vqgan.safetensors \
    --grid $M/vqgan_reconstructions.png > $M/metrics/vqgan.val.json
  $B/mmtrain eval-gen --data data/emoji/pairs.jsonl --grid $M/mmgen_grid.png --seed 0 > $M/metrics/mmgen.json
else
  echo "evaluate.sh: data/emoji/pairs.jsonl not found: only the subset numbers were computed" >&2
fi
