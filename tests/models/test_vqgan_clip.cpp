// tests/models/test_vqgan_clip.cpp: one VQGAN+CLIP step against ../shared/refs/vqclip_step
// (loss, d loss/d image, d loss/d z under ClampWithGrad and under a pass-through clamp),
// prompt parsing, the spherical loss, and cutouts.
// Run: ctest --test-dir build -R test_vqgan_clip
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "engine/cuda_ops.h"
#include "engine/mm.h"
#include "models/clip_config.h"
#include "models/vqgan_clip.h"
#include "tests/gradcheck.h"
#include "tests/models/gumbel_tiny.h"
#include "tests/refs.h"
#include "weights_tools/torch_file.h"

using namespace mm;

namespace {
using testing::max_rel;
}  // namespace

TEST_CASE("parse_prompts") {
  auto p = parse_prompts("a watercolor portrait|blurry:-0.5|sky: 2:0.1|a photo: close-up");
  REQUIRE(p.size() == 4);
  CHECK(p[0].text == "a watercolor portrait");
  CHECK(p[0].weight == 1.0);
  CHECK(std::isinf(p[0].stop));
  CHECK(p[1].text == "blurry");
  CHECK(p[1].weight == -0.5);
  CHECK(p[2].text == "sky");
  CHECK(p[2].weight == 2.0);
  CHECK(p[2].stop == 0.1);
  CHECK(p[3].text == "a photo: close-up");  // a colon that is not a number stays in the text
  CHECK_THROWS_WITH_AS(parse_prompts(""), doctest::Contains("empty prompt"), Error);
  CHECK_THROWS_WITH_AS(parse_prompts("a||b"), doctest::Contains("empty prompt"), Error);
  CHECK_THROWS_WITH_AS(parse_prompts(":0.5"), doctest::Contains("empty prompt"), Error);
}

TEST_CASE("spherical prompt loss: value, sign, stop and gradient") {
  Tensor a = testing::rand64({3, 5}, 1), b = testing::rand64({2, 5}, 2);
  // value against a direct computation
  double ref = 0;
  const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      double na = 0, nb = 0, d = 0;
      for (int k = 0; k < 5; ++k) na += av[i * 5 + k] * av[i * 5 + k], nb += bv[j * 5 + k] * bv[j * 5 + k];
      for (int k = 0; k < 5; ++k) {
        const double e = av[i * 5 + k] / std::sqrt(na) - bv[j * 5 + k] / std::sqrt(nb);
        d += e * e;
      }
      ref += 2 * std::pow(std::asin(std::sqrt(d) / 2), 2);
    }
  ref /= 6;
  CHECK(spherical_prompt_loss(a, b, 1.0, -INFINITY).item() == doctest::Approx(ref).epsilon(1e-12));
  CHECK(spherical_prompt_loss(a, b, -2.0, -INFINITY).item() == doctest::Approx(-2 * ref).epsilon(1e-12));
  testing::check_gradients([&](const std::vector<Tensor>& in) { return spherical_prompt_loss(in[0], b, 0.7, -INFINITY); }, {a});
  // a stop above every distance: the value is unchanged but no gradient flows
  Tensor x = a.detach().clone().set_requires_grad(true);
  Tensor l = spherical_prompt_loss(x, b, 1.0, 10.0);
  CHECK(l.item() == doctest::Approx(ref).epsilon(1e-12));
  l.backward();
  for (double g : x.grad().to_vector<double>()) CHECK(g == 0.0);
}

