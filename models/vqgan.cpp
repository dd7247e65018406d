// models/vqgan.cpp: the VQGAN forward passes, written block by block like taming's
// taming/modules/diffusionmodules/model.py (Encoder, Decoder, ResnetBlock, AttnBlock,
// Downsample, Upsample) and taming/modules/vqvae/quantize.py (VectorQuantizer2).
#include "models/vqgan.h"

#include <nlohmann/json.hpp>

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "engine/mm.h"
#include "engine/ops/attention.h"
#include "engine/ops/conv.h"
#include "engine/ops/norm.h"
#include "engine/ops/pool.h"
#include "engine/ops/resize.h"
#include "engine/ops/vq.h"
#include "weights_tools/torch_file.h"

namespace mm {

bool VQGANConfig::attn_at_level(int64_t level) const {
  const int64_t res = resolution >> level;
  for (int64_t r : attn_resolutions)
    if (r == res) return true;
  return false;
}

std::string VQGANConfig::str() const {
  std::ostringstream os;
  os << "VQGAN f" << downsample_factor() << " ch " << ch << " ch_mult [";
  for (size_t i = 0; i < ch_mult.size(); ++i) os << (i ? "," : "") << ch_mult[i];
  os << "] res_blocks " << num_res_blocks << " attn_resolutions [";
  for (size_t i = 0; i < attn_resolutions.size(); ++i) os << (i ? "," : "") << attn_resolutions[i];
  os << "] resolution " << resolution << " z_channels " << z_channels << " codebook " << n_embed << "x" << embed_dim;
  if (gumbel) os << " (Gumbel quantiser)";
  return os.str();
}

VQGANConfig load_vqgan_yaml(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    throw Error(str_cat("cannot read VQGAN config '", path, "': ", e.what()));
  }
  YAML::Node params = root["model"] ? root["model"]["params"] : YAML::Node();
  MM_CHECK(params && params.IsMap(), "'", path, "': expected taming's layout model: params: {embed_dim, n_embed, ddconfig}");
  const std::string target = root["model"]["target"] ? root["model"]["target"].as<std::string>() : "";
  MM_CHECK(target.empty() || target == "taming.models.vqgan.VQModel" || target == "taming.models.vqgan.GumbelVQ", "'",
           path, "': model.target '", target,
           "' is not supported (supported: taming.models.vqgan.VQModel, taming.models.vqgan.GumbelVQ)");
  VQGANConfig c;
  c.gumbel = target == "taming.models.vqgan.GumbelVQ";
  try {
    MM_CHECK(params["embed_dim"] && params["n_embed"] && params["ddconfig"], "'", path,
             "': model.params needs embed_dim, n_embed and ddconfig");
    // model.params: the arguments of taming's VQModel / GumbelVQ. Training-only ones are
    // ignored; remap (a re-indexed codebook) is not supported.
    static const std::set<std::string> known_params = {
        "ddconfig",  "lossconfig",       "n_embed",          "embed_dim", "ckpt_path", "ignore_keys", "image_key",
        "monitor",   "colorize_nlabels", "sane_index_shape", "remap",     "kl_weight", "temperature_scheduler_config"};
    for (const auto& kv : params) {
      const std::string k = kv.first.as<std::string>();
      MM_CHECK(known_params.count(k), "'", path, "': unknown model.params key '", k, "' (taming's VQModel takes ",
               "ddconfig, lossconfig, n_embed, embed_dim and training options)");
    }
    MM_CHECK(!params["remap"] || params["remap"].IsNull(), "'", path,
             "': model.params.remap (a re-indexed codebook) is not supported");
    c.embed_dim = params["embed_dim"].as<int64_t>();
    c.n_embed = params["n_embed"].as<int64_t>();
    const YAML::Node dd = params["ddconfig"];
    static const std::set<std::string> known = {"double_z", "z_channels", "resolution", "in_channels", "out_ch", "ch",
                                                "ch_mult", "num_res_blocks", "attn_resolutions", "dropout"};
    // Options of taming's Encoder/Decoder that mm implements only at their defaults.
    static const std::map<std::string, bool> only_default_flag = {
        {"resamp_with_conv", true}, {"give_pre_end", false}, {"tanh_out", false}, {"use_linear_attn", false}};
    for (const auto& kv : dd) {
      const std::string k = kv.first.as<std::string>();
      if (auto it = only_default_flag.find(k); it != only_default_flag.end()) {
        bool v = false;
        MM_CHECK(kv.second.IsScalar() && YAML::convert<bool>::decode(kv.second, v), "'", path, "': ddconfig ", k,
                 " must be true or false");
        MM_CHECK(v == it->second, "'", path, "': ddconfig ", k, ": ", kv.second.as<std::string>(),
                 " is not supported (mm implements ", k, ": ", it->second ? "true" : "false", ")");
        continue;
      }
      if (k == "attn_type") {
        MM_CHECK(kv.second.IsScalar() && kv.second.as<std::string>() == "vanilla", "'", path,
                 "': ddconfig attn_type: ", kv.second.IsScalar() ? kv.second.as<std::string>() : std::string("?"),
                 " is not supported (mm implements attn_type: vanilla)");
        continue;
      }
      MM_CHECK(known.count(k), "'", path, "': unknown ddconfig key '", k, "'");
    }
    for (const char* k : {"z_channels", "resolution", "ch", "ch_mult", "num_res_blocks", "attn_resolutions"})
      MM_CHECK(dd[k], "'", path, "': ddconfig lacks '", k, "'");
    c.double_z = dd["double_z"] ? dd["double_z"].as<bool>() : false;
    c.z_channels = dd["z_channels"].as<int64_t>();
    c.resolution = dd["resolution"].as<int64_t>();
    c.in_channels = dd["in_channels"] ? dd["in_channels"].as<int64_t>() : 3;
    c.out_ch = dd["out_ch"] ? dd["out_ch"].as<int64_t>() : 3;
    c.ch = dd["ch"].as<int64_t>();
    c.ch_mult = dd["ch_mult"].as<std::vector<int64_t>>();
    c.num_res_blocks = dd["num_res_blocks"].as<int64_t>();
    c.attn_resolutions = dd["attn_resolutions"].as<std::vector<int64_t>>();
  } catch (const YAML::Exception& e) {
    throw Error(str_cat("'", path, "': invalid VQGAN config: ", e.what()));
  }
  MM_CHECK(!c.ch_mult.empty() && c.ch > 0 && c.num_res_blocks > 0 && c.embed_dim > 0 && c.n_embed > 0, "'", path,
           "': invalid sizes in the config (", c.str(), ")");
  return c;
}

