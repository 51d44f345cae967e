// Indexed row additions, the memory-bound inner loops of deep reuse (compiled per SIMD level).
//   scatter_add: table[ids[r], :] += rows[r, :]   for r < R   (centroid sums, Gamma)
//   gather_sum:  out[r, :] = sum_j tables[j][ids[j * stride + r], :]   (reconstruction, all blocks
//                at once: the row's accumulator stays in registers, summed over j in order)
//   add_block_runs: one row's dX, block by block, added straight into the padded dX
//   add_runs:    base[run.src + t] += in[run.dst + t]   (col2im of one row)
#pragma once

#include "common.hpp"
#include "layout.hpp"

namespace pyadr {
namespace detail {

template <class T>
void scatter_add(T* table, const int32_t* ids, const T* rows, int64_t R, int64_t width);
// table[ids[r], :] += rows[r][0:width]  (rows given by pointer)
template <class T>
void scatter_add_ptrs(T* table, const int32_t* ids, const T* const* rows, int64_t R, int64_t width);
template <class T>
void gather_sum(T* out, const T* const* tables, const int32_t* ids, int64_t stride, int64_t nb, int64_t R,
                int64_t width);
// A column run of block j of the virtual im2col row: row[block's k0 + dst + t] sits at base[src + t].
struct BlockRun {
  int64_t src;
  int32_t block, dst, len, width;  // width: the block's length Lj (row stride of its table)
};
// base[u.src + t] += tables[u.block][ids[u.block * stride] * u.width + u.dst + t]   (dX of one row)
template <class T>
void add_block_runs(T* base, const BlockRun* runs, size_t nruns, const T* const* tables, const int32_t* ids,
                    int64_t stride);
template <class T>
void add_runs(T* base, const Run* runs, size_t nruns, const T* in);

}  // namespace detail
}  // namespace pyadr