TEST_CASE("make_cutouts: identity at CLIP size, shapes and determinism otherwise") {
  Generator g(0);
  Tensor img = Tensor::uniform({1, 3, 64, 64}, g);
  CutoutOptions id{.cut_size = 64, .cutn = 1, .cut_pow = 1.0, .augment = false, .noise_fac = 0.0};
  Generator g1(1);
  CHECK(make_cutouts(img, id, g1).to_vector<float>() == img.to_vector<float>());
  CutoutOptions o{.cut_size = 32, .cutn = 8, .cut_pow = 1.0, .augment = true, .noise_fac = 0.1};
  Generator a(5), b(5);
  Tensor ca = make_cutouts(img, o, a), cb = make_cutouts(img, o, b);
  CHECK(ca.shape() == Shape{8, 3, 32, 32});
  CHECK(ca.to_vector<float>() == cb.to_vector<float>());
  // differentiable back to the image
  Tensor x = img.detach().clone().set_requires_grad(true);
  Generator c(5);
  sum(make_cutouts(x, o, c)).backward();
  CHECK(x.grad().defined());
  CHECK(norm(x.grad()).item() > 0);
}

namespace {
// The reference step's expected values and what it runs: the tiny CLIP and VQGAN, the tokenizer.
struct StepRefs {
  TensorFile ref = load_safetensors(testing::refs_path("vqclip_step_expected.safetensors"));
  TensorFile clip_file = load_weights(testing::refs_path("clip_vit_tiny.safetensors"));
  ClipModel clip = ClipModel::load(
      clip_file, load_clip_config_json(testing::refs_path("clip_vit_tiny.json"), infer_clip_config(clip_file)));
  VQGAN vq = VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), testing::refs_path("vqgan_tiny.yaml"));
  ClipTokenizer tok = ClipTokenizer::from_bpe_file(testing::refs_path("bpe_simple_vocab_16e6.txt.gz"));

  // The reference step with these models (or others: the device's, a Gumbel VQGAN): 64x64,
  // one cutout without augmentation, the reference prompt and latent. It keeps references
  // to the models.
  VQGANCLIP step(const VQGAN& v, const ClipModel& c, ClampRule rule = ClampRule::with_grad) const {
    VQGANCLIPOptions o;
    o.width = o.height = 64;
    o.clamp = rule;
    o.cutouts = CutoutOptions{.cut_size = 64, .cutn = 1, .cut_pow = 1.0, .augment = false, .noise_fac = 0.0};
    VQGANCLIP gen(v, c, tok, o);
    gen.add_text_prompts("a watercolor portrait of a teacher");
    gen.init_from_latent(ref.get("z"));
    return gen;
  }
};
}  // namespace

