// weights_tools/pickle.cpp: the restricted pickle decoder (see pickle.h).
// Opcode reference: CPython's Lib/pickletools.py. Only data-building opcodes are honoured;
// REDUCE/NEWOBJ on anything but the few tensor globals produce inert Objects.
#include "weights_tools/pickle.h"

#include <cstring>
#include <unordered_map>

#include "engine/error.h"

namespace mm::pickle {

ValuePtr Value::get(const std::string& key) const {
  for (const auto& [k, v] : dict)
    if (k && k->kind == Kind::string && k->s == key) return v;
  return nullptr;
}

Value::~Value() {
  std::vector<ValuePtr> pending;
  auto take = [&pending](Value& v) {
    for (ValuePtr& c : v.items)
      if (c) pending.push_back(std::move(c));
    for (auto& [k, x] : v.dict) {
      if (k) pending.push_back(std::move(k));
      if (x) pending.push_back(std::move(x));
    }
    if (v.state) pending.push_back(std::move(v.state));
  };
  take(*this);
  while (!pending.empty()) {
    ValuePtr p = std::move(pending.back());
    pending.pop_back();
    if (p.use_count() == 1) take(*p);  // about to go: adopt its children, so it dies childless
  }
}

std::string Value::describe() const {
  switch (kind) {
    case Kind::none: return "None";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::floating: return "float";
    case Kind::string: return "str '" + s.substr(0, 40) + "'";
    case Kind::bytes: return "bytes";
    case Kind::tuple: return "tuple of " + std::to_string(items.size());
    case Kind::list: return "list of " + std::to_string(items.size());
    case Kind::dict: return "dict of " + std::to_string(dict.size());
    case Kind::global: return "global " + s;
    case Kind::object: return "object of class " + s;
    case Kind::tensor: return "tensor " + tensor.str();
    case Kind::mark: return "mark";
  }
  return "?";
}

DType storage_dtype(const std::string& name, const std::string& what) {
  static const std::pair<const char*, DType> table[] = {
      {"torch.FloatStorage", DType::f32}, {"torch.HalfStorage", DType::f16},  {"torch.BFloat16Storage", DType::bf16},
      {"torch.DoubleStorage", DType::f64}, {"torch.LongStorage", DType::i64}, {"torch.IntStorage", DType::i32},
      {"torch.ByteStorage", DType::u8},    {"torch.BoolStorage", DType::boolean}};
  for (const auto& [n, t] : table)
    if (name == n) return t;
  throw Error(str_cat(what, ": unsupported storage type '", name, "'"));
}

namespace {

ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

class Decoder {
 public:
  Decoder(const unsigned char* d, size_t n, const PersistentLoad& pl, const std::string& what)
      : data_(d), size_(n), persistent_load_(pl), what_(what) {}

