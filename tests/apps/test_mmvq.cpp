// tests/apps/test_mmvq.cpp: runs the mmvq binary on the reference VQGAN and checks its dump
// against ../shared/refs, and that bad input is a clear error with a non-zero exit.
// Run: ctest --test-dir build -R test_mmvq
#include <doctest/doctest.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <memory>
#include <string>

#include "engine/cuda_ops.h"
#include "engine/mm.h"
#include "tests/apps/run_command.h"
#include "tests/refs.h"
#include "weights_tools/safetensors.h"

using namespace mm;

namespace {
const std::string mmvq = MM_BIN_DIR "/mmvq";
}  // namespace

namespace {
// mmvq reconstruct of the reference image with the reference VQGAN, its --dump checked against
// taming's codes and decoding.
void check_reconstruct(const std::string& extra) {
  const std::string dump = "/tmp/mm_test_mmvq_" + std::to_string(::getpid()) + ".safetensors";
  const std::string out_png = "/tmp/mm_test_mmvq_" + std::to_string(::getpid()) + ".png";
  auto [rc, text] = testing::run_command(mmvq + " reconstruct " + testing::refs_path("image_1_shapes.png") + " " + out_png + " --vqgan " +
                        testing::refs_path("vqgan_tiny.ckpt") + " --config " + testing::refs_path("vqgan_tiny.yaml") +
                        " --dump " + dump + extra);
  REQUIRE_MESSAGE(rc == 0, text);
  TensorFile got = load_safetensors(dump);
  TensorFile ref = load_safetensors(testing::refs_path("vqgan_tiny_expected.safetensors"));
  CHECK(got.get("indices").to_vector<int64_t>() == ref.get("indices").to_vector<int64_t>());
  const std::vector<float> a = got.get("decoded").to_vector<float>(), e = ref.get("decoded").to_vector<float>();
  REQUIRE(a.size() == e.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, double(std::abs(a[i] - e[i]))), scale = std::max(scale, double(std::abs(e[i])));
  CHECK(diff / scale < 1e-4);
  std::remove(dump.c_str());
  std::remove(out_png.c_str());
}
}  // namespace

TEST_CASE("mmvq reconstruct --dump reproduces taming's codes and decoding") {
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  check_reconstruct(" --device cpu");
}

TEST_CASE("mmvq reconstruct --device cuda: the same codes and decoding on the device (or a clear error)") {
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  if (!cuda_ops::device_present()) {
    auto [rc, t] = testing::run_command(mmvq + " reconstruct a.png b.png --device cuda --vqgan " +
                                        testing::refs_path("vqgan_tiny.ckpt"));
    CHECK(rc == 1);
    CHECK_MESSAGE(t.find(cuda_ops::built() ? "no CUDA device is present" : "built without CUDA") != std::string::npos, t);
    return;
  }
  check_reconstruct(" --device cuda");
}

TEST_CASE("mmvq bad input: clear errors, non-zero exit") {
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  auto [rc1, t1] = testing::run_command(mmvq + " reconstruct /nonexistent.png /tmp/x.png --vqgan " + testing::refs_path("vqgan_tiny.ckpt"));
  CHECK(rc1 == 1);
  CHECK(t1.find("cannot read image '/nonexistent.png'") != std::string::npos);
  auto [rc2, t2] = testing::run_command("MM_MODELS=/nonexistent " + mmvq + " reconstruct a.png b.png");
  CHECK(rc2 == 1);
  CHECK(t2.find("the default model 'vqgan' is not at /nonexistent/vqgan.safetensors") != std::string::npos);
  auto [rc3, t3] = testing::run_command(mmvq + " explode a b --vqgan x");
  CHECK(rc3 == 1);
  CHECK(t3.find("unknown command 'explode'") != std::string::npos);
  auto [rc4, t4] = testing::run_command(mmvq + " reconstruct a.png b.png --device tpu --vqgan x");
  CHECK(rc4 == 1);
  CHECK(t4.find("--device must be cpu, cuda or auto, got 'tpu'") != std::string::npos);
  auto [rc5, t5] = testing::run_command(mmvq + " reconstruct a.png b.png --device cpu --precision bf16 --vqgan x");
  CHECK(rc5 == 1);
  CHECK(t5.find("mmvq: --precision bf16 needs --device cuda") != std::string::npos);
}
