// tests/weights_tools/test_torch_file.cpp: torch.save zip checkpoints, Lightning .ckpt,
// TorchScript archives, the restricted pickle decoder, and malformed files.
// Run: ctest --test-dir build -R test_torch_file
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <minizip/zip.h>

#include "engine/mm.h"
#include "tests/apps/run_command.h"
#include "tests/refs.h"
#include "weights_tools/safetensors.h"
#include "weights_tools/pickle.h"
#include "weights_tools/torch_file.h"

using namespace mm;

namespace {
std::string data_path(const std::string& f) { return std::string(MM_SOURCE_DIR) + "/tests/data/" + f; }
std::string temp_path(const std::string& name) { return "/tmp/mm_test_" + std::to_string(::getpid()) + "_" + name; }

// Every tensor of `b` exists in `a` with the same dtype, shape and bits.
void check_same_tensors(const TensorFile& a, const TensorFile& b) {
  for (const auto& [name, t] : b.tensors) {
    REQUIRE_MESSAGE(a.contains(name), a.path, " lacks ", name);
    const Tensor& u = a.get(name);
    CHECK_MESSAGE(u.dtype() == t.dtype(), name);
    CHECK_MESSAGE(u.shape() == t.shape(), name);
    CHECK_MESSAGE(u.to_vector<double>() == t.to_vector<double>(), name);
  }
}
}  // namespace

TEST_CASE("CLIP .pt state dicts equal their safetensors twins, in state-dict order") {
  for (const char* stem : {"clip_vit_tiny", "clip_rn_tiny"}) {
    SUBCASE(stem) {
      MM_REQUIRE_REFS(std::string(stem) + ".pt");
      TensorFile pt = load_torch_file(testing::refs_path(std::string(stem) + ".pt"));
      TensorFile st = load_safetensors(testing::refs_path(std::string(stem) + ".safetensors"));
      REQUIRE(pt.tensors.size() == st.tensors.size());
      for (size_t i = 0; i < pt.tensors.size(); ++i) CHECK(pt.tensors[i].first == st.tensors[i].first);
      check_same_tensors(pt, st);
      MESSAGE(std::string(stem) << ": " << pt.tensors.size() << " tensors identical in .pt and .safetensors");
    }
  }
}

TEST_CASE("the Lightning VQGAN .ckpt holds the safetensors tensors plus loss.*") {
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  TensorFile ck = load_weights(testing::refs_path("vqgan_tiny.ckpt"));
  TensorFile st = load_weights(testing::refs_path("vqgan_tiny.safetensors"));
  check_same_tensors(ck, st);
  int64_t loss_keys = 0;
  for (const auto& [n, t] : ck.tensors) loss_keys += n.rfind("loss.", 0) == 0;
  CHECK(loss_keys > 0);
  CHECK(ck.tensors.size() == st.tensors.size() + static_cast<size_t>(loss_keys));
}

TEST_CASE("a TorchScript archive flattens to state_dict names") {
  TensorFile f = load_torch_file(data_path("torchscript_sample.pt"));
  std::ifstream expected(data_path("torchscript_sample_expected.txt"));
  std::string line;
  int64_t n = 0;
  while (std::getline(expected, line)) {
    std::istringstream is(line);
    std::string name, dtype, shape_text;
    double checksum;
    is >> name >> dtype;
    std::getline(is, shape_text, ']');
    is >> checksum;
    REQUIRE_MESSAGE(f.contains(name), "missing ", name);
    const Tensor& t = f.get(name);
    CHECK_MESSAGE(std::string(dtype_name(t.dtype())) == dtype, name);
    double s = 0;
    for (double v : t.to_vector<double>()) s += v;
    CHECK_MESSAGE(std::abs(s - checksum) <= 1e-6 * (1 + std::abs(checksum)), name, " sum ", s, " vs ", checksum);
    ++n;
  }
  CHECK(n == 10);
  CHECK(f.get("visual.0.proj.weight").shape() == Shape{3, 4});
}

