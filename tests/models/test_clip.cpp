// tests/models/test_clip.cpp: ClipModel (ViT and ModifiedResNet image towers, text tower)
// against OpenAI CLIP's outputs in ../shared/refs (clip_{vit,rn}_tiny_*), loaded from both the
// .pt and the .safetensors files; config inference (tiny files, synthetic ViT-B/32, RN50);
// loader errors; Hugging Face names; the image gradient (float64 finite differences).
// Run: ./build/mm_tests --source-file=*test_clip.cpp
#include <doctest/doctest.h>

#include <algorithm>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "tests/errors.h"
#include "engine/cuda_ops.h"
#include "engine/mm.h"
#include "models/clip.h"
#include "models/clip_config.h"
#include "tests/refs.h"
#include "weights_tools/torch_file.h"

using namespace mm;

using mm::testing::error_of;

namespace {

constexpr double kForwardTol = 1e-4;  // refs/README.md "Tolerances": forward tensors

using testing::max_rel;

void check_tensor(const std::string& what, const Tensor& actual, const Tensor& expected, double tol = kForwardTol) {
  REQUIRE_MESSAGE(actual.defined(), what, ": not computed");
  REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", shape_str(actual.shape()), " vs expected ",
                  shape_str(expected.shape()));
  const double r = max_rel(actual, expected);
  MESSAGE(what << " max_rel " << r);
  CHECK_MESSAGE(r <= tol, what, " max_rel ", r, " exceeds ", tol);
}

TensorFile load_ref(const std::string& file) { return load_weights(testing::refs_path(file)); }

// The tiny configs: shapes from the weights, head counts from the json (the text towers
// have 2 heads although width / 64 = 0).
ClipModel load_tiny(const TensorFile& f, const std::string& stem) {
  return ClipModel::load(f, load_clip_config_json(testing::refs_path(stem + ".json"), infer_clip_config(f)));
}

// Runs every output and intermediate of the reference file through `model` and compares.
void check_against_refs(const ClipModel& model, const TensorFile& exp, const std::string& label) {
  ClipTrace tr;
  Tensor image = model.encode_image(exp.get("pixel_values"), &tr);
  Tensor text = model.encode_text(exp.get("text_tokens"), &tr);
  auto [per_image, per_text] = model.logits(image, text);
  const std::string p = label + " ";
  check_tensor(p + "image_features", image, exp.get("image_features"));
  check_tensor(p + "text_features", text, exp.get("text_features"));
  check_tensor(p + "logits_per_image", per_image, exp.get("logits_per_image"));
  check_tensor(p + "logits_per_text", per_text, exp.get("logits_per_text"));
  if (model.config().vision == ClipVision::vit) {
    check_tensor(p + "visual_conv1_out", tr.visual_conv1_out, exp.get("visual_conv1_out"));
    check_tensor(p + "visual_ln_pre_out", tr.visual_ln_pre_out, exp.get("visual_ln_pre_out"));
    check_tensor(p + "visual_block0_out", tr.visual_block0_out, exp.get("visual_block0_out"));
    check_tensor(p + "visual_ln_post_out", tr.visual_ln_post_out, exp.get("visual_ln_post_out"));
  } else {
    check_tensor(p + "visual_stem_out", tr.visual_stem_out, exp.get("visual_stem_out"));
    for (int i = 0; i < 4; ++i) {
      const std::string name = "visual_layer" + std::to_string(i + 1) + "_out";
      check_tensor(p + name, tr.visual_layer_out[i], exp.get(name));
    }
  }
  check_tensor(p + "text_block0_out", tr.text_block0_out, exp.get("text_block0_out"));
  check_tensor(p + "text_ln_final_out", tr.text_ln_final_out, exp.get("text_ln_final_out"));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A tensor of the given shape that costs no memory (a broadcast zero): config inference
// reads shapes only.
Tensor shape_only(const Shape& shape) {
  if (shape.empty()) return Tensor::scalar(0.0);
  return Tensor::zeros(Shape(shape.size(), 1)).expand(shape);
}

}  // namespace

