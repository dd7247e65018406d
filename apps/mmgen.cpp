// apps/mmgen.cpp: text-to-image with VQGAN+CLIP (models/vqgan_clip.h).
//
//   mmgen "grinning cat"      (mm-mini's CLIP and VQGAN from models/mini/: 64x64, 120 steps)
//   mmgen "watercolor portrait of a teacher" --clip ViT-B-32.pt --vqgan last.ckpt [--vqgan-config model.yaml]
//         [--size 256x256] [--steps 300] [--lr 0.1] [--cutn 32] [--cut-pow 1] [--seed 0]
//         [--init-image F] [--init-noise X] [--init-weight W] [--image-prompt F[:w]]... [--noise-prompt SEED[:w]]...
//         [--save-every N] [--out out.png] [--device cpu|cuda|auto] [--precision fp32|bf16|fp16] [--threads N]
//
// Prompts: "text:weight:stop" separated by '|'. The PNG records the prompt and settings in
// an iTXt chunk. Ctrl-C saves the current image before exiting. Same seed, same device and
// same thread count give the same PNG, byte for byte.
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "apps/common/args.h"
#include "apps/common/image_io.h"
#include "apps/common/model_files.h"
#include "apps/common/progress.h"
#include "engine/cuda_ops.h"
#include "engine/mm.h"
#include "models/vqgan_clip.h"

using namespace mm;

namespace {

// The SIGINT handler only sets this flag (a lock-free atomic store is async-signal-safe); the
// loop checks it between steps. The handler resets itself, so a second Ctrl-C kills at once.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the SIGINT flag must be lock-free");
extern "C" void on_sigint(int) { g_interrupted.store(true); }
void catch_sigint() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  MM_CHECK(sigaction(SIGINT, &sa, nullptr) == 0, "mmgen: cannot install the Ctrl-C handler: ", std::strerror(errno));
}

// s in double quotes, with '"' and '\\' escaped (for the PNG's settings line)
std::string quoted(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + '"';
}

struct Args {
  std::string prompt, clip, model_config, vocab, vqgan, vqgan_config, out = "out.png", init_image, device = "auto",
                      precision = "fp32";
  int64_t width = 0, height = 0, steps = -1, cutn = 0, save_every = 0, threads = 0;  // 0/-1: the model's default
  double lr = 0.1, cut_pow = 1.0, init_noise = 0.0, init_weight = 0.0;
  uint64_t seed = 0;
  Device dev = Device::cpu;  // parsed from device
  cuda_ops::Precision prec = cuda_ops::Precision::fp32;  // parsed from precision
  bool augment = true;
  std::vector<std::string> image_prompts, noise_prompts;
};

