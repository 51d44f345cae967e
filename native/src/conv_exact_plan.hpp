// The exact path's plan on small maps, shared by conv_exact.cpp (dense tiles) and
// conv_exact_taps.cpp (per-position taps): which kernel taps read the input, the weights of those
// taps alone, and tiles that group whole images.
//
//   K' = live taps * C;  Wm (K', M), row q * C + c = w[:, c, tap q];  dW^T (M, K') -> dw (M, C, kh, kw)
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "common.hpp"
#include "gemm.hpp"
#include "layout.hpp"

namespace pyadr {
namespace detail {

// ---- Live taps. A kernel tap (i, j) whose every read, over all output positions, lands in the
// padding adds nothing to y, scatters only into dX's padding and has dW = 0: its C columns are
// left out of K (a 3x3 kernel with pad 1 on a 1x1 map keeps 1 tap of 9).

inline bool tap_reads_input(int64_t out, int64_t stride, int64_t pad, int64_t dilation, int64_t in, int64_t tap) {
  for (int64_t o = 0; o < out; ++o) {
    const int64_t pos = o * stride - pad + tap * dilation;
    if (pos >= 0 && pos < in) return true;
  }
  return false;
}

struct LiveColumns {
  std::vector<int64_t> taps;  // live taps i * kw + j, ascending: HWC columns [tap * C, tap * C + C)
  int64_t K = 0;              // taps.size() * C, the GEMMs' depth (forward) or width (backward)
  std::vector<Run> runs;      // gather runs of the live columns, dst in [0, K)
};

// Appends the gather runs of live tap q (HWC columns [tap * C, tap * C + C) of x, at [q * C, q * C + C)
// of a K'-wide row), merged with the previous run where both sides continue.
inline void append_tap_runs(const ConvGeom& g, const Layout& lay, int64_t q, int64_t tap, std::vector<Run>& runs) {
  for (Run u : column_runs(g, lay, Order::HWC, tap * g.C, tap * g.C + g.C)) {
    u.dst += static_cast<int32_t>(q * g.C);
    Run* last = runs.empty() ? nullptr : &runs.back();
    if (last && last->src + last->len == u.src && last->dst + last->len == u.dst) last->len += u.len;
    else runs.push_back(u);
  }
}

inline LiveColumns live_columns(const ConvGeom& g, const Layout& lay) {
  LiveColumns lc;
  for (int64_t i = 0; i < g.kh; ++i) {
    if (!tap_reads_input(g.OH, g.sh, g.ph, g.dh, g.H, i)) continue;
    for (int64_t j = 0; j < g.kw; ++j)
      if (tap_reads_input(g.OW, g.sw, g.pw, g.dw, g.W, j)) lc.taps.push_back(i * g.kw + j);
  }
  lc.K = static_cast<int64_t>(lc.taps.size()) * g.C;
  for (size_t q = 0; q < lc.taps.size(); ++q) append_tap_runs(g, lay, static_cast<int64_t>(q), lc.taps[q], lc.runs);
  return lc;
}

// Wm (K', M), row q * C + c = w[:, c, tap q] (HWC columns of the live taps), in 16 x 16 blocks of
// (m, c): the element-wise permutation wrote one value per cache line (M apart) and cost more than
// the whole convolution on VGG-11's 1x1 maps (2.4 M weights).
template <class T>
std::vector<T> live_weights(const ConvGeom& g, const LiveColumns& lc, const T* w) {
  const int64_t M = g.M, C = g.C, kk = g.kh * g.kw, taps = static_cast<int64_t>(lc.taps.size());
  std::vector<T> Wm(static_cast<size_t>(lc.K) * M);
  constexpr int64_t BM = 16, BC = 16;
  for (int64_t m0 = 0; m0 < M; m0 += BM) {
    const int64_t m1 = std::min(M, m0 + BM);
    for (int64_t c0 = 0; c0 < C; c0 += BC) {
      const int64_t c1 = std::min(C, c0 + BC);
      for (int64_t q = 0; q < taps; ++q) {
        const int64_t tap = lc.taps[q];
        for (int64_t c = c0; c < c1; ++c) {
          T* dst = Wm.data() + (q * C + c) * M;
          for (int64_t m = m0; m < m1; ++m) dst[m] = w[(m * C + c) * kk + tap];
        }
      }
    }
  }
  return Wm;
}

// dw (M, C, kh, kw) <- dW^T (M, K') for the live taps, 0 for the others; row m of both at once.
template <class T>
void live_grad_to_weights(const ConvGeom& g, const LiveColumns& lc, const T* dWt, T* dw) {
  const int64_t M = g.M, C = g.C, kk = g.kh * g.kw, Kl = lc.K, taps = static_cast<int64_t>(lc.taps.size());
  for (int64_t m = 0; m < M; ++m) {
    T* row = dw + m * C * kk;
    if (Kl != C * kk) std::fill(row, row + C * kk, T(0));
    const T* src = dWt + m * Kl;
    for (int64_t q = 0; q < taps; ++q)
      for (int64_t c = 0; c < C; ++c) row[c * kk + lc.taps[q]] = src[q * C + c];
  }
}

// ---- Tiles of consecutive rows n = (b, oh, ow). A unit is G whole images, cut into tiles of R
// rows: pieces of one image when an image has more rows than a tile (G = 1, R < P), else a single
// tile of G images side by side (R = G * P; VGG-11's P = 9 and 1, whose per-image tiles of 9 or 1
// rows made every GEMM re-read the whole weight matrix for a handful of rows). A unit belongs to
// one thread: dX scatters into its images' padded copies, race-free.
struct Tiling {
  int64_t P, N, G = 1, R, per_unit, units;
  Tiling(const ConvGeom& g, int64_t rows, int threads) : P(g.P()), N(g.N()), R(std::max<int64_t>(rows, 1)) {
    if (R >= P) {  // units of at most R / P images, their count a multiple of the threads'
      const int64_t most = std::max<int64_t>(1, R / P), nt = std::max(threads, 1);
      const int64_t want = nt * ((g.B + nt * most - 1) / (nt * most));
      G = (g.B + want - 1) / want;
      R = G * P;
    }
    per_unit = (G * P + R - 1) / R;
    units = (g.B + G - 1) / G;
  }
  int64_t tiles() const { return units * per_unit; }
  int64_t first(int64_t t) const { return (t / per_unit) * G * P + (t % per_unit) * R; }
  int64_t length(int64_t t) const { return std::min(R, std::min(N, (t / per_unit + 1) * G * P) - first(t)); }
};

// out (count) <- the sum of nt per-thread partials (nt x count, thread 0 first): a fixed order,
// so dW is deterministic for a thread count.
template <class T>
void sum_thread_parts(const std::vector<T>& parts, int nt, int64_t count, T* out) {
  std::copy_n(parts.data(), count, out);
  for (int t = 1; t < nt; ++t) {
    const T* part = parts.data() + static_cast<size_t>(t) * count;
    for (int64_t i = 0; i < count; ++i) out[i] += part[i];
  }
}

// The per-position path (conv_exact_taps.cpp): on maps of a few positions (VGG-11's 3x3, P = 9) a
// 3x3 kernel with pad 1 reads padding at 32 of the 81 (position, tap) pairs; there the GEMMs run per
// (tap, position) over the rows of that position in a unit of G images, the dead pairs skipped.
struct TapPlan {
  Tiling tiles;                               // units of G whole images, one tile each
  std::vector<std::vector<int64_t>> classes;  // per live tap q: the positions p where it reads x
  std::vector<std::vector<Run>> runs;         // per position p: scatter runs of its live taps
  explicit TapPlan(const Tiling& t) : tiles(t) {}
};

// A plan when the geometry suits the per-position path (enough dead pairs, units of >= 12 images),
// else null: the dense tiles of conv_exact.cpp run.
std::unique_ptr<TapPlan> tap_plan(const ConvGeom& g, const Layout& lay, const LiveColumns& lc, size_t elem,
                                  int threads);

template <class T>
void taps_forward(const ConvGeom& g, const Layout& lay, const LiveColumns& lc, const TapPlan& plan, const T* xp,
                  const T* Wm, const T* bias, T* y);
// dX (into dxp, unpadded into dx) and / or dW^T (M, K') summed over the images (dWt non-empty).
template <class T>
void taps_backward(const ConvGeom& g, const Layout& lay, const LiveColumns& lc, const TapPlan& plan, const T* xp,
                   const T* Wm, const T* dy, T* dx, T* dxp, std::vector<T>& dWt);

}  // namespace detail
}  // namespace pyadr
