// models/clip_tokenizer.h: CLIP's byte-level BPE tokenizer, id for id the same as OpenAI's
// clip/simple_tokenizer.py and clip.tokenize (ftfy.fix_text is the one step left out).
// Reading order: models/text_cleanup.h, then this file; the CLIP text encoder consumes its ids.
// Tested by: ./build/mm_tests --source-file=*test_clip_tokenizer.cpp
//
//   auto tok = mm::ClipTokenizer::from_bpe_file("../shared/refs/bpe_simple_vocab_16e6.txt.gz");
//   tok.encode("hi!👋");                   // {1883, 0, 17686}: id 0 is the piece "!"
//   tok.tokenize("a photo of a cat");      // {49406, 320, 1125, 539, 320, 2368, 49407, 0, ...}, 77 ids
//   mm::Tensor t = tok.tokenize_batch({"a dog", "a cat"});  // int64 [2, 77]
//
// Pipeline of encode(): clip_clean_text (html.unescape twice, whitespace, lower), then the split
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (PCRE2, caseless like CLIP's re.IGNORECASE), then each piece's UTF-8 bytes are mapped to
// printable characters (bytes_to_unicode), "</w>" is appended to the last one, and the pair with
// the lowest merge rank is merged until no ranked pair is left.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace mm {

class ClipTokenizer {
 public:
  using Merge = std::pair<std::string, std::string>;  // e.g. {"i", "n"}, {"th", "e</w>"}

  // `merges` in rank order. An empty `vocab` builds CLIP's: the 256 byte characters, the same
  // with "</w>", one entry per merge (the two halves joined), then <|startoftext|> and
  // <|endoftext|>. A given vocab must hold both special tokens.
  explicit ClipTokenizer(std::vector<Merge> merges,
                         std::unordered_map<std::string, int64_t> vocab = {});

  // OpenAI's bpe_simple_vocab_16e6.txt.gz (gzip) or the same as plain text: the first line is
  // a header, the next 48894 lines (49152 - 256 - 2) are the merges, the rest is ignored, as in
  // simple_tokenizer.py. Errors name the file.
  // A file with fewer merges (mm-mini's, written by data/bpe_trainer.h) is read whole: vocab_size()
  // is then 512 + merges + 2, with SOT and EOT the last two ids.
  static ClipTokenizer from_bpe_file(const std::string& path);
  // Hugging Face vocab.json (token -> id) + merges.txt ("#version" header, one merge a line).
  static ClipTokenizer from_hf_files(const std::string& vocab_json, const std::string& merges_txt);

  // The pre-tokenisation that encode() runs before BPE, exposed for data/bpe_trainer.h so the
  // trained merges see exactly the pieces the tokenizer will: clip_clean_text, then the split
  // regex above. Returns the UTF-8 pieces ("a dog's" -> {"a", "dog", "'s"}).
  std::vector<std::string> split(const std::string& text) const;
  // A piece's UTF-8 bytes mapped to their bytes_to_unicode stand-ins, the symbols BPE merges
  // ("é" = C3 A9 -> "Ã©"; " " -> "Ġ").
  std::string to_byte_symbols(const std::string& piece) const;

  // BPE ids without SOT/EOT. `text` is UTF-8; malformed UTF-8 throws mm::Error.
  std::vector<int64_t> encode(const std::string& text) const;
  // simple_tokenizer.decode: pieces joined, bytes decoded as UTF-8 with U+FFFD for bad
  // sequences, every "</w>" turned into a space (so the result usually ends with one).
  std::string decode(const std::vector<int64_t>& ids) const;

  enum class Truncate { no, yes };
  // clip.tokenize for one text: [SOT, ids..., EOT] padded with zeros to context_length.
  // Truncate::yes keeps the first context_length tokens and makes the last one EOT;
  // Truncate::no throws mm::Error naming the text (shortened), its token count and the
  // context length.
  std::vector<int64_t> tokenize(const std::string& text, int64_t context_length = 77,
                                Truncate truncate = Truncate::no) const;
  // clip.tokenize for a list: int64 [N, context_length] (CLIP returns int32; mm indexes in int64).
  Tensor tokenize_batch(const std::vector<std::string>& texts, int64_t context_length = 77,
                        Truncate truncate = Truncate::no) const;

  int64_t sot() const { return sot_; }
  int64_t eot() const { return eot_; }
  int64_t vocab_size() const { return static_cast<int64_t>(encoder_.size()); }

 private:
  // BPE of one split piece, already mapped by bytes_to_unicode; returns vocab ids.
  std::vector<int64_t> bpe(const std::string& piece) const;
  int64_t id_of(const std::string& symbol, const std::string& piece) const;

  std::unordered_map<std::string, int64_t> encoder_;  // vocab string -> id
  std::unordered_map<int64_t, std::string> decoder_;  // id -> vocab string
  std::unordered_map<std::string, int64_t> ranks_;    // "first second" -> merge rank
  int64_t sot_ = -1, eot_ = -1;

  struct Shared;  // compiled split pattern + per-piece BPE cache (mutex-guarded)
  std::shared_ptr<Shared> shared_;
};

}  // namespace mm
