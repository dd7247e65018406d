// engine/error.h: mm::Error, the one exception type of the engine, and MM_CHECK.
// Reading order: first file of engine/. Every shape, dtype, device or index problem
// throws mm::Error with a message that names the op and the shapes involved, e.g.
//   [conv2d] weight [64, 3, 7, 7] expects 3 input channels, got input [1, 4, 224, 224]
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into a string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

}  // namespace mm

// MM_CHECK(cond, "[op] message ", value, ...): throws mm::Error when cond is false.
#define MM_CHECK(cond, ...)                                   \
  do {                                                        \
    if (!(cond)) throw ::mm::Error(::mm::str_cat(__VA_ARGS__)); \
  } while (0)
