#!/usr/bin/env bash
# models/mini/train.sh: how mm-mini was made: the exact commands behind the shipped weights.
# Needs the emoji data (bash data/fetch_emoji.sh; ./build/mmdata build ...) and a Release build.
# About 3 hours on 2 CPU cores in all; each model can be trained alone: train.sh vit|vqgan|resnet.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=./build
PAIRS=data/emoji/pairs.jsonl
what=${1:-all}
if [ ! -f "$PAIRS" ]; then
  bash data/fetch_emoji.sh
  $B/mmdata build --src data/emoji --out "$PAIRS"
fi
# The caption tokenizer: a 4096-id byte-level BPE trained on the training captions (labels and tags).
[ -f data/emoji/mini_bpe.txt.gz ] || $B/mmdata bpe --pairs "$PAIRS" --out data/emoji/mini_bpe.txt.gz
VOCAB=data/emoji/mini_bpe.txt.gz
mkdir -p runs
if [ "$what" = all ] || [ "$what" = vit ]; then
  # Phase 1: 1600 steps of random batches (2 threads). Phase 2 resumes it with the schedule
  # stretched to 2400 steps and batches that put each emoji's skin tones side by side (phase 1
  # alone left the tones confused: 56% top-1 on the training emoji).
  $B/mmtrain clip --data $PAIRS --vocab $VOCAB --vision vit --out runs/clip-vit --steps 1600 --batch 128 \
    --lr 1e-3 --warmup 100 --weight-decay 0.1 --val-every 200 --ckpt-every 200 --seed 1
  rm -rf runs/clip-vit-ft && cp -r runs/clip-vit runs/clip-vit-ft
  $B/mmtrain clip --data $PAIRS --vocab $VOCAB --vision vit --out runs/clip-vit-ft --steps 2400 --batch 128 \
    --lr 1e-3 --warmup 100 --weight-decay 0.1 --val-every 200 --ckpt-every 200 --seed 1 --cluster-variants \
    --resume runs/clip-vit-ft/checkpoint.safetensors
  # Phase 3: the schedule stretched again to 4800 steps, clustered batches; stopped at 4200.
  rm -rf runs/clip-vit-ft2 && cp -r runs/clip-vit-ft runs/clip-vit-ft2
  $B/mmtrain clip --data $PAIRS --vocab $VOCAB --vision vit --out runs/clip-vit-ft2 --steps 4800 --batch 128 \
    --lr 1e-3 --warmup 100 --weight-decay 0.1 --val-every 400 --ckpt-every 200 --seed 1 --cluster-variants \
    --stop-after 4200 --resume runs/clip-vit-ft2/checkpoint.safetensors
  $B/mmtrain export --resume runs/clip-vit-ft2/checkpoint.safetensors --out runs/clip-vit-ft2/model.safetensors
  # Phase 4 (fourth session; phase 3's checkpoint was gone, so it starts from the exported
  # step-4200 weights with a fresh optimiser): a new 1600-step schedule at a fifth of the peak
  # lr, shifts of at most 2 px, clustered batches for 400 steps. Phase 5 resumes it with
  # hard-negative batches (clusters of 8 emoji that the model confuses; most training-set
  # misses were between different emoji of one skin tone, not between tones).
  $B/mmtrain clip --data $PAIRS --vocab $VOCAB --vision vit --out runs/clip-vit-ft4 --steps 1600 --batch 128 \
    --lr 2e-4 --warmup 50 --weight-decay 0.1 --max-shift 2 --val-every 400 --ckpt-every 200 --seed 4 \
    --cluster-variants --stop-after 400 --init runs/clip-vit-ft2/model.safetensors
  rm -rf runs/clip-vit-ft5 && cp -r runs/clip-vit-ft4 runs/clip-vit-ft5
  $B/mmtrain clip --data $PAIRS --vocab $VOCAB --vision vit --out runs/clip-vit-ft5 --steps 1600 --batch 128 \
    --lr 2e-4 --warmup 50 --weight-decay 0.1 --max-shift 2 --val-every 400 --ckpt-every 200 --seed 4 \
    --hard-negatives 8 --resume runs/clip-vit-ft5/checkpoint.safetensors
fi
if [ "$what" = all ] || [ "$what" = vqgan ]; then
  # Three phases, as it happened (a resumed run is bit-identical to an uninterrupted one, so
  # these commands reproduce the shipped weights): the schedule was stretched twice, and the
  # PatchGAN (taming's adaptive weight, times 0.1) joined at step 2400; stopped at 2750.
  V="$B/mmtrain vqgan --data $PAIRS --out runs/vqgan --batch 16 --lr 1e-3 --warmup 100 --disc-weight 0.1
     --val-every 250 --ckpt-every 250 --seed 2"
  $V --steps 1500 --disc-start 750 --stop-after 750
  $V --steps 2000 --disc-start 1500 --stop-after 1500 --resume runs/vqgan/checkpoint.safetensors
  $V --steps 3000 --disc-start 2400 --stop-after 2750 --resume runs/vqgan/checkpoint.safetensors
  $B/mmtrain export --resume runs/vqgan/checkpoint.safetensors --out runs/vqgan/model.safetensors
fi
if [ "$what" = all ] || [ "$what" = resnet ]; then
  $B/mmtrain clip --data $PAIRS --vocab $VOCAB --vision resnet --out runs/clip-resnet --steps 1200 --batch 128 \
    --lr 1e-3 --warmup 100 --weight-decay 0.1 --val-every 200 --ckpt-every 200 --seed 3 --cluster-variants
fi
# The shipped files: the fp16 weights plus each CLIP's vocabulary under the model's name.
if [ "$what" = all ]; then
  cp runs/clip-vit-ft5/model.safetensors models/mini/clip_vit.safetensors
  cp runs/clip-resnet/model.safetensors models/mini/clip_resnet.safetensors
  cp runs/vqgan/model.safetensors models/mini/vqgan.safetensors
  cp $VOCAB models/mini/clip_vit.bpe.txt.gz
  cp $VOCAB models/mini/clip_resnet.bpe.txt.gz
fi
