// CHECK(cond) for the C++ unit tests: a failed condition is printed and counted, the test goes on;
// main returns check_report(name) (1 if any check failed).
#pragma once

#include <cstdio>

static int failures = 0;
#define CHECK(c)                                                                 \
  do {                                                                           \
    if (!(c)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
      ++failures;                                                                \
    }                                                                            \
  } while (0)

inline int check_report(const char* name) {
  if (failures) {
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures);
    return 1;
  }
  std::printf("%s: ok\n", name);
  return 0;
}
