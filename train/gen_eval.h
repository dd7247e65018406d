// train/gen_eval.h: how good mmgen is on mm-mini: generate images for emoji names and let an
// independently trained CLIP (the judge) pick each prompt out of 100 captions.
// Reading order: after train/clip_trainer.h and models/vqgan_clip.h.
// Command line: mmtrain eval-gen. Test: ./build/mm_tests --source-file=*test_train.cpp
//
// Prompts: `held_out` names of held-out emoji and `seen` names of training emoji, drawn with a
// seeded generator from the base emoji (no skin-tone variants). For each prompt, mmgen's
// VQGANCLIP runs with its mm-mini defaults (gen_defaults(true)); the judge embeds the image
// and 100 captions (the prompt and 99 other base-emoji names drawn at random) and the prompt
// counts as found when it ranks in the judge's top 5.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/emoji_dataset.h"
#include "models/clip.h"
#include "models/clip_tokenizer.h"
#include "models/vqgan.h"

namespace mm::train {

struct GenEvalOptions {
  int64_t held_out = 10, seen = 10, captions = 100;
  uint64_t seed = 0;            // prompt and distractor draws
  uint64_t gen_seed = 0;        // mmgen --seed of every image
  int64_t steps = -1;           // -1: mmgen's mm-mini default
  int64_t cutn = -1;            // -1: mmgen's mm-mini default
  double lr = -1;               // -1: mmgen's default
  int init_white = -1;          // -1: mmgen's mm-mini default; 0: random codes; 1: a white canvas
  std::string grid_png;         // "" = no grid
};

struct GenEvalItem {
  std::string prompt;
  bool held_out = false;
  int64_t rank = 0;  // 0 = the judge's first choice
};

struct GenEvalResult {
  std::vector<GenEvalItem> items;
  int64_t found = 0;          // items with rank < 5
  double steps_per_second = 0;  // over all generation steps (loads and judging excluded)
  int64_t steps = 0, cutn = 0, size = 0;
  std::string json() const;
};

GenEvalResult evaluate_generation(const VQGAN& vqgan, const ClipModel& clip, const ClipTokenizer& clip_tok,
                                  const ClipModel& judge, const ClipTokenizer& judge_tok,
                                  const std::vector<data::EmojiPair>& pairs, const GenEvalOptions& options);

}  // namespace mm::train
