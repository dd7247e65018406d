// apps/common/model_files.cpp: model file lookup for the apps (see model_files.h).
#include "apps/common/model_files.h"

#include <cstdlib>
#include <fstream>

#include "weights_tools/torch_file.h"

namespace mm::apps {

namespace {
bool exists(const std::string& p) { return std::ifstream(p).good(); }
std::string dir_of(const std::string& p) {
  const size_t s = p.rfind('/');
  return s == std::string::npos ? "." : p.substr(0, s);
}
std::string stem_of(const std::string& p) {
  const size_t s = p.rfind('/');
  const std::string name = s == std::string::npos ? p : p.substr(s + 1);
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}
}  // namespace

std::string cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/mm";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/mm";
  return ".mm-cache";
}

ClipModel load_clip(const std::string& weights, const std::string& config_json) {
  TensorFile f = load_weights(weights);
  const bool hf = map_hf_clip_names(f);
  ClipConfig c = infer_clip_config(f);
  std::string json = config_json;
  if (json.empty()) {
    // <stem>.json, or Hugging Face's config.json beside a model.safetensors with its names
    for (const std::string& beside : {dir_of(weights) + "/" + stem_of(weights) + ".json",
                                      hf ? dir_of(weights) + "/config.json" : std::string()})
      if (!beside.empty() && exists(beside)) {
        json = beside;
        break;
      }
  }
  if (!json.empty()) {
    c = load_clip_config_json(json, c);
  } else if (auto it = f.metadata.find("config"); it != f.metadata.end()) {
    c = clip_config_from_json(it->second, weights + " (metadata 'config')", c);
  }
  return ClipModel::load(f, c);
}

ClipTokenizer load_tokenizer(const std::string& vocab_arg, const std::string& clip_weights, int64_t expect) {
  const char* name = "bpe_simple_vocab_16e6.txt.gz";
  std::vector<std::string> tried;
  auto attempt = [&](const std::string& p) {
    tried.push_back(p);
    return exists(p);
  };
  auto checked = [&](const std::string& path) {
    // Hugging Face's vocab.json, with merges.txt beside it; else OpenAI's gzip'd merges
    const bool hf = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
    if (hf)
      MM_CHECK(exists(dir_of(path) + "/merges.txt"), "the Hugging Face vocabulary '", path, "' needs merges.txt beside it (",
               dir_of(path), "/merges.txt cannot be read)");
    ClipTokenizer tok = hf ? ClipTokenizer::from_hf_files(path, dir_of(path) + "/merges.txt")
                           : ClipTokenizer::from_bpe_file(path);
    MM_CHECK(expect <= 0 || tok.vocab_size() == expect, "the vocabulary '", path, "' has ", tok.vocab_size(),
             " ids but the CLIP model '", clip_weights, "' has vocab_size ", expect,
             ": they do not belong together (pass the model's own vocabulary with --vocab)");
    return tok;
  };
  if (!vocab_arg.empty()) {
    MM_CHECK(exists(vocab_arg), "--vocab '", vocab_arg, "' cannot be read");
    return checked(vocab_arg);
  }
  if (!clip_weights.empty() && attempt(dir_of(clip_weights) + "/" + stem_of(clip_weights) + ".bpe.txt.gz"))
    return checked(tried.back());
  if (const char* env = std::getenv("MM_VOCAB"); env && *env) {
    MM_CHECK(exists(env), "MM_VOCAB='", env, "' cannot be read");
    return checked(env);
  }
  if (!clip_weights.empty() && attempt(dir_of(clip_weights) + "/" + name)) return checked(tried.back());
  // a Hugging Face model folder: vocab.json + merges.txt beside model.safetensors
  // (vocab.json without merges.txt is an error saying so)
  if (!clip_weights.empty() && attempt(dir_of(clip_weights) + "/vocab.json")) return checked(tried.back());
  if (attempt(cache_dir() + "/" + name)) return checked(tried.back());
  std::string where;
  for (const auto& t : tried) where += "\n  " + t;
  throw Error(str_cat("CLIP's BPE vocabulary (", name, ") was not found. Looked at --vocab, $MM_VOCAB and:", where,
                      "\nGet it with: bash weights_tools/download.sh vocab   (or pass --vocab FILE)"));
}

VQGAN load_vqgan(const std::string& weights, const std::string& yaml) {
  std::string y = yaml;
  if (y.empty()) {
    for (const std::string& cand : {dir_of(weights) + "/" + stem_of(weights) + ".yaml", dir_of(weights) + "/model.yaml"})
      if (exists(cand)) {
        y = cand;
        break;
      }
  }
  return VQGAN::load(weights, y);
}

Alpha clip_alpha(const std::string& weights) {
  const std::string ext = ".safetensors";
  if (weights.size() < ext.size() || weights.compare(weights.size() - ext.size(), ext.size(), ext) != 0) return Alpha::drop;
  const TensorFile f = load_safetensors(weights);  // a memory map: only the header is read here
  auto it = f.metadata.find("kind");
  return it != f.metadata.end() && it->second == "mm-mini clip" ? Alpha::white : Alpha::drop;
}

std::string default_model_dir() {
  if (const char* env = std::getenv("MM_MODELS"); env && *env) return env;
#ifdef MM_DEFAULT_MODEL_DIR
  return MM_DEFAULT_MODEL_DIR;
#else
  return "models/mini";
#endif
}

std::string default_model(const std::string& name) {
  const std::string path = default_model_dir() + "/" + name + ".safetensors";
  MM_CHECK(exists(path), "the default model '", name, "' is not at ", path,
           " (mm-mini ships in the source tree's models/mini/; $MM_MODELS overrides the folder)");
  return path;
}

}  // namespace mm::apps
