#!/usr/bin/python3
"""tests/engine/resize_refs.py: prints the reference values embedded in test_resize.cpp.

Needs Debian's Pillow and torch (python3-pil, python3-torch) under /usr/bin/python3:
  /usr/bin/python3 tests/engine/resize_refs.py > /tmp/refs.txt
Generated with Pillow 9.4.0 and torch 1.13. The inputs are formulas the C++ test repeats:
  uint8 image  img[y, x, c] = (x*37 + y*91 + c*53 + (x*y*7) % 29) % 256     (H, W, 3)
  float image  f[c, y, x]   = ((y*7 + x*13 + c*5) % 17) / 16 - 0.5          (1, C, H, W)
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def u8_image(h, w):
    img = np.zeros((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                img[y, x, c] = (x * 37 + y * 91 + c * 53 + (x * y * 7) % 29) % 256
    return img


def f_image(c, h, w):
    f = np.zeros((1, c, h, w), np.float32)
    for k in range(c):
        for y in range(h):
            for x in range(w):
                f[0, k, y, x] = ((y * 7 + x * 13 + k * 5) % 17) / 16 - 0.5
    return f


def fmt(v):
    return "%.9g" % v


FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "box": Image.BOX}

print("// PIL uint8 RGB: name, in HxW, out HxW, values (out_h * out_w * 3)")
for (h, w, oh, ow) in [(5, 7, 2, 3), (11, 13, 4, 5), (3, 4, 7, 9)]:
    for name, f in FILTERS.items():
        out = np.asarray(Image.fromarray(u8_image(h, w)).resize((ow, oh), f))
        print(f"{{\"{name}\", {h}, {w}, {oh}, {ow}, {{{', '.join(str(v) for v in out.reshape(-1))}}}}},")

print("// PIL uint8 RGB, larger: name, in HxW, out HxW, checksum sum_i (i % 251 + 1) * v_i")
for (h, w, oh, ow) in [(37, 50, 16, 21), (40, 30, 224, 168), (300, 400, 224, 298)]:
    for name, f in FILTERS.items():
        out = np.asarray(Image.fromarray(u8_image(h, w)).resize((ow, oh), f)).reshape(-1).astype(np.int64)
        checksum = int(((np.arange(out.size) % 251 + 1) * out).sum())
        print(f"{{\"{name}\", {h}, {w}, {oh}, {ow}, {checksum}}},")

print("// PIL float (mode F), single channel: name, in HxW, out HxW, values")
for (h, w, oh, ow) in [(5, 7, 2, 3), (3, 4, 7, 9)]:
    for name, f in FILTERS.items():
        img = Image.fromarray(f_image(1, h, w)[0, 0], mode="F")
        out = np.asarray(img.resize((ow, oh), f), dtype=np.float32)
        print(f"{{\"{name}\", {h}, {w}, {oh}, {ow}, {{{', '.join(fmt(v) for v in out.reshape(-1).tolist())}}}}},")

print("// torch F.interpolate(align_corners=False), C=2: mode, antialias, in HxW, out HxW, values")
for (h, w, oh, ow) in [(5, 7, 2, 3), (3, 4, 7, 9), (6, 5, 4, 8)]:
    x = torch.from_numpy(f_image(2, h, w)).double()
    for mode, aa in [("bilinear", False), ("bicubic", False), ("area", False), ("bilinear", True),
                     ("bicubic", True)]:
        kw = {} if mode == "area" else {"align_corners": False, "antialias": aa}
        out = F.interpolate(x, size=(oh, ow), mode=mode, **kw)
        print(f"{{\"{mode}\", {str(aa).lower()}, {h}, {w}, {oh}, {ow}, "
              f"{{{', '.join(fmt(v) for v in out.reshape(-1).tolist())}}}}},")

print("// torch nearest, C=2, in 5x7: out size or scale_factor, out HxW, values")
x = torch.from_numpy(f_image(2, 5, 7)).double()
for kw in [{"size": (8, 11)}, {"size": (3, 4)}, {"scale_factor": 1.7}, {"scale_factor": 2.0}]:
    out = F.interpolate(x, mode="nearest", **kw)
    print(f"// {kw}\n{{{out.shape[2]}, {out.shape[3]}, {{{', '.join(fmt(v) for v in out.reshape(-1).tolist())}}}}},")
