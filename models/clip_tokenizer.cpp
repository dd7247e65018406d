// models/clip_tokenizer.cpp: CLIP's byte-level BPE (see clip_tokenizer.h), following OpenAI's
// clip/simple_tokenizer.py step by step. Libraries: PCRE2 for the split regex, zlib for the gzip
// merges file, ICU (through text_cleanup.cpp) for lowercasing and UTF-8 decoding with U+FFFD.
// Tested by: ./build/mm_tests --source-file=*test_clip_tokenizer.cpp
#include "models/clip_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/ustring.h>
#include <zlib.h>

#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "models/text_cleanup.h"

namespace mm {

namespace {

constexpr const char* kSot = "<|startoftext|>";
constexpr const char* kEot = "<|endoftext|>";
// simple_tokenizer.py keeps merges[1:49152-256-2+1]: a 49152-entry vocab minus the 512 byte
// symbols (the "- 256" and the "+ 1" of the slice) minus the two special tokens.
constexpr size_t kClipMergeCount = 49152 - 256 - 2;

// CLIP's split pattern, adjusted where PCRE2 and Python's `regex` module disagree:
//  - \s is spelled out as the `regex` module's \s (Unicode White_Space); PCRE2's UCP \s also
//    holds U+180E, which Python does not treat as space.
//  - U+0345 (combining ypogegrammeni) is kept out of the last class. Under IGNORECASE the
//    `regex` module tests a property on every case variant; U+0345's variants are Greek iota
//    (a letter), so [^\s\p{L}\p{N}] refuses it while [\p{L}] does not take it either: Python
//    drops it like a space ("a\u0345b" -> "a", "b"). It is the only such code point (checked
//    against Python on all of U+0000..U+10FFFF).
constexpr const char* kSplitPattern =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|"
    "[^\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
    "\\x{205f}\\x{3000}\\x{345}\\p{L}\\p{N}]+";

// bytes_to_unicode(): every byte gets a printable code point so BPE never sees whitespace or
// control bytes. Printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) map to
// themselves; the other 68 bytes map to U+0100.. in byte order. Index = byte.
std::vector<uint32_t> byte_to_code_point() {
  std::vector<uint32_t> table(256, 0);
  std::vector<bool> printable(256, false);
  for (int b = 0; b < 256; ++b)
    printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) table[b] = printable[b] ? static_cast<uint32_t>(b) : next++;
  return table;
}

// The order of bytes_to_unicode().values(): printable bytes first, then the others. This order
// gives the first 256 ids of CLIP's vocab ('!' is id 0).
std::vector<int> vocab_byte_order() {
  const std::vector<uint32_t> table = byte_to_code_point();
  std::vector<int> order;
  for (int b = 0; b < 256; ++b)
    if (table[b] == static_cast<uint32_t>(b)) order.push_back(b);
  for (int b = 0; b < 256; ++b)
    if (table[b] != static_cast<uint32_t>(b)) order.push_back(b);
  return order;
}

std::string code_point_utf8(uint32_t cp) { return u32_to_utf8(std::u32string(1, static_cast<char32_t>(cp))); }

// Splits a merges line on ASCII whitespace (Python's str.split(); merge symbols never hold
// whitespace because bytes_to_unicode maps it away). Throws unless it yields two halves.
ClipTokenizer::Merge parse_merge(const std::string& line, const std::string& path, size_t line_no) {
  std::vector<std::string> parts;
  std::string cur;
  for (const char c : line) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
      if (!cur.empty()) parts.push_back(cur), cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) parts.push_back(cur);
  MM_CHECK(parts.size() == 2, "[ClipTokenizer] ", path, ":", line_no, " expects a merge \"a b\", got \"",
           line, "\" (", parts.size(), " parts)");
  return {parts[0], parts[1]};
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

}  // namespace

struct ClipTokenizer::Shared {
  pcre2_code* split = nullptr;
  std::vector<std::string> byte_encoder;              // byte -> UTF-8 of its printable stand-in
  std::unordered_map<uint32_t, uint8_t> byte_decoder;  // stand-in code point -> byte
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int64_t>> cache;  // split piece -> ids

