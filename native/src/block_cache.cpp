// Recycling of large scratch blocks between calls (declared in pyadr/core.hpp).
//
// glibc gives a freed block this large back to the OS (munmap, or a trim of the heap top), and
// the next call that asks for one pays a page fault and a kernel zero-fill for every 4 KiB page
// again: 5-10 % of a reuse forward+backward on conv2 went there. Blocks of at least kMinBytes are
// instead kept here when freed and handed to the next request of the same size class. Classes are
// 2^k * (1 + i/8), so a block freed by one call fits the next call's slightly different request
// (cluster counts vary from batch to batch) at a cost of at most 1/8 unused. At most the cap
// (environment PYADR_CACHE_MB, else the build's PYADR_DEFAULT_CACHE_MB, 256 unless CMake's
// -DPYADR_CACHE_MB says otherwise; 0 turns the cache off) waits here; the oldest blocks go back
// to the OS first. Blocks are 64-byte aligned and uninitialised, fresh or recycled.
// fail_allocs_after() is the test hook that makes one allocation throw std::bad_alloc.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include "common.hpp"

namespace pyadr {
namespace {

constexpr size_t kMinBytes = size_t(256) << 10;
#ifndef PYADR_DEFAULT_CACHE_MB
#define PYADR_DEFAULT_CACHE_MB 256
#endif

struct Cached {
  size_t bytes;
  void* ptr;
  uint64_t tick;
};

struct BlockCache {
  std::mutex mu;
  std::vector<Cached> blocks;
  size_t held = 0;
  uint64_t tick = 0;
  size_t cap;

  BlockCache() {
    cap = size_t(PYADR_DEFAULT_CACHE_MB) << 20;
    if (const char* env = std::getenv("PYADR_CACHE_MB")) {
      char* end = nullptr;
      const long long mb = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && mb >= 0) cap = static_cast<size_t>(mb) << 20;
    }
  }
  ~BlockCache() { release(); }

  void release() {
    std::lock_guard<std::mutex> lock(mu);
    for (const Cached& c : blocks) std::free(c.ptr);
    blocks.clear();
    held = 0;
  }
};

BlockCache& cache() {
  static BlockCache* c = new BlockCache();  // never destroyed: blocks may be freed at exit
  return *c;
}

// Smallest class 2^k * (1 + i/8) >= bytes (a multiple of 64).
size_t size_class(size_t bytes) {
  size_t top = 64;
  while (top * 2 <= bytes) top *= 2;  // top = largest power of two <= bytes
  const size_t step = top >= 512 ? top / 8 : 64;
  return (bytes + step - 1) / step * step;
}

// fail_allocs_after(): allocations left before the injected failure (-1: disarmed).
std::atomic<int64_t> g_allocs_left{-1};
std::atomic<bool> g_fail_parallel_only{false}, g_fail_internal{false};

bool in_region() {
#ifdef _OPENMP
  return omp_get_level() > 0;
#else
  return false;
#endif
}

void maybe_inject_failure() {
  if (g_allocs_left.load(std::memory_order_relaxed) < 0) return;
  if (g_fail_parallel_only.load(std::memory_order_relaxed) && !in_region()) return;
  int64_t left = g_allocs_left.load(std::memory_order_relaxed);
  while (left >= 0 && !g_allocs_left.compare_exchange_weak(left, left - 1)) {
  }
  if (left != 0) return;  // exactly one caller sees 0; the counter is then -1
  if (g_fail_internal.load(std::memory_order_relaxed)) throw std::runtime_error("injected internal failure");
  throw std::bad_alloc();
}

void* fresh(size_t bytes) {
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

namespace detail {

void fail_allocs_after(int64_t n, bool parallel_only, bool internal) noexcept {
  g_fail_parallel_only.store(parallel_only);
  g_fail_internal.store(internal);
  g_allocs_left.store(n < 0 ? -1 : n);
}

void* cache_alloc(size_t bytes) {
  maybe_inject_failure();
  bytes = ((bytes + 63) / 64) * 64;
  if (bytes == 0) bytes = 64;
  if (bytes < kMinBytes) return fresh(bytes);
  const size_t cls = size_class(bytes);
  BlockCache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    size_t best = c.blocks.size();
    for (size_t i = 0; i < c.blocks.size(); ++i)  // the most recently freed block of this class
      if (c.blocks[i].bytes == cls && (best == c.blocks.size() || c.blocks[i].tick > c.blocks[best].tick)) best = i;
    if (best < c.blocks.size()) {
      void* p = c.blocks[best].ptr;
      c.held -= cls;
      c.blocks[best] = c.blocks.back();
      c.blocks.pop_back();
      return p;
    }
  }
  return fresh(cls);
}

void cache_free(void* p, size_t bytes) noexcept {
  if (!p) return;
  bytes = ((bytes + 63) / 64) * 64;
  if (bytes == 0) bytes = 64;
  if (bytes < kMinBytes) {
    std::free(p);
    return;
  }
  const size_t cls = size_class(bytes);
  BlockCache& c = cache();
  std::vector<void*> evicted;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (cls > c.cap) {
      evicted.push_back(p);
    } else {
      while (c.held + cls > c.cap) {  // oldest first
        size_t old = 0;
        for (size_t i = 1; i < c.blocks.size(); ++i)
          if (c.blocks[i].tick < c.blocks[old].tick) old = i;
        evicted.push_back(c.blocks[old].ptr);
        c.held -= c.blocks[old].bytes;
        c.blocks[old] = c.blocks.back();
        c.blocks.pop_back();
      }
      try {
        c.blocks.push_back({cls, p, ++c.tick});
        c.held += cls;
      } catch (...) {
        evicted.push_back(p);
      }
    }
  }
  for (void* q : evicted) std::free(q);
}

}  // namespace detail

size_t cached_bytes() {
  BlockCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.held;
}

size_t cache_cap() { return cache().cap; }

void release_cached() { cache().release(); }

}  // namespace pyadr
