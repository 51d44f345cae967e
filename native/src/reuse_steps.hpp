// Deep reuse, step by step: the pieces the training kernels (conv_reuse.cpp) and the inference
// cache (reuse_cache.cpp) are both built from. One sub-matrix ("block") j covers the ordered
// columns [k0_j, k0_j + len_j) of the virtual im2col matrix (never built).
//   padded_planes    planes (L, H) -> (L, HB), zero columns up to HB = padded_hashes(H)
//   make_blocks      k0, len and the column runs (padded input -> sub-vector) of every block
//   tile_subvectors  pointers to the sub-vectors of a tile of rows: in place, or gathered
//   hash_tile        projections and keys of a tile (sign; l2 packed; l2 tuples)
//   KeyIds           key -> cluster id numbered by first occurrence, previous-key shortcut
//   block_products   reduced GEMM: products_j (nc_j, M) = centroids_j (nc_j, Lj) . Wm_j (Lj, M)
//   reconstruct      y[n] = b + sum_j products_j[id_j(n)], block groups within kTableBudget
// Each step is deterministic and independent of the thread count.
#pragma once

#include <vector>

#include "cluster.hpp"
#include "common.hpp"
#include "layout.hpp"

namespace pyadr {
namespace detail {

constexpr int64_t kTileRows = 64;  // rows hashed, grouped and reconstructed together

// Products (Yc_j, D_j) of all blocks can outgrow the last-level cache (conv2 at rc 0.2: 37 MB),
// and rows read them at random: the reconstruction and dX take the blocks in groups whose tables
// fit this budget, one sweep over the rows per group.
#ifndef PYADR_TABLE_BUDGET_MB  // overridable at build time, for tuning
#define PYADR_TABLE_BUDGET_MB 12
#endif
constexpr size_t kTableBudget = size_t(PYADR_TABLE_BUDGET_MB) << 20;

// Group boundaries [0, b1, ..., nb] for tables of bytes(j) bytes each (kTableBudget per group).
template <class F>
std::vector<int64_t> block_groups(int64_t nb, F bytes) {
  std::vector<int64_t> bounds{0};
  size_t used = 0;
  for (int64_t j = 0; j < nb; ++j) {
    const size_t b = bytes(j);
    if (used > 0 && used + b > kTableBudget) {
      bounds.push_back(j);
      used = 0;
    }
    used += b;
  }
  bounds.push_back(nb);
  return bounds;
}

// (L, H) planes -> (L, HB) with zero columns H..HB-1, as lsh_project reads them.
template <class T>
std::vector<T> padded_planes(const T* planes, int L, int H);

struct Blocks {
  int64_t nb = 0;
  std::vector<int64_t> k0, len;
  std::vector<std::vector<Run>> runs;  // block j's columns as runs in the padded input
};
Blocks make_blocks(const ConvGeom& g, const Layout& lay, Order order, int L);

// rowp[r] = the len-long sub-vector of row r < R whose base in the padded input xp is
// base_off[r]: in place when the block is one run, else gathered into S (R, len).
template <class T>
PYADR_INLINE void tile_subvectors(const T* xp, const int64_t* base_off, int64_t R, const std::vector<Run>& runs,
                                  int64_t len, T* S, const T** rowp) {
  if (runs.size() == 1) {
    for (int64_t r = 0; r < R; ++r) rowp[r] = xp + base_off[r] + runs[0].src;
    return;
  }
  for (int64_t r = 0; r < R; ++r) {
    gather_runs(xp + base_off[r], runs.data(), runs.size(), S + r * len);
    rowp[r] = S + r * len;
  }
}

// Keys of the R sub-vectors rowp (each Lj long) under p's hash, with planes Pp (Lj, HB) and
// scratch proj (R, HB): sign keys or packed l2 keys into keys (R), or with `tuples` the full l2
// tuples into q (R, H). False when a packed l2 value does not fit (the caller redoes with tuples).
template <class T>
bool hash_tile(const T* const* rowp, int64_t R, int64_t Lj, const T* Pp, int HB, const ReuseParams<T>& p, bool tuples,
               T* proj, uint64_t* keys, int64_t* q);

// Key -> id, numbered by first occurrence by the caller's counter. Neighbouring rows often share
// a key: the previous key's id is tried before the table (not for tuples, whose keys are digests).
class KeyIds {
 public:
  void reset(int64_t rows, int key_bits, int tuple_len) {
    table_.reset(rows, key_bits, tuple_len);
    shortcut_ = tuple_len == 0;
    last_id_ = -1;
  }
  void clear() {
    table_.clear();
    last_id_ = -1;
  }
  // The id of key (q: its tuple, or null); a new key gets `next`.
  PYADR_INLINE int32_t find_or_insert(uint64_t key, const int64_t* q, int32_t next) {
    if (shortcut_ && last_id_ >= 0 && key == last_key_) return last_id_;
    last_key_ = key;
    last_id_ = table_.find_or_insert(key, q, next);
    return last_id_;
  }

 private:
  ClusterTable table_;
  bool shortcut_ = true;
  uint64_t last_key_ = 0;
  int32_t last_id_ = -1;
};

// products (max(nc, 1), M) = centroids (nc, Lj) . Wm_j (Lj, M); Wm_j is block j's rows of Wm.
template <class T>
void block_products(int64_t nc, int64_t Lj, int64_t M, const T* centroids, const T* Wm_j, T* products);

// y (B, M, OH, OW) = b + sum_j tables[j][ids[j * N + n]] for every row n < N = g.N(); tables[j]
// (rows[j], M). Blocks in groups of at most kTableBudget bytes of tables, rows in parallel.
template <class T>
void reconstruct(const ConvGeom& g, int64_t nb, const T* const* tables, const int64_t* rows, const int32_t* ids,
                 const T* b, T* y);

}  // namespace detail
}  // namespace pyadr
