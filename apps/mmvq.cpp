// apps/mmvq.cpp: a VQGAN on the command line: reconstruct an image through the codebook,
// or go between images and code maps.
//
//   mmvq reconstruct IN.png OUT.png [--vqgan last.ckpt] [--config model.yaml] [--dump FILE.safetensors]
//   (without --vqgan: mm-mini's 64x64 VQGAN from models/mini/)
//   mmvq encode IN.png CODES.safetensors --vqgan last.ckpt [--config model.yaml]
//   mmvq decode CODES.safetensors OUT.png --vqgan last.ckpt [--config model.yaml]
//   every command: [--device cpu|cuda|auto] [--precision fp32|bf16|fp16] [--threads N]
//
// Images are resized to a multiple of the downsampling factor only if they are not one
// already (the program says so). --dump writes h (quant_conv output), indices (int64 codes)
// and decoded (float: the decoder's output, nominally in [-1, 1], not clamped, as taming's
// decode returns it). Without --config, a <stem>.yaml or model.yaml next to the weights is used.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/common/args.h"
#include "apps/common/image_io.h"
#include "apps/common/model_files.h"
#include "engine/mm.h"
#include "engine/ops/resize.h"
#include "models/vqgan.h"
#include "weights_tools/safetensors.h"

using namespace mm;

namespace {

struct Args {
  std::string command, in, out, vqgan, config, dump, device = "auto", precision = "fp32";
  int threads = 0;
  Device dev = Device::cpu;                               // parsed from device
  cuda_ops::Precision prec = cuda_ops::Precision::fp32;  // parsed from precision
};

int usage(FILE* f) {
  std::fprintf(f,
               "usage:\n"
               "  mmvq reconstruct IN.png OUT.png --vqgan CKPT [--config YAML] [--dump FILE.safetensors]\n"
               "  mmvq encode IN.png CODES.safetensors --vqgan CKPT [--config YAML]\n"
               "  mmvq decode CODES.safetensors OUT.png --vqgan CKPT [--config YAML]\n"
               "CKPT: taming's last.ckpt, a torch file or a .safetensors (default: mm-mini's vqgan);\n"
               "YAML: taming's model.yaml (default: <stem>.yaml or model.yaml next to CKPT;\n"
               "without one the config is inferred from the weights' shapes).\n"
               "options: --device cpu|cuda|auto (default auto: the GPU when present)\n"
               "         --precision fp32|bf16|fp16 (the GPU's convolutions and GEMMs in 16 bits)   --threads N\n");
  return f == stdout ? 0 : 2;
}

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      MM_CHECK(i + 1 < argc, "mmvq: option ", k, " needs a value");
      return argv[++i];
    };
    if (k == "--vqgan") a.vqgan = value();
    else if (k == "--config") a.config = value();
    else if (k == "--dump") a.dump = value();
    else if (k == "--threads") a.threads = static_cast<int>(apps::parse_int("mmvq", k, value(), 1, 1024));
    else if (k == "--device") a.device = value();
    else if (k == "--precision") a.precision = value();
    else if (k.rfind("--", 0) == 0) throw Error(str_cat("mmvq: unknown option '", k, "'"));
    else positional.push_back(k);
  }
  MM_CHECK(positional.size() == 3, "mmvq: expected a command and two files, got ", positional.size(), " arguments");
  a.command = positional[0];
  a.in = positional[1];
  a.out = positional[2];
  MM_CHECK(a.command == "reconstruct" || a.command == "encode" || a.command == "decode", "mmvq: unknown command '",
           a.command, "' (reconstruct, encode, decode)");
  if (a.vqgan.empty()) a.vqgan = apps::default_model("vqgan");  // mm-mini's, from models/mini/
  a.dev = apps::parse_device("mmvq", a.device);
  a.prec = cuda_ops::parse_precision(a.precision, "mmvq");
  MM_CHECK(a.prec == cuda_ops::Precision::fp32 || a.dev == Device::cuda, "mmvq: --precision ", a.precision,
           " needs --device cuda (the tensor cores); the CPU computes in fp32");
  return a;
}

