// tests/train/test_train.cpp: mmtrain's pieces: the schedule, checkpoints, the loss plot, the
// initialisations, BatchNorm in training mode, and short real training runs of both trainers
// on the committed emoji subset (tests/data/emoji_subset): the loss goes down, and a run
// stopped and resumed from its checkpoint ends bit for bit where an uninterrupted one does.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/clip.h"
#include "models/clip_tokenizer.h"
#include "models/vqgan.h"
#include "train/checkpoint.h"
#include "train/clip_trainer.h"
#include "train/common.h"
#include "train/plot.h"
#include "train/schedule.h"
#include "train/vqgan_trainer.h"

using namespace mm;

namespace {

const std::string kSubset = std::string(MM_SOURCE_DIR) + "/tests/data/emoji_subset/pairs.jsonl";
const std::string kVocab = std::string(MM_SOURCE_DIR) + "/models/mini/clip_vit.bpe.txt.gz";

std::string tmp_dir(const std::string& name) {
  const std::string d = std::string(MM_BIN_DIR) + "/test_train_" + name;
  train::make_dir(d);
  return d;
}

ClipConfig tiny_clip(ClipVision vision, int64_t vocab) {
  ClipConfig c;
  c.embed_dim = 16;
  c.image_resolution = 64;
  c.context_length = 24;
  c.vocab_size = vocab;
  c.transformer_width = 32;
  c.transformer_heads = 2;
  c.transformer_layers = 1;
  c.vision = vision;
  if (vision == ClipVision::vit) {
    c.vision_patch_size = 16, c.vision_width = 32, c.vision_layers = {1}, c.vision_heads = 2;
  } else {
    c.vision_patch_size = 0, c.vision_width = 8, c.vision_layers = {1, 1, 1, 1}, c.vision_heads = 4;
  }
  return c;
}

bool same_bits(const std::vector<std::pair<std::string, Tensor>>& a, const std::vector<std::pair<std::string, Tensor>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first) return false;
    const auto x = a[i].second.contiguous().to_vector<float>(), y = b[i].second.contiguous().to_vector<float>();
    if (x.size() != y.size() || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) != 0) {
      MESSAGE("differs: " << a[i].first);
      return false;
    }
  }
  return true;
}

// A short quiet run on the committed subset: 6 steps of batch 6 (12 training emoji: 2 steps
// per epoch), no validation or checkpoints along the way, no final training-set pass.
train::ClipTrainOptions subset_clip_run(ClipVision vision, uint64_t seed) {
  train::ClipTrainOptions o;
  o.data = kSubset;
  o.vocab = kVocab;
  o.config = tiny_clip(vision, ClipTokenizer::from_bpe_file(kVocab).vocab_size());
  o.steps = 6, o.batch = 6, o.warmup = 1, o.lr = 3e-3, o.val_every = 0, o.ckpt_every = 0;
  o.final_eval = false, o.quiet = true, o.seed = seed;
  return o;
}

// Runs o in two pieces: `first` steps into the fresh folder `dir` (left in o.out_dir), stopping
// with a checkpoint, then resumed from it to the end (o.resume stays set). Returns the resumed
// run's result, which must match one run straight through.
template <typename Options, typename Train>
auto stopped_and_resumed(Options& o, const std::string& dir, int64_t first, Train train) {
  o.out_dir = tmp_dir(dir);
  o.stop_after = first;
  train(o);
  o.stop_after = -1;
  o.resume = o.out_dir + "/checkpoint.safetensors";
  return train(o);
}

}  // namespace

TEST_CASE("LrSchedule: linear warm-up, cosine to final_ratio") {
  const train::LrSchedule s{1e-3, 10, 110, 0.1};
  CHECK(s.at(0) == doctest::Approx(1e-4));
  CHECK(s.at(9) == doctest::Approx(1e-3));
  CHECK(s.at(10) == doctest::Approx(1e-3));
  CHECK(s.at(60) == doctest::Approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 50.0 / 99.0)))));
  CHECK(s.at(109) == doctest::Approx(1e-4));
  for (int64_t i = 11; i < 110; ++i) CHECK(s.at(i) <= s.at(i - 1));
}

