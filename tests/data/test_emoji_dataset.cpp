// tests/data/test_emoji_dataset.cpp: mm-mini's training data (data/emoji_dataset.h) and its BPE
// trainer (data/bpe_trainer.h): hexcode normalisation, the hash split (determinism, ~10% rate,
// pinned values), RGBA-on-white compositing on PNGs written here, augmentation, pairs.jsonl
// round trip, BPE merges computed by hand and read back through ClipTokenizer. The last case
// uses the fetched data in data/emoji/ and says "SKIPPED: ..." when it is absent.
// Run: ./build-data/mm_tests --source-file=*test_emoji_dataset.cpp
#include <doctest/doctest.h>

#include <stb/stb_image_write.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/bpe_trainer.h"
#include "data/emoji_dataset.h"
#include "engine/mm.h"

using namespace mm;
using namespace mm::data;

namespace {

// A scratch directory for files the tests write, removed at the end of the scope.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() / ("mm_test_emoji_dataset_" + std::to_string(getpid()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// Writes a PNG of w x h pixels with `channels` 8-bit channels, row-major, interleaved.
void write_png(const std::filesystem::path& path, int w, int h, int channels, const std::vector<unsigned char>& px) {
  REQUIRE(px.size() == static_cast<size_t>(w * h * channels));
  REQUIRE(stbi_write_png(path.c_str(), w, h, channels, px.data(), w * channels) != 0);
}

void check_close(const Tensor& t, const std::vector<float>& want, const char* what) {
  REQUIRE(t.numel() == static_cast<int64_t>(want.size()));
  const Tensor c = t.contiguous();
  const float* p = c.data<float>();
  float max_err = 0.f;
  for (size_t i = 0; i < want.size(); ++i) {
    const float err = std::fabs(p[i] - want[i]);
    CHECK_MESSAGE(err <= 1e-6f, std::string(what) << " index " << i << ": got " << p[i] << ", want " << want[i]);
    max_err = std::fmax(max_err, err);
  }
  MESSAGE(std::string(what) << ": max abs error " << max_err);
}

std::string hex_upper(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%X", v);
  return buf;
}

}  // namespace

TEST_CASE("normalize_hexcode: upper case, FE0F dropped on both sides, bad input throws") {
  CHECK(normalize_hexcode("1f469-200d-1f3eb") == "1F469-200D-1F3EB");
  CHECK(normalize_hexcode("2764-FE0F") == "2764");
  CHECK(normalize_hexcode("263a-fe0f") == "263A");
  CHECK(normalize_hexcode("1F3F3-FE0F-200D-1F308") == "1F3F3-200D-1F308");
  CHECK(normalize_hexcode("1f3f3-200d-1f308") == "1F3F3-200D-1F308");
  CHECK(normalize_hexcode("0023-FE0F-20E3") == "0023-20E3");
  CHECK(normalize_hexcode("1F600") == "1F600");
  for (const char* bad : {"", "FE0F", "1F600--1F601", "1F60G", "1F600-", "1234567"}) {
    INFO("input \"" << bad << "\"");
    CHECK_THROWS_AS(normalize_hexcode(bad), Error);
  }
  try {
    normalize_hexcode("1F60G");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("[normalize_hexcode] \"1F60G\"") != std::string::npos);
  }
}

