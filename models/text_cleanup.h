// models/text_cleanup.h: the text cleanup that CLIP's tokenizer runs before BPE, written to
// match Python exactly (OpenAI clip/simple_tokenizer.py: basic_clean, whitespace_clean, lower).
// Reading order: first file of models/; models/clip_tokenizer.h builds on it.
// Tested by: ./build/mm_tests --source-file=*test_clip_tokenizer.cpp
//
//   std::string t = mm::clip_clean_text("  Tom &amp;amp; J\u00c9RRY\n");  // "tom & jérry"
//
// Strings are UTF-8 at the boundary and UTF-32 (one char32_t per code point) inside, because
// Python counts code points (html's {1,32}-character entity names, str.strip()).
#pragma once
#include <string>

namespace mm {

// Decodes UTF-8; throws mm::Error naming `what` and the byte offset on malformed input
// (overlong forms, surrogates and code points past U+10FFFF included), since a Python str
// can never hold such bytes.
std::u32string utf8_to_u32(const std::string& text, const char* what);
std::string u32_to_utf8(const std::u32string& text);

// Python's html.unescape (Lib/html/__init__.py): named references from the HTML5 table,
// legacy names without ';' by longest prefix ("&ampxyz" -> "&xyz"), numeric references with
// the spec's remaps (&#0; and surrogates -> U+FFFD, &#x80;..&#x9F; -> windows-1252, some dropped).
std::u32string html_unescape(const std::u32string& text);

// Python's str.isspace(): what str.strip() removes. Includes U+001C..U+001F.
bool is_python_space(char32_t c);
// The `regex` module's \s (Unicode White_Space), which CLIP uses because simple_tokenizer.py does
// `import regex as re`: str.isspace() minus U+001C..U+001F.
bool is_regex_space(char32_t c);

// str.strip(): removes is_python_space characters at both ends.
std::u32string python_strip(const std::u32string& text);

// Python str.lower(): full Unicode case mapping via ICU's root locale, so U+0130 becomes
// "i" + U+0307 and a word-final capital sigma becomes U+03C2.
std::u32string python_lower(const std::u32string& text);

// The whole cleanup of simple_tokenizer.encode, ftfy.fix_text left out:
//   html.unescape twice, strip, every run of regex \s -> ' ', strip, lower.
// Returns UTF-8.
std::string clip_clean_text(const std::string& text);

}  // namespace mm
