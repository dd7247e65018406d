// apps/common/clip_preprocess.cpp: CLIP's _transform on uint8 pixels (see clip_preprocess.h).
#include "apps/common/clip_preprocess.h"

#include <stb/stb_image.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "engine/error.h"
#include "engine/ops/resize.h"

namespace mm::apps {

namespace {

// PIL's DecompressionBombError limit: 2 * MAX_IMAGE_PIXELS (1024^3 / 4 / 3 = 89478485)
constexpr int64_t kMaxPixels = 2 * (int64_t{1024} * 1024 * 1024 / 4 / 3);
constexpr int64_t kMaxFileBytes = int64_t{1} << 30;   // stb_image reads from an int-sized buffer

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  MM_CHECK(in.good(), "cannot read image '", path, "': cannot open the file");
  const std::streamoff size = in.tellg();
  MM_CHECK(size >= 0 && size <= kMaxFileBytes, "cannot read image '", path, "': the file is ", size,
           " bytes, more than the 1 GiB limit");
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  in.read(bytes.data(), size);
  MM_CHECK(in.good() || size == 0, "cannot read image '", path, "': read error");
  return bytes;
}

bool starts_with(const std::string& s, const char* prefix, size_t n) { return s.size() >= n && std::memcmp(s.data(), prefix, n) == 0; }

// Header fields: byte i of the file (0 past its end), and n-byte little/big-endian unsigned ints.
uint64_t byte_at(const std::string& b, size_t i) { return i < b.size() ? static_cast<uint8_t>(b[i]) : 0; }
uint64_t le_at(const std::string& b, size_t i, int n) {
  uint64_t v = 0;
  for (int k = n - 1; k >= 0; --k) v = (v << 8) | byte_at(b, i + k);
  return v;
}
uint64_t be_at(const std::string& b, size_t i, int n) {
  uint64_t v = 0;
  for (int k = 0; k < n; ++k) v = (v << 8) | byte_at(b, i + k);
  return v;
}

// The mode PIL opens the file in, from its header (PNG IHDR colour type, BMP bit depth).
PilMode pil_mode(const std::string& bytes, int stbi_channels) {
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n", 8)) {
    const uint64_t depth = byte_at(bytes, 24), colour = byte_at(bytes, 25);  // IHDR: width, height, depth, colour type
    switch (colour) {
      case 0: return depth == 1 ? PilMode::palette : PilMode::L;  // 1-bit grey opens as "1"
      case 3: return PilMode::palette;
      case 4: return PilMode::LA;
      case 6: return PilMode::RGBA;
      default: return PilMode::RGB;
    }
  }
  if (starts_with(bytes, "GIF8", 4)) return PilMode::palette;
  if (starts_with(bytes, "BM", 2)) return le_at(bytes, 28, 2) <= 8 ? PilMode::palette : PilMode::RGB;
  if (starts_with(bytes, "\xff\xd8", 2)) return stbi_channels == 1 ? PilMode::L : PilMode::RGB;
  switch (stbi_channels) {
    case 1: return PilMode::L;
    case 2: return PilMode::LA;
    case 4: return PilMode::RGBA;
    default: return PilMode::RGB;
  }
}

int channels_of(PilMode m) {
  switch (m) {
    case PilMode::L: return 1;
    case PilMode::LA: return 2;
    case PilMode::RGBA: return 4;
    default: return 3;
  }
}

// Width and height from a PNG, GIF or BMP header, for files stb_image refuses to look at
// (it rejects PNGs over 2^30 bytes of pixels before reporting their size).
bool header_size(const std::string& bytes, int64_t& w, int64_t& h) {
  const auto bmp_side = [&](size_t i) { return std::llabs(static_cast<int32_t>(le_at(bytes, i, 4))); };
  if (bytes.size() >= 24 && starts_with(bytes, "\x89PNG\r\n\x1a\n", 8))
    w = static_cast<int64_t>(be_at(bytes, 16, 4)), h = static_cast<int64_t>(be_at(bytes, 20, 4));
  else if (bytes.size() >= 10 && starts_with(bytes, "GIF8", 4))
    w = static_cast<int64_t>(le_at(bytes, 6, 2)), h = static_cast<int64_t>(le_at(bytes, 8, 2));
  else if (bytes.size() >= 26 && starts_with(bytes, "BM", 2))
    w = bmp_side(18), h = bmp_side(22);
  else return false;
  return true;
}

