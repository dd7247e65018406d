// bench/mmbench.cpp: the benchmark binary. A table of kernels, each timed the same way:
// warm-up, then the median of --repeat timed runs (std::chrono::steady_clock).
// Reading order: after kernels/; peers are compared in bench/compare_cpu.sh.
//   ./build/mmbench --list
//   ./build/mmbench gemm --m 1024 --n 1024 --k 1024 --threads 2 --repeat 10 [--json]
// --json prints one JSON object per result line: {"kernel":"gemm","device":"cpu",...,"gflops":..}
// (gflops for arithmetic-bound kernels, gbps for memory-bound ones). Results: bench/RESULTS.md.
//
// Adding a kernel: write `int bench_x(const Args&)` and add a row to kBenches below.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/cuda_ops.h"
#include "engine/mm.h"
#include "kernels/gemm.h"
#if MM_BENCH_CUDA  // a real CUDA build (not the CPU emulator: it has nothing to time)
#include "bench/bench_cuda.h"
#endif
#ifndef MM_BENCH_ENGINE_ONLY  // the device machine builds the engine and kernels alone
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "models/clip.h"
#include "models/clip_config.h"
#include "models/vqgan_clip.h"
#include "weights_tools/safetensors.h"
#include "weights_tools/torch_file.h"
#endif

namespace {

std::vector<std::string> g_command_line;  // mmbench's argv (clip-load runs itself again)

// Command-line flags after the kernel name: `--key value` pairs plus the bare flag --json.
struct Args {
  std::map<std::string, std::string> values;
  bool json = false;

