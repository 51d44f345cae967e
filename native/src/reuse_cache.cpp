// Inference deep-reuse cache (pyadr/reuse_cache.hpp) and its C API (pyadr/reuse_cache.h).
// Built from the training kernels' pieces: padded input and column runs (no im2col matrix), the
// vectorised projection and sign keys, first-occurrence cluster tables, register-resident
// reconstruction.
#include "pyadr/reuse_cache.hpp"

#include <algorithm>
#include <string>

#include "c_api_internal.hpp"
#include "cluster.hpp"
#include "conv_common.hpp"
#include "layout.hpp"
#include "lsh_hash.hpp"
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
  // Planes padded with zero columns to HB hashes: (L, HB), as the training kernels use them.
  const int HB = detail::padded_hashes(H_);
  planes_.assign(static_cast<size_t>(L_) * HB, T(0));
  for (int k = 0; k < L_; ++k)
    for (int h = 0; h < H_; ++h) planes_[k * HB + h] = p.planes[k * H_ + h];
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

template <class T>
void ReuseCache<T>::forward(int64_t batch, const T* x, T* y) {
  validate_batch(batch);
  if (!x || !y) throw Error("x and y must not be null");
  ConvGeom g = g_;
  g.B = batch;
  g.validate();
  const int64_t N = g.N(), M = g.M, nb = static_cast<int64_t>(blocks_.size());
  const int HB = detail::padded_hashes(H_);
  constexpr int64_t kTile = 64;
  if (N > limits::kMaxRowsPerCall)
    throw Error("reuse: at most 2^31-1 rows (batch * OH * OW) in one call, got " + std::to_string(N));
  const detail::Layout lay = detail::make_layout(g, order_ == Order::HWC);
  detail::Buffer<T> padded;
  const T* xp = detail::padded_input(g, lay, x, padded);
  std::vector<int32_t> ids(static_cast<size_t>(nb) * N);
  std::vector<int64_t> fresh(nb, 0), hits(nb, 0);
  std::vector<UninitVector<T>> new_centroids(nb);
  std::vector<std::vector<uint64_t>> new_keys(nb);
  for (auto& bl : blocks_)
    if (max_entries_ > 0 && static_cast<int64_t>(bl->table.size()) > max_entries_) {
      bl->table.clear();
      bl->products.clear();
    }

  // Phase 1, blocks in parallel (each owns its table), rows a tile at a time: keys, lookups, and
  // for keys not stored yet, first-occurrence clusters of this call and their sums.
  [[maybe_unused]] const int nt = detail::threads_for(nb);
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
  for (int64_t t = 0; t < nb; ++t) {
    errors.run([&] {
      Block& bl = *blocks_[t];
      const int64_t len = bl.len;
      const auto runs = detail::column_runs(g, lay, order_, bl.k0, bl.k0 + len);
      const bool one_run = runs.size() == 1;
      const int32_t base = static_cast<int32_t>(bl.table.size());
      detail::ClusterTable local;
      local.reset(N, H_, 0);
      std::vector<uint64_t>& keys_new = new_keys[t];
      UninitVector<T>& sums = new_centroids[t];
      int32_t next_new = 0;  // clusters whose first row is in sums
      std::vector<int32_t> counts;
      detail::Buffer<T> S(kTile * len), proj(kTile * HB);
      const T* rowp[kTile];
      const T* newp[kTile];
      int32_t newc[kTile];
      uint64_t keys[kTile];
      uint64_t last_key = 0;
      int32_t last_id = -1;
      int32_t* id = ids.data() + t * N;
      for (int64_t n0 = 0; n0 < N; n0 += kTile) {
        const int64_t rows = std::min(kTile, N - n0);
        for (int64_t r = 0; r < rows; ++r) {
          const T* rb = xp + detail::row_base(g, lay, n0 + r);
          if (one_run) {
            rowp[r] = rb + runs[0].src;
          } else {
            detail::gather_runs(rb, runs.data(), runs.size(), S.data() + r * len);
            rowp[r] = S.data() + r * len;
          }
        }
        detail::lsh_project(rowp, rows, len, planes_.data(), HB, proj.data());
        detail::lsh_sign_keys(proj.data(), rows, HB, H_, keys);
        int64_t nnew = 0;
        for (int64_t r = 0; r < rows; ++r) {
          const uint64_t key = keys[r];
          if (last_id >= 0 && key == last_key) {  // neighbouring rows often share a key
            id[n0 + r] = last_id;
            if (last_id < base) {
              ++hits[t];
            } else {
              ++counts[last_id - base];
              newp[nnew] = rowp[r];
              newc[nnew++] = last_id - base;
            }
            continue;
          }
          int32_t k = bl.table.find(key);
          if (k >= 0) {
            ++hits[t];
          } else {
            const int32_t c = local.find_or_insert(key, nullptr, static_cast<int32_t>(keys_new.size()));
            if (c == static_cast<int32_t>(keys_new.size())) {
              keys_new.push_back(key);
              counts.push_back(0);
              sums.resize(keys_new.size() * static_cast<size_t>(len));  // first member copied in
            }
            ++counts[c];
            newp[nnew] = rowp[r];
            newc[nnew++] = c;
            k = base + c;
          }
          id[n0 + r] = k;
          last_key = key;
          last_id = k;
        }
        next_new = detail::scatter_first_ptrs(sums.data(), newc, newp, nnew, len, next_new);
      }
      const int64_t nc = static_cast<int64_t>(keys_new.size());
      detail::scale_rows(sums.data(), counts.data(), nc, len);
      for (int64_t c = 0; c < nc; ++c) bl.table.find_or_insert(keys_new[c], nullptr, base + static_cast<int32_t>(c));
      fresh[t] = nc;
    });
  }
  errors.rethrow();

  // Phase 2, blocks in turn (the GEMM has the threads): products of the new clusters.
  for (int64_t t = 0; t < nb; ++t) {
    Block& bl = *blocks_[t];
    const int64_t nc = fresh[t];
    if (nc == 0) continue;
    const size_t old = bl.products.size();
    bl.products.resize(old + static_cast<size_t>(nc) * M);
    gemm<T>(false, false, nc, M, bl.len, T(1), new_centroids[t].data(), bl.len, Wm_.data() + bl.k0 * M, M, T(0),
            bl.products.data() + old, M);
    UninitVector<T>().swap(new_centroids[t]);
  }

  // Phase 3, rows in parallel: y[n] = b + sum_j P_j[id_j(n)].
  std::vector<const T*> tables(nb);
  for (int64_t t = 0; t < nb; ++t) tables[t] = blocks_[t]->products.data();
  const int64_t ntiles = (N + kTile - 1) / kTile;
#ifdef _OPENMP
#pragma omp parallel num_threads(detail::threads_for(ntiles))
#endif
  {
    detail::Buffer<T> acc;
    errors.run([&] { acc.resize(kTile * M); });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t tile = 0; tile < ntiles; ++tile) {
      errors.run([&] {
        const int64_t n0 = tile * kTile, rows = std::min(kTile, N - n0);
        detail::gather_sum(acc.data(), tables.data(), ids.data() + n0, N, nb, rows, M);
        detail::store_rows_nchw(g, n0, rows, acc.data(), bias_.empty() ? nullptr : bias_.data(), y);
      });
    }
  }
  errors.rethrow();

  int64_t h = 0, f = 0, entries = 0;
  for (int64_t t = 0; t < nb; ++t) {
    h += hits[t];
    f += fresh[t];
    entries += static_cast<int64_t>(blocks_[t]->table.size());
  }
  stats_.calls += 1;
  stats_.lookups += N * nb;
  stats_.hits += h;
  stats_.entries = entries;
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
