// tests/models/test_vqgan.cpp: taming's VQGAN against ../shared/refs/vqgan_tiny_expected
// (from the Lightning .ckpt + yaml, from safetensors with an inferred config), the decoder
// gradient, and malformed configs.
// Run: ctest --test-dir build -R test_vqgan
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "engine/mm.h"
#include "models/vqgan.h"
#include "tests/gradcheck.h"
#include "tests/models/gumbel_tiny.h"
#include "tests/refs.h"
#include "weights_tools/torch_file.h"

using namespace mm;

namespace {

// max |a - e| / max |e|, printed, and checked against tol.
double check_rel(const Tensor& actual, const Tensor& expected, double tol, const std::string& name) {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(), name, ": ", actual.str(), " vs expected ", expected.str());
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - e[i])), scale = std::max(scale, std::abs(e[i]));
  const double rel = diff / std::max(scale, 1e-30);
  MESSAGE(name << " max_rel " << rel);
  CHECK_MESSAGE(rel <= tol, name, " max_rel ", rel, " > ", tol);
  return rel;
}

}  // namespace

TEST_CASE("vqgan_tiny reproduces taming's encode / quantise / decode / gradient") {
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("vqgan_tiny_expected.safetensors");
  TensorFile ref = load_safetensors(testing::refs_path("vqgan_tiny_expected.safetensors"));
  for (const char* source : {"ckpt+yaml", "safetensors inferred"}) {
    SUBCASE(source) {
      VQGAN vq = std::string(source) == "ckpt+yaml"
                     ? VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), testing::refs_path("vqgan_tiny.yaml"))
                     : VQGAN::from_tensors(load_weights(testing::refs_path("vqgan_tiny.safetensors")),
                                           infer_vqgan_config(load_weights(testing::refs_path("vqgan_tiny.safetensors")), 64));
      CHECK(vq.config().downsample_factor() == 4);
      CHECK(vq.config().attn_resolutions == std::vector<int64_t>{16});
      Tensor input = ref.get("input").to(f32);
      check_rel(vq.encoder(input), ref.get("encoder_out"), 1e-4, "encoder_out");
      Tensor h = vq.encode(input);
      check_rel(h, ref.get("h"), 1e-4, "h");
      VQCodes q = vq.quantize(h);
      CHECK(q.indices.to_vector<int64_t>() == ref.get("indices").to_vector<int64_t>());
      check_rel(q.z_q, ref.get("z_q"), 1e-5, "z_q");
      CHECK(vq.quantization_loss(h, q).item() == doctest::Approx(ref.get("qloss").item()).epsilon(1e-3));
      check_rel(vq.decode(q.z_q), ref.get("decoded"), 1e-4, "decoded");
      Tensor zi = vq.codes_to_latent(ref.get("code_indices"));
      check_rel(zi, ref.get("z_q_from_indices"), 0, "z_q_from_indices");
      check_rel(vq.decode(zi), ref.get("decoded_from_indices"), 1e-4, "decoded_from_indices");
      // the decoder backward: d sum(decode(z) * w) / dz
      Tensor z = ref.get("z").to(f32).detach().clone().set_requires_grad(true);
      Tensor dec = vq.decode(z);
      check_rel(dec, ref.get("decoded_z"), 1e-4, "decoded_z");
      Tensor loss = sum(mul(dec, ref.get("w")));
      CHECK(loss.item() == doctest::Approx(ref.get("loss").item()).epsilon(1e-4));
      loss.backward();
      check_rel(z.grad(), ref.get("dloss_dz"), 1e-3, "dloss_dz");
    }
  }
}