  ValuePtr run() {
    for (;;) {
      const unsigned char op = byte();
      switch (op) {
        case 0x80: byte(); break;                        // PROTO
        case 0x95: bytes(8); break;                      // FRAME
        case '.': return pop();                          // STOP
        case '(': push(make(Value::Kind::mark)); break;  // MARK
        case '0': pop(); break;                          // POP
        case '1': pop_mark(); break;                     // POP_MARK
        case '2': push(top()); break;                    // DUP
        case 'N': push(make(Value::Kind::none)); break;
        case 0x88: push_bool(true); break;
        case 0x89: push_bool(false); break;
        case 'J': push_int(static_cast<int32_t>(le(4))); break;  // BININT
        case 'K': push_int(static_cast<int64_t>(le(1))); break;  // BININT1
        case 'M': push_int(static_cast<int64_t>(le(2))); break;  // BININT2
        case 0x8a: push_long(byte()); break;                     // LONG1
        case 0x8b: push_long(checked_len(le(4))); break;         // LONG4
        case 'I': push_text_int(); break;                        // INT (protocol 0)
        case 'G': push_float(); break;                           // BINFLOAT
        case 'X': push_string(checked_len(le(4)), Value::Kind::string); break;
        case 0x8c: push_string(byte(), Value::Kind::string); break;
        case 0x8d: push_string(checked_len(le(8)), Value::Kind::string); break;
        case 'T': push_string(checked_len(le(4)), Value::Kind::string); break;  // BINSTRING
        case 'U': push_string(byte(), Value::Kind::string); break;              // SHORT_BINSTRING
        case 'B': push_string(checked_len(le(4)), Value::Kind::bytes); break;
        case 'C': push_string(byte(), Value::Kind::bytes); break;
        case 0x8e: push_string(checked_len(le(8)), Value::Kind::bytes); break;
        case ')': push(make(Value::Kind::tuple)); break;
        case 't': {
          auto t = make(Value::Kind::tuple);
          t->items = pop_mark();
          push(t);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          auto t = make(Value::Kind::tuple);
          const int n = op - 0x84;
          need(n);
          t->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          push(t);
          break;
        }
        case ']': push(make(Value::Kind::list)); break;
        case 'l': {
          auto l = make(Value::Kind::list);
          l->items = pop_mark();
          push(l);
          break;
        }
        case 'a': {  // APPEND
          ValuePtr v = pop();
          list_target("APPEND")->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_mark();
          auto& l = list_target("APPENDS")->items;
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case 0x8f: push(make(Value::Kind::list)); break;  // EMPTY_SET (as a list)
        case 0x90: {                                      // ADDITEMS
          auto items = pop_mark();
          auto& l = list_target("ADDITEMS")->items;
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case 0x91: {  // FROZENSET
          auto l = make(Value::Kind::list);
          l->items = pop_mark();
          push(l);
          break;
        }
        case '}': push(make(Value::Kind::dict)); break;
        case 'd': {
          auto d = make(Value::Kind::dict);
          auto items = pop_mark();
          check(items.size() % 2 == 0, "DICT with an odd number of items");
          for (size_t k = 0; k < items.size(); k += 2) d->dict.push_back({items[k], items[k + 1]});
          push(d);
          break;
        }
        case 's': {  // SETITEM
          ValuePtr v = pop(), k = pop();
          dict_set(k, v);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_mark();
          check(items.size() % 2 == 0, "SETITEMS with an odd number of items");
          for (size_t k = 0; k < items.size(); k += 2) dict_set(items[k], items[k + 1]);
          break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
          const std::string module = line(), name = line();
          push_global(module + "." + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          ValuePtr name = pop(), module = pop();
          check(name->kind == Value::Kind::string && module->kind == Value::Kind::string, "STACK_GLOBAL needs strings");
          push_global(module->s + "." + name->s);
          break;
        }
        case 'R': {  // REDUCE
          ValuePtr args = pop(), callable = pop();
          push(call(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          ValuePtr args = pop(), cls = pop();
          push(call(cls, args));
          break;
        }
        case 0x92: {  // NEWOBJ_EX
          pop();      // kwargs
          ValuePtr args = pop(), cls = pop();
          push(call(cls, args));
          break;
        }
        case 'b': {  // BUILD
          ValuePtr state = pop();
          ValuePtr target = top();
          if (target->kind == Value::Kind::object) target->state = state;
          // BUILD on a dict (state_dict's _metadata) or a tensor carries nothing we need.
          break;
        }
        case 'Q': {  // BINPERSID
          ValuePtr pid = pop();
          check(static_cast<bool>(persistent_load_), "persistent id without a storage resolver");
          StorageRef ref = persistent_load_(pid);
          auto v = make(Value::Kind::global);  // carries the storage as a 1-D tensor of its dtype
          v->kind = Value::Kind::tensor;
          auto impl = std::make_shared<TensorImpl>();
          impl->storage = ref.storage;
          impl->dtype = ref.dtype;
          impl->shape = {static_cast<int64_t>(ref.storage->nbytes / dtype_size(ref.dtype))};
          impl->strides = {1};
          v->tensor = Tensor(impl);
          v->s = "storage";
          push(v);
          break;
        }
        case 'h': push(memo_get(le(1))); break;  // BINGET
        case 'j': push(memo_get(le(4))); break;  // LONG_BINGET
        case 'g': push(memo_get(decimal(line()))); break;
        case 'q': memo_[le(1)] = top(); break;  // BINPUT
        case 'r': memo_[le(4)] = top(); break;  // LONG_BINPUT
        case 'p': memo_[decimal(line())] = top(); break;
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        default:
          throw Error(str_cat(what_, ": unsupported pickle opcode 0x", std::hex, static_cast<int>(op), std::dec,
                              " at byte ", pos_ - 1, " (a corrupted file, or a pickle that is not a checkpoint)"));
      }
      check(stack_.size() < (1u << 24), "pickle stack too deep");
    }
  }

 private:
  void check(bool ok, const char* msg) {
    if (!ok) throw Error(str_cat(what_, ": malformed pickle at byte ", pos_, ": ", msg));
  }
  unsigned char byte() {
    check(pos_ < size_, "unexpected end of data (truncated file?)");
    return data_[pos_++];
  }
  const unsigned char* bytes(uint64_t n) {
    check(n <= size_ - pos_, "unexpected end of data (truncated file?)");
    const unsigned char* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint64_t le(int n) {
    const unsigned char* p = bytes(n);
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | p[k];
    return v;
  }
  uint64_t checked_len(uint64_t n) {
    check(n <= size_ - pos_, "a length runs past the end of the data");
    return n;
  }
  // A text-protocol memo index: decimal digits only (a clear error, not std::stoull's).
  uint64_t decimal(const std::string& s) {
    check(!s.empty() && s.size() <= 18 && s.find_first_not_of("0123456789") == std::string::npos,
          str_cat("bad memo index '", s.substr(0, 32), "'").c_str());
    return std::stoull(s);
  }
  std::string line() {
    std::string s;
    for (;;) {
      const char c = static_cast<char>(byte());
      if (c == '\n') return s;
      s.push_back(c);
      check(s.size() < 4096, "line too long");
    }
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  void need(size_t n) { check(stack_.size() >= n, "stack underflow"); }
  ValuePtr pop() {
    need(1);
    ValuePtr v = stack_.back();
    stack_.pop_back();
    check(v->kind != Value::Kind::mark, "unexpected MARK");
    return v;
  }
  ValuePtr top() {
    need(1);
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    size_t k = stack_.size();
    while (k > 0 && stack_[k - 1]->kind != Value::Kind::mark) --k;
    check(k > 0, "no MARK on the stack");
    std::vector<ValuePtr> items(stack_.begin() + k, stack_.end());
    stack_.resize(k - 1);
    return items;
  }
  ValuePtr list_target(const char* op) {
    ValuePtr l = top();
    if (l->kind != Value::Kind::list && l->kind != Value::Kind::object)
      throw Error(str_cat(what_, ": malformed pickle: ", op, " on ", l->describe()));
    return l;
  }
  void dict_set(const ValuePtr& k, const ValuePtr& v) {
    ValuePtr d = top();
    if (d->kind == Value::Kind::object) {  // e.g. a dict subclass: keep its items as state
      if (!d->state) d->state = make(Value::Kind::dict);
      d = d->state;
    }
    if (d->kind != Value::Kind::dict) throw Error(str_cat(what_, ": malformed pickle: SETITEM on ", d->describe()));
    d->dict.push_back({k, v});
  }
  ValuePtr memo_get(uint64_t key) {
    auto it = memo_.find(key);
    check(it != memo_.end(), "memo key not defined");
    return it->second;
  }
  void push_bool(bool b) {
    auto v = make(Value::Kind::boolean);
    v->b = b;
    push(v);
  }
  void push_int(int64_t i) {
    auto v = make(Value::Kind::integer);
    v->i = i;
    push(v);
  }
  void push_long(uint64_t n) {
    check(n <= 8, "integer wider than 64 bits");
    const unsigned char* p = bytes(n);
    uint64_t u = 0;
    for (int k = static_cast<int>(n) - 1; k >= 0; --k) u = (u << 8) | p[k];
    if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
    push_int(static_cast<int64_t>(u));
  }
  void push_text_int() {
    const std::string s = line();
    if (s == "00" || s == "01") return push_bool(s == "01");
    try {
      push_int(std::stoll(s));
    } catch (const std::exception&) {
      check(false, "invalid INT");
    }
  }
  void push_float() {
    const unsigned char* p = bytes(8);
    uint64_t u = 0;
    for (int k = 0; k < 8; ++k) u = (u << 8) | p[k];  // big-endian
    double d;
    std::memcpy(&d, &u, 8);
    auto v = make(Value::Kind::floating);
    v->f = d;
    push(v);
  }
  void push_string(uint64_t n, Value::Kind kind) {
    const unsigned char* p = bytes(n);
    auto v = make(kind);
    v->s.assign(reinterpret_cast<const char*>(p), n);
    push(v);
  }
  void push_global(const std::string& name) {
    auto v = make(Value::Kind::global);
    v->s = name;
    push(v);
  }

  // The only "calls": building dicts and tensors. Anything else becomes an inert object.
  ValuePtr call(const ValuePtr& callable, const ValuePtr& args) {
    check(callable->kind == Value::Kind::global, "REDUCE on something that is not a global");
    const std::string& name = callable->s;
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      auto d = make(Value::Kind::dict);
      if (args->kind == Value::Kind::tuple && !args->items.empty() && args->items[0]->kind == Value::Kind::list)
        for (const auto& pair : args->items[0]->items)
          if (pair->kind == Value::Kind::tuple && pair->items.size() == 2) d->dict.push_back({pair->items[0], pair->items[1]});
      return d;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") return rebuild_tensor(args);
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
      check(args->kind == Value::Kind::tuple && !args->items.empty() && args->items[0]->kind == Value::Kind::tensor,
            "_rebuild_parameter expects a tensor");
      return args->items[0];
    }
    auto obj = make(Value::Kind::object);
    obj->s = name;
    if (args->kind == Value::Kind::tuple) obj->items = args->items;
    return obj;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata])
  ValuePtr rebuild_tensor(const ValuePtr& args) {
    check(args->kind == Value::Kind::tuple && args->items.size() >= 4, "_rebuild_tensor_v2 expects 4+ arguments");
    const ValuePtr& st = args->items[0];
    check(st->kind == Value::Kind::tensor && st->s == "storage", "_rebuild_tensor_v2: first argument is not a storage");
    const ValuePtr& off = args->items[1];
    const ValuePtr& size = args->items[2];
    const ValuePtr& stride = args->items[3];
    check(off->kind == Value::Kind::integer && size->kind == Value::Kind::tuple && stride->kind == Value::Kind::tuple &&
              size->items.size() == stride->items.size(),
          "_rebuild_tensor_v2: bad offset/size/stride");
    const Tensor& storage = st->tensor;
    const int64_t storage_numel = storage.numel();
    Shape shape, strides;
    __int128 last = off->i;  // largest element index touched (128 bits: sizes x strides cannot overflow)
    __int128 numel = 1;
    bool empty = false;
    for (size_t k = 0; k < size->items.size(); ++k) {
      check(size->items[k]->kind == Value::Kind::integer && stride->items[k]->kind == Value::Kind::integer,
            "_rebuild_tensor_v2: non-integer size or stride");
      const int64_t s = size->items[k]->i, t = stride->items[k]->i;
      check(s >= 0 && t >= 0 && s < (int64_t{1} << 40) && t < (int64_t{1} << 40), "_rebuild_tensor_v2: invalid size or stride");
      shape.push_back(s);
      strides.push_back(t);
      if (s == 0) empty = true;
      else last += static_cast<__int128>(s - 1) * t;
      numel *= s;
      check(numel < (__int128{1} << 40), "_rebuild_tensor_v2: more than 2^40 elements");
    }
    if (off->i < 0 || (!empty && last >= storage_numel))
      throw Error(str_cat(what_, ": tensor of size ", shape_str(shape), " with strides ", shape_str(strides),
                          " at offset ", off->i, " overruns its storage of ", storage_numel, " elements"));
    auto v = make(Value::Kind::tensor);
    v->tensor = make_view(storage, shape, strides, off->i);
    return v;
  }

  const unsigned char* data_;
  size_t size_;
  size_t pos_ = 0;
  const PersistentLoad& persistent_load_;
  std::string what_;
  std::vector<ValuePtr> stack_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
};

}  // namespace

ValuePtr load(const unsigned char* data, size_t size, const PersistentLoad& persistent_load, const std::string& what) {
  Decoder d(data, size, persistent_load, what);
  return d.run();
}

}  // namespace mm::pickle