int usage(FILE* f) {
  std::fprintf(f,
               "usage: mmgen \"PROMPT[:weight[:stop]][|PROMPT...]\" [--clip FILE] [--vqgan FILE] [options]\n"
               "  --clip FILE            CLIP weights (.pt, .safetensors, HF model.safetensors);\n"
               "                         default: mm-mini's clip_vit (models/mini/, 64x64)\n"
               "  --vqgan FILE           taming last.ckpt or .safetensors; default: mm-mini's vqgan\n"
               "  --model-config JSON    CLIP config override (found next to the weights when named <stem>.json)\n"
               "  --vocab FILE           bpe_simple_vocab_16e6.txt.gz (else $MM_VOCAB, next to --clip, ~/.cache/mm)\n"
               "  --vqgan-config model.yaml\n"
               "  --size WxH             --steps N         --lr X (0.1)   --seed N (0)\n"
               "  --cutn N               --cut-pow X (1.0) --no-augment (no flips, warps, colour jitter, noise)\n"
               "                         (size, steps, cutn: 64x64, 120, 8 with mm-mini; 256x256, 300, 32 otherwise)\n"
               "  --init-image F         --init-noise X    --init-weight W\n"
               "  --image-prompt F[:w]   --noise-prompt SEED[:w]   (repeatable)\n"
               "  --save-every N         --out FILE (out.png)      --threads N\n"
               "  --device cpu|cuda|auto (default auto: the GPU when present)\n"
               "  --precision fp32|bf16|fp16 (the GPU's GEMMs in 16 bits; needs cuda)\n");
  return f == stdout ? 0 : 2;
}

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      MM_CHECK(i + 1 < argc, "mmgen: option ", k, " needs a value");
      return argv[++i];
    };
    if (k == "--clip") a.clip = value();
    else if (k == "--model-config") a.model_config = value();
    else if (k == "--vocab") a.vocab = value();
    else if (k == "--vqgan") a.vqgan = value();
    else if (k == "--vqgan-config") a.vqgan_config = value();
    else if (k == "--out") a.out = value();
    else if (k == "--size") {
      const std::string v = value();
      const size_t x = v.find('x');
      MM_CHECK(x != std::string::npos, "mmgen: --size expects WxH, e.g. 256x256, got '", v, "'");
      a.width = apps::parse_int("mmgen", "--size", v.substr(0, x), 8, 8192);
      a.height = apps::parse_int("mmgen", "--size", v.substr(x + 1), 8, 8192);
    } else if (k == "--steps") a.steps = apps::parse_int("mmgen", k, value(), 0, 1000000);
    else if (k == "--lr") a.lr = apps::parse_double("mmgen", k, value());
    else if (k == "--cutn") a.cutn = apps::parse_int("mmgen", k, value(), 1, 4096);
    else if (k == "--cut-pow") a.cut_pow = apps::parse_double("mmgen", k, value());
    else if (k == "--seed") a.seed = static_cast<uint64_t>(apps::parse_int("mmgen", k, value(), 0, INT64_MAX));
    else if (k == "--init-image") a.init_image = value();
    else if (k == "--init-noise") a.init_noise = apps::parse_double("mmgen", k, value());
    else if (k == "--init-weight") a.init_weight = apps::parse_double("mmgen", k, value());
    else if (k == "--image-prompt") a.image_prompts.push_back(value());
    else if (k == "--noise-prompt") a.noise_prompts.push_back(value());
    else if (k == "--save-every") a.save_every = apps::parse_int("mmgen", k, value(), 0, 1000000);
    else if (k == "--threads") a.threads = apps::parse_int("mmgen", k, value(), 1, 1024);
    else if (k == "--device") a.device = value();
    else if (k == "--precision") a.precision = value();
    else if (k == "--no-augment") a.augment = false;
    else if (k == "--help" || k == "-h") std::exit(usage(stdout));
    else if (k.rfind("--", 0) == 0) throw Error(str_cat("mmgen: unknown option '", k, "' (see --help)"));
    else positional.push_back(k);
  }
  MM_CHECK(positional.size() == 1, "mmgen: expected one prompt argument (use '|' to combine prompts), got ",
           positional.size());
  a.prompt = positional[0];
  a.dev = apps::parse_device("mmgen", a.device);
  a.device = device_name(a.dev);  // auto resolved: what ran, for the records
  a.prec = cuda_ops::parse_precision(a.precision, "mmgen");
  MM_CHECK(a.prec == cuda_ops::Precision::fp32 || a.dev == Device::cuda, "mmgen: --precision ", a.precision,
           " needs --device cuda (the tensor cores); the CPU computes in fp32");
  return a;
}

// "value[:weight]" -> (value, weight)
std::pair<std::string, double> split_weight(const std::string& s) {
  const size_t c = s.rfind(':');
  if (c != std::string::npos) {
    char* end = nullptr;
    const double w = std::strtod(s.c_str() + c + 1, &end);
    if (end != s.c_str() + c + 1 && *end == '\0') return {s.substr(0, c), w};
  }
  return {s, 1.0};
}

