// apps/common/clip_preprocess.h: CLIP's image preprocessing, value for value the same as
// clip.clip._transform(R) on a PIL image (Pillow 9.4 + torchvision):
//   Image.open(path) -> Resize(R, BICUBIC) -> CenterCrop(R) -> convert("RGB") -> ToTensor -> Normalize
// Reading order: apps/, after image_io.h; mmclip uses it. Test: ctest --test-dir build -R test_mmclip
//
//   mm::Tensor px = mm::apps::clip_preprocess_file("cat.jpg", 224);   // float32 [3, 224, 224]
//   clip.encode_image(mm::stack({px}, 0));                            // [1, E]
//
// The steps, as CLIP runs them (note that RGB conversion comes after resizing):
//   1. Resize: the shorter side becomes R, the other int(R * long / short), truncated as
//      torchvision's _compute_resized_output_size does; nothing happens when the size is
//      unchanged (an R x R image, or one whose shorter side is already R).
//      PIL resamples in the file's own mode: L and RGB bicubic (resize_uint8_like_pil);
//      LA and RGBA bicubic on premultiplied alpha (La/RGBa), then un-premultiplied;
//      palette ("P") and 1-bit ("1") images with NEAREST, whatever filter is asked for.
//   2. CenterCrop(R): top = int(round((h - R) / 2.0)) (Python's round: half to even), left alike.
//   3. convert("RGB"): grey is repeated, alpha is dropped (not composited), a palette is looked up.
//   4. ToTensor + Normalize in float32: (v / 255 - mean[c]) / std[c].
//
// Known differences from PIL (rare inputs): JPEGs are decoded by stb_image, not libjpeg, so
// pixels can differ by a few levels; a GIF's transparent pixels come out black (PIL shows the
// palette colour); 16-bit greyscale PNGs are scaled to 8 bits (PIL clips them); palette images
// whose palette is the identity grey ramp are "L" in PIL (bicubic) but resized NEAREST here.
#pragma once
#include <cstdint>
#include <string>
#include <utility>

#include "engine/tensor.h"
#include "models/clip.h"  // kClipMean, kClipStd

namespace mm::apps {

// The PIL mode a file opens in, which decides how it is resized.
enum class PilMode { L, LA, RGB, RGBA, palette };  // palette also stands for 1-bit "1"

struct DecodedImage {
  Tensor pixels;  // uint8 [H, W, C]: C = 1 (L), 2 (LA), 3 (RGB, palette looked up), 4 (RGBA)
  PilMode mode = PilMode::RGB;
};

// Decodes PNG/JPEG/BMP/GIF (first frame) with stb_image, keeping the channels PIL would keep.
// Unreadable, truncated or over-large (PIL's decompression-bomb limit, 178956970 pixels) files are an
// mm::Error naming the file.
DecodedImage decode_image(const std::string& path);

// torchvision's Resize(R) output size {h', w'}: the shorter side becomes R.
std::pair<int64_t, int64_t> clip_resized_size(int64_t h, int64_t w, int64_t resolution);

// What step 3 does with transparency. OpenAI's CLIP drops alpha (PIL's convert("RGB"));
// mm-mini was trained on images composited on white, and gets them the same way here.
enum class Alpha { drop, white };

// Steps 1-3: uint8 RGB [R, R, 3]. With Alpha::white, colour = round(a c + (1 - a) 255) after
// the resize and crop (data/emoji_dataset.h's compositing, to 8 bits).
Tensor clip_resize_crop_rgb(const DecodedImage& image, int64_t resolution, Alpha alpha = Alpha::drop);

// Step 4: uint8 [H, W, 3] -> float32 [3, H, W], normalised with kClipMean / kClipStd.
Tensor clip_normalize(const Tensor& rgb_u8);

// All of it: a file -> float32 [3, R, R], ready to stack into encode_image's input.
Tensor clip_preprocess_file(const std::string& path, int64_t resolution, Alpha alpha = Alpha::drop);

}  // namespace mm::apps