TEST_CASE("one VQGAN+CLIP step reproduces the reference loss and gradients") {
  MM_REQUIRE_REFS("vqclip_step_expected.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const StepRefs r;
  const TensorFile& ref = r.ref;
  const ClipModel& clip = r.clip;
  const VQGAN& vq = r.vq;
  // on the CPU, and on the device when there is one (the CUDA emulator's build has one)
  std::vector<Device> devices = {Device::cpu};
  if (cuda_ops::device_present()) devices.push_back(Device::cuda);
  for (Device dev : devices)
  for (ClampRule rule : {ClampRule::with_grad, ClampRule::passthrough}) {
    SUBCASE((std::string(device_name(dev)) + (rule == ClampRule::with_grad ? " ClampWithGrad" : " pass-through clamp")).c_str()) {
      const ClipModel clip_d = clip.to(dev);
      const VQGAN vq_d = vq.to(dev);
      VQGANCLIP gen = r.step(vq_d, clip_d, rule);
      Tensor dz, dimage;
      const double loss = gen.loss_and_grad(&dz, &dimage);
      CHECK(loss == doctest::Approx(ref.get("loss").item()).epsilon(1e-4));
      const double r_img = max_rel(dimage, ref.get("dloss_dimage"));
      const double r_z = max_rel(dz, ref.get(rule == ClampRule::with_grad ? "dloss_dz" : "dloss_dz_passthrough"));
      MESSAGE(std::string(device_name(dev)) << ": loss " << loss << " vs " << ref.get("loss").item() << "; dloss_dimage max_rel "
                               << r_img << "; dloss_dz max_rel " << r_z);
      CHECK(dz.device() == dev);
      CHECK(r_img <= 1e-3);
      CHECK(r_z <= 1e-3);
    }
  }
}

TEST_CASE("the reference step with the VQGAN as a GumbelVQ: the same codebook, the same loss and gradients") {
  MM_REQUIRE_REFS("vqclip_step_expected.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const StepRefs r;
  const TensorFile g = testing::gumbel_from_vq(load_weights(testing::refs_path("vqgan_tiny.safetensors")));
  const VQGAN vq = VQGAN::from_tensors(g, infer_vqgan_config(g, 64));
  REQUIRE(vq.config().gumbel);
  VQGANCLIP gen = r.step(vq, r.clip);
  Tensor dz;
  const double loss = gen.loss_and_grad(&dz, nullptr);
  CHECK(loss == doctest::Approx(r.ref.get("loss").item()).epsilon(1e-4));
  CHECK(max_rel(dz, r.ref.get("dloss_dz")) <= 1e-3);
  // an init image starts from the codes its quantiser picks (rows of quantize.embed)
  Generator pixels(5);
  const Tensor img = Tensor::uniform({3, 64, 64}, pixels, 0.0, 1.0);
  gen.init_from_image(img, 0.0);
  const Tensor z = gen.z();
  const Tensor resized = resize(img.unsqueeze(0), 64, 64, ResizeFilter::bicubic, Antialias::yes);
  const Tensor want = vq.quantize(vq.encode(add(mul(resized, 2.0), -1.0))).z_q;
  CHECK(max_rel(z, want) == 0.0);
}

TEST_CASE("an init image starts from its quantised encoding; --init-weight adds init_weight / 2 * mean((z - z0)^2)") {
  MM_REQUIRE_REFS("vqclip_step_expected.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const StepRefs r;
  // as the notebooks' model.encode(): codebook rows, not the continuous quant_conv output
  VQGANCLIP gen = r.step(r.vq, r.clip);
  Generator pixels(5);
  const Tensor img = Tensor::uniform({3, 64, 64}, pixels, 0.0, 1.0);
  gen.init_from_image(img, 0.0);
  const Tensor resized = resize(img.unsqueeze(0), 64, 64, ResizeFilter::bicubic, Antialias::yes);
  const Tensor h = r.vq.encode(add(mul(resized, 2.0), -1.0));
  CHECK(max_rel(gen.z(), r.vq.quantize(h).z_q) == 0.0);
  CHECK(max_rel(gen.z(), h) > 1e-3);  // (it would not pass for the unquantised h)
  // Two generators, without and with --init-weight 4, from one latent: their first steps see
  // z = z0 (the pull is 0 with gradient 0), so they move z identically; the second step's loss
  // then differs by exactly 4 / 2 * mean((z1 - z0)^2).
  auto with_weight = [&](double w) {
    VQGANCLIPOptions o;
    o.width = o.height = 64;
    o.init_weight = w;
    o.cutouts = CutoutOptions{.cut_size = 64, .cutn = 1, .cut_pow = 1.0, .augment = false, .noise_fac = 0.0};
    auto g = std::make_unique<VQGANCLIP>(r.vq, r.clip, r.tok, o);
    g->add_text_prompts("a watercolor portrait of a teacher");
    g->init_from_latent(r.ref.get("z"));
    return g;
  };
  auto a = with_weight(0.0), b = with_weight(4.0);
  CHECK(a->step() == b->step());
  REQUIRE(max_rel(a->z(), b->z()) == 0.0);
  const double pull = mean(square(sub(a->z().detach(), r.ref.get("z")))).item();
  REQUIRE(pull > 0);
  const double la = a->step(), lb = b->step();
  CHECK(lb - la == doctest::Approx(4.0 / 2 * pull).epsilon(1e-4));
}

TEST_CASE("vqclip_step on the device with --precision bf16 and fp16 stays near the reference") {
  MM_REQUIRE_REFS("vqclip_step_expected.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  if (!cuda_ops::device_present()) {
    MESSAGE("no CUDA device here: the 16-bit GEMMs run in the CUDA emulator's build");
    return;
  }
  const StepRefs r;
  const TensorFile& ref = r.ref;
  const ClipModel& clip = r.clip;
  const VQGAN& vq = r.vq;
  // the same step with the device's GEMMs on 16-bit operands
  for (cuda_ops::Precision p : {cuda_ops::Precision::bf16, cuda_ops::Precision::fp16}) {
    CAPTURE(std::string(cuda_ops::precision_name(p)));
    VQGAN vq_d = vq.to(Device::cuda);
    ClipModel clip_d = clip.to(Device::cuda);
    vq_d.set_precision(p);  // the models' GEMMs, forward and backward; the rest stays float32
    clip_d.set_precision(p);
    VQGANCLIP gen = r.step(vq_d, clip_d);  // (it keeps references to the models)
    Tensor dz;
    const double loss = gen.loss_and_grad(&dz, nullptr);
    const double r_z = max_rel(dz, ref.get("dloss_dz"));
    MESSAGE(std::string(cuda_ops::precision_name(p)) << ": loss " << loss << " vs " << ref.get("loss").item() << "; dloss_dz max_rel "
                                        << r_z);
    CHECK(loss == doctest::Approx(ref.get("loss").item()).epsilon(1e-2));
    // the largest element's error against the largest element, through ~20 rounded GEMM
    // layers (here bf16 0.045, fp16 0.0033)
    CHECK(r_z <= (p == cuda_ops::Precision::bf16 ? 0.1 : 1e-2));
    CHECK(r_z > 1e-5);  // the models' precision took effect
    CHECK(cuda_ops::precision() == cuda_ops::Precision::fp32);  // and stayed inside them
  }
}

TEST_CASE("VQGAN+CLIP steps on the device follow the CPU's: augmented, resized cutouts, noise, Adam, the clamp") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  if (!cuda_ops::device_present()) {
    MESSAGE("no CUDA device here: the device's steps are compared in the CUDA emulator's build");
    return;
  }
  TensorFile cf = load_weights(testing::refs_path("clip_vit_tiny.safetensors"));
  ClipModel clip = ClipModel::load(cf, load_clip_config_json(testing::refs_path("clip_vit_tiny.json"), infer_clip_config(cf)));
  VQGAN vq = VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), testing::refs_path("vqgan_tiny.yaml"));
  ClipTokenizer tok = ClipTokenizer::from_bpe_file(testing::refs_path("bpe_simple_vocab_16e6.txt.gz"));
  const ClipModel clip_d = clip.to(Device::cuda);
  const VQGAN vq_d = vq.to(Device::cuda);
  VQGANCLIPOptions o;
  o.width = 80, o.height = 72;  // cutouts of 64 to 72 pixels, resized to CLIP's 64 by area
  o.seed = 5;
  o.cutouts = CutoutOptions{.cut_size = 64, .cutn = 2, .cut_pow = 1.0, .augment = true, .noise_fac = 0.1};
  VQGANCLIP on_cpu(vq, clip, tok, o), on_dev(vq_d, clip_d, tok, o);
  for (VQGANCLIP* g : {&on_cpu, &on_dev}) {
    g->add_text_prompts("a lighthouse|fog:-0.3:0.1");
    g->init_random();
  }
  for (int step = 0; step < 2; ++step) {  // (small: the emulator runs the device's kernels one thread at a time)
    CAPTURE(step);
    const double lc = on_cpu.step(), ld = on_dev.step();
    CHECK(ld == doctest::Approx(lc).epsilon(1e-4));
  }
  const Tensor ic = on_cpu.image(), id = on_dev.image();
  CHECK(id.device() == Device::cpu);
  CHECK(max_rel(id, ic) < 1e-3);
}
