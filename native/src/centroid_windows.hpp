// Centroids of the reuse forward's pixel path by sliding windows (centroid_windows.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "layout.hpp"
#include "pyadr/core.hpp"

namespace pyadr {
namespace detail {

// On the pixel path (order hwc, L | C: every sub-vector one slice of one padded pixel), true when
// window_centroid_sums applies: stride 1 and scope batch (one cluster set per block over all images).
bool window_sums_apply(const ConvGeom& g, bool batch_scope);

// The per-block cluster sums, block j = (kernel position (i, jj), channel slice s), j = (i*kw +
// jj) * (C/L) + s, from the keys numbered once per slice:
//   xp          padded NHWC input (layout lay), slice q at xp + q*L
//   slice_gid   (number of slices) key number of each slice, < n_gid
//   block_gids  per block: the key number of each of its clusters, in its id order (nc[j] of them)
//   counts      per block: the members of each cluster (nc[j] of them, all >= 1)
//   means       per block: (nc[j], L) output, the centroids (member sums / counts)
template <class T>
void window_centroid_sums(const ConvGeom& g, const Layout& lay, int L, const T* xp, const int32_t* slice_gid,
                          int32_t n_gid, const std::vector<const int32_t*>& block_gids, const std::vector<int64_t>& nc,
                          const std::vector<const int32_t*>& counts, const std::vector<T*>& means);

}  // namespace detail
}  // namespace pyadr
