// The steps of deep reuse shared by conv_reuse.cpp and reuse_cache.cpp (reuse_steps.hpp).
#include "reuse_steps.hpp"

#include <algorithm>
#include <cstring>

#include "lsh_hash.hpp"
#include "rowops.hpp"

namespace pyadr {
namespace detail {

template <class T>
std::vector<T> padded_planes(const T* planes, int L, int H) {
  const int HB = padded_hashes(H);
  std::vector<T> Pp(static_cast<size_t>(L) * HB, T(0));
  for (int k = 0; k < L; ++k)
    for (int h = 0; h < H; ++h) Pp[k * HB + h] = planes[k * H + h];
  return Pp;
}

Blocks make_blocks(const ConvGeom& g, const Layout& lay, Order order, int L) {
  Blocks bl;
  const int64_t K = g.K();
  bl.nb = (K + L - 1) / L;
  for (int64_t j = 0; j < bl.nb; ++j) {
    const int64_t k0 = j * L, k1 = std::min<int64_t>(K, k0 + L);
    bl.k0.push_back(k0);
    bl.len.push_back(k1 - k0);
    bl.runs.push_back(column_runs(g, lay, order, k0, k1));
  }
  return bl;
}

template <class T>
bool hash_tile(const T* const* rowp, int64_t R, int64_t Lj, const T* Pp, int HB, const ReuseParams<T>& p, bool tuples,
               T* proj, uint64_t* keys, int64_t* q) {
  lsh_project(rowp, R, Lj, Pp, HB, proj);
  if (p.hash == HashKind::Sign) {
    lsh_sign_keys(proj, R, HB, p.H, keys);
    return true;
  }
  if (tuples) {
    lsh_l2_keys(proj, R, HB, p.H, p.offsets, p.width, q);
    return true;
  }
  return lsh_l2_packed_keys(proj, R, HB, p.H, p.offsets, p.width, keys);
}

template <class T>
void block_products(int64_t nc, int64_t Lj, int64_t M, const T* centroids, const T* Wm_j, T* products) {
  gemm<T>(false, false, nc, M, Lj, T(1), centroids, Lj, Wm_j, M, T(0), products, M);
}

template <class T>
void reconstruct(const ConvGeom& g, int64_t nb, const T* const* tables, const int64_t* rows, const int32_t* ids,
                 const T* b, T* y) {
  const int64_t N = g.N(), M = g.M;
  // With several groups the partial sums wait in Yr (N, M) between the sweeps.
  const std::vector<int64_t> grp = block_groups(nb, [&](int64_t j) { return static_cast<size_t>(rows[j] * M) * sizeof(T); });
  const int64_t ngroups = static_cast<int64_t>(grp.size()) - 1;
  Buffer<T> Yr(ngroups > 1 ? static_cast<size_t>(N) * M : 0);
  const int64_t ntiles = (N + kTileRows - 1) / kTileRows;
  ParallelErrors errors;
  for (int64_t gi = 0; gi < ngroups; ++gi) {
    const int64_t j0 = grp[gi], j1 = grp[gi + 1];
    const bool last = gi == ngroups - 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads_for(ntiles))
#endif
    {
      Buffer<T> acc;
      errors.run([&] { acc.resize(kTileRows * M); });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t t = 0; t < ntiles; ++t) {
        errors.run([&] {
          const int64_t n0 = t * kTileRows, len = std::min(kTileRows, N - n0);
          T* out = last ? acc.data() : Yr.data() + n0 * M;
          if (last && gi > 0) std::memcpy(out, Yr.data() + n0 * M, sizeof(T) * len * M);
          gather_sum(out, tables + j0, ids + j0 * N + n0, N, j1 - j0, len, M, gi > 0);
          if (last) store_rows_nchw(g, n0, len, acc.data(), b, y);
        });
      }
    }
    errors.rethrow();
  }
}

#define PYADR_REUSE_STEPS(T)                                                                                   \
  template std::vector<T> padded_planes<T>(const T*, int, int);                                               \
  template bool hash_tile<T>(const T* const*, int64_t, int64_t, const T*, int, const ReuseParams<T>&, bool, T*, \
                             uint64_t*, int64_t*);                                                             \
  template void block_products<T>(int64_t, int64_t, int64_t, const T*, const T*, T*);                         \
  template void reconstruct<T>(const ConvGeom&, int64_t, const T* const*, const int64_t*, const int32_t*, const T*, \
                               T*);
PYADR_REUSE_STEPS(float)
PYADR_REUSE_STEPS(double)
#undef PYADR_REUSE_STEPS

}  // namespace detail
}  // namespace pyadr
