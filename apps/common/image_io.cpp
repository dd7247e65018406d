// apps/common/image_io.cpp: stb_image decode/encode with clear errors naming the file.
#include "apps/common/image_io.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <cmath>
#include <vector>

#include "engine/error.h"

namespace mm::apps {

Tensor load_image_rgb(const std::string& path) {
  int w = 0, h = 0, c = 0;
  if (!stbi_info(path.c_str(), &w, &h, &c))
    throw Error(str_cat("cannot read image '", path, "': ", stbi_failure_reason() ? stbi_failure_reason() : "unknown format"));
  MM_CHECK(static_cast<int64_t>(w) * h <= (int64_t{1} << 28), "image '", path, "' is ", w, "x", h,
           ": larger than the 2^28-pixel limit (a decompression bomb?)");
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &c, 3);
  MM_CHECK(data != nullptr, "cannot decode image '", path, "': ", stbi_failure_reason());
  Tensor out = Tensor::empty({3, h, w});
  float* o = out.data<float>();
  const int64_t hw = static_cast<int64_t>(h) * w;
  for (int64_t i = 0; i < hw; ++i)
    for (int k = 0; k < 3; ++k) o[k * hw + i] = data[i * 3 + k] / 255.0f;
  stbi_image_free(data);
  return out;
}

void save_png(const std::string& path, const Tensor& image) {
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
  MM_CHECK(stbi_write_png(path.c_str(), static_cast<int>(w), static_cast<int>(h), 3, px.data(),
                          static_cast<int>(w * 3)) != 0,
           "cannot write PNG '", path, "'");
}

}  // namespace mm::apps
