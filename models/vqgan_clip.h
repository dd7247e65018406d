// models/vqgan_clip.h: VQGAN+CLIP text-to-image generation: optimise a VQGAN latent so that
// CLIP sees the prompts in the decoded image (Crowson's VQGAN+CLIP notebooks, on our autograd).
// Reading order: last of models/, used by apps/mmgen.cpp. Tested by
// tests/models/test_vqgan_clip.cpp (one step against ../shared/refs/vqclip_step_expected).
//
//   mm::VQGANCLIP gen(vqgan, clip, tokenizer, options);
//   gen.add_text_prompts("watercolor portrait of a teacher|blurry:-0.5");
//   gen.init_random(seed);
//   for (int i = 0; i < 300; ++i) double loss = gen.step();
//   mm::Tensor png = gen.image();   // [3, H, W] in [0, 1]
//
// One step: z_q = straight-through quantise(z); x = clamp_with_grad((decode(z_q) + 1) / 2);
// cutouts (random sizes, area-resized to CLIP's input) with augmentations and noise;
// f = encode_image(normalise(cutouts)); loss = sum over prompts of the spherical distance
// 2 asin(|f^ - t^| / 2)^2 (t^ the prompt embedding), mean over cutouts; Adam on z; clamp z
// to the codebook's per-channel range.
#pragma once
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "engine/optim.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "models/clip.h"
#include "models/clip_tokenizer.h"
#include "models/vqgan.h"

namespace mm {

// "text:weight:stop" (weight 1 and stop -inf when left out). A negative weight pushes the
// image away from the prompt; stop is a floor under the distance that stops the pull.
struct Prompt {
  std::string text;
  double weight = 1.0;
  double stop = -std::numeric_limits<double>::infinity();
};
// Splits "a|b:0.5|c:-1:0.9" at '|' and each part at its last one or two ':' when those are
// numbers (so "a photo: close-up" keeps its colon). Empty prompts are an error.
std::vector<Prompt> parse_prompts(const std::string& text);

// Spherical distance loss between image embeddings [N, E] and prompt embeddings [M, E]:
// |weight| * mean over (n, m) of d, d = 2 asin(|x^_n - e^_m| / 2)^2 * sign(weight), whose
// gradient is taken through max(d, stop) (the notebooks' replace_grad).
Tensor spherical_prompt_loss(const Tensor& image_embeds, const Tensor& prompt_embeds, double weight, double stop);

// ClampWithGrad((decoded + 1) / 2, 0, 1) or, with ClampRule::passthrough, a clamp whose
// backward is the identity.
enum class ClampRule { with_grad, passthrough };

struct CutoutOptions {
  int64_t cut_size = 224;  // CLIP's input resolution
  int64_t cutn = 32;
  double cut_pow = 1.0;
  bool augment = true;     // flips, small affine and perspective warps, colour jitter
  double noise_fac = 0.1;  // per-cutout Gaussian noise, std ~ U(0, noise_fac)
};
// image [1, 3, H, W] in [0, 1] -> [cutn, 3, cut_size, cut_size]. When the image is exactly
// cut_size square, cutn is 1 and augment/noise are off, this is the identity.
Tensor make_cutouts(const Tensor& image, const CutoutOptions& options, Generator& gen);

// mmgen's defaults. OpenAI-size models: 256x256, 300 steps, 32 cutouts (the settings of the
// VQGAN+CLIP notebooks). mm-mini (64x64 models trained by mm): 64x64, 120 steps, 8 cutouts,
// chosen so that a laptop CPU runs at least 5 steps per second (bench/RESULTS.md).
struct GenDefaults {
  int64_t width, height, steps, cutn;
  bool init_white;  // start from the encoded white canvas instead of random codes
};
inline GenDefaults gen_defaults(bool mini) {
  return mini ? GenDefaults{64, 64, 120, 8, false} : GenDefaults{256, 256, 300, 32, false};
}

struct VQGANCLIPOptions {
  int64_t width = 256, height = 256;  // multiples of the VQGAN's downsampling factor
  double lr = 0.1;
  double init_weight = 0.0;  // init_weight / 2 * mean((z - z_init)^2) is added to the loss
  ClampRule clamp = ClampRule::with_grad;
  CutoutOptions cutouts;
  uint64_t seed = 0;
};

class VQGANCLIP {
 public:
  VQGANCLIP(const VQGAN& vqgan, const ClipModel& clip, const ClipTokenizer& tokenizer, VQGANCLIPOptions options);

  void add_text_prompts(const std::string& prompts);  // "a|b:w|c:w:stop"
  void add_image_prompt(const Tensor& image /*[3, H, W] in [0, 1]*/, double weight, double stop);
  void add_noise_prompt(uint64_t seed, double weight);
  size_t prompt_count() const { return prompts_.size(); }

  void init_random();                                      // random codebook entries
  void init_from_image(const Tensor& image /*[3,H,W]*/, double noise = 0.0);  // encoded
  void init_from_latent(const Tensor& z /*[1, D, h, w]*/);

  // One optimisation step; returns the loss before the update.
  double step();
  // The current image [3, H, W] in [0, 1] (decoded from the quantised z).
  Tensor image() const;
  // The loss and d loss / d z of the current z without updating it (for tests).
  double loss_and_grad(Tensor* dloss_dz, Tensor* dloss_dimage = nullptr);
  const Tensor& z() const { return z_; }
  int64_t steps_done() const { return steps_; }

 private:
  struct PromptEmbed {
    Tensor embeds;  // [M, E]
    double weight, stop;
  };
  Tensor forward_loss(Tensor* image_out);
  void start_optimizer();

  const VQGAN& vqgan_;
  const ClipModel& clip_;
  const ClipTokenizer& tokenizer_;
  VQGANCLIPOptions options_;
  Generator gen_;
  std::vector<PromptEmbed> prompts_;
  Tensor z_, z_init_, z_min_, z_max_;
  std::unique_ptr<Adam> opt_;
  int64_t steps_ = 0;
};

}  // namespace mm