  Shared() {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    split = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kSplitPattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS, &err, &err_offset, nullptr);
    if (split == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      throw Error(str_cat("[ClipTokenizer] split pattern does not compile at offset ", err_offset,
                          ": ", reinterpret_cast<const char*>(msg)));
    }
    const std::vector<uint32_t> table = byte_to_code_point();
    for (int b = 0; b < 256; ++b) {
      byte_encoder.push_back(code_point_utf8(table[b]));
      byte_decoder[table[b]] = static_cast<uint8_t>(b);
    }
  }
  ~Shared() { pcre2_code_free(split); }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
};

ClipTokenizer::ClipTokenizer(std::vector<Merge> merges, std::unordered_map<std::string, int64_t> vocab)
    : shared_(std::make_shared<Shared>()) {
  for (size_t i = 0; i < merges.size(); ++i)  // a repeated merge keeps its last rank, like the dict
    ranks_[merges[i].first + " " + merges[i].second] = static_cast<int64_t>(i);
  if (vocab.empty()) {
    std::vector<std::string> tokens;
    for (const int b : vocab_byte_order()) tokens.push_back(shared_->byte_encoder[b]);
    for (size_t i = 0; i < 256; ++i) tokens.push_back(tokens[i] + "</w>");
    for (const Merge& m : merges) tokens.push_back(m.first + m.second);
    tokens.push_back(kSot);
    tokens.push_back(kEot);
    for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = static_cast<int64_t>(i);
  }
  encoder_ = std::move(vocab);
  for (const auto& [token, id] : encoder_) decoder_[id] = token;
  MM_CHECK(encoder_.count(kSot) && encoder_.count(kEot), "[ClipTokenizer] vocab of ", encoder_.size(),
           " entries lacks ", encoder_.count(kSot) ? kEot : kSot);
  sot_ = encoder_.at(kSot);
  eot_ = encoder_.at(kEot);
}

ClipTokenizer ClipTokenizer::from_bpe_file(const std::string& path) {
  // gzread also reads a file that is not gzip-compressed, unchanged ("transparent" mode).
  gzFile file = gzopen(path.c_str(), "rb");
  MM_CHECK(file != nullptr, "[ClipTokenizer::from_bpe_file] cannot open '", path,
           "' (expected OpenAI's bpe_simple_vocab_16e6.txt.gz, e.g. from ../shared/refs)");
  std::string text;
  std::vector<char> buf(1 << 16);
  int got = 0;
  while ((got = gzread(file, buf.data(), static_cast<unsigned>(buf.size()))) > 0) text.append(buf.data(), got);
  int errnum = Z_OK;
  const char* msg = gzerror(file, &errnum);
  const std::string zmsg = msg ? msg : "";
  gzclose(file);
  // Z_BUF_ERROR here means the gzip stream ended early (a truncated download).
  MM_CHECK(got == 0 && errnum == Z_OK, "[ClipTokenizer::from_bpe_file] '", path,
           "' is not a readable gzip or text file: ", zmsg, " (zlib error ", errnum, ")");
  utf8_to_u32(text, ("ClipTokenizer::from_bpe_file " + path).c_str());  // validate only

  const std::vector<std::string> lines = split_lines(text);
  std::vector<Merge> merges;
  for (size_t i = 1; i < lines.size() && i <= kClipMergeCount; ++i) {
    if (lines[i].empty()) continue;  // the trailing newline of a short file
    merges.push_back(parse_merge(lines[i], path, i + 1));
  }
  MM_CHECK(!merges.empty(), "[ClipTokenizer::from_bpe_file] '", path, "' holds no merges after its header line");
  return ClipTokenizer(std::move(merges));
}

