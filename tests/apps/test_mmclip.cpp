// tests/apps/test_mmclip.cpp: CLIP preprocessing against the refs and against Pillow, and the
// mmclip binary on the tiny reference CLIP: embed reproduces the reference features, classify's
// probabilities are the softmax of embed's logits, search finds an image by itself and reuses
// its index, tokenize matches clip.tokenize; bad input fails clearly; download.sh --list.
// Run: ctest --test-dir build -R test_mmclip
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <stb/stb_image_write.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cuda_ops.h"
#include "apps/common/clip_preprocess.h"
#include "engine/mm.h"
#include "tests/apps/run_command.h"
#include "tests/refs.h"
#include "weights_tools/safetensors.h"

using namespace mm;
namespace fs = std::filesystem;

namespace {


std::string quote(const std::string& s) {  // for /bin/sh
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

const std::string mmclip = MM_BIN_DIR "/mmclip";
const std::string R = std::string(MM_SHARED_DIR) + "/refs/";
const std::string models = " --model " + R + "clip_vit_tiny.safetensors --model-config " + R +
                           "clip_vit_tiny.json --vocab " + R + "bpe_simple_vocab_16e6.txt.gz";
const char* kImages[3] = {"image_0_gradient.png", "image_1_shapes.png", "image_2_noise.png"};

std::string tmp_path(const std::string& name) { return "/tmp/mm_test_mmclip_" + std::to_string(::getpid()) + "_" + name; }

// max |a - b| / max |b|, printed with the tensor's name.
double max_rel(const std::string& name, const Tensor& a, const Tensor& b) {
  REQUIRE_MESSAGE(a.shape() == b.shape(), name, ": ", a.str(), " vs ", b.str());
  const std::vector<float> x = a.contiguous().to_vector<float>(), y = b.contiguous().to_vector<float>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(x[i] - y[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(y[i])));
  }
  MESSAGE(name << ": max_abs " << diff << ", max_rel " << diff / scale);
  return diff / scale;
}

// The integer pattern of gen_clip_preprocess_expected.py: uint8 [h, w, c].
std::vector<uint8_t> make_pattern(int h, int w, int c) {
  std::vector<uint8_t> px(static_cast<size_t>(h * w * c));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) px[(y * w + x) * c + k] = static_cast<uint8_t>((x * 7 + y * 13 + k * 50 + ((x * y) % 17) * 5) & 255);
  return px;
}

void append_chunk(std::string& png, const char* type, const std::string& data) {
  auto be32 = [&](uint32_t v) {
    for (int k = 3; k >= 0; --k) png.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  };
  be32(static_cast<uint32_t>(data.size()));
  const std::string body = std::string(type) + data;
  png += body;
  be32(static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

std::string be32s(uint32_t v) {
  std::string s;
  for (int k = 3; k >= 0; --k) s.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  return s;
}

// An 8-bit palette PNG (colour type 3): stb_image_write cannot write one.
void write_palette_png(const std::string& path, int h, int w, const std::vector<uint8_t>& index,
                       const std::vector<uint8_t>& palette_rgb) {
  std::string png = "\x89PNG\r\n\x1a\n";
  append_chunk(png, "IHDR", be32s(w) + be32s(h) + std::string("\x08\x03\x00\x00\x00", 5));
  append_chunk(png, "PLTE", std::string(palette_rgb.begin(), palette_rgb.end()));
  std::string raw;  // filter byte 0, then the row
  for (int y = 0; y < h; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(index.data()) + y * w, static_cast<size_t>(w));
  }
  uLongf n = compressBound(raw.size());
  std::string z(n, '\0');
  REQUIRE(compress(reinterpret_cast<Bytef*>(z.data()), &n, reinterpret_cast<const Bytef*>(raw.data()), raw.size()) == Z_OK);
  z.resize(n);
  append_chunk(png, "IDAT", z);
  append_chunk(png, "IEND", "");
  std::ofstream(path, std::ios::binary) << png;
}

uint64_t fnv1a64(const Tensor& t) {
  uint64_t h = 0xCBF29CE484222325ull;
  const uint8_t* p = t.data<uint8_t>();
  for (int64_t i = 0; i < t.numel(); ++i) h = (h ^ p[i]) * 0x100000001B3ull;
  return h;
}

using testing::slurp;

}  // namespace

