// apps/common/image_io.h: PNG/JPEG in and out for the apps, via Debian's stb_image.
// Reading order: apps/. Images travel as float32 tensors [3, H, W] with values in [0, 1].
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace mm::apps {

// Decodes PNG/JPEG/BMP/GIF (first frame) to RGB float [3, H, W] in [0, 1], as PIL's
// convert('RGB'): grey repeated, alpha dropped. Errors as decode_image (clip_preprocess.h).
Tensor load_image_rgb(const std::string& path);
// Writes a [3, H, W] float image (clamped to [0, 1], rounded to 8 bits) as PNG, with
// optional UTF-8 text chunks (iTXt: keyword, text), e.g. the prompt and settings.
void save_png(const std::string& path, const Tensor& image,
              const std::vector<std::pair<std::string, std::string>>& text = {});

}  // namespace mm::apps
