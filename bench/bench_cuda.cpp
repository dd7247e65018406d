// bench/bench_cuda.cpp: see bench_cuda.h. Method (the device tool's METHOD.md):
//   - CUDA-event timing on mm's stream, after warm-up calls, median of --repeat runs;
//   - inputs random (never zeros), and for compute-bound kernels rotated among several input
//     sets; memory-bound kernels use tensors several times the L2 (60 MB on an H200), so the
//     cache cannot hold them between runs;
//   - each result reports TFLOP/s or GB/s (bytes: each input read once, each output written
//     once), its fraction of the ceiling measured in the same run (copy bandwidth, counting
//     bytes read plus written; cuBLAS bf16 at 8192³), and its ratio to the library peer.
// `mmbench all --device cuda` runs everything and prints the summary table last (the device
// script bench/device_check.sh saves it).
#include "bench/bench_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda_ops.h"
#include "engine/mm.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/runtime.h"

namespace mm::bench {

namespace {

using cuda::DeviceArray;

struct Opts {
  std::map<std::string, std::string> v;
  bool json = false;
  int64_t i(const std::string& k, int64_t d) const { return v.count(k) ? std::stoll(v.at(k)) : d; }
  std::string s(const std::string& k, const std::string& d) const { return v.count(k) ? v.at(k) : d; }
};

struct Row {
  std::string kernel, config, impl;
  double ms = 0, rate = 0;  // TFLOP/s or GB/s
  std::string unit;          // "TFLOP/s" or "GB/s"
  double ceiling_frac = -1;  // of the measured ceiling
  double peer_ratio = -1;    // peer time / our time (> 1: we are faster)
  std::string target;
};
std::vector<Row> g_rows;
double g_copy_gbps = 0, g_bf16_tflops = 0;

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
DeviceArray<float> random_dev(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  // Generated on the device side in chunks would be faster; host generation keeps it simple.
  return DeviceArray<float>(random_vec(n, seed, lo, hi));
}

int g_repeat = 20;
double time_it(const std::function<void()>& fn) { return cuda::time_ms(g_repeat, 3, fn); }

void add(const Row& r) {
  g_rows.push_back(r);
  std::printf("%-12s %-34s %-18s %9.4f ms %9.2f %-7s", r.kernel.c_str(), r.config.c_str(), r.impl.c_str(), r.ms, r.rate,
              r.unit.c_str());
  if (r.ceiling_frac >= 0) std::printf("  %5.1f%% of ceiling", 100 * r.ceiling_frac);
  if (r.peer_ratio >= 0) std::printf("  peer/ours %.2fx", r.peer_ratio);
  std::printf("\n");
  std::fflush(stdout);
}

Row mem_row(const std::string& k, const std::string& cfg, const std::string& impl, double ms, double bytes) {
  Row r{k, cfg, impl, ms, bytes / (ms * 1e6), "GB/s", -1, -1, ""};
  if (g_copy_gbps > 0) r.ceiling_frac = r.rate / g_copy_gbps;
  return r;
}
Row flop_row(const std::string& k, const std::string& cfg, const std::string& impl, double ms, double flops) {
  Row r{k, cfg, impl, ms, flops / (ms * 1e9), "TFLOP/s", -1, -1, ""};
  if (g_bf16_tflops > 0) r.ceiling_frac = r.rate / g_bf16_tflops;
  return r;
}

// ---- ceilings -------------------------------------------------------------------------------------
void bench_ceilings(const Opts&) {
  const size_t n = size_t(1) << 28;  // 1 GiB of floats
  DeviceArray<float> a = random_dev(n, 1), b(n);
  const double ms = time_it([&] { cuda::copy(a.data(), b.data(), int64_t(n)); });
  g_copy_gbps = 2.0 * n * 4 / (ms * 1e6);
  add(Row{"ceiling", "copy 1 GiB device-to-device", "cudaMemcpy", ms, g_copy_gbps, "GB/s", -1, -1, ""});
  const int64_t m = 8192;
  std::vector<DeviceArray<__nv_bfloat16>> A, B;
  for (int s = 0; s < 2; ++s) {
    DeviceArray<float> fa = random_dev(m * m, 10 + s), fb = random_dev(m * m, 20 + s);
    A.emplace_back(m * m), B.emplace_back(m * m);
    cuda::to_bf16(fa.data(), A.back().data(), m * m);
    cuda::to_bf16(fb.data(), B.back().data(), m * m);
  }
  DeviceArray<float> C(m * m);
  int rot = 0;
  const double mg = time_it([&] { cuda::cublas_gemm_bf16(m, m, m, A[rot % 2].data(), B[rot % 2].data(), C.data()), ++rot; });
  g_bf16_tflops = 2.0 * m * m * m / (mg * 1e9);
  add(Row{"ceiling", "bf16 gemm 8192^3", "cuBLAS", mg, g_bf16_tflops, "TFLOP/s", -1, -1, ""});
}

// ---- memory-bound kernels --------------------------------------------------------------------------
void bench_elementwise(const Opts& o) {
  const int64_t n = o.i("n", int64_t(1) << 26);  // 256 MiB per array
  DeviceArray<float> a = random_dev(n, 2), b = random_dev(n, 3), y(n);
  const std::string cfg = "add n=" + std::to_string(n);
  for (int v = 1; v <= cuda::version_count("elementwise"); ++v) {
    const double ms = time_it([&] { cuda::binary(cuda::Binary::add, a.data(), b.data(), y.data(), n, v); });
    Row r = mem_row("elementwise", cfg, "mm v" + std::to_string(v), ms, 3.0 * n * 4);
    r.target = ">=80% of copy";
    add(r);
  }
  const double ms = time_it([&] { cuda::unary(cuda::Unary::silu, a.data(), y.data(), n); });
  Row r = mem_row("elementwise", "silu n=" + std::to_string(n), "mm default", ms, 2.0 * n * 4);
  r.target = ">=80% of copy";
  add(r);
}

void bench_softmax(const Opts& o) {
  const int64_t rows = o.i("rows", 65536), cols = o.i("cols", 1024);
  DeviceArray<float> x = random_dev(rows * cols, 4, -4, 4), y(rows * cols);
  const std::string cfg = std::to_string(rows) + "x" + std::to_string(cols);
  for (int v = 1; v <= cuda::version_count("softmax"); ++v) {
    const double ms = time_it([&] { cuda::softmax(x.data(), y.data(), rows, cols, v); });
    Row r = mem_row("softmax", cfg, "mm v" + std::to_string(v), ms, 2.0 * rows * cols * 4);
    r.target = ">=80% of copy";
    add(r);
  }
}

void bench_layernorm(const Opts& o) {
  const int64_t rows = o.i("rows", 65536), cols = o.i("cols", 1024);
  DeviceArray<float> x = random_dev(rows * cols, 5), w = random_dev(cols, 6), b = random_dev(cols, 7),
                     y(rows * cols), mean(rows), rstd(rows), dx(rows * cols), dw(cols), db(cols);
  const std::string cfg = std::to_string(rows) + "x" + std::to_string(cols);
  for (int v = 1; v <= cuda::version_count("layer_norm"); ++v) {
    const double ms = time_it(
        [&] { cuda::layer_norm(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, cols, 1e-5f, v); });
    Row r = mem_row("layernorm", cfg, "mm v" + std::to_string(v), ms, 2.0 * rows * cols * 4);
    r.target = ">=80% of copy";
    add(r);
  }
  const double mb = time_it([&] {
    cuda::layer_norm_backward(x.data(), w.data(), mean.data(), rstd.data(), y.data(), dx.data(), dw.data(), db.data(),
                              rows, cols);
  });
  add(mem_row("layernorm", cfg + " backward", "mm", mb, 3.0 * rows * cols * 4));
}

void bench_groupnorm_one(int64_t N, int64_t C, int64_t HW, int64_t G) {
  const int64_t n = N * C * HW;
  DeviceArray<float> x = random_dev(n, 8), w = random_dev(C, 9), b = random_dev(C, 10), y(n), mean(N * G),
                     rstd(N * G), dx(n), dw(C), db(C);
  const std::string cfg = std::to_string(N) + "x" + std::to_string(C) + "x" + std::to_string(HW) + " G" +
                          std::to_string(G) + " +silu";
  // v1: a block per group; v2: few groups split across blocks (kernels/cuda/norm.cu)
  for (int v = 1; v <= cuda::version_count("group_norm"); ++v) {
    const std::string impl = "mm v" + std::to_string(v) + (v == cuda::default_version("group_norm") ? " (default)" : "");
    const double ms = time_it([&] {
      cuda::group_norm(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), N, C, HW, G, 1e-6f, true, v);
    });
    Row r = mem_row("groupnorm", cfg, impl, ms, 2.0 * n * 4);
    r.target = ">=80% of copy";
    add(r);
    const double mb = time_it([&] {
      cuda::group_norm_backward(x.data(), w.data(), b.data(), mean.data(), rstd.data(), y.data(), dx.data(), dw.data(),
                                db.data(), N, C, HW, G, true, v);
    });
    add(mem_row("groupnorm", cfg + " backward", impl, mb, 3.0 * n * 4));
  }
}

void bench_groupnorm(const Opts& o) {
  if (o.v.count("batch") || o.v.count("c") || o.v.count("hw") || o.v.count("groups")) {
    bench_groupnorm_one(o.i("batch", 16), o.i("c", 256), o.i("hw", 64 * 64), o.i("groups", 32));
    return;
  }
  bench_groupnorm_one(16, 256, 64 * 64, 32);  // many groups: 512
  bench_groupnorm_one(1, 128, 256 * 256, 32);  // a VQGAN decoding one 256² image: 32 groups
}

// ---- GEMM --------------------------------------------------------------------------------------------
void bench_gemm(const Opts& o) {
  const int64_t m = o.i("m", 4096), n = o.i("n", m), k = o.i("k", m);
  const double flops = 2.0 * m * n * k;
  const std::string cfg = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
  constexpr int kSets = 3;
  std::vector<DeviceArray<float>> A, B;
  std::vector<DeviceArray<__nv_bfloat16>> Ah, Bh;
  for (int s = 0; s < kSets; ++s) {
    A.push_back(random_dev(m * k, 30 + s));
    B.push_back(random_dev(k * n, 40 + s));
    Ah.emplace_back(m * k), Bh.emplace_back(k * n);
    cuda::to_bf16(A.back().data(), Ah.back().data(), m * k);
    cuda::to_bf16(B.back().data(), Bh.back().data(), k * n);
  }
  DeviceArray<float> C(m * n);
  int rot = 0;
  auto next = [&] { return (rot++) % kSets; };
  const double t_cublas32 = time_it([&] { int s = next(); cuda::cublas_gemm(false, false, m, n, k, A[s].data(), B[s].data(), C.data(), false); });
  add(flop_row("gemm", cfg + " fp32", "cuBLAS", t_cublas32, flops));
  const double t_tf32 = time_it([&] { int s = next(); cuda::cublas_gemm(false, false, m, n, k, A[s].data(), B[s].data(), C.data(), true); });
  add(flop_row("gemm", cfg + " tf32", "cuBLAS", t_tf32, flops));
  for (int v = 1; v <= cuda::version_count("gemm"); ++v) {
    if (v == 1 && m * n * k > (int64_t(1) << 34)) continue;  // the naive loop takes seconds at 4096^3+
    const double ms = time_it([&] { int s = next(); cuda::gemm(false, false, m, n, k, A[s].data(), B[s].data(), C.data(), v); });
    Row r = flop_row("gemm", cfg + " fp32", "mm v" + std::to_string(v), ms, flops);
    r.peer_ratio = t_cublas32 / ms;
    add(r);
  }
  const double t_bf16 = time_it([&] { int s = next(); cuda::cublas_gemm_bf16(m, n, k, Ah[s].data(), Bh[s].data(), C.data()); });
  add(flop_row("gemm", cfg + " bf16", "cuBLAS", t_bf16, flops));
  for (int v = 1; v <= cuda::version_count("gemm_bf16"); ++v) {
    const double ms = time_it([&] { int s = next(); cuda::gemm_bf16(m, n, k, Ah[s].data(), Bh[s].data(), C.data(), v); });
    Row r = flop_row("gemm", cfg + " bf16", v == 1 ? "mm wmma v1" : "mm mma.sync v" + std::to_string(v), ms, flops);
    r.peer_ratio = t_bf16 / ms;
    r.target = ">=0.7x cuBLAS";
    add(r);
  }
  // wgmma (sm_90 only): C = A·Bᵀ, B's buffers read as [n, k]; its peer is cuBLAS on the same layout
  if (cuda::compute_capability() == 90 && k % 8 == 0) {
    const double t_nt = time_it([&] {
      int s = next();
      cuda::cublas_gemm_half(false, true, m, n, k, Ah[s].data(), Bh[s].data(), C.data(), false);
    });
    add(flop_row("gemm", cfg + " bf16 A·Bt", "cuBLAS", t_nt, flops));
    const double mw = time_it([&] { int s = next(); cuda::gemm_bf16_nt(m, n, k, Ah[s].data(), Bh[s].data(), C.data()); });
    Row r = flop_row("gemm", cfg + " bf16 A·Bt", "mm wgmma", mw, flops);
    r.peer_ratio = t_nt / mw;
    r.target = ">=0.7x cuBLAS";
    add(r);
  }
}

// ---- attention ---------------------------------------------------------------------------------------
void bench_attention_one(int64_t B, int64_t H, int64_t T, int64_t D, bool causal) {
  const int64_t n = B * H * T * D;
  DeviceArray<float> q = random_dev(n, 50), k = random_dev(n, 51), v = random_dev(n, 52), o(n), lse(B * H * T),
                     dout = random_dev(n, 53), dq(n), dk(n), dv(n);
  const float scale = 1.0f / std::sqrt(float(D));
  const std::string cfg = "B" + std::to_string(B) + " H" + std::to_string(H) + " T" + std::to_string(T) + " D" +
                          std::to_string(D) + (causal ? " causal" : "");
  // Score-matrix FLOPs: 2·T·T·D for QKᵀ and again for PV (half of it when causal).
  const double flops = 4.0 * B * H * T * T * D * (causal ? 0.5 : 1.0);
  double t_unfused = -1;
  const size_t scratch_n = size_t(B * H * T * T);
  if (scratch_n * 4 <= (size_t(16) << 30)) {
    DeviceArray<float> scratch(scratch_n);
    t_unfused = time_it([&] {
      cuda::attention_unfused(q.data(), k.data(), v.data(), o.data(), scratch.data(), B, H, T, T, D, scale, causal);
    });
    add(flop_row("attention", cfg, "cuBLAS+softmax+cuBLAS", t_unfused, flops));
  }
  const double ms = time_it([&] {
    cuda::attention_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), B, H, T, T, D, scale, causal);
  });
  Row r = flop_row("attention", cfg, "mm flash v1 fwd", ms, flops);
  if (t_unfused > 0) r.peer_ratio = t_unfused / ms;
  r.target = T >= 1024 ? ">=0.7x cuDNN (torch peer)" : "faster than unfused";
  add(r);
  // The tensor-core forwards on bf16 operands (--precision bf16 runs v3 below 512 keys, v4 from
  // there): v2 WMMA, v3 mma.sync with the products in registers, v4 v3 on 16-bit copies (the
  // conversion included) with cp.async double buffering. Their peers: the torch script's cuDNN
  // attention in bf16, and the float32 composition here.
  for (int ver = 2; ver <= cuda::version_count("attention"); ++ver) {
    const double mv = time_it([&] {
      cuda::attention_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), B, H, T, T, D, scale, causal, ver);
    });
    Row rv = flop_row("attention", cfg, "mm flash v" + std::to_string(ver) + " fwd bf16", mv, flops);
    if (t_unfused > 0) rv.peer_ratio = t_unfused / mv;
    rv.target = T >= 1024 ? ">=0.7x cuDNN bf16 (torch peer)" : "faster than unfused";
    add(rv);
  }
  const double mb = time_it([&] {
    cuda::attention_backward(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                             dv.data(), B, H, T, T, D, scale, causal);
  });
  add(flop_row("attention", cfg, "mm flash v1 bwd", mb, 2.5 * flops));
  // the tensor-core backward (what --precision bf16 runs), after the bf16 forward it follows
  cuda::attention_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), B, H, T, T, D, scale, causal, 3);
  const double mb2 = time_it([&] {
    cuda::attention_backward(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                             dv.data(), B, H, T, T, D, scale, causal, 1, 2);
  });
  Row rb = flop_row("attention", cfg, "mm flash v2 bwd bf16", mb2, 2.5 * flops);
  rb.peer_ratio = mb / mb2;
  rb.target = "peer: mm v1 float32 bwd";
  add(rb);
}