TEST_CASE("clip_vit_tiny matches OpenAI CLIP (.pt and .safetensors)") {
  MM_REQUIRE_REFS("clip_vit_tiny.pt");
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  const TensorFile exp = load_ref("clip_vit_tiny_expected.safetensors");
  for (const char* ext : {".pt", ".safetensors"}) {
    SUBCASE((std::string("clip_vit_tiny") + ext).c_str()) {
      const TensorFile f = load_ref(std::string("clip_vit_tiny") + ext);
      check_against_refs(load_tiny(f, "clip_vit_tiny"), exp, std::string("vit") + ext);
    }
  }
}

TEST_CASE("clip_rn_tiny matches OpenAI CLIP (.pt and .safetensors)") {
  MM_REQUIRE_REFS("clip_rn_tiny.pt");
  MM_REQUIRE_REFS("clip_rn_tiny.safetensors");
  MM_REQUIRE_REFS("clip_rn_tiny_expected.safetensors");
  const TensorFile exp = load_ref("clip_rn_tiny_expected.safetensors");
  for (const char* ext : {".pt", ".safetensors"}) {
    SUBCASE((std::string("clip_rn_tiny") + ext).c_str()) {
      const TensorFile f = load_ref(std::string("clip_rn_tiny") + ext);
      check_against_refs(load_tiny(f, "clip_rn_tiny"), exp, std::string("rn") + ext);
    }
  }
}

TEST_CASE("clip keeps an fp16 file's linear weights as 16-bit views of the file; the rest float32") {
  MM_REQUIRE_REFS("clip_vit_tiny.pt");
  const TensorFile f = load_ref("clip_vit_tiny.pt");
  const ClipModel m = load_tiny(f, "clip_vit_tiny");
  int64_t kept = 0;
  for (const auto& [key, t] : f.tensors) {
    const std::vector<ClipTensorSpec> table = clip_weight_table(m.config());
    if (std::none_of(table.begin(), table.end(), [&](const ClipTensorSpec& s) { return s.key == key; })) continue;
    CAPTURE(key);
    const Tensor& w = m.weight(key);
    if (is_linear_weight_key(key) && t.dtype() == DType::f16) {
      // the file's own bytes: no copy was made
      CHECK(w.dtype() == DType::f16);
      CHECK(w.impl()->storage == t.impl()->storage);
      CHECK(w.offset() == t.offset());
      ++kept;
    } else {
      CHECK(w.dtype() == DType::f32);
    }
  }
  // every transformer block has in_proj, out_proj, c_fc and c_proj (the tiny ViT and text
  // towers: 2 + 2 blocks)
  CHECK(kept >= 16);
  // prepacked from 16 bits, encode_image is bitwise what it was
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  const TensorFile exp = load_ref("clip_vit_tiny_expected.safetensors");
  NoGradGuard ng;
  const std::vector<float> before = m.encode_image(exp.get("pixel_values")).to_vector<float>();
  ClipModel packed = load_tiny(f, "clip_vit_tiny");
  CHECK(packed.prepack("visual.") > 0);
  CHECK(linear_weight_packed(packed.weight("visual.transformer.resblocks.0.mlp.c_fc.weight")));
  CHECK(linear_weight_packed(packed.weight("visual.transformer.resblocks.1.attn.in_proj_weight")));
  CHECK(packed.encode_image(exp.get("pixel_values")).to_vector<float>() == before);
  // training widens them: the optimiser updates float32 copies, never the mapped file
  packed.set_trainable(true);
  CHECK(packed.weight("visual.transformer.resblocks.0.mlp.c_fc.weight").dtype() == DType::f32);
  CHECK(packed.weight("visual.transformer.resblocks.0.mlp.c_fc.weight").requires_grad());
  // ... and only 16-bit weights: a float64 model stays float64
  ClipModel f64 = load_tiny(f, "clip_vit_tiny").to(DType::f64);
  f64.set_trainable(true);
  CHECK(f64.weight("visual.transformer.resblocks.0.mlp.c_fc.weight").dtype() == DType::f64);
  CHECK(f64.weight("visual.ln_pre.weight").dtype() == DType::f64);
}

