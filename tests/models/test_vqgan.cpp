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