TEST_CASE("Lightning extras load as inert data and nothing in the pickle runs") {
  std::remove("/tmp/mm_pickle_exploit_ran");
  TensorFile f = load_torch_file(data_path("lightning_sample.ckpt"));
  CHECK(f.tensors.size() == 2);
  CHECK(f.get("encoder.conv_in.weight").to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  std::ifstream ran("/tmp/mm_pickle_exploit_ran");
  CHECK_MESSAGE(!ran.good(), "the os.system call inside the pickle was executed");
}

TEST_CASE("the pickle decoder keeps unknown globals inert") {
  // cos\nsystem\n(S'echo hi'\ntR.  = os.system('echo hi') in protocol 0
  static const char raw[] = "cos\nsystem\n(X\x07\x00\x00\x00" "echo hitR.";
  const std::string p(raw, sizeof(raw) - 1);  // embedded NULs: not a C string
  pickle::ValuePtr v = pickle::load(reinterpret_cast<const unsigned char*>(p.data()), p.size(), nullptr, "test");
  CHECK(v->kind == pickle::Value::Kind::object);
  CHECK(v->s == "os.system");
  REQUIRE(v->items.size() == 1);
  CHECK(v->items[0]->s == "echo hi");
  // malformed: truncated, stack underflow, unknown opcode
  static const char raw_truncated[] = "\x80\x02X\xff\x00\x00\x00" "abc";
  const std::string truncated(raw_truncated, sizeof(raw_truncated) - 1);
  CHECK_THROWS_WITH_AS(pickle::load(reinterpret_cast<const unsigned char*>(truncated.data()), truncated.size(), nullptr, "t.pkl"),
                       doctest::Contains("t.pkl: malformed pickle"), Error);
  const std::string underflow = "\x80\x02s.";
  CHECK_THROWS_WITH_AS(pickle::load(reinterpret_cast<const unsigned char*>(underflow.data()), underflow.size(), nullptr, "u.pkl"),
                       doctest::Contains("stack underflow"), Error);
  const std::string unknown = "\x80\x02\xff.";
  CHECK_THROWS_WITH_AS(pickle::load(reinterpret_cast<const unsigned char*>(unknown.data()), unknown.size(), nullptr, "x.pkl"),
                       doctest::Contains("unsupported pickle opcode 0xff"), Error);
}

namespace {
// A protocol-2 pickle of _rebuild_tensor_v2(storage, 0, size, stride, False, {}) with 8-byte
// (LONG1) sizes and strides.
std::string rebuild_pickle(const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
  auto long1 = [](int64_t v) {
    std::string b = "\x8a\x08";
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
    return b;
  };
  std::string p = "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n(" "(K\x01tQ" "K";
  p += '\0';  // offset 0 (a NUL: appended, not inside a C string)
  p += "(";
  for (int64_t v : size) p += long1(v);
  p += "t(";
  for (int64_t v : stride) p += long1(v);
  p += "t\x89}tR.";
  return p;
}
}  // namespace

TEST_CASE("a pickle nested 200000 levels deep decodes and is freed without recursion") {
  // 200000 empty lists, each appended into the one below: list[list[list[...]]]
  const int n = 200000;
  std::string p = "\x80\x02" + std::string(n, ']') + std::string(n - 1, 'a') + ".";
  {
    pickle::ValuePtr v = pickle::load(reinterpret_cast<const unsigned char*>(p.data()), p.size(), nullptr, "deep.pkl");
    int depth = 1;
    for (const pickle::Value* x = v.get(); !x->items.empty(); x = x->items[0].get()) ++depth;
    CHECK(depth == n);
  }  // (a recursive destructor would overflow the stack here)
}

TEST_CASE("tensor views in a pickle are checked against their storage without overflow") {
  auto storage = Storage::allocate(64 * sizeof(float), Device::cpu);
  const pickle::PersistentLoad resolve = [&](const pickle::ValuePtr&) { return pickle::StorageRef{storage, DType::f32}; };
  auto load = [&](const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
    const std::string p = rebuild_pickle(size, stride);
    return pickle::load(reinterpret_cast<const unsigned char*>(p.data()), p.size(), resolve, "v.pkl");
  };
  // a valid view: [8, 8] of 64 floats
  CHECK(load({8, 8}, {8, 1})->tensor.shape() == Shape{8, 8});
  // one element past the storage
  CHECK_THROWS_WITH_AS(load({8, 9}, {8, 1}), doctest::Contains("overruns its storage of 64 elements"), Error);
  // (size - 1) x stride = (2^30 - 1) 2^39 wraps to -2^39 in 64-bit arithmetic, which would pass
  CHECK_THROWS_WITH_AS(load({int64_t{1} << 30, 1}, {int64_t{1} << 39, 1}),
                       doctest::Contains("overruns its storage of 64 elements"), Error);
  const int64_t big = (int64_t{1} << 39) + 1;
  // zero strides with a huge element count (no overrun, but absurd)
  CHECK_THROWS_WITH_AS(load({big, big}, {0, 0}), doctest::Contains("more than 2^40 elements"), Error);
}

TEST_CASE("truncated and non-checkpoint files are clear errors") {
  MM_REQUIRE_REFS("clip_vit_tiny.pt");
  std::ifstream in(testing::refs_path("clip_vit_tiny.pt"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t keep : {bytes.size() / 2, bytes.size() - 100, size_t{10}}) {
    SUBCASE(("truncated to " + std::to_string(keep) + " bytes").c_str()) {
      const std::string p = temp_path("trunc.pt");
      std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(keep));
      CHECK_THROWS_WITH_AS(load_torch_file(p), doctest::Contains(p.c_str()), Error);
      std::remove(p.c_str());
    }
  }
  SUBCASE("a text file") {
    const std::string p = temp_path("text.pt");
    std::ofstream(p) << "hello, this is not a checkpoint";
    CHECK_THROWS_WITH_AS(load_torch_file(p), doctest::Contains("is not a zip archive"), Error);
    std::remove(p.c_str());
  }
  SUBCASE("a compressed entry whose directory claims an absurd size") {
    // A deflated data.pkl (torch writes stored entries; zip tools may not): it is inflated.
    const std::string p = temp_path("deflated.pt");
    zipFile zf = zipOpen64(p.c_str(), APPEND_STATUS_CREATE);
    REQUIRE(zf != nullptr);
    REQUIRE(zipOpenNewFileInZip64(zf, "archive/data.pkl", nullptr, nullptr, 0, nullptr, 0, nullptr, Z_DEFLATED,
                                  Z_DEFAULT_COMPRESSION, 0) == ZIP_OK);
    const std::string pkl = std::string("\x80\x02}q\x00.", 6);  // an empty state dict
    REQUIRE(zipWriteInFileInZip(zf, pkl.data(), static_cast<unsigned>(pkl.size())) == ZIP_OK);
    REQUIRE(zipCloseFileInZip(zf) == ZIP_OK);
    REQUIRE(zipClose(zf, nullptr) == ZIP_OK);
    // (inflated and parsed: the pickle is an empty dict)
    CHECK_THROWS_WITH_AS(load_torch_file(p), doctest::Contains("holds no tensors"), Error);
    // the uncompressed size set to 2^31 - 1 in the local header (offset 22 of "PK\3\4") and the
    // central directory (offset 24 of "PK\1\2"), consistently
    std::ifstream zin(p, std::ios::binary);
    std::string z((std::istreambuf_iterator<char>(zin)), std::istreambuf_iterator<char>());
    const size_t local = z.find("PK\x03\x04"), cd = z.rfind("PK\x01\x02");
    REQUIRE(local != std::string::npos);
    REQUIRE(cd != std::string::npos);
    z.replace(local + 22, 4, std::string("\xff\xff\xff\x7f", 4));
    z.replace(cd + 24, 4, std::string("\xff\xff\xff\x7f", 4));
    std::ofstream(p, std::ios::binary | std::ios::trunc) << z;
    CHECK_THROWS_WITH_AS(load_torch_file(p), doctest::Contains("claims 2147483647 bytes from"), Error);
    std::remove(p.c_str());
  }
  SUBCASE("a legacy torch file") {
    const std::string p = temp_path("legacy.pt");
    std::ofstream(p, std::ios::binary) << std::string("\x80\x02\x8a\x0a", 4) << "lots of legacy bytes";
    CHECK_THROWS_WITH_AS(load_torch_file(p), doctest::Contains("legacy (pre-1.6, non-zip)"), Error);
    std::remove(p.c_str());
  }
}

TEST_CASE("mmconvert info lists the tensors and the inferred model; mmconvert converts dtypes, names kept") {
  MM_REQUIRE_REFS("clip_vit_tiny.pt");
  MM_REQUIRE_REFS("vqgan_tiny.ckpt");
  const std::string mmconvert = MM_BIN_DIR "/mmconvert";
  auto [rc1, t1] = testing::run_command(mmconvert + " info " + testing::refs_path("clip_vit_tiny.pt"));
  REQUIRE_MESSAGE(rc1 == 0, t1);
  const size_t row = t1.find("visual.transformer.resblocks.0.attn.in_proj_weight ");
  REQUIRE(row != std::string::npos);
  CHECK(t1.substr(row, t1.find('\n', row) - row).find("float16   [384, 128]") != std::string::npos);
  CHECK_MESSAGE(t1.find("model: CLIP ViT (patch 16, layers 2, width 128, heads 2, resolution 64); text (width 32") !=
                    std::string::npos,
                t1);
  auto [rc2, t2] = testing::run_command(mmconvert + " info " + testing::refs_path("vqgan_tiny.ckpt"));
  REQUIRE_MESSAGE(rc2 == 0, t2);
  CHECK_MESSAGE(t2.find("model: taming VQGAN f4 ch 32 ch_mult [1,2,2] res_blocks 1") != std::string::npos, t2);
  // fp32 conversion: every floating tensor widened exactly, the names and order kept
  const std::string out = "/tmp/mm_test_mmconvert_" + std::to_string(::getpid()) + ".safetensors";
  auto [rc3, t3] = testing::run_command(mmconvert + " " + testing::refs_path("clip_vit_tiny.pt") + " " + out + " --dtype fp32");
  REQUIRE_MESSAGE(rc3 == 0, t3);
  const TensorFile src = load_weights(testing::refs_path("clip_vit_tiny.pt")), dst = load_safetensors(out);
  REQUIRE(dst.tensors.size() == src.tensors.size());
  for (size_t i = 0; i < src.tensors.size(); ++i) {
    CAPTURE(src.tensors[i].first);
    CHECK(dst.tensors[i].first == src.tensors[i].first);
    if (!is_floating(src.tensors[i].second.dtype())) continue;
    CHECK(dst.tensors[i].second.dtype() == DType::f32);
    CHECK(dst.tensors[i].second.to_vector<double>() == src.tensors[i].second.to_vector<double>());
  }
  std::remove(out.c_str());
  auto [rc4, t4] = testing::run_command(mmconvert + " " + testing::refs_path("clip_vit_tiny.pt") + " " + out + " --dtype int8");
  CHECK(rc4 == 1);
  CHECK(t4.find("--dtype must be fp16, fp32 or keep, got 'int8'") != std::string::npos);
}