void bench_attention(const Opts& o) {
  if (o.v.count("seq")) {
    bench_attention_one(o.i("batch", 4), o.i("heads", 16), o.i("seq", 1024), o.i("head-dim", 64), o.i("causal", 0) != 0);
    return;
  }
  bench_attention_one(256, 12, 50, 64, false);   // CLIP ViT-B/32 image tower
  bench_attention_one(256, 8, 77, 64, true);     // CLIP text tower
  bench_attention_one(64, 16, 257, 64, false);   // ViT-L/14 image tower
  bench_attention_one(8, 16, 1024, 64, false);
  bench_attention_one(4, 16, 4096, 64, false);
  bench_attention_one(4, 16, 4096, 64, true);
  bench_attention_one(4, 8, 2048, 128, false);
}

// ---- vector quantisation -----------------------------------------------------------------------------
void bench_vq(const Opts& o) {
  const int64_t N = o.i("n", 8 * 32 * 32), K = o.i("codes", 16384), D = o.i("dim", 256);
  DeviceArray<float> z = random_dev(N * D, 60), e = random_dev(K * D, 61), e_sq(K);
  DeviceArray<int64_t> idx(N);
  cuda::vq_code_norms(e.data(), e_sq.data(), K, D);
  const std::string cfg = "N" + std::to_string(N) + " K" + std::to_string(K) + " D" + std::to_string(D);
  const double flops = 2.0 * N * K * D;
  DeviceArray<float> scratch(N * K);
  const double t_unfused = time_it(
      [&] { cuda::vq_nearest_unfused(z.data(), e.data(), e_sq.data(), idx.data(), scratch.data(), N, K, D); });
  add(flop_row("vq", cfg, "cuBLAS+argmin", t_unfused, flops));
  for (int v = 2; v <= cuda::version_count("vq"); ++v) {  // v1 (a thread per row) takes seconds
    const double ms = time_it([&] { cuda::vq_nearest(z.data(), e.data(), e_sq.data(), idx.data(), N, K, D, v); });
    Row r = flop_row("vq", cfg, "mm fused v" + std::to_string(v), ms, flops);
    r.peer_ratio = t_unfused / ms;
    r.target = ">=3x unfused";
    add(r);
  }
}

