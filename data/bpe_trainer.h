// data/bpe_trainer.h: trains a small byte-level BPE vocabulary shaped like CLIP's (mm-mini's text
// tokenizer) and writes it in the format of OpenAI's bpe_simple_vocab_16e6.txt.gz, so that
// mm::ClipTokenizer::from_bpe_file reads it unchanged.
// Reading order: after models/clip_tokenizer.h, whose pre-tokenisation it reuses; data/mmdata.cpp
// runs it ("mmdata bpe").
// Tested by: ./build-data/mm_tests --source-file=*test_emoji_dataset.cpp
//
//   mm::ClipTokenizer splitter({});   // no merges: only the cleanup, split and byte symbols
//   auto words = mm::data::count_bpe_words({"hug hug pug", "pun bun"}, splitter);
//   auto merges = mm::data::train_bpe(words, /*num_merges=*/3582, /*min_pair_count=*/2);
//   mm::data::write_bpe_file("mini_bpe.txt.gz", merges, "mm-mini emoji captions");
//   auto tok = mm::ClipTokenizer::from_bpe_file("mini_bpe.txt.gz");  // vocab 512 + merges + 2
//
// The algorithm (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword
// Units", on CLIP's symbols):
//   1. every text goes through ClipTokenizer::split (clip_clean_text + CLIP's regex); each piece's
//      bytes become bytes_to_unicode characters and the last one gets "</w>" (the word end);
//   2. count every adjacent symbol pair over all words, weighted by word frequency;
//   3. merge the most frequent pair everywhere (non-overlapping, left to right, as
//      ClipTokenizer::bpe applies it); ties go to the smallest pair in byte order (first symbol,
//      then second), so the result is the same on every machine;
//   4. repeat until num_merges merges exist or the best pair occurs fewer than min_pair_count times.
// A pair whose joined string an earlier merge already produced (e.g. "a"+"bc" after "ab"+"c") is
// skipped: CLIP's vocab gives each merge result its own id, and a duplicate string would leave a
// hole in the ids.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/clip_tokenizer.h"

namespace mm::data {

// Pre-tokenised words and how often each occurs: symbols ("h", "u", "g</w>") -> count.
using BpeWordCounts = std::map<std::vector<std::string>, int64_t>;

// Splits every text the way `splitter.encode` would and counts the resulting symbol sequences.
// Special tokens (<|startoftext|>, <|endoftext|>) are skipped: they are never merged.
BpeWordCounts count_bpe_words(const std::vector<std::string>& texts, const ClipTokenizer& splitter);

// Learns up to num_merges merges in rank order (see the header comment). min_pair_count >= 1.
std::vector<ClipTokenizer::Merge> train_bpe(const BpeWordCounts& words, int64_t num_merges,
                                            int64_t min_pair_count = 1);

// Merges that a vocab of vocab_size ids leaves room for: vocab_size - 256 - 256 - 2 (the byte
// symbols, the same with "</w>", SOT and EOT). Throws when vocab_size < 514.
int64_t merges_for_vocab_size(int64_t vocab_size);

// Writes "#version: 0.2 <note>" and then one "first second" line per merge, gzip-compressed when
// path ends in ".gz" (as OpenAI's file is), plain text otherwise. Throws naming the path on failure.
void write_bpe_file(const std::string& path, const std::vector<ClipTokenizer::Merge>& merges,
                    const std::string& note);

}  // namespace mm::data
