// tests/apps/run_command.h: runs an app binary through the shell for the app tests and
// returns its exit code and its output (stdout and stderr together).
#pragma once
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>

namespace mm::testing {

enum class Stderr { merge, discard };

inline std::pair<int, std::string> run_command(const std::string& cmd, Stderr err = Stderr::merge) {
  std::string out;
  FILE* p = popen((cmd + (err == Stderr::merge ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  REQUIRE_MESSAGE(p != nullptr, "cannot run: ", cmd);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A file's bytes ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace mm::testing
