// data/emoji_dataset.h: the emoji image-caption pairs that mm-mini (a mini-CLIP and a mini-VQGAN
// at 64x64) trains on: joining emojibase's English labels to the 64x64 PNGs of two art styles,
// the fixed train/val split, and loading images as tensors composited on white.
// Reading order: data/fetch_emoji.sh fetches the files; this file turns them into pairs;
// data/bpe_trainer.h trains the caption tokenizer; data/mmdata.cpp is the command line.
// Tested by: ./build-data/mm_tests --source-file=*test_emoji_dataset.cpp
//
//   // once: data/fetch_emoji.sh && mmdata build --src data/emoji --out data/emoji/pairs.jsonl
//   auto train = mm::data::EmojiDataset::load("data/emoji/pairs.jsonl", mm::data::Subset::train);
//   const mm::data::EmojiPair& p = train.pair(0);   // p.label: "grinning face", p.style: "google"
//   mm::Generator gen(0);
//   mm::data::Augment aug;
//   aug.max_shift = 4;                                // random translation, white fill
//   mm::Tensor x = train.load_batch({0, 1, 2}, aug, &gen);   // x: [3, 3, 64, 64] in [0, 1]
//
// The caption of a pair is its emojibase label ("woman teacher: medium skin tone"); its tags and
// group name travel as separate fields for prompt templates.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace mm::data {

// ---- hexcodes and the split ------------------------------------------------------------

// "1f469-200d-1f3eb" / "2764-FE0F" -> "1F469-200D-1F3EB" / "2764": upper case, FE0F (variation
// selector 16) dropped. emoji-datasource file names and emojibase hexcodes keep or drop FE0F
// inconsistently, so both sides are joined on this form. Throws on anything but hex digits and
// dashes (naming the input).
std::string normalize_hexcode(const std::string& hexcode);

// FNV-1a, 64-bit (offset basis 14695981039346656037, prime 1099511628211), over the bytes of s.
uint64_t fnv1a64(const std::string& s);
// MurmurHash3's 64-bit finaliser (fmix64): every output bit depends on every input bit.
uint64_t fmix64(uint64_t k);

enum class Split { train, val };
const char* split_name(Split split);  // "train" | "val"

// The held-out rule: a base emoji (without skin tone) is in "val" when
// fmix64(fnv1a64(normalize_hexcode(base))) % 10 == 0. All its styles and skin tones follow it, so
// no val image shares its base emoji with a training image, and the split never moves between
// runs or machines. Why fmix64: FNV-1a's lowest bit is the parity of the input bytes' lowest
// bits, so fnv1a64 % 10 alone can never pick a string with an even count of odd bytes (no
// "X-200D-X" ever went to val, and sequential hexcodes gave 5% instead of 10%).
Split split_of_base(const std::string& base_hexcode);

// ---- building the pairs ----------------------------------------------------------------

// One line of pairs.jsonl:
//   {"path": "...png", "style": "google", "hexcode": "1F469-200D-1F3EB", "label": "woman teacher",
//    "tags": [...], "group": "people & body", "base": "1F469-200D-1F3EB", "split": "train"}
// hexcode and base are emojibase's spelling; path is relative to the directory of the .jsonl.
struct EmojiPair {
  std::string path;
  std::string style;  // "google" (Noto Emoji) | "twitter" (Twemoji)
  std::string hexcode;
  std::string label;
  std::vector<std::string> tags;
  std::string group;
  std::string base;
  Split split = Split::train;
};

struct StyleReport {
  std::string style;
  int64_t pngs = 0;    // PNG files found for the style
  int64_t joined = 0;  // emojibase entries (skins included) that found a PNG
  std::vector<std::string> misses;  // "HEXCODE label" of entries without a PNG, in emojibase order
  int64_t unused_pngs = 0;          // PNGs no emojibase entry asked for
};

struct BuildReport {
  int64_t entries = 0;  // emojibase entries, skin variants included
  int64_t bases = 0;    // base emoji with at least one pair
  int64_t val_bases = 0;
  std::vector<StyleReport> styles;
  std::vector<EmojiPair> pairs;  // in emojibase order; per entry, one pair per style
};

// Reads src_dir/emojibase-data/en/{data,messages}.json and the PNGs under
// src_dir/emoji-datasource-{google,twitter}/img/{google,twitter}/64/ (data/fetch_emoji.sh's layout)
// and joins them. Paths in the pairs are made relative to paths_relative_to (the directory the
// .jsonl will live in). Throws naming the missing file, with the fetch command as hint.
BuildReport build_emoji_pairs(const std::string& src_dir, const std::string& paths_relative_to);

void write_pairs_jsonl(const std::string& path, const std::vector<EmojiPair>& pairs);
// Reads pairs.jsonl; every pair's path is resolved against the file's directory. Throws naming
// the file and line on a malformed line.
std::vector<EmojiPair> read_pairs_jsonl(const std::string& path);

// The texts the caption tokenizer trains on (mmdata bpe): the train split only, one text per
// pair's label and, with Captions::labels_and_tags, one more with its tags joined by spaces.
enum class Captions { labels, labels_and_tags };
std::vector<std::string> bpe_training_texts(const std::vector<EmojiPair>& pairs, Captions which);

// ---- images ----------------------------------------------------------------------------

// Decodes a PNG (any stb_image format) as RGBA and composites it on white:
//   rgb = a * rgb + (1 - a) * 255, then / 255,
// so transparent pixels become white. Returns float32 [3, H, W] in [0, 1]. Errors name the file.
Tensor load_png_on_white(const std::string& path);

enum class HFlip { off, random };  // off by default: a mirrored emoji may no longer match its label
struct Augment {
  HFlip hflip = HFlip::off;  // random: each image mirrored with probability 1/2
  int64_t max_shift = 0;     // each image moved by dx, dy uniform in [-max_shift, max_shift], white fill
};

enum class Subset { all, train, val };

class EmojiDataset {
 public:
  // The pairs of pairs.jsonl in `subset`, in file order. image_size: the H = W every image must have.
  static EmojiDataset load(const std::string& pairs_jsonl, Subset subset = Subset::all,
                           int64_t image_size = 64);
  EmojiDataset(std::vector<EmojiPair> pairs, int64_t image_size = 64);

  int64_t size() const { return static_cast<int64_t>(pairs_.size()); }
  const EmojiPair& pair(int64_t i) const;
  const std::vector<EmojiPair>& pairs() const { return pairs_; }

  // One image on white: [3, image_size, image_size]. Throws naming the file if its size differs.
  Tensor load_image(int64_t i) const;
  // The images of `indices`: [B, 3, image_size, image_size]. Augmentation draws from gen (flip
  // first, then shift, per image in order), so a seed reproduces a batch; gen may be null only
  // when `augment` does nothing.
  Tensor load_batch(const std::vector<int64_t>& indices, const Augment& augment = {},
                    Generator* gen = nullptr) const;

 private:
  std::vector<EmojiPair> pairs_;
  int64_t image_size_;
};

// Mirrors (left-right) and/or shifts one image [C, H, W] into a new tensor, white where nothing
// lands: the augmentation step of load_batch, exposed for tests. dx > 0 moves the content right,
// dy > 0 down; the mirror happens first.
enum class Mirror { no, yes };
Tensor shift_and_flip(const Tensor& image, int64_t dx, int64_t dy, Mirror mirror);

}  // namespace mm::data
