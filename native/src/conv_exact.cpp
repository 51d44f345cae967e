// Exact convolution: tiled implicit im2col + GEMM. The im2col matrix is never materialised: each
// thread gathers a tile of rows (cache-sized) from a padded NHWC copy of x, multiplies it by the
// weights and writes NCHW output. Backward: per-thread dW partials (reduced in a fixed order,
// so results are deterministic for a thread count), each dW tile gathered straight into the
// GEMM's B panels, and col2im by scatter-add into the padded dx of the thread's own images (no
// races, no atomics), each image unpadded to NCHW once complete (docs/engine-builtin.md).
// Small maps (VGG-11's 3x3 and 1x1, P = 9 or 1 rows per image): tiles of several whole images,
// and only the kernel taps that read the input somewhere (a 3x3 kernel with pad 1 on a 1x1 map:
// the centre tap alone) enter the GEMMs.
//
//   x (B, C, H, W) -> xp (B, Hp, Wp, C);  tile (R, K') rows (b, oh, ow), K' = (live taps, C)
//   Wm (K', M) = w (M, C, kh, kw) permuted;  y tile (R, M) = tile . Wm  -> y (B, M, OH, OW)
//   backward per tile: dW^T (M, K') += dy rows^T . tile;  dx tile (R, K') = dy rows . Wm^T -> col2im
#include <algorithm>
#include <cstdlib>

#include "conv_common.hpp"
#include "conv_onednn.hpp"
#include "gemm.hpp"
#include "layout.hpp"
#include "pyadr/nn_fast.hpp"  // linear_forward / linear_backward (linear.cpp)
#include "rowops.hpp"

