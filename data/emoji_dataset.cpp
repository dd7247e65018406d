// data/emoji_dataset.cpp: the emoji pairs (see emoji_dataset.h): emojibase JSON + PNG folders ->
// pairs.jsonl, and PNG -> tensors on white. Libraries: nlohmann_json, stb_image.
// Tested by: ./build-data/mm_tests --source-file=*test_emoji_dataset.cpp
#include "data/emoji_dataset.h"

#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/error.h"

namespace fs = std::filesystem;

namespace mm::data {

namespace {

constexpr const char* kFetchHint = "run data/fetch_emoji.sh first (it fetches into data/emoji/)";

nlohmann::json read_json(const fs::path& path) {
  std::ifstream f(path);
  MM_CHECK(f.good(), "[build_emoji_pairs] cannot open '", path.string(), "'; ", kFetchHint);
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("[build_emoji_pairs] '", path.string(), "' is not valid JSON: ", e.what()));
  }
}

// normalize_hexcode(file stem) -> path, for every *.png in dir.
std::map<std::string, fs::path> index_png_dir(const fs::path& dir) {
  MM_CHECK(fs::is_directory(dir), "[build_emoji_pairs] image folder '", dir.string(), "' is missing; ", kFetchHint);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().extension() == ".png") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::map<std::string, fs::path> index;
  for (const fs::path& file : files) {
    const std::string key = normalize_hexcode(file.stem().string());
    const auto [it, fresh] = index.emplace(key, file);
    MM_CHECK(fresh, "[build_emoji_pairs] '", it->second.string(), "' and '", file.string(),
             "' both normalise to hexcode ", key, " (FE0F dropped): which one is meant is ambiguous");
  }
  return index;
}

// emojibase's group number -> its English name ("smileys & emotion"), from messages.json.
std::map<int64_t, std::string> group_names(const nlohmann::json& messages, const fs::path& path) {
  MM_CHECK(messages.is_object() && messages.contains("groups") && messages["groups"].is_array(),
           "[build_emoji_pairs] '", path.string(), "' expects an object with a \"groups\" array");
  std::map<int64_t, std::string> names;
  for (const auto& g : messages["groups"]) names[g.at("order").get<int64_t>()] = g.at("message").get<std::string>();
  return names;
}

std::string string_field(const nlohmann::json& j, const char* key, const fs::path& path) {
  MM_CHECK(j.contains(key) && j[key].is_string(), "[build_emoji_pairs] '", path.string(), "': entry ",
           j.dump().substr(0, 120), " lacks the string field \"", key, "\"");
  return j[key].get<std::string>();
}

}  // namespace