// ---- convolution -------------------------------------------------------------------------------------
void bench_conv_one(int64_t N, int64_t C, int64_t H, int64_t O, int64_t KS) {
  const int64_t pad = KS / 2;
  DeviceArray<float> x = random_dev(N * C * H * H, 70), w = random_dev(O * C * KS * KS, 71), b = random_dev(O, 72),
                     y(N * O * H * H), dx(N * C * H * H);
  const std::string cfg = "N" + std::to_string(N) + " " + std::to_string(C) + "->" + std::to_string(O) + " " +
                          std::to_string(H) + "x" + std::to_string(H) + " k" + std::to_string(KS);
  const double flops = 2.0 * N * O * H * H * C * KS * KS;
  double t_cudnn = -1;
  if (cuda::have_cudnn()) {
    try {  // a failing peer must not hide our own numbers
      t_cudnn = time_it([&] { cuda::cudnn_conv2d(x.data(), w.data(), b.data(), y.data(), N, C, H, H, O, KS, KS, 1, pad); });
      add(flop_row("conv2d", cfg + " fwd", "cuDNN fp32", t_cudnn, flops));
    } catch (const std::exception& e) {
      std::printf("conv2d %s cuDNN: FAILED: %s\n", cfg.c_str(), e.what());
      t_cudnn = -1;
    }
  }
  const double ms = time_it(
      [&] { cuda::conv2d(x.data(), w.data(), b.data(), y.data(), N, C, H, H, O, KS, KS, 1, pad); });
  Row r = flop_row("conv2d", cfg + " fwd", "mm implicit-gemm v1", ms, flops);
  if (t_cudnn > 0) r.peer_ratio = t_cudnn / ms;
  add(r);
  double t_cudnn_bwd = -1;
  if (cuda::have_cudnn()) {
    try {  // the production path of conv2d's input gradient in float32
      t_cudnn_bwd = time_it(
          [&] { cuda::cudnn_conv2d_backward_data(y.data(), w.data(), dx.data(), N, C, H, H, O, KS, KS, 1, pad); });
      add(flop_row("conv2d", cfg + " bwd-data", "cuDNN fp32", t_cudnn_bwd, flops));
    } catch (const std::exception& e) {
      std::printf("conv2d %s cuDNN backward-data: FAILED: %s\n", cfg.c_str(), e.what());
    }
  }
  const double mb = time_it(
      [&] { cuda::conv2d_backward_data(y.data(), w.data(), dx.data(), N, C, H, H, O, KS, KS, 1, pad); });
  Row rb = flop_row("conv2d", cfg + " bwd-data", "mm implicit-gemm v1", mb, flops);
  if (t_cudnn_bwd > 0) rb.peer_ratio = t_cudnn_bwd / mb;
  add(rb);
}

