// weights_tools/torch_file.cpp: zip directory (minizip) + restricted pickle -> named tensors.
#include "weights_tools/torch_file.h"

#include <unzip.h>

#include <cstring>
#include <fstream>
#include <map>

#include "engine/error.h"
#include "weights_tools/pickle.h"

namespace mm {

namespace {

struct ZipEntry {
  uint64_t offset = 0;  // of the (uncompressed) data in the file, when stored
  uint64_t size = 0;
  uint64_t compressed_size = 0;
  bool stored = true;
};

// Reads the zip directory: entry name -> where its bytes are. Compressed entries (rare in
// torch files) are inflated into memory by the caller via read_entry.
std::map<std::string, ZipEntry> read_directory(const std::string& path) {
  unzFile zf = unzOpen64(path.c_str());
  MM_CHECK(zf != nullptr, "'", path, "' is not a zip archive (not a torch.save file from torch >= 1.6, or truncated)");
  std::map<std::string, ZipEntry> entries;
  int rc = unzGoToFirstFile(zf);
  while (rc == UNZ_OK) {
    unz_file_info64 info;
    char name[4096];
    if (unzGetCurrentFileInfo64(zf, &info, name, sizeof(name), nullptr, 0, nullptr, 0) != UNZ_OK) break;
    ZipEntry e;
    e.size = info.uncompressed_size;
    e.compressed_size = info.compressed_size;
    e.stored = info.compression_method == 0;
    if (unzOpenCurrentFile(zf) == UNZ_OK) {
      e.offset = static_cast<uint64_t>(unzGetCurrentFileZStreamPos64(zf));
      unzCloseCurrentFile(zf);
    } else {
      unzClose(zf);
      throw Error(str_cat("'", path, "': cannot open zip entry '", name, "' (corrupted archive)"));
    }
    entries[name] = e;
    rc = unzGoToNextFile(zf);
  }
  unzClose(zf);
  MM_CHECK(rc == UNZ_END_OF_LIST_OF_FILE, "'", path, "': corrupted zip directory");
  return entries;
}

// Bytes of one entry: a view into the mapped file when stored, else inflated by minizip.
std::shared_ptr<Storage> entry_storage(const std::string& path, const std::shared_ptr<Storage>& file,
                                       const std::string& name, const ZipEntry& e) {
  if (e.stored) {
    MM_CHECK(e.offset <= file->nbytes && e.size <= file->nbytes - e.offset, "'", path, "': zip entry '", name,
             "' runs past the end of the file (truncated?)");
    return Storage::wrap(static_cast<char*>(file->data) + e.offset, e.size, file->owner);
  }
  // Deflate expands at most ~1032:1, and the entry's compressed bytes lie in the file: a
  // directory claiming more is corrupted (and must not make us allocate it).
  MM_CHECK(e.compressed_size <= file->nbytes && e.size <= e.compressed_size * 1032 + 4096, "'", path, "': zip entry '",
           name, "' claims ", e.size, " bytes from ", e.compressed_size, " compressed (corrupted archive)");
  unzFile zf = unzOpen64(path.c_str());
  MM_CHECK(zf != nullptr && unzLocateFile(zf, name.c_str(), 1) == UNZ_OK && unzOpenCurrentFile(zf) == UNZ_OK, "'", path,
           "': cannot open zip entry '", name, "'");
  auto s = Storage::allocate(e.size, Device::cpu);
  uint64_t done = 0;  // in chunks: unzReadCurrentFile takes an unsigned count and returns an int
  int got = 1;
  while (done < e.size && got > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(e.size - done, uint64_t{1} << 30));
    got = unzReadCurrentFile(zf, static_cast<char*>(s->data) + done, chunk);
    if (got > 0) done += static_cast<uint64_t>(got);
  }
  const int crc = unzCloseCurrentFile(zf);
  unzClose(zf);
  MM_CHECK(done == e.size && got >= 0 && crc == UNZ_OK, "'", path, "': zip entry '", name, "' is corrupted");
  return s;
}

// Flattens a TorchScript module object tree into state_dict names: every tensor attribute
// of every submodule, as "visual.transformer.resblocks.0.ln_1.weight".
void walk_object(const pickle::ValuePtr& v, const std::string& prefix, TensorFile& out, int depth) {
  MM_CHECK(depth < 64, "'", out.path, "': module tree deeper than 64 levels");
  if (!v) return;
  if (v->kind == pickle::Value::Kind::tensor) {
    out.tensors.push_back({prefix, v->tensor});
    return;
  }
  const pickle::ValuePtr state = v->kind == pickle::Value::Kind::object ? v->state : v;
  if (!state || state->kind != pickle::Value::Kind::dict) return;
  for (const auto& [k, child] : state->dict) {
    if (!k || k->kind != pickle::Value::Kind::string) continue;
    if (child->kind == pickle::Value::Kind::tensor || child->kind == pickle::Value::Kind::object)
      walk_object(child, prefix.empty() ? k->s : prefix + "." + k->s, out, depth + 1);
  }
}

}  // namespace

