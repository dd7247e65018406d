// apps/common/model_files.h: finding and loading the model files the apps take: CLIP
// weights (+ optional JSON config), the BPE vocabulary, and the VQGAN (+ optional yaml).
//
// The vocabulary is looked up in this order: --vocab FILE, the model's own vocabulary next to
// it (mm-mini's <stem>.bpe.txt.gz), $MM_VOCAB, OpenAI's or Hugging Face's files next to the
// CLIP weights, then mm's cache folder ($XDG_CACHE_HOME/mm or ~/.cache/mm); the error lists
// every place it looked and how to get the file.
#pragma once
#include <string>

#include "apps/common/clip_preprocess.h"
#include "models/clip.h"
#include "models/clip_tokenizer.h"
#include "models/vqgan.h"

namespace mm::apps {

std::string cache_dir();  // $XDG_CACHE_HOME/mm or $HOME/.cache/mm

// CLIP from any supported weight file; `config_json` (may be empty) overrides what shapes
// cannot tell; else a <stem>.json next to the weights, else the "config" metadata that
// mmtrain writes into its safetensors files.
ClipModel load_clip(const std::string& weights, const std::string& config_json);
// The vocabulary, looked up in this order: --vocab, the model's own <stem>.bpe.txt.gz next to
// the weights (mm-mini's), $MM_VOCAB, bpe_simple_vocab_16e6.txt.gz next to the weights,
// Hugging Face's vocab.json + merges.txt next to the weights, the cache folder. --vocab and
// $MM_VOCAB may name a vocab.json (merges.txt beside it). With expect_vocab_size > 0, a vocabulary of another size is an error naming
// both (ids from the wrong tokenizer would be silent garbage).
ClipTokenizer load_tokenizer(const std::string& vocab_arg, const std::string& clip_weights,
                             int64_t expect_vocab_size = 0);
// How `weights` wants transparent images: Alpha::white for mm-mini's CLIPs (a safetensors
// file whose "kind" metadata is "mm-mini clip": trained on emoji composited on white),
// else Alpha::drop as OpenAI's preprocessing.
Alpha clip_alpha(const std::string& weights);

// A VQGAN from taming's files or an mmtrain safetensors (config in its metadata).
VQGAN load_vqgan(const std::string& weights, const std::string& yaml);

// mm-mini, the default models (models/mini/ in the source tree, or $MM_MODELS):
//   "clip_vit"    the CLIP that mmclip and mmgen use,
//   "clip_resnet" the independently trained judge of generation (and mmclip --model choice),
//   "vqgan"       mmgen's and mmvq's VQGAN.
// Returns the path of <name>.safetensors; the error says where it looked.
std::string default_model(const std::string& name);
std::string default_model_dir();

}  // namespace mm::apps