TEST_CASE("clip preprocessing: the refs PNGs (64x64, R=64) give the reference pixel_values") {
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  const TensorFile expected = load_safetensors(testing::refs_path("clip_vit_tiny_expected.safetensors"));
  for (int i = 0; i < 3; ++i) {
    const Tensor px = apps::clip_preprocess_file(R + kImages[i], 64);
    CHECK(max_rel(std::string("pixel_values ") + kImages[i], px, expected.get("pixel_values").select(0, i)) <= 1e-6);
  }
}

TEST_CASE("clip preprocessing: resize of the shorter side, centre crop and modes, as Pillow 9.4") {
  CHECK(apps::clip_resized_size(61, 97, 64) == std::pair<int64_t, int64_t>{64, 101});  // int(64 * 97 / 61) = 101
  CHECK(apps::clip_resized_size(80, 45, 32) == std::pair<int64_t, int64_t>{56, 32});   // int(56.89) truncates
  CHECK(apps::clip_resized_size(50, 50, 224) == std::pair<int64_t, int64_t>{224, 224});
  // Expected values from tests/apps/gen_clip_preprocess_expected.py (Pillow 9.4, CLIP's steps):
  // {mode, H, W, R, FNV-1a 64 of the uint8 R x R x 3 crop, its byte sum, normalised [1, R/2, R/3]}
  struct Case {
    const char* mode;
    int h, w, r;
    uint64_t hash;
    int64_t sum;
    float value;
  };
  const Case cases[] = {
      {"rgb", 61, 97, 64, 0x6b4772614668ddebull, 1565956, 1.83475947f},
      {"rgb", 61, 97, 23, 0x627297086ebad0e7ull, 202094, 1.14440215f},
      {"rgb", 61, 97, 26, 0x693832a896f0b649ull, 258024, -0.146265909f},
      {"rgb", 61, 97, 32, 0x44c00e86dde17ed6ull, 391233, 0.964308977f},
      {"rgb", 61, 97, 16, 0xa44e70bd2bc9dbeaull, 97809, 0.213920608f},
      {"rgba", 61, 97, 32, 0xedd3bed74bd1df82ull, 376771, 0.724184692f},
      {"la", 61, 97, 32, 0x657054b267de5df6ull, 369729, 0.919285655f},
      {"l", 61, 97, 32, 0x4b75c16972db2592ull, 390591, 1.02434003f},
      {"palette", 61, 97, 32, 0xdfab782e1801dac5ull, 348314, 1.99984491f},
      {"palette", 61, 97, 23, 0x27c82ccc1c4d77bdull, 186040, -0.476436794f},
      {"rgb", 80, 45, 64, 0xab58a2dedf6da1d4ull, 1559681, 1.03934777f},
      {"rgb", 80, 45, 23, 0x7f4c763789a5eeecull, 200875, 0.799223542f},
      {"rgb", 80, 45, 26, 0x9b8d5084159fec57ull, 257476, 1.48958075f},
      {"rgb", 80, 45, 32, 0x6af78a152b8310f2ull, 390149, 1.48958075f},
      {"rgb", 80, 45, 16, 0xa1d76197d133290eull, 97467, 1.42954969f},
      {"rgba", 80, 45, 32, 0x3f3a899bb980247eull, 375413, 1.48958075f},
      {"la", 80, 45, 32, 0x68c321ff76d9bc8aull, 369303, 0.769208014f},
      {"l", 80, 45, 32, 0x92cb4e1786135d3cull, 389565, 0.739192486f},
      {"palette", 80, 45, 32, 0xb94092916408dc7cull, 349057, 0.379006058f},
      {"palette", 80, 45, 23, 0xc6bef170aac86727ull, 182174, 0.123873897f},
  };
  for (const Case& c : cases) {
    const std::string name = std::string(c.mode) + " " + std::to_string(c.w) + "x" + std::to_string(c.h) + " R=" + std::to_string(c.r);
    CAPTURE(name);
    const std::string path = tmp_path(name + ".png");
    const std::string mode = c.mode;
    if (mode == "palette") {
      std::vector<uint8_t> index = make_pattern(c.h, c.w, 1), palette;
      for (auto& v : index) v %= 16;
      for (int i = 0; i < 16; ++i)
        for (int v : {(i * 37) & 255, (i * 91) & 255, (i * 53 + 7) & 255}) palette.push_back(static_cast<uint8_t>(v));
      write_palette_png(path, c.h, c.w, index, palette);
    } else {
      const int comp = mode == "l" ? 1 : mode == "la" ? 2 : mode == "rgb" ? 3 : 4;
      REQUIRE(stbi_write_png(path.c_str(), c.w, c.h, comp, make_pattern(c.h, c.w, comp).data(), c.w * comp) != 0);
    }
    const Tensor crop = apps::clip_resize_crop_rgb(apps::decode_image(path), c.r);
    REQUIRE(crop.shape() == Shape{c.r, c.r, 3});
    int64_t sum = 0;
    for (int64_t i = 0; i < crop.numel(); ++i) sum += crop.data<uint8_t>()[i];
    CHECK_MESSAGE(fnv1a64(crop) == c.hash, name, ": crop differs from Pillow's (byte sum ", sum, ", expected ", c.sum, ")");
    CHECK(sum == c.sum);
    const Tensor x = apps::clip_normalize(crop);
    CHECK(x.at<float>({1, c.r / 2, c.r / 3}) == doctest::Approx(c.value).epsilon(1e-6));
    std::remove(path.c_str());
  }
}