TEST_CASE("fnv1a64 test vectors and split_of_base: deterministic, ~10% val, pinned") {
  // The published FNV-1a 64 vectors (www.isthe.com/chongo/tech/comp/fnv).
  CHECK(fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("foobar") == 0x85944171f73967e8ull);

  CHECK(fmix64(0) == 0);
  CHECK(fmix64(fnv1a64("foobar")) == 0xcf5bc660a66b2163ull);

  // Pinned so an accidental change of the rule (hash, input form, modulus) fails here:
  // fmix64(fnv1a64(base)) % 10 is 0 for crying face, 3 for tears of joy, 6 for thumbs up.
  CHECK(split_of_base("1F622") == Split::val);
  CHECK(split_of_base("1F600") == Split::train);
  CHECK(split_of_base("1F602") == Split::train);
  CHECK(split_of_base("1F44D") == Split::train);
  CHECK(split_of_base("1F469-200D-1F3EB") == Split::train);
  // The split hashes the normalised form: case and FE0F do not move an emoji.
  CHECK(split_of_base("1f622") == Split::val);
  CHECK(split_of_base("1F622-FE0F") == Split::val);

  SUBCASE("rate on 20000 synthetic hexcodes 1F000.. and 1F000-200D-1F000..") {
    // Each family on its own: plain FNV-1a % 10 put 10.4% of the first and 0% of the second in val.
    for (const int family : {0, 1}) {
      int64_t val = 0, n = 0;
      for (uint32_t i = 0; i < 10000; ++i) {
        const std::string h =
            family == 0 ? hex_upper(0x1F000 + i) : hex_upper(0x1F000 + i) + "-200D-" + hex_upper(0x1F000 + i);
        const Split s = split_of_base(h);
        CHECK(split_of_base(h) == s);  // same answer on a second call
        val += s == Split::val;
        ++n;
      }
      const double rate = static_cast<double>(val) / n;
      MESSAGE("family " << family << ": val rate " << rate << " (" << val << " of " << n << ")");
      CHECK(rate > 0.09);
      CHECK(rate < 0.11);
    }
  }
}

