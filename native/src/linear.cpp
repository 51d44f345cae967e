// The fully connected layer's exact forward and backward (a ConvGeom with H = W = kh = kw = 1,
// dispatched here by conv_exact.cpp). One OpenMP region per call; every thread runs the core's
// GEMM single-threaded on its own slice of the output, so the packing of the shared operand is
// split over the threads too (a top-level GEMM packs it on one thread). Bias add and bias gradient
// live in the same region, on the thread's slice while it is in cache; no temporaries.
//
//   forward   y (B, M) = x (B, K) . w (M, K)^T + b        slices of M: y[:, m0:m1] <- b, then += GEMM
//   backward  dW (M, K) = dy^T (M, B) . x (B, K)          slices of K (the thread packs x[:, k0:k1])
//             dx (B, K) = dy (B, M) . w (M, K)            slices of K (the thread packs w[:, k0:k1])
//             db (M)    = sum_b dy[b, :]                  slices of M, rows in order (as a loop would)
// With the BLAS provider selected, one top-level GEMM per product (BLAS threads itself).
#include <algorithm>

#include "common.hpp"
#include "pyadr/core.hpp"
#include "pyadr/nn_fast.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pyadr {
namespace {

constexpr int64_t kSliceAlign = 16;  // slice bounds: multiples of 16 columns (whole SIMD panels)

// [lo, hi) of thread t's share of n columns.
void slice(int64_t n, int t, int nt, int64_t& lo, int64_t& hi) {
  const int64_t units = (n + kSliceAlign - 1) / kSliceAlign;
  lo = std::min(n, units * t / nt * kSliceAlign);
  hi = std::min(n, units * (t + 1) / nt * kSliceAlign);
}

// Threads for a product of `flops` multiply-adds over n sliceable columns (1 below 2^18: the
// region would cost more than it saves).
int threads_for_product(int64_t flops, int64_t n) {
  if (flops < (int64_t(1) << 18) || gemm_provider() == GemmProvider::Blas || detail::in_parallel()) return 1;
  return detail::threads_for((n + kSliceAlign - 1) / kSliceAlign);
}

template <class F>
void for_each_thread(int nt, F body) {
  if (nt <= 1) {
    body(0, 1);
    return;
  }
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  errors.run([&] { body(omp_get_thread_num(), omp_get_num_threads()); });
#else
  errors.run([&] { body(0, 1); });
#endif
  errors.rethrow();
}

}  // namespace

template <class T>
void linear_forward(const ConvGeom& g, const T* x, const T* w, const T* b, T* y) {
  const int64_t Bn = g.B, K = g.C, M = g.M;
  for_each_thread(threads_for_product(Bn * K * M, M), [&](int t, int nt) {
    int64_t m0, m1;
    slice(M, t, nt, m0, m1);
    if (m0 >= m1) return;
    if (b)
      for (int64_t i = 0; i < Bn; ++i) std::copy(b + m0, b + m1, y + i * M + m0);
    gemm<T>(false, true, Bn, m1 - m0, K, T(1), x, K, w + m0 * K, K, b ? T(1) : T(0), y + m0, M);
  });
}

template <class T>
void linear_backward(const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db) {
  const int64_t Bn = g.B, K = g.C, M = g.M;
  const int64_t products = (dw ? 1 : 0) + (dx ? 1 : 0);
  for_each_thread(threads_for_product(products * Bn * K * M, K), [&](int t, int nt) {
    int64_t k0, k1, m0, m1;
    slice(K, t, nt, k0, k1);
    slice(M, t, nt, m0, m1);
    if (k0 < k1) {
      if (dw) gemm<T>(true, false, M, k1 - k0, Bn, T(1), dy, M, x + k0, K, T(0), dw + k0, K);
      if (dx) gemm<T>(false, false, Bn, k1 - k0, M, T(1), dy, M, w + k0, K, T(0), dx + k0, K);
    }
    if (db && m0 < m1) {
      T* PYADR_RESTRICT d = db + m0;
      const int64_t len = m1 - m0;
      for (int64_t m = 0; m < len; ++m) d[m] = T(0);
      for (int64_t i = 0; i < Bn; ++i) {
        const T* PYADR_RESTRICT row = dy + i * M + m0;
        for (int64_t m = 0; m < len; ++m) d[m] += row[m];
      }
    }
  });
}

template void linear_forward<float>(const ConvGeom&, const float*, const float*, const float*, float*);
template void linear_forward<double>(const ConvGeom&, const double*, const double*, const double*, double*);
template void linear_backward<float>(const ConvGeom&, const float*, const float*, const float*, float*, float*,
                                     float*);
template void linear_backward<double>(const ConvGeom&, const double*, const double*, const double*, double*,
                                      double*, double*);

}  // namespace pyadr