TensorFile load_torch_file(const std::string& path) {
  TensorFile out;
  out.path = path;
  std::shared_ptr<Storage> file = map_file(path);
  {
    const unsigned char* b = static_cast<const unsigned char*>(file->data);
    MM_CHECK(file->nbytes >= 4, "'", path, "' is too short to be a checkpoint (", file->nbytes, " bytes)");
    if (b[0] == 0x80 && file->nbytes > 1 && b[1] <= 5)
      throw Error(str_cat("'", path, "' is a legacy (pre-1.6, non-zip) torch file, which mm does not read; "
                          "re-save it with torch.save(obj, path) from torch >= 1.6, or convert it to safetensors"));
  }
  const std::map<std::string, ZipEntry> entries = read_directory(path);
  std::string pkl_name;
  for (const auto& [name, e] : entries) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.substr(slash) == "/data.pkl") pkl_name = name;
  }
  MM_CHECK(!pkl_name.empty(), "'", path, "' is a zip archive without <name>/data.pkl: not a PyTorch checkpoint");
  const std::string prefix = pkl_name.substr(0, pkl_name.find('/'));
  std::shared_ptr<Storage> pkl = entry_storage(path, file, pkl_name, entries.at(pkl_name));

  std::map<std::string, pickle::StorageRef> storages;
  pickle::PersistentLoad resolve = [&](const pickle::ValuePtr& pid) -> pickle::StorageRef {
    // ('storage', torch.FloatStorage, key, location, numel)
    MM_CHECK(pid->kind == pickle::Value::Kind::tuple && pid->items.size() >= 5 && pid->items[0]->is_string("storage") &&
                 pid->items[1]->kind == pickle::Value::Kind::global && pid->items[2]->kind == pickle::Value::Kind::string &&
                 pid->items[4]->kind == pickle::Value::Kind::integer,
             "'", path, "': unexpected persistent id in ", pkl_name);
    const std::string key = pid->items[2]->s;
    auto it = storages.find(key);
    if (it != storages.end()) return it->second;
    const DType dtype = pickle::storage_dtype(pid->items[1]->s, path);
    const std::string entry = prefix + "/data/" + key;
    auto e = entries.find(entry);
    MM_CHECK(e != entries.end(), "'", path, "': storage '", key, "' is missing from the archive (", entry, ")");
    const int64_t numel = pid->items[4]->i;
    MM_CHECK(numel >= 0 && static_cast<uint64_t>(numel) * dtype_size(dtype) <= e->second.size, "'", path, "': storage '",
             key, "' claims ", numel, " ", dtype_name(dtype), " elements but its entry has ", e->second.size, " bytes");
    std::shared_ptr<Storage> s = entry_storage(path, file, entry, e->second);
    if (reinterpret_cast<uintptr_t>(s->data) % dtype_size(dtype) != 0) {  // misaligned: copy
      auto copy = Storage::allocate(s->nbytes, Device::cpu);
      std::memcpy(copy->data, s->data, s->nbytes);
      s = copy;
    }
    s->nbytes = static_cast<size_t>(numel) * dtype_size(dtype);
    return storages[key] = {s, dtype};
  };
  pickle::ValuePtr root =
      pickle::load(static_cast<const unsigned char*>(pkl->data), pkl->nbytes, resolve, path + ":" + pkl_name);

  // A Lightning checkpoint keeps the model under "state_dict"; some trainers use "model".
  if (root->kind == pickle::Value::Kind::dict) {
    for (const char* key : {"state_dict", "model_state_dict", "model"}) {
      pickle::ValuePtr inner = root->get(key);
      if (inner && inner->kind == pickle::Value::Kind::dict) {
        root = inner;
        break;
      }
    }
    for (const auto& [k, v] : root->dict)
      if (k && k->kind == pickle::Value::Kind::string && v->kind == pickle::Value::Kind::tensor)
        out.tensors.push_back({k->s, v->tensor});
  } else if (root->kind == pickle::Value::Kind::object) {
    walk_object(root, "", out, 0);  // TorchScript: a tree of module objects
  } else {
    throw Error(str_cat("'", path, "': the pickle holds a ", root->describe(), ", not a state dict or module"));
  }
  MM_CHECK(!out.tensors.empty(), "'", path, "' holds no tensors");
  for (auto& [name, t] : out.tensors) t.set_name(name);
  return out;
}

TensorFile load_weights(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MM_CHECK(f.good(), "cannot open '", path, "'");
  char magic[4] = {0, 0, 0, 0};
  f.read(magic, 4);
  if (magic[0] == 'P' && magic[1] == 'K') return load_torch_file(path);
  if (static_cast<unsigned char>(magic[0]) == 0x80) return load_torch_file(path);  // legacy: clear error there
  return load_safetensors(path);
}

}  // namespace mm
