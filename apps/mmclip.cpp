// apps/mmclip.cpp: CLIP on the command line (models/clip.h): zero-shot classification,
// embeddings to a file, image search over a folder with a cached index, tokenisation.
// Reading order: apps/, after apps/common/clip_preprocess.h. Test: ctest --test-dir build -R test_mmclip
//
//   mmclip classify IMAGE... --labels "cat,dog,person" [--labels-file F] [--template "a photo of a {}."]...
//                   [--top K] [--json]
//   mmclip embed [--image F]... [--text T]... --out FILE.safetensors [--truncate]
//   mmclip search DIR "query or image path" [--top K] [--json]
//   mmclip tokenize TEXT... [--context-length N] [--truncate] [--json]
// Models: --model FILE (CLIP weights, any format) [--model-config JSON] [--vocab FILE];
// --device cpu|cuda|auto (default: the GPU when present), --precision fp32|bf16|fp16 (with cuda), --threads N, --batch N (images or texts per
// forward pass, 16).
//
// Zero-shot classification follows CLIP's notebook (prompt ensembling): each label's prompts
// (one per template, "{}" replaced by the label) are embedded and normalised, averaged over
// templates and normalised again; p(label | image) = softmax_l(exp(logit_scale) * cos(image, label)).
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "apps/common/args.h"
#include "apps/common/clip_preprocess.h"
#include "apps/common/model_files.h"
#include "apps/common/progress.h"
#include "engine/cuda_ops.h"
#include "engine/mm.h"

using namespace mm;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Args {
  std::string command, model, model_config, vocab, out, labels, labels_file, device = "auto", precision = "fp32";
  Device dev = Device::cpu;  // parsed from device
  cuda_ops::Precision prec = cuda_ops::Precision::fp32;  // parsed from precision
  std::vector<std::string> positional, templates, images, texts;
  int64_t top = 5, batch = 16, threads = 0, context_length = 77;
  bool json = false, truncate = false;
  apps::Alpha alpha = apps::Alpha::drop;  // how the model wants transparency (apps::clip_alpha)
};

int usage(FILE* f) {
  std::fprintf(f,
               "usage: mmclip COMMAND ... [--model FILE] [options]\n"
               "  classify IMAGE... --labels \"cat,dog\" [--labels-file F] [--template \"a photo of a {}.\"]...\n"
               "                    [--top K (5)] [--json]        zero-shot label probabilities per image\n"
               "  embed [--image F]... [--text T]... --out FILE.safetensors\n"
               "                    image_features [N, E], text_features [M, E] (not normalised)\n"
               "  search DIR QUERY [--top K (5)] [--json]         QUERY is a text or an image file;\n"
               "                    embeddings are cached in DIR/.mmclip-index.safetensors\n"
               "  tokenize TEXT... [--context-length N (77)] [--json]   token ids (needs only the vocab)\n"
               "options:\n"
               "  --model FILE         CLIP weights (.pt, TorchScript .pt, .safetensors, HF model.safetensors);\n"
               "                       default: mm-mini's clip_vit (models/mini/); clip_vit or clip_resnet\n"
               "                       name the shipped ones\n"
               "  --model-config JSON  CLIP config override (found next to the weights when named <stem>.json)\n"
               "  --vocab FILE         bpe_simple_vocab_16e6.txt.gz (else $MM_VOCAB, next to --model, ~/.cache/mm)\n"
               "  --truncate           cut texts longer than the context instead of failing\n"
               "  --batch N (16)       images or texts per forward pass\n"
               "  --threads N          --device cpu|cuda|auto (default auto: the GPU when present)\n"
               "  --precision fp32|bf16|fp16   the device's GEMMs (16-bit operands, float32 sums)\n");
  return f == stdout ? 0 : 2;
}

// Which subcommands take each option (every one takes --help, --threads, --device).
const std::map<std::string, std::set<std::string>> kOptionCommands = {
    {"--model", {"classify", "embed", "search", "tokenize"}},
    {"--model-config", {"classify", "embed", "search"}},
    {"--vocab", {"classify", "embed", "search", "tokenize"}},
    {"--batch", {"classify", "embed", "search"}},
    {"--labels", {"classify"}},
    {"--labels-file", {"classify"}},
    {"--template", {"classify"}},
    {"--top", {"classify", "search"}},
    {"--json", {"classify", "search", "tokenize"}},
    {"--image", {"embed"}},
    {"--text", {"embed"}},
    {"--out", {"embed"}},
    {"--truncate", {"classify", "embed", "search", "tokenize"}},
    {"--context-length", {"tokenize"}},
    {"--threads", {"classify", "embed", "search", "tokenize"}},
    {"--device", {"classify", "embed", "search", "tokenize"}},
    {"--precision", {"classify", "embed", "search"}},
};