  int64_t get_int(const std::string& key, int64_t fallback) const {
    auto it = values.find(key);
    if (it == values.end()) return fallback;
    char* end = nullptr;
    long long v = std::strtoll(it->second.c_str(), &end, 10);
    MM_CHECK(end != it->second.c_str() && *end == '\0' && v > 0, "mmbench: --", key,
             " expects a positive integer, got '", it->second, "'");
    return v;
  }
  std::string get(const std::string& key, const std::string& fallback) const {
    auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
};

// Median wall time of `repeat` calls of fn in milliseconds, after warming up for at least
// two calls and ~0.2 s (threads woken, caches and clocks settled).
double median_ms(int64_t repeat, const std::function<void()>& fn) {
  using clock = std::chrono::steady_clock;
  const auto w0 = clock::now();
  for (int i = 0; i < 2 || clock::now() - w0 < std::chrono::milliseconds(200); ++i) fn();
  std::vector<double> ms;
  for (int64_t r = 0; r < repeat; ++r) {
    const auto t0 = clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Common flags: --device cpu|cuda, --threads N (default: mm's thread count), --repeat R.
// --device and --threads. Only the model benches (Bench::models) see --device cuda here: the
// kernel benches go to bench/bench_cuda.cpp for it.
mm::Device setup_device_and_threads(const Args& args) {
  const std::string device = args.get("device", "cpu");
  MM_CHECK(device == "cpu" || device == "cuda", "mmbench: unknown --device '", device, "' (expected cpu or cuda)");
  if (args.values.count("threads")) mm::set_num_threads(static_cast<int>(args.get_int("threads", 1)));
  if (device == "cpu") return mm::Device::cpu;
  MM_CHECK(mm::cuda_ops::built(), "mmbench: mm was built without CUDA (--device cuda; configure with -DMM_CUDA=ON)");
  MM_CHECK(mm::cuda_ops::device_present(), "mmbench: --device cuda: no CUDA device is present");
  if (mm::cuda_ops::emulated())
    std::fprintf(stderr, "mmbench: the device is mm's CPU emulator of CUDA: its times mean nothing, its allocator's "
                         "bytes are real (MM_CUDA_EMULATE_NO_COMPUTE=1 measures them without computing)\n");
  return mm::Device::cuda;
}


// gemm: C[m,n] = A[m,k] @ B[k,n], all row-major, alpha = 1, beta = 0.
int bench_gemm(const Args& args) {
  setup_device_and_threads(args);
  const int64_t m = args.get_int("m", 1024), n = args.get_int("n", 1024), k = args.get_int("k", 1024);
  const int64_t repeat = args.get_int("repeat", 10);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> a(m * k), b(k * n), c(m * n);
  for (auto& x : a) x = dist(rng);
  for (auto& x : b) x = dist(rng);
  const double ms = median_ms(repeat, [&] {
    mm::kernels::sgemm(m, n, k, 1.f, {a.data(), k, 1}, {b.data(), n, 1}, 0.f, c.data(), n);
  });
  const double gflops = 2.0 * m * n * k / (ms * 1e6);
  const int threads = mm::num_threads();
  if (args.json) {
    std::printf("{\"kernel\":\"gemm\",\"impl\":\"mm\",\"micro_kernel\":\"%s\",\"device\":\"cpu\","
                "\"m\":%lld,\"n\":%lld,\"k\":%lld,\"threads\":%d,\"ms\":%.4f,\"gflops\":%.2f}\n",
                mm::kernels::sgemm_kernel_name(), (long long)m, (long long)n, (long long)k,
                threads, ms, gflops);
  } else {
    std::printf("gemm cpu %s m=%lld n=%lld k=%lld threads=%d: %.3f ms, %.1f GFLOP/s\n",
                mm::kernels::sgemm_kernel_name(), (long long)m, (long long)n, (long long)k,
                threads, ms, gflops);
  }
  return 0;
}

// conv2d: y = conv2d(x [batch, c, h, w], weight [k, c, kh, kw], bias [k]) forward in float32
// (engine/ops/conv.h: implicit-im2col SGEMM). GFLOP/s = 2*batch*k*c*kh*kw*oh*ow / time.
// Flags: --c/--c-in, --k/--c-out, --h, --w, --kh/--kernel, --kw (default kh), --stride,
// --padding (default kh/2: "same" for odd kernels), --batch.
int bench_conv2d(const Args& args) {
  setup_device_and_threads(args);
  const int64_t c = args.get_int("c", args.get_int("c-in", 128));
  const int64_t k = args.get_int("k", args.get_int("c-out", 128));
  const int64_t h = args.get_int("h", 64), w = args.get_int("w", 64);
  const int64_t kh = args.get_int("kh", args.get_int("kernel", 3)), kw = args.get_int("kw", kh);
  const int64_t stride = args.get_int("stride", 1), batch = args.get_int("batch", 1);
  const int64_t pad = args.values.count("padding") ? std::stoll(args.values.at("padding")) : kh / 2;
  const int64_t repeat = args.get_int("repeat", 10);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> xv(batch * c * h * w), wv(k * c * kh * kw), bv(k);
  for (auto& v : xv) v = dist(rng);
  for (auto& v : wv) v = dist(rng);
  for (auto& v : bv) v = dist(rng);
  const mm::Tensor x = mm::Tensor::from_vector(xv, {batch, c, h, w});
  const mm::Tensor wt = mm::Tensor::from_vector(wv, {k, c, kh, kw});
  const mm::Tensor b = mm::Tensor::from_vector(bv, {k});
  mm::Conv2dOptions opt;
  opt.stride = {stride, stride};
  opt.padding = {pad, pad, pad, pad};
  mm::Tensor y;
  const double ms = median_ms(repeat, [&] { y = mm::conv2d(x, wt, b, opt); });
  const int64_t oh = y.size(2), ow = y.size(3);
  const double gflops = 2.0 * batch * k * c * kh * kw * oh * ow / (ms * 1e6);
  const int threads = mm::num_threads();
  if (args.json) {
    std::printf("{\"kernel\":\"conv2d\",\"impl\":\"mm\",\"micro_kernel\":\"%s\",\"device\":\"cpu\","
                "\"batch\":%lld,\"c_in\":%lld,\"c_out\":%lld,\"h\":%lld,\"w\":%lld,\"kernel_size\":%lld,"
                "\"stride\":%lld,\"padding\":%lld,\"threads\":%d,\"ms\":%.4f,\"gflops\":%.2f}\n",
                mm::kernels::sgemm_kernel_name(), (long long)batch, (long long)c, (long long)k, (long long)h,
                (long long)w, (long long)kh, (long long)stride, (long long)pad, threads, ms, gflops);
  } else {
    std::printf("conv2d cpu %s batch=%lld c=%lld k=%lld %lldx%lld kernel=%lldx%lld stride=%lld pad=%lld "
                "threads=%d: %.3f ms, %.1f GFLOP/s\n",
                mm::kernels::sgemm_kernel_name(), (long long)batch, (long long)c, (long long)k, (long long)h,
                (long long)w, (long long)kh, (long long)kw, (long long)stride, (long long)pad, threads, ms, gflops);
  }
  return 0;
}

// Prints one result line: human-readable, or one JSON object with --json. `fields` are
// (key, value-as-JSON) pairs; the human line lists them as key=value.
void report(const Args& args, const std::string& kernel, const std::vector<std::pair<std::string, std::string>>& fields,
            const std::string& summary) {
  if (args.json) {
    std::string line = "{\"kernel\":\"" + kernel + "\",\"impl\":\"mm\",\"device\":\"" + args.get("device", "cpu") + "\"";
    for (const auto& [k, v] : fields) line += ",\"" + k + "\":" + v;
    std::printf("%s}\n", line.c_str());
  } else {
    std::string line = kernel + " " + args.get("device", "cpu");
    for (const auto& [k, v] : fields) line += " " + k + "=" + v;
    std::printf("%s: %s\n", line.c_str(), summary.c_str());
  }
}
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof(b), "%.4g", v);
  return b;
}

// The device allocator's bytes as JSON fields and words (after a model bench on --device cuda).
std::string mib(size_t bytes) { return num(bytes / 1048576.0); }

// Memory-bound kernels: layer_norm and softmax over rows of a [rows, cols] float32 tensor.
// GB/s counts one read and one write of the tensor (the minimum traffic).
int bench_rowwise(const Args& args, const std::string& kernel) {
  setup_device_and_threads(args);
  const int64_t rows = args.get_int("rows", 8192), cols = args.get_int("cols", 768), repeat = args.get_int("repeat", 20);
  mm::Generator gen(0);
  const mm::Tensor x = mm::Tensor::randn({rows, cols}, gen);
  const mm::Tensor w = mm::Tensor::ones({cols}), b = mm::Tensor::zeros({cols});
  mm::NoGradGuard ng;
  mm::Tensor y;
  const double ms = median_ms(repeat, [&] { y = kernel == "layernorm" ? mm::layer_norm(x, {cols}, w, b) : mm::softmax(x, -1); });
  const double gbps = 2.0 * rows * cols * 4 / (ms * 1e6);
  report(args, kernel, {{"rows", std::to_string(rows)}, {"cols", std::to_string(cols)}, {"threads", std::to_string(mm::num_threads())},
                        {"ms", num(ms)}, {"gbps", num(gbps)}},
         num(ms) + " ms, " + num(gbps) + " GB/s");
  return 0;
}
int bench_layernorm(const Args& args) { return bench_rowwise(args, "layernorm"); }
int bench_softmax(const Args& args) { return bench_rowwise(args, "softmax"); }

#ifndef MM_BENCH_ENGINE_ONLY
// Random weights with the shapes of a weight table (std 0.02; BatchNorm variances positive).
mm::TensorFile random_weights(const std::vector<std::pair<std::string, mm::Shape>>& table) {
  mm::TensorFile f;
  f.path = "random";
  mm::Generator gen(1);
  for (const auto& [key, shape] : table) {
    mm::Tensor t = mm::Tensor::randn(shape, gen) * 0.02;
    if (key.find("running_var") != std::string::npos || key.find("norm") != std::string::npos ||
        key.find("ln_") != std::string::npos || key.find(".bn") != std::string::npos)
      t = mm::abs(t) + 1.0;
    f.tensors.push_back({key, t});
  }
  return f;
}
mm::ClipModel random_clip(const std::string& name) {
  const mm::ClipConfig c = mm::clip_config_preset(name);
  std::vector<std::pair<std::string, mm::Shape>> table;
  for (const auto& spec : mm::clip_weight_table(c)) table.push_back({spec.key, spec.shape});
  return mm::ClipModel::load(random_weights(table), c);
}

// clip-image: encode_image of a batch of random images with random weights of a real CLIP's
// shapes (--model-config ViT-B/32 ...), under no-grad. Reports ms per image.
int bench_clip_image(const Args& args) {
  const mm::Device dev = setup_device_and_threads(args);
  const std::string name = args.get("model-config", "ViT-B/32");
  const int64_t batch = args.get_int("batch", 1), repeat = args.get_int("repeat", 5);
  mm::ClipModel clip = random_clip(name);
  if (dev != mm::Device::cpu) {
    clip = clip.to(dev);
    clip.set_precision(mm::cuda_ops::parse_precision(args.get("precision", "fp32"), "mmbench"));
  } else if (args.get("prepack", "1") != "0") {
    clip.prepack("visual.");  // as mmclip and mmgen do; --prepack 0: not
  }
  const int64_t r = clip.config().image_resolution;
  mm::Generator gen(0);
  const mm::Tensor x = mm::Tensor::randn({batch, 3, r, r}, gen).to(dev);
  mm::NoGradGuard ng;
  const double ms = median_ms(repeat, [&] { clip.encode_image(x).to(mm::Device::cpu); });  // (waits for the device)
  report(args, "clip-image", {{"model", "\"" + name + "\""}, {"batch", std::to_string(batch)},
                              {"precision", "\"" + args.get("precision", "fp32") + "\""},
                              {"threads", std::to_string(mm::num_threads())}, {"ms", num(ms)}, {"ms_per_image", num(ms / batch)}},
         num(ms) + " ms per batch, " + num(ms / batch) + " ms per image");
  return 0;
}

// clip-load: the memory a CLIP costs, in a fresh process. Without --file F existing, writes
// random weights of the real shapes (--model-config) in OpenAI's dtype mix (convert_weights:
// conv, linear and attention weights and the projections fp16; embeddings, norms fp32) to F,
// then runs itself again to measure from scratch: peak resident memory (VmHWM) after
// ClipModel::load, then after prepack("visual.") and one batch-1 encode_image (what mmclip
// and mmgen do on the CPU), each against the file's size.
int64_t status_kib(const char* field) {  // from /proc/self/status, in KiB (-1 when absent)
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::strlen(field)));
  return -1;
}
bool openai_half(const std::string& key) {
  auto ends = [&](const char* e) {
    const size_t n = std::strlen(e);
    return key.size() >= n && key.compare(key.size() - n, n, e) == 0;
  };
  if (key == "text_projection" || key == "visual.proj") return true;
  if (key.find("ln_") != std::string::npos || key.find(".bn") != std::string::npos ||
      key.find("embedding") != std::string::npos || key == "logit_scale")
    return false;
  return ends(".weight") || ends(".bias") || ends("in_proj_weight") || ends("in_proj_bias");
}
int bench_clip_load(const Args& args) {
  const std::string name = args.get("model-config", "ViT-B/32");
  setup_device_and_threads(args);
  std::string tag = name;  // "ViT-B/32" -> "ViT-B_32": one default file per model
  for (char& ch : tag)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-') ch = '_';
  const std::string file =
      args.get("file", "/tmp/mm_clip_load_" + std::to_string(::getuid()) + "_" + tag + ".safetensors");
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    const mm::ClipConfig c = mm::clip_config_preset(name);
    std::vector<std::pair<std::string, mm::Shape>> table;
    for (const auto& spec : mm::clip_weight_table(c)) table.push_back({spec.key, spec.shape});
    std::vector<std::pair<std::string, mm::Tensor>> tensors;
    for (auto& [key, t] : random_weights(table).tensors)
      tensors.push_back({key, openai_half(key) ? t.to(mm::DType::f16) : t});
    mm::save_safetensors(file + ".part", tensors);  // complete or absent: a crashed run leaves no file
    MM_CHECK(std::rename((file + ".part").c_str(), file.c_str()) == 0, "mmbench clip-load: cannot write '", file, "'");
    std::fprintf(stderr, "mmbench clip-load: wrote %s (%s, OpenAI's fp16/fp32 mix); measuring in a fresh process\n",
                 file.c_str(), name.c_str());
    std::vector<std::string> keep = g_command_line;
    keep.push_back("--file");
    keep.push_back(file);
    std::vector<char*> again;
    for (auto& a : keep) again.push_back(a.data());
    again.push_back(nullptr);
    ::execv("/proc/self/exe", again.data());
    throw mm::Error(mm::str_cat("mmbench clip-load: cannot run itself again: ", std::strerror(errno)));
  }
  MM_CHECK(::stat(file.c_str(), &st) == 0, "mmbench clip-load: cannot stat '", file, "'");
  const double file_mib = static_cast<double>(st.st_size) / (1 << 20);
  const double base_mib = static_cast<double>(status_kib("VmRSS:")) / 1024;
  const int64_t base_anon_kib = status_kib("RssAnon:");
  const mm::TensorFile f = mm::load_weights(file);
  const mm::ClipConfig inferred = mm::infer_clip_config(f);
  MM_CHECK(!args.values.count("model-config") || inferred.str() == mm::clip_config_preset(name).str(),
           "mmbench clip-load: '", file, "' holds ", inferred.str(), ", not ", name);
  mm::ClipModel clip = mm::ClipModel::load(f, inferred);
  if (args.get("widen", "0") != "0") clip = clip.to(mm::DType::f32);  // every weight a float32 copy (mm before 12/2026)
  const double load_mib = static_cast<double>(status_kib("VmHWM:")) / 1024 - base_mib;
  if (args.get("prepack", "1") != "0") clip.prepack("visual.");
  {
    mm::NoGradGuard ng;
    const int64_t r = clip.config().image_resolution;
    mm::Generator gen(0);
    clip.encode_image(mm::Tensor::randn({1, 3, r, r}, gen));
  }
  const double run_mib = static_cast<double>(status_kib("VmHWM:")) / 1024 - base_mib;
  // of which private memory (the rest are pages of the mapped file, which the kernel can drop)
  const double anon_mib = static_cast<double>(status_kib("RssAnon:") - base_anon_kib) / 1024;
  report(args, "clip-load",
         {{"model", "\"" + name + "\""}, {"file_mib", num(file_mib)}, {"load_peak_mib", num(load_mib)},
          {"load_ratio", num(load_mib / file_mib)}, {"encode_peak_mib", num(run_mib)},
          {"encode_ratio", num(run_mib / file_mib)}, {"encode_private_mib", num(anon_mib)}},
         "file " + num(file_mib) + " MiB; peak after load " + num(load_mib) + " MiB (" + num(load_mib / file_mib) +
             "x the file); after prepack + one encode_image " + num(run_mib) + " MiB (" + num(run_mib / file_mib) +
             "x; private " + num(anon_mib) + " MiB, the rest mapped file pages), above the " + num(base_mib) +
             " MiB the process had before");
  return 0;
}

