#!/usr/bin/python3
"""bench/peers/torch_cpu.py: the PyTorch CPU peer for mmbench (run by bench/compare_cpu.sh).

Times torch.matmul (fp32 SGEMM) and torch.nn.functional.conv2d the same way mmbench does:
warm-up, then the median of --repeat timed runs; prints one JSON line per result.
  /usr/bin/python3 bench/peers/torch_cpu.py matmul --m 1024 --n 1024 --k 1024 --threads 2
  /usr/bin/python3 bench/peers/torch_cpu.py conv2d --threads 2   # 3x3, 128->128 ch, 64x64, pad 1

Which library does the work: Debian's python3-torch 1.13 sends fp32 matmul to the system
BLAS, libblas.so.3, which Debian's alternatives point at OpenBLAS (compare_cpu.sh checks
`update-alternatives --display libblas.so.3-x86_64-linux-gnu`); OpenBLAS 0.3.21 needs
OPENBLAS_CORETYPE=SkylakeX on this CPU (else slow SSE3 kernels). conv2d goes to oneDNN
(mkldnn) when torch.backends.mkldnn.is_available(); the result line says which.
Use /usr/bin/python3 (Debian's), not a pyenv python3 without torch.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch


def median_ms(fn, repeat):
    # Warm-up: at least two calls and ~0.2 s, as in mmbench.
    t0 = time.perf_counter()
    n = 0
    while n < 2 or time.perf_counter() - t0 < 0.2:
        fn()
        n += 1
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("op", choices=["matmul", "conv2d"])
    p.add_argument("--m", type=int, default=1024)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--channels", type=int, default=128)  # conv2d: in = out channels
    p.add_argument("--size", type=int, default=64)  # conv2d: H = W
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=10)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    common = {"impl": "torch", "torch": torch.__version__, "device": "cpu",
              "threads": torch.get_num_threads(),
              "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "")}
    with torch.no_grad():
        if a.op == "matmul":
            x = torch.rand(a.m, a.k) * 2 - 1
            w = torch.rand(a.k, a.n) * 2 - 1
            out = torch.empty(a.m, a.n)
            ms = median_ms(lambda: torch.matmul(x, w, out=out), a.repeat)
            res = {"kernel": "gemm", **common, "m": a.m, "n": a.n, "k": a.k, "ms": round(ms, 4),
                   "gflops": round(2.0 * a.m * a.n * a.k / (ms * 1e6), 2)}
        else:
            c, s = a.channels, a.size
            x = torch.rand(a.batch, c, s, s)
            w = torch.rand(c, c, 3, 3)
            b = torch.rand(c)
            ms = median_ms(lambda: torch.nn.functional.conv2d(x, w, b, padding=1), a.repeat)
            flops = 2.0 * a.batch * c * c * 9 * s * s
            res = {"kernel": "conv2d", **common, "batch": a.batch, "c_in": c, "c_out": c, "h": s,
                   "w": s, "kernel_size": 3, "padding": 1, "ms": round(ms, 4),
                   "gflops": round(flops / (ms * 1e6), 2),
                   "mkldnn": torch.backends.mkldnn.is_available()}
    print(json.dumps(res, separators=(",", ":")))


if __name__ == "__main__":
    sys.exit(main())