TEST_CASE("clip preprocessing: an R x R image passes unchanged; alpha is dropped, not composited") {
  const int n = 32;
  std::vector<uint8_t> rgba = make_pattern(n, n, 4);
  for (int i = 0; i < n * n; i += 3) rgba[i * 4 + 3] = 0;  // some fully transparent pixels
  const std::string path = tmp_path("square_rgba.png");
  REQUIRE(stbi_write_png(path.c_str(), n, n, 4, rgba.data(), n * 4) != 0);
  const Tensor crop = apps::clip_resize_crop_rgb(apps::decode_image(path), n);
  bool same = true;
  for (int i = 0; i < n * n; ++i)
    for (int k = 0; k < 3; ++k) same = same && crop.data<uint8_t>()[i * 3 + k] == rgba[i * 4 + k];
  CHECK(same);
  std::remove(path.c_str());
}

TEST_CASE("clip preprocessing: unreadable, truncated and over-large images are errors naming the file") {
  auto error_of = [](const std::string& path) -> std::string {
    try {
      apps::decode_image(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK(error_of("/nonexistent.png").find("cannot read image '/nonexistent.png'") != std::string::npos);
  const std::string garbage = tmp_path("garbage.png");
  std::ofstream(garbage) << "this is not an image";
  CHECK(error_of(garbage).find("cannot read image '" + garbage + "'") != std::string::npos);

  const std::vector<uint8_t> px = make_pattern(48, 40, 3);
  const std::string png = tmp_path("full.png"), jpg = tmp_path("full.jpg");
  REQUIRE(stbi_write_png(png.c_str(), 40, 48, 3, px.data(), 40 * 3) != 0);
  REQUIRE(stbi_write_jpg(jpg.c_str(), 40, 48, 3, px.data(), 90) != 0);
  CHECK_NOTHROW(apps::decode_image(png));
  CHECK_NOTHROW(apps::decode_image(jpg));
  for (const std::string& full : {png, jpg}) {
    const std::string bytes = slurp(full), cut = full + ".cut";
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() * 2 / 3);
    const std::string e = error_of(cut);
    MESSAGE("truncated " << full << ": " << e);
    CHECK(e.find("cannot decode image '" + cut + "'") != std::string::npos);
    std::remove(cut.c_str());
  }
  // BMP (stb writes 24-bit) and GIF (two frames: the first is left red, right blue; the
  // second all white): decoded exactly, the first frame only; cut short, errors (stb_image
  // alone would read the missing bytes as zeros).
  const std::string bmp = tmp_path("full.bmp"), gif = tmp_path("two_frames.gif");
  REQUIRE(stbi_write_bmp(bmp.c_str(), 40, 48, 3, px.data()) != 0);
  const apps::DecodedImage b = apps::decode_image(bmp);
  CHECK(b.pixels.to_vector<int64_t>() == std::vector<int64_t>(px.begin(), px.end()));
  static const char kGif[] =
      "\x47\x49\x46\x38\x39\x61\x10\x00\x10\x00\xf1\x00\x00\xff\x00\x00\x00\x00\xff\x00\xff\x00\xff\xff"
      "\xff\x2c\x00\x00\x00\x00\x10\x00\x10\x00\x00\x02\x1f\x84\x6f\xa1\xab\x88\xcc\xdc\x81\x4b\x26\x1a"
      "\x2c\xc0\xd9\x72\xfd\x79\x18\x38\x8a\x14\x79\x9a\x10\xba\xaa\x91\x5b\xc1\x4a\x01\x00\x2c\x00\x00"
      "\x00\x00\x10\x00\x10\x00\x00\x02\x0e\x9c\x8f\xa9\xcb\xed\x0f\xa3\x9c\xb4\xda\x8b\xb3\x3e\x05\x00"
      "\x3b";
  std::ofstream(gif, std::ios::binary) << std::string(kGif, sizeof(kGif) - 1);
  const apps::DecodedImage g = apps::decode_image(gif);
  REQUIRE(g.pixels.shape() == Shape{16, 16, 3});
  CHECK(g.mode == apps::PilMode::palette);
  for (int64_t y : {0, 15})
    for (int64_t x : {0, 7, 8, 15}) {
      const std::vector<int64_t> rgb = g.pixels.select(0, y).select(0, x).contiguous().to_vector<int64_t>();
      CHECK(rgb == (x < 8 ? std::vector<int64_t>{255, 0, 0} : std::vector<int64_t>{0, 0, 255}));
    }
  // complete files the checks must accept: a top-down BMP (negative height), a GIF cut right
  // after its first frame (69 bytes: header, colour table, descriptor, data, terminator)
  {
    std::string td = slurp(bmp);
    const int32_t neg = -48;
    td.replace(22, 4, reinterpret_cast<const char*>(&neg), 4);  // little-endian (x86)
    const std::string top_down = tmp_path("top_down.bmp");
    std::ofstream(top_down, std::ios::binary) << td;
    const apps::DecodedImage t = apps::decode_image(top_down);
    REQUIRE(t.pixels.shape() == Shape{48, 40, 3});
    CHECK(t.pixels.select(0, 0).contiguous().to_vector<int64_t>() ==
          b.pixels.select(0, 47).contiguous().to_vector<int64_t>());  // the rows in the other order
    // and a top-down header claiming 20000 x 20000 pixels is a bomb, not a negative count
    std::string big = td;
    const int32_t w = 20000, h = -20000;
    big.replace(18, 4, reinterpret_cast<const char*>(&w), 4);
    big.replace(22, 4, reinterpret_cast<const char*>(&h), 4);
    std::ofstream(top_down, std::ios::binary | std::ios::trunc) << big;
    CHECK(error_of(top_down).find("decompression bomb") != std::string::npos);
    std::remove(top_down.c_str());
    const std::string first = tmp_path("first_frame.gif");
    std::ofstream(first, std::ios::binary) << std::string(kGif, 69);
    CHECK(apps::decode_image(first).pixels.to_vector<int64_t>() == g.pixels.to_vector<int64_t>());
    std::remove(first.c_str());
  }
  for (const std::string& full : {bmp, gif}) {
    const std::string bytes = slurp(full), cut = full + ".cut";
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, full == gif ? 50 : bytes.size() * 2 / 3);
    const std::string e = error_of(cut);
    MESSAGE("truncated " << full << ": " << e);
    CHECK(e.find("cannot decode image '" + cut + "': truncated") != std::string::npos);
    std::remove(cut.c_str());
  }
  std::remove(bmp.c_str());
  std::remove(gif.c_str());
  // A PNG header claiming 20000 x 20000 = 4e8 pixels: refused before decoding.
  std::string bomb = "\x89PNG\r\n\x1a\n";
  append_chunk(bomb, "IHDR", be32s(20000) + be32s(20000) + std::string("\x08\x02\x00\x00\x00", 5));
  append_chunk(bomb, "IEND", "");
  const std::string bomb_path = tmp_path("bomb.png");
  std::ofstream(bomb_path, std::ios::binary) << bomb;
  const std::string e = error_of(bomb_path);
  CHECK(e.find(bomb_path) != std::string::npos);
  CHECK(e.find("20000x20000") != std::string::npos);
  CHECK(e.find("decompression bomb") != std::string::npos);
  // the largest sides a PNG header can claim: their product does not fit 64 bits
  std::string huge = "\x89PNG\r\n\x1a\n";
  append_chunk(huge, "IHDR", be32s(0xffffffffu) + be32s(0xffffffffu) + std::string("\x08\x02\x00\x00\x00", 5));
  append_chunk(huge, "IEND", "");
  std::ofstream(bomb_path, std::ios::binary | std::ios::trunc) << huge;
  CHECK(error_of(bomb_path).find("4294967295x4294967295") != std::string::npos);
  CHECK(error_of(bomb_path).find("decompression bomb") != std::string::npos);
  for (const auto& p : {garbage, png, jpg, bomb_path}) std::remove(p.c_str());
}

TEST_CASE("mmclip embed reproduces the reference image and text features") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  MM_REQUIRE_REFS("manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(slurp(R + "manifest.json"));
  std::string cmd = mmclip + " embed" + models + " --truncate --batch 2 --threads 2";
  for (const char* img : kImages) cmd += " --image " + R + img;
  for (const auto& t : manifest["notes"]["clip_texts"]) cmd += " --text " + quote(t.get<std::string>());
  const std::string out = tmp_path("embed.safetensors");
  const TensorFile expected = load_safetensors(testing::refs_path("clip_vit_tiny_expected.safetensors"));
  // on the CPU, and on the device when there is one (the CUDA emulator's build has one)
  for (const char* device : {"cpu", "cuda"}) {
    if (std::string(device) == "cuda" && !mm::cuda_ops::device_present()) continue;
    CAPTURE(device);
    auto [rc, text] = testing::run_command(cmd + " --device " + device + " --out " + out);
    REQUIRE_MESSAGE(rc == 0, text);
    CHECK(text.find("wrote " + out) != std::string::npos);
    const TensorFile got = load_safetensors(out);
    CHECK(max_rel("image_features", got.get("image_features"), expected.get("image_features")) <= 1e-4);
    CHECK(max_rel("text_features", got.get("text_features"), expected.get("text_features")) <= 1e-4);
  }
  if (mm::cuda_ops::device_present()) {  // 16-bit GEMM operands: close to the references, not equal
    auto [rc, text] = testing::run_command(cmd + " --device cuda --precision bf16 --out " + out);
    REQUIRE_MESSAGE(rc == 0, text);
    const TensorFile got = load_safetensors(out);
    const double r = max_rel("image_features", got.get("image_features"), expected.get("image_features"));
    CHECK(r <= 5e-2);
    CHECK(r > 1e-6);
  }
  // only texts: image_features is [0, D]
  auto [rc3, t3] = testing::run_command(mmclip + " embed" + models + " --text cat --out " + out);
  REQUIRE_MESSAGE(rc3 == 0, t3);
  {
    const TensorFile got = load_safetensors(out);
    CHECK(got.get("image_features").shape() == Shape{0, 64});
    CHECK(got.get("text_features").shape() == Shape{1, 64});
  }
  // without --truncate the long text is an error naming the fix
  auto [rc2, t2] = testing::run_command(mmclip + " embed" + models + " --text " + quote(manifest["notes"]["clip_texts"][3].get<std::string>()) + " --out " + out);
  CHECK(rc2 == 1);
  CHECK(t2.find("error: ") != std::string::npos);
  CHECK(t2.find("more than context_length 77") != std::string::npos);
  CHECK(t2.find("pass --truncate") != std::string::npos);
  std::remove(out.c_str());
}

TEST_CASE("mmclip classify --json: probabilities sum to 1 and are the softmax of embed's logits") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  const std::vector<std::string> labels = {"cat", "dog", "lighthouse"};
  std::string images;
  for (const char* img : kImages) images += " " + R + img;
  auto [rc, text] = testing::run_command(mmclip + " classify" + images + models + " --labels 'cat, dog,lighthouse' --top 3 --json",
                        testing::Stderr::discard);
  REQUIRE_MESSAGE(rc == 0, text);
  const std::vector<std::string> rows = lines(text);
  REQUIRE(rows.size() == 3);

  const std::string out = tmp_path("classify_embed.safetensors");
  std::string cmd = mmclip + " embed" + models;
  for (const char* img : kImages) cmd += " --image " + R + img;
  for (const auto& l : labels) cmd += " --text " + quote("a photo of a " + l + ".");
  auto [rc2, t2] = testing::run_command(cmd + " --out " + out);
  REQUIRE_MESSAGE(rc2 == 0, t2);
  const TensorFile f = load_safetensors(out);
  const Tensor cos = matmul(normalize(f.get("image_features"), -1), normalize(f.get("text_features"), -1).t());
  const double scale = std::exp(load_safetensors(R + "clip_vit_tiny.safetensors").get("logit_scale").to(DType::f32).item());
  for (int i = 0; i < 3; ++i) {
    const nlohmann::json row = nlohmann::json::parse(rows[i]);
    CHECK(row["image"] == R + kImages[i]);
    REQUIRE(row["top"].size() == 3);
    double z = 0, sum = 0;
    for (int l = 0; l < 3; ++l) z += std::exp(scale * cos.at<float>({i, l}));
    for (const auto& e : row["top"]) {
      const int l = static_cast<int>(std::find(labels.begin(), labels.end(), e["label"].get<std::string>()) - labels.begin());
      REQUIRE(l < 3);
      const double expected = std::exp(scale * cos.at<float>({i, l})) / z;
      CHECK(e["prob"].get<double>() == doctest::Approx(expected).epsilon(1e-5));
      sum += e["prob"].get<double>();
    }
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-9));
    CHECK(row["top"][0]["prob"] >= row["top"][1]["prob"]);
  }
  // plain output: the image, then "prob  label" lines
  auto [rc3, t3] = testing::run_command(mmclip + " classify " + R + kImages[0] + models + " --labels cat,dog --template 'a {} photo' --template 'art of a {}'");
  CHECK(rc3 == 0);
  CHECK(t3.find(R + kImages[0] + "\n  0.") != std::string::npos);
  std::remove(out.c_str());
}