TEST_CASE("load_png_on_white: RGBA composited on white, RGB unchanged") {
  TempDir tmp;
  SUBCASE("RGBA 2x2: opaque red, transparent black, half-alpha blue, opaque green") {
    const auto path = tmp.path / "rgba.png";
    write_png(path, 2, 2, 4, {255, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255, 128, 0, 255, 0, 255});
    const Tensor img = load_png_on_white(path.string());
    REQUIRE(img.shape() == Shape{3, 2, 2});
    // rgb = a*rgb + (1-a)*255, / 255; for alpha 128: r = g = 127/255, b = (128 + 127)/255 = 1.
    const float h = 127.0f / 255.0f;
    check_close(img, {1, 1, h, 0,  // R plane
                      0, 1, h, 1,  // G plane
                      0, 1, 1, 0},  // B plane
                "rgba 2x2");
  }
  SUBCASE("RGB 3x1 (no alpha channel) keeps its colours") {
    const auto path = tmp.path / "rgb.png";
    write_png(path, 3, 1, 3, {10, 20, 30, 0, 0, 0, 255, 255, 255});
    const Tensor img = load_png_on_white(path.string());
    REQUIRE(img.shape() == Shape{3, 1, 3});
    check_close(img, {10 / 255.f, 0, 1, 20 / 255.f, 0, 1, 30 / 255.f, 0, 1}, "rgb 3x1");
  }
  SUBCASE("a missing file names the path") {
    try {
      load_png_on_white((tmp.path / "nope.png").string());
      FAIL("expected mm::Error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("nope.png") != std::string::npos);
    }
  }
}

TEST_CASE("shift_and_flip: white fill, dx right, dy down, mirror first") {
  // one channel, H=2, W=3: [[1 2 3] [4 5 6]] / 10
  const Tensor img = Tensor::from_vector(std::vector<float>{.1f, .2f, .3f, .4f, .5f, .6f}, Shape{1, 2, 3});
  SUBCASE("dx=1 dy=0 Mirror::no") { check_close(shift_and_flip(img, 1, 0, Mirror::no), {1, .1f, .2f, 1, .4f, .5f}, "dx=1"); }
  SUBCASE("dx=0 dy=-1 Mirror::no") { check_close(shift_and_flip(img, 0, -1, Mirror::no), {.4f, .5f, .6f, 1, 1, 1}, "dy=-1"); }
  SUBCASE("dx=0 dy=0 Mirror::yes") { check_close(shift_and_flip(img, 0, 0, Mirror::yes), {.3f, .2f, .1f, .6f, .5f, .4f}, "mirror"); }
  SUBCASE("dx=-1 dy=1 Mirror::yes") { check_close(shift_and_flip(img, -1, 1, Mirror::yes), {1, 1, 1, .2f, .1f, 1}, "mirror+shift"); }
}

TEST_CASE("EmojiDataset: pairs.jsonl round trip, batches, reproducible augmentation") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.path / "img");
  std::vector<EmojiPair> pairs;
  for (int k = 0; k < 3; ++k) {
    // 8x8 RGBA: an opaque square of grey level 50k in the middle, transparent elsewhere
    std::vector<unsigned char> px(8 * 8 * 4, 0);
    for (int y = 2; y < 6; ++y)
      for (int x = 2; x < 6; ++x)
        for (int c = 0; c < 4; ++c) px[(y * 8 + x) * 4 + c] = c == 3 ? 255 : static_cast<unsigned char>(50 * k);
    write_png(tmp.path / "img" / (std::to_string(k) + ".png"), 8, 8, 4, px);
    pairs.push_back({"img/" + std::to_string(k) + ".png", "google", "1F60" + std::to_string(k), "face " + std::to_string(k),
                     {"tag a", "tag b"}, "smileys & emotion", "1F60" + std::to_string(k), k == 1 ? Split::val : Split::train});
  }
  const std::string jsonl = (tmp.path / "pairs.jsonl").string();
  write_pairs_jsonl(jsonl, pairs);

  const std::vector<EmojiPair> back = read_pairs_jsonl(jsonl);
  REQUIRE(back.size() == 3);
  CHECK(back[1].path == (tmp.path / "img" / "1.png").string());  // resolved against the file's folder
  CHECK(back[1].label == "face 1");
  CHECK(back[1].tags == std::vector<std::string>{"tag a", "tag b"});
  CHECK(back[1].group == "smileys & emotion");
  CHECK(back[1].split == Split::val);
  CHECK(EmojiDataset::load(jsonl, Subset::train, 8).size() == 2);
  CHECK(EmojiDataset::load(jsonl, Subset::val, 8).size() == 1);

  const EmojiDataset ds = EmojiDataset::load(jsonl, Subset::all, 8);
  const Tensor plain = ds.load_batch({2, 0});
  REQUIRE(plain.shape() == Shape{2, 3, 8, 8});
  CHECK(plain.at<float>({0, 0, 0, 0}) == 1.0f);                            // transparent corner -> white
  CHECK(std::fabs(plain.at<float>({0, 1, 3, 3}) - 100 / 255.f) < 1e-6f);  // pair 2: grey 100
  CHECK(plain.at<float>({1, 2, 3, 3}) == 0.0f);                            // pair 0: black

  Augment aug;
  aug.hflip = HFlip::random;
  aug.max_shift = 2;
  Generator g1(7), g2(7);
  const Tensor a = ds.load_batch({0, 1, 2, 0}, aug, &g1);
  const Tensor b = ds.load_batch({0, 1, 2, 0}, aug, &g2);
  REQUIRE(a.shape() == Shape{4, 3, 8, 8});
  for (int64_t i = 0; i < a.numel(); ++i) REQUIRE(a.data<float>()[i] == b.data<float>()[i]);
  CHECK_THROWS_AS(ds.load_batch({0}, aug, nullptr), Error);  // random draws need a generator
  CHECK_THROWS_AS(EmojiDataset::load(jsonl, Subset::all, 64).load_image(0), Error);  // 8x8, not 64x64
}

