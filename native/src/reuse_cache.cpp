// Inference deep-reuse cache (pyadr/reuse_cache.hpp) and its C API (pyadr/reuse_cache.h).
// Built from the training kernels' steps (reuse_steps.hpp): padded input and column runs (no
// im2col matrix), tile_subvectors, hash_tile (sign keys), KeyIds (first-occurrence numbering of
// the new keys), block_products, reconstruct. Its own part is group_block: the lookup of every
// key in the block's persistent table before new clusters are formed.
#include "pyadr/reuse_cache.hpp"

#include <algorithm>
#include <string>

#include "c_api_internal.hpp"
#include "cluster.hpp"
#include "conv_common.hpp"
#include "layout.hpp"
#include "lsh_hash.hpp"
#include "reuse_steps.hpp"
#include "rowops.hpp"
#include "pyadr/params.hpp"
#include "pyadr/reuse_cache.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pyadr {

template <class T>
struct ReuseCache<T>::Block {
  int64_t k0 = 0, len = 0;
  detail::ClusterTable table;  // key -> index of its product
  std::vector<T> products;     // (entries, M)
};

template <class T>
ReuseCache<T>::~ReuseCache() = default;

template <class T>
ReuseCache<T>::ReuseCache(const ConvGeom& g, const T* w, const T* b, const ReuseParams<T>& p, int64_t max_entries)
    : g_(g), L_(p.L), H_(p.H), max_entries_(max_entries) {
  if (g_.B < 1) g_.B = 1;
  g_.validate();
  const int64_t K = g_.K(), M = g_.M;
  if (!w) throw Error("w must not be null");
  validate_reuse_cache(g_, p, max_entries);
  order_ = p.order;
  planes_ = detail::padded_planes(p.planes, L_, H_);  // (L, HB), as the training kernels use them
  hash_ = p;
  hash_.planes = hash_.offsets = nullptr;  // not kept: hash_tile reads H and the (sign) hash kind only
  if (b) bias_.assign(b, b + M);
  Wm_.resize(static_cast<size_t>(K) * M);
  detail::weights_to_matrix(g_, order_, w, Wm_.data());
  const int64_t nb = (K + L_ - 1) / L_;
  for (int64_t t = 0; t < nb; ++t) {
    blocks_.emplace_back(new Block());
    Block& bl = *blocks_.back();
    bl.k0 = t * L_;
    bl.len = std::min<int64_t>(K, bl.k0 + L_) - bl.k0;
    bl.table.reset(8192, H_, 0);  // dense 2^H ids for H <= 16, else a growing hash table
  }
}

template <class T>
void ReuseCache<T>::clear() {
  for (auto& bl : blocks_) {
    bl->table.clear();
    bl->products.clear();
  }
  stats_ = ReuseCacheStats();
}