TEST_CASE("clip encode_text pools at the first EOT: empty text, truncated text, repeated EOT, short context") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  const TensorFile exp = load_ref("clip_vit_tiny_expected.safetensors");
  const ClipModel model = load_tiny(load_ref("clip_vit_tiny.safetensors"), "clip_vit_tiny");
  const Tensor tokens = exp.get("text_tokens");  // [4, 77]
  const Tensor expected = exp.get("text_features");
  const int64_t eot = 49407;

  SUBCASE("empty text: EOT at position 1") {
    REQUIRE(tokens.at<int64_t>({2, 1}) == eot);
    check_tensor("empty text features", model.encode_text(tokens.narrow(0, 2, 1)), expected.narrow(0, 2, 1));
  }
  SUBCASE("truncated 77-token text: EOT at position 76") {
    REQUIRE(tokens.at<int64_t>({3, 76}) == eot);
    check_tensor("truncated text features", model.encode_text(tokens.narrow(0, 3, 1)), expected.narrow(0, 3, 1));
  }
  SUBCASE("a second EOT after the first changes nothing (argmax takes the first)") {
    // "a photo of a cat<|endoftext|>" + another EOT later: the first EOT still pools, and
    // the causal mask keeps the later tokens out of its features.
    Tensor t = tokens.narrow(0, 0, 1).clone();
    int64_t first = -1;
    for (int64_t i = 0; i < 77 && first < 0; ++i)
      if (t.at<int64_t>({0, i}) == eot) first = i;
    REQUIRE(first > 0);
    t.data<int64_t>()[first + 3] = eot;
    t.data<int64_t>()[first + 1] = 320;  // an ordinary token in between
    check_tensor("repeated EOT features", model.encode_text(t), expected.narrow(0, 0, 1));
  }
  SUBCASE("a shorter context (T=16) gives the same features as the zero padding") {
    check_tensor("T=16 features", model.encode_text(tokens.narrow(0, 0, 3).narrow(1, 0, 16).contiguous()),
                 expected.narrow(0, 0, 3));
  }
}

TEST_CASE("clip config inference: the tiny files, build_model's rules, the json overrides") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("clip_rn_tiny.safetensors");
  SUBCASE("clip_vit_tiny") {
    const TensorFile f = load_ref("clip_vit_tiny.safetensors");
    ClipConfig c = infer_clip_config(f);
    CHECK(c.vision == ClipVision::vit);
    CHECK(c.vision_layers == std::vector<int64_t>{2});
    CHECK(c.vision_patch_size == 16);
    CHECK(c.vision_width == 128);
    CHECK(c.image_resolution == 64);
    CHECK(c.vision_heads == 2);
    CHECK(c.embed_dim == 64);
    CHECK(c.context_length == 77);
    CHECK(c.vocab_size == 49408);
    CHECK(c.transformer_width == 32);
    CHECK(c.transformer_layers == 2);
    CHECK(c.transformer_heads == 0);  // build_model's width / 64 rule
    const std::string msg = error_of([&] { ClipModel::load(f, c); });
    MESSAGE(msg);
    CHECK(contains(msg, "transformer_heads 0"));
    c = load_clip_config_json(testing::refs_path("clip_vit_tiny.json"), c);
    CHECK(c.transformer_heads == 2);
    CHECK(c.vision_heads == 2);
  }
  SUBCASE("clip_rn_tiny") {
    const TensorFile f = load_ref("clip_rn_tiny.safetensors");
    ClipConfig c = infer_clip_config(f);
    CHECK(c.vision == ClipVision::resnet);
    CHECK(c.vision_layers == std::vector<int64_t>{1, 1, 1, 1});
    CHECK(c.vision_patch_size == 0);
    CHECK(c.vision_width == 16);
    CHECK(c.image_resolution == 64);
    CHECK(c.vision_heads == 8);  // width * 32 / 64
    CHECK(c.embed_dim == 64);
    CHECK(c.transformer_layers == 2);
    c = load_clip_config_json(testing::refs_path("clip_rn_tiny.json"), c);
    CHECK(c.vision == ClipVision::resnet);
    CHECK(c.vision_layers == std::vector<int64_t>{1, 1, 1, 1});
    CHECK(c.transformer_heads == 2);
  }
  SUBCASE("json: an unknown key is named") {
    const std::string path = "/tmp/mm_test_clip_bad_config.json";
    std::ofstream(path) << R"({"embed_dim": 64, "vision_widht": 128})";
    const std::string msg = error_of([&] { load_clip_config_json(path); });
    MESSAGE(msg);
    CHECK(contains(msg, "vision_widht"));
    CHECK(contains(msg, path));
    std::remove(path.c_str());
  }
}