static int64_t count_children(const TensorFile& f, const std::string& prefix) {
  // number of distinct N in "prefix.N." keys
  std::set<int64_t> seen;
  for (const auto& [name, t] : f.tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    const size_t end = name.find('.', prefix.size());
    if (end == std::string::npos) continue;
    try {
      seen.insert(std::stoll(name.substr(prefix.size(), end - prefix.size())));
    } catch (const std::exception&) {
    }
  }
  return static_cast<int64_t>(seen.size());
}

VQGANConfig infer_vqgan_config(const TensorFile& f, int64_t resolution) {
  VQGANConfig c;
  const Tensor& conv_in = f.get("encoder.conv_in.weight");  // [ch, in, 3, 3]
  c.ch = conv_in.size(0);
  c.in_channels = conv_in.size(1);
  const int64_t levels = count_children(f, "encoder.down.");
  MM_CHECK(levels > 0, "'", f.path, "': no encoder.down.* tensors: not a taming VQGAN");
  c.ch_mult.clear();
  for (int64_t i = 0; i < levels; ++i)
    c.ch_mult.push_back(f.get(str_cat("encoder.down.", i, ".block.0.conv1.weight")).size(0) / c.ch);
  c.num_res_blocks = count_children(f, "encoder.down.0.block.");
  c.resolution = resolution;
  c.attn_resolutions.clear();
  for (int64_t i = 0; i < levels; ++i)
    if (f.contains(str_cat("encoder.down.", i, ".attn.0.q.weight"))) c.attn_resolutions.push_back(resolution >> i);
  c.z_channels = f.get("encoder.conv_out.weight").size(0);
  const Tensor& qc = f.get("quant_conv.weight");  // [embed_dim, z_channels, 1, 1]
  c.double_z = false;  // a VQGAN's encoder never doubles z (that is the KL autoencoder)
  c.embed_dim = qc.size(0);
  c.gumbel = f.contains("quantize.embed.weight") && !f.contains("quantize.embedding.weight");
  c.n_embed = f.get(VQGAN::codebook_key(c)).size(0);
  c.out_ch = f.get("decoder.conv_out.weight").size(0);
  return c;
}

