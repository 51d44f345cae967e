// Inference deep-reuse cache (pyadr/reuse_cache.hpp) and its C API (pyadr/reuse_cache.h).
// Uses only the public core interface (ConvGeom, gemm, num_threads): no dependence on the
// internals of the training kernels.
#include "pyadr/reuse_cache.hpp"

#include <algorithm>
#include <string>

#include "c_api_internal.hpp"
#include "pyadr/reuse_cache.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pyadr {

template <class T>
ReuseCache<T>::ReuseCache(const ConvGeom& g, const T* w, const T* b, const ReuseParams<T>& p, int64_t max_entries)
    : g_(g), L_(p.L), H_(p.H), max_entries_(max_entries) {
  if (g_.B < 1) g_.B = 1;
  g_.validate();
  const int64_t K = g_.K(), M = g_.M;
  if (!w) throw Error("w must not be null");
  if (p.L < 1 || p.L > K) throw Error("reuse.L must be in [1, K=" + std::to_string(K) + "], got " + std::to_string(p.L));
  if (p.H < 1 || p.H > 64) throw Error("reuse.H must be in [1, 64], got " + std::to_string(p.H));
  if (!p.planes) throw Error("reuse: planes are required");
  if (p.hash != HashKind::Sign) throw Error("the reuse cache supports the sign hash only");
  if (max_entries < 0) throw Error("max_entries must be >= 0, got " + std::to_string(max_entries));
  planes_.assign(p.planes, p.planes + static_cast<size_t>(p.L) * p.H);
  if (b) bias_.assign(b, b + M);
  // Ordered column k -> (c, i, j) and Wm (K, M).
  std::vector<int64_t> cc(K), ii(K), jj(K);
  for (int64_t c = 0; c < g_.C; ++c)
    for (int64_t i = 0; i < g_.kh; ++i)
      for (int64_t j = 0; j < g_.kw; ++j) {
        const int64_t k = p.order == Order::HWC ? (i * g_.kw + j) * g_.C + c : (c * g_.kh + i) * g_.kw + j;
        cc[k] = c;
        ii[k] = i;
        jj[k] = j;
      }
  Wm_.resize(static_cast<size_t>(K) * M);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t m = 0; m < M; ++m) Wm_[k * M + m] = w[((m * g_.C + cc[k]) * g_.kh + ii[k]) * g_.kw + jj[k]];
  const int64_t nb = (K + L_ - 1) / L_;
  blocks_.resize(nb);
  for (int64_t t = 0; t < nb; ++t) {
    Block& bl = blocks_[t];
    bl.k0 = t * L_;
    bl.len = std::min<int64_t>(K, bl.k0 + L_) - bl.k0;
    bl.c.assign(cc.begin() + bl.k0, cc.begin() + bl.k0 + bl.len);
    bl.i.assign(ii.begin() + bl.k0, ii.begin() + bl.k0 + bl.len);
    bl.j.assign(jj.begin() + bl.k0, jj.begin() + bl.k0 + bl.len);
  }
}

template <class T>
void ReuseCache<T>::clear() {
  for (auto& bl : blocks_) {
    bl.table.clear();
    bl.products.clear();
  }
  stats_ = ReuseCacheStats();
}