TEST_CASE("a Gumbel-quantiser VQGAN (taming's GumbelVQ): its keys, yaml and metadata, its quantiser") {
  MM_REQUIRE_REFS("vqgan_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny_expected.safetensors");
  TensorFile ref = load_safetensors(testing::refs_path("vqgan_tiny_expected.safetensors"));
  const TensorFile g = testing::gumbel_from_vq(load_weights(testing::refs_path("vqgan_tiny.safetensors")));
  const VQGANConfig c = infer_vqgan_config(g, 64);
  CHECK(c.gumbel);
  CHECK(c.n_embed == 128);
  CHECK(c.str().find("Gumbel") != std::string::npos);
  const VQGAN vq = VQGAN::from_tensors(g, c);
  const Tensor input = ref.get("input").to(f32);
  const Tensor h = vq.encode(input);
  check_rel(h, ref.get("h"), 1e-4, "h");
  SUBCASE("its proj picks the codes (here: taming's VQ codes), z_q is their codebook rows") {
    const VQCodes q = vq.quantize(h.detach().set_requires_grad(true));
    CHECK(q.indices.to_vector<int64_t>() == ref.get("indices").to_vector<int64_t>());
    check_rel(q.z_q, ref.get("z_q"), 1e-5, "z_q");
    CHECK(!q.z_q.requires_grad());  // no gradient path to h (taming's is through Gumbel samples)
    check_rel(vq.decode(q.z_q), ref.get("decoded"), 1e-4, "decoded");
    // VQGAN+CLIP's quantisation: nearest rows of quantize.embed, straight-through
    const VQCodes n = vq.nearest_codes(h.detach().set_requires_grad(true));
    CHECK(n.indices.to_vector<int64_t>() == ref.get("indices").to_vector<int64_t>());
    CHECK(n.z_q.requires_grad());
    CHECK_THROWS_WITH_AS(vq.quantization_loss(h, q), doctest::Contains("Gumbel-quantiser"), Error);
  }
  SUBCASE("with any proj: the argmax of its logits") {
    TensorFile r = g;
    Generator gen(3);
    for (auto& [name, t] : r.tensors)
      if (name == "quantize.proj.weight") t = Tensor::randn(t.shape(), gen);
      else if (name == "quantize.proj.bias") t = Tensor::randn(t.shape(), gen);
    const VQGAN rv = VQGAN::from_tensors(r, c);
    const Tensor W = r.get("quantize.proj.weight"), bias = r.get("quantize.proj.bias");
    const std::vector<double> hv = h.to_vector<double>(), wv = W.to_vector<double>(), bv = bias.to_vector<double>();
    const int64_t K = W.size(0), D = W.size(1), P = h.size(2) * h.size(3);
    std::vector<int64_t> want(P);
    for (int64_t p = 0; p < P; ++p) {  // logits_k = Σ_d W[k, d] h[d, p] + b[k], by hand
      double best = -1e300;
      for (int64_t k = 0; k < K; ++k) {
        double l = bv[k];
        for (int64_t d = 0; d < D; ++d) l += wv[k * D + d] * hv[d * P + p];
        if (l > best) best = l, want[p] = k;
      }
    }
    CHECK(rv.quantize(h).indices.to_vector<int64_t>() == want);
  }
  SUBCASE("from a safetensors file with taming's yaml (target GumbelVQ), and mm's metadata") {
    const std::string dir = "/tmp/mm_test_gumbel_" + std::to_string(::getpid());
    std::ifstream in(testing::refs_path("vqgan_tiny.yaml"));
    std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t at = yaml.find("taming.models.vqgan.VQModel");
    REQUIRE(at != std::string::npos);
    yaml.replace(at, std::string("taming.models.vqgan.VQModel").size(), "taming.models.vqgan.GumbelVQ");
    std::ofstream(dir + ".yaml") << yaml;
    save_safetensors(dir + ".safetensors", g.tensors, {});
    const VQGAN from_yaml = VQGAN::load(dir + ".safetensors", dir + ".yaml");
    CHECK(from_yaml.config().gumbel);
    CHECK(from_yaml.quantize(from_yaml.encode(input)).indices.to_vector<int64_t>() ==
          ref.get("indices").to_vector<int64_t>());
    CHECK(vqgan_config_from_json(vqgan_config_to_json(c), "test").gumbel);
    CHECK(!vqgan_config_from_json(vqgan_config_to_json(infer_vqgan_config(load_weights(testing::refs_path("vqgan_tiny.safetensors")))), "test").gumbel);
    // a VQModel checkpoint under a GumbelVQ yaml: the missing quantiser is named
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.safetensors"), dir + ".yaml"),
                         doctest::Contains("quantize.embedding.weight"), Error);
    CHECK_THROWS_WITH_AS(VQGAN::init(c, 1), doctest::Contains("Gumbel"), Error);
    std::remove((dir + ".yaml").c_str());
    std::remove((dir + ".safetensors").c_str());
  }
}