void check_pixel_count(const std::string& path, int64_t w, int64_t h) {
  // (a top-down BMP reports a negative height; sides up to 2^32 from a PNG header: the
  // product is taken in 128 bits)
  w = std::llabs(w), h = std::llabs(h);
  MM_CHECK(w > 0 && h > 0, "cannot read image '", path, "': its header says ", w, "x", h, " pixels");
  MM_CHECK(static_cast<__int128>(w) * h <= kMaxPixels, "image '", path, "' is ", w, "x", h, " = ", static_cast<double>(w) * h,
           " pixels, more than PIL's limit of ", kMaxPixels, ": refusing a possible decompression bomb");
}

// stb_image fills a JPEG cut short with grey instead of failing; PIL refuses it ("image file
// is truncated"). A whole JPEG has an EOI marker (FF D9) after its last start-of-scan (FF DA);
// entropy-coded data cannot contain either (FF is stuffed as FF 00).
bool jpeg_truncated(const std::string& bytes) {
  const size_t sos = bytes.rfind("\xff\xda", std::string::npos, 2);
  const size_t eoi = bytes.rfind("\xff\xd9", std::string::npos, 2);
  return sos == std::string::npos || eoi == std::string::npos || eoi < sos;
}

// stb_image also reads past the end of a BMP or GIF as zeros. An uncompressed BMP (BI_RGB or
// BI_BITFIELDS) needs its rows (4-byte aligned) after the pixel-data offset; a GIF's first
// frame needs every block up to its image data's terminating empty sub-block.
// Returns a description of what is missing, or "" when complete (or not checkable).
std::string bmp_gif_truncated(const std::string& bytes) {
  const auto u8 = [&](size_t i) { return byte_at(bytes, i); };
  const auto le16 = [&](size_t i) { return le_at(bytes, i, 2); };
  const auto le32 = [&](size_t i) { return le_at(bytes, i, 4); };
  if (starts_with(bytes, "BM", 2) && bytes.size() >= 34) {
    const uint64_t offset = le32(10), header = le32(14);
    if (header < 40) return "";  // the old OS/2 header: not checked
    const int64_t w = static_cast<int32_t>(le32(18)), h = static_cast<int32_t>(le32(22));
    const uint64_t bpp = le16(28), compression = le32(30);
    if (compression != 0 && compression != 3) return "";  // RLE: stb checks as it decodes
    const uint64_t row = (static_cast<uint64_t>(std::llabs(w)) * bpp + 31) / 32 * 4;
    const uint64_t need = offset + row * static_cast<uint64_t>(std::llabs(h));
    if (bytes.size() < need) return str_cat("the BMP's pixels need ", need, " bytes, the file has ", bytes.size());
    return "";
  }
  if (starts_with(bytes, "GIF8", 4)) {
    const std::string cut = "the GIF ends inside its first frame";
    size_t at = 13;
    if (bytes.size() < at) return cut;
    if (u8(10) & 0x80) at += 3 * (size_t{2} << (u8(10) & 7));  // global colour table
    auto skip_sub_blocks = [&]() {  // at -> after the terminating empty sub-block, or npos
      while (at < bytes.size()) {
        const size_t n = u8(at);
        at += 1 + n;
        if (n == 0) return true;
      }
      return false;
    };
    while (at < bytes.size()) {
      const uint64_t block = u8(at);
      if (block == 0x21) {  // extension: label, sub-blocks
        at += 2;
        if (!skip_sub_blocks()) return cut;
      } else if (block == 0x2c) {  // image: descriptor, local colour table, LZW size, data
        if (at + 10 > bytes.size()) return cut;
        const uint64_t flags = u8(at + 9);
        at += 10;
        if (flags & 0x80) at += 3 * (size_t{2} << (flags & 7));
        at += 1;  // LZW minimum code size
        return skip_sub_blocks() ? "" : cut;
      } else {
        return "";  // the trailer or something stb will judge
      }
    }
    return cut;
  }
  return "";
}

