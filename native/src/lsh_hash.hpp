// LSH of sub-vectors: projections on the (L, H) planes and the keys derived from them.
//   rows[r] -> sub-vector r (Lj values); planes padded to Pp (Lj, HB) with zero columns, HB in
//   {8, 16, 32, 64} >= H; proj (R, HB), summed over k in order.
//   sign: key = sum_h [proj_h > 0] << h.   l2: q_h = floor((proj_h + off_h) / width).
#pragma once

#include "common.hpp"

namespace pyadr {
namespace detail {

inline int padded_hashes(int H) { return H <= 8 ? 8 : H <= 16 ? 16 : H <= 32 ? 32 : 64; }

template <class T>
void lsh_project(const T* const* rows, int64_t R, int64_t Lj, const T* Pp, int HB, T* proj);
template <class T>
void lsh_sign_keys(const T* proj, int64_t R, int HB, int H, uint64_t* keys);
// Throws Error when a quantised value is not finite or does not fit in int64.
template <class T>
void lsh_l2_keys(const T* proj, int64_t R, int HB, int H, const T* offsets, T width, int64_t* q);
// The l2 keys packed into 64 bits (64/H bits per hash, biased), from proj directly
// (vectorised): false when a value does not fit (or is not finite); the caller then falls back
// to lsh_l2_keys (full tuples), which reports non-finite values.
template <class T>
bool lsh_l2_packed_keys(const T* proj, int64_t R, int HB, int H, const T* offsets, T width, uint64_t* keys);

}  // namespace detail
}  // namespace pyadr
