// tests/weights_tools/test_torch_file.cpp: torch.save zip checkpoints, Lightning .ckpt,
// TorchScript archives, the restricted pickle decoder, and malformed files.
// Run: ctest --test-dir build -R test_torch_file
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/mm.h"
#include "tests/refs.h"
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
  SUBCASE("a legacy torch file") {
    const std::string p = temp_path("legacy.pt");
    std::ofstream(p, std::ios::binary) << std::string("\x80\x02\x8a\x0a", 4) << "lots of legacy bytes";
    CHECK_THROWS_WITH_AS(load_torch_file(p), doctest::Contains("legacy (pre-1.6, non-zip)"), Error);
    std::remove(p.c_str());
  }
}
