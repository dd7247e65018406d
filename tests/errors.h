// tests/errors.h: error_of(f) runs f and returns the message of the mm::Error it throws, for
// tests that check what an error says. Nothing thrown is a failed check (and "").
#pragma once
#include <doctest/doctest.h>

#include <string>

#include "engine/error.h"

namespace mm::testing {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL_CHECK("expected an mm::Error");
  return "";
}

}  // namespace mm::testing
