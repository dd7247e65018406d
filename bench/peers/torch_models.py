#!/usr/bin/python3
"""bench/peers/torch_models.py: the PyTorch peers for mmbench's model benchmarks (on the CPU
run by bench/compare_models.sh, on the GPU by bench/device_check.sh), with random weights of
the real shapes:

  clip-image       ViT-B/32 encode_image (OpenAI CLIP's VisionTransformer, written out here)
  vqgan-clip-step  one VQGAN+CLIP step as the notebooks do it: straight-through quantise,
                   taming's f16-16384 decoder, clamp, cutouts resized by area with flips and
                   noise, CLIP ViT-B/32, spherical loss, backward, Adam
  /usr/bin/python3 bench/peers/torch_models.py clip-image --batch 8 --threads 2
  /usr/bin/python3 bench/peers/torch_models.py vqgan-clip-step --size 256 --cutn 8 --threads 2
  python3 bench/peers/torch_models.py vqgan-clip-step --device cuda --size 512 --cutn 32
  python3 bench/peers/torch_models.py clip-image --device cuda --batch 256 --dtype fp16
Prints one JSON line like mmbench --json. Eager mode, float32 unless --dtype fp16 (clip-image),
torch.no_grad for clip-image. On cuda: times after synchronising, TF32 off, and the step's peak
of torch's caching allocator (max_memory_allocated, the counterpart of mm's allocator peak).
The architectures follow clip/model.py and taming/modules/diffusionmodules/model.py; only
what the timing needs is here (no weight loading).
"""
import argparse, json, math, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F


def median_ms(fn, repeat, sync=lambda: None):
    t0, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - t0 < 0.2:
        fn(); n += 1
    sync()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); sync(); ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


class Block(nn.Module):  # CLIP's ResidualAttentionBlock, [T, B, D] layout
    def __init__(s, d, h):
        super().__init__()
        s.attn, s.ln_1, s.ln_2 = nn.MultiheadAttention(d, h), nn.LayerNorm(d), nn.LayerNorm(d)
        s.c_fc, s.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(s, x):
        h = s.ln_1(x)
        x = x + s.attn(h, h, h, need_weights=False)[0]
        h = s.c_fc(s.ln_2(x))
        return x + s.c_proj(h * torch.sigmoid(1.702 * h))


