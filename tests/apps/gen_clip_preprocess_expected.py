# tests/apps/gen_clip_preprocess_expected.py: the expected values embedded in test_mmclip.cpp's
# preprocessing cases, made once with Debian's Pillow 9.4 (python3-pil) following CLIP's
# _transform step by step (torchvision is not in Debian, so its Resize size rule and
# CenterCrop arithmetic are written out here exactly as torchvision computes them).
# Run: /usr/bin/python3 tests/apps/gen_clip_preprocess_expected.py
import numpy as np
from PIL import Image

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def pattern(h, w, c):
    # the same integer pattern as test_mmclip.cpp's make_pattern()
    y, x, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return ((x * 7 + y * 13 + k * 50 + ((x * y) % 17) * 5) & 255).astype(np.uint8)


def clip_transform_u8(img, r):
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = r, int(r * long / short)          # torchvision _compute_resized_output_size
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - r) / 2.0)), int(round((new_w - r) / 2.0))  # CenterCrop
    img = img.crop((left, top, left + r, top + r)).convert("RGB")
    return np.asarray(img)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data.tobytes():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def report(name, img, r):
    out = clip_transform_u8(img, r)
    x = (out.astype(np.float32) / np.float32(255) - MEAN) / STD
    print(f'{{"{name}", {img.size[1]}, {img.size[0]}, {r}, 0x{fnv1a64(out):016x}ull, {int(out.sum())}, '
          f'{x[r // 2, r // 3, 1]:.9g}f}},')


if __name__ == "__main__":
    for (h, w) in [(61, 97), (80, 45)]:
        for r in [64, 23, 26, 32, 16]:
            report("rgb", Image.fromarray(pattern(h, w, 3), "RGB"), r)
        report("rgba", Image.fromarray(pattern(h, w, 4), "RGBA"), 32)
        report("la", Image.fromarray(pattern(h, w, 2), "LA"), 32)
        report("l", Image.fromarray(pattern(h, w, 1)[:, :, 0], "L"), 32)
        p = Image.fromarray(pattern(h, w, 1)[:, :, 0] % 16, "P")
        p.putpalette([v for i in range(16) for v in ((i * 37) & 255, (i * 91) & 255, (i * 53 + 7) & 255)])
        report("palette", p, 32)
        report("palette", p, 23)
