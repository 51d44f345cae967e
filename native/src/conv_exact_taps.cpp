// The exact convolution per (tap, position) on maps of a few positions (conv_exact_plan.hpp).
//
// A unit is G whole images; its rows n = (b, p) are image-major, so the rows of one position p sit
// P rows apart: every GEMM below reads or writes them in place with a leading dimension of P rows.
// Tap q's GEMMs run over the positions where it reads the input only (classes[q]); the skipped
// pairs read padding alone (zeros), so the results are those of the dense tiles up to rounding.
//
//   forward  y[(b, p)] (G, M)  = sum over live q:  col[(b, p), q] (G, C) . Wm_q (C, M)
//   dX       dcol[(b, p), q]   = dy[(b, p)] (G, M) . Wm_q^T (M, C), scattered (runs of p's taps)
//   dW       dW_q^T (M, C)    += dy[(b, p)]^T (M, G) . col[(b, p), q] (G, C), partials per thread
#include <algorithm>

#include "conv_exact_plan.hpp"
#include "rowops.hpp"

namespace pyadr {
namespace detail {
namespace {

bool pair_live(const ConvGeom& g, int64_t p, int64_t tap) {
  const int64_t ih = (p / g.OW) * g.sh - g.ph + (tap / g.kw) * g.dh;
  const int64_t iw = (p % g.OW) * g.sw - g.pw + (tap % g.kw) * g.dw;
  return ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
}

// Per live tap q, Wm_q (C, M) packed once (forward) or Wm_q^T (M, C) (dX).
template <class T>
std::vector<std::unique_ptr<PackedB<T>>> pack_taps(const ConvGeom& g, const LiveColumns& lc, const T* Wm, bool transposed) {
  std::vector<std::unique_ptr<PackedB<T>>> out;
  const int64_t C = g.C, M = g.M;
  for (size_t q = 0; q < lc.taps.size(); ++q) {
    const T* Wq = Wm + static_cast<int64_t>(q) * C * M;
    out.emplace_back(transposed ? new PackedB<T>(true, M, C, Wq, M) : new PackedB<T>(false, C, M, Wq, M));
  }
  return out;
}

}  // namespace

std::unique_ptr<TapPlan> tap_plan(const ConvGeom& g, const Layout& lay, const LiveColumns& lc, size_t elem,
                                  int threads) {
  const int64_t P = g.P(), taps = static_cast<int64_t>(lc.taps.size());
  if (P < 2 || taps == 0) return nullptr;
  int64_t live = 0;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t q = 0; q < taps; ++q) live += pair_live(g, p, lc.taps[q]);
  if (live * 5 > P * taps * 4) return nullptr;  // fewer than 20 % of the pairs dead: the dense tiles
  // Units of up to 64 images (the GEMMs' m), about 4 MB of im2col rows each.
  const int64_t unit_bytes = P * lc.K * static_cast<int64_t>(elem);
  const int64_t most = std::min<int64_t>(64, std::max<int64_t>(12, (int64_t(4) << 20) / std::max<int64_t>(unit_bytes, 1)));
  const Tiling tiles(g, most * P, threads);
  if (tiles.G < 12) return nullptr;  // too few rows per GEMM
  std::unique_ptr<TapPlan> plan(new TapPlan(tiles));
  plan->classes.resize(taps);
  plan->runs.resize(P);
  for (int64_t q = 0; q < taps; ++q)
    for (int64_t p = 0; p < P; ++p)
      if (pair_live(g, p, lc.taps[q])) plan->classes[q].push_back(p);
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t q = 0; q < taps; ++q)
      if (pair_live(g, p, lc.taps[q])) append_tap_runs(g, lay, q, lc.taps[q], plan->runs[p]);
  }
  return plan;
}