void bench_conv2d(const Opts& o) {
  if (o.v.count("c")) {
    bench_conv_one(o.i("batch", 8), o.i("c", 256), o.i("h", 64), o.i("k", o.i("c", 256)), o.i("kernel", 3));
    return;
  }
  bench_conv_one(8, 256, 64, 256, 3);  // a VQGAN decoder level
  bench_conv_one(8, 512, 32, 512, 3);
  bench_conv_one(8, 256, 64, 512, 1);
}

// vit: CLIP ViT-B/32's image tower (224², patch 32, width 768, 12 layers of 12 heads, output
// 512) as the engine runs it on device tensors (engine/cuda_ops.h), random weights, float32
// and --precision bf16.
// Issue 4's device target: throughput at batch 256 at least PyTorch eager fp16's
// (bench/peers/torch_cuda.py vit, same run). This is the whole engine path, not one kernel:
// the rate is the model's multiply-adds x 2 over the time.
void bench_vit(const Opts& o) {
  const int64_t B = o.i("batch", 256), W = 768, L = 12, H = 12, P = 32, R = 224, E = 512, T = (R / P) * (R / P) + 1;
  Generator g(7);
  auto w = [&](const Shape& s, double scale) { return mul(Tensor::randn(s, g), scale).to(Device::cuda); };
  auto ones = [&](int64_t n) { return Tensor::ones({n}).to(Device::cuda); };
  auto zeros = [&](int64_t n) { return Tensor::zeros({n}).to(Device::cuda); };
  struct Layer {
    Tensor in_w, in_b, out_w, out_b, fc_w, fc_b, proj_w, proj_b;
  };
  std::vector<Layer> layers;
  for (int64_t l = 0; l < L; ++l)
    layers.push_back({w({3 * W, W}, 0.02), zeros(3 * W), w({W, W}, 0.02), zeros(W), w({4 * W, W}, 0.02), zeros(4 * W),
                      w({W, 4 * W}, 0.02), zeros(W)});
  const Tensor conv_w = w({W, 3, P, P}, 0.02), cls = w({W}, 0.02), pos = w({T, W}, 0.02), proj = w({W, E}, 0.02);
  const Tensor ln_w = ones(W), ln_b = zeros(W);
  const Tensor x = Tensor::randn({B, 3, R, R}, g).to(Device::cuda);
  auto forward = [&] {
    Tensor h = conv2d(x, conv_w, Tensor(), conv2d_options(P)).reshape({B, W, T - 1}).transpose(1, 2);
    h = layer_norm(cat({cls.reshape({1, 1, W}).expand({B, 1, W}), h}, 1) + pos, {W}, ln_w, ln_b);
    for (const Layer& y : layers) {
      const Tensor a = layer_norm(h, {W}, ln_w, ln_b);
      h = h + multi_head_attention(a, a, y.in_w, y.in_b, y.out_w, y.out_b, H);
      h = h + linear(quick_gelu(linear(layer_norm(h, {W}, ln_w, ln_b), y.fc_w, y.fc_b)), y.proj_w, y.proj_b);
    }
    return matmul(layer_norm(h.select(1, 0), {W}, ln_w, ln_b), proj);
  };
  const double macs_per_image = double(T - 1) * 3 * P * P * W + double(L) * (double(T) * W * 12 * W + 2.0 * T * T * W) +
                                double(W) * E;
  // float32, then --precision bf16 (the GEMMs and the patch conv on 16-bit operands)
  for (cuda_ops::Precision p : {cuda_ops::Precision::fp32, cuda_ops::Precision::bf16}) {
    cuda_ops::PrecisionScope scope(p);
    const double ms = time_it([&] { forward(); });
    Row r = flop_row("vit", "ViT-B/32 encode B" + std::to_string(B) + " " + cuda_ops::precision_name(p), "mm engine", ms,
                     2 * macs_per_image * B);
    r.target = "images/s >= torch eager fp16";
    add(r);
    std::printf("vit %s: %.0f images/s (batch %lld)\n", cuda_ops::precision_name(p), B / (ms / 1e3),
                static_cast<long long>(B));
  }
}

