// tests/apps/test_mmvq.cpp: runs the mmvq binary on the reference VQGAN and checks its dump
// against ../shared/refs, and that bad input is a clear error with a non-zero exit.
// Run: ctest --test-dir build -R test_mmvq
#include <doctest/doctest.h>

#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
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
using testing::max_rel;
using testing::slurp;
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
  CHECK(got.get("indices").dtype() == DType::i64);
  CHECK(got.get("indices").to_vector<int64_t>() == ref.get("indices").to_vector<int64_t>());
  CHECK(max_rel(got.get("h"), ref.get("h")) < 1e-4);
  CHECK(max_rel(got.get("decoded"), ref.get("decoded")) < 1e-4);
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

TEST_CASE("mmvq encode writes taming's codes; decode turns them back into reconstruct's image") {
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  const std::string tmp = "/tmp/mm_test_mmvq_codes_" + std::to_string(::getpid());
  const std::string image = testing::refs_path("image_1_shapes.png"), ckpt = testing::refs_path("vqgan_tiny.ckpt");
  // no --config: vqgan_tiny.yaml, next to the checkpoint, is found
  auto [rc1, t1] = testing::run_command(mmvq + " encode " + image + " " + tmp + ".safetensors --device cpu --vqgan " + ckpt);
  REQUIRE_MESSAGE(rc1 == 0, t1);
  CHECK(t1.find("[1, 16, 16] codes") != std::string::npos);
  const TensorFile codes = load_safetensors(tmp + ".safetensors");
  const TensorFile ref = load_safetensors(testing::refs_path("vqgan_tiny_expected.safetensors"));
  CHECK(codes.get("indices").dtype() == DType::i64);
  CHECK(codes.get("indices").to_vector<int64_t>() == ref.get("indices").to_vector<int64_t>());
  auto [rc2, t2] = testing::run_command(mmvq + " decode " + tmp + ".safetensors " + tmp + "_dec.png --device cpu --vqgan " + ckpt);
  REQUIRE_MESSAGE(rc2 == 0, t2);
  auto [rc3, t3] = testing::run_command(mmvq + " reconstruct " + image + " " + tmp + "_rec.png --device cpu --vqgan " + ckpt);
  REQUIRE_MESSAGE(rc3 == 0, t3);
  const std::string dec = slurp(tmp + "_dec.png");
  CHECK(dec.size() > 100);
  CHECK(dec == slurp(tmp + "_rec.png"));  // the same codes decode to the same pixels
  // a 2-D code map [h, w] decodes too; a code outside the codebook and a file without indices are errors
  save_safetensors(tmp + "_2d.safetensors", {{"indices", codes.get("indices").select(0, 0).contiguous()}});
  auto [rc4, t4] = testing::run_command(mmvq + " decode " + tmp + "_2d.safetensors " + tmp + "_2d.png --device cpu --vqgan " + ckpt);
  CHECK_MESSAGE(rc4 == 0, t4);
  CHECK(slurp(tmp + "_2d.png") == dec);
  save_safetensors(tmp + "_bad.safetensors", {{"indices", Tensor::from_vector(std::vector<int64_t>{0, 128, 3, 4}, {1, 2, 2})}});
  auto [rc5, t5] = testing::run_command(mmvq + " decode " + tmp + "_bad.safetensors " + tmp + "_x.png --device cpu --vqgan " + ckpt);
  CHECK(rc5 == 1);
  CHECK_MESSAGE(t5.find("has code 128 outside the codebook [0, 128)") != std::string::npos, t5);
  save_safetensors(tmp + "_bad.safetensors", {{"codes", Tensor::from_vector(std::vector<int64_t>{0, 1, 3, 4}, {1, 2, 2})}});
  auto [rc6, t6] = testing::run_command(mmvq + " decode " + tmp + "_bad.safetensors " + tmp + "_x.png --device cpu --vqgan " + ckpt);
  CHECK(rc6 == 1);
  CHECK_MESSAGE(t6.find("indices") != std::string::npos, t6);
  for (const char* suffix : {".safetensors", "_dec.png", "_rec.png", "_2d.safetensors", "_2d.png", "_bad.safetensors"})
    std::remove((tmp + suffix).c_str());
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
