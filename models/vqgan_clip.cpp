// models/vqgan_clip.cpp: prompts, cutouts with augmentations, and the optimisation step.
#include "models/vqgan_clip.h"

#include <cmath>
#include <cstdlib>

#include "engine/mm.h"

namespace mm {

// ---- prompts ----------------------------------------------------------------------------------

static bool parse_number(const std::string& s, double* out) {
  if (s.empty()) return false;
  const char* b = s.c_str();
  char* end = nullptr;
  const double v = std::strtod(b, &end);
  if (end == b || *end != '\0') return false;
  *out = v;
  return true;
}

std::vector<Prompt> parse_prompts(const std::string& text) {
  std::vector<Prompt> out;
  size_t start = 0;
  for (;;) {
    const size_t bar = text.find('|', start);
    std::string part = text.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    Prompt p;
    // Peel up to two numeric fields from the right: "text:weight" or "text:weight:stop".
    std::vector<double> nums;
    std::string rest = part;
    for (int k = 0; k < 2; ++k) {
      const size_t colon = rest.rfind(':');
      double v;
      if (colon == std::string::npos || !parse_number(rest.substr(colon + 1), &v)) break;
      nums.insert(nums.begin(), v);
      rest = rest.substr(0, colon);
    }
    if (nums.size() >= 1) p.weight = nums[0];
    if (nums.size() == 2) p.stop = nums[1];
    const size_t a = rest.find_first_not_of(" \t"), b = rest.find_last_not_of(" \t");
    p.text = a == std::string::npos ? "" : rest.substr(a, b - a + 1);
    MM_CHECK(!p.text.empty(), "empty prompt in \"", text, "\" (prompts are separated by '|')");
    MM_CHECK(std::isfinite(p.weight), "prompt \"", p.text, "\": weight must be finite");
    out.push_back(p);
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  return out;
}

Tensor spherical_prompt_loss(const Tensor& image_embeds, const Tensor& prompt_embeds, double weight, double stop) {
  MM_CHECK(image_embeds.dim() == 2 && prompt_embeds.dim() == 2 && image_embeds.size(1) == prompt_embeds.size(1),
           "[spherical_prompt_loss] image embeddings ", image_embeds.str(), " and prompt embeddings ",
           prompt_embeds.str(), " must be [N, E] and [M, E]");
  Tensor a = normalize(image_embeds, 1).unsqueeze(1);   // [N, 1, E]
  Tensor b = normalize(prompt_embeds, 1).unsqueeze(0);  // [1, M, E]
  Tensor d = mul(square(asin(mul(norm(sub(a, b), 2.0, {2}), 0.5))), 2.0);  // [N, M]
  if (weight < 0) d = neg(d);
  Tensor floor_d = maximum(d, Tensor::full({}, stop, d.dtype()).to(d.device()));
  return mul(mean(straight_through(d, floor_d)), std::abs(weight));
}

// ---- cutouts -------------------------------------------------------------------------------------

namespace {

// 3x3 row-major matrix product.
std::vector<double> mat3(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> c(9, 0.0);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) c[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j];
  return c;
}

// The homography that maps the points src[k] to dst[k] (solves the 8x8 linear system).
std::vector<double> homography(const double src[4][2], const double dst[4][2]) {
  double A[8][9];
  for (int k = 0; k < 4; ++k) {
    const double x = src[k][0], y = src[k][1], u = dst[k][0], v = dst[k][1];
    const double r1[9] = {x, y, 1, 0, 0, 0, -u * x, -u * y, u};
    const double r2[9] = {0, 0, 0, x, y, 1, -v * x, -v * y, v};
    for (int j = 0; j < 9; ++j) A[2 * k][j] = r1[j], A[2 * k + 1][j] = r2[j];
  }
  for (int c = 0; c < 8; ++c) {  // Gauss-Jordan elimination with partial pivoting
    int piv = c;
    for (int r = c + 1; r < 8; ++r)
      if (std::abs(A[r][c]) > std::abs(A[piv][c])) piv = r;
    for (int j = 0; j < 9; ++j) std::swap(A[c][j], A[piv][j]);
    MM_CHECK(std::abs(A[c][c]) > 1e-12, "[make_cutouts] degenerate perspective transform");
    for (int r = 0; r < 8; ++r) {
      if (r == c) continue;
      const double f = A[r][c] / A[c][c];
      for (int j = c; j < 9; ++j) A[r][j] -= f * A[c][j];
    }
  }
  std::vector<double> h(9, 1.0);
  for (int r = 0; r < 8; ++r) h[r] = A[r][8] / A[r][r];
  return h;
}

// Output-to-input pixel map of one cutout's geometric augmentations (as the notebooks'
// kornia pipeline: RandomHorizontalFlip, RandomAffine(15 degrees, translate 0.1, p 0.7),
// RandomPerspective(0.7, p 0.7)), composed so that one bilinear warp applies them all.
std::vector<double> random_geometry(double S, Generator& gen) {
  std::vector<double> m = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  if (gen.uniform() < 0.5) m = mat3(m, {-1, 0, S, 0, 1, 0, 0, 0, 1});  // horizontal flip
  if (gen.uniform() < 0.7) {  // rotation about the centre, then translation
    const double th = (gen.uniform() * 2 - 1) * 15.0 * M_PI / 180.0;
    const double tx = (gen.uniform() * 2 - 1) * 0.1 * S, ty = (gen.uniform() * 2 - 1) * 0.1 * S;
    const double c = std::cos(th), s = std::sin(th), h = S / 2;
    // input = R (out - centre) + centre - t
    m = mat3(m, {c, -s, h - c * h + s * h - tx, s, c, h - s * h - c * h - ty, 0, 0, 1});
  }
  if (gen.uniform() < 0.7) {  // corners move inward by up to 0.7 * S / 2
    const double start[4][2] = {{0, 0}, {S, 0}, {S, S}, {0, S}};
    const double dir[4][2] = {{1, 1}, {-1, 1}, {-1, -1}, {1, -1}};
    double end[4][2];
    for (int k = 0; k < 4; ++k)
      for (int d = 0; d < 2; ++d) end[k][d] = start[k][d] + dir[k][d] * gen.uniform() * 0.7 * S / 2;
    m = mat3(m, homography(end, start));  // output (moved corners) -> input (original corners)
  }
  return m;
}

// Colour jitter as a 3x3 matrix on RGB: saturation s in [0.9, 1.1] and a hue rotation of up to
// 0.1 turn, both in YIQ space (ColorJitter(hue=0.1, saturation=0.1, p=0.7) of the notebooks).
std::vector<double> random_colour(Generator& gen) {
  if (gen.uniform() >= 0.7) return {1, 0, 0, 0, 1, 0, 0, 0, 1};
  const double sat = 1.0 + (gen.uniform() * 2 - 1) * 0.1;
  const double th = (gen.uniform() * 2 - 1) * 0.1 * 2 * M_PI;
  const std::vector<double> to_yiq = {0.299, 0.587, 0.114, 0.595716, -0.274453, -0.321263, 0.211456, -0.522591, 0.311135};
  const std::vector<double> to_rgb = {1.0, 0.9563, 0.6210, 1.0, -0.2721, -0.6474, 1.0, -1.1070, 1.7046};
  const double c = std::cos(th) * sat, s = std::sin(th) * sat;
  return mat3(to_rgb, mat3({1, 0, 0, 0, c, -s, 0, s, c}, to_yiq));
}

}  // namespace

Tensor make_cutouts(const Tensor& image, const CutoutOptions& o, Generator& gen) {
  MM_CHECK(image.dim() == 4 && image.size(0) == 1 && image.size(1) == 3, "[make_cutouts] expects an image [1, 3, H, W], got ",
           image.str());
  MM_CHECK(o.cutn >= 1 && o.cut_size >= 1 && o.cut_pow > 0, "[make_cutouts] invalid options: cutn ", o.cutn, ", cut_size ",
           o.cut_size, ", cut_pow ", o.cut_pow);
  const int64_t H = image.size(2), W = image.size(3), S = o.cut_size;
  const int64_t max_size = std::min(H, W), min_size = std::min({H, W, S});
  std::vector<Tensor> cuts;
  for (int64_t i = 0; i < o.cutn; ++i) {
    const int64_t size = static_cast<int64_t>(std::pow(gen.uniform(), o.cut_pow) * (max_size - min_size) + min_size);
    const int64_t ox = gen.randint(0, W - size + 1), oy = gen.randint(0, H - size + 1);
    Tensor cut = image.narrow(2, oy, size).narrow(3, ox, size);
    cuts.push_back(size == S ? cut : adaptive_avg_pool2d(cut, S, S));  // resize by area
  }
  Tensor batch = o.cutn == 1 ? cuts[0] : cat(cuts, 0);  // [N, 3, S, S]
  if (o.augment) {
    const int64_t N = batch.size(0);
    std::vector<double> geo, col;
    for (int64_t i = 0; i < N; ++i) {
      const std::vector<double> g = random_geometry(static_cast<double>(S), gen), c = random_colour(gen);
      geo.insert(geo.end(), g.begin(), g.end());
      col.insert(col.end(), c.begin(), c.end());
    }
    batch = warp_perspective(batch, Tensor::from_vector(geo, {N, 3, 3}), WarpPadding::border);
    Tensor colour = Tensor::from_vector(col, {N, 3, 3}).to(batch.dtype()).to(batch.device());
    batch = matmul(colour, batch.reshape({N, 3, S * S})).reshape({N, 3, S, S});
  }
  if (o.noise_fac > 0) {
    const int64_t N = batch.size(0);
    // drawn on the CPU (the same numbers on every device), then moved to the image's device
    Tensor facs = Tensor::uniform({N, 1, 1, 1}, gen, 0.0, o.noise_fac, batch.dtype()).to(batch.device());
    batch = add(batch, mul(facs, Tensor::randn(batch.shape(), gen, batch.dtype()).to(batch.device())));
  }
  return batch;
}

// ---- the generator --------------------------------------------------------------------------------

VQGANCLIP::VQGANCLIP(const VQGAN& vqgan, const ClipModel& clip, const ClipTokenizer& tokenizer, VQGANCLIPOptions options)
    : vqgan_(vqgan), clip_(clip), tokenizer_(tokenizer), options_(options), gen_(options.seed) {
  const int64_t f = vqgan_.config().downsample_factor();
  MM_CHECK(options_.width > 0 && options_.height > 0 && options_.width % f == 0 && options_.height % f == 0,
           "[VQGANCLIP] size ", options_.width, "x", options_.height, " is not a positive multiple of the VQGAN's factor ", f);
  MM_CHECK(vqgan_.device() == clip_.device(), "[VQGANCLIP] the VQGAN is on ", device_name(vqgan_.device()),
           " and CLIP on ", device_name(clip_.device()), ": move both to one device");
  MM_CHECK(options_.cutouts.cut_size == clip_.config().image_resolution, "[VQGANCLIP] cut_size ",
           options_.cutouts.cut_size, " differs from CLIP's input resolution ", clip_.config().image_resolution);
  NoGradGuard ng;
  const Tensor& cb = vqgan_.codebook();  // [K, D]
  const int64_t D = cb.size(1);
  z_min_ = min(cb, 0).first.reshape({1, D, 1, 1});
  z_max_ = max(cb, 0).first.reshape({1, D, 1, 1});
}

void VQGANCLIP::add_text_prompts(const std::string& text) {
  for (const Prompt& p : parse_prompts(text)) {
    NoGradGuard ng;
    std::vector<int64_t> ids = tokenizer_.tokenize(p.text, clip_.config().context_length);
    Tensor tokens = Tensor::from_vector(ids, {1, static_cast<int64_t>(ids.size())});
    prompts_.push_back({clip_.encode_text(tokens).detach(), p.weight, p.stop});
  }
}

void VQGANCLIP::add_image_prompt(const Tensor& image, double weight, double stop) {
  NoGradGuard ng;
  MM_CHECK(image.dim() == 3 && image.size(0) == 3, "[VQGANCLIP] image prompt must be [3, H, W], got ", image.str());
  Tensor img = resize(image.unsqueeze(0), options_.height, options_.width, ResizeFilter::bicubic, Antialias::yes)
                   .to(clip_.device());
  Tensor cuts = make_cutouts(img, options_.cutouts, gen_);
  prompts_.push_back({clip_.encode_image(clip_normalize_pixels(cuts)).detach(), weight, stop});
}

void VQGANCLIP::add_noise_prompt(uint64_t seed, double weight) {
  Generator g(seed);
  prompts_.push_back({Tensor::randn({1, clip_.config().embed_dim}, g).to(clip_.device()), weight,
                      -std::numeric_limits<double>::infinity()});
}

void VQGANCLIP::start_optimizer() {
  z_.set_requires_grad(true);
  z_init_ = z_.detach().clone();
  opt_ = std::make_unique<Adam>(std::vector<Tensor>{z_}, AdamOptions{.lr = options_.lr});
  steps_ = 0;
}

void VQGANCLIP::init_random() {
  NoGradGuard ng;
  const int64_t f = vqgan_.config().downsample_factor();
  const int64_t h = options_.height / f, w = options_.width / f, K = vqgan_.config().n_embed;
  Tensor idx = Tensor::randint({1, h, w}, gen_, 0, K);  // drawn on the CPU on every device
  z_ = vqgan_.codes_to_latent(idx).contiguous();
  start_optimizer();
}

void VQGANCLIP::init_from_image(const Tensor& image, double noise) {
  NoGradGuard ng;
  MM_CHECK(image.dim() == 3 && image.size(0) == 3, "[VQGANCLIP] init image must be [3, H, W], got ", image.str());
  Tensor img = resize(image.unsqueeze(0), options_.height, options_.width, ResizeFilter::bicubic, Antialias::yes);
  // Start from the quantised encoding, as the notebooks' model.encode() returns it: z then
  // lies inside the codebook's range, and --init-weight pulls towards codebook rows. (A
  // Gumbel model's encoder output lives before its quantiser's proj, so it must be quantised
  // in any case.)
  z_ = vqgan_.quantize(vqgan_.encode(add(mul(img, 2.0), -1.0).to(vqgan_.device()))).z_q;
  if (noise > 0) z_ = add(z_, mul(Tensor::randn(z_.shape(), gen_), noise).to(z_.device()));  // drawn on the CPU
  z_ = z_.contiguous();
  start_optimizer();
}

void VQGANCLIP::init_from_latent(const Tensor& z) {
  const int64_t f = vqgan_.config().downsample_factor();
  MM_CHECK(z.dim() == 4 && z.size(0) == 1 && z.size(1) == vqgan_.config().embed_dim && z.size(2) == options_.height / f &&
               z.size(3) == options_.width / f,
           "[VQGANCLIP] latent ", z.str(), " does not match [1, ", vqgan_.config().embed_dim, ", ", options_.height / f, ", ",
           options_.width / f, "]");
  z_ = z.detach().to(DType::f32).to(vqgan_.device()).contiguous().clone();
  start_optimizer();
}

Tensor VQGANCLIP::forward_loss(Tensor* image_out) {
  MM_CHECK(z_.defined(), "[VQGANCLIP] call init_random/init_from_image before step()");
  MM_CHECK(!prompts_.empty(), "[VQGANCLIP] no prompts: add a text, image or noise prompt");
  Tensor z_q = vqgan_.nearest_codes(z_).z_q;  // straight-through: gradient goes to z
  Tensor x = mul(add(vqgan_.decode(z_q), 1.0), 0.5);
  x = options_.clamp == ClampRule::with_grad ? clamp_with_grad(x, 0.0, 1.0)
                                             : straight_through(clamp(x.detach(), 0.0, 1.0), x);
  if (image_out) *image_out = x;
  Tensor features = clip_.encode_image(clip_normalize_pixels(make_cutouts(x, options_.cutouts, gen_)));
  Tensor loss;
  for (const PromptEmbed& p : prompts_) {
    Tensor l = spherical_prompt_loss(features, p.embeds, p.weight, p.stop);
    loss = loss.defined() ? add(loss, l) : l;
  }
  // the notebooks' F.mse_loss(z, z_orig) * init_weight / 2 (a negative weight pushes away)
  if (options_.init_weight != 0) loss = add(loss, mul(mean(square(sub(z_, z_init_))), options_.init_weight / 2));
  return loss;
}

double VQGANCLIP::step() {
  opt_->zero_grad();
  Tensor loss = forward_loss(nullptr);
  const double value = loss.item();
  loss.backward();
  opt_->step();
  {
    NoGradGuard ng;  // keep z inside the codebook's per-channel range
    Tensor clamped = minimum(maximum(z_, z_min_), z_max_);
    z_.copy_(clamped);
  }
  ++steps_;
  return value;
}

double VQGANCLIP::loss_and_grad(Tensor* dloss_dz, Tensor* dloss_dimage) {
  Tensor image;
  Tensor loss = forward_loss(&image);
  std::vector<Tensor> inputs = {z_};
  if (dloss_dimage) inputs.push_back(image);
  std::vector<Tensor> g = grad({loss}, inputs);
  if (dloss_dz) *dloss_dz = g[0];
  if (dloss_dimage) *dloss_dimage = g[1];
  return loss.item();
}

Tensor VQGANCLIP::image() const {
  NoGradGuard ng;
  Tensor x = mul(add(vqgan_.decode(vqgan_.nearest_codes(z_.detach()).z_q), 1.0), 0.5);
  return clamp(x, 0.0, 1.0).select(0, 0).to(Device::cpu);
}

}  // namespace mm
