// train/clip_trainer.cpp: see clip_trainer.h.
#include "train/clip_trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>
#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "engine/ops/loss.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape_ops.h"
#include "engine/optim.h"
#include "train/checkpoint.h"
#include "train/common.h"
#include "train/schedule.h"
#include "weights_tools/safetensors.h"

namespace mm::train {

namespace {

// CLIP's symmetric loss over a [B, B] logit matrix whose diagonal holds the matching pairs.
Tensor clip_loss(const Tensor& logits) {
  const int64_t B = logits.size(0);
  std::vector<int64_t> ids(static_cast<size_t>(B));
  std::iota(ids.begin(), ids.end(), 0);
  Tensor target = Tensor::from_vector(ids, {B});
  return (cross_entropy(logits, target) + cross_entropy(logits.t(), target)) * 0.5;
}

Tensor scaled_logits(const ClipModel& m, const Tensor& img, const Tensor& txt) {
  return matmul(normalize(img, -1), normalize(txt, -1).t()) * exp(m.weight("logit_scale"));
}

// Embeds the images of `pairs` in batches: [N, E].
Tensor embed_images(const ClipModel& m, const std::vector<data::EmojiPair>& pairs, int64_t batch) {
  NoGradGuard ng;
  data::EmojiDataset ds(pairs, m.config().image_resolution);
  std::vector<Tensor> out;
  for (int64_t i = 0; i < ds.size(); i += batch) {
    std::vector<int64_t> idx;
    for (int64_t j = i; j < std::min(ds.size(), i + batch); ++j) idx.push_back(j);
    out.push_back(m.encode_image(clip_normalize_pixels(ds.load_batch(idx))).detach());
  }
  return cat(out, 0);
}

Tensor embed_texts(const ClipModel& m, const ClipTokenizer& tok, const std::vector<std::string>& texts, int64_t batch) {
  NoGradGuard ng;
  std::vector<Tensor> out;
  for (size_t i = 0; i < texts.size(); i += static_cast<size_t>(batch)) {
    std::vector<std::string> chunk(texts.begin() + static_cast<long>(i),
                                   texts.begin() + static_cast<long>(std::min(texts.size(), i + static_cast<size_t>(batch))));
    out.push_back(m.encode_text(tok.tokenize_batch(chunk, m.config().context_length, ClipTokenizer::Truncate::yes)).detach());
  }
  return cat(out, 0);
}

// Rank of `target` in row r of the similarity matrix (0 = best): how many entries beat it.
// Ties count against the target, so a constant model scores no hits.
int64_t rank_of(const float* row, int64_t n, int64_t target) {
  int64_t r = 0;
  for (int64_t j = 0; j < n; ++j)
    if (j != target && row[j] >= row[target]) ++r;
  return r;
}

// The batch order of a hard-negative epoch (ClipTrainOptions::hard_negatives): clusters of k
// training emoji, each one's seed followed by the emoji whose captions its image ranks highest.
std::vector<int64_t> confusion_order(ClipModel& model, const ClipTokenizer& tok, const std::vector<data::EmojiPair>& pairs,
                                     const std::vector<std::vector<int64_t>>& groups, int64_t k, int64_t epoch,
                                     uint64_t seed) {
  const int64_t G = static_cast<int64_t>(groups.size());
  std::vector<data::EmojiPair> reps;
  std::vector<std::string> caps;
  for (const auto& grp : groups) {
    reps.push_back(pairs[static_cast<size_t>(grp[static_cast<size_t>(epoch % static_cast<int64_t>(grp.size()))])]);
    caps.push_back(reps.back().label);
  }
  std::vector<float> s;
  {
    NoGradGuard ng;
    model.set_training(false);
    Tensor img = normalize(embed_images(model, reps, 256), -1);
    Tensor txt = normalize(embed_texts(model, tok, caps, 256), -1);
    s = matmul(img, txt.t()).contiguous().to_vector<float>();  // [G, G]: image g against caption j
  }
  // Each emoji's strongest confusers (a few more than k, since some will be placed already).
  const int64_t M = std::min<int64_t>(G - 1, 4 * k);
  std::vector<std::vector<int64_t>> near(static_cast<size_t>(G));
  std::vector<int64_t> cand(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; ++g) {
    const float* row = &s[static_cast<size_t>(g * G)];
    std::iota(cand.begin(), cand.end(), 0);
    std::swap(cand[static_cast<size_t>(g)], cand.back());  // g itself is not a negative
    std::partial_sort(cand.begin(), cand.begin() + M, cand.end() - 1,
                      [&](int64_t a, int64_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    near[static_cast<size_t>(g)].assign(cand.begin(), cand.begin() + M);
  }
  std::vector<int64_t> order;
  std::vector<char> placed(static_cast<size_t>(G), 0);
  for (int64_t g : permutation(G, step_seed(seed, epoch, 5))) {
    if (placed[static_cast<size_t>(g)]) continue;
    placed[static_cast<size_t>(g)] = 1;
    order.push_back(g);
    int64_t n = 1;
    for (int64_t j : near[static_cast<size_t>(g)]) {
      if (n == k) break;
      if (placed[static_cast<size_t>(j)]) continue;
      placed[static_cast<size_t>(j)] = 1;
      order.push_back(j);
      ++n;
    }
  }
  return order;
}

std::string join_ints(const std::vector<int64_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}

}  // namespace

ClipConfig mini_clip_config(const std::string& vision, int64_t vocab_size) {
  ClipConfig c;
  c.embed_dim = 128;
  c.image_resolution = 64;
  c.context_length = 24;  // the longest emoji label is 19 ids with SOT and EOT
  c.vocab_size = vocab_size;
  c.transformer_width = 128;
  c.transformer_heads = 4;
  c.transformer_layers = 4;
  c.activation = ClipActivation::quick_gelu;
  if (vision == "vit") {
    c.vision = ClipVision::vit;
    c.vision_patch_size = 8;
    c.vision_width = 128;
    c.vision_layers = {4};
    c.vision_heads = 4;
  } else if (vision == "resnet") {
    c.vision = ClipVision::resnet;
    c.vision_patch_size = 0;
    c.vision_width = 16;
    c.vision_layers = {1, 1, 1, 1};
    c.vision_heads = 8;  // CLIP's rule: width * 32 / 64
  } else {
    throw Error(str_cat("[mmtrain] unknown vision tower '", vision, "' (expected vit or resnet)"));
  }
  return c;
}

std::string ClipMetrics::json() const {
  nlohmann::ordered_json j;
  j["val_images"] = val_images;
  j["val_captions"] = val_captions;
  j["val_loss"] = val_loss;
  j["t2i_recall5"] = t2i_recall5;
  j["search_top5"] = search_top5;
  j["zeroshot_top1"] = zeroshot_top1;
  j["zeroshot_top5"] = zeroshot_top5;
  for (const auto& [s, v] : train_top1_by_style) j["train_top1_" + s] = v;
  for (const auto& [s, n] : train_images_by_style) j["train_images_" + s] = n;
  return j.dump(1);
}

ClipMetrics evaluate_clip(const ClipModel& model, const ClipTokenizer& tok, const std::vector<data::EmojiPair>& val,
                          const std::vector<data::EmojiPair>* train, int64_t batch) {
  MM_CHECK(!val.empty(), "[evaluate_clip] no held-out pairs");
  ClipMetrics m;
  // Distinct captions, and each pair's caption index.
  auto captions_of = [](const std::vector<data::EmojiPair>& pairs, std::vector<std::string>& caps) {
    std::map<std::string, int64_t> index;
    std::vector<int64_t> of;
    for (const auto& p : pairs) {
      auto [it, fresh] = index.emplace(p.label, static_cast<int64_t>(caps.size()));
      if (fresh) caps.push_back(p.label);
      of.push_back(it->second);
    }
    return of;
  };
  std::vector<std::string> caps;
  const std::vector<int64_t> cap_of = captions_of(val, caps);
  const int64_t N = static_cast<int64_t>(val.size()), C = static_cast<int64_t>(caps.size());
  m.val_images = N;
  m.val_captions = C;
  NoGradGuard ng;
  Tensor img = normalize(embed_images(model, val, batch), -1);                 // [N, E]
  Tensor txt = normalize(embed_texts(model, tok, caps, batch), -1);            // [C, E]
  const std::vector<float> i2t = matmul(img, txt.t()).contiguous().to_vector<float>();  // [N, C]
  const std::vector<float> t2i = matmul(txt, img.t()).contiguous().to_vector<float>();  // [C, N]
  int64_t z1 = 0, z5 = 0, r5 = 0, s5 = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t r = rank_of(&i2t[static_cast<size_t>(i * C)], C, cap_of[static_cast<size_t>(i)]);
    z1 += r < 1, z5 += r < 5;
    r5 += rank_of(&t2i[static_cast<size_t>(cap_of[static_cast<size_t>(i)] * N)], N, i) < 5;
  }
  for (int64_t c = 0; c < C; ++c) {
    const float* row = &t2i[static_cast<size_t>(c * N)];
    std::vector<int64_t> order(static_cast<size_t>(N));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + std::min<int64_t>(5, N), order.end(),
                      [&](int64_t a, int64_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    bool hit = false;
    for (int64_t k = 0; k < std::min<int64_t>(5, N); ++k) hit |= cap_of[static_cast<size_t>(order[static_cast<size_t>(k)])] == c;
    s5 += hit;
  }
  m.zeroshot_top1 = static_cast<double>(z1) / N;
  m.zeroshot_top5 = static_cast<double>(z5) / N;
  m.t2i_recall5 = static_cast<double>(r5) / N;
  m.search_top5 = static_cast<double>(s5) / C;
  // CLIP's loss per style: images of one style against their own captions.
  std::map<std::string, std::vector<int64_t>> by_style;
  for (int64_t i = 0; i < N; ++i) by_style[val[static_cast<size_t>(i)].style].push_back(i);
  double loss = 0;
  for (const auto& [style, rows] : by_style) {
    std::vector<int64_t> tcols;
    for (int64_t i : rows) tcols.push_back(cap_of[static_cast<size_t>(i)]);
    const int64_t n = static_cast<int64_t>(rows.size());
    Tensor a = index_select(img, 0, Tensor::from_vector(rows, {n}));
    Tensor b = index_select(txt, 0, Tensor::from_vector(tcols, {n}));
    loss += clip_loss(matmul(a, b.t()) * std::exp(model.weight("logit_scale").item())).item();
  }
  m.val_loss = loss / static_cast<double>(by_style.size());
  if (train && !train->empty()) {
    std::vector<std::string> tcaps;
    const std::vector<int64_t> tcap_of = captions_of(*train, tcaps);
    Tensor timg = normalize(embed_images(model, *train, batch), -1);
    Tensor ttxt = normalize(embed_texts(model, tok, tcaps, batch), -1);
    const int64_t TN = timg.size(0), TC = ttxt.size(0);
    const std::vector<float> s = matmul(timg, ttxt.t()).contiguous().to_vector<float>();
    std::map<std::string, int64_t> hits;
    for (int64_t i = 0; i < TN; ++i) {
      const std::string& style = (*train)[static_cast<size_t>(i)].style;
      ++m.train_images_by_style[style];
      const float* row = &s[static_cast<size_t>(i * TC)];
      const int64_t truth = tcap_of[static_cast<size_t>(i)];
      if (rank_of(row, TC, truth) == 0) {
        ++hits[style];
      } else {
        int64_t best = truth == 0 ? 1 : 0;  // the caption ranked first among the others
        for (int64_t j = 0; j < TC; ++j)
          if (j != truth && row[j] > row[best]) best = j;
        m.train_misses.push_back({style, tcaps[static_cast<size_t>(truth)], tcaps[static_cast<size_t>(best)]});
      }
    }
    for (const auto& [style, n] : m.train_images_by_style)
      m.train_top1_by_style[style] = static_cast<double>(hits[style]) / static_cast<double>(n);
  }
  return m;
}

ClipModel load_exported_clip(const std::string& path, const std::string& who) {
  const TensorFile f = load_safetensors(path);
  auto it = f.metadata.find("config");
  MM_CHECK(it != f.metadata.end(), who, " '", path, "' has no 'config' metadata (expected a model written by mmtrain)");
  return ClipModel::load(f, clip_config_from_json(it->second, path, infer_clip_config(f)));
}

ClipTrainResult train_clip(const ClipTrainOptions& o) {
  MM_CHECK(o.batch >= 2, "[mmtrain clip] --batch must be at least 2 (contrastive), got ", o.batch);
  MM_CHECK(o.steps >= 1, "[mmtrain clip] --steps must be positive, got ", o.steps);
  MM_CHECK(o.hard_negatives == 0 || o.hard_negatives >= 2, "[mmtrain clip] --hard-negatives must be at least 2 (a cluster of one has no negative), got ",
           o.hard_negatives);
  make_dir(o.out_dir);
  const ClipTokenizer tok = ClipTokenizer::from_bpe_file(o.vocab);
  const std::vector<data::EmojiPair> all = data::read_pairs_jsonl(o.data);
  std::vector<data::EmojiPair> train_pairs, val_pairs;
  for (const auto& p : all) (p.split == data::Split::train ? train_pairs : val_pairs).push_back(p);
  // Training groups: one per emoji (hexcode), holding its pairs in every style.
  std::vector<std::vector<int64_t>> groups;
  {
    std::map<std::string, int64_t> g;
    for (int64_t i = 0; i < static_cast<int64_t>(train_pairs.size()); ++i) {
      auto [it, fresh] = g.emplace(train_pairs[static_cast<size_t>(i)].hexcode, static_cast<int64_t>(groups.size()));
      if (fresh) groups.emplace_back();
      groups[static_cast<size_t>(it->second)].push_back(i);
    }
  }
  if (o.limit > 0 && o.limit < static_cast<int64_t>(groups.size())) {
    groups.resize(static_cast<size_t>(o.limit));
    std::vector<data::EmojiPair> kept;
    for (auto& grp : groups)
      for (auto& i : grp) {
        kept.push_back(train_pairs[static_cast<size_t>(i)]);
        i = static_cast<int64_t>(kept.size()) - 1;
      }
    train_pairs = kept;
    if (val_pairs.size() > static_cast<size_t>(4 * o.limit)) val_pairs.resize(static_cast<size_t>(4 * o.limit));
  }
  const int64_t G = static_cast<int64_t>(groups.size());
  // Families: the groups that share a base emoji (its skin tones and combinations).
  std::vector<std::vector<int64_t>> families;
  {
    std::map<std::string, int64_t> f;
    for (int64_t g = 0; g < G; ++g) {
      const std::string& base = train_pairs[static_cast<size_t>(groups[static_cast<size_t>(g)][0])].base;
      auto [it, fresh] = f.emplace(base, static_cast<int64_t>(families.size()));
      if (fresh) families.emplace_back();
      families[static_cast<size_t>(it->second)].push_back(g);
    }
  }
  MM_CHECK(G >= 2, "[mmtrain clip] '", o.data, "' has ", G, " training emoji; need at least 2");
  const int64_t B = std::min(o.batch, G), per_epoch = G / B;
  MM_CHECK(tok.vocab_size() == o.config.vocab_size, "[mmtrain clip] the vocabulary '", o.vocab, "' has ",
           tok.vocab_size(), " ids but the model config says vocab_size ", o.config.vocab_size);
  data::EmojiDataset train_ds(train_pairs, o.config.image_resolution);

  // Model and optimisers (weight decay on matrices, none on gains, biases, scalars).
  ClipModel model;
  int64_t start = 0;
  LoadedCheckpoint ck;
  MM_CHECK(o.resume.empty() || o.init.empty(), "[mmtrain clip] --init and --resume exclude each other");
  if (!o.resume.empty()) {
    ck = load_checkpoint(o.resume);
    start = ck.step;
    model = ClipModel::load(ck.model, o.config);
  } else if (!o.init.empty()) {
    model = load_exported_clip(o.init, "[mmtrain clip] --init");
    const std::string want = clip_config_to_json(o.config), have = clip_config_to_json(model.config());
    MM_CHECK(have == want, "[mmtrain clip] --init '", o.init, "' has config ", have, " but this run's is ", want);
  } else {
    model = ClipModel::init(o.config, o.seed);
  }
  model.set_trainable(true);
  std::vector<Tensor> decay, no_decay;
  for (const auto& [k, t] : model.named_parameters()) (t.dim() >= 2 ? decay : no_decay).push_back(t);
  AdamOptions ao;
  ao.lr = o.lr;
  ao.beta1 = 0.9;
  ao.beta2 = 0.98;
  ao.eps = 1e-6;
  ao.weight_decay = o.weight_decay;
  AdamW opt_decay(decay, ao);
  ao.weight_decay = 0;
  AdamW opt_plain(no_decay, ao);
  if (!o.resume.empty()) {
    ck.restore("opt_decay", opt_decay);
    ck.restore("opt_plain", opt_plain);
    ck.model.tensors.clear();
  }
  std::vector<Tensor> params = decay;
  params.insert(params.end(), no_decay.begin(), no_decay.end());
  const LrSchedule sched{o.lr, o.warmup, o.steps, o.final_lr_ratio};
  const std::string config_json = clip_config_to_json(o.config);
  std::vector<int64_t> perm;
  int64_t perm_epoch = -1;
  auto save_ck = [&](int64_t step) {
    std::map<std::string, std::string> meta = {{"kind", "mmtrain clip"}, {"config", config_json}, {"seed", std::to_string(o.seed)}};
    if (o.hard_negatives > 0) {  // a hard-negative order depends on the weights at the epoch's start
      meta["batch_order_epoch"] = std::to_string(perm_epoch);
      meta["batch_order"] = join_ints(perm);
    }
    save_checkpoint(o.out_dir + "/checkpoint.safetensors", model.named_tensors(),
                    {{"opt_decay", &opt_decay}, {"opt_plain", &opt_plain}}, step, meta);
  };
  if (o.hard_negatives > 0 && !o.resume.empty() && ck.metadata.count("batch_order")) {
    perm_epoch = std::stoll(ck.meta("batch_order_epoch"));
    perm.clear();
    std::stringstream ss(ck.meta("batch_order"));
    for (std::string x; std::getline(ss, x, ',');) perm.push_back(std::stoll(x));
    MM_CHECK(static_cast<int64_t>(perm.size()) == G, "[mmtrain clip] '", o.resume, "': its batch order holds ", perm.size(),
             " emoji, this run has ", G);
  }

  ClipTrainResult res;
  prepare_log(o.out_dir + "/log.csv", "step,lr,loss,grad_norm,logit_scale,val_loss,t2i_recall5,zeroshot_top5", start);
  std::ofstream log(o.out_dir + "/log.csv", std::ios::app);
  // The held-out numbers (with the per-style training accuracy when with_train: the final pass).
  auto validate = [&](int64_t step, bool with_train) {
    model.set_training(false);
    ClipMetrics vm = evaluate_clip(model, tok, val_pairs, with_train ? &train_pairs : nullptr);
    res.val_loss.emplace_back(step, vm.val_loss);
    log << step << ",,,,," << vm.val_loss << "," << vm.t2i_recall5 << "," << vm.zeroshot_top5 << "\n" << std::flush;
    if (!o.quiet)
      std::fprintf(stderr, "\n[val @%lld] loss %.4f  t2i R@5 %.3f  zero-shot top-5 %.3f  top-1 %.3f\n",
                   static_cast<long long>(step), vm.val_loss, vm.t2i_recall5, vm.zeroshot_top5, vm.zeroshot_top1);
    return vm;
  };

  const int64_t end = o.stop_after >= 0 ? std::min(o.steps, o.stop_after) : o.steps;
  StepReporter report(start, end, B, o.quiet);
  for (int64_t step = start; step < end; ++step) {
    const int64_t epoch = step / per_epoch, slot = step % per_epoch;
    if (epoch != perm_epoch) {
      perm_epoch = epoch;
      if (o.hard_negatives > 0) {
        perm = confusion_order(model, tok, train_pairs, groups, o.hard_negatives, epoch, o.seed);
      } else if (!o.cluster_variants) {
        perm = permutation(G, step_seed(o.seed, epoch, 1));
      } else {
        perm.clear();
        const std::vector<int64_t> fam_order = permutation(static_cast<int64_t>(families.size()), step_seed(o.seed, epoch, 3));
        for (int64_t f : fam_order) {
          const std::vector<int64_t>& members = families[static_cast<size_t>(f)];
          const std::vector<int64_t> inner =
              permutation(static_cast<int64_t>(members.size()), step_seed(o.seed, epoch * 1000003 + f, 4));
          for (int64_t k : inner) perm.push_back(members[static_cast<size_t>(k)]);
        }
      }
    }
    Generator gen(step_seed(o.seed, step, 2));
    std::vector<int64_t> idx;
    std::vector<std::string> texts;
    for (int64_t b = 0; b < B; ++b) {
      const auto& grp = groups[static_cast<size_t>(perm[static_cast<size_t>(slot * B + b)])];
      const int64_t i = grp[static_cast<size_t>(gen.randint(0, static_cast<int64_t>(grp.size())))];
      idx.push_back(i);
      texts.push_back(train_pairs[static_cast<size_t>(i)].label);
    }
    data::Augment aug;
    aug.max_shift = o.max_shift;
    Tensor x = clip_normalize_pixels(train_ds.load_batch(idx, aug, &gen));
    Tensor tokens = tok.tokenize_batch(texts, o.config.context_length, ClipTokenizer::Truncate::yes);

    model.set_training(true);
    const double lr = sched.at(step);
    opt_decay.set_lr(lr);
    opt_plain.set_lr(lr);
    opt_decay.zero_grad();
    opt_plain.zero_grad();
    Tensor loss = clip_loss(scaled_logits(model, model.encode_image(x), model.encode_text(tokens)));
    loss.backward();
    const double gnorm = clip_grad_norm(params, o.clip_grad);
    opt_decay.step();
    opt_plain.step();
    {
      NoGradGuard ng;  // CLIP clamps the temperature at 100
      Tensor ls = model.weight("logit_scale");
      if (ls.item() > std::log(100.0)) ls.fill_(std::log(100.0));
    }
    const double l = loss.item();
    res.train_loss.emplace_back(step, l);
    log << step << "," << lr << "," << l << "," << gnorm << "," << std::exp(model.weight("logit_scale").item()) << ",,,\n";
    char what[96];
    std::snprintf(what, sizeof(what), "loss %.4f lr %.2e", l, lr);
    report.progress(step, what);
    if (report.validate_after(step, o.val_every)) validate(step + 1, false);
    if (report.checkpoint_after(step, o.ckpt_every)) save_ck(step + 1);
  }
  log.flush();
  model.set_training(false);
  if (end == o.steps) {
    res.final_metrics = validate(o.steps, o.final_eval);
    std::ofstream(o.out_dir + "/metrics.json") << res.final_metrics.json() << "\n";
    std::ofstream(o.out_dir + "/config.json") << config_json;
    save_model(o.out_dir + "/model.safetensors", model.named_tensors(), /*fp16=*/true,
               {{"kind", "mm-mini clip"}, {"config", config_json}});
    // The whole run's curve, resumed parts included: read back from log.csv.
    plot_log(o.out_dir + "/log.csv", 2, 5, "val loss", o.out_dir + "/loss.png");
  }
  res.weights = model.named_tensors();
  return res;
}

}  // namespace mm::train
