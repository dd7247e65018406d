// tests/models/test_clip_tokenizer.cpp: ClipTokenizer against OpenAI's clip.tokenize on every case
// of ../shared/refs/tokenizer_cases.json (ids, truncation, untruncated length), plus Python's
// html.unescape / str.lower edge cases, decode, Hugging Face files and the error messages.
// Run: ./build/mm_tests --source-file=*test_clip_tokenizer.cpp
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/errors.h"
#include "engine/mm.h"
#include "models/clip_tokenizer.h"
#include "models/text_cleanup.h"
#include "tests/refs.h"

using namespace mm;

using mm::testing::error_of;

namespace {

const std::string kCasesPath = testing::refs_path("tokenizer_cases.json");
const std::string kBpePath = testing::refs_path("bpe_simple_vocab_16e6.txt.gz");

// Prints "SKIPPED: ..." (ctest reports the file as skipped) when a file is missing.
bool refs_present() {
  return testing::refs_available("tokenizer_cases.json") && testing::refs_available("bpe_simple_vocab_16e6.txt.gz");
}

// Loaded once: every SUBCASE re-runs its TEST_CASE from the top.
const ClipTokenizer& clip_tokenizer() {
  static const ClipTokenizer tok = ClipTokenizer::from_bpe_file(kBpePath);
  return tok;
}
const nlohmann::json& cases() {
  static const nlohmann::json j = [] {
    std::ifstream f(kCasesPath);
    return nlohmann::json::parse(f);
  }();
  return j;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// A scratch directory for files the tests write, removed at the end of the scope.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() / ("mm_test_clip_tokenizer_" + std::to_string(getpid()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
};

std::string unescape(const std::string& s) { return u32_to_utf8(html_unescape(utf8_to_u32(s, "test"))); }

}  // namespace

TEST_CASE("clip_tokenizer reference cases (tokenizer_cases.json)") {
  if (!refs_present()) return;
  const ClipTokenizer& tok = clip_tokenizer();
  static size_t checked = 0;
  const nlohmann::json& all = cases();
  for (size_t i = 0; i < all.size(); ++i) {
    const nlohmann::json& c = all[i];
    const std::string name = c.at("category").get<std::string>() + " #" + std::to_string(i);
    SUBCASE(name.c_str()) {
      const std::string text = from_hex(c.at("utf8_hex").get<std::string>());
      const auto L = c.at("context_length").get<int64_t>();
      const bool truncated = c.at("truncated").get<bool>();
      const auto untruncated = c.at("untruncated_length").get<int64_t>();
      std::vector<int64_t> expected = c.at("ids").get<std::vector<int64_t>>();
      expected.resize(static_cast<size_t>(L), 0);  // clip.tokenize pads with zeros
      INFO("text: \"", text, "\" context_length ", L);
      CHECK(c.at("text").get<std::string>() == text);

      CHECK(tok.tokenize(text, L, ClipTokenizer::Truncate::yes) == expected);
      CHECK(static_cast<int64_t>(tok.encode(text).size()) + 2 == untruncated);
      if (truncated) {
        CHECK_THROWS_AS(tok.tokenize(text, L, ClipTokenizer::Truncate::no), Error);
      } else {
        CHECK(tok.tokenize(text, L, ClipTokenizer::Truncate::no) == expected);
      }
      ++checked;
    }
  }
  // Only the last re-run has entered every subcase once.
  if (checked == all.size()) MESSAGE("clip_tokenizer: checked ", checked, " cases of ", kCasesPath);
}

TEST_CASE("clip_tokenizer vocab, special tokens and batch") {
  if (!refs_present()) return;
  const ClipTokenizer& tok = clip_tokenizer();
  CHECK(tok.vocab_size() == 49408);
  CHECK(tok.sot() == 49406);
  CHECK(tok.eot() == 49407);
  CHECK(tok.encode("hi!👋") == std::vector<int64_t>{1883, 0, 17686});  // id 0 is "!"

  const Tensor t = tok.tokenize_batch({"a photo of a cat", ""}, 8);
  CHECK(t.dtype() == DType::i64);
  CHECK(t.shape() == Shape{2, 8});
  CHECK(t.to_vector<int64_t>() ==
        std::vector<int64_t>{49406, 320, 1125, 539, 320, 2368, 49407, 0, 49406, 49407, 0, 0, 0, 0, 0, 0});
}