// vqgan-clip-step: one mmgen optimisation step (quantise, decode, cutouts, CLIP, backward,
// Adam) with random weights of taming's f16-16384 VQGAN and a CLIP (--model-config).
int bench_vqgan_clip_step(const Args& args) {
  const mm::Device dev = setup_device_and_threads(args);
  const int64_t size = args.get_int("size", 256), cutn = args.get_int("cutn", 32), repeat = args.get_int("repeat", 3);
  mm::VQGANConfig vc;  // taming's vqgan_imagenet_f16_16384
  vc.embed_dim = 256;
  vc.n_embed = 16384;
  vc.z_channels = 256;
  vc.resolution = 256;
  vc.ch = 128;
  vc.ch_mult = {1, 1, 2, 2, 4};
  vc.num_res_blocks = 2;
  vc.attn_resolutions = {16};
  const std::map<std::string, mm::Shape> vq_table = mm::vqgan_weight_table(vc);
  const std::vector<std::pair<std::string, mm::Shape>> table(vq_table.begin(), vq_table.end());
  mm::VQGAN vq = mm::VQGAN::from_tensors(random_weights(table), vc);
  mm::ClipModel clip = random_clip(args.get("model-config", "ViT-B/32"));
  if (dev != mm::Device::cpu) {  // as mmgen does
    vq = vq.to(dev);
    clip = clip.to(dev);
    const mm::cuda_ops::Precision p = mm::cuda_ops::parse_precision(args.get("precision", "fp32"), "mmbench");
    vq.set_precision(p);
    clip.set_precision(p);
  } else if (args.get("prepack", "1") != "0") {
    clip.prepack("visual.");
  }
  const mm::ClipTokenizer tok(std::vector<mm::ClipTokenizer::Merge>{{"a", "b"}});  // unused: noise prompt
  mm::VQGANCLIPOptions o;
  o.width = o.height = size;
  o.cutouts.cut_size = clip.config().image_resolution;
  o.cutouts.cutn = cutn;
  mm::VQGANCLIP gen(vq, clip, tok, o);
  gen.add_noise_prompt(1, 1.0);
  gen.init_random();
  clip.release_text_tower();  // as mmgen does once the prompts and the latent are made
  vq.release_encoder();
  mm::cuda_ops::empty_cache();
  gen.step();  // Adam's moments and z's gradient exist from the first step on
  const mm::cuda_ops::MemoryUse before = mm::cuda_ops::memory_use();  // the models, the prompt, z and Adam
  mm::cuda_ops::reset_memory_peak();
  const double ms = median_ms(repeat, [&] { gen.step(); });  // (the loss comes back to the host)
  std::vector<std::pair<std::string, std::string>> fields = {{"size", std::to_string(size)},
                                                             {"cutn", std::to_string(cutn)},
                                                             {"threads", std::to_string(mm::num_threads())},
                                                             {"ms", num(ms)},
                                                             {"it_per_s", num(1000.0 / ms)}};
  std::string words = num(ms) + " ms per step, " + num(1000.0 / ms) + " it/s";
  if (dev != mm::Device::cpu) {
    // The device's caching allocator: the bytes resident between steps, and the most in use at
    // once during a step (cuBLAS's own workspace and the CUDA context are not counted).
    const mm::cuda_ops::MemoryUse after = mm::cuda_ops::memory_use();
    fields.push_back({"precision", "\"" + args.get("precision", "fp32") + "\""});
    fields.push_back({"resident_mib", mib(before.in_use)});
    fields.push_back({"step_peak_mib", mib(after.peak)});
    words += ", device memory: " + mib(before.in_use) + " MiB resident, peak " + mib(after.peak) + " MiB in a step";
  }
  report(args, "vqgan-clip-step", fields, words);
  return 0;
}

