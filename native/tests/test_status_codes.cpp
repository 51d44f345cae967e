// Every C API status code comes back with its message, including failures thrown inside the
// kernels' OpenMP regions (made deterministic by the allocator's fault-injection hook): the
// exception keeps its type across the region (bad_alloc -> PYADR_ERR_OUT_OF_MEMORY, not a
// generic invalid argument) and the C++ API rethrows it with its type.
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "pyadr/core.hpp"
#include "pyadr/pyadr.h"

namespace {

bool has(const char* msg, const char* needle) { return std::strstr(msg, needle) != nullptr; }

struct Conv {
  pyadr_conv_geom g;
  std::vector<float> x, w, y, dy, dx, dw;
  std::vector<double> planes;
  pyadr_reuse_config cfg;
  Conv() {
    pyadr_conv_geom_init(&g, 4, 8, 12, 12, 16, 3, 3);
    g.pad_h = g.pad_w = 1;
    x.assign(4 * 8 * 12 * 12, 0.f);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 7919) % 13) - 6.f;
    w.assign(16 * 8 * 9, 0.25f);
    y.resize(4 * 16 * 12 * 12);
    dy.assign(y.size(), 1.f);
    dx.resize(x.size());
    dw.resize(w.size());
    planes.resize(8 * 6);
    pyadr_random_planes(planes.data(), 8, 6, 1);
    pyadr_reuse_config_init(&cfg, 8, 6, planes.data());
  }
  pyadr_status forward(bool reuse, pyadr_context** ctx) {
    return pyadr_conv2d_forward(&g, x.data(), w.data(), nullptr, reuse ? &cfg : nullptr, y.data(), ctx);
  }
};

// fn() must return `code` and leave a message containing `needle`.
template <class F>
void expect(pyadr_status code, const char* needle, F fn) {
  pyadr_clear_error();
  const pyadr_status st = fn();
  if (st != code || !has(pyadr_last_error(), needle))
    std::fprintf(stderr, "got status %d \"%s\", expected %d with \"%s\"\n", int(st), pyadr_last_error(), int(code),
                 needle);
  CHECK(st == code);
  CHECK(has(pyadr_last_error(), needle));
}

void test_codes() {
  Conv c;
  // PYADR_ERR_INVALID_ARGUMENT
  c.g.stride_h = 0;
  expect(PYADR_ERR_INVALID_ARGUMENT, "stride must be >= 1", [&] { return c.forward(false, nullptr); });
  c.g.stride_h = 1;
  // PYADR_ERR_TYPE: a float32 context given to the float64 backward, a conv2d one to linear's.
  pyadr_context* ctx = nullptr;
  CHECK(c.forward(true, &ctx) == PYADR_OK);
  std::vector<double> dyd(c.dy.size(), 1.0);
  expect(PYADR_ERR_TYPE, "dtype mismatch",
         [&] { return pyadr_conv2d_backward_f64(ctx, dyd.data(), nullptr, nullptr, nullptr); });
  expect(PYADR_ERR_TYPE, "pyadr_linear_forward",
         [&] { return pyadr_linear_backward(ctx, c.dy.data(), nullptr, nullptr, nullptr); });
  pyadr_context_free(ctx);
}

// Allocation failures inside the parallel regions of every entry point, 1 and 2 threads. Without
// OpenMP there are no regions: the first allocation of the call fails instead.
const bool kRegions = pyadr_openmp_enabled() != 0;

void test_failures_in_regions() {
  Conv c;
  for (int threads : {1, 2}) {
    CHECK(pyadr_set_num_threads(threads) == PYADR_OK);
    for (bool reuse : {false, true}) {
      for (bool internal : {false, true}) {
        const pyadr_status code = internal ? PYADR_ERR_INTERNAL : PYADR_ERR_OUT_OF_MEMORY;
        const char* needle = internal ? "injected internal failure" : "out of memory";
        pyadr::detail::fail_allocs_after(0, kRegions, internal);
        pyadr_context* ctx = nullptr;
        expect(code, needle, [&] { return c.forward(reuse, &ctx); });
        CHECK(ctx == nullptr);
        pyadr::detail::fail_allocs_after(-1);
        // The library still works after the failure, and the backward fails the same way.
        CHECK(c.forward(reuse, &ctx) == PYADR_OK);
        if (threads == 2 || !reuse || !kRegions) {  // 1 thread: the reuse backward's regions allocate nothing
          pyadr::detail::fail_allocs_after(0, kRegions, internal);
          expect(code, needle, [&] { return pyadr_conv2d_backward(ctx, c.dy.data(), c.dx.data(), c.dw.data(), nullptr); });
          pyadr::detail::fail_allocs_after(-1);
        }
        CHECK(pyadr_conv2d_backward(ctx, c.dy.data(), c.dx.data(), c.dw.data(), nullptr) == PYADR_OK);
        pyadr_context_free(ctx);
      }
    }
  }
}

// The C++ API rethrows the exception thrown inside a region with its type.
void test_cpp_types() {
  Conv c;
  pyadr::set_num_threads(2);
  pyadr::ConvGeom g;
  g.B = 4; g.C = 8; g.H = 12; g.W = 12; g.M = 16; g.kh = g.kw = 3; g.ph = g.pw = 1;
  g.validate();
  bool got = false;
  pyadr::detail::fail_allocs_after(0, kRegions);
  try {
    pyadr::conv2d_forward_exact<float>(g, c.x.data(), c.w.data(), nullptr, c.y.data());
  } catch (const std::bad_alloc&) {
    got = true;
  } catch (...) {
  }
  pyadr::detail::fail_allocs_after(-1);
  CHECK(got);
  // fail_allocs_after(n): n allocations succeed, the next one fails, then none.
  pyadr::detail::fail_allocs_after(2);
  void* a = pyadr::detail::cache_alloc(64);
  void* b = pyadr::detail::cache_alloc(64);
  got = false;
  try {
    pyadr::detail::cache_alloc(64);
  } catch (const std::bad_alloc&) {
    got = true;
  }
  CHECK(got);
  void* d = pyadr::detail::cache_alloc(64);  // disarmed again
  CHECK(a && b && d);
  pyadr::detail::cache_free(a, 64);
  pyadr::detail::cache_free(b, 64);
  pyadr::detail::cache_free(d, 64);
}

}  // namespace

int main() {
  test_codes();
  test_failures_in_regions();
  test_cpp_types();
  return check_report("test_status_codes");
}
