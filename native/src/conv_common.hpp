// Weight reordering and bias gradients shared by the exact and the reuse paths.
#pragma once

#include "common.hpp"

namespace pyadr {
namespace detail {

// Position of weight column (c, i, j) in the ordered row.
inline int64_t ordered_column(const ConvGeom& g, Order order, int64_t c, int64_t i, int64_t j) {
  return order == Order::HWC ? (i * g.kw + j) * g.C + c : (c * g.kh + i) * g.kw + j;
}

// w (M, C, kh, kw) -> Wm (K, M), rows in `order`.
template <class T>
void weights_to_matrix(const ConvGeom& g, Order order, const T* w, T* Wm) {
  const int64_t M = g.M;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          Wm[ordered_column(g, order, c, i, j) * M + m] = w[((m * g.C + c) * g.kh + i) * g.kw + j];
}

// Wm (K, M) -> w (M, C, kh, kw).
template <class T>
void matrix_to_weights(const ConvGeom& g, Order order, const T* Wm, T* w) {
  const int64_t M = g.M;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          w[((m * g.C + c) * g.kh + i) * g.kw + j] = Wm[ordered_column(g, order, c, i, j) * M + m];
}

// db[m] = sum over b, positions of dy (B, M, P); summed per image then across images in order.
template <class T>
void bias_grad_nchw(const ConvGeom& g, const T* dy, T* db) {
  const int64_t M = g.M, P = g.P();
  for (int64_t m = 0; m < M; ++m) db[m] = T(0);
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      const T* s = dy + (b * M + m) * P;
      T acc = T(0);
      for (int64_t p = 0; p < P; ++p) acc += s[p];
      db[m] += acc;
    }
}

// db[m] = sum_n rows[n, m] for rows (N, M).
template <class T>
void bias_grad_rows(const T* rows, int64_t N, int64_t M, T* db) {
  for (int64_t m = 0; m < M; ++m) db[m] = T(0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) db[m] += rows[n * M + m];
}

}  // namespace detail
}  // namespace pyadr