ClipTokenizer ClipTokenizer::from_hf_files(const std::string& vocab_json, const std::string& merges_txt) {
  std::ifstream vf(vocab_json);
  MM_CHECK(vf.good(), "[ClipTokenizer::from_hf_files] cannot open vocab '", vocab_json, "'");
  nlohmann::json j;
  try {
    vf >> j;
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("[ClipTokenizer::from_hf_files] '", vocab_json, "' is not valid JSON: ", e.what()));
  }
  MM_CHECK(j.is_object(), "[ClipTokenizer::from_hf_files] '", vocab_json,
           "' must be a JSON object {token: id}, got ", j.type_name());
  std::unordered_map<std::string, int64_t> vocab;
  for (const auto& [token, id] : j.items()) {
    MM_CHECK(id.is_number_integer(), "[ClipTokenizer::from_hf_files] '", vocab_json, "' entry \"", token,
             "\" expects an integer id, got ", id.type_name());
    vocab[token] = id.get<int64_t>();
  }

  std::ifstream mf(merges_txt);
  MM_CHECK(mf.good(), "[ClipTokenizer::from_hf_files] cannot open merges '", merges_txt, "'");
  std::vector<Merge> merges;
  std::string line;
  for (size_t line_no = 1; std::getline(mf, line); ++line_no) {
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
    if (line.empty() || line == "\r") continue;
    merges.push_back(parse_merge(line, merges_txt, line_no));
  }
  return ClipTokenizer(std::move(merges), std::move(vocab));
}

int64_t ClipTokenizer::id_of(const std::string& symbol, const std::string& piece) const {
  const auto it = encoder_.find(symbol);
  MM_CHECK(it != encoder_.end(), "[ClipTokenizer] BPE symbol \"", symbol, "\" of piece \"", piece,
           "\" is not in the vocab (", encoder_.size(), " entries); merges and vocab disagree");
  return it->second;
}

// simple_tokenizer.bpe(): start from single characters, "</w>" on the last, and merge the pair
// with the lowest rank, all its non-overlapping occurrences left to right, until none is ranked.
std::vector<int64_t> ClipTokenizer::bpe(const std::string& piece) const {
  std::vector<std::string> word;
  for (size_t i = 0; i < piece.size();) {
    size_t len = 1;  // the stand-ins are U+0021..U+0143: one or two UTF-8 bytes
    while (i + len < piece.size() && (static_cast<unsigned char>(piece[i + len]) & 0xC0) == 0x80) ++len;
    word.push_back(piece.substr(i, len));
    i += len;
  }
  word.back() += "</w>";

  while (word.size() > 1) {
    int64_t best_rank = -1;
    size_t best = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = ranks_.find(word[i] + " " + word[i + 1]);
      if (it != ranks_.end() && (best_rank < 0 || it->second < best_rank)) best_rank = it->second, best = i;
    }
    if (best_rank < 0) break;
    const std::string first = word[best], second = word[best + 1];
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word = std::move(merged);
  }

  std::vector<int64_t> ids;
  for (const std::string& symbol : word) ids.push_back(id_of(symbol, piece));
  return ids;
}

std::vector<std::string> ClipTokenizer::split(const std::string& text) const {
  const std::string clean = clip_clean_text(text);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(clean.data());
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(shared_->split, nullptr), &pcre2_match_data_free);
  MM_CHECK(match != nullptr, "[ClipTokenizer::split] out of memory for PCRE2 match data");

  std::vector<std::string> pieces;
  PCRE2_SIZE offset = 0;
  while (offset < clean.size()) {
    // re.findall: the next match at or after offset; unmatched characters (spaces) are skipped.
    const int rc = pcre2_match(shared_->split, subject, clean.size(), offset, PCRE2_NO_UTF_CHECK,
                               match.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    MM_CHECK(rc > 0, "[ClipTokenizer::split] pcre2_match failed with error ", rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match.get());
    pieces.push_back(clean.substr(ov[0], ov[1] - ov[0]));
    offset = ov[1];
  }
  return pieces;
}