// ---- loading: the table of expected tensors, checked against the file ---------------------

namespace {

void expect(std::map<std::string, Shape>& table, const std::string& key, Shape shape) { table[key] = std::move(shape); }

void expect_conv(std::map<std::string, Shape>& t, const std::string& p, int64_t out, int64_t in, int64_t k) {
  expect(t, p + ".weight", {out, in, k, k});
  expect(t, p + ".bias", {out});
}
void expect_norm(std::map<std::string, Shape>& t, const std::string& p, int64_t c) {
  expect(t, p + ".weight", {c});
  expect(t, p + ".bias", {c});
}
void expect_resnet(std::map<std::string, Shape>& t, const std::string& p, int64_t in, int64_t out) {
  expect_norm(t, p + ".norm1", in);
  expect_conv(t, p + ".conv1", out, in, 3);
  expect_norm(t, p + ".norm2", out);
  expect_conv(t, p + ".conv2", out, out, 3);
  if (in != out) expect_conv(t, p + ".nin_shortcut", out, in, 1);
}
void expect_attn(std::map<std::string, Shape>& t, const std::string& p, int64_t c) {
  expect_norm(t, p + ".norm", c);
  for (const char* n : {".q", ".k", ".v", ".proj_out"}) expect_conv(t, p + n, c, c, 1);
}

}  // namespace

std::map<std::string, Shape> vqgan_weight_table(const VQGANConfig& c) {
  std::map<std::string, Shape> t;
  const int64_t L = c.num_levels();
  expect_conv(t, "encoder.conv_in", c.ch, c.in_channels, 3);
  int64_t block_in = c.ch;
  for (int64_t i = 0; i < L; ++i) {
    const int64_t in_mult = i == 0 ? 1 : c.ch_mult[i - 1];
    block_in = c.ch * in_mult;
    const int64_t block_out = c.ch * c.ch_mult[i];
    for (int64_t j = 0; j < c.num_res_blocks; ++j) {
      expect_resnet(t, str_cat("encoder.down.", i, ".block.", j), block_in, block_out);
      block_in = block_out;
      if (c.attn_at_level(i)) expect_attn(t, str_cat("encoder.down.", i, ".attn.", j), block_in);
    }
    if (i != L - 1) expect_conv(t, str_cat("encoder.down.", i, ".downsample.conv"), block_in, block_in, 3);
  }
  expect_resnet(t, "encoder.mid.block_1", block_in, block_in);
  expect_attn(t, "encoder.mid.attn_1", block_in);
  expect_resnet(t, "encoder.mid.block_2", block_in, block_in);
  expect_norm(t, "encoder.norm_out", block_in);
  expect_conv(t, "encoder.conv_out", c.double_z ? 2 * c.z_channels : c.z_channels, block_in, 3);

  block_in = c.ch * c.ch_mult.back();
  expect_conv(t, "decoder.conv_in", block_in, c.z_channels, 3);
  expect_resnet(t, "decoder.mid.block_1", block_in, block_in);
  expect_attn(t, "decoder.mid.attn_1", block_in);
  expect_resnet(t, "decoder.mid.block_2", block_in, block_in);
  for (int64_t i = L - 1; i >= 0; --i) {
    const int64_t block_out = c.ch * c.ch_mult[i];
    for (int64_t j = 0; j <= c.num_res_blocks; ++j) {
      expect_resnet(t, str_cat("decoder.up.", i, ".block.", j), block_in, block_out);
      block_in = block_out;
      if (c.attn_at_level(i)) expect_attn(t, str_cat("decoder.up.", i, ".attn.", j), block_in);
    }
    if (i != 0) expect_conv(t, str_cat("decoder.up.", i, ".upsample.conv"), block_in, block_in, 3);
  }
  expect_norm(t, "decoder.norm_out", block_in);
  expect_conv(t, "decoder.conv_out", c.out_ch, block_in, 3);
  expect(t, VQGAN::codebook_key(c), {c.n_embed, c.embed_dim});
  if (c.gumbel) expect_conv(t, "quantize.proj", c.n_embed, c.z_channels, 1);  // taming: Conv2d(z_channels, n_embed, 1)
  expect_conv(t, "quant_conv", c.embed_dim, c.double_z ? 2 * c.z_channels : c.z_channels, 1);
  expect_conv(t, "post_quant_conv", c.z_channels, c.embed_dim, 1);
  return t;
}