TEST_CASE("mmclip search: an image finds itself; the index is reused and updated") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  const fs::path dir = tmp_path("search_dir");
  fs::remove_all(dir);
  fs::create_directories(dir / "sub");
  fs::copy_file(R + kImages[0], dir / "a.png");
  fs::copy_file(R + kImages[1], dir / "sub" / "b.PNG");
  fs::copy_file(R + kImages[2], dir / "c.png");
  std::ofstream(dir / "notes.txt") << "not an image";
  const std::string base = mmclip + " search " + dir.string() + " ";

  auto [rc1, t1] = testing::run_command(base + (dir / "sub" / "b.PNG").string() + models + " --json");
  REQUIRE_MESSAGE(rc1 == 0, t1);
  CHECK(t1.find("indexed 3 new, 0 cached") != std::string::npos);
  CHECK(fs::exists(dir / ".mmclip-index.safetensors"));
  const nlohmann::json r1 = nlohmann::json::parse(lines(t1).back());
  REQUIRE(r1["results"].size() == 3);
  CHECK(r1["image_query"] == true);
  CHECK(r1["results"][0]["path"] == (dir / "sub" / "b.PNG").string());
  CHECK(r1["results"][0]["score"].get<double>() == doctest::Approx(1.0).epsilon(1e-5));

  auto [rc2, t2] = testing::run_command(base + "'a photo of a cat'" + models + " --top 2");
  REQUIRE_MESSAGE(rc2 == 0, t2);
  CHECK(t2.find("indexed 0 new, 3 cached, 0 removed") != std::string::npos);
  CHECK(lines(t2).size() == 3);  // the status line and two results

  fs::copy_file(R + kImages[0], dir / "sub" / "d.jpg.png");
  auto [rc3, t3] = testing::run_command(base + (dir / "c.png").string() + models + " --json");
  REQUIRE_MESSAGE(rc3 == 0, t3);
  CHECK(t3.find("indexed 1 new, 3 cached, 0 removed") != std::string::npos);
  const nlohmann::json r3 = nlohmann::json::parse(lines(t3).back());
  CHECK(r3["results"].size() == 4);
  CHECK(r3["results"][0]["path"] == (dir / "c.png").string());

  fs::remove(dir / "a.png");
  auto [rc4, t4] = testing::run_command(base + "dog" + models);
  REQUIRE_MESSAGE(rc4 == 0, t4);
  CHECK(t4.find("indexed 0 new, 3 cached, 1 removed") != std::string::npos);

  // a changed file (c.png now holds b.PNG's image, a different size) is embedded again
  fs::copy_file(R + kImages[1], dir / "c.png", fs::copy_options::overwrite_existing);
  auto [rc5, t5] = testing::run_command(base + (dir / "sub" / "b.PNG").string() + models + " --json");
  REQUIRE_MESSAGE(rc5 == 0, t5);
  CHECK_MESSAGE(t5.find("indexed 1 new, 2 cached, 0 removed") != std::string::npos, t5);
  const nlohmann::json r5 = nlohmann::json::parse(lines(t5).back());
  REQUIRE(r5["results"].size() == 3);
  for (int i : {0, 1}) {  // b.PNG and the new c.png: the same image as the query
    CHECK(r5["results"][i]["score"].get<double>() == doctest::Approx(1.0).epsilon(1e-5));
    const std::string path = r5["results"][i]["path"];
    CHECK((path == (dir / "c.png").string() || path == (dir / "sub" / "b.PNG").string()));
  }
  fs::remove_all(dir);
}