std::string ClipTokenizer::to_byte_symbols(const std::string& piece) const {
  std::string mapped;
  for (const char c : piece) mapped += shared_->byte_encoder[static_cast<unsigned char>(c)];
  return mapped;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const std::string& piece : split(text)) {
    // The special tokens stay whole (simple_tokenizer seeds its cache with them).
    if (piece == kSot || piece == kEot) {
      ids.push_back(piece == kSot ? sot_ : eot_);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      const auto it = shared_->cache.find(piece);
      if (it != shared_->cache.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    const std::vector<int64_t> piece_ids = bpe(to_byte_symbols(piece));
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    std::lock_guard<std::mutex> lock(shared_->mutex);
    if (shared_->cache.size() >= (1u << 16)) shared_->cache.clear();  // bound memory on long runs
    shared_->cache.emplace(piece, piece_ids);
  }
  return ids;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string joined;
  for (const int64_t id : ids) {
    const auto it = decoder_.find(id);
    MM_CHECK(it != decoder_.end(), "[ClipTokenizer::decode] id ", id, " is not in the vocab (",
             encoder_.size(), " entries)");
    joined += it->second;
  }
  std::string bytes;
  for (const char32_t c : utf8_to_u32(joined, "ClipTokenizer::decode")) {
    const auto it = shared_->byte_decoder.find(static_cast<uint32_t>(c));
    MM_CHECK(it != shared_->byte_decoder.end(), "[ClipTokenizer::decode] vocab character U+", std::hex,
             static_cast<uint32_t>(c), " has no byte in bytes_to_unicode");
    bytes.push_back(static_cast<char>(it->second));
  }
  // .decode('utf-8', errors="replace"): ICU substitutes U+FFFD per maximal ill-formed subpart,
  // the Unicode-recommended practice that Python follows too.
  UErrorCode err = U_ZERO_ERROR;
  std::vector<UChar> u16(bytes.size() + 1);
  int32_t u16_len = 0;
  u_strFromUTF8WithSub(u16.data(), static_cast<int32_t>(u16.size()), &u16_len, bytes.data(),
                       static_cast<int32_t>(bytes.size()), 0xFFFD, nullptr, &err);
  MM_CHECK(U_SUCCESS(err), "[ClipTokenizer::decode] u_strFromUTF8WithSub failed: ", u_errorName(err));
  std::string text(static_cast<size_t>(u16_len) * 3 + 1, '\0');
  int32_t text_len = 0;
  err = U_ZERO_ERROR;
  u_strToUTF8(&text[0], static_cast<int32_t>(text.size()), &text_len, u16.data(), u16_len, &err);
  MM_CHECK(U_SUCCESS(err), "[ClipTokenizer::decode] u_strToUTF8 failed: ", u_errorName(err));
  text.resize(static_cast<size_t>(text_len));
  // .replace('</w>', ' ')
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "</w>") == 0) {
      out.push_back(' ');
      i += 4;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

std::vector<int64_t> ClipTokenizer::tokenize(const std::string& text, int64_t context_length,
                                             Truncate truncate) const {
  MM_CHECK(context_length >= 1, "[ClipTokenizer::tokenize] context_length must be >= 1, got ", context_length);
  std::vector<int64_t> tokens{sot_};
  const std::vector<int64_t> ids = encode(text);
  tokens.insert(tokens.end(), ids.begin(), ids.end());
  tokens.push_back(eot_);
  const auto n = static_cast<int64_t>(tokens.size());
  if (n > context_length) {
    if (truncate == Truncate::no) {
      size_t cut = std::min<size_t>(text.size(), 60);  // shorten at a UTF-8 character boundary
      while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
      throw Error(str_cat("[ClipTokenizer::tokenize] text \"", text.substr(0, cut),
                          cut < text.size() ? "...\"" : "\"", " has ", n,
                          " tokens with SOT/EOT, more than context_length ", context_length,
                          "; pass Truncate::yes to keep the first ", context_length));
    }
    tokens.resize(static_cast<size_t>(context_length));
    tokens.back() = eot_;
  }
  tokens.resize(static_cast<size_t>(context_length), 0);
  return tokens;
}

Tensor ClipTokenizer::tokenize_batch(const std::vector<std::string>& texts, int64_t context_length,
                                     Truncate truncate) const {
  std::vector<int64_t> all;
  all.reserve(texts.size() * static_cast<size_t>(std::max<int64_t>(context_length, 0)));
  for (const std::string& text : texts) {
    const std::vector<int64_t> row = tokenize(text, context_length, truncate);
    all.insert(all.end(), row.begin(), row.end());
  }
  // tokens: [N, context_length]
  return Tensor::from_vector(all, Shape{static_cast<int64_t>(texts.size()), context_length});
}

}  // namespace mm