TEST_CASE("clip config inference on a synthetic ViT-B/32 state dict") {
  // The keys and shapes of OpenAI's ViT-B/32, written out independently of clip_weight_table.
  TensorFile f;
  f.path = "synthetic-ViT-B-32";
  auto add = [&](const std::string& k, const Shape& s) { f.tensors.emplace_back(k, shape_only(s)); };
  add("positional_embedding", {77, 512});
  add("text_projection", {512, 512});
  add("logit_scale", {});
  add("visual.class_embedding", {768});
  add("visual.positional_embedding", {50, 768});
  add("visual.proj", {768, 512});
  add("visual.conv1.weight", {768, 3, 32, 32});
  add("visual.ln_pre.weight", {768});
  add("visual.ln_pre.bias", {768});
  auto block = [&](const std::string& p, int64_t D) {
    add(p + "attn.in_proj_weight", {3 * D, D});
    add(p + "attn.in_proj_bias", {3 * D});
    add(p + "attn.out_proj.weight", {D, D});
    add(p + "attn.out_proj.bias", {D});
    add(p + "ln_1.weight", {D});
    add(p + "ln_1.bias", {D});
    add(p + "mlp.c_fc.weight", {4 * D, D});
    add(p + "mlp.c_fc.bias", {4 * D});
    add(p + "mlp.c_proj.weight", {D, 4 * D});
    add(p + "mlp.c_proj.bias", {D});
    add(p + "ln_2.weight", {D});
    add(p + "ln_2.bias", {D});
  };
  for (int i = 0; i < 12; ++i) block("visual.transformer.resblocks." + std::to_string(i) + ".", 768);
  add("visual.ln_post.weight", {768});
  add("visual.ln_post.bias", {768});
  for (int i = 0; i < 12; ++i) block("transformer.resblocks." + std::to_string(i) + ".", 512);
  add("token_embedding.weight", {49408, 512});
  add("ln_final.weight", {512});
  add("ln_final.bias", {512});
  // The TorchScript archives' extra scalars.
  add("input_resolution", {});
  add("context_length", {});
  add("vocab_size", {});

  const ClipConfig c = infer_clip_config(f);
  MESSAGE(c.str());
  CHECK(c.vision == ClipVision::vit);
  CHECK(c.vision_patch_size == 32);
  CHECK(c.image_resolution == 224);
  CHECK(c.vision_layers == std::vector<int64_t>{12});
  CHECK(c.vision_width == 768);
  CHECK(c.vision_heads == 12);
  CHECK(c.embed_dim == 512);
  CHECK(c.context_length == 77);
  CHECK(c.vocab_size == 49408);
  CHECK(c.transformer_width == 512);
  CHECK(c.transformer_heads == 8);
  CHECK(c.transformer_layers == 12);
  // The loader's table for this config is exactly the synthetic key set (less the extras).
  std::vector<ClipTensorSpec> table = clip_weight_table(c);
  REQUIRE(table.size() + 3 == f.tensors.size());
  for (size_t i = 0; i < table.size(); ++i) {
    CHECK_MESSAGE(table[i].key == f.tensors[i].first, "row ", i);
    CHECK_MESSAGE(table[i].shape == f.tensors[i].second.shape(), table[i].key);
  }
}