std::string normalize_hexcode(const std::string& hexcode) {
  std::string out;
  size_t begin = 0;
  while (begin <= hexcode.size()) {
    size_t end = hexcode.find('-', begin);
    if (end == std::string::npos) end = hexcode.size();
    std::string part = hexcode.substr(begin, end - begin);
    MM_CHECK(!part.empty() && part.size() <= 6, "[normalize_hexcode] \"", hexcode,
             "\" expects dash-separated code points of 1 to 6 hex digits");
    for (char& c : part) {
      MM_CHECK(std::isxdigit(static_cast<unsigned char>(c)), "[normalize_hexcode] \"", hexcode,
               "\" holds '", c, "', expected hex digits and dashes");
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    if (part != "FE0F") out += (out.empty() ? "" : "-") + part;
    begin = end + 1;
  }
  MM_CHECK(!out.empty(), "[normalize_hexcode] \"", hexcode, "\" is only FE0F");
  return out;
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb53a9c3b2c07ull;
  k ^= k >> 33;
  return k;
}

const char* split_name(Split split) { return split == Split::val ? "val" : "train"; }

Split split_of_base(const std::string& base_hexcode) {
  return fmix64(fnv1a64(normalize_hexcode(base_hexcode))) % 10 == 0 ? Split::val : Split::train;
}

BuildReport build_emoji_pairs(const std::string& src_dir, const std::string& paths_relative_to) {
  const fs::path src(src_dir);
  const fs::path data_path = src / "emojibase-data" / "en" / "data.json";
  const fs::path messages_path = src / "emojibase-data" / "en" / "messages.json";
  const nlohmann::json data = read_json(data_path);
  const std::map<int64_t, std::string> groups = group_names(read_json(messages_path), messages_path);
  MM_CHECK(data.is_array(), "[build_emoji_pairs] '", data_path.string(), "' expects a JSON array of emoji");

  const std::vector<std::string> styles = {"google", "twitter"};
  std::vector<std::map<std::string, fs::path>> pngs;
  BuildReport report;
  for (const std::string& style : styles) {
    pngs.push_back(index_png_dir(src / ("emoji-datasource-" + style) / "img" / style / "64"));
    report.styles.push_back({style, static_cast<int64_t>(pngs.back().size()), 0, {}, 0});
  }
  const fs::path rel_base = fs::absolute(paths_relative_to);

  std::vector<std::set<std::string>> used(styles.size());
  std::set<std::string> bases_with_pairs;
  for (const auto& entry : data) {
    const std::string base = string_field(entry, "hexcode", data_path);
    std::vector<std::string> tags;
    if (entry.contains("tags")) tags = entry["tags"].get<std::vector<std::string>>();
    // The 26 regional indicator letters have no group in emojibase.
    const auto g = entry.contains("group") ? groups.find(entry["group"].get<int64_t>()) : groups.end();
    const std::string group = g == groups.end() ? "" : g->second;

    std::vector<const nlohmann::json*> variants{&entry};  // the base, then its skin tones
    if (entry.contains("skins"))
      for (const auto& skin : entry["skins"]) variants.push_back(&skin);
    for (const nlohmann::json* v : variants) {
      ++report.entries;
      const std::string hexcode = string_field(*v, "hexcode", data_path);
      const std::string label = string_field(*v, "label", data_path);
      const std::string key = normalize_hexcode(hexcode);
      for (size_t s = 0; s < styles.size(); ++s) {
        const auto it = pngs[s].find(key);
        if (it == pngs[s].end()) {
          report.styles[s].misses.push_back(hexcode + " " + label);
          continue;
        }
        ++report.styles[s].joined;
        used[s].insert(key);
        bases_with_pairs.insert(base);
        report.pairs.push_back({fs::absolute(it->second).lexically_relative(rel_base).generic_string(),
                                styles[s], hexcode, label, tags, group, base, split_of_base(base)});
      }
    }
  }
  for (size_t s = 0; s < styles.size(); ++s)
    report.styles[s].unused_pngs = static_cast<int64_t>(pngs[s].size() - used[s].size());
  report.bases = static_cast<int64_t>(bases_with_pairs.size());
  for (const std::string& b : bases_with_pairs) report.val_bases += split_of_base(b) == Split::val;
  return report;
}

void write_pairs_jsonl(const std::string& path, const std::vector<EmojiPair>& pairs) {
  std::ofstream f(path, std::ios::binary);
  MM_CHECK(f.good(), "[write_pairs_jsonl] cannot open '", path, "' for writing");
  for (const EmojiPair& p : pairs) {
    // nlohmann::ordered_json keeps the field order of the documented line.
    nlohmann::ordered_json j;
    j["path"] = p.path;
    j["style"] = p.style;
    j["hexcode"] = p.hexcode;
    j["label"] = p.label;
    j["tags"] = p.tags;
    j["group"] = p.group;
    j["base"] = p.base;
    j["split"] = split_name(p.split);
    f << j.dump() << "\n";
  }
  MM_CHECK(f.good(), "[write_pairs_jsonl] writing '", path, "' failed");
}

std::vector<EmojiPair> read_pairs_jsonl(const std::string& path) {
  std::ifstream f(path);
  MM_CHECK(f.good(), "[read_pairs_jsonl] cannot open '", path,
           "'; build it with: mmdata build --src data/emoji --out data/emoji/pairs.jsonl");
  const fs::path dir = fs::absolute(path).parent_path();
  std::vector<EmojiPair> pairs;
  std::string line;
  for (int64_t line_no = 1; std::getline(f, line); ++line_no) {
    if (line.empty()) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      EmojiPair p;
      const fs::path rel = j.at("path").get<std::string>();
      p.path = rel.is_absolute() ? rel.string() : (dir / rel).lexically_normal().string();
      p.style = j.at("style").get<std::string>();
      p.hexcode = j.at("hexcode").get<std::string>();
      p.label = j.at("label").get<std::string>();
      p.tags = j.at("tags").get<std::vector<std::string>>();
      p.group = j.at("group").get<std::string>();
      p.base = j.at("base").get<std::string>();
      const std::string split = j.at("split").get<std::string>();
      MM_CHECK(split == "train" || split == "val", "split \"", split, "\" is neither train nor val");
      p.split = split == "val" ? Split::val : Split::train;
      pairs.push_back(std::move(p));
    } catch (const std::exception& e) {  // nlohmann's and our own
      throw Error(str_cat("[read_pairs_jsonl] '", path, "' line ", line_no, ": ", e.what()));
    }
  }
  return pairs;
}

std::vector<std::string> bpe_training_texts(const std::vector<EmojiPair>& pairs, Captions which) {
  std::vector<std::string> texts;
  for (const EmojiPair& p : pairs) {
    if (p.split != Split::train) continue;
    texts.push_back(p.label);
    if (which == Captions::labels_and_tags && !p.tags.empty()) {
      std::string tags;
      for (const std::string& t : p.tags) tags += (tags.empty() ? "" : " ") + t;
      texts.push_back(tags);
    }
  }
  return texts;
}

