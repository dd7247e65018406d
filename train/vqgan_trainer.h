// train/vqgan_trainer.h: training a VQGAN (taming's recipe, scaled to 64x64 emoji) for
// mm-mini, and the reconstruction numbers its model card reports. apps/mmtrain.cpp is the
// command line. Reading order: after train/clip_trainer.h and train/patch_discriminator.h.
// Test: ./build/mm_tests --source-file=*test_train.cpp
//
// One step: B training images (a seeded per-epoch permutation of all training pairs, both
// styles), shifted by up to max_shift pixels on white, mapped to [-1, 1]; the generator loss
//   |x - x̂|_1 + perceptual_weight * (1 - cos(CLIP(x), CLIP(x̂))) + quantisation loss
//   + λ * disc_weight * (-mean D(x̂))           (from disc_start on)
// with Adam(0.5, 0.9) as taming; then the discriminator's hinge loss
//   mean(relu(1 - D(x))) + mean(relu(1 + D(x̂)))   (from disc_start on).
// where λ is taming's adaptive weight: the ratio of the gradient norms of the reconstruction
// terms and of the adversarial term at the last decoder layer, clamped to [0, 1e4], so the
// adversarial push never outweighs the reconstruction (λ = 1 with disc_adaptive off: a fixed
// weight, which at 0.1 cost this model 1.2 dB). Codebook rows that no encoder
// output chose during the last window are restarted at random encoder outputs of the
// current batch (a standard cure for codebook collapse that taming does not have); the
// window is restart_every steps.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "data/emoji_dataset.h"
#include "models/vqgan.h"

namespace mm::train {

// mm-mini's VQGAN: 64x64 images, factor 4 (16x16 codes), a small codebook.
VQGANConfig mini_vqgan_config();

struct VQGANTrainOptions {
  std::string data, out_dir, resume;
  VQGANConfig config = mini_vqgan_config();
  int64_t steps = 3000;
  int64_t batch = 16;
  int64_t warmup = 100;
  double lr = 1e-3;
  double final_lr_ratio = 0.05;
  double weight_decay = 0.0;
  double clip_grad = 1.0;
  int64_t max_shift = 2;
  int64_t disc_start = 1000;  // steps before the adversarial losses start
  double disc_weight = 0.1;
  bool disc_adaptive = true;  // taming's λ (above); false: a fixed disc_weight
  std::string perceptual_clip;  // an mm-mini CLIP .safetensors ("" = no perceptual term)
  double perceptual_weight = 0.1;
  int64_t restart_every = 100;  // dead-code restart window, in steps
  int64_t val_every = 500, ckpt_every = 500;
  int64_t limit = 0, stop_after = -1;
  uint64_t seed = 0;
  bool quiet = false;
};

struct VQGANMetrics {
  int64_t images = 0;
  double psnr = 0;      // mean over held-out images of 10 log10(1 / MSE), pixels in [0, 1]
  double l1 = 0;        // mean |x - x̂| in [0, 1] units
  int64_t codes_used = 0;  // distinct codebook rows the held-out images use
  int64_t codebook = 0;
  std::string json() const;
};

// Reconstructs every image of `pairs` through the codebook. With grid_png, also writes a
// grid of 16 images spread over `pairs`: originals on the odd rows, reconstructions below.
VQGANMetrics evaluate_vqgan(const VQGAN& model, const std::vector<data::EmojiPair>& pairs,
                            const std::string& grid_png = "", int64_t batch = 64);


struct VQGANTrainResult {
  std::vector<std::pair<int64_t, double>> train_loss, train_l1, val_psnr;
  VQGANMetrics final_metrics;
  std::vector<std::pair<std::string, Tensor>> weights;
};

VQGANTrainResult train_vqgan(const VQGANTrainOptions& options);

}  // namespace mm::train
