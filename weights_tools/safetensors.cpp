// weights_tools/safetensors.cpp: safetensors via nlohmann-json, with the file memory-mapped.
#include "weights_tools/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/error.h"

namespace mm {

bool TensorFile::contains(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return true;
  return false;
}

const Tensor& TensorFile::get(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  std::string some;
  for (size_t i = 0; i < tensors.size() && i < 5; ++i) some += (i ? ", " : "") + tensors[i].first;
  throw Error(str_cat("'", path, "' has no tensor '", name, "' (", tensors.size(), " tensors, e.g. ", some, ")"));
}

std::shared_ptr<Storage> map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  MM_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(str_cat("'", path, "' is not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* p = nullptr;
  if (size > 0) {
    // Private and writable: a tensor that is modified in place gets copy-on-write pages,
    // never a write to the file.
    p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw Error(str_cat("cannot memory-map '", path, "': ", std::strerror(errno)));
    }
  }
  ::close(fd);
  auto owner = std::shared_ptr<void>(p, [size](void* q) {
    if (q) ::munmap(q, size);
  });
  return Storage::wrap(p, size, owner);
}

namespace {

DType parse_dtype(const std::string& tag, const std::string& path, const std::string& name) {
  if (tag == "F32") return DType::f32;
  if (tag == "F16") return DType::f16;
  if (tag == "BF16") return DType::bf16;
  if (tag == "F64") return DType::f64;
  if (tag == "I64") return DType::i64;
  if (tag == "I32") return DType::i32;
  if (tag == "U8") return DType::u8;
  if (tag == "BOOL") return DType::boolean;
  throw Error(str_cat("'", path, "': tensor '", name, "' has unsupported dtype '", tag,
                      "' (supported: F32 F16 BF16 F64 I64 I32 U8 BOOL)"));
}

const char* dtype_tag(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::f64: return "F64";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
    case DType::boolean: return "BOOL";
  }
  return "?";
}

}  // namespace

