// train/clip_trainer.h: contrastive training of a CLIP on the emoji pairs (mm-mini), and the
// validation numbers its model card reports. apps/mmtrain.cpp is the command line.
// Reading order: after train/checkpoint.h and models/clip_train.cpp.
// Test: ./build/mm_tests --source-file=*test_train.cpp
//
//   mm::train::ClipTrainOptions o;
//   o.data = "data/emoji/pairs.jsonl"; o.vocab = "models/mini/bpe.txt.gz"; o.out_dir = "runs/vit";
//   o.config = mm::train::mini_clip_config("vit", tokenizer_vocab_size);
//   mm::train::train_clip(o);   // runs/vit/{checkpoint,model}.safetensors, log.csv, loss.png, metrics.json
//
// One step: B training emoji (a slice of a seeded per-epoch permutation of the emoji, so no
// caption appears twice in a batch), each in one art style drawn at random, shifted by up to
// max_shift pixels on white; symmetric cross-entropy over exp(logit_scale) * cosine similarity
// of every image with every caption (CLIP's loss); AdamW with weight decay on matrices only,
// warm-up + cosine learning rate, global gradient-norm clipping, logit_scale clamped at ln 100.
// Every random draw of step s comes from generators seeded by (seed, s), so a run resumed from
// a checkpoint continues bit for bit.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "data/emoji_dataset.h"
#include "models/clip.h"
#include "models/clip_tokenizer.h"

namespace mm::train {

// mm-mini's two CLIP shapes: "vit" (8x8 patches of 64x64 images) and "resnet" (a narrow
// ModifiedResNet), both with the same text tower over a vocabulary of vocab_size ids.
ClipConfig mini_clip_config(const std::string& vision, int64_t vocab_size);

struct ClipTrainOptions {
  std::string data;      // pairs.jsonl (mmdata build)
  std::string vocab;     // the caption BPE (mmdata bpe)
  std::string out_dir;   // created if missing
  std::string resume;    // a checkpoint.safetensors to continue from ("" = start fresh)
  // A model file to start from (mmtrain export's output, e.g. a shipped mm-mini CLIP): its
  // weights only, with fresh optimiser state and the schedule from step 0; its config must
  // be `config`. For fine-tuning phases when the original checkpoint is gone.
  std::string init;
  ClipConfig config;
  int64_t steps = 2000;  // total, counting the steps of a resumed run
  int64_t batch = 128;
  int64_t warmup = 100;
  double lr = 5e-4;
  double final_lr_ratio = 0.05;
  double weight_decay = 0.2;
  double clip_grad = 1.0;
  int64_t max_shift = 4;
  int64_t val_every = 250;   // 0: only at the end
  int64_t ckpt_every = 250;  // 0: only at the end
  int64_t limit = 0;         // > 0: train on the first `limit` emoji only (tests, quick looks)
  // Order each epoch by family: the base emoji are shuffled, and each one's variants (skin
  // tones, couples' combinations) follow each other, shuffled too. Batches then hold an
  // emoji's variants side by side, hard negatives that teach the tones apart; every emoji
  // still comes once per epoch.
  bool cluster_variants = false;
  // Hard negatives (`--hard-negatives K`, K >= 2; replaces cluster_variants): at the start of
  // each epoch the current model embeds one image of every training emoji (the styles take
  // turns by epoch) and every caption; each emoji, in a seeded random order, is then followed
  // by the K - 1 not yet placed emoji whose captions its image scores highest, the ones it is
  // most likely to mistake it for. A batch holds batch / K such clusters. The order is kept in
  // the checkpoint, so a run resumed mid-epoch continues bit for bit.
  int64_t hard_negatives = 0;
  int64_t stop_after = -1;   // >= 0: stop after this many steps with a checkpoint (tests of resume)
  uint64_t seed = 0;
  bool final_eval = true;    // the per-style training-set accuracy at the end (an extra pass)
  bool quiet = false;
};

struct ClipMetrics {
  int64_t val_images = 0, val_captions = 0;
  double val_loss = 0;             // CLIP's loss per style over all held-out images of that style
  double t2i_recall5 = 0;          // per held-out pair: its image in the caption's top 5 of all held-out images
  double search_top5 = 0;          // per held-out caption: one of its images in the top 5 (mmclip search)
  double zeroshot_top1 = 0, zeroshot_top5 = 0;  // per held-out image, among all held-out captions
  std::map<std::string, double> train_top1_by_style;  // per training image, among all training captions
  std::map<std::string, int64_t> train_images_by_style;
  // The training images that missed top-1: style, true caption, the caption ranked first
  // (`mmtrain eval-clip --train --misses FILE` writes them; not part of json()).
  struct Miss {
    std::string style, truth, predicted;
  };
  std::vector<Miss> train_misses;
  std::string json() const;
};

// Embeds every image of `val` (and of `train` when given) and every distinct caption, and
// computes the numbers above. Images are normalised with CLIP's mean/std; captions are labels.
ClipMetrics evaluate_clip(const ClipModel& model, const ClipTokenizer& tokenizer, const std::vector<data::EmojiPair>& val,
                          const std::vector<data::EmojiPair>* train, int64_t batch = 256);

// A CLIP written by `mmtrain export` (or `mmtrain clip` at its end): the config comes from the
// file's metadata. `who` starts the error message ("[mmtrain vqgan] --perceptual").
ClipModel load_exported_clip(const std::string& path, const std::string& who);

struct ClipTrainResult {
  std::vector<std::pair<int64_t, double>> train_loss, val_loss;
  ClipMetrics final_metrics;
  std::vector<std::pair<std::string, Tensor>> weights;  // the model at the end
};

ClipTrainResult train_clip(const ClipTrainOptions& options);

}  // namespace mm::train