TEST_CASE("permutation and step seeds are deterministic and distinct") {
  const auto p = train::permutation(50, 7), q = train::permutation(50, 7), r = train::permutation(50, 8);
  CHECK(p == q);
  CHECK(p != r);
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) CHECK(sorted[static_cast<size_t>(i)] == i);
  CHECK(train::step_seed(1, 2, 3) != train::step_seed(1, 3, 3));
  CHECK(train::step_seed(1, 2, 3) != train::step_seed(1, 2, 4));
}

TEST_CASE("ClipModel::init follows OpenAI's rules and is seeded") {
  const ClipConfig c = tiny_clip(ClipVision::resnet, 600);
  ClipModel a = ClipModel::init(c, 3), b = ClipModel::init(c, 3), d = ClipModel::init(c, 4);
  CHECK(same_bits(a.named_tensors(), b.named_tensors()));
  CHECK(a.weight("token_embedding.weight").to_vector<float>() != d.weight("token_embedding.weight").to_vector<float>());
  CHECK(a.weight("logit_scale").item() == doctest::Approx(std::log(1 / 0.07)));
  // std of the token embedding ~ 0.02, the last BatchNorm gamma of a Bottleneck is zero.
  Tensor e = a.weight("token_embedding.weight");
  CHECK(std::sqrt(mean(square(e)).item()) == doctest::Approx(0.02).epsilon(0.1));
  CHECK(max(abs(a.weight("visual.layer1.0.bn3.weight"))).item() == 0.0);
  CHECK(a.weight("visual.bn3.weight").to_vector<float>() == std::vector<float>(8, 1.0f));  // the stem's is not zeroed
  CHECK(a.weight("visual.bn1.running_var").to_vector<float>() == std::vector<float>(4, 1.0f));
  // Running statistics are not parameters.
  for (const auto& [k, t] : a.named_parameters()) CHECK(k.find("running_") == std::string::npos);
}

TEST_CASE("BatchNorm in training mode: batch statistics, running update as torch") {
  const ClipConfig c = tiny_clip(ClipVision::resnet, 600);
  ClipModel m = ClipModel::init(c, 1);
  m.set_trainable(true);
  m.set_training(true);
  Generator g(5);
  Tensor x = Tensor::randn({4, 3, 64, 64}, g);
  ClipTrace tr1, tr2;
  Tensor f = m.encode_image(x, &tr1);
  // The stem's first BatchNorm saw conv1(x): its running mean moved 10% towards the batch mean.
  Tensor rm = m.weight("visual.bn1.running_mean");
  CHECK(max(abs(rm)).item() > 0);
  // Training-mode output differs from eval-mode output; the graph reaches the weights.
  sum(f).backward();
  CHECK(m.weight("visual.conv1.weight").grad().defined());
  m.set_training(false);
  NoGradGuard ng;
  Tensor fe = m.encode_image(x, &tr2);
  CHECK(max(abs(fe - f.detach())).item() > 1e-6);
  CHECK(max(abs(tr1.visual_stem_out - tr2.visual_stem_out)).item() > 1e-6);
}

