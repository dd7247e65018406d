// tests/apps/test_mmgen.cpp: a short generation on the tiny reference models: the loss falls
// (augmentations off), the mmgen binary writes a PNG of the requested size with its
// settings in a text chunk, the same seed gives identical bytes, and bad input fails clearly.
// Run: ctest --test-dir build -R test_mmgen
#include <doctest/doctest.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include "engine/mm.h"
#include "models/clip_config.h"
#include "models/vqgan_clip.h"
#include "tests/apps/run_command.h"
#include "engine/cuda_ops.h"
#include "tests/refs.h"
#include "weights_tools/torch_file.h"

using namespace mm;

namespace {
using testing::slurp;
uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) | (uint32_t(uint8_t(s[at + 2])) << 8) |
         uint32_t(uint8_t(s[at + 3]));
}
std::string models_args() {
  const std::string R = std::string(MM_SHARED_DIR) + "/refs/";
  return " --clip " + R + "clip_vit_tiny.safetensors --model-config " + R + "clip_vit_tiny.json --vocab " + R +
         "bpe_simple_vocab_16e6.txt.gz --vqgan " + R + "vqgan_tiny.ckpt --vqgan-config " + R + "vqgan_tiny.yaml";
}
const std::string mmgen = MM_BIN_DIR "/mmgen";
}  // namespace

TEST_CASE("the loss falls over a short optimisation (no augmentation)") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  TensorFile cf = load_weights(testing::refs_path("clip_vit_tiny.safetensors"));
  ClipModel clip = ClipModel::load(cf, load_clip_config_json(testing::refs_path("clip_vit_tiny.json"), infer_clip_config(cf)));
  VQGAN vq = VQGAN::load(testing::refs_path("vqgan_tiny.ckpt"), testing::refs_path("vqgan_tiny.yaml"));
  ClipTokenizer tok = ClipTokenizer::from_bpe_file(testing::refs_path("bpe_simple_vocab_16e6.txt.gz"));
  VQGANCLIPOptions o;
  o.width = o.height = 64;
  o.cutouts = CutoutOptions{.cut_size = 64, .cutn = 1, .cut_pow = 1.0, .augment = false, .noise_fac = 0.0};
  VQGANCLIP gen(vq, clip, tok, o);
  gen.add_text_prompts("a watercolor portrait of a teacher");
  gen.init_random();
  const double first = gen.step();
  double last = first;
  for (int i = 0; i < 15; ++i) last = gen.step();
  MESSAGE("loss " << first << " -> " << last << " after 16 steps");
  CHECK(last < first - 0.01);
}

TEST_CASE("mmgen writes a PNG of the requested size, reproducibly, with its settings") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const std::string a = "/tmp/mm_test_mmgen_a_" + std::to_string(::getpid()) + ".png";
  const std::string b = "/tmp/mm_test_mmgen_b_" + std::to_string(::getpid()) + ".png";
  // on the CPU, where the same seed and threads give the same bytes (a GPU's atomics add in no
  // fixed order)
  const std::string common = " \"a lighthouse|fog:-0.3\"" + models_args() + " --size 96x64 --steps 6 --cutn 4 --seed 7 --threads 2 --device cpu";
  auto [rc1, t1] = testing::run_command(mmgen + common + " --out " + a);
  REQUIRE_MESSAGE(rc1 == 0, t1);
  auto [rc2, t2] = testing::run_command(mmgen + common + " --out " + b);
  REQUIRE_MESSAGE(rc2 == 0, t2);
  const std::string pa = slurp(a), pb = slurp(b);
  REQUIRE(pa.size() > 33);
  CHECK(pa.substr(1, 3) == "PNG");
  CHECK(be32(pa, 16) == 96);  // IHDR width
  CHECK(be32(pa, 20) == 64);  // IHDR height
  CHECK(pa == pb);            // same seed, same threads: identical bytes
  CHECK(pa.find("iTXt") != std::string::npos);
  CHECK(pa.find("a lighthouse|fog:-0.3") != std::string::npos);
  CHECK(pa.find("device=cpu") != std::string::npos);
  CHECK(t1.find("wrote " + a) != std::string::npos);
  // another seed gives another image
  auto [rc3, t3] = testing::run_command(mmgen + common + " --seed 8 --out " + b);
  REQUIRE(rc3 == 0);
  CHECK(slurp(b) != pa);
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST_CASE("mmgen's loss falls over a short run of the binary (no augmentation, one whole-image cutout)") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const std::string out = "/tmp/mm_test_mmgen_fall_" + std::to_string(::getpid()) + ".png";
  // "wrote F (loss L after N steps)": L is the loss of step N, before its update
  auto loss_after = [&](int steps) {
    auto [rc, t] = testing::run_command(mmgen + " \"a watercolor portrait of a teacher\"" + models_args() +
                                        " --size 64x64 --cutn 1 --no-augment --seed 3 --device cpu --steps " +
                                        std::to_string(steps) + " --out " + out);
    REQUIRE_MESSAGE(rc == 0, t);
    const size_t at = t.find("(loss ");
    REQUIRE_MESSAGE(at != std::string::npos, t);
    return std::stod(t.substr(at + 6));
  };
  const double first = loss_after(1), last = loss_after(16);
  MESSAGE("mmgen loss " << first << " at step 1, " << last << " at step 16");
  CHECK(last < first - 0.01);
  std::remove(out.c_str());
}