TEST_CASE("mmclip tokenize --json matches clip.tokenize") {
  MM_REQUIRE_REFS("clip_vit_tiny_expected.safetensors");
  auto [rc, text] = testing::run_command(mmclip + " tokenize 'a photo of a cat' --json --vocab " + R + "bpe_simple_vocab_16e6.txt.gz");
  REQUIRE_MESSAGE(rc == 0, text);
  const nlohmann::json ids = nlohmann::json::parse(lines(text).at(0));
  const TensorFile expected = load_safetensors(testing::refs_path("clip_vit_tiny_expected.safetensors"));
  const std::vector<int64_t> want = expected.get("text_tokens").select(0, 0).contiguous().to_vector<int64_t>();
  CHECK(ids.get<std::vector<int64_t>>() == want);
  auto [rc2, t2] = testing::run_command(mmclip + " tokenize 'a photo of a cat' --context-length 4 --truncate --vocab " + R + "bpe_simple_vocab_16e6.txt.gz");
  CHECK(rc2 == 0);
  CHECK(t2 == "49406 320 1125 49407\n");
}

TEST_CASE("mmclip finds CLIP's vocabulary: $MM_VOCAB, next to the model, the cache folder; else says where it looked") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  MM_REQUIRE_REFS("bpe_simple_vocab_16e6.txt.gz");
  const std::string dir = "/tmp/mm_test_vocab_" + std::to_string(::getpid());
  const std::string model = dir + "/models/clip_vit_tiny.safetensors", cache = dir + "/cache";
  REQUIRE(std::system(("mkdir -p " + dir + "/models " + cache + "/mm && ln -s " + R + "clip_vit_tiny.safetensors " +
                       model).c_str()) == 0);
  // no --vocab, no MM_VOCAB, an empty cache folder
  const std::string env = "env -u MM_VOCAB XDG_CACHE_HOME=" + cache + " ";
  const std::string cmd = mmclip + " tokenize 'a photo of a cat' --model " + model;
  const std::string want = "49406 320 1125 539 320 2368 49407";
  auto [rc1, t1] = testing::run_command(env + cmd);
  CHECK(rc1 == 1);
  CHECK_MESSAGE(t1.find("CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) was not found") != std::string::npos, t1);
  CHECK_MESSAGE(t1.find(dir + "/models/bpe_simple_vocab_16e6.txt.gz") != std::string::npos, t1);
  CHECK_MESSAGE(t1.find(cache + "/mm/bpe_simple_vocab_16e6.txt.gz") != std::string::npos, t1);
  CHECK_MESSAGE(t1.find("weights_tools/download.sh vocab") != std::string::npos, t1);
  // $MM_VOCAB
  auto [rc2, t2] = testing::run_command("MM_VOCAB=" + R + "bpe_simple_vocab_16e6.txt.gz XDG_CACHE_HOME=" + cache + " " + cmd);
  CHECK_MESSAGE(rc2 == 0, t2);
  CHECK(t2.rfind(want, 0) == 0);
  auto [rc3, t3] = testing::run_command("MM_VOCAB=/nonexistent.gz " + cmd);
  CHECK(rc3 == 1);
  CHECK(t3.find("MM_VOCAB='/nonexistent.gz' cannot be read") != std::string::npos);
  // the cache folder
  REQUIRE(std::system(("ln -s " + R + "bpe_simple_vocab_16e6.txt.gz " + cache + "/mm/").c_str()) == 0);
  auto [rc4, t4] = testing::run_command(env + cmd);
  CHECK_MESSAGE(rc4 == 0, t4);
  CHECK(t4.rfind(want, 0) == 0);
  // next to the model (before the cache: a broken cache file would fail)
  REQUIRE(std::system(("rm " + cache + "/mm/bpe_simple_vocab_16e6.txt.gz && echo junk > " + cache +
                       "/mm/bpe_simple_vocab_16e6.txt.gz && ln -s " + R + "bpe_simple_vocab_16e6.txt.gz " + dir +
                       "/models/").c_str()) == 0);
  auto [rc5, t5] = testing::run_command(env + cmd);
  CHECK_MESSAGE(rc5 == 0, t5);
  CHECK(t5.rfind(want, 0) == 0);
  // Hugging Face's vocab.json + merges.txt: as --vocab, and beside the model
  const std::string hf = dir + "/hf";
  REQUIRE(std::system(("mkdir -p " + hf + " && ln -s " + R + "clip_vit_tiny.safetensors " + hf + "/model.safetensors")
                          .c_str()) == 0);
  std::ofstream(hf + "/vocab.json")
      << R"({"h": 0, "i": 1, "h</w>": 2, "i</w>": 3, "hi</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6})";
  std::ofstream(hf + "/merges.txt") << "#version: 0.2\nh i</w>\n";
  auto [rc6, t6] = testing::run_command(mmclip + " tokenize 'hi hi' --context-length 5 --vocab " + hf + "/vocab.json");
  CHECK_MESSAGE(rc6 == 0, t6);
  CHECK(t6 == "5 4 4 6 0\n");
  auto [rc7, t7] = testing::run_command(env + mmclip + " tokenize 'hi hi' --context-length 5 --model " + hf +
                                        "/model.safetensors");
  CHECK_MESSAGE(rc7 == 0, t7);
  CHECK(t7 == "5 4 4 6 0\n");
  REQUIRE(std::system(("rm " + hf + "/merges.txt").c_str()) == 0);
  auto [rc8, t8] = testing::run_command(mmclip + " tokenize 'hi' --vocab " + hf + "/vocab.json");
  CHECK(rc8 == 1);
  CHECK_MESSAGE(t8.find("needs merges.txt beside it") != std::string::npos, t8);
  REQUIRE(std::system(("rm -r " + dir).c_str()) == 0);
}