#endif  // MM_BENCH_ENGINE_ONLY

struct Bench {
  const char* name;
  const char* description;
  std::set<std::string> flags;  // accepted --key value flags
  int (*run)(const Args&);
  bool models = false;  // a model bench: runs --device cuda itself (not bench/bench_cuda.cpp's kernels)
};

const std::vector<Bench>& benches() {
  static const std::vector<Bench> table = {
      {"gemm", "SGEMM C[m,n] = A[m,k] @ B[k,n] (kernels/gemm.h); --m --n --k, reports GFLOP/s",
       {"m", "n", "k", "device", "threads", "repeat"}, bench_gemm},
      {"conv2d", "conv2d forward float32 (engine/ops/conv.h); --c --k --h --w --kh [--kw --stride --padding --batch]",
       {"c", "k", "c-in", "c-out", "h", "w", "kh", "kw", "kernel", "stride", "padding", "batch", "device", "threads",
        "repeat"},
       bench_conv2d},
      {"layernorm", "layer_norm over the last dim of [rows, cols] float32; --rows --cols, reports GB/s",
       {"rows", "cols", "device", "threads", "repeat"}, bench_layernorm},
      {"softmax", "softmax over the last dim of [rows, cols] float32; --rows --cols, reports GB/s",
       {"rows", "cols", "device", "threads", "repeat"}, bench_softmax},
#ifndef MM_BENCH_ENGINE_ONLY
      {"clip-image",
       "CLIP encode_image, random weights of a real model; --model-config ViT-B/32 --batch N [--prepack 0|1] "
       "[--device cuda [--precision bf16]]",
       {"model-config", "batch", "prepack", "device", "precision", "threads", "repeat"}, bench_clip_image, true},
      {"clip-load",
       "peak memory of loading a CLIP (fresh process; writes random weights of the real shapes in OpenAI's fp16/fp32 "
       "mix to --file first if it does not exist); --model-config ViT-B/32 [--file F] [--prepack 0|1] [--widen 1: "
       "all weights float32 copies]",
       {"model-config", "file", "prepack", "widen", "threads"}, bench_clip_load, true},
      {"vqgan-clip-step",
       "one mmgen step, random f16-16384 VQGAN + CLIP; --size 256 --cutn 32 [--model-config] [--device cuda "
       "[--precision bf16]] (on the device: the allocator's peak too)",
       {"size", "cutn", "model-config", "prepack", "device", "precision", "threads", "repeat"}, bench_vqgan_clip_step,
       true},
#endif
  };
  return table;
}