TEST_CASE("mmgen with an init image, image and noise prompts, --init-weight and --save-every frames") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const std::string R = std::string(MM_SHARED_DIR) + "/refs/";
  const std::string out = "/tmp/mm_test_mmgen_opts_" + std::to_string(::getpid()) + ".png";
  const std::string frame = [&] { std::string f = out; return f.insert(f.size() - 4, "_00002"); }();
  const std::string last = [&] { std::string f = out; return f.insert(f.size() - 4, "_00004"); }();
  auto [rc, t] = testing::run_command(mmgen + " \"a lighthouse\"" + models_args() + " --init-image " + R +
                                      "image_1_shapes.png --init-noise 0.1 --init-weight 0.5 --image-prompt " + R +
                                      "image_2_noise.png:0.5 --noise-prompt 3:0.2 --save-every 2 --steps 5 --size 64x64 "
                                      "--cutn 2 --seed 1 --device cpu --out " + out);
  REQUIRE_MESSAGE(rc == 0, t);
  const std::string png = slurp(out), f2 = slurp(frame), f4 = slurp(last);
  REQUIRE(png.size() > 33);
  REQUIRE(f2.size() > 33);
  REQUIRE(f4.size() > 33);
  CHECK(be32(f2, 16) == 64);
  CHECK(be32(f4, 20) == 64);
  CHECK(f2 != f4);   // the image moved between the frames
  CHECK(f4 != png);  // and after them (step 5)
  for (const char* s : {"init_image=\"", "image_2_noise.png:0.5\"", "noise_prompt=\"3:0.2\"", "init_weight=0.5",
                        "init_noise=0.1", "vqgan_config=\""})
    CHECK_MESSAGE(png.find(s) != std::string::npos, s);
  // an image prompt that cannot be read is an error naming it
  auto [rc2, t2] = testing::run_command(mmgen + " \"a lighthouse\"" + models_args() +
                                        " --image-prompt /nonexistent.png:0.5 --steps 1 --device cpu --out " + out);
  CHECK(rc2 == 1);
  CHECK(t2.find("cannot read image '/nonexistent.png'") != std::string::npos);
  for (const std::string& f : {out, frame, last}) std::remove(f.c_str());
}

TEST_CASE("mmgen on Ctrl-C saves the current image and exits 130") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const std::string out = "/tmp/mm_test_mmgen_int_" + std::to_string(::getpid()) + ".png";
  const std::string frame = [&] { std::string f = out; return f.insert(f.size() - 4, "_00001"); }();
  std::remove(out.c_str());
  std::remove(frame.c_str());
  // a run far too long to finish, interrupted once its first frame is written (after at most 60 s)
  const std::string cmd = mmgen + " \"a lighthouse\"" + models_args() +
                          " --size 64x64 --cutn 1 --steps 1000000 --save-every 1 --device cpu --out " + out;
  auto [rc, t] = testing::run_command("sh -c '" + cmd + " & pid=$!; i=0; while [ ! -e " + frame +
                                      " ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; kill -INT $pid; wait $pid; "
                                      "echo rc=$?'");
  CHECK_MESSAGE(t.find("rc=130") != std::string::npos, t);
  CHECK_MESSAGE(t.find("mmgen: interrupted after ") != std::string::npos, t);
  const std::string png = slurp(out);
  REQUIRE(png.size() > 33);
  CHECK(be32(png, 16) == 64);
  CHECK(png.find("a lighthouse") != std::string::npos);
  // frames are numbered from _00001 every --save-every steps: remove them all
  for (int i = 1; i <= 100000; ++i) {
    char num[16];
    std::snprintf(num, sizeof(num), "_%05d", i);
    std::string f = out;
    if (std::remove(f.insert(f.size() - 4, num).c_str()) != 0) break;
  }
  std::remove(out.c_str());
}