TEST_CASE("clip_tokenizer decode") {
  if (!refs_present()) return;
  const ClipTokenizer& tok = clip_tokenizer();
  SUBCASE("round trip of plain lowercase ASCII words") {
    for (const std::string text : {"a photo of a cat", "the quick brown fox jumps over the lazy dog",
                                   "supercalifragilisticexpialidocious", "x"}) {
      CHECK(tok.decode(tok.encode(text)) == text + " ");  // every word ends in "</w>" -> ' '
    }
  }
  SUBCASE("punctuation becomes its own word") { CHECK(tok.decode(tok.encode("Hello, World!")) == "hello , world ! "); }
  SUBCASE("special tokens decode to their text") {
    CHECK(tok.decode({tok.sot(), 320, tok.eot()}) == "<|startoftext|>a <|endoftext|>");
  }
  SUBCASE("broken UTF-8 becomes one U+FFFD per maximal subpart, like Python's errors='replace'") {
    // ids 172, 253: the byte symbols of 0xF0 and 0x9F (a cut emoji); 343: "x</w>"
    CHECK(tok.decode({172, 253, 343}) == "\xEF\xBF\xBDx ");
  }
  SUBCASE("unknown id") {
    CHECK(error_of([&] { tok.decode({49408}); }).find("id 49408 is not in the vocab") != std::string::npos);
  }
}

TEST_CASE("clip_tokenizer text cleanup matches Python") {
  SUBCASE("html.unescape edge cases (expected from CPython 3.11)") {
    CHECK(unescape("&ampxyz;") == "&xyz;");   // longest legacy prefix
    CHECK(unescape("&notit;") == "\u00ACit;");
    CHECK(unescape("&copy2024") == "\u00A92024");
    CHECK(unescape("&lt&gt") == "<>");
    CHECK(unescape("&AMP;x") == "&x");
    CHECK(unescape("&#0;") == "\uFFFD");
    CHECK(unescape("&#x80;") == "\u20AC");  // windows-1252 remap
    CHECK(unescape("&#xD800;") == "\uFFFD");
    CHECK(unescape("&#99999999999;") == "\uFFFD");
    CHECK(unescape("&#1;").empty());
    CHECK(unescape("&#13;") == "\r");
    CHECK(unescape("&#x1F600") == "\U0001F600");
    CHECK(unescape("&#65&#66;") == "AB");
    CHECK(unescape("&#x00000041;") == "A");
    CHECK(unescape("&#") == "&#");
    CHECK(unescape("&;") == "&;");
    CHECK(unescape("&#x;") == "&#x;");
    CHECK(unescape("&abcdefghijklmnopqrstuvwxyz0123456789;") == "&abcdefghijklmnopqrstuvwxyz0123456789;");
  }
  SUBCASE("str.lower full case mapping") {
    CHECK(u32_to_utf8(python_lower(utf8_to_u32("\u0130", "test"))) == "i\u0307");
    CHECK(u32_to_utf8(python_lower(utf8_to_u32("ΟΔΥΣΣΕΥΣ", "test"))) == "οδυσσευς");
    CHECK(u32_to_utf8(python_lower(utf8_to_u32("\u1E9E", "test"))) == "\u00DF");
  }
  SUBCASE("whitespace: strip uses str.isspace, the collapse uses the regex module's \\s") {
    CHECK(clip_clean_text("\x1c a \xC2\xA0\t b\x1f") == "a b");
    CHECK(clip_clean_text("a\x1c" "b") == "a\x1c" "b");  // U+001C is not White_Space
    CHECK(clip_clean_text("&amp;amp;nbsp;") == "&nbsp;");  // unescaped twice, not three times
  }
  SUBCASE("malformed UTF-8 names the byte") {
    CHECK(error_of([] { clip_clean_text("ab\xC3"); }).find("not valid UTF-8 at byte 2") != std::string::npos);
    CHECK(error_of([] { clip_clean_text("\xED\xA0\x80"); }).find("not valid UTF-8") != std::string::npos);
  }
}