TEST_CASE("clip config inference round trip: RN50 and ViT-L/14 shapes") {
  ClipConfig rn50;
  rn50.vision = ClipVision::resnet;
  rn50.embed_dim = 1024;
  rn50.image_resolution = 224;
  rn50.vision_layers = {3, 4, 6, 3};
  rn50.vision_width = 64;
  rn50.vision_heads = 32;
  rn50.context_length = 77;
  rn50.vocab_size = 49408;
  rn50.transformer_width = 512;
  rn50.transformer_heads = 8;
  rn50.transformer_layers = 12;
  ClipConfig vitl = rn50;
  vitl.vision = ClipVision::vit;
  vitl.embed_dim = 768;
  vitl.vision_layers = {24};
  vitl.vision_width = 1024;
  vitl.vision_patch_size = 14;
  vitl.vision_heads = 16;
  vitl.transformer_width = 768;
  vitl.transformer_heads = 12;
  for (const ClipConfig& want : {rn50, vitl}) {
    SUBCASE(want.str().c_str()) {
      TensorFile f;
      f.path = "synthetic";
      for (const auto& spec : clip_weight_table(want)) f.tensors.emplace_back(spec.key, shape_only(spec.shape));
      if (want.vision == ClipVision::resnet) {
        // 1 + 3 + 4 + 6 + 3 bottlenecks; layer1.0 has a downsample (64 != 256).
        CHECK(f.contains("visual.layer1.0.downsample.0.weight"));
        CHECK_FALSE(f.contains("visual.layer1.1.downsample.0.weight"));
        CHECK(f.get("visual.attnpool.positional_embedding").shape() == Shape{50, 2048});
      }
      const ClipConfig got = infer_clip_config(f);
      CHECK(got.str() == want.str());
    }
  }
}

TEST_CASE("clip loader errors name the file, the key and both shapes") {
  MM_REQUIRE_REFS("clip_rn_tiny.safetensors");
  const TensorFile original = load_ref("clip_rn_tiny.safetensors");
  const ClipConfig config = load_clip_config_json(testing::refs_path("clip_rn_tiny.json"), infer_clip_config(original));
  TensorFile f = original;
  SUBCASE("missing key") {
    const std::string key = "visual.layer3.0.bn2.running_var";
    for (auto it = f.tensors.begin(); it != f.tensors.end(); ++it)
      if (it->first == key) {
        f.tensors.erase(it);
        break;
      }
    const std::string msg = error_of([&] { ClipModel::load(f, config); });
    MESSAGE(msg);
    CHECK(contains(msg, "missing tensor '" + key + "'"));
    CHECK(contains(msg, "[64]"));
    CHECK(contains(msg, f.path));
  }
  SUBCASE("wrong shape") {
    for (auto& [k, t] : f.tensors)
      if (k == "visual.attnpool.c_proj.weight") t = Tensor::zeros({64, 256});
    const std::string msg = error_of([&] { ClipModel::load(f, config); });
    MESSAGE(msg);
    CHECK(contains(msg, "'visual.attnpool.c_proj.weight'"));
    CHECK(contains(msg, "[64, 256]"));
    CHECK(contains(msg, "[64, 512]"));
    CHECK(contains(msg, f.path));
  }
  SUBCASE("unknown key") {
    f.tensors.emplace_back("visual.layer5.0.conv1.weight", Tensor::zeros({4, 4, 1, 1}));
    const std::string msg = error_of([&] { ClipModel::load(f, config); });
    MESSAGE(msg);
    CHECK(contains(msg, "unexpected tensor 'visual.layer5.0.conv1.weight'"));
    CHECK(contains(msg, f.path));
  }
  SUBCASE("TorchScript's extra scalars and num_batches_tracked are skipped") {
    for (const char* k : {"input_resolution", "context_length", "vocab_size"})
      f.tensors.emplace_back(k, Tensor::from_vector(std::vector<int64_t>{77}, {}));
    CHECK_NOTHROW(ClipModel::load(f, config));
  }
  SUBCASE("wrong image size is named") {
    const ClipModel m = ClipModel::load(f, config);
    const std::string msg = error_of([&] { m.encode_image(Tensor::zeros({1, 3, 32, 32})); });
    MESSAGE(msg);
    CHECK(contains(msg, "[1, 3, 32, 32]"));
  }
}