VQGAN VQGAN::from_tensors(const TensorFile& f, const VQGANConfig& config) {
  VQGAN m;
  m.config_ = config;
  m.path_ = f.path;
  MM_CHECK(!config.double_z, "'", f.path, "': double_z VQGANs are not supported");
  // taming's GumbelQuantize applies its proj, declared with z_channels inputs, to quant_conv's
  // embed_dim outputs: the two must agree (they do in taming's released Gumbel models).
  MM_CHECK(!config.gumbel || config.embed_dim == config.z_channels, "'", f.path, "': a Gumbel VQGAN needs embed_dim (",
           config.embed_dim, ") = z_channels (", config.z_channels, ")");
  const std::map<std::string, Shape> table = vqgan_weight_table(config);
  for (const auto& [name, t] : f.tensors) {
    if (name.rfind("loss.", 0) == 0) continue;  // LPIPS + discriminator: training only
    auto it = table.find(name);
    MM_CHECK(it != table.end(), "'", f.path, "': unexpected tensor '", name, "' ", t.str(), " for ", config.str(),
             " (does the config match the checkpoint?)");
    MM_CHECK(t.shape() == it->second, "'", f.path, "': tensor '", name, "' has shape ", shape_str(t.shape()),
             ", expected ", shape_str(it->second), " for ", config.str(), " (does the config match the checkpoint?)");
    m.weights_[name] = t.to(DType::f32).contiguous();
  }
  for (const auto& [name, shape] : table)
    MM_CHECK(m.weights_.count(name), "'", f.path, "': missing tensor '", name, "' ", shape_str(shape), " for ",
             config.str());
  return m;
}

VQGAN VQGAN::load(const std::string& weights_path, const std::string& yaml_path) {
  TensorFile f = load_weights(weights_path);
  VQGANConfig c;
  if (!yaml_path.empty()) c = load_vqgan_yaml(yaml_path);
  else if (auto it = f.metadata.find("config"); it != f.metadata.end())
    c = vqgan_config_from_json(it->second, weights_path + " (metadata 'config')");
  else c = infer_vqgan_config(f);
  return from_tensors(f, c);
}

const Tensor& VQGAN::get(const std::string& key) const {
  auto it = weights_.find(key);
  MM_CHECK(it != weights_.end(), "[VQGAN] no weight '", key, "' in '", path_, "'");
  return it->second;
}

// ---- blocks ----------------------------------------------------------------------------------

Tensor VQGAN::conv(const std::string& p, const Tensor& x, int64_t padding) const {
  return conv2d(x, get(p + ".weight"), get(p + ".bias"), conv2d_options(1, padding));
}

// GroupNorm(32 groups, eps 1e-6), taming's Normalize()
Tensor VQGAN::norm(const std::string& p, const Tensor& x) const {
  return group_norm(x, 32, get(p + ".weight"), get(p + ".bias"), 1e-6);
}

// swish(Normalize(x)) as one op: its backward keeps x alone (engine/ops/norm.h)
Tensor VQGAN::norm_silu(const std::string& p, const Tensor& x) const {
  return group_norm_silu(x, 32, get(p + ".weight"), get(p + ".bias"), 1e-6);
}

// h = conv2(swish(norm2(conv1(swish(norm1(x)))))); x' = nin_shortcut(x) when channels change
Tensor VQGAN::resnet_block(const std::string& p, const Tensor& x) const {
  Tensor h = conv(p + ".conv1", norm_silu(p + ".norm1", x), 1);
  h = conv(p + ".conv2", norm_silu(p + ".norm2", h), 1);  // dropout is 0 at inference
  Tensor shortcut = weights_.count(p + ".nin_shortcut.weight") ? conv(p + ".nin_shortcut", x) : x;
  return add(shortcut, h);
}

// Single-head self-attention over the h*w positions, C^-0.5 scaling, 1x1 convs for q/k/v.
Tensor VQGAN::attn_block(const std::string& p, const Tensor& x) const {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Tensor h = norm(p + ".norm", x);
  // q, k, v: [B, C, H, W] -> [B, 1, HW, C]
  auto tokens = [&](const char* n) { return conv(p + n, h).reshape({B, 1, C, H * W}).transpose(2, 3); };
  Tensor o = scaled_dot_product_attention(tokens(".q"), tokens(".k"), tokens(".v"));  // [B, 1, HW, C]
  o = o.transpose(2, 3).reshape({B, C, H, W});
  return add(x, conv(p + ".proj_out", o));
}

