// Large-block recycling (block_cache.cpp): a freed block of 256 KiB or more is handed to the next
// request of the same size class, smaller ones are not kept, the cap (PYADR_CACHE_MB) evicts the
// oldest blocks, and release_cached() empties the cache.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "check.hpp"
#include "pyadr/core.hpp"

using pyadr::detail::cache_alloc;
using pyadr::detail::cache_free;

int main() {
  setenv("PYADR_CACHE_MB", "4", 1);  // read at the cache's first use
  const size_t MB = size_t(1) << 20;
  pyadr::release_cached();
  CHECK(pyadr::cached_bytes() == 0);
  CHECK(pyadr::cache_cap() == 4 * MB);

  // Recycled: same class (1 MiB - 100 rounds up to the 1 MiB class), 64-byte aligned.
  void* p = cache_alloc(MB);
  CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
  std::memset(p, 1, MB);
  cache_free(p, MB);
  CHECK(pyadr::cached_bytes() == MB);
  void* q = cache_alloc(MB - 100);
  CHECK(q == p);
  CHECK(pyadr::cached_bytes() == 0);
  cache_free(q, MB - 100);
  // Another class is not served from it.
  void* r = cache_alloc(3 * MB);
  CHECK(r != q);
  CHECK(pyadr::cached_bytes() == MB);
  cache_free(r, 3 * MB);
  CHECK(pyadr::cached_bytes() == 4 * MB);

  // Small blocks are never kept.
  void* s = cache_alloc(1000);
  CHECK(reinterpret_cast<uintptr_t>(s) % 64 == 0);
  cache_free(s, 1000);
  CHECK(pyadr::cached_bytes() == 4 * MB);

  // The cap: the oldest block (1 MiB) goes back to the OS to make room for a newer one.
  void* t = cache_alloc(MB / 2);
  cache_free(t, MB / 2);
  CHECK(pyadr::cached_bytes() <= 4 * MB);
  CHECK(pyadr::cached_bytes() == 3 * MB + MB / 2);
  // A block larger than the cap is not kept at all.
  void* u = cache_alloc(8 * MB);
  cache_free(u, 8 * MB);
  CHECK(pyadr::cached_bytes() == 3 * MB + MB / 2);

  // Vectors on the caching allocator recycle too.
  {
    std::vector<float, pyadr::CachingAllocator<float>> v(MB);
    v[MB - 1] = 2.0f;
    CHECK(v[MB - 1] == 2.0f);
  }
  CHECK(pyadr::cached_bytes() <= 4 * MB);

  pyadr::release_cached();
  CHECK(pyadr::cached_bytes() == 0);
  return check_report("test_block_cache");
}