template <class T>
void ReuseCache<T>::forward(int64_t batch, const T* x, T* y) {
  if (batch < 1) throw Error("batch must be >= 1, got " + std::to_string(batch));
  if (!x || !y) throw Error("x and y must not be null");
  ConvGeom g = g_;
  g.B = batch;
  g.validate();
  const int64_t N = g.N(), P = g.P(), M = g.M, nb = static_cast<int64_t>(blocks_.size());
  if (N > INT32_MAX) throw Error("more than 2^31 rows in one call is not supported");
  std::vector<int32_t> ids(static_cast<size_t>(nb) * N);
  std::vector<int64_t> fresh(nb, 0);
  std::vector<std::vector<T>> new_centroids(nb);
  std::vector<int64_t> hits(nb, 0);
  for (auto& bl : blocks_)
    if (max_entries_ > 0 && static_cast<int64_t>(bl.table.size()) > max_entries_) {
      bl.table.clear();
      bl.products.clear();
    }

  // Phase 1, blocks in parallel (each owns its table): keys, lookups, sums of new clusters.
  [[maybe_unused]] const int nt = static_cast<int>(std::min<int64_t>(num_threads(), nb));
  std::string err;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
  for (int64_t t = 0; t < nb; ++t) {
    try {
      Block& bl = blocks_[t];
      const int64_t len = bl.len;
      const int32_t base = static_cast<int32_t>(bl.table.size());
      std::unordered_map<uint64_t, int32_t> local;
      std::vector<uint64_t> local_keys;
      std::vector<T> sums;
      std::vector<int32_t> counts;
      std::vector<T> v(len), proj(H_);
      int32_t* id = ids.data() + t * N;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t b = n / P, pos = n % P, oh = pos / g.OW, ow = pos % g.OW;
        for (int64_t q = 0; q < len; ++q) {
          const int64_t ih = oh * g.sh - g.ph + bl.i[q] * g.dh, iw = ow * g.sw - g.pw + bl.j[q] * g.dw;
          v[q] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? x[((b * g.C + bl.c[q]) * g.H + ih) * g.W + iw] : T(0);
        }
        std::fill(proj.begin(), proj.end(), T(0));
        for (int64_t q = 0; q < len; ++q) {
          const T* pr = planes_.data() + q * H_;
          const T vq = v[q];
          for (int h = 0; h < H_; ++h) proj[h] += vq * pr[h];
        }
        uint64_t key = 0;
        for (int h = 0; h < H_; ++h)
          if (proj[h] > T(0)) key |= uint64_t(1) << h;
        auto it = bl.table.find(key);
        if (it != bl.table.end()) {
          id[n] = it->second;
          ++hits[t];
          continue;
        }
        auto ins = local.emplace(key, static_cast<int32_t>(local_keys.size()));
        const int32_t c = ins.first->second;
        if (ins.second) {
          local_keys.push_back(key);
          sums.resize(sums.size() + len, T(0));
          counts.push_back(0);
        }
        T* s = sums.data() + static_cast<size_t>(c) * len;
        for (int64_t q = 0; q < len; ++q) s[q] += v[q];
        ++counts[c];
        id[n] = base + c;
      }
      const int64_t nc = static_cast<int64_t>(local_keys.size());
      for (int64_t c = 0; c < nc; ++c) {
        const T inv = T(1) / static_cast<T>(counts[c]);
        for (int64_t q = 0; q < len; ++q) sums[c * len + q] *= inv;
        bl.table.emplace(local_keys[c], base + static_cast<int32_t>(c));
      }
      fresh[t] = nc;
      new_centroids[t] = std::move(sums);
    } catch (const std::exception& e) {
#ifdef _OPENMP
#pragma omp critical(pyadr_reuse_cache_err)
#endif
      if (err.empty()) err = e.what();
    }
  }
  if (!err.empty()) throw Error(err);

  // Phase 2, blocks in turn (the GEMM has the threads): products of the new clusters.
  for (int64_t t = 0; t < nb; ++t) {
    Block& bl = blocks_[t];
    const int64_t nc = fresh[t];
    if (nc == 0) continue;
    const size_t old = bl.products.size();
    bl.products.resize(old + static_cast<size_t>(nc) * M);
    gemm<T>(false, false, nc, M, bl.len, T(1), new_centroids[t].data(), bl.len, Wm_.data() + bl.k0 * M, M, T(0),
            bl.products.data() + old, M);
    std::vector<T>().swap(new_centroids[t]);
  }

  // Phase 3, rows in parallel: y[n] = b + sum_j P_j[id_j(n)].
  const int64_t ntiles = (N + 63) / 64;
  [[maybe_unused]] const int nt3 = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), ntiles)));
#ifdef _OPENMP
#pragma omp parallel num_threads(nt3)
#endif
  {
    std::vector<T> acc(static_cast<size_t>(64) * M);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t tile = 0; tile < ntiles; ++tile) {
      const int64_t n0 = tile * 64, n1 = std::min<int64_t>(N, n0 + 64);
      for (int64_t n = n0; n < n1; ++n) {
        T* a = acc.data() + (n - n0) * M;
        if (bias_.empty()) std::fill(a, a + M, T(0));
        else std::copy(bias_.begin(), bias_.end(), a);
        for (int64_t t = 0; t < nb; ++t) {
          const T* pr = blocks_[t].products.data() + static_cast<size_t>(ids[t * N + n]) * M;
          for (int64_t m = 0; m < M; ++m) a[m] += pr[m];
        }
      }
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t b = n / P, pos = n % P;
        const T* a = acc.data() + (n - n0) * M;
        T* yb = y + b * M * P + pos;
        for (int64_t m = 0; m < M; ++m) yb[m * P] = a[m];
      }
    }
  }

  int64_t h = 0, f = 0, entries = 0;
  for (int64_t t = 0; t < nb; ++t) {
    h += hits[t];
    f += fresh[t];
    entries += static_cast<int64_t>(blocks_[t].table.size());
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
    if (cfg->order != PYADR_ORDER_HWC && cfg->order != PYADR_ORDER_CHW)
      pyadr_capi::bad("cfg->order must be PYADR_ORDER_HWC or PYADR_ORDER_CHW");
    if (cfg->L < 1 || cfg->H < 1 || cfg->H > 64)
      pyadr_capi::bad("cfg->L must be >= 1 and cfg->H in [1, 64]");
    std::vector<float> planes(static_cast<size_t>(cfg->L) * cfg->H);
    for (size_t i = 0; i < planes.size(); ++i) planes[i] = static_cast<float>(cfg->planes[i]);
    pyadr::ReuseParams<float> p;
    p.L = cfg->L;
    p.H = cfg->H;
    p.order = static_cast<pyadr::Order>(cfg->order);
    p.planes = planes.data();
    std::unique_ptr<pyadr_reuse_cache> c(new pyadr_reuse_cache());
    c->impl.reset(new pyadr::ReuseCache<float>(cg, w, b, p, max_entries));
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