size_t VQGAN::release_encoder() {
  size_t bytes = 0;
  for (auto it = weights_.begin(); it != weights_.end();) {
    if (it->first.rfind("encoder.", 0) == 0 || it->first.rfind("quant_conv.", 0) == 0) {
      bytes += static_cast<size_t>(it->second.numel()) * dtype_size(it->second.dtype());
      it = weights_.erase(it);
    } else {
      ++it;
    }
  }
  encoder_released_ = true;
  return bytes;
}

Tensor VQGAN::encoder(const Tensor& x) const {
  MM_CHECK(!encoder_released_, "[VQGAN.encode] this model's encoder was released (release_encoder: generation keeps "
           "only the decoder)");
  cuda_ops::PrecisionScope precision(precision_);
  MM_CHECK(x.dim() == 4 && x.size(1) == config_.in_channels, "[VQGAN.encode] expects [B, ", config_.in_channels,
           ", H, W], got ", x.str());
  const int64_t f = config_.downsample_factor();
  MM_CHECK(x.size(2) % f == 0 && x.size(3) % f == 0, "[VQGAN.encode] image ", x.size(3), "x", x.size(2),
           " is not a multiple of the downsampling factor ", f);
  Tensor h = conv("encoder.conv_in", x, 1);
  for (int64_t i = 0; i < config_.num_levels(); ++i) {
    for (int64_t j = 0; j < config_.num_res_blocks; ++j) {
      h = resnet_block(str_cat("encoder.down.", i, ".block.", j), h);
      if (config_.attn_at_level(i)) h = attn_block(str_cat("encoder.down.", i, ".attn.", j), h);
    }
    if (i != config_.num_levels() - 1) {  // pad right/bottom by one, 3x3 stride-2 conv
      const std::string p = str_cat("encoder.down.", i, ".downsample.conv");
      Conv2dOptions o;
      o.stride = {2, 2};
      o.padding = {0, 1, 0, 1};
      h = conv2d(h, get(p + ".weight"), get(p + ".bias"), o);
    }
  }
  h = resnet_block("encoder.mid.block_1", h);
  h = attn_block("encoder.mid.attn_1", h);
  h = resnet_block("encoder.mid.block_2", h);
  return conv("encoder.conv_out", norm_silu("encoder.norm_out", h), 1);
}

Tensor VQGAN::encode(const Tensor& x) const {
  cuda_ops::PrecisionScope precision(precision_);
  return conv("quant_conv", encoder(x));
}

VQGAN VQGAN::to(Device device) const {
  VQGAN out = *this;
  for (auto& [key, t] : out.weights_) t = t.to(device);
  return out;
}

VQCodes VQGAN::quantize(const Tensor& h) const {
  if (!config_.gumbel) return nearest_codes(h);
  MM_CHECK(h.dim() == 4 && h.size(1) == config_.embed_dim, "[VQGAN.quantize] expects [B, ", config_.embed_dim,
           ", h, w], got ", h.str());
  cuda_ops::PrecisionScope precision(precision_);
  VQCodes out;
  out.indices = argmax(conv("quantize.proj", h.detach()), 1);  // logits [B, K, h, w] -> [B, h, w]
  out.z_q = codes_to_latent(out.indices);
  return out;
}

VQCodes VQGAN::nearest_codes(const Tensor& h) const {
  MM_CHECK(h.dim() == 4 && h.size(1) == config_.embed_dim, "[VQGAN.quantize] expects [B, ", config_.embed_dim,
           ", h, w], got ", h.str());
  const int64_t B = h.size(0), D = h.size(1), H = h.size(2), W = h.size(3);
  Tensor flat = h.detach().permute({0, 2, 3, 1}).reshape({B * H * W, D});  // [N, D] in (b, h, w) order
  Quantized q = vector_quantize(flat, codebook());
  Tensor e = q.z_q.reshape({B, H, W, D}).permute({0, 3, 1, 2}).contiguous();
  VQCodes out;
  out.indices = q.indices.reshape({B, H, W});
  // z_q = h + (e - h).detach(): the value of e, the gradient of h (straight-through)
  out.z_q = straight_through(e, h);
  return out;
}

