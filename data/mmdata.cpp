// data/mmdata.cpp: the command line of mm-mini's training data: build the emoji pairs, print
// their statistics, train the caption tokenizer.
//
//   data/fetch_emoji.sh                                              # npm pack, checksums, data/emoji/
//   mmdata build --src data/emoji --out data/emoji/pairs.jsonl       # join labels and PNGs, split
//   mmdata stats --pairs data/emoji/pairs.jsonl                      # counts; decodes every image
//   mmdata bpe --pairs data/emoji/pairs.jsonl --vocab-size 4096 --out mini_bpe.txt.gz
//              [--min-pair-count 2] [--labels-only]
//
// bpe trains on the train split only: each pair's label and its tags (one text each, so an
// emoji's words count once per style and skin tone), or the labels alone with --labels-only.
// Tested by: ./build-data/mm_tests --source-file=*test_emoji_dataset.cpp (the library parts).
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "data/bpe_trainer.h"
#include "data/emoji_dataset.h"
#include "engine/error.h"

using namespace mm;
using namespace mm::data;

namespace {

struct Args {
  std::string command, src, out, pairs;
  int64_t vocab_size = 4096, min_pair_count = 2, show_misses = 8;
  bool labels_only = false;
};

int usage(FILE* f) {
  std::fprintf(f,
               "usage:\n"
               "  mmdata build --src DIR --out PAIRS.jsonl [--show-misses N]\n"
               "  mmdata stats --pairs PAIRS.jsonl\n"
               "  mmdata bpe --pairs PAIRS.jsonl --out VOCAB.txt.gz [--vocab-size 4096] [--min-pair-count 2]\n"
               "             [--labels-only]\n"
               "DIR is what data/fetch_emoji.sh fetched (default data/emoji).\n");
  return f == stdout ? 0 : 2;
}

Args parse(int argc, char** argv) {
  Args a;
  MM_CHECK(argc >= 2, "mmdata: expected a command (build, stats or bpe)");
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      MM_CHECK(i + 1 < argc, "mmdata: option ", k, " needs a value");
      return argv[++i];
    };
    if (k == "--src") a.src = value();
    else if (k == "--out") a.out = value();
    else if (k == "--pairs") a.pairs = value();
    else if (k == "--vocab-size") a.vocab_size = std::stoll(value());
    else if (k == "--min-pair-count") a.min_pair_count = std::stoll(value());
    else if (k == "--show-misses") a.show_misses = std::stoll(value());
    else if (k == "--labels-only") a.labels_only = true;
    else throw Error(str_cat("mmdata: unknown option '", k, "'"));
  }
  return a;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash + 1);
}

int run_build(const Args& a) {
  MM_CHECK(!a.src.empty() && !a.out.empty(), "mmdata build: needs --src DIR and --out PAIRS.jsonl");
  const BuildReport r = build_emoji_pairs(a.src, parent_dir(a.out));
  write_pairs_jsonl(a.out, r.pairs);
  std::printf("emojibase entries (skin tones included): %lld\n", static_cast<long long>(r.entries));
  for (const StyleReport& s : r.styles) {
    std::printf("%-8s %lld PNGs, %lld joined, %zu entries without a PNG, %lld PNGs unused\n", s.style.c_str(),
                static_cast<long long>(s.pngs), static_cast<long long>(s.joined), s.misses.size(),
                static_cast<long long>(s.unused_pngs));
    for (size_t i = 0; i < s.misses.size() && static_cast<int64_t>(i) < a.show_misses; ++i)
      std::printf("         miss: %s\n", s.misses[i].c_str());
  }
  int64_t val = 0;
  for (const EmojiPair& p : r.pairs) val += p.split == Split::val;
  std::printf("pairs: %zu (train %lld, val %lld = %.1f%%); base emoji %lld, %lld of them val (%.1f%%)\n",
              r.pairs.size(), static_cast<long long>(r.pairs.size() - val), static_cast<long long>(val),
              100.0 * val / std::max<size_t>(r.pairs.size(), 1), static_cast<long long>(r.bases),
              static_cast<long long>(r.val_bases), 100.0 * r.val_bases / std::max<int64_t>(r.bases, 1));
  std::printf("wrote %s\n", a.out.c_str());
  return 0;
}

