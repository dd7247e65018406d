// train/vqgan_trainer.cpp: see vqgan_trainer.h.
#include "train/vqgan_trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape_ops.h"
#include "engine/optim.h"
#include "models/clip.h"
#include "train/checkpoint.h"
#include "train/clip_trainer.h"
#include "train/common.h"
#include "train/patch_discriminator.h"
#include "train/schedule.h"

#include <stb/stb_image_write.h>

namespace mm::train {

VQGANConfig mini_vqgan_config() {
  VQGANConfig c;
  c.embed_dim = 32;
  c.n_embed = 512;
  c.z_channels = 64;
  c.resolution = 64;
  c.ch = 32;
  c.ch_mult = {1, 2, 2};
  c.num_res_blocks = 1;
  c.attn_resolutions = {};
  return c;
}

std::string VQGANMetrics::json() const {
  nlohmann::ordered_json j;
  j["images"] = images;
  j["psnr"] = psnr;
  j["l1"] = l1;
  j["codes_used"] = codes_used;
  j["codebook"] = codebook;
  return j.dump(1);
}

VQGANMetrics evaluate_vqgan(const VQGAN& vq, const std::vector<data::EmojiPair>& pairs, const std::string& grid_png,
                            int64_t batch) {
  MM_CHECK(!pairs.empty(), "[evaluate_vqgan] no images");
  NoGradGuard ng;
  const int64_t R = vq.config().resolution;
  data::EmojiDataset ds(pairs, R);
  VQGANMetrics m;
  m.images = ds.size();
  m.codebook = vq.config().n_embed;
  std::set<int64_t> used;
  double psnr = 0, l1 = 0;
  for (int64_t i = 0; i < ds.size(); i += batch) {
    std::vector<int64_t> idx;
    for (int64_t j = i; j < std::min(ds.size(), i + batch); ++j) idx.push_back(j);
    Tensor x = ds.load_batch(idx);  // [b, 3, R, R] in [0, 1]
    VQCodes q = vq.quantize(vq.encode(x * 2.0 - 1.0));
    for (int64_t c : q.indices.to_vector<int64_t>()) used.insert(c);
    Tensor y = clamp((vq.decode(q.z_q) + 1.0) * 0.5, 0.0, 1.0);
    const std::vector<float> mse = mean(square(y - x), {1, 2, 3}).to_vector<float>();
    const std::vector<float> mae = mean(abs(y - x), {1, 2, 3}).to_vector<float>();
    for (size_t k = 0; k < mse.size(); ++k) {
      psnr += 10.0 * std::log10(1.0 / std::max(static_cast<double>(mse[k]), 1e-10));
      l1 += mae[k];
    }
  }
  m.psnr = psnr / static_cast<double>(m.images);
  m.l1 = l1 / static_cast<double>(m.images);
  m.codes_used = static_cast<int64_t>(used.size());
  if (!grid_png.empty()) {
    // 16 images spread over the set: 2 rows of 8 originals, each above its reconstructions.
    const int64_t n = std::min<int64_t>(16, ds.size()), cols = 8, rows = (n + cols - 1) / cols, pad = 2;
    std::vector<int64_t> idx;
    for (int64_t k = 0; k < n; ++k) idx.push_back(k * ds.size() / n);
    Tensor x = ds.load_batch(idx);
    Tensor y = clamp((vq.decode(vq.quantize(vq.encode(x * 2.0 - 1.0)).z_q) + 1.0) * 0.5, 0.0, 1.0);
    const int64_t W = cols * (R + pad) + pad, H = rows * 2 * (R + pad) + pad;
    std::vector<uint8_t> px(static_cast<size_t>(W * H * 3), 255);
    const std::vector<float> xs = x.contiguous().to_vector<float>(), ys = y.contiguous().to_vector<float>();
    for (int64_t k = 0; k < n; ++k) {
      const int64_t gx = pad + (k % cols) * (R + pad), gy = pad + (k / cols) * 2 * (R + pad);
      for (int which = 0; which < 2; ++which) {
        const std::vector<float>& src = which == 0 ? xs : ys;
        for (int64_t c = 0; c < 3; ++c)
          for (int64_t yy = 0; yy < R; ++yy)
            for (int64_t xx = 0; xx < R; ++xx) {
              const float v = src[static_cast<size_t>(((k * 3 + c) * R + yy) * R + xx)];
              px[static_cast<size_t>(((gy + which * (R + pad) + yy) * W + gx + xx) * 3 + c)] =
                  static_cast<uint8_t>(std::lround(std::clamp(v, 0.0f, 1.0f) * 255.0f));
            }
      }
    }
    MM_CHECK(stbi_write_png(grid_png.c_str(), static_cast<int>(W), static_cast<int>(H), 3, px.data(),
                            static_cast<int>(W * 3)) != 0,
             "[evaluate_vqgan] cannot write '", grid_png, "'");
  }
  return m;
}

VQGANTrainResult train_vqgan(const VQGANTrainOptions& o) {
  MM_CHECK(o.steps >= 1 && o.batch >= 1, "[mmtrain vqgan] --steps and --batch must be positive");
  make_dir(o.out_dir);
  std::vector<data::EmojiPair> train_pairs, val_pairs;
  for (const auto& p : data::read_pairs_jsonl(o.data)) (p.split == data::Split::train ? train_pairs : val_pairs).push_back(p);
  if (o.limit > 0) {
    if (static_cast<int64_t>(train_pairs.size()) > o.limit) train_pairs.resize(static_cast<size_t>(o.limit));
    if (static_cast<int64_t>(val_pairs.size()) > o.limit) val_pairs.resize(static_cast<size_t>(o.limit));
  }
  const int64_t N = static_cast<int64_t>(train_pairs.size());
  MM_CHECK(N >= 1 && !val_pairs.empty(), "[mmtrain vqgan] '", o.data, "' needs training and held-out images");
  const int64_t B = std::min(o.batch, N), per_epoch = N / B;
  data::EmojiDataset train_ds(train_pairs, o.config.resolution);

  VQGAN vq;
  PatchDiscriminator disc;
  int64_t start = 0;
  LoadedCheckpoint ck;
  if (!o.resume.empty()) {
    ck = load_checkpoint(o.resume);
    start = ck.step;
    TensorFile gen_part, disc_part;
    gen_part.path = disc_part.path = o.resume;
    for (auto& [k, t] : ck.model.tensors) (k.rfind("disc.", 0) == 0 ? disc_part : gen_part).tensors.emplace_back(k, t);
    vq = VQGAN::from_tensors(gen_part, o.config);
    disc = PatchDiscriminator::from_tensors(disc_part);
  } else {
    vq = VQGAN::init(o.config, o.seed);
    disc = PatchDiscriminator::init(32, step_seed(o.seed, 0, 7));
  }
  vq.set_trainable(true);
  std::vector<Tensor> gparams;
  for (const auto& [k, t] : vq.named_tensors()) gparams.push_back(t);
  AdamOptions ao;
  ao.lr = o.lr;
  ao.beta1 = 0.5;
  ao.beta2 = 0.9;
  ao.weight_decay = o.weight_decay;
  AdamW opt_g(gparams, ao);
  AdamW opt_d(disc.parameters(), ao);
  if (!o.resume.empty()) {
    ck.restore("opt_g", opt_g);
    ck.restore("opt_d", opt_d);
  }
  ClipModel judge;
  const bool perceptual = !o.perceptual_clip.empty();
  // (float32 weights: a 16-bit file's would be widened on every forward and backward)
  if (perceptual) judge = load_exported_clip(o.perceptual_clip, "[mmtrain vqgan] --perceptual").to(DType::f32);
  const LrSchedule sched{o.lr, o.warmup, o.steps, o.final_lr_ratio};
  const std::string config_json = vqgan_config_to_json(o.config);
  auto all_tensors = [&]() {
    auto t = vq.named_tensors();
    for (const auto& kv : disc.named_tensors()) t.push_back(kv);
    return t;
  };
  auto save_ck = [&](int64_t step) {
    save_checkpoint(o.out_dir + "/checkpoint.safetensors", all_tensors(), {{"opt_g", &opt_g}, {"opt_d", &opt_d}}, step,
                    {{"kind", "mmtrain vqgan"}, {"config", config_json}, {"seed", std::to_string(o.seed)}});
  };

  VQGANTrainResult res;
  prepare_log(o.out_dir + "/log.csv", "step,lr,loss,l1,qloss,g_loss,d_loss,val_psnr,codes_restarted,disc_lambda", start);
  std::ofstream log(o.out_dir + "/log.csv", std::ios::app);
  auto validate = [&](int64_t step) {
    VQGANMetrics vm = evaluate_vqgan(vq, val_pairs);
    res.val_psnr.emplace_back(step, vm.psnr);
    log << step << ",,,,,,," << vm.psnr << ",,\n" << std::flush;
    if (!o.quiet)
      std::fprintf(stderr, "\n[val @%lld] PSNR %.2f dB  L1 %.4f  codes used %lld/%lld\n", static_cast<long long>(step),
                   vm.psnr, vm.l1, static_cast<long long>(vm.codes_used), static_cast<long long>(vm.codebook));
    return vm;
  };
  // Code usage over the current window of restart_every steps; restarts happen at its end. The
  // window is aligned to absolute steps; a resumed run rebuilds it from nothing, so resuming at
  // a multiple of restart_every (checkpoints are, by default) continues bit for bit.
  std::vector<int64_t> usage(static_cast<size_t>(o.config.n_embed), 0);
  const int64_t end = o.stop_after >= 0 ? std::min(o.steps, o.stop_after) : o.steps;
  StepReporter report(start, end, B, o.quiet);
  std::vector<int64_t> perm;
  int64_t perm_epoch = -1;
  for (int64_t step = start; step < end; ++step) {
    const int64_t epoch = step / per_epoch, slot = step % per_epoch;
    if (epoch != perm_epoch) perm = permutation(N, step_seed(o.seed, epoch, 1)), perm_epoch = epoch;
    Generator gen(step_seed(o.seed, step, 2));
    std::vector<int64_t> idx(perm.begin() + slot * B, perm.begin() + (slot + 1) * B);
    data::Augment aug;
    aug.max_shift = o.max_shift;
    Tensor x = train_ds.load_batch(idx, aug, &gen) * 2.0 - 1.0;  // [B, 3, R, R] in [-1, 1]
    const double lr = sched.at(step);
    opt_g.set_lr(lr);
    opt_d.set_lr(lr);
    const bool adversarial = step >= o.disc_start;

    // Generator (autoencoder) step.
    opt_g.zero_grad();
    Tensor h = vq.encode(x);
    VQCodes q = vq.quantize(h);
    Tensor xr = vq.decode(q.z_q);
    Tensor l1 = mean(abs(x - xr));
    Tensor qloss = vq.quantization_loss(h, q);
    Tensor rec = l1;  // the reconstruction terms (taming's nll_loss)
    if (perceptual) {
      auto to_clip = [&](const Tensor& im) { return clip_normalize_pixels((im + 1.0) * 0.5); };
      Tensor fa = normalize(judge.encode_image(to_clip(x)).detach(), -1);
      Tensor fb = normalize(judge.encode_image(to_clip(xr)), -1);
      rec = rec + (1.0 - mean(sum(fa * fb, {1}))) * o.perceptual_weight;
    }
    Tensor loss = rec + qloss;
    Tensor g_loss;
    double lambda = 0;
    if (adversarial) {
      g_loss = -mean(disc.forward(xr));
      lambda = 1.0;
      if (o.disc_adaptive) {
        const Tensor& last = vq.last_layer();
        const double g_rec = norm(grad({rec}, {last}, {}, /*retain_graph=*/true)[0]).item();
        const double g_adv = norm(grad({g_loss}, {last}, {}, /*retain_graph=*/true)[0]).item();
        lambda = std::clamp(g_rec / (g_adv + 1e-4), 0.0, 1e4);
      }
      loss = loss + g_loss * (lambda * o.disc_weight);
    }
    loss.backward();
    clip_grad_norm(gparams, o.clip_grad);
    opt_g.step();

    // Discriminator step (hinge).
    double d_value = 0;
    if (adversarial) {
      opt_d.zero_grad();
      Tensor d_loss = mean(relu(1.0 - disc.forward(x))) + mean(relu(1.0 + disc.forward(xr.detach())));
      d_loss.backward();
      clip_grad_norm(disc.parameters(), o.clip_grad);
      opt_d.step();
      d_value = d_loss.item();
    }

    // Dead-code restarts.
    for (int64_t c : q.indices.to_vector<int64_t>()) ++usage[static_cast<size_t>(c)];
    int64_t restarted = 0;
    if (o.restart_every > 0 && (step + 1) % o.restart_every == 0) {
      std::vector<int64_t> dead;
      for (int64_t c = 0; c < o.config.n_embed; ++c)
        if (usage[static_cast<size_t>(c)] == 0) dead.push_back(c);
      if (!dead.empty()) {
        NoGradGuard ng;
        const int64_t D = o.config.embed_dim;
        Tensor flat = h.detach().permute({0, 2, 3, 1}).reshape({-1, D}).contiguous();  // [B*h*w, D]
        std::vector<int64_t> rows;
        for (size_t k = 0; k < dead.size(); ++k) rows.push_back(gen.randint(0, flat.size(0)));
        vq.reset_codes(dead, index_select(flat, 0, Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())})));
        restarted = static_cast<int64_t>(dead.size());
      }
      std::fill(usage.begin(), usage.end(), 0);
    }
    const double lv = loss.item(), l1v = l1.item();
    res.train_loss.emplace_back(step, lv);
    res.train_l1.emplace_back(step, l1v);
    log << step << "," << lr << "," << lv << "," << l1v << "," << qloss.item() << ","
        << (adversarial ? g_loss.item() : 0.0) << "," << d_value << ",," << restarted << "," << lambda << "\n";
    char what[96];
    std::snprintf(what, sizeof(what), "loss %.4f l1 %.4f lr %.2e", lv, l1v, lr);
    report.progress(step, what);
    if (report.validate_after(step, o.val_every)) validate(step + 1);
    if (report.checkpoint_after(step, o.ckpt_every)) save_ck(step + 1);
  }
  log.flush();
  if (end == o.steps) {
    res.final_metrics = evaluate_vqgan(vq, val_pairs, o.out_dir + "/reconstructions.png");
    res.val_psnr.emplace_back(o.steps, res.final_metrics.psnr);
    log << o.steps << ",,,,,,," << res.final_metrics.psnr << ",,\n" << std::flush;
    std::ofstream(o.out_dir + "/metrics.json") << res.final_metrics.json() << "\n";
    save_model(o.out_dir + "/model.safetensors", vq.named_tensors(), /*fp16=*/true,
               {{"kind", "mm-mini vqgan"}, {"config", config_json}});
    plot_log(o.out_dir + "/log.csv", 3, 7, "val psnr", o.out_dir + "/loss.png");
  }
  res.weights = vq.named_tensors();
  return res;
}

}  // namespace mm::train