// Pillow's ImagingScaleAffine, which Image.resize uses for NEAREST: the source coordinate
// starts at scale/2 and is advanced by adding scale (in double), then truncated.
std::vector<int64_t> pil_nearest_index(int64_t in, int64_t out) {
  std::vector<int64_t> index(static_cast<size_t>(out));
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  double pos = scale * 0.5;
  for (int64_t i = 0; i < out; ++i, pos += scale) index[i] = std::min<int64_t>(static_cast<int64_t>(pos), in - 1);
  return index;
}

Tensor resize_nearest_like_pil(const Tensor& image, int64_t out_h, int64_t out_w) {
  const int64_t W = image.size(1), C = image.size(2);
  const std::vector<int64_t> iy = pil_nearest_index(image.size(0), out_h), ix = pil_nearest_index(W, out_w);
  Tensor out = Tensor::empty({out_h, out_w, C}, DType::u8);
  const uint8_t* src = image.data<uint8_t>();
  uint8_t* dst = out.data<uint8_t>();
  for (int64_t y = 0; y < out_h; ++y)
    for (int64_t x = 0; x < out_w; ++x)
      for (int64_t c = 0; c < C; ++c) dst[(y * out_w + x) * C + c] = src[(iy[y] * W + ix[x]) * C + c];
  return out;
}

// Pillow's RGBA -> RGBa (and LA -> La): colour * alpha / 255 with its MULDIV255 rounding.
// `image` uint8 [H, W, C], alpha in the last channel; returns a premultiplied copy.
Tensor premultiply_like_pil(const Tensor& image) {
  Tensor out = image.clone();
  const int64_t C = image.size(2), n = image.size(0) * image.size(1);
  uint8_t* p = out.data<uint8_t>();
  for (int64_t i = 0; i < n; ++i, p += C) {
    const uint32_t alpha = p[C - 1];
    for (int64_t c = 0; c + 1 < C; ++c) {
      const uint32_t t = p[c] * alpha + 128;
      p[c] = static_cast<uint8_t>(((t >> 8) + t) >> 8);
    }
  }
  return out;
}

// Pillow's RGBa -> RGBA (and La -> LA): clip8(255 * colour / alpha), unchanged where alpha is 0 or 255.
void unpremultiply_like_pil(Tensor& image) {
  const int64_t C = image.size(2), n = image.size(0) * image.size(1);
  uint8_t* p = image.data<uint8_t>();
  for (int64_t i = 0; i < n; ++i, p += C) {
    const uint32_t alpha = p[C - 1];
    if (alpha == 0 || alpha == 255) continue;
    for (int64_t c = 0; c + 1 < C; ++c) p[c] = static_cast<uint8_t>(std::min<uint32_t>(255, 255 * p[c] / alpha));
  }
}

}  // namespace

DecodedImage decode_image(const std::string& path) {
  const std::string bytes = read_file(path);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, c = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &c)) {
    const char* reason = stbi_failure_reason();
    int64_t hw = 0, hh = 0;
    if (header_size(bytes, hw, hh)) check_pixel_count(path, hw, hh);
    throw Error(str_cat("cannot read image '", path, "': ", reason ? reason : "not a PNG, JPEG, BMP or GIF file"));
  }
  check_pixel_count(path, w, h);
  MM_CHECK(!(starts_with(bytes, "\xff\xd8", 2) && jpeg_truncated(bytes)), "cannot decode image '", path,
           "': the JPEG is truncated (no end-of-image marker after its last scan)");
  const std::string cut = bmp_gif_truncated(bytes);
  MM_CHECK(cut.empty(), "cannot decode image '", path, "': truncated (", cut, ")");
  DecodedImage out;
  out.mode = pil_mode(bytes, c);
  const int channels = channels_of(out.mode);
  unsigned char* pixels = stbi_load_from_memory(data, len, &w, &h, &c, channels);
  MM_CHECK(pixels != nullptr, "cannot decode image '", path, "': corrupt or truncated file (stb_image: ",
           stbi_failure_reason() ? stbi_failure_reason() : "no reason given", ")");
  out.pixels = Tensor::empty({h, w, channels}, DType::u8);
  std::memcpy(out.pixels.data<uint8_t>(), pixels, static_cast<size_t>(h) * w * channels);
  stbi_image_free(pixels);
  return out;
}

