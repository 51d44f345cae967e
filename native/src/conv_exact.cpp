// Exact convolution: tiled implicit im2col + GEMM. The im2col matrix is never materialised: each
// thread gathers a tile of rows (cache-sized) from a padded NHWC copy of x, multiplies it by the
// weights and writes NCHW output. Backward: per-thread dW partials (reduced in a fixed order,
// so results are deterministic for a thread count), each dW tile gathered straight into the
// GEMM's B panels, and col2im by scatter-add into the padded dx of the thread's own images (no
// races, no atomics), each image unpadded to NCHW once complete (docs/engine-builtin.md).
//
//   x (B, C, H, W) -> xp (B, Hp, Wp, C);  tile (R, K) rows (b, oh, ow), K = (kh, kw, C)
//   Wm (K, M) = w (M, C, kh, kw) permuted;  y tile (R, M) = tile . Wm  -> y (B, M, OH, OW)
//   backward per tile: dW^T (M, K) += dy rows^T . tile;  dx tile (R, K) = dy rows . Wm^T -> col2im
#include <algorithm>

#include "conv_common.hpp"
#include "conv_onednn.hpp"
#include "gemm.hpp"
#include "layout.hpp"
#include "pyadr/nn_fast.hpp"  // linear_forward / linear_backward (linear.cpp)
#include "rowops.hpp"