TEST_CASE("train_bpe: merges computed by hand") {
  const ClipTokenizer splitter({});
  // "hug hug hug pug pun bun": words h u g</w> x3, p u g</w>, p u n</w>, b u n</w>.
  // Pair counts: (u,g</w>)=4 (h,u)=3 (p,u)=2 (u,n</w>)=2 (b,u)=1.
  //  1. u g</w> (4)      -> h ug</w> x3, p ug</w>, p u n</w>, b u n</w>
  //  2. h ug</w> (3)     -> (p,ug</w>)=1 (p,u)=1 (u,n</w>)=2 (b,u)=1
  //  3. u n</w> (2)      -> p un</w>, b un</w>: three pairs of count 1, ties in byte order:
  //  4. b un</w>   5. p ug</w>   6. p un</w>   ("b" < "p"; "ug</w>" < "un</w>")
  const BpeWordCounts words = count_bpe_words({"hug hug Hug", "pug pun bun"}, splitter);  // "Hug": lower-cased
  CHECK(words.size() == 4);
  CHECK(words.at({"h", "u", "g</w>"}) == 3);
  const std::vector<ClipTokenizer::Merge> want = {{"u", "g</w>"}, {"h", "ug</w>"}, {"u", "n</w>"},
                                                  {"b", "un</w>"}, {"p", "ug</w>"}, {"p", "un</w>"}};
  SUBCASE("min_pair_count=1, up to 100 merges: all six") { CHECK(train_bpe(words, 100, 1) == want); }
  SUBCASE("min_pair_count=2: the first three") {
    CHECK(train_bpe(words, 100, 2) == std::vector<ClipTokenizer::Merge>(want.begin(), want.begin() + 3));
  }
  SUBCASE("num_merges=2 stops at two") {
    CHECK(train_bpe(words, 2, 1) == std::vector<ClipTokenizer::Merge>(want.begin(), want.begin() + 2));
  }
  SUBCASE("a second spelling of an existing token is skipped") {
    // Hand-made symbols: (ab, c) x2 merges first into "abc"; (a, bc) would make "abc" again.
    const BpeWordCounts w = {{{"ab", "c"}, 2}, {{"a", "bc"}, 1}};
    CHECK(train_bpe(w, 10, 1) == std::vector<ClipTokenizer::Merge>{{"ab", "c"}});
  }
  SUBCASE("bytes beyond ASCII become CLIP's byte symbols") {
    const BpeWordCounts w = count_bpe_words({"é"}, splitter);  // C3 A9 -> U+00C3 U+00A9
    REQUIRE(w.size() == 1);
    CHECK(w.begin()->first == std::vector<std::string>{"\u00c3", "\u00a9</w>"});
  }
  CHECK_THROWS_AS(merges_for_vocab_size(513), Error);
  CHECK(merges_for_vocab_size(4096) == 3582);
}

TEST_CASE("write_bpe_file round-trips through ClipTokenizer::from_bpe_file (gzip and plain)") {
  TempDir tmp;
  const ClipTokenizer splitter({});
  const std::vector<std::string> captions = {"hug hug hug pug pun bun", "woman teacher: medium skin tone",
                                             "man teacher: dark skin tone", "teacher", "grinning face",
                                             "grinning cat", "cat face", "woman", "man", "skin tone"};
  const std::vector<ClipTokenizer::Merge> merges = train_bpe(count_bpe_words(captions, splitter), 1000, 1);
  MESSAGE("tiny corpus: " << merges.size() << " merges");
  for (const char* name : {"mini_bpe.txt.gz", "mini_bpe.txt"}) {
    SUBCASE(name) {
      const std::string path = (tmp.path / name).string();
      write_bpe_file(path, merges, "test corpus");
      const ClipTokenizer tok = ClipTokenizer::from_bpe_file(path);
      // ids: 512 byte symbols, then one per merge in rank order, then SOT, EOT.
      CHECK(tok.vocab_size() == 512 + static_cast<int64_t>(merges.size()) + 2);
      CHECK(tok.sot() == 512 + static_cast<int64_t>(merges.size()));
      CHECK(tok.eot() == tok.sot() + 1);
      const std::vector<int64_t> hug = tok.encode("hug");  // "hug" occurs 3 times: one token
      CHECK(hug.size() == 1);
      CHECK(tok.decode(hug) == "hug ");
      for (const std::string& c : captions) {
        const auto ids = tok.encode(c);
        INFO("caption \"" << c << "\": " << ids.size() << " tokens, " << c.size() << " bytes");
        CHECK(ids.size() < c.size());
        CHECK(tok.decode(ids) == splitter.decode(splitter.encode(c)));  // same text back
      }
    }
  }
}