// Keys of block t's rows, looked up in its table (a hit reuses the stored product), and for keys
// not stored yet first-occurrence clusters of this call, their centroids (means) and keys. ids
// (N): the index of each row's product in the block's table once the new ones are appended.
template <class T>
void ReuseCache<T>::group_block(const ConvGeom& g, const T* xp, const int64_t* rbase, const std::vector<detail::Run>& runs,
                                int64_t t, int32_t* id, NewClusters& out) {
  Block& bl = *blocks_[t];
  const int64_t N = g.N(), len = bl.len, HB = detail::padded_hashes(H_);
  constexpr int64_t kTile = detail::kTileRows;
  const int32_t base = static_cast<int32_t>(bl.table.size());
  detail::KeyIds local;  // this call's new keys -> new cluster numbers
  local.reset(N, H_, 0);
  std::vector<int32_t> counts;
  int32_t next_new = 0;  // new clusters whose first row is in out.centroids
  detail::Buffer<T> S(kTile * len), proj(kTile * HB);
  const T* rowp[kTile];
  const T* newp[kTile];
  int32_t newc[kTile];
  uint64_t keys[kTile];
  uint64_t last_key = 0;
  int32_t last_id = -1;
  for (int64_t n0 = 0; n0 < N; n0 += kTile) {
    const int64_t rows = std::min(kTile, N - n0);
    detail::tile_subvectors(xp, rbase + n0, rows, runs, len, S.data(), rowp);
    detail::hash_tile(rowp, rows, len, planes_.data(), static_cast<int>(HB), hash_, false, proj.data(), keys,
                      static_cast<int64_t*>(nullptr));
    int64_t nnew = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const uint64_t key = keys[r];
      int32_t k;
      if (last_id >= 0 && key == last_key) {  // neighbouring rows often share a key
        k = last_id;
      } else {
        k = bl.table.find(key);
        if (k < 0) {
          const int32_t c = local.find_or_insert(key, nullptr, static_cast<int32_t>(out.keys.size()));
          if (c == static_cast<int32_t>(out.keys.size())) {
            out.keys.push_back(key);
            counts.push_back(0);
            out.centroids.resize(out.keys.size() * static_cast<size_t>(len));  // first member copied in
          }
          k = base + c;
        }
        last_key = key;
        last_id = k;
      }
      id[n0 + r] = k;
      if (k < base) {
        ++out.hits;
      } else {
        ++counts[k - base];
        newp[nnew] = rowp[r];
        newc[nnew++] = k - base;
      }
    }
    next_new = detail::scatter_first_ptrs(out.centroids.data(), newc, newp, nnew, len, next_new);
  }
  detail::scale_rows(out.centroids.data(), counts.data(), static_cast<int64_t>(out.keys.size()), len);
}

template <class T>
void ReuseCache<T>::forward(int64_t batch, const T* x, T* y) {
  validate_batch(batch);
  if (!x || !y) throw Error("x and y must not be null");
  ConvGeom g = g_;
  g.B = batch;
  g.validate();
  const int64_t N = g.N(), M = g.M, nb = static_cast<int64_t>(blocks_.size());
  if (N > limits::kMaxRowsPerCall)
    throw Error("reuse: at most 2^31-1 rows (batch * OH * OW) in one call, got " + std::to_string(N));
  const detail::Layout lay = detail::make_layout(g, order_ == Order::HWC);
  detail::Buffer<T> padded;
  const T* xp = detail::padded_input(g, lay, x, padded);
  const detail::Blocks bl = detail::make_blocks(g, lay, order_, L_);
  const std::vector<int64_t> rbase = detail::row_bases(g, lay);
  std::vector<int32_t> ids(static_cast<size_t>(nb) * N);
  std::vector<NewClusters> fresh(nb);
  for (auto& b : blocks_)
    if (max_entries_ > 0 && static_cast<int64_t>(b->table.size()) > max_entries_) {
      b->table.clear();
      b->products.clear();
    }

  // 1. Blocks in parallel (each owns its table): keys, lookups, new clusters and their centroids.
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel for num_threads(detail::threads_for(nb)) schedule(dynamic, 1)
#endif
  for (int64_t t = 0; t < nb; ++t)
    errors.run([&] { group_block(g, xp, rbase.data(), bl.runs[t], t, ids.data() + t * N, fresh[t]); });
  errors.rethrow();

  // 2. Blocks in turn (the GEMM has the threads): products of the new clusters, stored under their keys.
  for (int64_t t = 0; t < nb; ++t) {
    Block& b = *blocks_[t];
    const int64_t nc = static_cast<int64_t>(fresh[t].keys.size()), base = static_cast<int64_t>(b.table.size());
    if (nc == 0) continue;
    const size_t old = b.products.size();
    b.products.resize(old + static_cast<size_t>(nc) * M);
    detail::block_products(nc, b.len, M, fresh[t].centroids.data(), Wm_.data() + b.k0 * M, b.products.data() + old);
    for (int64_t c = 0; c < nc; ++c)
      b.table.find_or_insert(fresh[t].keys[c], nullptr, static_cast<int32_t>(base + c));
    UninitVector<T>().swap(fresh[t].centroids);
  }

  // 3. y[n] = b + sum_j P_j[id_j(n)].
  std::vector<const T*> tables(nb);
  std::vector<int64_t> entries(nb);
  for (int64_t t = 0; t < nb; ++t) {
    tables[t] = blocks_[t]->products.data();
    entries[t] = static_cast<int64_t>(blocks_[t]->products.size()) / M;
  }
  detail::reconstruct(g, nb, tables.data(), entries.data(), ids.data(), bias_.empty() ? nullptr : bias_.data(), y);

  int64_t h = 0, f = 0, stored = 0;
  for (int64_t t = 0; t < nb; ++t) {
    h += fresh[t].hits;
    f += static_cast<int64_t>(fresh[t].keys.size());
    stored += static_cast<int64_t>(blocks_[t]->table.size());
  }
  stats_.calls += 1;
  stats_.lookups += N * nb;
  stats_.hits += h;
  stats_.entries = stored;
  stats_.last_rc = static_cast<double>(f) / static_cast<double>(N * nb);
}