TEST_CASE("clip_tokenizer from merges and Hugging Face files") {
  const TempDir dir;
  SUBCASE("from_hf_files on a tiny vocab") {
    const std::string vocab = dir.write("vocab.json",
        R"({"h": 0, "i": 1, "h</w>": 2, "i</w>": 3, "hi</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6})");
    const std::string merges = dir.write("merges.txt", "#version: 0.2\nh i</w>\n");
    const ClipTokenizer tok = ClipTokenizer::from_hf_files(vocab, merges);
    CHECK(tok.vocab_size() == 7);
    CHECK(tok.sot() == 5);
    CHECK(tok.eot() == 6);
    CHECK(tok.encode("HI") == std::vector<int64_t>{4});
    CHECK(tok.encode("ih") == std::vector<int64_t>{1, 2});
    CHECK(tok.tokenize("hi hi", 5) == std::vector<int64_t>{5, 4, 4, 6, 0});
    CHECK(tok.decode({4, 1, 2}) == "hi ih ");
    // A piece whose bytes are missing from a small vocab is an error, not a silent drop.
    CHECK(error_of([&] { tok.encode("x"); }).find("\"x</w>\" of piece \"x\" is not in the vocab") != std::string::npos);
  }
  SUBCASE("constructor from merges builds CLIP's vocab layout") {
    const ClipTokenizer tok(std::vector<ClipTokenizer::Merge>{{"h", "i</w>"}, {"c", "a"}});
    CHECK(tok.vocab_size() == 512 + 2 + 2);
    CHECK(tok.sot() == 514);
    CHECK(tok.eot() == 515);
    CHECK(tok.encode("hi hi!") == std::vector<int64_t>{512, 512, 256});  // "!</w>" = 256 + 0
    CHECK(tok.encode("cab") == std::vector<int64_t>{513, 256 + ('b' - '!')});
  }
  SUBCASE("from_bpe_file on a plain-text merges file") {
    const std::string path = dir.write("merges_plain.txt", "header line\nh i</w>\nc a\n");
    const ClipTokenizer tok = ClipTokenizer::from_bpe_file(path);
    CHECK(tok.vocab_size() == 516);
    CHECK(tok.encode("hi") == std::vector<int64_t>{512});
  }
}

TEST_CASE("clip_tokenizer errors") {
  const TempDir dir;
  SUBCASE("missing file") {
    const std::string msg = error_of([] { ClipTokenizer::from_bpe_file("/nonexistent/bpe.txt.gz"); });
    CHECK(msg.find("cannot open '/nonexistent/bpe.txt.gz'") != std::string::npos);
    CHECK(error_of([] { ClipTokenizer::from_hf_files("/nonexistent/vocab.json", "/nonexistent/m.txt"); })
              .find("/nonexistent/vocab.json") != std::string::npos);
  }
  SUBCASE("corrupt gzip") {
    const std::string path = dir.write("corrupt.txt.gz", std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage!", 18));
    const std::string msg = error_of([&] { ClipTokenizer::from_bpe_file(path); });
    INFO(msg);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("not a readable gzip") != std::string::npos);
  }
  SUBCASE("truncated gzip") {
    if (!refs_present()) return;
    std::ifstream f(kBpePath, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const std::string path = dir.write("truncated.txt.gz", bytes.substr(0, bytes.size() / 2));
    const std::string msg = error_of([&] { ClipTokenizer::from_bpe_file(path); });
    INFO(msg);
    CHECK(msg.find(path) != std::string::npos);
  }
  SUBCASE("bad merge line") {
    const std::string path = dir.write("bad.txt", "header\na b c\n");
    CHECK(error_of([&] { ClipTokenizer::from_bpe_file(path); }).find(path + ":2 expects a merge") != std::string::npos);
  }
  SUBCASE("over-long text without truncation") {
    if (!refs_present()) return;
    std::string text;
    for (int i = 0; i < 100; ++i) text += "cat ";
    const std::string msg = error_of([&] { clip_tokenizer().tokenize(text, 77); });
    INFO(msg);
    CHECK(msg.find("text \"cat cat") != std::string::npos);
    CHECK(msg.find("...\"") != std::string::npos);  // shortened
    CHECK(msg.find("has 102 tokens") != std::string::npos);
    CHECK(msg.find("context_length 77") != std::string::npos);
    CHECK(clip_tokenizer().tokenize(text, 77, ClipTokenizer::Truncate::yes).back() == clip_tokenizer().eot());
  }
}
