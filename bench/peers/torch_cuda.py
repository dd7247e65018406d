# bench/peers/torch_cuda.py: the PyTorch peers of mm's CUDA kernels, timed on the device
# machine in the same run as `mmbench all --device cuda` (bench/device_check.sh runs both).
# Same sizes and the same method: CUDA events, warm-up, median; random inputs.
#   python3 bench/peers/torch_cuda.py
import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = "cuda"


def median_ms(fn, repeat=20, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


rows = []


def row(kernel, config, impl, ms, rate, unit):
    rows.append((kernel, config, impl, ms, rate, unit))
    print(f"{kernel:12s} {config:34s} {impl:26s} {ms:9.4f} ms {rate:9.2f} {unit}", flush=True)


def memory_bound():
    x = torch.randn(65536, 1024, device=dev)
    w, b = torch.randn(1024, device=dev), torch.randn(1024, device=dev)
    ms = median_ms(lambda: F.layer_norm(x, (1024,), w, b))
    row("layernorm", "65536x1024", "torch", ms, 2 * x.numel() * 4 / ms / 1e6, "GB/s")
    ms = median_ms(lambda: torch.softmax(x, -1))
    row("softmax", "65536x1024", "torch", ms, 2 * x.numel() * 4 / ms / 1e6, "GB/s")
    g = torch.randn(16, 256, 64, 64, device=dev)
    gw, gb = torch.randn(256, device=dev), torch.randn(256, device=dev)
    ms = median_ms(lambda: F.silu(F.group_norm(g, 32, gw, gb, 1e-6)))
    row("groupnorm", "16x256x4096 G32 +silu", "torch (2 kernels)", ms, 2 * g.numel() * 4 / ms / 1e6, "GB/s")


def attention():
    configs = [(256, 12, 50, 64, False), (256, 8, 77, 64, True), (64, 16, 257, 64, False), (8, 16, 1024, 64, False),
               (4, 16, 4096, 64, False), (4, 16, 4096, 64, True), (4, 8, 2048, 128, False)]
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for B, H, T, D, causal in configs:
        cfg = f"B{B} H{H} T{T} D{D}" + (" causal" if causal else "")
        flops = 4.0 * B * H * T * T * D * (0.5 if causal else 1.0)
        for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=dtype) for _ in range(3))
            for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                            SDPBackend.MATH):
                try:
                    with sdpa_kernel([backend]):
                        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                    row("attention", cfg, f"torch {backend.name.lower()} {name}", ms, flops / ms / 1e9, "TFLOP/s")
                except Exception as e:  # a backend that does not take this dtype/shape
                    print(f"attention {cfg} {backend.name} {name}: n/a ({str(e).splitlines()[0][:80]})")


def conv():
    for N, C, H, O, K in ((8, 256, 64, 256, 3), (8, 512, 32, 512, 3), (8, 256, 64, 512, 1)):
        x = torch.randn(N, C, H, H, device=dev)
        w, b = torch.randn(O, C, K, K, device=dev), torch.randn(O, device=dev)
        ms = median_ms(lambda: F.conv2d(x, w, b, padding=K // 2))
        row("conv2d", f"N{N} {C}->{O} {H}x{H} k{K} fwd", "torch cuDNN fp32", ms, 2.0 * N * O * H * H * C * K * K / ms / 1e9,
            "TFLOP/s")


def vit(batch=256):
    """ViT-B/32's image tower (bench/peers/torch_models.py), eager, fp32 and fp16: issue 4's
    device peer for `mmbench vit --device cuda` (same multiply-add count)."""
    import os, sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_models import ViT
    T, W, L, P, E = 50, 768, 12, 32, 512
    macs = (T - 1) * 3 * P * P * W + L * (T * W * 12 * W + 2 * T * T * W) + W * E
    torch.manual_seed(0)
    for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        model = ViT().to(dev, dtype).eval()
        x = torch.randn(batch, 3, 224, 224, device=dev, dtype=dtype)
        with torch.no_grad():
            ms = median_ms(lambda: model(x), repeat=10)
        row("vit", f"ViT-B/32 encode B{batch}", f"torch eager {name}", ms, 2.0 * macs * batch / ms / 1e9, "TFLOP/s")
        print(f"vit torch {name}: {batch / (ms / 1e3):.0f} images/s", flush=True)


if __name__ == "__main__":
    print("torch", torch.__version__, torch.cuda.get_device_name())
    memory_bound()
    attention()
    conv()
    vit()
    print("\n== torch peers ==")
    print("| kernel | config | impl | ms | rate |\n|---|---|---|---|---|")
    for k, c, i, ms, r, u in rows:
        print(f"| {k} | {c} | {i} | {ms:.4f} | {r:.2f} {u} |")
