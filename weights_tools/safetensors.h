// weights_tools/safetensors.h: read and write the safetensors format (mm's own weight format,
// and Hugging Face's model.safetensors).
// Reading order: weights_tools/ turns checkpoint files into named tensors for models/.
// Tested by tests/weights_tools/test_safetensors.cpp.
//
//   mm::TensorFile f = mm::load_safetensors("clip.safetensors");   // memory-mapped, no copy
//   mm::Tensor w = f.get("visual.conv1.weight");                   // float16 or float32 as stored
//   mm::save_safetensors("out.safetensors", {{"w", w}}, {{"format", "pt"}});
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw little-endian data; offsets are relative to the end of the header.
// Every length, offset and shape is checked against the file: a truncated or corrupted
// file is an mm::Error naming the file and the entry, never a crash.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace mm {

// Named tensors in file order, plus string metadata.
struct TensorFile {
  std::string path;
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;

  bool contains(const std::string& name) const;
  // The tensor called `name`; the error lists a few names that do exist.
  const Tensor& get(const std::string& name) const;
};

TensorFile load_safetensors(const std::string& path);
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// A read-only memory map of a whole file, shared by the tensors that view it.
// Throws naming the file when it cannot be opened.
std::shared_ptr<Storage> map_file(const std::string& path);

}  // namespace mm