std::string frame_name(const std::string& out, int64_t step) {
  const size_t dot = out.rfind('.');
  char num[32];
  std::snprintf(num, sizeof(num), "_%05lld", static_cast<long long>(step));
  return dot == std::string::npos ? out + num : out.substr(0, dot) + num + out.substr(dot);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) return usage(stderr);
    Args a = parse(argc, argv);
    if (a.threads > 0) set_num_threads(static_cast<int>(a.threads));
    parse_prompts(a.prompt);  // validates before the slow loads
    if (a.clip.empty()) a.clip = apps::default_model("clip_vit");
    if (a.vqgan.empty()) a.vqgan = apps::default_model("vqgan");

    ClipModel clip = apps::load_clip(a.clip, a.model_config);
    ClipTokenizer tok = apps::load_tokenizer(a.vocab, a.clip, clip.config().vocab_size);
    VQGAN vq = apps::load_vqgan(a.vqgan, a.vqgan_config);
    if (a.dev != Device::cpu) {
      clip = clip.to(a.dev);
      vq = vq.to(a.dev);
      // the GEMMs of CLIP and the VQGAN on the device, forward and backward
      clip.set_precision(a.prec);
      vq.set_precision(a.prec);
    } else {
      // Every step encodes cutouts through the frozen image tower and back: float32 weights
      // (a 16-bit file's are widened once, not in every backward) packed for the GEMM.
      clip = clip.to(DType::f32);
      clip.prepack("visual.");
    }
    // Small models (mm-mini) get small defaults.
    const GenDefaults d = gen_defaults(clip.config().image_resolution <= 64 && vq.config().resolution <= 64);
    if (a.width == 0) a.width = d.width, a.height = d.height;
    if (a.steps < 0) a.steps = d.steps;
    if (a.cutn == 0) a.cutn = d.cutn;
    const int64_t f = vq.config().downsample_factor();
    if (a.width % f || a.height % f) {
      const int64_t w = std::max(f, a.width / f * f), h = std::max(f, a.height / f * f);
      std::fprintf(stderr, "mmgen: --size %lldx%lld is not a multiple of the VQGAN's factor %lld; using %lldx%lld\n",
                   (long long)a.width, (long long)a.height, (long long)f, (long long)w, (long long)h);
      a.width = w, a.height = h;
    }
    VQGANCLIPOptions o;
    o.width = a.width;
    o.height = a.height;
    o.lr = a.lr;
    o.init_weight = a.init_weight;
    o.seed = a.seed;
    o.cutouts.cut_size = clip.config().image_resolution;
    o.cutouts.cutn = a.cutn;
    o.cutouts.cut_pow = a.cut_pow;
    o.cutouts.augment = a.augment;
    if (!a.augment) o.cutouts.noise_fac = 0.0;
    VQGANCLIP gen(vq, clip, tok, o);
    gen.add_text_prompts(a.prompt);
    for (const auto& ip : a.image_prompts) {
      auto [file, w] = split_weight(ip);
      gen.add_image_prompt(apps::load_image_rgb(file), w, -INFINITY);
    }
    for (const auto& np : a.noise_prompts) {
      auto [seed, w] = split_weight(np);
      gen.add_noise_prompt(static_cast<uint64_t>(apps::parse_int("mmgen", "--noise-prompt", seed, 0, INT64_MAX)), w);
    }
    if (!a.init_image.empty()) gen.init_from_image(apps::load_image_rgb(a.init_image), a.init_noise);
    else gen.init_random();
    // The steps only decode and encode images: the text tower and the encoder go (on the GPU,
    // their memory goes back to the driver).
    clip.release_text_tower();
    vq.release_encoder();
    cuda_ops::empty_cache();

    std::ostringstream settings;
    settings.precision(10);
    // Everything that decides the image (file options only when given).
    settings << "mmgen prompt=" << quoted(a.prompt) << " size=" << a.width << "x" << a.height << " steps=" << a.steps
             << " lr=" << a.lr << " cutn=" << a.cutn << " cut_pow=" << a.cut_pow << " seed=" << a.seed
             << " augment=" << (a.augment ? 1 : 0);
    if (!a.init_image.empty()) settings << " init_image=" << quoted(a.init_image) << " init_noise=" << a.init_noise;
    settings << " init_weight=" << a.init_weight;
    for (const auto& ip : a.image_prompts) settings << " image_prompt=" << quoted(ip);
    for (const auto& np : a.noise_prompts) settings << " noise_prompt=" << quoted(np);
    settings << " clip=" << quoted(a.clip);
    if (!a.model_config.empty()) settings << " model_config=" << quoted(a.model_config);
    if (!a.vocab.empty()) settings << " vocab=" << quoted(a.vocab);
    settings << " vqgan=" << quoted(a.vqgan);
    if (!a.vqgan_config.empty()) settings << " vqgan_config=" << quoted(a.vqgan_config);
    settings << " device=" << a.device << " precision=" << a.precision << " threads=" << num_threads();
    const std::vector<std::pair<std::string, std::string>> text = {{"Title", a.prompt}, {"parameters", settings.str()},
                                                                   {"Software", "mm (mmgen)"}};
    std::fprintf(stderr, "mmgen: \"%s\" %lldx%lld, %lld steps, cutn %lld, CLIP %s (%lldpx), %s, %d threads\n",
                 a.prompt.c_str(), (long long)a.width, (long long)a.height, (long long)a.steps, (long long)a.cutn,
                 a.clip.c_str(), (long long)clip.config().image_resolution, vq.config().str().c_str(), num_threads());
    catch_sigint();
    apps::Progress progress(a.steps);
    double loss = NAN;
    for (int64_t i = 1; i <= a.steps && !g_interrupted; ++i) {
      loss = gen.step();
      MM_CHECK(std::isfinite(loss), "mmgen: the loss is ", loss, " at step ", gen.steps_done(),
               a.prec == cuda_ops::Precision::fp16 ? " (with --precision fp16, activations beyond 65504 overflow: try bf16)"
                                                   : "");
      char extra[64];
      std::snprintf(extra, sizeof(extra), "loss %.4f", loss);
      progress.update(i, extra);
      if (a.save_every > 0 && i % a.save_every == 0) apps::save_png(frame_name(a.out, i), gen.image(), text);
    }
    apps::save_png(a.out, gen.image(), text);
    if (g_interrupted && gen.steps_done() < a.steps) {
      progress.finish_line();
      std::fprintf(stderr, "mmgen: interrupted after %lld steps; saved %s\n", (long long)gen.steps_done(), a.out.c_str());
      return 130;
    }
    std::printf("wrote %s (loss %.4f after %lld steps)\n", a.out.c_str(), loss, (long long)gen.steps_done());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