int run_stats(const Args& a) {
  MM_CHECK(!a.pairs.empty(), "mmdata stats: needs --pairs PAIRS.jsonl");
  const EmojiDataset ds = EmojiDataset::load(a.pairs);
  std::map<std::string, int64_t> by_style_split, by_group;
  std::map<std::string, Split> bases;
  for (const EmojiPair& p : ds.pairs()) {
    ++by_style_split[p.style + " " + split_name(p.split)];
    ++by_group[p.group.empty() ? "(none)" : p.group];
    bases[p.base] = p.split;
  }
  std::printf("pairs: %lld\n", static_cast<long long>(ds.size()));
  for (const auto& [k, n] : by_style_split) std::printf("  %-14s %lld\n", k.c_str(), static_cast<long long>(n));
  int64_t val_bases = 0;
  for (const auto& [b, s] : bases) val_bases += s == Split::val;
  std::printf("base emoji: %zu, val %lld (%.1f%%)\n", bases.size(), static_cast<long long>(val_bases),
              100.0 * val_bases / std::max<size_t>(bases.size(), 1));
  std::printf("groups:\n");
  for (const auto& [g, n] : by_group) std::printf("  %-20s %lld\n", g.c_str(), static_cast<long long>(n));
  // Decode everything once: a truncated PNG or a wrong size fails here, not mid-training.
  double sum = 0.0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const Tensor img = ds.load_image(i);
    const float* x = img.data<float>();
    for (int64_t k = 0; k < img.numel(); ++k) sum += x[k];
  }
  std::printf("all %lld images decode at 64x64; mean value on white %.4f\n", static_cast<long long>(ds.size()),
              sum / std::max<double>(1.0, static_cast<double>(ds.size()) * 3 * 64 * 64));
  return 0;
}

int run_bpe(const Args& a) {
  MM_CHECK(!a.pairs.empty() && !a.out.empty(), "mmdata bpe: needs --pairs PAIRS.jsonl and --out VOCAB.txt.gz");
  const int64_t num_merges = merges_for_vocab_size(a.vocab_size);
  const std::vector<std::string> texts = bpe_training_texts(
      read_pairs_jsonl(a.pairs), a.labels_only ? Captions::labels : Captions::labels_and_tags);
  const ClipTokenizer splitter({});
  const BpeWordCounts words = count_bpe_words(texts, splitter);
  const std::vector<ClipTokenizer::Merge> merges = train_bpe(words, num_merges, a.min_pair_count);
  write_bpe_file(a.out, merges,
                 str_cat("mm data/bpe_trainer: ", merges.size(), " merges on the train captions of ", a.pairs));

  // Read it back the way the models will, and check the compression on the training texts.
  const ClipTokenizer tok = ClipTokenizer::from_bpe_file(a.out);
  int64_t bytes = 0, tokens = 0, not_shorter = 0;
  for (const std::string& t : texts) {
    const int64_t n = static_cast<int64_t>(tok.encode(t).size());
    bytes += static_cast<int64_t>(t.size()), tokens += n;
    if (n >= static_cast<int64_t>(t.size())) {
      if (not_shorter++ < 5) std::printf("  not shorter than its bytes: \"%s\" (%lld tokens)\n", t.c_str(), static_cast<long long>(n));
    }
  }
  std::printf("texts: %zu, distinct words: %zu\n", texts.size(), words.size());
  std::printf("merges: %zu of %lld asked%s; vocab_size %lld (SOT %lld, EOT %lld)\n", merges.size(),
              static_cast<long long>(num_merges),
              static_cast<int64_t>(merges.size()) < num_merges ? " (no pair left at --min-pair-count)" : "",
              static_cast<long long>(tok.vocab_size()), static_cast<long long>(tok.sot()),
              static_cast<long long>(tok.eot()));
  std::printf("train texts: %lld bytes -> %lld tokens (%.2f bytes/token)\n", static_cast<long long>(bytes),
              static_cast<long long>(tokens), static_cast<double>(bytes) / std::max<int64_t>(tokens, 1));
  std::printf("texts with no fewer tokens than bytes: %lld\n", static_cast<long long>(not_shorter));
  std::printf("wrote %s\n", a.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) return usage(stdout);
  try {
    const Args a = parse(argc, argv);
    if (a.command == "build") return run_build(a);
    if (a.command == "stats") return run_stats(a);
    if (a.command == "bpe") return run_bpe(a);
    std::fprintf(stderr, "mmdata: unknown command '%s'\n", a.command.c_str());
    return usage(stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
