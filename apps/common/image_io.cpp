// apps/common/image_io.cpp: images in (through clip_preprocess's checked decode_image) and PNGs
// out (stb_image_write, with text chunks), with clear errors naming the file.
#include "apps/common/image_io.h"

#include <stb/stb_image_write.h>

#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <vector>

#include "apps/common/clip_preprocess.h"
#include "engine/error.h"

namespace mm::apps {

Tensor load_image_rgb(const std::string& path) {
  // decode_image's checks (truncated files, decompression bombs), then PIL's convert('RGB'):
  // grey is repeated, alpha dropped (palettes are already looked up).
  const DecodedImage d = decode_image(path);
  const Tensor px = d.pixels.contiguous();
  const int64_t h = px.size(0), w = px.size(1), C = px.size(2), hw = h * w;
  const uint8_t* p = px.data<uint8_t>();
  Tensor out = Tensor::empty({3, h, w});
  float* o = out.data<float>();
  for (int64_t i = 0; i < hw; ++i)
    for (int64_t k = 0; k < 3; ++k) o[k * hw + i] = p[i * C + (C >= 3 ? k : 0)] / 255.0f;
  return out;
}

namespace {

void append_be32(std::string& out, uint32_t v) {
  for (int k = 3; k >= 0; --k) out.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
}

// An iTXt chunk (PNG spec 11.3.4.5): keyword, 0, flag 0, method 0, empty language and
// translated keyword, UTF-8 text; CRC over type and data (zlib's crc32).
std::string itxt_chunk(const std::string& keyword, const std::string& text) {
  std::string data = keyword.substr(0, 79);
  data.push_back('\0');
  data.push_back('\0');
  data.push_back('\0');
  data.push_back('\0');
  data.push_back('\0');
  data += text;
  std::string chunk;
  append_be32(chunk, static_cast<uint32_t>(data.size()));
  std::string body = "iTXt" + data;
  chunk += body;
  append_be32(chunk, static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  return chunk;
}

void collect(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

}  // namespace

void save_png(const std::string& path, const Tensor& image, const std::vector<std::pair<std::string, std::string>>& text) {
  MM_CHECK(image.dim() == 3 && image.size(0) == 3, "[save_png] expects an image [3, H, W], got ", image.str());
  Tensor img = image.detach().to(DType::f32).contiguous();
  const int64_t h = img.size(1), w = img.size(2), hw = h * w;
  std::vector<unsigned char> px(static_cast<size_t>(hw * 3));
  const float* p = img.data<float>();
  for (int64_t i = 0; i < hw; ++i)
    for (int k = 0; k < 3; ++k) {
      const float v = std::isnan(p[k * hw + i]) ? 0.f : std::fmin(1.f, std::fmax(0.f, p[k * hw + i]));
      px[i * 3 + k] = static_cast<unsigned char>(std::lround(v * 255.0f));
    }
  std::string png;
  MM_CHECK(stbi_write_png_to_func(collect, &png, static_cast<int>(w), static_cast<int>(h), 3, px.data(),
                                  static_cast<int>(w * 3)) != 0,
           "cannot encode PNG for '", path, "'");
  if (!text.empty()) {
    const size_t after_ihdr = 8 + 25;  // signature, then the 13-byte IHDR chunk
    std::string chunks;
    for (const auto& [k, v] : text) chunks += itxt_chunk(k, v);
    png.insert(after_ihdr, chunks);
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    MM_CHECK(out.good(), "cannot write PNG '", path, "'");
    out.write(png.data(), static_cast<std::streamsize>(png.size()));
    MM_CHECK(out.good(), "error while writing PNG '", path, "' (disk full?)");
  }
  MM_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path, "'");
}

}  // namespace mm::apps