Args parse(int argc, char** argv) {
  Args a;
  a.command = argv[1];
  MM_CHECK(a.command == "classify" || a.command == "embed" || a.command == "search" || a.command == "tokenize",
           "mmclip: unknown command '", a.command, "' (expected classify, embed, search or tokenize; see --help)");
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") std::exit(usage(stdout));
    if (k.rfind("--", 0) != 0) {
      a.positional.push_back(k);
      continue;
    }
    const auto it = kOptionCommands.find(k);
    if (it == kOptionCommands.end()) throw Error(str_cat("mmclip: unknown option '", k, "' (see --help)"));
    MM_CHECK(it->second.count(a.command), "mmclip ", a.command, ": option ", k, " does not apply to this command");
    auto value = [&]() -> std::string {
      MM_CHECK(i + 1 < argc, "mmclip: option ", k, " needs a value");
      return argv[++i];
    };
    if (k == "--model") a.model = value();
    else if (k == "--model-config") a.model_config = value();
    else if (k == "--vocab") a.vocab = value();
    else if (k == "--batch") a.batch = apps::parse_int("mmclip", k, value(), 1, 4096);
    else if (k == "--labels") a.labels = value();
    else if (k == "--labels-file") a.labels_file = value();
    else if (k == "--template") a.templates.push_back(value());
    else if (k == "--top") a.top = apps::parse_int("mmclip", k, value(), 1, 1000000);
    else if (k == "--json") a.json = true;
    else if (k == "--image") a.images.push_back(value());
    else if (k == "--text") a.texts.push_back(value());
    else if (k == "--out") a.out = value();
    else if (k == "--truncate") a.truncate = true;
    else if (k == "--context-length") a.context_length = apps::parse_int("mmclip", k, value(), 2, 100000);
    else if (k == "--threads") a.threads = apps::parse_int("mmclip", k, value(), 1, 1024);
    else if (k == "--device") a.device = value();
    else if (k == "--precision") a.precision = value();
  }
  a.dev = apps::parse_device("mmclip", a.device);
  a.device = device_name(a.dev);  // auto resolved: what ran, for the records
  a.prec = cuda_ops::parse_precision(a.precision, "mmclip");
  MM_CHECK(a.prec == cuda_ops::Precision::fp32 || a.dev == Device::cuda,
           "mmclip: --precision ", a.precision, " needs --device cuda (the tensor cores); the CPU computes in fp32");
  // The shipped models by name, and mm-mini's CLIP when no model is given (for tokenize only
  // when no vocabulary is given either: then its own vocabulary is the one meant).
  const bool vocab_given = !a.vocab.empty() || (std::getenv("MM_VOCAB") && *std::getenv("MM_VOCAB"));
  if (a.model == "clip_vit" || a.model == "clip_resnet") a.model = apps::default_model(a.model);
  else if (a.model.empty() && (a.command != "tokenize" || !vocab_given)) a.model = apps::default_model("clip_vit");
  if (!a.model.empty() && a.command != "tokenize") a.alpha = apps::clip_alpha(a.model);
  return a;
}

ClipTokenizer::Truncate truncate_of(const Args& a) {
  return a.truncate ? ClipTokenizer::Truncate::yes : ClipTokenizer::Truncate::no;
}

// The model of --model on --device: on the CPU with its image tower packed for the GEMM, since
// images are encoded one batch after another.
ClipModel load_model(const Args& a) {
  ClipModel clip = apps::load_clip(a.model, a.model_config);
  if (a.dev != Device::cpu) {
    clip = clip.to(a.dev);
    clip.set_precision(a.prec);  // its GEMMs on the device
    return clip;
  }
  clip.prepack("visual.");
  return clip;
}