std::pair<int64_t, int64_t> clip_resized_size(int64_t h, int64_t w, int64_t resolution) {
  // torchvision: short, long = (w, h) if w <= h else (h, w); new_long = int(R * long / short)
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const auto new_long = static_cast<int64_t>(static_cast<double>(resolution * longer) / static_cast<double>(shorter));
  return w <= h ? std::pair<int64_t, int64_t>{new_long, resolution} : std::pair<int64_t, int64_t>{resolution, new_long};
}

Tensor clip_resize_crop_rgb(const DecodedImage& image, int64_t resolution, Alpha alpha) {
  MM_CHECK(resolution >= 1, "[clip_preprocess] resolution must be >= 1, got ", resolution);
  Tensor px = image.pixels.contiguous();
  const int64_t H = px.size(0), W = px.size(1), C = px.size(2);
  MM_CHECK(C == channels_of(image.mode), "[clip_preprocess] ", px.str(), " does not match its mode's channel count");
  // 1. Resize(R, BICUBIC), in the image's own mode.
  const auto [h, w] = clip_resized_size(H, W, resolution);
  if (h != H || w != W) {
    if (image.mode == PilMode::palette) {
      px = resize_nearest_like_pil(px, h, w);
    } else if (image.mode == PilMode::LA || image.mode == PilMode::RGBA) {
      px = resize_uint8_like_pil(premultiply_like_pil(px), h, w, ResizeFilter::bicubic);
      unpremultiply_like_pil(px);
    } else {
      px = resize_uint8_like_pil(px, h, w, ResizeFilter::bicubic);
    }
  }
  // 2. CenterCrop(R): std::nearbyint rounds half to even, as Python's round.
  const auto top = static_cast<int64_t>(std::nearbyint((h - resolution) / 2.0));
  const auto left = static_cast<int64_t>(std::nearbyint((w - resolution) / 2.0));
  // 3. convert("RGB"): the first three channels, or grey (channel 0) three times; alpha dropped.
  Tensor out = Tensor::empty({resolution, resolution, 3}, DType::u8);
  const uint8_t* src = px.data<uint8_t>();
  uint8_t* dst = out.data<uint8_t>();
  const bool grey = C <= 2, has_alpha = C == 2 || C == 4;
  for (int64_t y = 0; y < resolution; ++y)
    for (int64_t x = 0; x < resolution; ++x) {
      const uint8_t* s = src + ((top + y) * w + left + x) * C;
      const float a = has_alpha && alpha == Alpha::white ? s[C - 1] / 255.0f : 1.0f;
      for (int k = 0; k < 3; ++k) {
        const uint8_t v = grey ? s[0] : s[k];
        dst[(y * resolution + x) * 3 + k] =
            a == 1.0f ? v : static_cast<uint8_t>(std::lround(a * v + (1.0f - a) * 255.0f));
      }
    }
  return out;
}

Tensor clip_normalize(const Tensor& rgb_u8) {
  MM_CHECK(rgb_u8.dim() == 3 && rgb_u8.size(2) == 3 && rgb_u8.dtype() == DType::u8,
           "[clip_normalize] expects uint8 [H, W, 3], got ", rgb_u8.str());
  const Tensor img = rgb_u8.contiguous();
  const int64_t hw = img.size(0) * img.size(1);
  Tensor out = Tensor::empty({3, img.size(0), img.size(1)});
  const uint8_t* s = img.data<uint8_t>();
  float* o = out.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < hw; ++i) {
      const float v = static_cast<float>(s[i * 3 + c]) / 255.0f;  // ToTensor: float32 division
      o[c * hw + i] = (v - kClipMean[c]) / kClipStd[c];            // Normalize: sub_, then div_
    }
  return out;
}

Tensor clip_preprocess_file(const std::string& path, int64_t resolution, Alpha alpha) {
  return clip_normalize(clip_resize_crop_rgb(decode_image(path), resolution, alpha));
}

}  // namespace mm::apps
