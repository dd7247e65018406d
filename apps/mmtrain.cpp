// apps/mmtrain.cpp: trains mm-mini's models on the emoji pairs (data/fetch_emoji.sh, mmdata).
//
//   mmtrain clip  --data data/emoji/pairs.jsonl --vocab models/mini/bpe.txt.gz --vision vit|resnet
//                 --out runs/clip-vit [--steps N] [--batch B] [--lr X] [--warmup N] [--seed S]
//                 [--weight-decay X] [--clip-grad X] [--val-every N] [--ckpt-every N]
//                 [--resume runs/clip-vit/checkpoint.safetensors] [--limit N] [--stop-after N]
//   mmtrain vqgan --data data/emoji/pairs.jsonl --out runs/vqgan [--steps N] [--batch B] ...
//                 [--disc-start N] [--disc-weight X] [--disc-fixed] [--perceptual CLIP.safetensors]
//   mmtrain eval-clip --data PAIRS --model M.safetensors [--vocab V] [--train [--misses OUT.tsv]]
//   mmtrain eval-vqgan --data PAIRS --model M.safetensors [--grid OUT.png]
//   mmtrain export --resume CKPT --out M.safetensors   (a checkpoint's model, fp16, as shipped)
//   mmtrain plot --model LOG.csv --grid OUT.png         (the loss curve of a stopped run)
//   mmtrain eval-gen --data PAIRS [--clip C] [--vqgan V] [--judge J] [--grid OUT.png] [--seed S]
//                 (defaults: mm-mini's clip_vit, vqgan and clip_resnet as the judge)
//
// Every run writes to its --out folder: checkpoint.safetensors (resumable), model.safetensors
// (the weights alone, fp16), config, log.csv, loss.png and metrics.json.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "apps/common/args.h"
#include "apps/common/model_files.h"
#include "engine/parallel.h"
#include "models/clip_tokenizer.h"
#include "train/checkpoint.h"
#include "train/clip_trainer.h"
#include "train/common.h"
#include "train/gen_eval.h"
#include "train/vqgan_trainer.h"
#include "weights_tools/safetensors.h"

using namespace mm;