namespace pyadr {
namespace {

using detail::Buffer;
using detail::Run;

bool is_linear(const ConvGeom& g) {
  return g.H == 1 && g.W == 1 && g.kh == 1 && g.kw == 1 && g.ph == 0 && g.pw == 0;
}

// ---- Live taps. A kernel tap (i, j) whose every read, over all output positions, lands in the
// padding adds nothing to y, scatters only into dX's padding and has dW = 0: its C columns are
// left out of K (a 3x3 kernel with pad 1 on a 1x1 map keeps 1 tap of 9).

bool tap_reads_input(int64_t out, int64_t stride, int64_t pad, int64_t dilation, int64_t in, int64_t tap) {
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

LiveColumns live_columns(const ConvGeom& g, const detail::Layout& lay) {
  LiveColumns lc;
  for (int64_t i = 0; i < g.kh; ++i) {
    if (!tap_reads_input(g.OH, g.sh, g.ph, g.dh, g.H, i)) continue;
    for (int64_t j = 0; j < g.kw; ++j)
      if (tap_reads_input(g.OW, g.sw, g.pw, g.dw, g.W, j)) lc.taps.push_back(i * g.kw + j);
  }
  lc.K = static_cast<int64_t>(lc.taps.size()) * g.C;
  for (size_t q = 0; q < lc.taps.size(); ++q) {
    const int64_t k0 = lc.taps[q] * g.C;
    for (Run u : detail::column_runs(g, lay, Order::HWC, k0, k0 + g.C)) {
      u.dst += static_cast<int32_t>(static_cast<int64_t>(q) * g.C);
      Run* last = lc.runs.empty() ? nullptr : &lc.runs.back();
      if (last && last->src + last->len == u.src && last->dst + last->len == u.dst) last->len += u.len;
      else lc.runs.push_back(u);
    }
  }
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
    if (R >= P) {
      G = std::min(std::max<int64_t>(1, R / P), (g.B + threads - 1) / threads);  // >= 1 unit per thread
      R = G * P;
    }
    per_unit = (G * P + R - 1) / R;
    units = (g.B + G - 1) / G;
  }
  int64_t tiles() const { return units * per_unit; }
  int64_t first(int64_t t) const { return (t / per_unit) * G * P + (t % per_unit) * R; }
  int64_t length(int64_t t) const { return std::min(R, std::min(N, (t / per_unit + 1) * G * P) - first(t)); }
};

// Rows per tile of the forward and of dX: about 384 KB of im2col rows, a multiple of 12 (every
// kernel's MR divides it: a tile of 61 rows made the GEMM compute 66). (At least 144 rows when the
// weights outgrow L2 was tried on VGG-11's conv6: no difference measurable at 36 ... 576.)
int64_t tile_rows(int64_t K) { return std::max<int64_t>(12, 98304 / std::max<int64_t>(K, 1) / 12 * 12); }

// Rows per tile of the weight gradient alone: its GEMM's depth (dW^T (M, K') += rows^T . tile), so
// deeper tiles read and write the (M, K') accumulator less often; about 1 MB of tile (L2), at most
// 256 (the GEMM's KC); an image's tiles of equal depth (conv2: 2 x 98, not 156 + 40). Small maps
// group whole images up to 256 rows: the accumulator (VGG-11's 512 x 4608: 9 MB) dominates there.
int64_t dw_rows(const ConvGeom& g, int64_t K) {
  const int64_t P = g.P();
  const int64_t R = std::min<int64_t>(std::max<int64_t>(12, 262144 / std::max<int64_t>(K, 1)), 256);
  if (R < P) {
    const int64_t tiles = (P + R - 1) / R;
    return (P + tiles - 1) / tiles;
  }
  return 256;
}

// One pass over the tiles: dX and/or dW (dW^T partials per thread, returned summed in thread order).
template <class T>
void backward_tiles(const ConvGeom& g, const detail::Layout& lay, const LiveColumns& lc, const Tiling& tl,
                    const detail::PackedB<T>* WTp, const T* xp, const T* dy, T* dx, T* dxp, std::vector<T>& dWt) {
  const int64_t K = lc.K, M = g.M, R = tl.R;
  const bool dw = !dWt.empty();  // (no live column: dW is 0, nothing to accumulate)
  const bool panels = dw && gemm_provider() == GemmProvider::Builtin;
  const int NR = detail::gemm_panel_width<T>();
  const int64_t Kp = (K + NR - 1) / NR * NR;
  const int64_t panel = R * NR;  // values per panel of a tile laid out for gemm_panels
  const std::vector<Run> pruns = panels ? detail::panel_runs(lc.runs, NR, panel) : std::vector<Run>();
  const int nt = detail::threads_for(tl.units);
  std::vector<T> parts(dw ? static_cast<size_t>(nt) * K * M : 0, T(0));
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    const int tid = detail::thread_id();
    Buffer<T> col, rows, ptile;
    errors.run([&] {
      col.resize(dx || !panels ? R * K : 0);
      rows.resize(R * M);
      if (panels) {
        ptile.resize(R * Kp);
        std::fill(ptile.data(), ptile.data() + R * Kp, T(0));  // the last panel's columns >= K stay 0
      }
    });
    T* dWp = dw ? parts.data() + static_cast<size_t>(tid) * K * M : nullptr;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t u = 0; u < tl.units; ++u) {
      errors.run([&] {
        const int64_t b0 = u * tl.G, b1 = std::min(g.B, b0 + tl.G);
        if (dx) std::memset(dxp + b0 * lay.sB, 0, sizeof(T) * lay.sB * (b1 - b0));  // the unit's padded dX
        for (int64_t t = u * tl.per_unit; t < (u + 1) * tl.per_unit; ++t) {
          const int64_t n0 = tl.first(t), len = tl.length(t);
          if (len <= 0) continue;
          detail::load_rows_nchw(g, n0, len, dy, rows.data());
          if (dw && panels) {
            // dW^T (M, K') += rows^T (M, len) . tile (len, K'), the tile already in B's panels.
            for (int64_t r = 0; r < len; ++r)
              detail::gather_runs(xp + detail::row_base(g, lay, n0 + r), pruns.data(), pruns.size(),
                                  ptile.data() + r * NR);
            detail::gemm_panels<T>(true, M, K, len, T(1), rows.data(), M, ptile.data(), panel, T(1), dWp, K);
          } else if (dw) {
            for (int64_t r = 0; r < len; ++r)
              detail::gather_runs(xp + detail::row_base(g, lay, n0 + r), lc.runs.data(), lc.runs.size(),
                                  col.data() + r * K);
            // col is packed as B (vector copies), not transposed into MR-row panels as the A of
            // dW = col^T . rows would be.
            gemm<T>(true, false, M, K, len, T(1), rows.data(), M, col.data(), K, T(1), dWp, K);
          }
          if (dx) {
            detail::gemm_packed<T>(false, len, T(1), rows.data(), M, *WTp, T(0), col.data(), K);
            for (int64_t r = 0; r < len; ++r)
              detail::add_runs(dxp + detail::row_base(g, lay, n0 + r), lc.runs.data(), lc.runs.size(),
                               col.data() + r * K);
          }
        }
        if (dx && dxp != dx)  // complete: unpad while in cache
          for (int64_t b = b0; b < b1; ++b) detail::unpad_image(g, lay, b, dxp, dx);
      });
    }
  }
  errors.rethrow();
  if (dw) {
    std::copy_n(parts.data(), K * M, dWt.data());
    for (int t = 1; t < nt; ++t) {
      const T* part = parts.data() + static_cast<size_t>(t) * K * M;
      for (int64_t i = 0; i < K * M; ++i) dWt[i] += part[i];
    }
  }
}

}  // namespace

