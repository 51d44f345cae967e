// Thread count, OpenMP and version queries.
#include <atomic>

#include "common.hpp"

#ifndef PYADR_VERSION
#define PYADR_VERSION "0.1.0"
#endif

namespace pyadr {
namespace {
std::atomic<int> g_threads{0};
}

void set_num_threads(int n) {
  if (n < 1) throw Error("set_num_threads: n must be >= 1, got " + std::to_string(n));
  g_threads.store(n);
}

int num_threads() {
  const int n = g_threads.load();
  if (n > 0) return n;
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

const char* version() { return PYADR_VERSION; }

}  // namespace pyadr