void usage() {
  std::printf("usage: mmbench --list | mmbench KERNEL [--device cpu] [--threads N] [--repeat R] "
              "[--json] [kernel flags]\n"
              "       mmbench all|KERNEL --device cuda [--repeat R]   (CUDA kernels beside cuBLAS/cuDNN)\n");
}

int run(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  const std::string name = argv[1];
  const Bench* bench = nullptr;
  for (const Bench& b : benches())
    if (name == b.name) bench = &b;
  for (int i = 2; i + 1 < argc && !(bench && bench->models); ++i)
    if (std::string(argv[i]) == "--device" && std::string(argv[i + 1]) == "cuda") {
#if MM_BENCH_CUDA
      // `mmbench KERNEL --device cuda` (or `mmbench all --device cuda`): bench/bench_cuda.cpp.
      std::vector<char*> rest;
      for (int j = 0; j < argc; ++j)
        if (j != i && j != i + 1) rest.push_back(argv[j]);
      return mm::bench::cuda_main(static_cast<int>(rest.size()), rest.data());
#elif MM_CUDA_EMULATED
      throw mm::Error("mmbench: this mm runs CUDA kernels on the CPU emulator (MM_CUDA_EMULATE): nothing to time "
                      "(configure with -DMM_CUDA=ON on a machine with a GPU)");
#else
      throw mm::Error("mmbench: mm was built without CUDA (--device cuda; configure with -DMM_CUDA=ON)");
#endif
    }
  if (name == "--list") {
    for (const Bench& b : benches()) std::printf("%-16s %s\n", b.name, b.description);
    return 0;
  }
  if (name == "--help" || name == "-h") {
    usage();
    return 0;
  }
  MM_CHECK(bench != nullptr, "mmbench: unknown kernel '", name, "' (mmbench --list shows them)");
  Args args;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    MM_CHECK(flag.rfind("--", 0) == 0, "mmbench: expected a --flag, got '", flag, "'");
    const std::string key = flag.substr(2);
    if (key == "json") {
      args.json = true;
      continue;
    }
    MM_CHECK(bench->flags.count(key), "mmbench ", bench->name, ": unknown flag '", flag, "'");
    MM_CHECK(i + 1 < argc, "mmbench: flag '", flag, "' needs a value");
    args.values[key] = argv[++i];
  }
  g_command_line.assign(argv, argv + argc);
  return bench->run(args);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
