// weights_tools/pickle.h: a restricted reader for the Python pickles inside PyTorch
// checkpoints. It is a data decoder, not a Python VM: it understands the opcodes that
// torch.save and TorchScript emit, builds a tree of plain values, and never imports or
// calls anything. Tested by tests/weights_tools/test_torch_file.cpp.
//
// Globals: collections.OrderedDict becomes a dict; torch._utils._rebuild_tensor_v2 and
// _rebuild_parameter become tensors (through the caller's storage resolver); torch.*Storage
// names become dtype markers. Every other global (a Lightning callback, a TorchScript
// module class) is kept as an inert Object that records its class name, arguments and
// BUILD state, so that a checkpoint with extras still loads and nothing in it runs.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace mm::pickle {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { none, boolean, integer, floating, string, bytes, tuple, list, dict, global, object, tensor, mark };
  Kind kind = Kind::none;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                                   // string, bytes, global "module.name", object class
  std::vector<ValuePtr> items;                     // tuple, list, object args
  std::vector<std::pair<ValuePtr, ValuePtr>> dict;  // dict entries in insertion order
  ValuePtr state;                                  // object: the BUILD argument
  Tensor tensor;                                   // tensor

  Value() = default;
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  // Releases the children iteratively: a pickle nested a million levels deep must not
  // overflow the C++ stack when its tree is destroyed.
  ~Value();

  bool is_string(const std::string& v) const { return kind == Kind::string && s == v; }
  // dict lookup by string key, or nullptr
  ValuePtr get(const std::string& key) const;
  std::string describe() const;  // short type description for error messages
};

// Resolves a persistent id (the tuple ('storage', StorageType, key, location, numel)) to a
// Storage and its dtype. `type` is the storage global's name, e.g. "torch.HalfStorage".
struct StorageRef {
  std::shared_ptr<Storage> storage;
  DType dtype;
};
using PersistentLoad = std::function<StorageRef(const ValuePtr& pid)>;

// Decodes one pickle. `what` names the source in errors ("ViT-B-32.pt:ViT-B-32/data.pkl").
ValuePtr load(const unsigned char* data, size_t size, const PersistentLoad& persistent_load, const std::string& what);

// Maps a torch storage class name to its dtype ("torch.FloatStorage" -> f32); throws for
// unsupported ones.
DType storage_dtype(const std::string& name, const std::string& what);

}  // namespace mm::pickle