TEST_CASE("VQGAN::init, trainable copies and a codebook loss that trains the codebook") {
  VQGANConfig c = train::mini_vqgan_config();
  c.ch = 32, c.ch_mult = {1, 1}, c.n_embed = 16, c.embed_dim = 8, c.z_channels = 32;
  VQGAN vq = VQGAN::init(c, 2);
  vq.set_trainable(true);
  Generator g(1);
  Tensor x = Tensor::uniform({2, 3, 16, 16}, g, -1, 1);
  Tensor h = vq.encode(x);
  VQCodes q = vq.quantize(h);
  Tensor loss = vq.quantization_loss(h, q);
  loss.backward();
  CHECK(vq.codebook().grad().defined());
  CHECK(max(abs(vq.codebook().grad())).item() > 0);
  CHECK(loss.item() == doctest::Approx(mean(square(q.z_q.detach() - h.detach())).item() * 1.25).epsilon(1e-4));
  // reset_codes writes the rows asked for, nothing else.
  Tensor before = vq.codebook().detach().clone();
  vq.reset_codes({3}, Tensor::full({1, 8}, 0.5));
  CHECK(vq.codebook().select(0, 3).to_vector<float>() == std::vector<float>(8, 0.5f));
  CHECK(vq.codebook().select(0, 2).to_vector<float>() == before.select(0, 2).to_vector<float>());
  // The config travels as JSON.
  const VQGANConfig back = vqgan_config_from_json(vqgan_config_to_json(c), "test");
  CHECK(back.str() == c.str());
}

TEST_CASE("checkpoints round-trip the model and the optimiser") {
  Tensor w = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3});
  w.set_requires_grad(true);
  AdamW opt({w}, AdamOptions{});
  sum(w * w).backward();
  opt.step();
  const std::string path = tmp_dir("ckpt") + "/c.safetensors";
  train::save_checkpoint(path, {{"w", w}}, {{"opt", &opt}}, 17, {{"kind", "test"}});
  train::LoadedCheckpoint ck = train::load_checkpoint(path);
  CHECK(ck.step == 17);
  CHECK(ck.meta("kind") == "test");
  REQUIRE(ck.model.tensors.size() == 1);
  CHECK(ck.model.tensors[0].second.to_vector<float>() == w.detach().to_vector<float>());
  Tensor w2 = ck.model.tensors[0].second;
  w2.set_requires_grad(true);
  AdamW opt2({w2}, AdamOptions{});
  ck.restore("opt", opt2);
  CHECK(opt2.steps() == 1);
  CHECK_THROWS_WITH_AS(ck.restore("nope", opt2), doctest::Contains("no state for optimiser 'nope'"), Error);
  CHECK_THROWS_WITH_AS(ck.meta("absent"), doctest::Contains("absent"), Error);
}