template class ReuseCache<float>;
template class ReuseCache<double>;

}  // namespace pyadr

// ---- C API -------------------------------------------------------------------------------------
struct pyadr_reuse_cache {
  std::unique_ptr<pyadr::ReuseCache<float>> impl;
};

extern "C" {

pyadr_status pyadr_reuse_cache_create(const pyadr_conv_geom* g, const float* w, const float* b,
                                      const pyadr_reuse_config* cfg, int64_t max_entries, pyadr_reuse_cache** out) {
  if (out) *out = nullptr;
  return pyadr_capi::guard("pyadr_reuse_cache_create", [&] {
    pyadr_capi::need_ptr(out, "out");
    pyadr_capi::need_ptr(w, "w");
    pyadr_capi::need_ptr(cfg, "cfg");
    pyadr_capi::need_ptr(cfg->planes, "cfg->planes");
    pyadr::ConvGeom cg;
    {
      pyadr_conv_geom g1 = g ? *g : pyadr_conv_geom{};
      if (g && g1.batch < 1) g1.batch = 1;
      cg = pyadr_capi::to_geom(g ? &g1 : nullptr);
    }
    if (cfg->hash != PYADR_HASH_SIGN) pyadr_capi::bad("cfg->hash: the reuse cache supports PYADR_HASH_SIGN only");
    pyadr_capi::ReuseArgs<float> p;
    pyadr_capi::to_reuse_params(cfg, cg, "cfg->", p);
    std::unique_ptr<pyadr_reuse_cache> c(new pyadr_reuse_cache());
    c->impl.reset(new pyadr::ReuseCache<float>(cg, w, b, p.p, max_entries));
    *out = c.release();
  });
}

pyadr_status pyadr_reuse_cache_conv2d(pyadr_reuse_cache* cache, int64_t batch, const float* x, float* y) {
  return pyadr_capi::guard("pyadr_reuse_cache_conv2d", [&] {
    pyadr_capi::need_ptr(cache, "cache");
    pyadr_capi::need_ptr(x, "x");
    pyadr_capi::need_ptr(y, "y");
    cache->impl->forward(batch, x, y);
  });
}

pyadr_status pyadr_reuse_cache_get_stats(const pyadr_reuse_cache* cache, pyadr_reuse_cache_stats* out) {
  return pyadr_capi::guard("pyadr_reuse_cache_get_stats", [&] {
    pyadr_capi::need_ptr(cache, "cache");
    pyadr_capi::need_ptr(out, "out");
    const auto& s = cache->impl->stats();
    out->entries = s.entries;
    out->lookups = s.lookups;
    out->hits = s.hits;
    out->calls = s.calls;
    out->last_rc = s.last_rc;
  });
}

pyadr_status pyadr_reuse_cache_clear(pyadr_reuse_cache* cache) {
  return pyadr_capi::guard("pyadr_reuse_cache_clear", [&] {
    pyadr_capi::need_ptr(cache, "cache");
    cache->impl->clear();
  });
}

void pyadr_reuse_cache_free(pyadr_reuse_cache* cache) { delete cache; }

}  // extern "C"