TEST_CASE("mmclip bad input: clear errors") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  const std::string img = " " + R + kImages[0];
  std::vector<std::pair<std::string, std::string>> cases = {
      {mmclip + " classify" + img + models, "--labels \"cat,dog,...\" or --labels-file FILE is required"},
      {mmclip + " classify /nonexistent.png" + models + " --labels cat,dog", "cannot read image '/nonexistent.png'"},
      {mmclip + " classify" + img + models + " --labels cat,dog --template 'a photo'", "has no {} for the label"},
      {mmclip + " frobnicate" + img, "unknown command 'frobnicate'"},
      {"MM_MODELS=/nonexistent " + mmclip + " embed --text cat --out /tmp/x.safetensors",
       "the default model 'clip_vit' is not at /nonexistent/clip_vit.safetensors"},
      {mmclip + " embed" + models + " --out /tmp/x.safetensors", "nothing to embed"},
      {mmclip + " embed" + models + " --image" + img, "--out FILE.safetensors is required"},
      {mmclip + " embed" + models + " --labels cat", "--labels does not apply"},
      {mmclip + " search /nonexistent_dir cat" + models, "is not a directory"},
      {mmclip + " search /nonexistent_dir " + R + "no_such_image.png" + models,
       "names an image file that does not exist"},
      {mmclip + " classify" + img + models + " --labels cat,dog --top zero", "--top expects an integer"},
      {mmclip + " tokenize x --device gpu", "--device must be cpu, cuda or auto, got 'gpu'"},
      {mmclip + " embed --text cat --out /tmp/x.safetensors --device cpu --precision bf16" + models,
       "--precision bf16 needs --device cuda"},
  };
  // Without a usable device, --device cuda says which of the two is missing.
  if (!mm::cuda_ops::device_present())
    cases.push_back({mmclip + " tokenize x --device cuda",
                     mm::cuda_ops::built() ? "no CUDA device is present" : "built without CUDA"});
  for (const auto& [cmd, message] : cases) {
    CAPTURE(cmd);
    auto [rc, text] = testing::run_command(cmd);
    CHECK(rc == 1);
    CHECK_MESSAGE(text.find("error: ") != std::string::npos, text);
    CHECK_MESSAGE(text.find(message) != std::string::npos, text);
  }
}

TEST_CASE("weights_tools/download.sh: --list and an unknown name (no download)") {
  const std::string script = "bash " MM_SOURCE_DIR "/weights_tools/download.sh";
  auto [rc, text] = testing::run_command(script + " --list");
  CHECK(rc == 0);
  for (const char* name : {"vocab", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336px", "RN50", "RN101", "RN50x4",
                           "RN50x16", "RN50x64", "vqgan-imagenet-f16-16384"})
    CHECK_MESSAGE(text.find(std::string(name) + "\n") != std::string::npos, name);
  auto [rc2, t2] = testing::run_command(script + " ViT-Z-99");
  CHECK(rc2 != 0);
  CHECK(t2.find("unknown name 'ViT-Z-99'") != std::string::npos);
}
