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
#include "conv_exact_plan.hpp"
#include "conv_onednn.hpp"
#include "gemm.hpp"
#include "layout.hpp"
#include "pyadr/nn_fast.hpp"  // linear_forward / linear_backward (linear.cpp)
#include "rowops.hpp"

namespace pyadr {
namespace {

using detail::Buffer;
using detail::LiveColumns;
using detail::Run;
using detail::Tiling;

bool is_linear(const ConvGeom& g) {
  return g.H == 1 && g.W == 1 && g.kh == 1 && g.kw == 1 && g.ph == 0 && g.pw == 0;
}

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
  if (dw) detail::sum_thread_parts(parts, nt, K * M, dWt.data());
}

}  // namespace

template <class T>
void conv2d_forward_exact(const ConvGeom& g, const T* x, const T* w, const T* b, T* y) {
  if (onednn::forward(g, x, w, b, y)) return;  // the provider's choice (conv_onednn.cpp)
  if (is_linear(g)) return linear_forward(g, x, w, b, y);
  const int64_t M = g.M;
  const detail::Layout lay = detail::make_layout(g, true);
  const LiveColumns lc = detail::live_columns(g, lay);
  const int64_t K = lc.K;
  Buffer<T> padded;
  const T* xp = detail::padded_input(g, lay, x, padded);
  const std::vector<T> Wm = detail::live_weights(g, lc, w);
  if (const auto plan = detail::tap_plan(g, lay, lc, sizeof(T), num_threads()))
    return detail::taps_forward(g, lay, lc, *plan, xp, Wm.data(), b, y);  // per (tap, position)
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
  const LiveColumns lc = detail::live_columns(g, lay);
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
  const std::vector<T> Wm = dx ? detail::live_weights(g, lc, w) : std::vector<T>();
  std::vector<T> dWt(dw ? static_cast<size_t>(K) * M : 0);
  if (const auto plan = detail::tap_plan(g, lay, lc, sizeof(T), threads)) {  // per (tap, position)
    detail::taps_backward(g, lay, lc, *plan, xp, Wm.data(), dy, dx, dxp, dWt);
    if (dw) detail::live_grad_to_weights(g, lc, dWt.data(), dw);
    return;
  }
  std::unique_ptr<detail::PackedB<T>> WTp;  // Wm^T (M x K'), packed once for every tile
  if (dx) WTp.reset(new detail::PackedB<T>(true, M, K, Wm.data(), M));
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
  if (dw) detail::live_grad_to_weights(g, lc, dWt.data(), dw);
}

template void conv2d_forward_exact<float>(const ConvGeom&, const float*, const float*, const float*, float*);
template void conv2d_forward_exact<double>(const ConvGeom&, const double*, const double*, const double*, double*);
template void conv2d_backward_exact<float>(const ConvGeom&, const float*, const float*, const float*, float*,
                                           float*, float*);
template void conv2d_backward_exact<double>(const ConvGeom&, const double*, const double*, const double*,
                                            double*, double*, double*);

}  // namespace pyadr
