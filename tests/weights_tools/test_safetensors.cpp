// tests/weights_tools/test_safetensors.cpp: safetensors round trips, the reference files,
// and malformed files, each of which must be a clear error naming the file and entry.
// Run: ctest --test-dir build -R test_safetensors
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "engine/mm.h"
#include "tests/gradcheck.h"
#include "tests/refs.h"
#include "weights_tools/safetensors.h"

using namespace mm;

namespace {
std::string temp_path(const std::string& name) { return "/tmp/mm_test_" + std::to_string(::getpid()) + "_" + name; }

// Writes a file with the given JSON header (padded to 8 bytes) and `data_bytes` zero bytes.
std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes, int64_t claimed_len = -1) {
  std::string h = header;
  while (h.size() % 8) h.push_back(' ');
  const uint64_t len = claimed_len >= 0 ? static_cast<uint64_t>(claimed_len) : h.size();
  std::string path = temp_path(name);
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out << h << std::string(data_bytes, '\0');
  return path;
}
}  // namespace

TEST_CASE("safetensors round trip keeps names, order, dtypes, shapes and values") {
  Generator g(1);
  Tensor a = Tensor::randn({3, 4}, g);
  Tensor b = Tensor::randn({5}, g).to(f16);
  Tensor c = Tensor::from_vector(std::vector<int64_t>{1, -2, 3}, {3});
  Tensor d = Tensor::randn({4, 3}, g).t();  // non-contiguous: written contiguous
  Tensor e = Tensor::scalar(2.5);
  const std::string path = temp_path("roundtrip.safetensors");
  save_safetensors(path, {{"zeta", a}, {"alpha", b}, {"ids", c}, {"transposed", d}, {"scalar", e}}, {{"format", "mm"}});
  TensorFile f = load_safetensors(path);
  REQUIRE(f.tensors.size() == 5);
  CHECK(f.tensors[0].first == "zeta");  // file order, not alphabetical
  CHECK(f.tensors[1].first == "alpha");
  CHECK(f.metadata.at("format") == "mm");
  CHECK(f.get("zeta").to_vector<float>() == a.to_vector<float>());
  CHECK(f.get("alpha").dtype() == f16);
  CHECK(f.get("alpha").to_vector<float>() == b.to_vector<float>());
  CHECK(f.get("ids").to_vector<int64_t>() == std::vector<int64_t>{1, -2, 3});
  CHECK(f.get("transposed").shape() == Shape{3, 4});
  CHECK(f.get("transposed").to_vector<float>() == d.to_vector<float>());
  CHECK(f.get("scalar").shape() == Shape{});
  CHECK(f.get("scalar").item() == 2.5);
  CHECK_THROWS_WITH_AS(f.get("nope"), doctest::Contains("has no tensor 'nope'"), Error);
  // tensors outlive the TensorFile (the mapping is reference counted), and in-place writes
  // touch private copy-on-write pages only
  Tensor keep = f.get("zeta");
  f = TensorFile();
  keep.fill_(0);
  CHECK(load_safetensors(path).get("zeta").to_vector<float>() == a.to_vector<float>());
  std::remove(path.c_str());
}

TEST_CASE("reference safetensors files load with their mixed dtypes") {
  MM_REQUIRE_REFS("clip_vit_tiny.safetensors");
  TensorFile f = load_safetensors(testing::refs_path("clip_vit_tiny.safetensors"));
  CHECK(f.get("visual.conv1.weight").dtype() == f16);
  CHECK(f.get("visual.conv1.weight").shape() == Shape{128, 3, 16, 16});
  CHECK(f.get("token_embedding.weight").dtype() == f32);
  CHECK(f.get("logit_scale").shape() == Shape{});
  CHECK(f.get("logit_scale").item() == doctest::Approx(2.66).epsilon(0.05));
  CHECK(f.metadata.at("format") == "pt");
  MM_REQUIRE_REFS("vqgan_tiny_expected.safetensors");
  TensorFile v = load_safetensors(testing::refs_path("vqgan_tiny_expected.safetensors"));
  CHECK(v.get("indices").dtype() == i64);
  CHECK(v.get("indices").shape() == Shape{1, 16, 16});
  MESSAGE("clip_vit_tiny.safetensors: " << f.tensors.size() << " tensors");
}

TEST_CASE("malformed safetensors files are clear errors") {
  SUBCASE("shorter than 8 bytes") {
    std::string p = temp_path("short.safetensors");
    std::ofstream(p) << "abc";
    CHECK_THROWS_WITH_AS(load_safetensors(p), doctest::Contains("shorter than the 8-byte header length"), Error);
  }
  SUBCASE("header length beyond the file") {
    std::string p = write_raw("hlen.safetensors", "{}", 0, 1000000);
    CHECK_THROWS_WITH_AS(load_safetensors(p), doctest::Contains("header length 1000000 exceeds the file size"), Error);
  }
  SUBCASE("header that is not JSON") {
    std::string p = write_raw("json.safetensors", "{not json", 0);
    CHECK_THROWS_WITH_AS(load_safetensors(p), doctest::Contains("not valid JSON"), Error);
  }
  SUBCASE("offsets outside the data (truncated file)") {
    std::string p = write_raw("range.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
    CHECK_THROWS_WITH_AS(load_safetensors(p), doctest::Contains("entry 'w' data_offsets [0, 16] lie outside"), Error);
  }
  SUBCASE("overlapping entries") {
    std::string p = write_raw("overlap.safetensors",
                              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              12);
    CHECK_THROWS_WITH_AS(load_safetensors(p), doctest::Contains("overlap"), Error);
  }
  SUBCASE("byte count that does not match dtype and shape") {
    std::string p = write_raw("size.safetensors", R"({"w":{"dtype":"F16","shape":[3,3],"data_offsets":[0,16]}})", 16);
    CHECK_THROWS_WITH_AS(load_safetensors(p), doctest::Contains("'w' has 16 bytes but F16[3, 3] needs 18"), Error);
  }
  SUBCASE("unsupported dtype and missing fields") {
    std::string p = write_raw("dtype.safetensors", R"({"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", 8);
    CHECK_THROWS_WITH_AS(load_safetensors(p), doctest::Contains("unsupported dtype 'C64'"), Error);
    std::string q = write_raw("fields.safetensors", R"({"w":{"dtype":"F32"}})", 0);
    CHECK_THROWS_WITH_AS(load_safetensors(q), doctest::Contains("'w' must have dtype, shape and two data_offsets"), Error);
  }
  SUBCASE("a missing file") {
    CHECK_THROWS_WITH_AS(load_safetensors("/nonexistent/x.safetensors"), doctest::Contains("cannot open '/nonexistent/x.safetensors'"), Error);
  }
}