namespace pyadr {
namespace {

using detail::Buffer;

bool is_linear(const ConvGeom& g) {
  return g.H == 1 && g.W == 1 && g.kh == 1 && g.kw == 1 && g.ph == 0 && g.pw == 0;
}

// Rows per tile: about 384 KB of im2col rows (floats), a multiple of 12 (every kernel's MR divides
// it: a tile of 61 rows made the GEMM compute 66), at most the rows of one image.
int64_t tile_rows(const ConvGeom& g) {
  const int64_t R = std::max<int64_t>(12, 98304 / std::max<int64_t>(g.K(), 1) / 12 * 12);
  return std::min<int64_t>(R, g.P());
}

// Rows per tile of the weight gradient: its GEMM's depth (dW^T (M, K) += rows^T . tile), so
// deeper tiles read and write the (M, K) accumulator less often; about 1 MB of tile (L2), at most
// one image's rows and 256 (the GEMM's KC); an image's tiles of equal depth (conv2: 2 x 98, not
// 156 + 40).
int64_t dw_tile_rows(const ConvGeom& g) {
  const int64_t R = std::min<int64_t>({std::max<int64_t>(12, 262144 / std::max<int64_t>(g.K(), 1)), int64_t(256), g.P()});
  const int64_t tiles = (g.P() + R - 1) / R;
  return (g.P() + tiles - 1) / tiles;
}

}  // namespace

template <class T>
void conv2d_forward_exact(const ConvGeom& g, const T* x, const T* w, const T* b, T* y) {
  if (onednn::forward(g, x, w, b, y)) return;  // the provider's choice (conv_onednn.cpp)
  if (is_linear(g)) return linear_forward(g, x, w, b, y);
  const int64_t K = g.K(), M = g.M, P = g.P();
  const detail::Layout lay = detail::make_layout(g, true);
  Buffer<T> padded;
  const T* xp = detail::padded_input(g, lay, x, padded);
  std::vector<T> Wm(K * M);
  detail::weights_to_matrix(g, Order::HWC, w, Wm.data());
  const auto runs = detail::column_runs(g, lay, Order::HWC, 0, K);
  const detail::PackedB<T> Wp(false, K, M, Wm.data(), M);  // packed once for every tile
  const int64_t R = tile_rows(g), tiles_per_image = (P + R - 1) / R, ntiles = g.B * tiles_per_image;
  [[maybe_unused]] const int nt = detail::threads_for(ntiles);
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    Buffer<T> col, out;
    errors.run([&] {
      col.resize(R * K);
      out.resize(R * M);
    });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t t = 0; t < ntiles; ++t) {
      errors.run([&] {
        const int64_t bimg = t / tiles_per_image, p0 = (t % tiles_per_image) * R;
        const int64_t len = std::min(R, P - p0), n0 = bimg * P + p0;
        for (int64_t r = 0; r < len; ++r)
          detail::gather_runs(xp + detail::row_base(g, lay, n0 + r), runs.data(), runs.size(), col.data() + r * K);
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
  const int64_t K = g.K(), M = g.M, P = g.P();
  if (db) detail::bias_grad_nchw(g, dy, db);
  if (!dx && !dw) return;
  const detail::Layout lay = detail::make_layout(g, true);
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
  std::vector<T> Wm(K * M);
  detail::weights_to_matrix(g, Order::HWC, w, Wm.data());
  const auto runs = detail::column_runs(g, lay, Order::HWC, 0, K);
  // dW's tile is gathered straight into the GEMM's B panels (builtin provider; BLAS reads it as
  // a plain row-major tile), deeper than dX's scatter tile.
  const bool panels = dw && gemm_provider() == GemmProvider::Builtin;
  const int NR = detail::gemm_panel_width<T>();
  const int64_t Kp = (K + NR - 1) / NR * NR;
  const int64_t R = dx ? tile_rows(g) : (panels ? dw_tile_rows(g) : tile_rows(g));
  const int64_t panel = R * NR;  // values per panel of a tile laid out for gemm_panels
  const std::vector<detail::Run> pruns = panels ? detail::panel_runs(runs, NR, panel) : std::vector<detail::Run>();
  const int nt = detail::threads_for(g.B);
  std::unique_ptr<detail::PackedB<T>> WTp;  // Wm^T (M x K), packed once for every tile
  if (dx) WTp.reset(new detail::PackedB<T>(true, M, K, Wm.data(), M));
  std::vector<T> dW_parts(dw ? static_cast<size_t>(nt) * K * M : 0, T(0));
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
    T* dWt = dw ? dW_parts.data() + static_cast<size_t>(tid) * K * M : nullptr;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t bimg = 0; bimg < g.B; ++bimg) {
      errors.run([&] {
        if (dx) std::memset(dxp + bimg * lay.sB, 0, sizeof(T) * lay.sB);  // this image's padded dX
        for (int64_t p0 = 0; p0 < P; p0 += R) {
          const int64_t len = std::min(R, P - p0), n0 = bimg * P + p0;
          detail::load_rows_nchw(g, n0, len, dy, rows.data());
          if (dw && panels) {
            // dW^T (M, K) += rows^T (M, len) . tile (len, K), the tile already in B's panels.
            for (int64_t r = 0; r < len; ++r)
              detail::gather_runs(xp + detail::row_base(g, lay, n0 + r), pruns.data(), pruns.size(),
                                  ptile.data() + r * NR);
            detail::gemm_panels<T>(true, M, K, len, T(1), rows.data(), M, ptile.data(), panel, T(1), dWt, K);
          } else if (dw) {
            for (int64_t r = 0; r < len; ++r)
              detail::gather_runs(xp + detail::row_base(g, lay, n0 + r), runs.data(), runs.size(), col.data() + r * K);
            // col is packed as B (vector copies), not transposed into MR-row panels as the A of
            // dW = col^T . rows would be.
            gemm<T>(true, false, M, K, len, T(1), rows.data(), M, col.data(), K, T(1), dWt, K);
          }
          if (dx) {
            detail::gemm_packed<T>(false, len, T(1), rows.data(), M, *WTp, T(0), col.data(), K);
            for (int64_t r = 0; r < len; ++r)
              detail::add_runs(dxp + detail::row_base(g, lay, n0 + r), runs.data(), runs.size(),
                                       col.data() + r * K);
          }
        }
        if (dx && dxp != dx) detail::unpad_image(g, lay, bimg, dxp, dx);  // complete: unpad it while in cache
      });
    }
  }
  errors.rethrow();
  if (dw) {
    for (int t = 1; t < nt; ++t) {
      const T* part = dW_parts.data() + static_cast<size_t>(t) * K * M;
      for (int64_t i = 0; i < K * M; ++i) dW_parts[i] += part[i];
    }
    std::vector<T> dWm(static_cast<size_t>(K) * M);  // (K, M) from (M, K)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t m = 0; m < M; ++m) dWm[k * M + m] = dW_parts[m * K + k];
    detail::matrix_to_weights(g, Order::HWC, dWm.data(), dw);
  }
}

template void conv2d_forward_exact<float>(const ConvGeom&, const float*, const float*, const float*, float*);
template void conv2d_forward_exact<double>(const ConvGeom&, const double*, const double*, const double*, double*);
template void conv2d_backward_exact<float>(const ConvGeom&, const float*, const float*, const float*, float*,
                                           float*, float*);
template void conv2d_backward_exact<double>(const ConvGeom&, const double*, const double*, const double*,
                                            double*, double*, double*);

}  // namespace pyadr
