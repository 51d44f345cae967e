// Indexed row additions, the memory-bound inner loops of deep reuse (compiled per SIMD level).
//   gather_add:  acc[r, :]  += table[ids[r], :]   for r < R   (reconstruction, dX gather)
//   scatter_add: table[ids[r], :] += rows[r, :]   for r < R   (centroid sums, Gamma)
#pragma once

#include "common.hpp"

namespace pyadr {
namespace detail {

template <class T>
void gather_add(T* acc, const T* table, const int32_t* ids, int64_t R, int64_t width);
template <class T>
void scatter_add(T* table, const int32_t* ids, const T* rows, int64_t R, int64_t width);
// table[ids[r], :] += rows[r][0:width]  (rows given by pointer)
template <class T>
void scatter_add_ptrs(T* table, const int32_t* ids, const T* const* rows, int64_t R, int64_t width);

}  // namespace detail
}  // namespace pyadr
