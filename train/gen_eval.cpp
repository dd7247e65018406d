// train/gen_eval.cpp: see gen_eval.h.
#include "train/gen_eval.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/autograd.h"
#include "engine/ops/linalg.h"
#include "engine/ops/loss.h"
#include "engine/ops/resize.h"
#include "models/vqgan_clip.h"
#include "train/clip_trainer.h"
#include "train/plot.h"

#include <stb/stb_image_write.h>

namespace mm::train {

std::string GenEvalResult::json() const {
  nlohmann::ordered_json j;
  j["found_top5"] = found;
  j["prompts"] = items.size();
  j["steps_per_second"] = steps_per_second;
  j["steps"] = steps;
  j["cutn"] = cutn;
  j["size"] = size;
  for (const auto& it : items) j["items"].push_back({{"prompt", it.prompt}, {"held_out", it.held_out}, {"rank", it.rank}});
  return j.dump(1);
}

GenEvalResult evaluate_generation(const VQGAN& vqgan, const ClipModel& clip, const ClipTokenizer& clip_tok,
                                  const ClipModel& judge, const ClipTokenizer& judge_tok,
                                  const std::vector<data::EmojiPair>& pairs, const GenEvalOptions& o) {
  // Base emoji names by split, in file order, without duplicates.
  std::vector<std::string> names[2], all;
  std::set<std::string> seen_names;
  for (const auto& p : pairs) {
    if (p.hexcode != p.base || !seen_names.insert(p.label).second) continue;
    names[p.split == data::Split::val ? 1 : 0].push_back(p.label);
    all.push_back(p.label);
  }
  MM_CHECK(static_cast<int64_t>(names[0].size()) >= o.seen && static_cast<int64_t>(names[1].size()) >= o.held_out &&
               static_cast<int64_t>(all.size()) >= o.captions,
           "[eval-gen] not enough emoji names in the pairs for ", o.seen, " seen, ", o.held_out, " held-out prompts and ",
           o.captions, " captions");
  Generator gen(o.seed);
  auto draw = [&](const std::vector<std::string>& from, int64_t n) {
    std::vector<std::string> pool = from, out;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = gen.randint(i, static_cast<int64_t>(pool.size()));
      std::swap(pool[static_cast<size_t>(i)], pool[static_cast<size_t>(k)]);
      out.push_back(pool[static_cast<size_t>(i)]);
    }
    return out;
  };
  GenEvalResult res;
  for (const auto& s : draw(names[1], o.held_out)) res.items.push_back({s, true, 0});
  for (const auto& s : draw(names[0], o.seen)) res.items.push_back({s, false, 0});

  const GenDefaults d = gen_defaults(true);
  VQGANCLIPOptions vo;
  vo.width = d.width;
  vo.height = d.height;
  vo.seed = o.gen_seed;
  vo.cutouts.cut_size = clip.config().image_resolution;
  vo.cutouts.cutn = o.cutn > 0 ? o.cutn : d.cutn;
  if (o.lr > 0) vo.lr = o.lr;
  const bool white = o.init_white >= 0 ? o.init_white == 1 : d.init_white;
  const int64_t steps = o.steps >= 0 ? o.steps : d.steps;
  res.steps = steps, res.cutn = vo.cutouts.cutn, res.size = d.width;
  std::vector<Tensor> images;
  double gen_seconds = 0;
  for (auto& item : res.items) {
    VQGANCLIP g(vqgan, clip, clip_tok, vo);
    g.add_text_prompts(item.prompt);
    if (white) g.init_from_image(Tensor::ones({3, d.height, d.width}));
    else g.init_random();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) g.step();
    gen_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Tensor img = g.image();  // [3, H, W] in [0, 1]
    images.push_back(img);
    // The judge: the prompt among itself and captions-1 other names.
    std::vector<std::string> others;
    for (const auto& n : all)
      if (n != item.prompt) others.push_back(n);
    std::vector<std::string> caps = draw(others, o.captions - 1);
    caps.insert(caps.begin(), item.prompt);
    NoGradGuard ng;
    Tensor x = img.unsqueeze(0);
    const int64_t R = judge.config().image_resolution;
    if (x.size(2) != R || x.size(3) != R) x = resize(x, R, R, ResizeFilter::bicubic, Antialias::yes);
    Tensor fi = normalize(judge.encode_image(clip_normalize_pixels(x)), -1);
    Tensor ft = normalize(judge.encode_text(judge_tok.tokenize_batch(caps, judge.config().context_length,
                                                                       ClipTokenizer::Truncate::yes)), -1);
    const std::vector<float> s = matmul(fi, ft.t()).contiguous().to_vector<float>();
    int64_t rank = 0;
    for (size_t j = 1; j < s.size(); ++j) rank += s[j] >= s[0];
    item.rank = rank;
    res.found += rank < 5;
  }
  res.steps_per_second = static_cast<double>(steps * static_cast<int64_t>(res.items.size())) / std::max(gen_seconds, 1e-9);

  if (!o.grid_png.empty()) {
    // 5 columns; each image at 2x, its prompt (wrapped at 21 characters, 3 lines) below,
    // a green or red bar: found in the judge's top 5 or not.
    const int cols = 5, scale = 2, S = static_cast<int>(d.width) * scale, pad = 8, text_h = 34;
    const int n = static_cast<int>(images.size()), rows = (n + cols - 1) / cols;
    const int W = cols * (S + pad) + pad, H = rows * (S + text_h + pad) + pad;
    std::vector<uint8_t> px(static_cast<size_t>(W) * H * 3, 255);
    for (int k = 0; k < n; ++k) {
      const int gx = pad + (k % cols) * (S + pad), gy = pad + (k / cols) * (S + text_h + pad);
      const std::vector<float> v = images[static_cast<size_t>(k)].contiguous().to_vector<float>();
      const int R = static_cast<int>(d.width);
      for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x)
          for (int c = 0; c < 3; ++c)
            px[(static_cast<size_t>(gy + y) * W + gx + x) * 3 + c] = static_cast<uint8_t>(
                std::lround(std::clamp(v[static_cast<size_t>((c * R + y / scale) * R + x / scale)], 0.0f, 1.0f) * 255));
      const auto& item = res.items[static_cast<size_t>(k)];
      const bool ok = item.rank < 5;
      for (int y = gy + S + 1; y < gy + S + 4; ++y)
        for (int x = gx; x < gx + S; ++x) {
          uint8_t* p = &px[(static_cast<size_t>(y) * W + x) * 3];
          p[0] = ok ? 40 : 200, p[1] = ok ? 160 : 40, p[2] = 40;
        }
      std::string t = item.prompt + (item.held_out ? " *" : "");
      for (int line = 0; line < 3 && !t.empty(); ++line) {
        size_t cut = std::min<size_t>(t.size(), 21);
        if (cut < t.size()) {
          const size_t sp = t.rfind(' ', cut);
          if (sp != std::string::npos && sp > 0) cut = sp;
        }
        draw_text(px, W, H, gx, gy + S + 6 + line * 9, t.substr(0, cut));
        t = t.substr(cut);
        while (!t.empty() && t[0] == ' ') t.erase(0, 1);
      }
    }
    MM_CHECK(stbi_write_png(o.grid_png.c_str(), W, H, 3, px.data(), W * 3) != 0, "[eval-gen] cannot write '",
             o.grid_png, "'");
  }
  return res;
}

}  // namespace mm::train