Tensor VQGAN::codes_to_latent(const Tensor& indices) const {
  MM_CHECK(indices.dim() == 3 && indices.dtype() == DType::i64, "[VQGAN.codes_to_latent] expects int64 [B, h, w], got ",
           indices.str());
  const int64_t B = indices.size(0), H = indices.size(1), W = indices.size(2);
  return embedding(indices, codebook()).permute({0, 3, 1, 2}).contiguous().reshape({B, config_.embed_dim, H, W});
}

Tensor VQGAN::decode(const Tensor& z_q) const {
  cuda_ops::PrecisionScope precision(precision_);
  MM_CHECK(z_q.dim() == 4 && z_q.size(1) == config_.embed_dim, "[VQGAN.decode] expects [B, ", config_.embed_dim,
           ", h, w], got ", z_q.str());
  Tensor h = conv("decoder.conv_in", conv("post_quant_conv", z_q), 1);
  h = resnet_block("decoder.mid.block_1", h);
  h = attn_block("decoder.mid.attn_1", h);
  h = resnet_block("decoder.mid.block_2", h);
  for (int64_t i = config_.num_levels() - 1; i >= 0; --i) {
    for (int64_t j = 0; j <= config_.num_res_blocks; ++j) {
      h = resnet_block(str_cat("decoder.up.", i, ".block.", j), h);
      if (config_.attn_at_level(i)) h = attn_block(str_cat("decoder.up.", i, ".attn.", j), h);
    }
    if (i != 0) h = conv(str_cat("decoder.up.", i, ".upsample.conv"), upsample_nearest2d(h, h.size(2) * 2, h.size(3) * 2), 1);
  }
  return conv("decoder.conv_out", norm_silu("decoder.norm_out", h), 1);
}

Tensor VQGAN::quantization_loss(const Tensor& h, const VQCodes& codes) const {
  MM_CHECK(!config_.gumbel, "[VQGAN.quantization_loss] is VectorQuantizer2's loss; this is a Gumbel-quantiser VQGAN");
  Tensor e = codes_to_latent(codes.indices);  // the codebook rows, with a gradient into the codebook
  return add(mean(square(sub(e, h.detach()))), mul(mean(square(sub(e.detach(), h))), 0.25));
}

std::string vqgan_config_to_json(const VQGANConfig& c) {
  nlohmann::ordered_json j;
  j["embed_dim"] = c.embed_dim;
  j["n_embed"] = c.n_embed;
  j["z_channels"] = c.z_channels;
  j["resolution"] = c.resolution;
  j["in_channels"] = c.in_channels;
  j["out_ch"] = c.out_ch;
  j["ch"] = c.ch;
  j["ch_mult"] = c.ch_mult;
  j["num_res_blocks"] = c.num_res_blocks;
  j["attn_resolutions"] = c.attn_resolutions;
  if (c.gumbel) j["quantizer"] = "gumbel";
  return j.dump();
}

VQGANConfig vqgan_config_from_json(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(str_cat("[vqgan config] ", origin, ": not valid JSON: ", e.what()));
  }
  VQGANConfig c;
  try {
    c.embed_dim = j.at("embed_dim").get<int64_t>();
    c.n_embed = j.at("n_embed").get<int64_t>();
    c.z_channels = j.at("z_channels").get<int64_t>();
    c.resolution = j.at("resolution").get<int64_t>();
    c.in_channels = j.at("in_channels").get<int64_t>();
    c.out_ch = j.at("out_ch").get<int64_t>();
    c.ch = j.at("ch").get<int64_t>();
    c.ch_mult = j.at("ch_mult").get<std::vector<int64_t>>();
    c.num_res_blocks = j.at("num_res_blocks").get<int64_t>();
    c.attn_resolutions = j.at("attn_resolutions").get<std::vector<int64_t>>();
    const std::string quantizer = j.value("quantizer", std::string("vq"));
    MM_CHECK(quantizer == "vq" || quantizer == "gumbel", "[vqgan config] ", origin, ": quantizer must be vq or gumbel, got '",
             quantizer, "'");
    c.gumbel = quantizer == "gumbel";
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(str_cat("[vqgan config] ", origin, ": ", e.what()));
  }
  return c;
}

}  // namespace mm
