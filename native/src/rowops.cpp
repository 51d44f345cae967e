#include "rowops.hpp"

namespace pyadr {
namespace detail {
namespace {

// dst[0:width] = src[0:width] with 32-byte vector moves: a loop the compiler would otherwise turn
// into a memmove call, which costs more than the copy for rows this short.
template <class T>
PYADR_INLINE void copy_row(T* PYADR_RESTRICT dst, const T* PYADR_RESTRICT src, int64_t width) {
  typedef T V __attribute__((vector_size(32)));
  constexpr int64_t VL = 32 / sizeof(T);
  int64_t i = 0;
  for (; i + VL <= width; i += VL) {
    V x;
    std::memcpy(&x, src + i, sizeof(V));
    std::memcpy(dst + i, &x, sizeof(V));
  }
  for (; i < width; ++i) dst[i] = src[i];
}

// Rows r < R given by `row(r)`. Ids are numbered by first occurrence in row order and the ids
// below `next` are already in the table, so the row whose id equals next is its cluster's first
// member: copied, not added (the table needs no zero-fill). Returns the next new id.
template <class T, class Row>
PYADR_INLINE int32_t scatter_first_impl(T* PYADR_RESTRICT table, const int32_t* ids, Row row, int64_t R,
                                        int64_t width, int32_t next) {
  for (int64_t r = 0; r < R; ++r) {
    if (r + 4 < R) PYADR_PREFETCH(table + static_cast<int64_t>(ids[r + 4]) * width);  // scattered rows
    const int32_t id = ids[r];
    T* PYADR_RESTRICT dst = table + static_cast<int64_t>(id) * width;
    const T* PYADR_RESTRICT src = row(r);
    if (id < next) {
      for (int64_t i = 0; i < width; ++i) dst[i] += src[i];
    } else if (id == next) {
      copy_row(dst, src, width);
      ++next;
    } else {
      throw Error("internal: cluster ids are not numbered by first occurrence");
    }
  }
  return next;
}

// Columns in chunks of 8 vectors held in registers across the nb tables; the tail column by column.
template <class T>
PYADR_INLINE void gather_sum_impl(T* PYADR_RESTRICT out, const T* const* tables, const int32_t* ids, int64_t stride,
                                  int64_t nb, int64_t R, int64_t width, bool accumulate) {
  typedef T V __attribute__((vector_size(32)));
  constexpr int64_t VL = 32 / sizeof(T), NV = 8, CH = VL * NV;
  for (int64_t r = 0; r < R; ++r) {
    T* dst = out + r * width;
    if (r + 2 < R)  // the next rows' sources are scattered: start fetching them early
      for (int64_t j = 0; j < nb; ++j)
        PYADR_PREFETCH(tables[j] + static_cast<int64_t>(ids[j * stride + r + 2]) * width);
    int64_t m0 = 0;
    for (; m0 + CH <= width; m0 += CH) {
      V acc[NV];
      if (accumulate) {
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) std::memcpy(&acc[v], dst + m0 + v * VL, sizeof(V));
      } else {
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[v] = V{};
      }
      for (int64_t j = 0; j < nb; ++j) {
        const T* src = tables[j] + static_cast<int64_t>(ids[j * stride + r]) * width + m0;
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          V x;
          std::memcpy(&x, src + v * VL, sizeof(V));
          acc[v] += x;
        }
      }
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) std::memcpy(dst + m0 + v * VL, &acc[v], sizeof(V));
    }
    if (m0 < width) {
      if (!accumulate)
        for (int64_t m = m0; m < width; ++m) dst[m] = T(0);
      for (int64_t j = 0; j < nb; ++j) {
        const T* PYADR_RESTRICT src = tables[j] + static_cast<int64_t>(ids[j * stride + r]) * width;
        for (int64_t m = m0; m < width; ++m) dst[m] += src[m];
      }
    }
  }
}

template <class T>
PYADR_INLINE void add_runs_impl(T* base, const Run* runs, size_t nruns, const T* PYADR_RESTRICT in) {
  for (size_t r = 0; r < nruns; ++r) {
    const Run& u = runs[r];
    T* PYADR_RESTRICT d = base + u.src;
    const T* PYADR_RESTRICT s = in + u.dst;
    for (int32_t t = 0; t < u.len; ++t) d[t] += s[t];
  }
}

template <class T>
PYADR_INLINE void add_block_runs_impl(T* base, const BlockRun* runs, size_t nruns, const T* const* tables,
                                      const int32_t* ids, int64_t stride) {
  for (size_t r = 0; r < nruns; ++r) {
    const BlockRun& u = runs[r];
    T* PYADR_RESTRICT d = base + u.src;
    const T* PYADR_RESTRICT s =
        tables[u.block] + static_cast<int64_t>(ids[u.block * stride]) * u.width + u.dst;
    for (int32_t t = 0; t < u.len; ++t) d[t] += s[t];
  }
}

template <class T>
PYADR_INLINE void scale_rows_impl(T* PYADR_RESTRICT rows, const int32_t* counts, int64_t n, int64_t width) {
  for (int64_t c = 0; c < n; ++c) {
    const T inv = T(1) / static_cast<T>(counts[c]);
    T* PYADR_RESTRICT row = rows + c * width;
    for (int64_t i = 0; i < width; ++i) row[i] *= inv;
  }
}
PYADR_CLONES void scale_rows_f32(float* rows, const int32_t* counts, int64_t n, int64_t w) {
  scale_rows_impl(rows, counts, n, w);
}
PYADR_CLONES void scale_rows_f64(double* rows, const int32_t* counts, int64_t n, int64_t w) {
  scale_rows_impl(rows, counts, n, w);
}