TEST_CASE("clip Hugging Face names give identical features") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  const TensorFile openai = load_ref("clip_vit_tiny.safetensors");
  // OpenAI -> HF names (the inverse of map_hf_clip_names, written out here independently).
  TensorFile hf;
  hf.path = "clip_vit_tiny as Hugging Face";
  auto put = [&](const std::string& k, const Tensor& t) { hf.tensors.emplace_back(k, t); };
  auto layer_tail = [](std::string tail) {
    const std::pair<const char*, const char*> renames[] = {{"attn.out_proj.", "self_attn.out_proj."},
                                                           {"ln_1.", "layer_norm1."},
                                                           {"ln_2.", "layer_norm2."},
                                                           {"mlp.c_fc.", "mlp.fc1."},
                                                           {"mlp.c_proj.", "mlp.fc2."}};
    for (const auto& [from, to] : renames)
      if (tail.rfind(from, 0) == 0) return to + tail.substr(std::string(from).size());
    return tail;
  };
  for (const auto& [k, t] : openai.tensors) {
    std::string layer;
    std::string tail;
    for (const auto& [oa, h] : {std::pair<std::string, std::string>("visual.transformer.resblocks.",
                                                                     "vision_model.encoder.layers."),
                                std::pair<std::string, std::string>("transformer.resblocks.",
                                                                     "text_model.encoder.layers.")}) {
      if (k.rfind(oa, 0) == 0 && layer.empty()) {
        const std::string rest = k.substr(oa.size());
        layer = h + rest.substr(0, rest.find('.') + 1);
        tail = rest.substr(rest.find('.') + 1);
      }
    }
    if (!layer.empty()) {
      if (tail == "attn.in_proj_weight" || tail == "attn.in_proj_bias") {
        const std::string kind = tail == "attn.in_proj_weight" ? "weight" : "bias";
        const int64_t D = t.size(0) / 3;
        put(layer + "self_attn.k_proj." + kind, t.narrow(0, D, D));  // HF order: k, v, q
        put(layer + "self_attn.v_proj." + kind, t.narrow(0, 2 * D, D));
        put(layer + "self_attn.q_proj." + kind, t.narrow(0, 0, D));
      } else {
        put(layer + layer_tail(tail), t);
      }
    } else if (k == "visual.proj") {
      put("visual_projection.weight", t.t().contiguous());
    } else if (k == "text_projection") {
      put("text_projection.weight", t.t().contiguous());
    } else if (k == "positional_embedding") {
      put("text_model.embeddings.position_embedding.weight", t);
    } else if (k == "token_embedding.weight") {
      put("text_model.embeddings.token_embedding.weight", t);
    } else if (k.rfind("ln_final.", 0) == 0) {
      put("text_model.final_layer_norm." + k.substr(9), t);
    } else if (k == "visual.class_embedding") {
      put("vision_model.embeddings.class_embedding", t);
    } else if (k == "visual.conv1.weight") {
      put("vision_model.embeddings.patch_embedding.weight", t);
    } else if (k == "visual.positional_embedding") {
      put("vision_model.embeddings.position_embedding.weight", t);
    } else if (k.rfind("visual.ln_pre.", 0) == 0) {
      put("vision_model.pre_layrnorm." + k.substr(14), t);
    } else if (k.rfind("visual.ln_post.", 0) == 0) {
      put("vision_model.post_layernorm." + k.substr(15), t);
    } else {
      put(k, t);  // logit_scale
    }
  }
  put("text_model.embeddings.position_ids", Tensor::arange(77, DType::i64).reshape({1, 77}));
  put("vision_model.embeddings.position_ids", Tensor::arange(17, DType::i64).reshape({1, 17}));
  REQUIRE(!hf.contains("visual.proj"));

  REQUIRE(map_hf_clip_names(hf));
  CHECK_FALSE(map_hf_clip_names(hf));  // already OpenAI names: nothing to do
  const ClipConfig config = load_clip_config_json(testing::refs_path("clip_vit_tiny.json"), infer_clip_config(hf));
  CHECK(config.vision_patch_size == 16);
  const ClipModel from_hf = ClipModel::load(hf, config);
  const ClipModel from_openai = load_tiny(openai, "clip_vit_tiny");
  const TensorFile exp = load_ref("clip_vit_tiny_expected.safetensors");
  const Tensor image = from_hf.encode_image(exp.get("pixel_values"));
  const Tensor text = from_hf.encode_text(exp.get("text_tokens"));
  check_tensor("hf image_features", image, exp.get("image_features"));
  check_tensor("hf text_features", text, exp.get("text_features"));
  check_tensor("hf vs openai image_features", image, from_openai.encode_image(exp.get("pixel_values")), 0.0);
  check_tensor("hf vs openai text_features", text, from_openai.encode_text(exp.get("text_tokens")), 0.0);
  // Hugging Face's config.json gives what the shapes cannot (the text heads: 2, not 32 / 64)
  const std::string hf_json = R"({"architectures": ["CLIPModel"], "projection_dim": 64, "logit_scale_init_value": 2.6592,
    "text_config": {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128,
                    "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu"},
    "vision_config": {"hidden_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2, "patch_size": 16,
                      "image_size": 64, "hidden_act": "quick_gelu"}, "torch_dtype": "float32"})";
  const ClipConfig from_json = clip_config_from_json(hf_json, "config.json", infer_clip_config(hf));
  CHECK(from_json.str() == config.str());
  CHECK(from_json.activation == ClipActivation::quick_gelu);
  check_tensor("hf config.json image_features", ClipModel::load(hf, from_json).encode_image(exp.get("pixel_values")),
               image, 0.0);
  // what config.json leaves out takes transformers' defaults (8 text heads, 12 vision heads)
  const ClipConfig sparse = clip_config_from_json(R"({"text_config": {}, "vision_config_dict": {"patch_size": 16}})",
                                                  "config.json", infer_clip_config(hf));
  CHECK(sparse.transformer_heads == 8);
  CHECK(sparse.vision_heads == 12);
  CHECK(sparse.vision_patch_size == 16);
  std::string gelu = hf_json;
  for (size_t at; (at = gelu.find("quick_gelu")) != std::string::npos;) gelu.replace(at, 10, "gelu");
  CHECK(clip_config_from_json(gelu, "config.json", infer_clip_config(hf)).activation == ClipActivation::gelu);
  std::string mixed = hf_json;
  mixed.replace(mixed.find("quick_gelu"), 10, "gelu");
  CHECK(contains(error_of([&] { clip_config_from_json(mixed, "config.json", infer_clip_config(hf)); }),
                 "config.json: the text and vision towers' hidden_act differ (gelu, quick_gelu)"));
}

