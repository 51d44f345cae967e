// Centroids of the reuse forward's pixel path by sliding windows.
//
// With stride 1, order hwc and L | C, block j = (kernel position (i, jj), channel slice s) has as
// sub-vectors the slices s of the padded pixels in one window per image:
//   rows i*dh + [0, OH), columns jj*dw + [0, OW)    (padded coordinates)
// and two slices are in one cluster iff their keys are equal (keys numbered once per slice:
// slice_gid). So the sums of block j's clusters are rows of a per-key table
//   G (n_gid, L): G[k] = sum of the slices with key k inside block j's window
// picked in block j's id order and divided by the counts. Along one kernel row i, consecutive
// windows differ by strips of dw columns: G is updated by subtracting the strip that leaves and
// adding the one that enters instead of being rebuilt. CifarNet's conv2 (14x14 output, 5x5
// kernel): B*(5*196 + 20*28) = 1540*B slice additions instead of 25*196*B = 4900*B.
//
// One task per (slice, kernel row), whatever the thread count, so the sums are thread-count
// independent. The order differs from the per-row accumulation (conv_reuse.cpp's other path):
// the sums agree to rounding; a strip subtracted after being added leaves the rounding of the
// larger partial sum (members of one key are alike, so that stays the rounding of a sum).
#include "centroid_windows.hpp"

#include <algorithm>
#include <stdexcept>

#include "common.hpp"

namespace pyadr {
namespace detail {
namespace {

// G[gid[q]] (+|-)= xp[q*L : + L] for the slices q (channel slice s) of one strip: rows [r0, r1),
// columns [c0, c1) of every image.
struct Strip {
  int64_t r0, r1, c0, c1;
};

template <class T, bool kAdd>
PYADR_INLINE void apply_strip_impl(const T* PYADR_RESTRICT xp, const int32_t* PYADR_RESTRICT gid, int64_t B,
                                   int64_t slices_per_image, int64_t slices_per_row, int64_t per_pixel, int64_t s,
                                   int L, const Strip& st, T* PYADR_RESTRICT G) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = st.r0; r < st.r1; ++r) {
      const int64_t q0 = b * slices_per_image + r * slices_per_row + s;
      for (int64_t c = st.c0; c < st.c1; ++c) {
        const int64_t q = q0 + c * per_pixel;
        const T* PYADR_RESTRICT src = xp + q * L;
        T* PYADR_RESTRICT dst = G + static_cast<int64_t>(gid[q]) * L;
        if (kAdd) {
          for (int l = 0; l < L; ++l) dst[l] += src[l];
        } else {
          for (int l = 0; l < L; ++l) dst[l] -= src[l];
        }
      }
    }
}

// out[t] = G[gids[t]] / counts[t] for t < n (rows of L): the block's centroids, in its id order.
template <class T>
PYADR_INLINE void pick_means_impl(const T* PYADR_RESTRICT G, const int32_t* PYADR_RESTRICT gids,
                                  const int32_t* PYADR_RESTRICT counts, int64_t n, int L, T* PYADR_RESTRICT out) {
  for (int64_t t = 0; t < n; ++t) {
    const T* PYADR_RESTRICT src = G + static_cast<int64_t>(gids[t]) * L;
    const T inv = T(1) / static_cast<T>(counts[t]);  // as scale_rows: sums -> means
    T* PYADR_RESTRICT dst = out + t * L;
    for (int l = 0; l < L; ++l) dst[l] = src[l] * inv;
  }
}

#define PYADR_WINDOW_CLONES(T, sfx)                                                                                \
  PYADR_CLONES void add_strip_##sfx(const T* xp, const int32_t* gid, int64_t B, int64_t spi, int64_t spr,        \
                                    int64_t pp, int64_t s, int L, const Strip& st, T* G) {                        \
    apply_strip_impl<T, true>(xp, gid, B, spi, spr, pp, s, L, st, G);                                             \
  }                                                                                                               \
  PYADR_CLONES void sub_strip_##sfx(const T* xp, const int32_t* gid, int64_t B, int64_t spi, int64_t spr,        \
                                    int64_t pp, int64_t s, int L, const Strip& st, T* G) {                        \
    apply_strip_impl<T, false>(xp, gid, B, spi, spr, pp, s, L, st, G);                                            \
  }                                                                                                               \
  PYADR_CLONES void pick_means_##sfx(const T* G, const int32_t* gids, const int32_t* counts, int64_t n, int L,   \
                                     T* out) {                                                                    \
    pick_means_impl(G, gids, counts, n, L, out);                                                                  \
  }
PYADR_WINDOW_CLONES(float, f32)
PYADR_WINDOW_CLONES(double, f64)
#undef PYADR_WINDOW_CLONES