template <class T>
void conv2d_forward_exact(const ConvGeom& g, const T* x, const T* w, const T* b, T* y) {
  if (onednn::forward(g, x, w, b, y)) return;  // the provider's choice (conv_onednn.cpp)
  if (is_linear(g)) return linear_forward(g, x, w, b, y);
  const int64_t M = g.M;
  const detail::Layout lay = detail::make_layout(g, true);
  const LiveColumns lc = live_columns(g, lay);
  const int64_t K = lc.K;
  Buffer<T> padded;
  const T* xp = detail::padded_input(g, lay, x, padded);
  const std::vector<T> Wm = live_weights(g, lc, w);
  const detail::PackedB<T> Wp(false, K, M, Wm.data(), M);  // packed once for every tile
  const Tiling tl(g, tile_rows(K), num_threads());
  const int64_t R = tl.R, ntiles = tl.tiles();
  [[maybe_unused]] const int nt = detail::threads_for(ntiles);
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    Buffer<T> col, out;
    errors.run([&] {
      col.resize(std::max<int64_t>(R * K, 1));
      out.resize(R * M);
    });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t t = 0; t < ntiles; ++t) {
      errors.run([&] {
        const int64_t n0 = tl.first(t), len = tl.length(t);
        if (len <= 0) return;
        for (int64_t r = 0; r < len; ++r)
          detail::gather_runs(xp + detail::row_base(g, lay, n0 + r), lc.runs.data(), lc.runs.size(), col.data() + r * K);
        detail::gemm_packed<T>(false, len, T(1), col.data(), K, Wp, T(0), out.data(), M);
        detail::store_rows_nchw(g, n0, len, out.data(), b, y);
      });
    }
  }
  errors.rethrow();
}

template <class T>
void conv2d_backward_exact(const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db) {
  if (onednn::backward(g, x, w, dy, dx, dw, db)) return;
  if (is_linear(g)) return linear_backward(g, x, w, dy, dx, dw, db);
  const int64_t M = g.M;
  if (db) detail::bias_grad_nchw(g, dy, db);
  if (!dx && !dw) return;
  const detail::Layout lay = detail::make_layout(g, true);
  const LiveColumns lc = live_columns(g, lay);
  const int64_t K = lc.K;
  Buffer<T> padded, dpadded;
  const T* xp = dw ? detail::padded_input(g, lay, x, padded) : x;
  T* dxp = nullptr;
  if (dx) {
    if (detail::layout_is_input(g, lay)) {
      dxp = dx;
    } else {
      dpadded.resize(lay.size());
      dxp = dpadded.data();
    }
  }
  const int threads = num_threads();
  std::unique_ptr<detail::PackedB<T>> WTp;  // Wm^T (M x K'), packed once for every tile
  if (dx) {
    const std::vector<T> Wm = live_weights(g, lc, w);
    WTp.reset(new detail::PackedB<T>(true, M, K, Wm.data(), M));
  }
  std::vector<T> dWt(dw ? static_cast<size_t>(K) * M : 0);
  const bool builtin = gemm_provider() == GemmProvider::Builtin;
  const Tiling dx_tiles(g, tile_rows(K), threads);
  if (dx && dw && dx_tiles.G > 1 && K > 0) {
    // Small maps: dX and dW in two passes, dW's tiles deeper (its accumulator is the larger cost).
    std::vector<T> none;
    backward_tiles<T>(g, lay, lc, dx_tiles, WTp.get(), xp, dy, dx, dxp, none);
    backward_tiles<T>(g, lay, lc, Tiling(g, builtin ? dw_rows(g, K) : tile_rows(K), threads), nullptr, xp, dy,
                      nullptr, nullptr, dWt);
  } else {
    // dW's tile is gathered straight into the GEMM's B panels (builtin provider; BLAS reads it as
    // a plain row-major tile), deeper than dX's scatter tile.
    const Tiling tl = dx || !builtin ? dx_tiles : Tiling(g, dw_rows(g, K), threads);
    backward_tiles<T>(g, lay, lc, tl, WTp.get(), xp, dy, dx, dxp, dWt);
  }
  if (dw) live_grad_to_weights(g, lc, dWt.data(), dw);
}

template void conv2d_forward_exact<float>(const ConvGeom&, const float*, const float*, const float*, float*);
template void conv2d_forward_exact<double>(const ConvGeom&, const double*, const double*, const double*, double*);
template void conv2d_backward_exact<float>(const ConvGeom&, const float*, const float*, const float*, float*,
                                           float*, float*);
template void conv2d_backward_exact<double>(const ConvGeom&, const double*, const double*, const double*,
                                            double*, double*, double*);

}  // namespace pyadr
