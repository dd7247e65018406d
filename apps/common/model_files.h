// apps/common/model_files.h: finding and loading the model files the apps take: CLIP
// weights (+ optional JSON config), the BPE vocabulary, and the VQGAN (+ optional yaml).
//
// The vocabulary is looked up in this order: --vocab FILE, $MM_VOCAB, next to the CLIP
// weights, then mm's cache folder ($XDG_CACHE_HOME/mm or ~/.cache/mm); the error lists
// every place it looked and how to get the file.
#pragma once
#include <string>

#include "models/clip.h"
#include "models/clip_tokenizer.h"
#include "models/vqgan.h"

namespace mm::apps {

std::string cache_dir();  // $XDG_CACHE_HOME/mm or $HOME/.cache/mm

// CLIP from any supported weight file; `config_json` (may be empty) overrides what shapes
// cannot tell; a <stem>.json next to the weights is used when present.
ClipModel load_clip(const std::string& weights, const std::string& config_json);
ClipTokenizer load_tokenizer(const std::string& vocab_arg, const std::string& clip_weights);
VQGAN load_vqgan(const std::string& weights, const std::string& yaml);

// The error for a missing --clip/--vqgan until default models ship.
[[noreturn]] void no_default_model(const char* app, const char* option);

}  // namespace mm::apps