Tensor load_png_on_white(const std::string& path) {
  int w = 0, h = 0, c = 0;
  MM_CHECK(stbi_info(path.c_str(), &w, &h, &c), "[load_png_on_white] cannot read image '", path, "': ",
           stbi_failure_reason() ? stbi_failure_reason() : "unknown format");
  MM_CHECK(static_cast<int64_t>(w) * h <= (int64_t{1} << 24), "[load_png_on_white] image '", path, "' is ", w,
           "x", h, ": larger than the 2^24-pixel limit for emoji");
  unsigned char* px = stbi_load(path.c_str(), &w, &h, &c, 4);  // RGBA whatever the file holds
  MM_CHECK(px != nullptr, "[load_png_on_white] cannot decode image '", path, "': ", stbi_failure_reason());
  Tensor out = Tensor::empty({3, h, w});  // [3, H, W]
  float* o = out.data<float>();
  const int64_t hw = static_cast<int64_t>(h) * w;
  for (int64_t i = 0; i < hw; ++i) {
    const float a = px[i * 4 + 3] / 255.0f;
    for (int k = 0; k < 3; ++k) o[k * hw + i] = (a * px[i * 4 + k] + (1.0f - a) * 255.0f) / 255.0f;
  }
  stbi_image_free(px);
  return out;
}

Tensor shift_and_flip(const Tensor& image, int64_t dx, int64_t dy, Mirror mirror) {
  MM_CHECK(image.dim() == 3, "[shift_and_flip] expects an image [C, H, W], got ", image.str());
  const Tensor src = image.contiguous();
  const int64_t C = src.size(0), H = src.size(1), W = src.size(2);
  Tensor out = Tensor::full({C, H, W}, 1.0);  // white where nothing lands
  const float* s = src.data<float>();
  float* o = out.data<float>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y) {
      const int64_t sy = y - dy;
      if (sy < 0 || sy >= H) continue;
      for (int64_t x = 0; x < W; ++x) {
        int64_t sx = x - dx;  // position in the (flipped) source
        if (sx < 0 || sx >= W) continue;
        if (mirror == Mirror::yes) sx = W - 1 - sx;
        o[(c * H + y) * W + x] = s[(c * H + sy) * W + sx];
      }
    }
  return out;
}

EmojiDataset EmojiDataset::load(const std::string& pairs_jsonl, Subset subset, int64_t image_size) {
  std::vector<EmojiPair> kept;
  for (EmojiPair& p : read_pairs_jsonl(pairs_jsonl)) {
    if (subset == Subset::all || (subset == Subset::train) == (p.split == Split::train)) kept.push_back(std::move(p));
  }
  return EmojiDataset(std::move(kept), image_size);
}

EmojiDataset::EmojiDataset(std::vector<EmojiPair> pairs, int64_t image_size)
    : pairs_(std::move(pairs)), image_size_(image_size) {
  MM_CHECK(image_size_ > 0, "[EmojiDataset] image_size must be > 0, got ", image_size_);
}

const EmojiPair& EmojiDataset::pair(int64_t i) const {
  MM_CHECK(i >= 0 && i < size(), "[EmojiDataset] index ", i, " out of range for ", size(), " pairs");
  return pairs_[static_cast<size_t>(i)];
}

Tensor EmojiDataset::load_image(int64_t i) const {
  const EmojiPair& p = pair(i);
  Tensor img = load_png_on_white(p.path);
  MM_CHECK(img.size(1) == image_size_ && img.size(2) == image_size_, "[EmojiDataset] image '", p.path, "' is ",
           img.size(2), "x", img.size(1), ", expected ", image_size_, "x", image_size_);
  return img;
}

Tensor EmojiDataset::load_batch(const std::vector<int64_t>& indices, const Augment& augment, Generator* gen) const {
  const bool random = augment.hflip == HFlip::random || augment.max_shift > 0;
  MM_CHECK(augment.max_shift >= 0 && augment.max_shift < image_size_, "[EmojiDataset::load_batch] max_shift ",
           augment.max_shift, " must be in [0, ", image_size_, ")");
  MM_CHECK(!random || gen != nullptr, "[EmojiDataset::load_batch] augmentation asks for random draws but gen is null");
  const int64_t B = static_cast<int64_t>(indices.size()), S = image_size_, per_image = 3 * S * S;
  Tensor batch = Tensor::empty({B, 3, S, S});  // [B, 3, H, W]
  float* out = batch.data<float>();
  for (int64_t b = 0; b < B; ++b) {
    Tensor img = load_image(indices[static_cast<size_t>(b)]);
    if (random) {
      const Mirror mirror = augment.hflip == HFlip::random && gen->uniform() < 0.5 ? Mirror::yes : Mirror::no;
      const int64_t dx = augment.max_shift > 0 ? gen->randint(-augment.max_shift, augment.max_shift + 1) : 0;
      const int64_t dy = augment.max_shift > 0 ? gen->randint(-augment.max_shift, augment.max_shift + 1) : 0;
      img = shift_and_flip(img, dx, dy, mirror);
    }
    std::copy(img.data<float>(), img.data<float>() + per_image, out + b * per_image);
  }
  return batch;
}

}  // namespace mm::data