inline void add_strip(const float* xp, const int32_t* gid, int64_t B, int64_t spi, int64_t spr, int64_t pp, int64_t s,
                      int L, const Strip& st, float* G, bool add) {
  (add ? add_strip_f32 : sub_strip_f32)(xp, gid, B, spi, spr, pp, s, L, st, G);
}
inline void add_strip(const double* xp, const int32_t* gid, int64_t B, int64_t spi, int64_t spr, int64_t pp,
                      int64_t s, int L, const Strip& st, double* G, bool add) {
  (add ? add_strip_f64 : sub_strip_f64)(xp, gid, B, spi, spr, pp, s, L, st, G);
}
inline void pick_means(const float* G, const int32_t* gids, const int32_t* counts, int64_t n, int L, float* out) {
  pick_means_f32(G, gids, counts, n, L, out);
}
inline void pick_means(const double* G, const int32_t* gids, const int32_t* counts, int64_t n, int L, double* out) {
  pick_means_f64(G, gids, counts, n, L, out);
}

// [a0, a1) minus [b0, b1) (both non-empty): at most two intervals, the empty ones skipped (when
// they are disjoint, the whole of [a0, a1)).
void interval_minus(int64_t a0, int64_t a1, int64_t b0, int64_t b1, std::vector<std::pair<int64_t, int64_t>>& out) {
  out.clear();
  const int64_t left_end = std::min(a1, b0), right_begin = std::max(a0, b1);
  if (a0 < left_end) out.push_back({a0, left_end});
  if (right_begin < a1) out.push_back({right_begin, a1});
}

}  // namespace

bool window_sums_apply(const ConvGeom& g, bool batch_scope) {
  return batch_scope && g.sh == 1 && g.sw == 1 && g.B > 0 && g.OH > 0 && g.OW > 0;
}

template <class T>
void window_centroid_sums(const ConvGeom& g, const Layout& lay, int L, const T* xp, const int32_t* slice_gid,
                          int32_t n_gid, const std::vector<const int32_t*>& block_gids, const std::vector<int64_t>& nc,
                          const std::vector<const int32_t*>& counts, const std::vector<T*>& means) {
  const int64_t S = g.C / L;
  if (!lay.nhwc || lay.sW != g.C || static_cast<int64_t>(block_gids.size()) != g.kh * g.kw * S)
    throw std::logic_error("internal: window_centroid_sums needs the pixel path's layout and blocks");
  const int64_t per_pixel = S, per_row = lay.sH / L, per_image = lay.sB / L;
  // One task per (channel slice s, kernel row i): its window starts at column 0, is built in
  // full, then slides right one kernel column at a time. The tasks do not depend on the thread
  // count, so neither do the sums. (Splitting the L columns too, to balance 5 kernel rows over 2
  // threads, was slower: it doubles the key lookups and halves the rows' width.)
  const int64_t ntasks = S * g.kh;
  ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for(ntasks)) schedule(dynamic, 1)
#endif
  for (int64_t task = 0; task < ntasks; ++task)
    errors.run([&] {
      const int64_t s = task % S, i = task / S;
      std::vector<T> G(static_cast<size_t>(n_gid) * L, T(0));
      auto strip = [&](int64_t c0, int64_t c1, bool add) {
        const Strip st{i * g.dh, i * g.dh + g.OH, c0, c1};
        if (c0 < c1) add_strip(xp, slice_gid, g.B, per_image, per_row, per_pixel, s, L, st, G.data(), add);
      };
      std::vector<std::pair<int64_t, int64_t>> cols;
      int64_t c0 = 0, c1 = 0;  // the current window's columns
      for (int64_t jj = 0; jj < g.kw; ++jj) {
        const int64_t n0 = jj * g.dw, n1 = jj * g.dw + g.OW;
        if (jj == 0) {
          strip(n0, n1, true);
        } else {
          interval_minus(c0, c1, n0, n1, cols);  // the columns that leave
          for (auto& iv : cols) strip(iv.first, iv.second, false);
          interval_minus(n0, n1, c0, c1, cols);  // and those that enter
          for (auto& iv : cols) strip(iv.first, iv.second, true);
        }
        c0 = n0;
        c1 = n1;
        const int64_t j = (i * g.kw + jj) * S + s;
        pick_means(G.data(), block_gids[j], counts[j], nc[j], L, means[j]);
      }
    });
  errors.rethrow();
}

template void window_centroid_sums<float>(const ConvGeom&, const Layout&, int, const float*, const int32_t*, int32_t,
                                          const std::vector<const int32_t*>&, const std::vector<int64_t>&,
                                          const std::vector<const int32_t*>&, const std::vector<float*>&);
template void window_centroid_sums<double>(const ConvGeom&, const Layout&, int, const double*, const int32_t*,
                                           int32_t, const std::vector<const int32_t*>&, const std::vector<int64_t>&,
                                           const std::vector<const int32_t*>&, const std::vector<double*>&);

}  // namespace detail
}  // namespace pyadr
