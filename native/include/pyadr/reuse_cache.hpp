// Inference deep-reuse cache (the ICS 2019 "Deep Reuse" setting): for a convolution with frozen
// weights, keep the products centroid . Wm[block j] of every cluster seen so far, keyed by the
// cluster's LSH key per sub-matrix j, so that a stream of inputs reuses earlier products.
//
// One call (forward) on a batch:
//   1. for every sub-matrix j and row n: sign key of the sub-vector (DESIGN.md "sign" hash, the
//      same planes for every block, a shorter last block uses the first rows); a key already in
//      block j's table is a hit and its stored product is reused;
//   2. rows whose key is new are grouped by key; each new cluster's centroid is the mean of its
//      members in this call, its product centroid . Wm_j (one GEMM per block for all new
//      clusters) is stored under the key;
//   3. y[n] = b + sum_j P_j[key_j(n)].
// On an empty cache a call equals conv2d_forward_reuse with scope "batch" (same clusters, same
// centroids). A cluster's product is never updated afterwards: later members reuse the centroid
// of the call that first saw the key. When a block's table holds more than max_entries products
// it is emptied at the start of the next call (max_entries 0: unbounded).
// Sign hashing only; order "hwc" or "chw"; scope is ignored (always the whole batch + history).
// Not thread-safe: one forward at a time per cache (it uses the kernels' threads inside).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "pyadr/core.hpp"

namespace pyadr {
namespace detail {
struct Run;  // a column run of a sub-matrix in the padded input (native/src/layout.hpp)
}

struct ReuseCacheStats {
  int64_t entries = 0;   // stored products, all blocks
  int64_t lookups = 0;   // sub-vectors looked up (rows x blocks), all calls
  int64_t hits = 0;      // of which found a stored product
  int64_t calls = 0;
  double last_rc = 0;    // last call: mean over blocks of (new clusters) / rows
};

template <class T>
class ReuseCache {
 public:
  // g: the layer's geometry; g.B is ignored (every call gives its batch). w (M, C, kh, kw) and
  // b (M) or null are copied; p.planes (L, H) is copied. Throws Error on bad arguments.
  ReuseCache(const ConvGeom& g, const T* w, const T* b, const ReuseParams<T>& p, int64_t max_entries = 0);
  ~ReuseCache();
  ReuseCache(const ReuseCache&) = delete;
  ReuseCache& operator=(const ReuseCache&) = delete;
  // x (batch, C, H, W) -> y (batch, M, OH, OW).
  void forward(int64_t batch, const T* x, T* y);
  void clear();
  const ReuseCacheStats& stats() const { return stats_; }
  const ConvGeom& geometry() const { return g_; }

 private:
  struct Block;  // one sub-matrix: its key table and stored products (reuse_cache.cpp)
  struct NewClusters {           // what one call adds to a block
    std::vector<uint64_t> keys;  // (nc) keys not stored before, by first occurrence
    UninitVector<T> centroids;   // (nc, len) their means over this call's rows
    int64_t hits = 0;            // rows whose key was stored
  };
  void group_block(const ConvGeom& g, const T* xp, const int64_t* rbase, const std::vector<detail::Run>& runs,
                   int64_t t, int32_t* ids, NewClusters& out);
  ConvGeom g_;
  int L_ = 0, H_ = 0;
  std::vector<T> planes_;  // (L, HB): the planes padded with zero columns to 8/16/32/64 hashes
  ReuseParams<T> hash_;    // H and the (sign) hash kind, as hash_tile reads them
  std::vector<T> Wm_;      // (K, M), rows in `order`
  std::vector<T> bias_;    // (M) or empty
  Order order_ = Order::HWC;
  std::vector<std::unique_ptr<Block>> blocks_;
  int64_t max_entries_ = 0;
  ReuseCacheStats stats_;
};

extern template class ReuseCache<float>;
extern template class ReuseCache<double>;

}  // namespace pyadr