// Image features [N, E] (encode_image, not normalised) in the order of `paths`, `batch` images
// per forward pass, with a progress bar when there is more than one batch. With `skipped`,
// unreadable images are reported there and left out instead of stopping the run.
Tensor embed_images(const ClipModel& clip, const std::vector<std::string>& paths, int64_t batch, apps::Alpha alpha,
                    std::vector<std::string>* skipped = nullptr) {
  const int64_t R = clip.config().image_resolution, n = static_cast<int64_t>(paths.size());
  const bool show = n > batch;
  apps::Progress progress(n);
  std::vector<Tensor> features;
  std::vector<Tensor> pixels;  // [3, R, R] each, one batch at a time
  for (int64_t i = 0; i < n; ++i) {
    try {
      pixels.push_back(apps::clip_preprocess_file(paths[i], R, alpha));
    } catch (const Error& e) {
      if (!skipped) throw;
      skipped->push_back(paths[i]);
      std::fprintf(stderr, "mmclip: skipping %s\n", e.what());
    }
    if (static_cast<int64_t>(pixels.size()) == batch || (i + 1 == n && !pixels.empty())) {
      // [B, 3, R, R] -> [B, E], back on the CPU
      features.push_back(clip.encode_image(stack(pixels, 0).to(clip.device())).to(Device::cpu));
      pixels.clear();
    }
    if (show) progress.update(i + 1, "images");
  }
  if (features.empty()) return Tensor::empty({0, clip.config().embed_dim});
  return features.size() == 1 ? features[0] : cat(features, 0);
}

// clip.tokenize of one text, padded to context_length; an over-long text names --truncate.
std::vector<int64_t> tokenize(const ClipTokenizer& tok, const std::string& text, int64_t context_length,
                              ClipTokenizer::Truncate truncate) {
  try {
    return tok.tokenize(text, context_length, truncate);
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (truncate == ClipTokenizer::Truncate::yes || msg.find("context_length") == std::string::npos) throw;
    throw Error(msg.substr(0, msg.find("; pass Truncate::yes")) + " (pass --truncate to keep the first " +
                std::to_string(context_length) + " tokens)");
  }
}

