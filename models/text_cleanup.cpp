// models/text_cleanup.cpp: Python-exact text cleanup for the CLIP tokenizer (see text_cleanup.h).
// Tested by: ./build/mm_tests --source-file=*test_clip_tokenizer.cpp
#include "models/text_cleanup.h"

#include <unicode/uchar.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/error.h"

namespace mm {

namespace {

struct HtmlEntity {
  const char* name;   // as written after '&', e.g. "amp;" or the legacy "amp"
  const char* value;  // UTF-8, one or two code points
};
struct InvalidCharref {
  uint32_t code;
  uint32_t replacement;
};
#include "models/html_entities.inc"

}  // namespace

std::u32string utf8_to_u32(const std::string& text, const char* what) {
  std::u32string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = s[i];
    int len = 0;
    uint32_t cp = 0, min_cp = 0;
    if (b < 0x80) {
      len = 1, cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F, min_cp = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F, min_cp = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07, min_cp = 0x10000;
    }
    bool ok = len > 0 && i + len <= n;
    for (int k = 1; ok && k < len; ++k) {
      ok = (s[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    ok = ok && cp >= min_cp && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    MM_CHECK(ok, "[", what, "] text is not valid UTF-8 at byte ", i, " of ", n, " (byte 0x",
             std::hex, static_cast<int>(b), ")");
    out.push_back(static_cast<char32_t>(cp));
    i += static_cast<size_t>(len);
  }
  return out;
}

std::string u32_to_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char32_t c : text) {
    const uint32_t cp = static_cast<uint32_t>(c);
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

// ---- html.unescape --------------------------------------------------------------------------

namespace {

// The HTML5 value for the entity name text[begin, end), or nullptr. Names are ASCII, so a
// span holding anything else cannot match.
const char* find_entity(const std::u32string& text, size_t begin, size_t end) {
  std::string name;
  for (size_t i = begin; i < end; ++i) {
    if (text[i] >= 0x80) return nullptr;
    name.push_back(static_cast<char>(text[i]));
  }
  const HtmlEntity* first = std::begin(kHtmlEntities);
  const HtmlEntity* last = std::end(kHtmlEntities);
  const HtmlEntity* it = std::lower_bound(first, last, name, [](const HtmlEntity& e, const std::string& key) {
    return std::strcmp(e.name, key.c_str()) < 0;
  });
  return (it != last && name == it->name) ? it->value : nullptr;
}

// _replace_charref for a numeric reference whose value is `num` (already capped at 0x110000).
std::u32string numeric_charref(uint32_t num) {
  for (const InvalidCharref& r : kInvalidCharrefs)
    if (r.code == num) return std::u32string(1, static_cast<char32_t>(r.replacement));
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return U"\uFFFD";
  for (const uint32_t c : kInvalidCodepoints)
    if (c == num) return U"";
  return std::u32string(1, static_cast<char32_t>(num));
}

bool is_ascii_digit(char32_t c) { return c >= U'0' && c <= U'9'; }
bool is_ascii_hex(char32_t c) {
  return is_ascii_digit(c) || (c >= U'a' && c <= U'f') || (c >= U'A' && c <= U'F');
}
uint32_t hex_value(char32_t c) {
  if (is_ascii_digit(c)) return c - U'0';
  if (c >= U'a' && c <= U'f') return c - U'a' + 10;
  return c - U'A' + 10;
}
// Characters allowed in a name by the class [^\t\n\f <&#;].
bool is_name_char(char32_t c) {
  return c != U'\t' && c != U'\n' && c != U'\f' && c != U' ' && c != U'<' && c != U'&' &&
         c != U'#' && c != U';';
}

}  // namespace

// CPython: _charref.sub(_replace_charref, s) with
//   _charref = re.compile(r'&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)')
// Each alternative is matched by hand at every '&'; replacements are not rescanned.
std::u32string html_unescape(const std::u32string& s) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    const size_t start = i + 1;  // first character of the group
    if (start < n && s[start] == U'#') {
      const bool hex = start + 1 < n && (s[start + 1] == U'x' || s[start + 1] == U'X');
      const size_t digits = start + (hex ? 2 : 1);
      size_t end = digits;
      // Saturate: Python's int() is unbounded, and everything above 0x10FFFF maps to U+FFFD.
      uint32_t num = 0;
      while (end < n && (hex ? is_ascii_hex(s[end]) : is_ascii_digit(s[end]))) {
        const uint32_t d = hex ? hex_value(s[end]) : static_cast<uint32_t>(s[end] - U'0');
        num = std::min<uint32_t>(num * (hex ? 16 : 10) + d, 0x110000);
        ++end;
      }
      if (end == digits) {  // "&#" or "&#x" without digits: no alternative matches
        out.push_back(s[i++]);
        continue;
      }
      if (end < n && s[end] == U';') ++end;
      out += numeric_charref(num);
      i = end;
      continue;
    }
    size_t end = start;
    while (end < n && end - start < 32 && is_name_char(s[end])) ++end;
    if (end == start) {  // nothing after '&' can start a name
      out.push_back(s[i++]);
      continue;
    }
    if (end < n && s[end] == U';') ++end;
    // Exact name (with its ';' if any), else the longest prefix of length >= 2 that is a
    // name: only the legacy names without ';' ("amp", "copy", ...) can match a prefix.
    const char* value = find_entity(s, start, end);
    size_t name_end = end;
    for (size_t len = end - start - 1; value == nullptr && len >= 2; --len) {
      value = find_entity(s, start, start + len);
      name_end = start + len;
    }
    if (value == nullptr) {
      out.append(s, i, end - i);  // '&' + s, unchanged
    } else {
      out += utf8_to_u32(value, "html_entities.inc");
      out.append(s, name_end, end - name_end);  // the rest after the matched prefix
    }
    i = end;
  }
  return out;
}

// ---- whitespace and case --------------------------------------------------------------------

bool is_regex_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

bool is_python_space(char32_t c) { return is_regex_space(c) || (c >= 0x1C && c <= 0x1F); }

std::u32string python_strip(const std::u32string& text) {
  size_t b = 0, e = text.size();
  while (b < e && is_python_space(text[b])) ++b;
  while (e > b && is_python_space(text[e - 1])) --e;
  return text.substr(b, e - b);
}

std::u32string python_lower(const std::u32string& text) {
  if (text.empty()) return text;
  // ICU works on UTF-16; full case mapping can grow the text (U+0130 -> 2 code points), so
  // preflight the length and convert again when the first guess was short.
  std::vector<UChar> u16(text.size() * 2 + 1);
  int32_t u16_len = 0;
  UErrorCode err = U_ZERO_ERROR;
  u_strFromUTF32(u16.data(), static_cast<int32_t>(u16.size()), &u16_len,
                 reinterpret_cast<const UChar32*>(text.data()), static_cast<int32_t>(text.size()), &err);
  MM_CHECK(U_SUCCESS(err), "[python_lower] u_strFromUTF32 failed: ", u_errorName(err));

  std::vector<UChar> lower(static_cast<size_t>(u16_len) + 16);
  err = U_ZERO_ERROR;
  int32_t lower_len = u_strToLower(lower.data(), static_cast<int32_t>(lower.size()), u16.data(),
                                   u16_len, "", &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    lower.resize(static_cast<size_t>(lower_len) + 1);
    err = U_ZERO_ERROR;
    lower_len = u_strToLower(lower.data(), static_cast<int32_t>(lower.size()), u16.data(), u16_len,
                             "", &err);
  }
  MM_CHECK(U_SUCCESS(err), "[python_lower] u_strToLower failed: ", u_errorName(err));

  std::u32string out(static_cast<size_t>(lower_len), U'\0');  // UTF-32 is never longer than UTF-16
  int32_t out_len = 0;
  err = U_ZERO_ERROR;
  u_strToUTF32(reinterpret_cast<UChar32*>(&out[0]), static_cast<int32_t>(out.size()), &out_len,
               lower.data(), lower_len, &err);
  MM_CHECK(U_SUCCESS(err) || err == U_STRING_NOT_TERMINATED_WARNING,
           "[python_lower] u_strToUTF32 failed: ", u_errorName(err));
  out.resize(static_cast<size_t>(out_len));
  return out;
}

std::string clip_clean_text(const std::string& text) {
  std::u32string s = utf8_to_u32(text, "clip_clean_text");
  // basic_clean: html.unescape(html.unescape(text)).strip()
  s = python_strip(html_unescape(html_unescape(s)));
  // whitespace_clean: re.sub(r'\s+', ' ', text).strip() with the regex module's \s
  std::u32string collapsed;
  collapsed.reserve(s.size());
  for (const char32_t c : s) {
    if (!is_regex_space(c)) {
      collapsed.push_back(c);
    } else if (collapsed.empty() || collapsed.back() != U' ') {  // every ' ' here ends a run
      collapsed.push_back(U' ');
    }
  }
  return u32_to_utf8(python_lower(python_strip(collapsed)));
}

}  // namespace mm
