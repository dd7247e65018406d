// tests/refs.h: locating ../shared/refs (the reference outputs made with the official
// PyTorch code). A test that needs a missing file prints "SKIPPED: ..." (ctest then reports
// the test file as skipped, see CMakeLists.txt) and returns: never a silent pass.
#pragma once
#include <doctest/doctest.h>

#include <fstream>
#include <string>

namespace mm::testing {

inline std::string refs_path(const std::string& file) { return std::string(MM_SHARED_DIR) + "/refs/" + file; }

inline bool refs_available(const std::string& file) {
  std::ifstream f(refs_path(file));
  if (f.good()) return true;
  MESSAGE("SKIPPED: reference file " << refs_path(file) << " is missing (../shared/refs beside the clone)");
  return false;
}

}  // namespace mm::testing

// Use at the top of a test case: returns from it (after saying so) when the file is missing.
#define MM_REQUIRE_REFS(file) \
  if (!::mm::testing::refs_available(file)) return
