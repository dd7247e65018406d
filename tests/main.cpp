// tests/main.cpp: the doctest entry point for mm_tests. ctest runs it once per test file
// (--source-file=*test_x.cpp); run ./build/mm_tests directly for everything at once.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