TEST_CASE("mmgen --device cuda: the same generation on the device (or a clear error without one)") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const std::string out = "/tmp/mm_test_mmgen_cuda_" + std::to_string(::getpid()) + ".png";
  auto [rc, t] = testing::run_command(mmgen + " \"a lighthouse\"" + models_args() +
                                      " --size 72x64 --steps 2 --cutn 2 --seed 7 --device cuda --init-image " +
                                      std::string(MM_SHARED_DIR) + "/refs/image_1_shapes.png --out " + out);
  if (!cuda_ops::device_present()) {
    CHECK(rc == 1);
    CHECK(t.find(cuda_ops::built() ? "no CUDA device is present" : "built without CUDA") != std::string::npos);
    return;
  }
  REQUIRE_MESSAGE(rc == 0, t);
  const std::string png = slurp(out);
  REQUIRE(png.size() > 33);
  CHECK(be32(png, 16) == 72);
  CHECK(be32(png, 20) == 64);
  CHECK(png.find("device=cuda") != std::string::npos);
  // the tensor-core precision: 16-bit GEMM operands, the same image size, recorded in the PNG
  auto [rc2, t2] = testing::run_command(mmgen + " \"a lighthouse\"" + models_args() +
                                        " --size 72x64 --steps 1 --cutn 2 --seed 7 --device cuda --precision bf16 --out " +
                                        out);
  REQUIRE_MESSAGE(rc2 == 0, t2);
  const std::string png2 = slurp(out);
  REQUIRE(png2.size() > 33);
  CHECK(be32(png2, 16) == 72);
  CHECK(png2.find("precision=bf16") != std::string::npos);
  std::remove(out.c_str());
}

TEST_CASE("mmgen bad input: clear errors") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  auto [rc1, t1] = testing::run_command(mmgen + " \"\"" + models_args());
  CHECK(rc1 == 1);
  CHECK(t1.find("empty prompt") != std::string::npos);
  auto [rc2, t2] = testing::run_command(mmgen + " \"a cat\"" + models_args() + " --size 62x64 --steps 1 --cutn 1 --out /tmp/mm_test_mmgen_round.png");
  CHECK(rc2 == 0);
  CHECK(t2.find("not a multiple of the VQGAN's factor 4; using 60x64") != std::string::npos);
  // no --device: the GPU when a real one is present (never the emulator), and the PNG names it
  CHECK(slurp("/tmp/mm_test_mmgen_round.png").find(std::string("device=") + device_name(cuda_ops::default_device())) !=
        std::string::npos);
  auto [rc3, t3] = testing::run_command(mmgen + " \"a cat\"" + models_args() + " --init-image /nonexistent.png");
  CHECK(rc3 == 1);
  CHECK(t3.find("cannot read image '/nonexistent.png'") != std::string::npos);
  auto [rc7, t7] = testing::run_command(mmgen + " \"a cat\"" + models_args() + " --device cpu --precision bf16");
  CHECK(rc7 == 1);
  CHECK(t7.find("--precision bf16 needs --device cuda") != std::string::npos);
  auto [rc8, t8] = testing::run_command(mmgen + " \"a cat\"" + models_args() + " --precision fp8");
  CHECK(rc8 == 1);
  CHECK(t8.find("--precision must be fp32, bf16 or fp16, got 'fp8'") != std::string::npos);
  auto [rc4, t4] = testing::run_command(mmgen + " \"a cat\" --size 64");
  CHECK(rc4 == 1);
  CHECK(t4.find("--size expects WxH") != std::string::npos);
  auto [rc5, t5] = testing::run_command("MM_MODELS=/nonexistent " + mmgen + " \"a cat\"");
  CHECK(rc5 == 1);
  CHECK(t5.find("the default model 'clip_vit' is not at /nonexistent/clip_vit.safetensors") != std::string::npos);
  std::remove("/tmp/mm_test_mmgen_round.png");
}