// Text features [M, E] (encode_text, not normalised), `batch` texts per forward pass.
Tensor embed_texts(const ClipModel& clip, const ClipTokenizer& tok, const std::vector<std::string>& texts,
                   ClipTokenizer::Truncate truncate, int64_t batch) {
  const int64_t ctx = clip.config().context_length;
  std::vector<Tensor> features;
  for (size_t i = 0; i < texts.size(); i += static_cast<size_t>(batch)) {
    const size_t end = std::min(texts.size(), i + static_cast<size_t>(batch));
    std::vector<int64_t> ids;  // [B, T] row-major
    for (size_t j = i; j < end; ++j) {
      const std::vector<int64_t> row = tokenize(tok, texts[j], ctx, truncate);
      ids.insert(ids.end(), row.begin(), row.end());
    }
    const Tensor tokens = Tensor::from_vector(ids, {static_cast<int64_t>(end - i), ctx});
    features.push_back(clip.encode_text(tokens).to(Device::cpu));  // [B, T] -> [B, E]
  }
  return features.size() == 1 ? features[0] : cat(features, 0);
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// ---- classify ---------------------------------------------------------------------------------

int run_classify(const Args& a) {
  MM_CHECK(!a.positional.empty(), "mmclip classify: no images given (mmclip classify IMAGE... --labels \"a,b\")");
  std::vector<std::string> labels;
  if (!a.labels.empty()) {
    size_t start = 0;
    for (size_t comma; (comma = a.labels.find(',', start)) != std::string::npos; start = comma + 1)
      labels.push_back(trim(a.labels.substr(start, comma - start)));
    labels.push_back(trim(a.labels.substr(start)));
  }
  if (!a.labels_file.empty()) {
    std::ifstream in(a.labels_file);
    MM_CHECK(in.good(), "mmclip classify: cannot read --labels-file '", a.labels_file, "'");
    for (std::string line; std::getline(in, line);)
      if (!trim(line).empty()) labels.push_back(trim(line));
  }
  MM_CHECK(!a.labels.empty() || !a.labels_file.empty(),
           "mmclip classify: --labels \"cat,dog,...\" or --labels-file FILE is required");
  for (const auto& l : labels) MM_CHECK(!l.empty(), "mmclip classify: empty label in --labels '", a.labels, "'");
  MM_CHECK(labels.size() >= 2, "mmclip classify: give at least two labels, got ", labels.size());
  ClipModel clip = load_model(a);
  ClipTokenizer tok = apps::load_tokenizer(a.vocab, a.model, clip.config().vocab_size);
  // OpenAI's models were trained on web captions ("a photo of a {}." is the paper's template);
  // a model with its own vocabulary (mm-mini) was trained on bare labels.
  const bool own_vocab = clip.config().vocab_size != 49408;
  const std::vector<std::string> templates =
      !a.templates.empty() ? a.templates : std::vector<std::string>{own_vocab ? "{}" : "a photo of a {}."};
  for (const auto& t : templates)
    MM_CHECK(t.find("{}") != std::string::npos, "mmclip classify: --template '", t, "' has no {} for the label");
  const auto L = static_cast<int64_t>(labels.size()), T = static_cast<int64_t>(templates.size());
  std::vector<std::string> prompts;  // label-major: prompts[l * T + t]
  for (const auto& l : labels)
    for (const auto& t : templates) prompts.push_back(replace_all(t, "{}", l));
  Tensor text = embed_texts(clip, tok, prompts, truncate_of(a), a.batch);
  // class embeddings [L, E]: normalise each prompt, average over templates, normalise again
  Tensor classes = normalize(mean(normalize(text, -1).reshape({L, T, -1}), {1}), -1);
  Tensor images = normalize(embed_images(clip, a.positional, a.batch, a.alpha), -1);  // [N, E]
  const double scale = std::exp(clip.weight("logit_scale").item());
  const std::vector<float> cos = matmul(images, classes.t()).contiguous().to_vector<float>();  // [N, L]

  const int64_t top = std::min<int64_t>(a.top, L);
  for (size_t i = 0; i < a.positional.size(); ++i) {
    std::vector<double> p(static_cast<size_t>(L));
    double mx = -INFINITY, sum = 0;
    for (int64_t l = 0; l < L; ++l) mx = std::max(mx, p[l] = scale * cos[i * L + l]);
    for (auto& v : p) sum += (v = std::exp(v - mx));
    for (auto& v : p) v /= sum;
    std::vector<int64_t> order(static_cast<size_t>(L));
    for (int64_t l = 0; l < L; ++l) order[l] = l;
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return p[x] > p[y]; });
    if (a.json) {
      json row = {{"image", a.positional[i]}, {"top", json::array()}};
      for (int64_t k = 0; k < top; ++k) row["top"].push_back({{"label", labels[order[k]]}, {"prob", p[order[k]]}});
      std::printf("%s\n", row.dump().c_str());
    } else {
      std::printf("%s\n", a.positional[i].c_str());
      for (int64_t k = 0; k < top; ++k) std::printf("  %.4f  %s\n", p[order[k]], labels[order[k]].c_str());
    }
  }
  return 0;
}

// ---- embed ------------------------------------------------------------------------------------

int run_embed(const Args& a) {
  MM_CHECK(a.positional.empty(), "mmclip embed: unexpected argument '", a.positional.empty() ? "" : a.positional[0],
           "' (use --image F and --text T)");
  MM_CHECK(!a.images.empty() || !a.texts.empty(), "mmclip embed: nothing to embed: give --image F and/or --text T");
  MM_CHECK(!a.out.empty(), "mmclip embed: --out FILE.safetensors is required");
  ClipModel clip = load_model(a);
  // Both tensors always, [0, D] when nothing of that kind was asked for (as encode_image /
  // encode_text of an empty batch), so readers need no special case.
  const Tensor none = Tensor::zeros({0, clip.config().embed_dim});
  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.emplace_back("image_features", a.images.empty() ? none : embed_images(clip, a.images, a.batch, a.alpha));
  if (!a.texts.empty()) {
    ClipTokenizer tok = apps::load_tokenizer(a.vocab, a.model, clip.config().vocab_size);
    tensors.emplace_back("text_features", embed_texts(clip, tok, a.texts, truncate_of(a), a.batch));
  } else {
    tensors.emplace_back("text_features", none);
  }
  const json inputs = {{"images", a.images}, {"texts", a.texts}, {"model", a.model}};
  save_safetensors(a.out, tensors, {{"format", "pt"}, {"mmclip", inputs.dump()}});
  std::printf("wrote %s (%zu image, %zu text embeddings of size %lld)\n", a.out.c_str(), a.images.size(),
              a.texts.size(), static_cast<long long>(clip.config().embed_dim));
  return 0;
}