template <class T>
void taps_forward(const ConvGeom& g, const Layout& lay, const LiveColumns& lc, const TapPlan& plan, const T* xp,
                  const T* Wm, const T* bias, T* y) {
  const int64_t K = lc.K, M = g.M, C = g.C, P = g.P();
  const Tiling& tl = plan.tiles;
  const auto Wq = pack_taps(g, lc, Wm, false);
  const int nt = threads_for(tl.units);
  ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    Buffer<T> col, out;
    errors.run([&] {
      col.resize(tl.R * K);
      out.resize(tl.R * M);
    });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t u = 0; u < tl.units; ++u) {
      errors.run([&] {
        const int64_t n0 = tl.first(u), len = tl.length(u), G = len / P;
        for (int64_t r = 0; r < len; ++r)
          gather_runs(xp + row_base(g, lay, n0 + r), lc.runs.data(), lc.runs.size(), col.data() + r * K);
        std::fill(out.data(), out.data() + len * M, T(0));
        for (size_t q = 0; q < Wq.size(); ++q)
          for (int64_t p : plan.classes[q])
            gemm_packed<T>(false, G, T(1), col.data() + p * K + static_cast<int64_t>(q) * C, P * K, *Wq[q], T(1),
                           out.data() + p * M, P * M);
        store_rows_nchw(g, n0, len, out.data(), bias, y);
      });
    }
  }
  errors.rethrow();
}

template <class T>
void taps_backward(const ConvGeom& g, const Layout& lay, const LiveColumns& lc, const TapPlan& plan, const T* xp,
                   const T* Wm, const T* dy, T* dx, T* dxp, std::vector<T>& dWt) {
  const int64_t K = lc.K, M = g.M, C = g.C, P = g.P();
  const Tiling& tl = plan.tiles;
  const bool dw = !dWt.empty();
  std::vector<std::unique_ptr<PackedB<T>>> WqT;
  if (dx) WqT = pack_taps(g, lc, Wm, true);
  const int nt = threads_for(tl.units);
  std::vector<T> parts(dw ? static_cast<size_t>(nt) * K * M : 0, T(0));
  ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    const int tid = thread_id();
    Buffer<T> col, dcol, rows;
    errors.run([&] {
      col.resize(dw ? tl.R * K : 0);
      dcol.resize(dx ? tl.R * K : 0);
      rows.resize(tl.R * M);
    });
    T* dWp = dw ? parts.data() + static_cast<size_t>(tid) * K * M : nullptr;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t u = 0; u < tl.units; ++u) {
      errors.run([&] {
        const int64_t n0 = tl.first(u), len = tl.length(u), G = len / P, b0 = n0 / P;
        load_rows_nchw(g, n0, len, dy, rows.data());
        if (dw) {
          for (int64_t r = 0; r < len; ++r)
            gather_runs(xp + row_base(g, lay, n0 + r), lc.runs.data(), lc.runs.size(), col.data() + r * K);
          for (size_t q = 0; q < lc.taps.size(); ++q)  // tap-major: dW_q's (M, C) block stays in cache
            for (int64_t p : plan.classes[q])
              gemm<T>(true, false, M, C, G, T(1), rows.data() + p * M, P * M,
                      col.data() + p * K + static_cast<int64_t>(q) * C, P * K, T(1),
                      dWp + static_cast<int64_t>(q) * C, K);
        }
        if (dx) {
          for (size_t q = 0; q < WqT.size(); ++q)
            for (int64_t p : plan.classes[q])
              gemm_packed<T>(false, G, T(1), rows.data() + p * M, P * M, *WqT[q], T(0),
                             dcol.data() + p * K + static_cast<int64_t>(q) * C, P * K);
          std::memset(dxp + b0 * lay.sB, 0, sizeof(T) * lay.sB * G);
          for (int64_t r = 0; r < len; ++r) {  // only the live pairs of dcol were written
            const std::vector<Run>& runs = plan.runs[r % P];
            add_runs(dxp + row_base(g, lay, n0 + r), runs.data(), runs.size(), dcol.data() + r * K);
          }
          if (dxp != dx)
            for (int64_t b = b0; b < b0 + G; ++b) unpad_image(g, lay, b, dxp, dx);
        }
      });
    }
  }
  errors.rethrow();
  if (dw) sum_thread_parts(parts, nt, K * M, dWt.data());
}

#define PYADR_INSTANTIATE(T)                                                                                    \
  template void taps_forward<T>(const ConvGeom&, const Layout&, const LiveColumns&, const TapPlan&, const T*, \
                                const T*, const T*, T*);                                                      \
  template void taps_backward<T>(const ConvGeom&, const Layout&, const LiveColumns&, const TapPlan&, const T*, \
                                 const T*, const T*, T*, T*, std::vector<T>&);
PYADR_INSTANTIATE(float)
PYADR_INSTANTIATE(double)
#undef PYADR_INSTANTIATE

}  // namespace detail
}  // namespace pyadr