TEST_CASE("VQGAN release_encoder keeps the decoder and says so on encode") {
  MM_REQUIRE_REFS("vqgan_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny_expected.safetensors");
  TensorFile ref = load_safetensors(testing::refs_path("vqgan_tiny_expected.safetensors"));
  VQGAN vq = VQGAN::load(testing::refs_path("vqgan_tiny.safetensors"));
  const Tensor zi = vq.codes_to_latent(ref.get("code_indices"));
  const std::vector<float> before = vq.decode(zi).to_vector<float>();
  CHECK(vq.release_encoder() > 0);
  CHECK(vq.decode(zi).to_vector<float>() == before);
  CHECK(vq.nearest_codes(zi).indices.to_vector<int64_t>() == ref.get("code_indices").to_vector<int64_t>());
  CHECK_THROWS_WITH_AS(vq.encode(ref.get("input").to(f32)), doctest::Contains("encoder was released"), Error);
  CHECK_THROWS_WITH_AS(vq.to(Device::cpu).encode(ref.get("input").to(f32)), doctest::Contains("encoder was released"),
                       Error);
}

TEST_CASE("VQGAN config errors are clear") {
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  const std::string dir = "/tmp/mm_test_vqgan_" + std::to_string(::getpid());
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string p = dir + "_" + name;
    std::ofstream(p) << text;
    return p;
  };
  std::ifstream in(testing::refs_path("vqgan_tiny.yaml"));
  std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SUBCASE("unknown ddconfig key") {
    std::string bad = yaml;
    bad.replace(bad.find("      double_z"), 0, "      bogus_key: 1\n");
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), write("unknown.yaml", bad)),
                         doctest::Contains("unknown ddconfig key 'bogus_key'"), Error);
  }
  SUBCASE("unknown model.params key, remap, Encoder options mm has only at their defaults") {
    std::string bad = yaml;
    bad.replace(bad.find("    monitor:"), 0, "    codebook_magic: 3\n");
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), write("params.yaml", bad)),
                         doctest::Contains("unknown model.params key 'codebook_magic'"), Error);
    bad = yaml;
    bad.replace(bad.find("    monitor:"), 0, "    remap: data/indices.npy\n");
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), write("remap.yaml", bad)),
                         doctest::Contains("model.params.remap (a re-indexed codebook) is not supported"), Error);
    bad = yaml;
    bad.replace(bad.find("      double_z"), 0, "      tanh_out: true\n");
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), write("tanh.yaml", bad)),
                         doctest::Contains("ddconfig tanh_out: true is not supported (mm implements tanh_out: false)"),
                         Error);
    // the same options at their defaults, and training-only params, load
    bad = yaml;
    bad.replace(bad.find("      double_z"), 0, "      resamp_with_conv: True\n      attn_type: vanilla\n");
    bad.replace(bad.find("    monitor:"), 0, "    ckpt_path: null\n    remap: null\n    sane_index_shape: false\n");
    CHECK(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), write("defaults.yaml", bad)).config().n_embed == 128);
  }
  SUBCASE("codebook size mismatch between yaml and checkpoint") {
    std::string bad = yaml;
    bad.replace(bad.find("n_embed: 128"), 12, "n_embed: 256");
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), write("nembed.yaml", bad)),
                         doctest::Contains("tensor 'quantize.embedding.weight' has shape [128, 32], expected [256, 32]"),
                         Error);
  }
  SUBCASE("channel multiplier mismatch") {
    std::string bad = yaml;
    bad.replace(bad.find("ch: 32"), 6, "ch: 64");
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), write("ch.yaml", bad)),
                         doctest::Contains("does the config match the checkpoint?"), Error);
  }
  SUBCASE("not yaml / missing file / image size") {
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), write("junk.yaml", "[1, 2")),
                         doctest::Contains("cannot read VQGAN config"), Error);
    CHECK_THROWS_WITH_AS(VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), dir + "_missing.yaml"),
                         doctest::Contains("cannot read VQGAN config"), Error);
    VQGAN vq = VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), testing::refs_path("vqgan_tiny.yaml"));
    CHECK_THROWS_WITH_AS(vq.encode(Tensor::zeros({1, 3, 30, 32})),
                         doctest::Contains("30 is not a multiple of the downsampling factor 4"), Error);
  }
}
