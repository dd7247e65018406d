// tests/train/test_mini_models.cpp: the shipped mm-mini models (models/mini/) load, reproduce
// the numbers their cards store for the committed emoji subset (models/mini/metrics/*.subset.json,
// written by models/mini/evaluate.sh), and every app runs on them with no model argument.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>

#include "apps/common/model_files.h"
#include "data/emoji_dataset.h"
#include "tests/apps/run_command.h"
#include "train/clip_trainer.h"
#include "train/vqgan_trainer.h"

using namespace mm;

namespace {
const std::string kMini = std::string(MM_SOURCE_DIR) + "/models/mini/";
const std::string kSubsetDir = std::string(MM_SOURCE_DIR) + "/tests/data/emoji_subset/";

nlohmann::json stored(const std::string& name) {
  std::ifstream in(kMini + "metrics/" + name + ".subset.json");
  REQUIRE_MESSAGE(in.good(), "missing ", kMini, "metrics/", name, ".subset.json (run models/mini/evaluate.sh)");
  return nlohmann::json::parse(in);
}

void split(std::vector<data::EmojiPair>& train, std::vector<data::EmojiPair>& val) {
  for (const auto& p : data::read_pairs_jsonl(kSubsetDir + "pairs.jsonl"))
    (p.split == data::Split::train ? train : val).push_back(p);
}
}  // namespace

TEST_CASE("the shipped CLIPs reproduce their stored subset numbers") {
  std::vector<data::EmojiPair> train, val;
  split(train, val);
  REQUIRE(val.size() == 48);
  for (const std::string name : {"clip_vit", "clip_resnet"}) {
    CAPTURE(name);
    const std::string path = kMini + name + ".safetensors";
    ClipModel m = apps::load_clip(path, "");
    const ClipTokenizer tok = apps::load_tokenizer("", path, m.config().vocab_size);
    CHECK(m.config().image_resolution == 64);
    const train::ClipMetrics got = train::evaluate_clip(m, tok, val, &train);
    const nlohmann::json want = stored(name);
    CHECK(got.val_images == want["val_images"].get<int64_t>());
    CHECK(got.val_loss == doctest::Approx(want["val_loss"].get<double>()).epsilon(1e-4));
    CHECK(got.t2i_recall5 == doctest::Approx(want["t2i_recall5"].get<double>()));
    CHECK(got.search_top5 == doctest::Approx(want["search_top5"].get<double>()));
    CHECK(got.zeroshot_top1 == doctest::Approx(want["zeroshot_top1"].get<double>()));
    CHECK(got.zeroshot_top5 == doctest::Approx(want["zeroshot_top5"].get<double>()));
    CHECK(got.train_top1_by_style.at("google") == doctest::Approx(want["train_top1_google"].get<double>()));
    CHECK(got.train_top1_by_style.at("twitter") == doctest::Approx(want["train_top1_twitter"].get<double>()));
    // And they are real models: far better than chance (1/24 top-1 among the 24 held-out captions).
    CHECK(got.zeroshot_top5 > 0.3);
  }
}

TEST_CASE("the shipped VQGAN reproduces its stored subset PSNR") {
  std::vector<data::EmojiPair> train, val;
  split(train, val);
  VQGAN vq = apps::load_vqgan(kMini + "vqgan.safetensors", "");
  CHECK(vq.config().resolution == 64);
  const train::VQGANMetrics got = train::evaluate_vqgan(vq, val);
  const nlohmann::json want = stored("vqgan");
  CHECK(got.images == want["images"].get<int64_t>());
  CHECK(got.psnr == doctest::Approx(want["psnr"].get<double>()).epsilon(1e-4));
  CHECK(got.codes_used == want["codes_used"].get<int64_t>());
  CHECK(got.psnr > 20);
}

TEST_CASE("the apps run on the default models with no model argument") {
  const std::string bin = MM_BIN_DIR;
  const std::string out = bin + "/test_mini_gen.png";
  std::remove(out.c_str());
  auto [rc, text] = testing::run_command(bin + "/mmgen \"grinning face\" --steps 3 --out " + out);
  CHECK_MESSAGE(rc == 0, text);
  CHECK(std::ifstream(out).good());
  CHECK(text.find("64x64") != std::string::npos);

  // Transparent emoji are composited on white for mm-mini, as in training: a seen emoji in
  // each style is recognised (with alpha dropped, its background would be black).
  auto [rc2, t2] = testing::run_command(bin + "/mmclip classify " + kSubsetDir + "google_1f600.png " + kSubsetDir +
                                            "twitter_1f9a2.png --labels 'grinning face,swan,receipt,candle' --json",
                                        testing::Stderr::discard);
  CHECK_MESSAGE(rc2 == 0, t2);
  std::istringstream lines(t2);
  std::string l1, l2;
  std::getline(lines, l1);
  std::getline(lines, l2);
  CHECK(nlohmann::json::parse(l1)["top"][0]["label"] == "grinning face");
  CHECK(nlohmann::json::parse(l2)["top"][0]["label"] == "swan");

  const std::string dir = bin + "/test_mini_search";
  REQUIRE(testing::run_command("rm -rf " + dir + " && mkdir -p " + dir + " && cp " + kSubsetDir + "*.png " + dir).first == 0);
  auto [rc3, t3] = testing::run_command(bin + "/mmclip search " + dir + " swan --top 3 --json", testing::Stderr::discard);
  CHECK_MESSAGE(rc3 == 0, t3);
  CHECK(nlohmann::json::parse(t3)["results"].size() == 3);

  const std::string rec = bin + "/test_mini_rec.png";
  auto [rc4, t4] = testing::run_command(bin + "/mmvq reconstruct " + kSubsetDir + "twitter_1f600.png " + rec);
  CHECK_MESSAGE(rc4 == 0, t4);
  CHECK(std::ifstream(rec).good());

  auto [rc5, t5] = testing::run_command(bin + "/mmclip classify " + kSubsetDir + "google_1f600.png --model clip_resnet " +
                                        "--labels 'grinning face,swan' --json");
  CHECK_MESSAGE(rc5 == 0, t5);
}