// Image file -> [1, 3, H, W] in [-1, 1], resized down to a multiple of the factor if needed.
Tensor load_for_vqgan(const std::string& path, int64_t factor) {
  Tensor img = apps::load_image_rgb(path).unsqueeze(0);
  const int64_t h = img.size(2), w = img.size(3);
  const int64_t nh = h / factor * factor, nw = w / factor * factor;
  MM_CHECK(nh > 0 && nw > 0, "mmvq: image '", path, "' (", w, "x", h, ") is smaller than the downsampling factor ", factor);
  if (nh != h || nw != w) {
    std::fprintf(stderr, "mmvq: resizing %s from %lldx%lld to %lldx%lld (a multiple of %lld)\n", path.c_str(),
                 (long long)w, (long long)h, (long long)nw, (long long)nh, (long long)factor);
    img = resize(img, nh, nw, ResizeFilter::bicubic, Antialias::yes);
  }
  return img * 2.0 - 1.0;
}

void save_decoded(const std::string& path, const Tensor& decoded) {
  apps::save_png(path, clamp((decoded.select(0, 0) + 1.0) * 0.5, 0.0, 1.0));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) return usage(stderr);
    if (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") return usage(stdout);
    const Args a = parse(argc, argv);
    if (a.threads > 0) set_num_threads(a.threads);
    NoGradGuard no_grad;
    VQGAN vq = apps::load_vqgan(a.vqgan, a.config);  // (a <stem>.yaml or model.yaml beside it is found)
    if (a.dev != Device::cpu) {
      vq = vq.to(a.dev);
      vq.set_precision(a.prec);
    }
    if (a.command == "decode") {
      TensorFile codes = load_safetensors(a.in);
      Tensor idx = codes.get("indices");
      MM_CHECK(idx.dtype() == DType::i64, "mmvq: '", a.in, "' indices must be int64, got ", idx.str());
      if (idx.dim() == 2) idx = idx.unsqueeze(0);
      const int64_t k = vq.config().n_embed;
      for (int64_t v : idx.to_vector<int64_t>())
        MM_CHECK(v >= 0 && v < k, "mmvq: '", a.in, "' has code ", v, " outside the codebook [0, ", k, ")");
      save_decoded(a.out, vq.decode(vq.codes_to_latent(idx.to(a.dev))).to(Device::cpu));
      std::printf("decoded %s -> %s\n", a.in.c_str(), a.out.c_str());
      return 0;
    }
    const Tensor x = load_for_vqgan(a.in, vq.config().downsample_factor());
    const Tensor h_dev = vq.encode(x.to(a.dev));
    const VQCodes q = vq.quantize(h_dev);
    const Tensor h = h_dev.to(Device::cpu);
    const Tensor indices = q.indices.to(Device::cpu);
    if (a.command == "encode") {
      save_safetensors(a.out, {{"indices", indices}}, {{"format", "mm"}, {"vqgan", a.vqgan}});
      std::printf("encoded %s -> %s: %s codes\n", a.in.c_str(), a.out.c_str(), shape_str(indices.shape()).c_str());
      return 0;
    }
    const Tensor decoded = vq.decode(q.z_q).to(Device::cpu);
    save_decoded(a.out, decoded);
    Tensor mse = mean(square((decoded - x) * 0.5));  // in [0, 1] units
    std::printf("reconstructed %s -> %s: %s codes, PSNR %.2f dB\n", a.in.c_str(), a.out.c_str(),
                shape_str(indices.shape()).c_str(), -10.0 * std::log10(mse.item()));
    if (!a.dump.empty()) {
      save_safetensors(a.dump, {{"h", h}, {"indices", indices}, {"decoded", decoded}}, {{"format", "mm"}});
      std::printf("wrote %s (h, indices, decoded)\n", a.dump.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
