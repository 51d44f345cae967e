#include "rowops.hpp"

namespace pyadr {
namespace detail {
namespace {

template <class T>
PYADR_INLINE void gather_add_impl(T* PYADR_RESTRICT acc, const T* PYADR_RESTRICT table, const int32_t* ids,
                                  int64_t R, int64_t width) {
  for (int64_t r = 0; r < R; ++r) {
    const T* PYADR_RESTRICT src = table + static_cast<int64_t>(ids[r]) * width;
    T* PYADR_RESTRICT dst = acc + r * width;
    for (int64_t i = 0; i < width; ++i) dst[i] += src[i];
  }
}

template <class T>
PYADR_INLINE void scatter_add_impl(T* PYADR_RESTRICT table, const int32_t* ids, const T* PYADR_RESTRICT rows,
                                   int64_t R, int64_t width) {
  for (int64_t r = 0; r < R; ++r) {
    T* PYADR_RESTRICT dst = table + static_cast<int64_t>(ids[r]) * width;
    const T* PYADR_RESTRICT src = rows + r * width;
    for (int64_t i = 0; i < width; ++i) dst[i] += src[i];
  }
}

template <class T>
PYADR_INLINE void scatter_add_ptrs_impl(T* PYADR_RESTRICT table, const int32_t* ids, const T* const* rows, int64_t R,
                                        int64_t width) {
  for (int64_t r = 0; r < R; ++r) {
    T* PYADR_RESTRICT dst = table + static_cast<int64_t>(ids[r]) * width;
    const T* PYADR_RESTRICT src = rows[r];
    for (int64_t i = 0; i < width; ++i) dst[i] += src[i];
  }
}

PYADR_CLONES void scatter_add_ptrs_f32(float* t, const int32_t* ids, const float* const* rows, int64_t R, int64_t w) {
  scatter_add_ptrs_impl(t, ids, rows, R, w);
}
PYADR_CLONES void scatter_add_ptrs_f64(double* t, const int32_t* ids, const double* const* rows, int64_t R,
                                       int64_t w) {
  scatter_add_ptrs_impl(t, ids, rows, R, w);
}
PYADR_CLONES void gather_add_f32(float* a, const float* t, const int32_t* ids, int64_t R, int64_t w) {
  gather_add_impl(a, t, ids, R, w);
}
PYADR_CLONES void gather_add_f64(double* a, const double* t, const int32_t* ids, int64_t R, int64_t w) {
  gather_add_impl(a, t, ids, R, w);
}
PYADR_CLONES void scatter_add_f32(float* t, const int32_t* ids, const float* rows, int64_t R, int64_t w) {
  scatter_add_impl(t, ids, rows, R, w);
}
PYADR_CLONES void scatter_add_f64(double* t, const int32_t* ids, const double* rows, int64_t R, int64_t w) {
  scatter_add_impl(t, ids, rows, R, w);
}

}  // namespace

template <>
void gather_add<float>(float* acc, const float* table, const int32_t* ids, int64_t R, int64_t width) {
  gather_add_f32(acc, table, ids, R, width);
}
template <>
void gather_add<double>(double* acc, const double* table, const int32_t* ids, int64_t R, int64_t width) {
  gather_add_f64(acc, table, ids, R, width);
}
template <>
void scatter_add<float>(float* table, const int32_t* ids, const float* rows, int64_t R, int64_t width) {
  scatter_add_f32(table, ids, rows, R, width);
}
template <>
void scatter_add<double>(double* table, const int32_t* ids, const double* rows, int64_t R, int64_t width) {
  scatter_add_f64(table, ids, rows, R, width);
}

template <>
void scatter_add_ptrs<float>(float* table, const int32_t* ids, const float* const* rows, int64_t R, int64_t width) {
  scatter_add_ptrs_f32(table, ids, rows, R, width);
}
template <>
void scatter_add_ptrs<double>(double* table, const int32_t* ids, const double* const* rows, int64_t R,
                              int64_t width) {
  scatter_add_ptrs_f64(table, ids, rows, R, width);
}

}  // namespace detail
}  // namespace pyadr