// ---- search -----------------------------------------------------------------------------------
// The index DIR/.mmclip-index.safetensors holds image_features [N, E] (not normalised) and, in
// its metadata under "mmclip_index", a JSON string:
//   {"version": 1, "model": {"path": ABS, "size": BYTES, "config": JSON},
//    "files": [{"path": REL, "size": BYTES, "mtime": NS}, ...]}   (row i of image_features = files[i])
// A file whose size and mtime are unchanged keeps its row; new or changed files are embedded,
// removed ones dropped. Another model (path or size) rebuilds the whole index.

const char* kIndexName = ".mmclip-index.safetensors";

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".gif";
}

struct IndexEntry {
  std::string path;  // relative to DIR, '/'-separated
  int64_t size = 0, mtime = 0;
};

int64_t mtime_ns(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

int run_search(const Args& a) {
  MM_CHECK(a.positional.size() == 2, "mmclip search: expected DIR and QUERY, got ", a.positional.size(),
           " arguments (mmclip search DIR \"a photo of a cat\")");
  const fs::path dir = a.positional[0];
  const std::string query = a.positional[1];
  // "photos/cat.png" that is not there is a mistyped path, not a text to search for
  std::error_code ec;  // (a long text is no file name: is_regular_file would throw ENAMETOOLONG)
  const bool query_is_file = is_image_name(query) && fs::is_regular_file(query, ec);
  MM_CHECK((query_is_file || !is_image_name(query) || query.find(' ') != std::string::npos),
           "mmclip search: the query '", query,
           "' names an image file that does not exist (a text query with spaces is searched as text)");
  MM_CHECK(fs::is_directory(dir), "mmclip search: '", dir.string(), "' is not a directory");

  std::vector<IndexEntry> files;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied);
       it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file() || !is_image_name(it->path())) continue;
    files.push_back({it->path().lexically_relative(dir).generic_string(), static_cast<int64_t>(it->file_size()),
                     mtime_ns(it->path())});
  }
  std::sort(files.begin(), files.end(), [](const IndexEntry& x, const IndexEntry& y) { return x.path < y.path; });
  MM_CHECK(!files.empty(), "mmclip search: no images (.png .jpg .jpeg .bmp .gif) under '", dir.string(), "'");

  ClipModel clip = load_model(a);
  const json model_id = {{"path", fs::absolute(a.model).lexically_normal().string()},
                         {"size", static_cast<int64_t>(fs::file_size(a.model))},
                         {"config", a.model_config.empty() ? "" : fs::absolute(a.model_config).lexically_normal().string()},
                         {"precision", a.precision}};  // (bf16 features are not mixed with fp32 ones)
  const int64_t E = clip.config().embed_dim;

  // Rows of the old index that are still valid, by relative path.
  const fs::path index_path = dir / kIndexName;
  std::map<std::string, std::pair<IndexEntry, Tensor>> cached;  // path -> (entry, row [E])
  if (fs::exists(index_path)) {
    try {
      TensorFile f = load_safetensors(index_path.string());
      const json meta = json::parse(f.metadata.at("mmclip_index"));
      const Tensor& feats = f.get("image_features");
      if (meta.at("model") == model_id && feats.dim() == 2 && feats.size(1) == E &&
          feats.size(0) == static_cast<int64_t>(meta.at("files").size())) {
        for (size_t i = 0; i < meta.at("files").size(); ++i) {
          const json& e = meta["files"][i];
          IndexEntry entry{e.at("path").get<std::string>(), e.at("size").get<int64_t>(), e.at("mtime").get<int64_t>()};
          cached[entry.path] = {entry, feats.select(0, static_cast<int64_t>(i)).to(DType::f32).clone()};
        }
      } else {
        std::fprintf(stderr, "mmclip search: the index was built with another model; rebuilding it\n");
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mmclip search: ignoring unreadable index %s (%s)\n", index_path.c_str(), e.what());
    }
  }

  std::vector<std::string> to_embed;
  for (const auto& f : files) {
    const auto it = cached.find(f.path);
    if (it == cached.end() || it->second.first.size != f.size || it->second.first.mtime != f.mtime)
      to_embed.push_back((dir / f.path).string());
  }
  std::vector<std::string> skipped;
  const Tensor fresh = embed_images(clip, to_embed, a.batch, a.alpha, &skipped);  // [new, E]
  std::set<std::string> skipped_set(skipped.begin(), skipped.end());
  std::vector<IndexEntry> kept;
  std::vector<Tensor> rows;
  size_t next_fresh = 0, n_cached = 0;
  for (const auto& f : files) {
    const std::string full = (dir / f.path).string();
    if (skipped_set.count(full)) continue;
    const auto it = cached.find(f.path);
    if (it != cached.end() && it->second.first.size == f.size && it->second.first.mtime == f.mtime) {
      rows.push_back(it->second.second);
      ++n_cached;
    } else {
      rows.push_back(fresh.select(0, static_cast<int64_t>(next_fresh++)));
    }
    kept.push_back(f);
  }
  MM_CHECK(!rows.empty(), "mmclip search: none of the images under '", dir.string(), "' could be read");
  const size_t n_new = to_embed.size() - skipped.size();
  std::set<std::string> present;
  for (const auto& f : files) present.insert(f.path);
  size_t n_removed = 0;  // index rows whose file is gone
  for (const auto& [path, row] : cached) n_removed += present.count(path) == 0;
  std::fprintf(stderr, "mmclip search: indexed %zu new, %zu cached, %zu removed (%zu images, %s)\n", n_new, n_cached,
               n_removed, kept.size(), index_path.c_str());
  const Tensor features = stack(rows, 0);  // [N, E]
  if (n_new > 0 || n_removed > 0) {
    json meta = {{"version", 1}, {"model", model_id}, {"files", json::array()}};
    for (const auto& f : kept) meta["files"].push_back({{"path", f.path}, {"size", f.size}, {"mtime", f.mtime}});
    const std::string tmp = index_path.string() + ".tmp";
    try {
      save_safetensors(tmp, {{"image_features", features}}, {{"format", "pt"}, {"mmclip_index", meta.dump()}});
      fs::rename(tmp, index_path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mmclip search: could not save the index (%s); continuing without it\n", e.what());
    }
  }

  // The query: an image file, or a text.
  const bool image_query = query_is_file;
  Tensor q;
  if (image_query) {
    q = embed_images(clip, {query}, 1, a.alpha);
  } else {
    ClipTokenizer tok = apps::load_tokenizer(a.vocab, a.model, clip.config().vocab_size);
    q = embed_texts(clip, tok, {query}, truncate_of(a), 1);
  }
  const std::vector<float> scores = matmul(normalize(features, -1), normalize(q, -1).t()).contiguous().to_vector<float>();
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return scores[x] > scores[y]; });
  const size_t top = std::min<size_t>(static_cast<size_t>(a.top), order.size());
  if (a.json) {
    json out = {{"query", query}, {"image_query", image_query}, {"results", json::array()}};
    for (size_t k = 0; k < top; ++k)
      out["results"].push_back({{"path", (dir / kept[order[k]].path).string()}, {"score", scores[order[k]]}});
    std::printf("%s\n", out.dump().c_str());
  } else {
    for (size_t k = 0; k < top; ++k)
      std::printf("%.4f  %s\n", scores[order[k]], (dir / kept[order[k]].path).c_str());
  }
  return 0;
}

// ---- tokenize ---------------------------------------------------------------------------------

int run_tokenize(const Args& a) {
  MM_CHECK(!a.positional.empty(), "mmclip tokenize: no text given (mmclip tokenize \"a photo of a cat\")");
  ClipTokenizer tok = apps::load_tokenizer(a.vocab, a.model);
  for (const auto& text : a.positional) {
    const std::vector<int64_t> ids = tokenize(tok, text, a.context_length, truncate_of(a));  // padded, as clip.tokenize
    if (a.json) {
      std::printf("%s\n", json(ids).dump().c_str());
    } else {
      std::string line;
      for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
      std::printf("%s\n", line.c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) return usage(stderr);
    const std::string first = argv[1];
    if (first == "--help" || first == "-h") return usage(stdout);
    const Args a = parse(argc, argv);
    if (a.threads > 0) set_num_threads(static_cast<int>(a.threads));
    NoGradGuard no_grad;
    if (a.command == "classify") return run_classify(a);
    if (a.command == "embed") return run_embed(a);
    if (a.command == "search") return run_search(a);
    return run_tokenize(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