TensorFile load_safetensors(const std::string& path) {
  TensorFile f;
  f.path = path;
  std::shared_ptr<Storage> file = map_file(path);
  const uint64_t size = file->nbytes;
  MM_CHECK(size >= 8, "'", path, "' is not a safetensors file: ", size, " bytes, shorter than the 8-byte header length");
  const unsigned char* bytes = static_cast<const unsigned char*>(file->data);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  MM_CHECK(header_len <= size - 8, "'", path, "' is truncated or not safetensors: header length ", header_len,
           " exceeds the file size ", size);
  MM_CHECK(header_len <= (uint64_t{100} << 20), "'", path, "': header length ", header_len, " is implausibly large");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes + 8),
                                   reinterpret_cast<const char*>(bytes + 8 + header_len));
  } catch (const std::exception& e) {
    throw Error(str_cat("'", path, "': the safetensors header is not valid JSON: ", e.what()));
  }
  MM_CHECK(header.is_object(), "'", path, "': the safetensors header is not a JSON object");
  const uint64_t data_start = 8 + header_len, data_size = size - data_start;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      MM_CHECK(e.is_object(), "'", path, "': __metadata__ must be an object");
      for (auto m = e.begin(); m != e.end(); ++m)
        if (m.value().is_string()) f.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    MM_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets") &&
                 e["dtype"].is_string() && e["shape"].is_array() && e["data_offsets"].is_array() &&
                 e["data_offsets"].size() == 2,
             "'", path, "': entry '", name, "' must have dtype, shape and two data_offsets");
    const DType dtype = parse_dtype(e["dtype"].get<std::string>(), path, name);
    Shape shape;
    uint64_t count = 1;
    for (const auto& d : e["shape"]) {
      MM_CHECK(d.is_number_unsigned() && d.get<uint64_t>() < (uint64_t{1} << 40), "'", path, "': entry '", name,
               "' has an invalid shape ", e["shape"].dump());
      shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
      count *= d.get<uint64_t>();
      MM_CHECK(count < (uint64_t{1} << 40), "'", path, "': entry '", name, "' shape ", e["shape"].dump(), " is too large");
    }
    const auto& off = e["data_offsets"];
    MM_CHECK(off[0].is_number_unsigned() && off[1].is_number_unsigned(), "'", path, "': entry '", name,
             "' has invalid data_offsets ", off.dump());
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    MM_CHECK(begin <= end && end <= data_size, "'", path, "': entry '", name, "' data_offsets [", begin, ", ", end,
             "] lie outside the ", data_size, "-byte data section (file truncated?)");
    MM_CHECK(end - begin == count * dtype_size(dtype), "'", path, "': entry '", name, "' has ", end - begin,
             " bytes but ", e["dtype"].get<std::string>(), shape_str(shape), " needs ", count * dtype_size(dtype));
    spans.push_back({begin, end, name});
    auto impl = std::make_shared<TensorImpl>();
    impl->shape = shape;
    impl->strides = contiguous_strides(shape);
    impl->dtype = dtype;
    impl->name = name;
    const uint64_t abs = data_start + begin;
    if (abs % dtype_size(dtype) == 0) {
      impl->storage = file;  // a view into the mapped file
      impl->offset = static_cast<int64_t>(abs / dtype_size(dtype));
    } else {  // misaligned for its dtype: copy into aligned memory
      impl->storage = Storage::allocate(end - begin, Device::cpu);
      std::memcpy(impl->storage->data, bytes + abs, end - begin);
    }
    f.tensors.push_back({name, Tensor(impl)});
  }
  // Entries must not overlap (zero-sized ones may share an offset).
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i)
    MM_CHECK(spans[i].begin >= spans[i - 1].end || spans[i].begin == spans[i].end ||
                 spans[i - 1].begin == spans[i - 1].end,
             "'", path, "': entries '", spans[i - 1].name, "' [", spans[i - 1].begin, ", ", spans[i - 1].end, ") and '",
             spans[i].name, "' [", spans[i].begin, ", ", spans[i].end, ") overlap");
  // nlohmann::json sorts keys; restore file order (by data offset), as writers store state-dict order.
  std::stable_sort(f.tensors.begin(), f.tensors.end(), [&](const auto& a, const auto& b) {
    const auto& oa = header[a.first]["data_offsets"][0];
    const auto& ob = header[b.first]["data_offsets"][0];
    return oa.template get<uint64_t>() < ob.template get<uint64_t>();
  });
  return f;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Build the header with keys in our order: nlohmann::ordered_json keeps insertion order.
  nlohmann::ordered_json header;
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  std::vector<Tensor> contiguous;
  for (const auto& [name, t] : tensors) {
    MM_CHECK(name != "__metadata__" && !name.empty(), "[save_safetensors] invalid tensor name '", name, "'");
    MM_CHECK(!header.contains(name), "[save_safetensors] duplicate tensor name '", name, "'");
    MM_CHECK(t.device() == Device::cpu, "[save_safetensors] tensor '", name, "' is not on the CPU");
    Tensor c = t.detach().contiguous();
    const uint64_t n = static_cast<uint64_t>(c.numel()) * dtype_size(c.dtype());
    header[name] = {{"dtype", dtype_tag(c.dtype())}, {"shape", c.shape()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    contiguous.push_back(c);
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');  // data starts 8-byte aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    MM_CHECK(out.good(), "cannot write '", tmp, "'");
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((h.size() >> (8 * i)) & 0xff);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const Tensor& c : contiguous)
      out.write(static_cast<const char*>(c.raw_data()),
                static_cast<std::streamsize>(static_cast<uint64_t>(c.numel()) * dtype_size(c.dtype())));
    MM_CHECK(out.good(), "error while writing '", tmp, "' (disk full?)");
  }
  MM_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path, "'");
}

}  // namespace mm
