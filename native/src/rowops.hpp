// Indexed row additions, the memory-bound inner loops of deep reuse (compiled per SIMD level).
//   gather_add:  acc[r, :]  += table[ids[r], :]   for r < R   (reconstruction, dX gather)
//   scatter_add: table[ids[r], :] += rows[r, :]   for r < R   (centroid sums, Gamma)
//   gather_sum:  out[r, :] = sum_j tables[j][ids[j * stride + r], :]   (reconstruction, all blocks
//                at once: the row's accumulator stays in registers, summed over j in order)
//   concat_rows: out[j*L : j*L + Lj] = tables[j][ids[j * stride], :Lj]   (one dX row from the D_j)
//   add_runs:    base[run.src + t] += in[run.dst + t]   (col2im of one row)
#pragma once

#include "common.hpp"
#include "layout.hpp"

namespace pyadr {
namespace detail {

template <class T>
void gather_add(T* acc, const T* table, const int32_t* ids, int64_t R, int64_t width);
template <class T>
void scatter_add(T* table, const int32_t* ids, const T* rows, int64_t R, int64_t width);
// table[ids[r], :] += rows[r][0:width]  (rows given by pointer)
template <class T>
void scatter_add_ptrs(T* table, const int32_t* ids, const T* const* rows, int64_t R, int64_t width);
template <class T>
void gather_sum(T* out, const T* const* tables, const int32_t* ids, int64_t stride, int64_t nb, int64_t R,
                int64_t width);
template <class T>
void concat_rows(T* out, const T* const* tables, const int32_t* ids, int64_t stride, int64_t nb, int64_t L,
                 int64_t K);
template <class T>
void add_runs(T* base, const Run* runs, size_t nruns, const T* in);

}  // namespace detail
}  // namespace pyadr