class ViT(nn.Module):  # ViT-B/32 image tower
    def __init__(s, width=768, layers=12, heads=12, patch=32, res=224, out=512):
        super().__init__()
        s.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        s.cls = nn.Parameter(torch.randn(width) * 0.02)
        s.pos = nn.Parameter(torch.randn((res // patch) ** 2 + 1, width) * 0.02)
        s.ln_pre, s.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        s.blocks = nn.Sequential(*[Block(width, heads) for _ in range(layers)])
        s.proj = nn.Parameter(torch.randn(width, out) * 0.02)

    def forward(s, x):
        x = s.conv1(x).flatten(2).permute(0, 2, 1)
        x = torch.cat([s.cls + x.new_zeros(x.shape[0], 1, x.shape[-1]), x], 1) + s.pos
        x = s.blocks(s.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return s.ln_post(x[:, 0]) @ s.proj


def norm(c): return nn.GroupNorm(32, c, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(s, cin, cout):
        super().__init__()
        s.norm1, s.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        s.norm2, s.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        s.nin = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(s, x):
        h = s.conv1(F.silu(s.norm1(x)))
        h = s.conv2(F.silu(s.norm2(h)))
        return (s.nin(x) if s.nin is not None else x) + h


class AttnBlock(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.norm = norm(c)
        s.q, s.k, s.v, s.proj = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(s, x):
        h = s.norm(x); b, c, hh, ww = h.shape
        q = s.q(h).reshape(b, c, -1).permute(0, 2, 1); k = s.k(h).reshape(b, c, -1); v = s.v(h).reshape(b, c, -1)
        w = torch.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)
        return x + s.proj(torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww))


class Decoder(nn.Module):  # taming's Decoder for ch 128, ch_mult (1,1,2,2,4), 2 res blocks, attn at 16
    def __init__(s, ch=128, mult=(1, 1, 2, 2, 4), nres=2, z=256, attn_levels=(4,)):
        super().__init__()
        bi = ch * mult[-1]
        s.conv_in = nn.Conv2d(z, bi, 3, 1, 1)
        s.mid = nn.Sequential(ResnetBlock(bi, bi), AttnBlock(bi), ResnetBlock(bi, bi))
        ups = []
        for lvl in reversed(range(len(mult))):
            bo = ch * mult[lvl]
            for _ in range(nres + 1):
                ups.append(ResnetBlock(bi, bo)); bi = bo
                if lvl in attn_levels: ups.append(AttnBlock(bi))
            if lvl != 0: ups.append(nn.Upsample(scale_factor=2, mode="nearest")); ups.append(nn.Conv2d(bi, bi, 3, 1, 1))
        s.up = nn.Sequential(*ups)
        s.norm_out, s.conv_out = norm(bi), nn.Conv2d(bi, 3, 3, 1, 1)

    def forward(s, zq):
        return s.conv_out(F.silu(s.norm_out(s.up(s.mid(s.conv_in(zq))))))


class ReplaceGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b): return a

    @staticmethod
    def backward(ctx, g): return None, g


class ClampWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x); ctx.lo, ctx.hi = lo, hi
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * (g * (x - x.clamp(ctx.lo, ctx.hi)) >= 0), None, None


def vqgan_clip_step(size, cutn, dev="cpu"):
    for p in (dec := Decoder().to(dev)).parameters(): p.requires_grad_(False)
    for p in (clip := ViT().to(dev)).parameters(): p.requires_grad_(False)
    post_quant = nn.Conv2d(256, 256, 1).to(dev).requires_grad_(False)
    codebook = torch.randn(16384, 256, device=dev) * 0.02
    target = F.normalize(torch.randn(1, 512, device=dev), dim=1)
    t = size // 16
    z = (codebook[torch.randint(16384, (t * t,), device=dev)].reshape(1, t, t, 256).permute(0, 3, 1, 2)).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=dev).view(1, 3, 1, 1)

    def step():
        opt.zero_grad()
        zf = z.permute(0, 2, 3, 1).reshape(-1, 256)
        d = zf.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * zf @ codebook.T
        zq = codebook[d.argmin(1)].reshape(1, t, t, 256).permute(0, 3, 1, 2)
        zq = ReplaceGrad.apply(zq, z)
        img = ClampWithGrad.apply((dec(post_quant(zq)) + 1) / 2, 0, 1)
        cuts = []
        for _ in range(cutn):
            s = int(torch.rand([]) * (size - 224) + 224)
            ox, oy = torch.randint(0, size - s + 1, ()), torch.randint(0, size - s + 1, ())
            cuts.append(F.adaptive_avg_pool2d(img[:, :, oy:oy + s, ox:ox + s], 224))
        batch = torch.cat(cuts)
        flip = torch.rand(cutn, device=dev) < 0.5
        batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)
        batch = batch + torch.rand(cutn, 1, 1, 1, device=dev) * 0.1 * torch.randn_like(batch)
        f = F.normalize(clip((batch - mean) / std), dim=1)
        loss = ((f - target).norm(dim=1).div(2).arcsin().pow(2).mul(2)).mean()
        loss.backward(); opt.step()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kernel", choices=["clip-image", "vqgan-clip-step"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cutn", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="clip-image only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev, extra, sync = a.device, {}, (lambda: None)
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        sync = torch.cuda.synchronize
        extra["gpu"] = torch.cuda.get_device_name()
    if a.kernel == "clip-image":
        dtype = torch.float16 if a.dtype == "fp16" else torch.float32
        vit = ViT().to(dev, dtype).eval()
        x = torch.randn(a.batch, 3, 224, 224, device=dev, dtype=dtype)
        with torch.no_grad():
            ms = median_ms(lambda: vit(x), a.repeat, sync)
        print(json.dumps({"kernel": "clip-image", "impl": "torch", "device": dev, "dtype": a.dtype, "model": "ViT-B/32",
                          "batch": a.batch, "threads": a.threads, "ms": ms, "ms_per_image": ms / a.batch,
                          "images_per_s": 1000.0 * a.batch / ms, **extra}))
    else:
        step = vqgan_clip_step(a.size, a.cutn, dev)
        if dev == "cuda":
            step(); sync()
            resident = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        ms = median_ms(step, a.repeat, sync)
        if dev == "cuda":
            extra["resident_mib"] = resident / 2**20
            extra["step_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps({"kernel": "vqgan-clip-step", "impl": "torch", "device": dev, "size": a.size, "cutn": a.cutn,
                          "threads": a.threads, "ms": ms, "it_per_s": 1000.0 / ms, **extra}))


if __name__ == "__main__":
    main()