PYADR_CLONES void add_block_runs_f32(float* b, const BlockRun* r, size_t n, const float* const* t, const int32_t* ids,
                                     int64_t s) {
  add_block_runs_impl(b, r, n, t, ids, s);
}
PYADR_CLONES void add_block_runs_f64(double* b, const BlockRun* r, size_t n, const double* const* t,
                                     const int32_t* ids, int64_t s) {
  add_block_runs_impl(b, r, n, t, ids, s);
}
PYADR_CLONES void gather_sum_f32(float* o, const float* const* t, const int32_t* ids, int64_t s, int64_t nb,
                                 int64_t R, int64_t w, bool acc) {
  gather_sum_impl(o, t, ids, s, nb, R, w, acc);
}
PYADR_CLONES void gather_sum_f64(double* o, const double* const* t, const int32_t* ids, int64_t s, int64_t nb,
                                 int64_t R, int64_t w, bool acc) {
  gather_sum_impl(o, t, ids, s, nb, R, w, acc);
}
PYADR_CLONES void add_runs_f32(float* base, const Run* runs, size_t n, const float* in) {
  add_runs_impl(base, runs, n, in);
}
PYADR_CLONES void add_runs_f64(double* base, const Run* runs, size_t n, const double* in) {
  add_runs_impl(base, runs, n, in);
}
PYADR_CLONES int32_t scatter_first_ptrs_f32(float* t, const int32_t* ids, const float* const* rows, int64_t R,
                                            int64_t w, int32_t next) {
  return scatter_first_impl(t, ids, [rows](int64_t r) { return rows[r]; }, R, w, next);
}
PYADR_CLONES int32_t scatter_first_ptrs_f64(double* t, const int32_t* ids, const double* const* rows, int64_t R,
                                            int64_t w, int32_t next) {
  return scatter_first_impl(t, ids, [rows](int64_t r) { return rows[r]; }, R, w, next);
}
PYADR_CLONES int32_t scatter_first_f32(float* t, const int32_t* ids, const float* rows, int64_t R, int64_t w,
                                       int32_t next) {
  return scatter_first_impl(t, ids, [rows, w](int64_t r) { return rows + r * w; }, R, w, next);
}
PYADR_CLONES int32_t scatter_first_f64(double* t, const int32_t* ids, const double* rows, int64_t R, int64_t w,
                                       int32_t next) {
  return scatter_first_impl(t, ids, [rows, w](int64_t r) { return rows + r * w; }, R, w, next);
}

}  // namespace

template <>
int32_t scatter_first<float>(float* table, const int32_t* ids, const float* rows, int64_t R, int64_t width,
                             int32_t next) {
  return scatter_first_f32(table, ids, rows, R, width, next);
}
template <>
int32_t scatter_first<double>(double* table, const int32_t* ids, const double* rows, int64_t R, int64_t width,
                              int32_t next) {
  return scatter_first_f64(table, ids, rows, R, width, next);
}

template <>
int32_t scatter_first_ptrs<float>(float* table, const int32_t* ids, const float* const* rows, int64_t R,
                                  int64_t width, int32_t next) {
  return scatter_first_ptrs_f32(table, ids, rows, R, width, next);
}
template <>
int32_t scatter_first_ptrs<double>(double* table, const int32_t* ids, const double* const* rows, int64_t R,
                                   int64_t width, int32_t next) {
  return scatter_first_ptrs_f64(table, ids, rows, R, width, next);
}

template <>
void gather_sum<float>(float* out, const float* const* tables, const int32_t* ids, int64_t stride, int64_t nb,
                       int64_t R, int64_t width, bool accumulate) {
  gather_sum_f32(out, tables, ids, stride, nb, R, width, accumulate);
}
template <>
void gather_sum<double>(double* out, const double* const* tables, const int32_t* ids, int64_t stride, int64_t nb,
                        int64_t R, int64_t width, bool accumulate) {
  gather_sum_f64(out, tables, ids, stride, nb, R, width, accumulate);
}
template <>
void add_block_runs<float>(float* base, const BlockRun* runs, size_t nruns, const float* const* tables,
                           const int32_t* ids, int64_t stride) {
  add_block_runs_f32(base, runs, nruns, tables, ids, stride);
}
template <>
void add_block_runs<double>(double* base, const BlockRun* runs, size_t nruns, const double* const* tables,
                            const int32_t* ids, int64_t stride) {
  add_block_runs_f64(base, runs, nruns, tables, ids, stride);
}
template <>
void add_runs<float>(float* base, const Run* runs, size_t nruns, const float* in) {
  add_runs_f32(base, runs, nruns, in);
}
template <>
void add_runs<double>(double* base, const Run* runs, size_t nruns, const double* in) {
  add_runs_f64(base, runs, nruns, in);
}

template <>
void scale_rows<float>(float* rows, const int32_t* counts, int64_t n, int64_t width) {
  scale_rows_f32(rows, counts, n, width);
}
template <>
void scale_rows<double>(double* rows, const int32_t* counts, int64_t n, int64_t width) {
  scale_rows_f64(rows, counts, n, width);
}

}  // namespace detail
}  // namespace pyadr