TEST_CASE("prepare_log: a fresh log has the header; a resumed one drops the rows from the resume step on") {
  const std::string path = tmp_dir("log") + "/log.csv";
  train::prepare_log(path, "step,loss", 0);
  {
    std::ofstream out(path, std::ios::app);
    out << "0,5\n1,4\n2,3\n2,,9\n3,2\n";  // step 2 has a training and a validation row
  }
  train::prepare_log(path, "step,loss", 2);
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(all == "step,loss\n0,5\n1,4\n");
  train::prepare_log(path, "step,loss", 0);
  std::ifstream in2(path);
  std::string fresh((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>());
  CHECK(fresh == "step,loss\n");
}

TEST_CASE("the loss plot is a PNG of the asked size") {
  const std::string path = tmp_dir("plot") + "/loss.png";
  std::remove(path.c_str());
  train::save_loss_plot(path, {{"train loss", {{0, 5.0}, {10, 2.0}, {20, 0.5}}, 0, 0, 255}}, 320, 200);
  std::ifstream f(path, std::ios::binary);
  char sig[8];
  REQUIRE(f.read(sig, 8));
  CHECK(std::string(sig + 1, 3) == "PNG");
  CHECK_THROWS_WITH_AS(train::save_loss_plot(path, {{"x", {{0, -1.0}}, 0, 0, 0}}), doctest::Contains("no positive"),
                       Error);
}

TEST_CASE("mini-CLIP training on the emoji subset: loss goes down, resume is bit-identical") {
  for (ClipVision vision : {ClipVision::vit, ClipVision::resnet}) {
    CAPTURE(static_cast<int>(vision));
    train::ClipTrainOptions o = subset_clip_run(vision, 11);
    o.out_dir = tmp_dir("clip_full");
    const train::ClipTrainResult full = train::train_clip(o);
    REQUIRE(full.train_loss.size() == 6);
    // Each epoch over the 12 training emoji is 2 steps: compare epoch means, first vs last.
    const double first = (full.train_loss[0].second + full.train_loss[1].second) / 2;
    const double last = (full.train_loss[4].second + full.train_loss[5].second) / 2;
    CHECK(last < first);
    // Stop after 3 steps, resume, finish: the same weights, bit for bit.
    const train::ClipTrainResult resumed = stopped_and_resumed(o, "clip_part", 3, train::train_clip);
    CHECK(same_bits(full.weights, resumed.weights));
    std::ifstream png(o.out_dir + "/loss.png");
    CHECK(png.good());
  }
}

TEST_CASE("mini-CLIP training with hard-negative batches: loss goes down, resume mid-epoch is bit-identical") {
  train::ClipTrainOptions o = subset_clip_run(ClipVision::vit, 12);
  o.hard_negatives = 3;
  o.out_dir = tmp_dir("clip_hard_full");
  const train::ClipTrainResult full = train::train_clip(o);
  REQUIRE(full.train_loss.size() == 6);
  CHECK((full.train_loss[4].second + full.train_loss[5].second) < (full.train_loss[0].second + full.train_loss[1].second));
  // Each epoch is 2 steps: stopping after 3 leaves the run inside epoch 1, whose order the
  // model of step 2 chose; the resumed run must take it from the checkpoint.
  const train::ClipTrainResult resumed = stopped_and_resumed(o, "clip_hard_part", 3, train::train_clip);
  CHECK(same_bits(full.weights, resumed.weights));
  // A different order (plain random batches) gives different weights: the option is live.
  o.resume.clear();
  o.hard_negatives = 0;
  o.out_dir = tmp_dir("clip_hard_off");
  const train::ClipTrainResult plain = train::train_clip(o);
  CHECK_FALSE(same_bits(full.weights, plain.weights));
}

TEST_CASE("mini-CLIP training from an exported model (--init): its weights, a fresh optimiser, its config only") {
  train::ClipTrainOptions o = subset_clip_run(ClipVision::vit, 5);
  o.steps = 2, o.warmup = 0;
  o.out_dir = tmp_dir("clip_init_a");
  const train::ClipTrainResult a = train::train_clip(o);
  const std::string model = o.out_dir + "/model.safetensors";
  train::save_model(model, a.weights, /*fp16=*/false,
                    {{"kind", "mm-mini clip"}, {"config", clip_config_to_json(o.config)}});
  // With a zero learning rate (AdamW's decay is scaled by it too) nothing moves: the run ends
  // on the file's weights, which differ from a fresh init with the same seed.
  o.init = model;
  o.lr = 0;
  o.out_dir = tmp_dir("clip_init_b");
  const train::ClipTrainResult b = train::train_clip(o);
  CHECK(same_bits(a.weights, b.weights));
  o.init.clear();
  const train::ClipTrainResult fresh = train::train_clip(o);
  CHECK_FALSE(same_bits(a.weights, fresh.weights));
  // A model of another shape is refused with both configs in the message.
  o.init = model;
  o.config.transformer_width = 64;
  CHECK_THROWS_WITH(train::train_clip(o), doctest::Contains("has config"));
  o.config.transformer_width = 32;
  o.resume = model;
  CHECK_THROWS_WITH(train::train_clip(o), doctest::Contains("exclude each other"));
}

TEST_CASE("mini-VQGAN training on the emoji subset: loss goes down, resume is bit-identical") {
  train::VQGANTrainOptions o;
  o.data = kSubset;
  o.config.ch = 32, o.config.ch_mult = {1, 2}, o.config.n_embed = 32, o.config.embed_dim = 8, o.config.z_channels = 32;
  o.steps = 8;
  o.batch = 4;
  o.warmup = 1;
  o.lr = 2e-3;
  o.disc_start = 4;       // the adversarial path runs too
  o.restart_every = 2;    // and dead codes are restarted
  o.val_every = 0;
  o.ckpt_every = 0;
  o.quiet = true;
  o.seed = 5;
  o.out_dir = tmp_dir("vq_full");
  const train::VQGANTrainResult full = train::train_vqgan(o);
  REQUIRE(full.train_loss.size() == 8);
  REQUIRE(full.train_l1.size() == 8);
  CHECK(full.train_l1[3].second < full.train_l1[0].second);  // before the adversarial term joins
  CHECK(full.train_l1[7].second < full.train_l1[3].second);
  CHECK(full.final_metrics.images == 48);
  CHECK(full.final_metrics.psnr > 5);
  {
    // taming's adaptive weight λ (last column of log.csv): 0 before disc_start, then the
    // ratio of gradient norms at the last decoder layer: positive, finite, not the fixed 1.
    std::ifstream log(o.out_dir + "/log.csv");
    std::string line;
    std::getline(log, line);
    REQUIRE(line.substr(line.rfind(',') + 1) == "disc_lambda");
    int adversarial_rows = 0;
    while (std::getline(log, line)) {
      const int64_t step = std::stoll(line.substr(0, line.find(',')));
      const std::string last = line.substr(line.rfind(',') + 1);
      if (last.empty()) continue;  // a validation row
      const double lambda = std::stod(last);
      CAPTURE(step);
      if (step < 4) {
        CHECK(lambda == 0);
      } else {
        CHECK(std::isfinite(lambda));
        CHECK(lambda > 0);
        CHECK(lambda != 1.0);
        ++adversarial_rows;
      }
    }
    CHECK(adversarial_rows == 4);
  }
  const train::VQGANTrainResult resumed = stopped_and_resumed(o, "vq_part", 4, train::train_vqgan);
  CHECK(same_bits(full.weights, resumed.weights));
  std::ifstream grid(o.out_dir + "/reconstructions.png");
  CHECK(grid.good());
}

TEST_CASE("mini-VQGAN training with mm-mini's CLIP as the perceptual loss") {
  train::VQGANTrainOptions o;
  o.data = kSubset;
  o.config.ch = 32, o.config.ch_mult = {1, 2}, o.config.n_embed = 32, o.config.embed_dim = 8, o.config.z_channels = 32;
  o.steps = 3;
  o.batch = 2;
  o.warmup = 1;
  o.val_every = 0;
  o.ckpt_every = 0;
  o.quiet = true;
  o.limit = 8;
  o.out_dir = tmp_dir("vq_plain");
  const train::VQGANTrainResult plain = train::train_vqgan(o);
  o.perceptual_clip = std::string(MM_SOURCE_DIR) + "/models/mini/clip_vit.safetensors";
  o.perceptual_weight = 1.0;
  o.out_dir = tmp_dir("vq_perceptual");
  const train::VQGANTrainResult r = train::train_vqgan(o);
  REQUIRE(r.train_loss.size() == 3);
  for (const auto& [step, loss] : r.train_loss) CHECK(std::isfinite(loss));
  // Step 0 sees the same weights and batch: the same L1, plus the perceptual term 1 - cosine.
  CHECK(r.train_l1[0].second == plain.train_l1[0].second);
  const double perceptual = r.train_loss[0].second - plain.train_loss[0].second;
  CHECK(perceptual > 1e-4);
  CHECK(perceptual < 2.0);
  // Later steps differ: the perceptual gradient changed the weights.
  CHECK(r.train_l1[2].second != plain.train_l1[2].second);
  o.perceptual_clip = "/nonexistent.safetensors";
  CHECK_THROWS_AS(train::train_vqgan(o), Error);
}
