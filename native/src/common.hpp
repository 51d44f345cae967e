// Internal helpers shared by the kernels: threading, SIMD dispatch, scratch buffers.
#pragma once

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>

#include "pyadr/core.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

// Hot loops are compiled several times (AVX-512, AVX2+FMA, baseline) and the loader picks one
// (GCC/Clang function multi-versioning). Portable: no -march=native, no intrinsics.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__) && !defined(PYADR_NO_DISPATCH)
#define PYADR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define PYADR_HAVE_DISPATCH 1
#else
#define PYADR_CLONES
#define PYADR_HAVE_DISPATCH 0
#endif

#if defined(__GNUC__)
#define PYADR_PREFETCH(p) __builtin_prefetch(p)
#define PYADR_RESTRICT __restrict__
#define PYADR_INLINE inline __attribute__((always_inline))
#else
#define PYADR_PREFETCH(p) ((void)0)
#define PYADR_RESTRICT
#define PYADR_INLINE inline
#endif

namespace pyadr {
namespace detail {

inline bool in_parallel() {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Threads a parallel region over `work` independent items should use.
inline int threads_for(int64_t work) {
  int t = num_threads();
  if (work < t) t = static_cast<int>(work < 1 ? 1 : work);
  return t;
}

// Exceptions must not leave an OpenMP region (that is std::terminate). Every region that can
// throw runs its work through one ParallelErrors: the first exception thrown is kept as a
// std::exception_ptr (type and message intact: bad_alloc stays bad_alloc, TypeError stays
// TypeError), later work is skipped, and rethrow() raises it after the region.
//   ParallelErrors errors;
//   #pragma omp parallel
//   { Buffer<T> scratch; errors.run([&] { scratch.resize(n); });
//     #pragma omp for
//     for (...) errors.run([&] { ...; });  }        // every thread still reaches the barriers
//   errors.rethrow();
class ParallelErrors {
 public:
  // Runs f() unless an earlier call failed; an exception from f() is kept, never propagated.
  template <class F>
  void run(F&& f) noexcept {
    if (failed()) return;
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  // Throws the first kept exception, if any (after the region: its end is a barrier).
  void rethrow() {
    std::lock_guard<std::mutex> lock(mu_);
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::mutex mu_;
  std::atomic<bool> failed_{false};
  std::exception_ptr first_;
};

// 64-byte aligned, uninitialised scratch buffer of T (large ones recycled: block_cache.cpp).
template <class T>
struct Buffer {
  T* ptr = nullptr;
  size_t n = 0;
  Buffer() = default;
  explicit Buffer(size_t count) { resize(count); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { cache_free(ptr, n * sizeof(T)); }
  void resize(size_t count) {
    if (count <= n) return;
    cache_free(ptr, n * sizeof(T));
    ptr = nullptr;
    n = 0;
    ptr = static_cast<T*>(cache_alloc(count * sizeof(T)));
    n = count;
  }
  void zero() { std::memset(ptr, 0, n * sizeof(T)); }
  T* data() { return ptr; }
  const T* data() const { return ptr; }
  T& operator[](size_t i) { return ptr[i]; }
};

}  // namespace detail
}  // namespace pyadr