void summary() {
  std::printf("\n== summary (device: %s) ==\n", cuda::device_description().c_str());
  std::printf("| kernel | config | impl | ms | rate | of ceiling | peer/ours | target |\n|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : g_rows) {
    char frac[32] = "", peer[32] = "";
    if (r.ceiling_frac >= 0) std::snprintf(frac, sizeof(frac), "%.1f%%", 100 * r.ceiling_frac);
    if (r.peer_ratio >= 0) std::snprintf(peer, sizeof(peer), "%.2fx", r.peer_ratio);
    std::printf("| %s | %s | %s | %.4f | %.2f %s | %s | %s | %s |\n", r.kernel.c_str(), r.config.c_str(),
                r.impl.c_str(), r.ms, r.rate, r.unit.c_str(), frac, peer, r.target.c_str());
  }
  const cuda::MemoryStats s = cuda::memory_stats();
  std::printf("\nallocator: peak %.1f MiB, %zu cudaMalloc calls for %zu requests\n", s.peak_bytes / 1048576.0,
              s.device_allocations, s.requests);
}

}  // namespace

int cuda_main(int argc, char** argv) {
  Opts o;
  const std::string kernel = argc > 1 ? argv[1] : "all";
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    MM_CHECK(k.rfind("--", 0) == 0, "mmbench: expected a --flag, got '", k, "'");
    k = k.substr(2);
    if (k == "json") {
      o.json = true;
      continue;
    }
    MM_CHECK(i + 1 < argc, "mmbench: flag --", k, " needs a value");
    o.v[k] = argv[++i];
  }
  MM_CHECK(cuda::available(), "mmbench --device cuda: no CUDA device is present");
  g_repeat = static_cast<int>(o.i("repeat", 20));
  std::printf("device: %s\n", cuda::device_description().c_str());
  const std::map<std::string, std::function<void(const Opts&)>> table = {
      {"elementwise", bench_elementwise}, {"softmax", bench_softmax}, {"layernorm", bench_layernorm},
      {"groupnorm", bench_groupnorm},     {"gemm", bench_gemm},       {"attention", bench_attention},
      {"vq", bench_vq},                   {"conv2d", bench_conv2d},       {"vit", bench_vit},
  };
  bench_ceilings(o);
  if (kernel == "all") {
    for (const char* k :
         {"elementwise", "softmax", "layernorm", "groupnorm", "gemm", "attention", "vq", "conv2d", "vit"}) {
      try {
        table.at(k)(o);
      } catch (const std::exception& e) {  // one failing kernel must not hide the others' numbers
        std::printf("%s: FAILED: %s\n", k, e.what());
      }
    }
  } else if (kernel != "ceilings") {
    auto it = table.find(kernel);
    MM_CHECK(it != table.end(), "mmbench --device cuda: unknown kernel '", kernel,
             "' (elementwise softmax layernorm groupnorm gemm attention vq conv2d vit all ceilings)");
    it->second(o);
  }
  summary();
  return 0;
}

}  // namespace mm::bench
