// data/bpe_trainer.cpp: byte-level BPE training on CLIP's symbols (see bpe_trainer.h).
// Tested by: ./build-data/mm_tests --source-file=*test_emoji_dataset.cpp
#include "data/bpe_trainer.h"

#include <zlib.h>

#include <fstream>
#include <set>
#include <utility>

#include "engine/error.h"

namespace mm::data {

namespace {

using Pair = std::pair<std::string, std::string>;

// UTF-8 characters of a byte-symbol string; the stand-ins are U+0021..U+0143 (1 or 2 bytes).
std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    while (i + len < s.size() && (static_cast<unsigned char>(s[i + len]) & 0xC0) == 0x80) ++len;
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

// Pair counts plus an ordered view to find the best pair: count descending, then the pair in
// byte order (std::string compares bytes), which is the deterministic tie-break.
struct PairTable {
  std::map<Pair, int64_t> count;
  std::set<std::pair<int64_t, Pair>> by_rank;  // {-count, pair}: begin() is the best
  std::set<Pair> skipped;                      // pairs refused for good (duplicate result)

  void add(const Pair& p, int64_t delta) {
    int64_t& c = count[p];
    if (c > 0) by_rank.erase({-c, p});
    c += delta;
    if (c > 0 && !skipped.count(p)) by_rank.insert({-c, p});
    if (c == 0) count.erase(p);
  }
};

// ClipTokenizer::bpe's merge step: every non-overlapping (first, second), left to right.
std::vector<std::string> apply_merge(const std::vector<std::string>& word, const Pair& p) {
  std::vector<std::string> out;
  for (size_t i = 0; i < word.size();) {
    if (i + 1 < word.size() && word[i] == p.first && word[i + 1] == p.second) {
      out.push_back(p.first + p.second);
      i += 2;
    } else {
      out.push_back(word[i++]);
    }
  }
  return out;
}

}  // namespace

BpeWordCounts count_bpe_words(const std::vector<std::string>& texts, const ClipTokenizer& splitter) {
  BpeWordCounts words;
  for (const std::string& text : texts) {
    for (const std::string& piece : splitter.split(text)) {
      if (piece == "<|startoftext|>" || piece == "<|endoftext|>") continue;
      std::vector<std::string> symbols = utf8_chars(splitter.to_byte_symbols(piece));
      symbols.back() += "</w>";
      ++words[symbols];
    }
  }
  return words;
}

std::vector<ClipTokenizer::Merge> train_bpe(const BpeWordCounts& word_counts, int64_t num_merges,
                                            int64_t min_pair_count) {
  MM_CHECK(num_merges >= 0, "[train_bpe] num_merges must be >= 0, got ", num_merges);
  MM_CHECK(min_pair_count >= 1, "[train_bpe] min_pair_count must be >= 1, got ", min_pair_count);

  std::vector<std::vector<std::string>> words;
  std::vector<int64_t> freq;
  for (const auto& [symbols, n] : word_counts) {
    MM_CHECK(!symbols.empty() && n > 0, "[train_bpe] word counts hold an empty word or a count of ", n);
    words.push_back(symbols);
    freq.push_back(n);
  }

  PairTable pairs;
  std::map<Pair, std::set<size_t>> where;  // pair -> words that hold it (may hold stale entries)
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const Pair p{words[w][i], words[w][i + 1]};
      pairs.add(p, freq[w]);
      where[p].insert(w);
    }

  std::set<std::string> produced;  // the joined strings of the merges so far
  std::vector<ClipTokenizer::Merge> merges;
  while (static_cast<int64_t>(merges.size()) < num_merges && !pairs.by_rank.empty()) {
    const auto [neg_count, best] = *pairs.by_rank.begin();
    if (-neg_count < min_pair_count) break;
    const std::string joined = best.first + best.second;
    if (produced.count(joined)) {  // a second way to spell an existing token: never merge it
      pairs.by_rank.erase(pairs.by_rank.begin());
      pairs.skipped.insert(best);
      continue;
    }
    produced.insert(joined);
    merges.push_back(best);

    const std::set<size_t> holders = std::move(where[best]);
    where.erase(best);
    for (const size_t w : holders) {
      std::vector<std::string>& word = words[w];
      std::vector<std::string> merged = apply_merge(word, best);
      if (merged.size() == word.size()) continue;  // stale entry: the pair left this word earlier
      for (size_t i = 0; i + 1 < word.size(); ++i) pairs.add({word[i], word[i + 1]}, -freq[w]);
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        const Pair p{merged[i], merged[i + 1]};
        pairs.add(p, freq[w]);
        where[p].insert(w);
      }
      word = std::move(merged);
    }
  }
  return merges;
}

int64_t merges_for_vocab_size(int64_t vocab_size) {
  MM_CHECK(vocab_size >= 514, "[bpe] vocab size ", vocab_size,
           " is too small: CLIP's layout needs 512 byte symbols + 2 special tokens, so at least 514");
  return vocab_size - 512 - 2;
}

void write_bpe_file(const std::string& path, const std::vector<ClipTokenizer::Merge>& merges,
                    const std::string& note) {
  std::string text = "#version: 0.2";
  if (!note.empty()) text += " " + note;
  text += "\n";
  for (const auto& [first, second] : merges) {
    MM_CHECK(first.find_first_of(" \t\r\n") == std::string::npos &&
                 second.find_first_of(" \t\r\n") == std::string::npos,
             "[write_bpe_file] merge \"", first, "\" \"", second, "\" holds whitespace; byte symbols never do");
    text += first + " " + second + "\n";
  }
  const bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (gz) {
    // zlib's gzip header carries no file name and a zero mtime: the same merges give the same bytes.
    gzFile file = gzopen(path.c_str(), "wb9");
    MM_CHECK(file != nullptr, "[write_bpe_file] cannot open '", path, "' for writing");
    const int wrote = gzwrite(file, text.data(), static_cast<unsigned>(text.size()));
    const int closed = gzclose(file);
    MM_CHECK(wrote == static_cast<int>(text.size()) && closed == Z_OK, "[write_bpe_file] writing '", path,
             "' failed (wrote ", wrote, " of ", text.size(), " bytes, gzclose ", closed, ")");
  } else {
    std::ofstream f(path, std::ios::binary);
    MM_CHECK(f.good(), "[write_bpe_file] cannot open '", path, "' for writing");
    f << text;
    MM_CHECK(f.good(), "[write_bpe_file] writing '", path, "' failed");
  }
}

}  // namespace mm::data