// d/dx sum(encode_image(x) * w) along a random direction u: the autograd value <grad, u>
// against (L(x + eps u) - L(x - eps u)) / 2 eps, in float64; and the float32 gradient
// against the float64 one.
TEST_CASE("clip release_text_tower keeps the image tower and says so on encode_text") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  ClipModel model = load_tiny(load_ref("clip_vit_tiny.safetensors"), "clip_vit_tiny");
  const Tensor pixels = load_ref("clip_vit_tiny_expected.safetensors").get("pixel_values").narrow(0, 0, 2);
  const std::vector<float> before = model.encode_image(pixels).to_vector<float>();
  const Tensor& tok = model.weight("token_embedding.weight");
  const size_t tok_bytes = static_cast<size_t>(tok.numel()) * dtype_size(tok.dtype());
  CHECK(model.release_text_tower() > tok_bytes);  // the embedding and the text transformer
  CHECK(error_of([&] { model.weight("token_embedding.weight"); }).find("no weight 'token_embedding.weight'") !=
        std::string::npos);
  CHECK(model.encode_image(pixels).to_vector<float>() == before);
  CHECK(model.weight("logit_scale").defined());
  CHECK(error_of([&] { model.encode_text(Tensor::zeros({1, 4}, DType::i64)); }).find("text tower was released") !=
        std::string::npos);
  CHECK(error_of([&] { model.to(DType::f64).encode_text(Tensor::zeros({1, 4}, DType::i64)); })
            .find("text tower was released") != std::string::npos);  // copies keep the flag
}