namespace {

int usage(FILE* f) {
  std::fprintf(f,
               "usage:\n"
               "  mmtrain clip  --data PAIRS.jsonl --vocab BPE --vision vit|resnet --out DIR [options]\n"
               "  mmtrain vqgan --data PAIRS.jsonl --out DIR [options]\n"
               "  mmtrain eval-clip  --data PAIRS.jsonl --model M.safetensors [--vocab BPE] [--train [--misses OUT.tsv]]\n"
               "  mmtrain eval-vqgan --data PAIRS.jsonl --model M.safetensors [--grid OUT.png]\n"
               "  mmtrain export --resume CHECKPOINT --out MODEL.safetensors\n"
               "  mmtrain plot --model LOG.csv --grid OUT.png\n"
               "  mmtrain eval-gen   --data PAIRS.jsonl [--clip C] [--vqgan V] [--judge J] [--grid OUT.png]\n"
               "                     [--seed S] [--gen-steps N] [--gen-cutn N] [--gen-lr X] [--gen-init random|white]\n"
               "options: --steps N --batch B --lr X --warmup N --seed S --weight-decay X --clip-grad X\n"
               "         --val-every N --ckpt-every N --resume CKPT --limit N --stop-after N --threads N\n"
               "         --final-lr-ratio X --max-shift N --quiet\n"
               "  clip:  --cluster-variants (an emoji's skin tones side by side in a batch)\n"
               "         --hard-negatives K (batches of K-emoji clusters that the current model confuses)\n"
               "         --init MODEL (start from an exported model's weights: fresh optimiser, step 0)\n"
               "  vqgan: --disc-start N --disc-weight X (times taming's adaptive weight; --disc-fixed: not) --codebook N --perceptual CLIP --perceptual-weight X\n"
               "PAIRS.jsonl comes from: bash data/fetch_emoji.sh && mmdata build --src data/emoji --out "
               "data/emoji/pairs.jsonl\n");
  return f == stdout ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr);
  const std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help") return usage(stdout);
  try {
    const char* app = "mmtrain";
    train::ClipTrainOptions co;
    train::VQGANTrainOptions vo;
    std::string vision, model, grid, misses, clip_path, vqgan_path, judge_path;
    int64_t gen_steps = -1, gen_cutn = -1;
    double gen_lr = -1;
    int gen_init = -1;
    bool with_train = false;
    for (int i = 2; i < argc; ++i) {
      const std::string k = argv[i];
      auto value = [&]() -> std::string {
        MM_CHECK(i + 1 < argc, "mmtrain: option ", k, " needs a value");
        return argv[++i];
      };
      auto integer = [&](int64_t lo, int64_t hi) { return apps::parse_int(app, k, value(), lo, hi); };
      auto number = [&]() { return apps::parse_double(app, k, value()); };
      if (k == "--data") co.data = vo.data = value();
      else if (k == "--vocab") co.vocab = value();
      else if (k == "--vision") vision = value();
      else if (k == "--out") co.out_dir = vo.out_dir = value();
      else if (k == "--resume") co.resume = vo.resume = value();
      else if (k == "--init") co.init = value();
      else if (k == "--model") model = value();
      else if (k == "--grid") grid = value();
      else if (k == "--misses") misses = value();
      else if (k == "--clip") clip_path = value();
      else if (k == "--vqgan") vqgan_path = value();
      else if (k == "--judge") judge_path = value();
      else if (k == "--gen-steps") gen_steps = integer(0, 100000);
      else if (k == "--gen-cutn") gen_cutn = integer(1, 4096);
      else if (k == "--gen-lr") gen_lr = number();
      else if (k == "--gen-init") gen_init = value() == "white" ? 1 : 0;
      else if (k == "--train") with_train = true;
      else if (k == "--steps") co.steps = vo.steps = integer(1, 100000000);
      else if (k == "--batch") co.batch = vo.batch = integer(1, 65536);
      else if (k == "--warmup") co.warmup = vo.warmup = integer(0, 100000000);
      else if (k == "--lr") co.lr = vo.lr = number();
      else if (k == "--final-lr-ratio") co.final_lr_ratio = vo.final_lr_ratio = number();
      else if (k == "--weight-decay") co.weight_decay = vo.weight_decay = number();
      else if (k == "--clip-grad") co.clip_grad = vo.clip_grad = number();
      else if (k == "--max-shift") co.max_shift = vo.max_shift = integer(0, 32);
      else if (k == "--val-every") co.val_every = vo.val_every = integer(0, 100000000);
      else if (k == "--ckpt-every") co.ckpt_every = vo.ckpt_every = integer(0, 100000000);
      else if (k == "--limit") co.limit = vo.limit = integer(0, 100000000);
      else if (k == "--stop-after") co.stop_after = vo.stop_after = integer(0, 100000000);
      else if (k == "--seed") co.seed = vo.seed = static_cast<uint64_t>(integer(0, INT64_MAX));
      else if (k == "--disc-start") vo.disc_start = integer(0, 100000000);
      else if (k == "--disc-weight") vo.disc_weight = number();
      else if (k == "--disc-fixed") vo.disc_adaptive = false;
      else if (k == "--codebook") vo.config.n_embed = integer(2, 1 << 20);
      else if (k == "--perceptual") vo.perceptual_clip = value();
      else if (k == "--perceptual-weight") vo.perceptual_weight = number();
      else if (k == "--threads") set_num_threads(static_cast<int>(integer(1, 1024)));
      else if (k == "--quiet") co.quiet = vo.quiet = true;
      else if (k == "--cluster-variants") co.cluster_variants = true;
      else if (k == "--hard-negatives") co.hard_negatives = integer(2, 4096);
      else throw Error(str_cat("mmtrain: unknown option '", k, "'"));
    }
    if (cmd == "export") {
      MM_CHECK(!co.resume.empty() && !co.out_dir.empty(), "mmtrain export: needs --resume CHECKPOINT and --out MODEL.safetensors");
      const train::LoadedCheckpoint ck = train::load_checkpoint(co.resume);
      const std::string kind = ck.meta("kind");
      MM_CHECK(kind == "mmtrain clip" || kind == "mmtrain vqgan", "mmtrain export: '", co.resume, "' is a '", kind,
               "' checkpoint; expected mmtrain clip or mmtrain vqgan");
      train::NamedTensors model;
      for (const auto& [k, t] : ck.model.tensors)
        if (k.rfind("disc.", 0) != 0) model.emplace_back(k, t);  // the VQGAN's discriminator stays behind
      train::save_model(co.out_dir, model, /*fp16=*/true,
                        {{"kind", kind == "mmtrain clip" ? "mm-mini clip" : "mm-mini vqgan"}, {"config", ck.meta("config")},
                         {"step", std::to_string(ck.step)}});
      std::printf("wrote %s (step %lld)\n", co.out_dir.c_str(), static_cast<long long>(ck.step));
      return 0;
    }
    if (cmd == "plot") {  // the loss curve of a run's log.csv (written at the end of a run; for stopped runs)
      MM_CHECK(!model.empty() && !grid.empty(), "mmtrain plot: needs --model LOG.csv and --grid OUT.png");
      std::ifstream in(model);
      std::string header;
      std::getline(in, header);
      const bool vq = header.find("val_psnr") != std::string::npos;
      train::plot_log(model, vq ? 3 : 2, vq ? 7 : 5, vq ? "val psnr" : "val loss", grid);
      return 0;
    }
    MM_CHECK(!co.data.empty(), "mmtrain ", cmd, ": --data PAIRS.jsonl is required");
    if (cmd == "clip") {
      MM_CHECK(!co.vocab.empty(), "mmtrain clip: --vocab BPE is required (mmdata bpe writes one)");
      MM_CHECK(!co.out_dir.empty(), "mmtrain clip: --out DIR is required");
      MM_CHECK(!vision.empty(), "mmtrain clip: --vision vit|resnet is required");
      co.config = train::mini_clip_config(vision, ClipTokenizer::from_bpe_file(co.vocab).vocab_size());
      train::ClipTrainResult r = train::train_clip(co);
      if (co.stop_after < 0 || co.stop_after >= co.steps) std::printf("%s\n", r.final_metrics.json().c_str());
      return 0;
    }
    if (cmd == "vqgan") {
      MM_CHECK(!vo.out_dir.empty(), "mmtrain vqgan: --out DIR is required");
      train::VQGANTrainResult r = train::train_vqgan(vo);
      if (vo.stop_after < 0 || vo.stop_after >= vo.steps) std::printf("%s\n", r.final_metrics.json().c_str());
      return 0;
    }
    if (cmd == "eval-clip") {
      MM_CHECK(!model.empty(), "mmtrain eval-clip: --model M.safetensors is required");
      ClipModel m = apps::load_clip(model, "");
      const ClipTokenizer tok = apps::load_tokenizer(co.vocab, model, m.config().vocab_size);
      std::vector<data::EmojiPair> tr, va;
      for (const auto& p : data::read_pairs_jsonl(co.data)) (p.split == data::Split::train ? tr : va).push_back(p);
      MM_CHECK(misses.empty() || with_train, "mmtrain eval-clip: --misses needs --train (it lists the training images that missed)");
      train::ClipMetrics mt = train::evaluate_clip(m, tok, va, with_train ? &tr : nullptr);
      if (!misses.empty()) {
        std::ofstream f(misses);
        MM_CHECK(f.good(), "mmtrain eval-clip: cannot write --misses '", misses, "'");
        f << "style\ttruth\tpredicted\n";
        for (const auto& x : mt.train_misses) f << x.style << '\t' << x.truth << '\t' << x.predicted << '\n';
      }
      std::printf("%s\n", mt.json().c_str());
      return 0;
    }
    if (cmd == "eval-vqgan") {
      MM_CHECK(!model.empty(), "mmtrain eval-vqgan: --model M.safetensors is required");
      std::vector<data::EmojiPair> va;
      for (const auto& p : data::read_pairs_jsonl(vo.data))
        if (p.split == data::Split::val) va.push_back(p);
      VQGAN vq = VQGAN::load(model);
      train::VQGANMetrics mt = train::evaluate_vqgan(vq, va, grid);
      std::printf("%s\n", mt.json().c_str());
      return 0;
    }
    if (cmd == "eval-gen") {
      if (clip_path.empty()) clip_path = apps::default_model("clip_vit");
      if (vqgan_path.empty()) vqgan_path = apps::default_model("vqgan");
      if (judge_path.empty()) judge_path = apps::default_model("clip_resnet");
      ClipModel clip = apps::load_clip(clip_path, "").to(DType::f32);  // as mmgen does: float32, packed
      clip.prepack("visual.");
      ClipTokenizer tok = apps::load_tokenizer(co.vocab, clip_path, clip.config().vocab_size);
      ClipModel judge = apps::load_clip(judge_path, "");
      ClipTokenizer jtok = apps::load_tokenizer(co.vocab, judge_path, judge.config().vocab_size);
      VQGAN vq = apps::load_vqgan(vqgan_path, "");
      train::GenEvalOptions go;
      go.seed = co.seed;
      go.steps = gen_steps;
      go.cutn = gen_cutn;
      go.lr = gen_lr;
      go.init_white = gen_init;
      go.grid_png = grid;
      train::GenEvalResult r = train::evaluate_generation(vq, clip, tok, judge, jtok, data::read_pairs_jsonl(co.data), go);
      std::printf("%s\n", r.json().c_str());
      return 0;
    }
    std::fprintf(stderr, "mmtrain: unknown command '%s'\n", cmd.c_str());
    return usage(stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