TEST_CASE("fetched emoji data: build, split by base, images, BPE on the captions") {
  const std::filesystem::path src = std::filesystem::path(MM_SOURCE_DIR) / "data" / "emoji";
  if (!std::filesystem::exists(src / "emojibase-data" / "en" / "data.json")) {
    MESSAGE("SKIPPED: " << (src / "emojibase-data/en/data.json").string() << " is absent (run data/fetch_emoji.sh)");
    return;
  }
  TempDir tmp;
  const BuildReport r = build_emoji_pairs(src.string(), tmp.path.string());
  MESSAGE("pairs " << r.pairs.size() << ", bases " << r.bases << ", val bases " << r.val_bases);
  CHECK(r.pairs.size() > 7000);
  for (const StyleReport& s : r.styles) CHECK(s.joined > 3500);
  const double val_rate = static_cast<double>(r.val_bases) / r.bases;
  CHECK(val_rate > 0.07);
  CHECK(val_rate < 0.13);

  std::map<std::string, std::set<Split>> split_by_base;
  bool found_teacher = false;
  for (const EmojiPair& p : r.pairs) {
    split_by_base[p.base].insert(p.split);
    if (p.hexcode == "1F469-1F3FD-200D-1F3EB") {
      found_teacher = true;
      CHECK(p.label == "woman teacher: medium skin tone");
      CHECK(p.base == "1F469-200D-1F3EB");
      CHECK(p.group == "people & body");
    }
  }
  CHECK(found_teacher);
  for (const auto& [base, splits] : split_by_base) {
    INFO("base " << base);
    CHECK(splits.size() == 1);  // every style and skin tone of a base on the same side
  }

  const std::string jsonl = (tmp.path / "pairs.jsonl").string();
  write_pairs_jsonl(jsonl, r.pairs);
  const EmojiDataset train = EmojiDataset::load(jsonl, Subset::train);
  const Tensor x = train.load_batch({0, train.size() - 1});
  REQUIRE(x.shape() == Shape{2, 3, 64, 64});
  CHECK(x.at<float>({0, 0, 0, 0}) == 1.0f);  // emoji corners are transparent: white

  // mmdata bpe's vocabulary (4096 ids, pairs seen twice or more) on the real training texts.
  // BPE spends its 3582 merges on frequent pairs, so a few rare short words stay one token per
  // byte ("ox", "ewe", "axe": 16 texts of 13356 at the time of writing); a text never gets more
  // tokens than bytes, and all but a handful get fewer.
  const std::vector<std::string> texts = bpe_training_texts(r.pairs, Captions::labels_and_tags);
  const ClipTokenizer splitter({});
  const auto merges = train_bpe(count_bpe_words(texts, splitter), merges_for_vocab_size(4096), 2);
  CHECK(merges.size() == 3582);
  const std::string bpe_path = (tmp.path / "mini_bpe.txt.gz").string();
  write_bpe_file(bpe_path, merges, "test");
  const ClipTokenizer tok = ClipTokenizer::from_bpe_file(bpe_path);
  CHECK(tok.vocab_size() == 4096);
  int64_t bytes = 0, tokens = 0, not_shorter = 0;
  for (const std::string& t : texts) {
    const size_t n = tok.encode(t).size();
    CHECK_MESSAGE(n <= t.size(), "\"" << t << "\": " << n << " tokens for " << t.size() << " bytes");
    bytes += static_cast<int64_t>(t.size()), tokens += static_cast<int64_t>(n);
    not_shorter += n >= t.size();
  }
  MESSAGE(texts.size() << " texts: " << bytes << " bytes -> " << tokens << " tokens; " << not_shorter
                       << " texts not shorter than their bytes");
  CHECK(not_shorter * 200 < static_cast<int64_t>(texts.size()));  // under 0.5%
  CHECK(tokens * 4 < bytes);                                       // over 4 bytes per token
}
