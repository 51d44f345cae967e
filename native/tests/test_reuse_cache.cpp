// Inference reuse cache: on an empty cache it equals conv2d_forward_reuse (scope "batch"); a
// repeated input is all hits and gives the same output bit for bit; at rc = 1 it is exact; the C
// API reports errors with status codes.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "pyadr/core.hpp"
#include "pyadr/reuse_cache.h"
#include "pyadr/reuse_cache.hpp"


static double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]) / (1.0 + std::fabs(double(b[i]))));
  return m;
}

int main() {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  pyadr::ConvGeom g;
  g.B = 3; g.C = 8; g.H = 9; g.W = 9; g.M = 6; g.kh = 3; g.kw = 3; g.ph = g.pw = 1;
  g.validate();
  const int64_t K = g.K();
  // Smooth inputs (blocky: 3x3 constant patches) so that clusters are non-trivial.
  std::vector<float> x(g.B * g.C * g.H * g.W), w(g.M * K), b(g.M);
  for (int64_t bc = 0; bc < g.B * g.C; ++bc) {
    float patch[3][3];
    for (auto& r : patch) for (auto& v : r) v = nd(rng);
    for (int64_t i = 0; i < g.H; ++i)
      for (int64_t j = 0; j < g.W; ++j) x[(bc * g.H + i) * g.W + j] = patch[i / 3][j / 3];
  }
  for (auto& v : w) v = nd(rng);
  for (auto& v : b) v = nd(rng);
  const int64_t ny = g.B * g.M * g.OH * g.OW;

  for (int order = 0; order < 2; ++order) {
    for (int L : {8, 10, 72}) {
      const int H = 12;
      std::vector<float> planes(L * H);
      for (auto& v : planes) v = nd(rng);
      pyadr::ReuseParams<float> p;
      p.L = L; p.H = H; p.order = static_cast<pyadr::Order>(order); p.planes = planes.data();
      std::vector<float> yr(ny), yc(ny), yc2(ny);
      auto st = pyadr::conv2d_forward_reuse<float>(g, p, x.data(), w.data(), b.data(), yr.data());
      pyadr::ReuseCache<float> cache(g, w.data(), b.data(), p);
      cache.forward(g.B, x.data(), yc.data());
      CHECK(std::fabs(cache.stats().last_rc - st->remaining_ratio()) < 1e-12);
      CHECK(max_rel(yc, yr) < 1e-4);
      CHECK(cache.stats().hits == 0);
      cache.forward(g.B, x.data(), yc2.data());
      CHECK(cache.stats().hits == cache.stats().lookups / 2);
      CHECK(cache.stats().last_rc == 0.0);
      CHECK(yc2 == yc);
      // A batch of one image seen before (the second) is all hits.
      std::vector<float> y1(g.M * g.OH * g.OW);
      cache.forward(1, x.data() + g.C * g.H * g.W, y1.data());
      CHECK(cache.stats().last_rc == 0.0);
      CHECK(max_rel(y1, std::vector<float>(yc.begin() + g.M * g.OH * g.OW, yc.begin() + 2 * g.M * g.OH * g.OW)) == 0);
      cache.clear();
      CHECK(cache.stats().entries == 0 && cache.stats().calls == 0);
    }
  }
  // rc = 1 on continuous data (L = K, H = 64): exact.
  {
    std::vector<float> xr(x.size());
    for (auto& v : xr) v = nd(rng);
    std::vector<float> planes(K * 64);
    for (auto& v : planes) v = nd(rng);
    pyadr::ReuseParams<float> p;
    p.L = static_cast<int>(K); p.H = 64; p.planes = planes.data();
    std::vector<float> ye(ny), yc(ny);
    pyadr::conv2d_forward_exact<float>(g, xr.data(), w.data(), b.data(), ye.data());
    pyadr::ReuseCache<float> cache(g, w.data(), b.data(), p);
    cache.forward(g.B, xr.data(), yc.data());
    CHECK(cache.stats().last_rc == 1.0);
    CHECK(max_rel(yc, ye) < 1e-4);
  }
  // C API errors.
  {
    pyadr_conv_geom cg;
    pyadr_conv_geom_init(&cg, 1, g.C, g.H, g.W, g.M, 3, 3);
    double planes[4 * 2] = {1, 0, 0, 1, 1, 1, 0, 1};
    pyadr_reuse_config cfg;
    pyadr_reuse_config_init(&cfg, 4, 2, planes);
    pyadr_reuse_cache* c = nullptr;
    cfg.exact = PYADR_EXACT_FORWARD;  // a cache of reused products cannot compute them exactly
    CHECK(pyadr_reuse_cache_create(&cg, w.data(), nullptr, &cfg, 0, &c) == PYADR_ERR_INVALID_ARGUMENT);
    CHECK(std::strstr(pyadr_last_error(), "exact must not include forward") != nullptr);
    cfg.exact = PYADR_EXACT_DX;  // gradients: irrelevant to inference
    CHECK(pyadr_reuse_cache_create(&cg, w.data(), nullptr, &cfg, 0, &c) == PYADR_OK);
    std::vector<float> y(g.M * 7 * 7);
    CHECK(pyadr_reuse_cache_conv2d(c, 1, nullptr, y.data()) == PYADR_ERR_INVALID_ARGUMENT);
    CHECK(pyadr_reuse_cache_conv2d(c, 0, x.data(), y.data()) == PYADR_ERR_INVALID_ARGUMENT);
    CHECK(pyadr_reuse_cache_conv2d(c, 1, x.data(), y.data()) == PYADR_OK);
    pyadr_reuse_cache_stats s;
    CHECK(pyadr_reuse_cache_get_stats(c, &s) == PYADR_OK && s.calls == 1);
    pyadr_reuse_cache_free(c);
    cfg.hash = PYADR_HASH_L2;
    CHECK(pyadr_reuse_cache_create(&cg, w.data(), nullptr, &cfg, 0, &c) == PYADR_ERR_INVALID_ARGUMENT);
    CHECK(c == nullptr);
    std::printf("  (%s)\n", pyadr_last_error());
  }
  return check_report("test_reuse_cache");
}