TEST_CASE("clip encode_image is differentiable w.r.t. pixel_values") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("clip_rn_tiny.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  for (const char* stem : {"clip_vit_tiny", "clip_rn_tiny"}) {
    SUBCASE(stem) {
      const ClipModel model32 = load_tiny(load_ref(std::string(stem) + ".safetensors"), stem);
      const ClipModel model64 = model32.to(DType::f64);
      const Tensor pixels = load_ref("clip_vit_tiny_expected.safetensors").get("pixel_values").narrow(0, 0, 2);
      Generator gen(7);
      const Tensor w = Tensor::randn({2, model32.config().embed_dim}, gen, DType::f64);
      const Tensor u = Tensor::randn(pixels.shape(), gen, DType::f64);

      Tensor x64 = pixels.to(DType::f64).contiguous().set_requires_grad(true);
      const Tensor g64 = mm::grad({sum(model64.encode_image(x64) * w)}, {x64})[0];
      REQUIRE(g64.defined());
      const double analytic = sum(g64 * u).item();
      // A small step: ReLU kinks in the ResNet make larger steps cross non-smooth points.
      const double eps = 1e-7;
      double numeric;
      {
        NoGradGuard no_grad;
        const double lp = sum(model64.encode_image(x64.detach() + u * eps) * w).item();
        const double lm = sum(model64.encode_image(x64.detach() - u * eps) * w).item();
        numeric = (lp - lm) / (2 * eps);
      }
      MESSAGE(std::string(stem) << " directional derivative: autograd " << analytic << ", finite difference " << numeric);
      CHECK(std::abs(analytic - numeric) <= 1e-6 * std::max(1.0, std::abs(numeric)));

      Tensor x32 = pixels.clone().set_requires_grad(true);
      Tensor f32_features = model32.encode_image(x32);
      CHECK(f32_features.requires_grad());
      const Tensor g32 = mm::grad({sum(f32_features * w.to(DType::f32))}, {x32})[0];
      REQUIRE(g32.defined());
      check_tensor(std::string(stem) + " float32 vs float64 image gradient", g32, g64, 1e-3);
      CHECK_FALSE(model32.weight("visual.conv1.weight").requires_grad());
    }
  }
}

TEST_CASE("clip on the device: both image towers and the text tower match OpenAI CLIP, the image gradient the CPU's") {
  if (!cuda_ops::device_present()) {
    MESSAGE("no CUDA device here: this case runs in the CUDA emulator's build and on the GPU machine");
    return;
  }
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("clip_rn_tiny.safetensors");
  for (const char* stem : {"clip_vit_tiny", "clip_rn_tiny"}) {
    SUBCASE(stem) {
      const ClipModel cpu = load_tiny(load_ref(std::string(stem) + ".safetensors"), stem);
      const ClipModel gpu = cpu.to(Device::cuda);
      const TensorFile exp = load_ref(std::string(stem) + "_expected.safetensors");
      const Tensor pixels = exp.get("pixel_values").to(Device::cuda);
      const Tensor image = gpu.encode_image(pixels), text = gpu.encode_text(exp.get("text_tokens").to(Device::cuda));
      CHECK(image.device() == Device::cuda);
      check_tensor(std::string(stem) + " image_features on cuda", image, exp.get("image_features"));
      check_tensor(std::string(stem) + " text_features on cuda", text, exp.get("text_features"));
      // the gradient VQGAN+CLIP takes through the image tower
      Generator gen(3);
      const Tensor w = Tensor::randn({pixels.size(0), cpu.config().embed_dim}, gen);
      Tensor xc = exp.get("pixel_values").clone().set_requires_grad(true);
      Tensor xg = pixels.clone().set_requires_grad(true);
      const Tensor gc = mm::grad({sum(cpu.encode_image(xc) * w)}, {xc})[0];
      const Tensor gg = mm::grad({sum(gpu.encode_image(xg) * w.to(Device::cuda))}, {xg})[0];
      CHECK(gg.device() == Device::cuda);
      check_tensor(std::string(stem) + " image gradient on cuda vs cpu", gg, gc, 1e-4);
      // the model's own precision: its GEMMs in bf16, near the references, not equal to them
      ClipModel half = gpu;
      half.set_precision(cuda_ops::Precision::bf16);
      const Tensor image_bf16 = half.encode_image(pixels);
      check_tensor(std::string(stem) + " image_features on cuda, bf16", image_bf16, exp.get("image_features"), 5e-2);
      CHECK(max_rel(image_bf16, image) > 1e-5);
      CHECK(cuda_ops::precision() == cuda_ops::Precision::fp32);
    }
  }
}
