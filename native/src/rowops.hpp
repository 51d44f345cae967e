// Indexed row additions, the memory-bound inner loops of deep reuse (compiled per SIMD level).
//   scatter_first: table[ids[r], :] += rows[r, :] for r < R, a cluster's first row copied instead
//                (centroid sums, Gamma; ids numbered by first occurrence, so no zero-fill)
//   gather_sum:  out[r, :] = sum_j tables[j][ids[j * stride + r], :]   (reconstruction, all blocks
//                at once: the row's accumulator stays in registers, summed over j in order)
//   add_block_runs: one row's dX, block by block, added straight into the padded dX
//   add_runs:    base[run.src + t] += in[run.dst + t]   (col2im of one row)
//   scale_rows:  rows[c, :] *= 1 / counts[c]   (sums -> means: centroids, Gamma / |c|)
#pragma once

#include "common.hpp"
#include "layout.hpp"

namespace pyadr {
namespace detail {

// Ids below `next` are already in the table; ids are numbered by first occurrence in row order,
// so the first row of each new cluster (id == next) is copied and next advances. Returns the new
// next; an id beyond next is an internal error (Error thrown).
template <class T>
int32_t scatter_first(T* table, const int32_t* ids, const T* rows, int64_t R, int64_t width, int32_t next);
// The same with rows given by pointer: rows[r][0:width].
template <class T>
int32_t scatter_first_ptrs(T* table, const int32_t* ids, const T* const* rows, int64_t R, int64_t width,
                           int32_t next);
// out[r, :] (+)= sum_{j < nb} tables[j][ids[j * stride + r], :]; with `accumulate` out's values
// are added to, otherwise overwritten.
template <class T>
void gather_sum(T* out, const T* const* tables, const int32_t* ids, int64_t stride, int64_t nb, int64_t R,
                int64_t width, bool accumulate = false);
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
// rows (n, width): row c multiplied by 1 / counts[c] (counts > 0).
template <class T>
void scale_rows(T* rows, const int32_t* counts, int64_t n, int64_t width);

}  // namespace detail
}  // namespace pyadr
