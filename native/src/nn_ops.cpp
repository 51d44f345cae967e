// Training helpers for pyadr.nn's non-convolution layers on NCHW arrays (core.hpp "nn ops"):
// max-pooling with its argmax, and local response normalisation across channels. NumPy versions
// of both (pyadr/nn/pooling.py, normalization.py) are the references they are tested against.
//
//   maxpool2d: planes (P = B*C, H, W) -> (P, OH, OW); arg = flat index (i*W + j) in the plane of
//              the first maximum in row-major window order (PyTorch's tie rule); padding never
//              wins; NaN propagates. Backward: dx[p, arg] += dy (one plane per thread).
//   lrn:       s_c = k + alpha/n * sum_{c' in [c - n/2, c + (n-1)/2]} x_c'^2, y_c = x_c * s_c^-beta,
//              a window sum along channels, vectorised over the pixels of one image.
//              Backward: dx_c = dy_c s_c^-beta - 2 alpha beta/n x_c sum_{c': c in window(c')} t_c',
//              t = dy x s^(-beta-1).
//   relu:      y = x < 0 ? 0 : x; dx = y > 0 ? dy : 0, in cache-sized chunks over the threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.hpp"

namespace pyadr {
namespace {

template <class T>
PYADR_INLINE T inverse_power(T s, T beta) {
  if (beta == T(0.75)) {  // the usual value: two square roots instead of pow
    const T r = std::sqrt(s);
    return T(1) / (r * std::sqrt(r));
  }
  return std::pow(s, -beta);
}

// out[c, :] = sum_{c' in [c - lo, c + hi] within [0, C)} in[c', :] in increasing c', for one
// image (C, HW) (a direct sum, not a running one: no cancellation drift).
template <class T>
PYADR_INLINE void channel_window_sum(const T* in, int64_t C, int64_t HW, int lo, int hi, T* out) {
  for (int64_t c = 0; c < C; ++c) {
    T* PYADR_RESTRICT o = out + c * HW;
    const int64_t c0 = std::max<int64_t>(0, c - lo), c1 = std::min<int64_t>(C - 1, c + hi);
    for (int64_t p = 0; p < HW; ++p) o[p] = in[c0 * HW + p];
    for (int64_t d = c0 + 1; d <= c1; ++d) {
      const T* PYADR_RESTRICT src = in + d * HW;
      for (int64_t p = 0; p < HW; ++p) o[p] += src[p];
    }
  }
}

template <class T>
PYADR_INLINE void lrn_forward_image(const T* x, int64_t C, int64_t HW, int n, T alpha, T beta, T k, T* y, T* s,
                                    T* scale, T* sq) {
  for (int64_t i = 0; i < C * HW; ++i) sq[i] = x[i] * x[i];
  channel_window_sum(sq, C, HW, n / 2, (n - 1) / 2, s);
  const T a = alpha / T(n);
  for (int64_t i = 0; i < C * HW; ++i) {
    s[i] = k + a * s[i];
    const T sc = inverse_power(s[i], beta);
    if (scale) scale[i] = sc;
    y[i] = x[i] * sc;
  }
}

template <class T>
PYADR_INLINE void lrn_backward_image(const T* x, const T* s, const T* scale, const T* dy, int64_t C, int64_t HW,
                                     int n, T alpha, T beta, T* dx, T* t) {
  for (int64_t i = 0; i < C * HW; ++i) t[i] = dy[i] * x[i] * scale[i] / s[i];
  // c receives from every c' whose window holds c: c' in [c - (n-1)/2, c + n/2]
  channel_window_sum(t, C, HW, (n - 1) / 2, n / 2, dx);
  const T coef = T(2) * alpha * beta / T(n);
  for (int64_t i = 0; i < C * HW; ++i) dx[i] = dy[i] * scale[i] - coef * x[i] * dx[i];
}

PYADR_CLONES void lrn_fwd_f32(const float* x, int64_t C, int64_t HW, int n, float al, float be, float k, float* y,
                              float* s, float* sc, float* sq) {
  lrn_forward_image(x, C, HW, n, al, be, k, y, s, sc, sq);
}
PYADR_CLONES void lrn_fwd_f64(const double* x, int64_t C, int64_t HW, int n, double al, double be, double k,
                              double* y, double* s, double* sc, double* sq) {
  lrn_forward_image(x, C, HW, n, al, be, k, y, s, sc, sq);
}
PYADR_CLONES void lrn_bwd_f32(const float* x, const float* s, const float* sc, const float* dy, int64_t C,
                              int64_t HW, int n, float al, float be, float* dx, float* t) {
  lrn_backward_image(x, s, sc, dy, C, HW, n, al, be, dx, t);
}
PYADR_CLONES void lrn_bwd_f64(const double* x, const double* s, const double* sc, const double* dy, int64_t C,
                              int64_t HW, int n, double al, double be, double* dx, double* t) {
  lrn_backward_image(x, s, sc, dy, C, HW, n, al, be, dx, t);
}

inline void lrn_fwd(const float* x, int64_t C, int64_t HW, int n, float al, float be, float k, float* y, float* s,
                    float* sc, float* sq) {
  lrn_fwd_f32(x, C, HW, n, al, be, k, y, s, sc, sq);
}
inline void lrn_fwd(const double* x, int64_t C, int64_t HW, int n, double al, double be, double k, double* y,
                    double* s, double* sc, double* sq) {
  lrn_fwd_f64(x, C, HW, n, al, be, k, y, s, sc, sq);
}
inline void lrn_bwd(const float* x, const float* s, const float* sc, const float* dy, int64_t C, int64_t HW, int n,
                    float al, float be, float* dx, float* t) {
  lrn_bwd_f32(x, s, sc, dy, C, HW, n, al, be, dx, t);
}
inline void lrn_bwd(const double* x, const double* s, const double* sc, const double* dy, int64_t C, int64_t HW,
                    int n, double al, double be, double* dx, double* t) {
  lrn_bwd_f64(x, s, sc, dy, C, HW, n, al, be, dx, t);
}

void check_pool(const PoolGeom& g) {
  if (g.P < 0 || g.H < 1 || g.W < 1) throw Error("maxpool2d: empty or negative input shape");
  if (g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1 || g.ph < 0 || g.pw < 0)
    throw Error("maxpool2d: kernel and stride must be >= 1, padding >= 0");
  if (2 * g.ph > g.kh || 2 * g.pw > g.kw) throw Error("maxpool2d: padding must be at most half the kernel size");
  if (g.OH() < 1 || g.OW() < 1) throw Error("maxpool2d: the output would be empty");
  if (g.H * g.W > INT32_MAX) throw Error("maxpool2d: planes larger than 2^31 elements are not supported");
}

// One plane, one output row at a time: the window's taps are visited in row-major order, each as
// a loop over the output columns (independent, so it vectorises); a tap wins only when strictly
// greater or NaN, so ties keep the first maximum. As PyTorch: best starts at -inf and the index at
// the window's first in-bounds element. best/at: scratch of OW values.
// The 2x2, stride 2, unpadded window (VGG's pool), one output row per step: the four taps in
// row-major order with the same win rule; the stride-2 loads vectorise as de-interleaving loads.
template <class T>
PYADR_INLINE void maxpool_plane_2x2(const PoolGeom& g, const T* PYADR_RESTRICT xp, T* PYADR_RESTRICT yp,
                                    int32_t* PYADR_RESTRICT ap) {
  const int64_t W = g.W, OH = g.OH(), OW = g.OW();
  for (int64_t oh = 0; oh < OH; ++oh) {
    const T* PYADR_RESTRICT r0 = xp + 2 * oh * W;
    const T* PYADR_RESTRICT r1 = r0 + W;
    T* PYADR_RESTRICT y = yp + oh * OW;
    const int32_t base = static_cast<int32_t>(2 * oh * W);
    if (ap) {
      int32_t* PYADR_RESTRICT a = ap + oh * OW;
      for (int64_t ow = 0; ow < OW; ++ow) {
        // best starts at the first tap (it wins against -inf unless it is -inf itself, which
        // leaves the same value and index)
        T best = r0[2 * ow];
        int32_t at = base + static_cast<int32_t>(2 * ow);
        const T v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
        bool win = v1 > best || v1 != v1;
        best = win ? v1 : best;
        at = win ? at + 1 : at;
        win = v2 > best || v2 != v2;
        best = win ? v2 : best;
        at = win ? base + static_cast<int32_t>(W + 2 * ow) : at;
        win = v3 > best || v3 != v3;
        best = win ? v3 : best;
        at = win ? base + static_cast<int32_t>(W + 2 * ow + 1) : at;
        y[ow] = best;
        a[ow] = at;
      }
    } else {
      for (int64_t ow = 0; ow < OW; ++ow) {
        T best = r0[2 * ow];
        const T v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
        best = (v1 > best || v1 != v1) ? v1 : best;
        best = (v2 > best || v2 != v2) ? v2 : best;
        best = (v3 > best || v3 != v3) ? v3 : best;
        y[ow] = best;
      }
    }
  }
}

// One window by scalar code, taps in row-major order (the edges of the 3x3 path).
template <class T>
PYADR_INLINE void maxpool_window(const PoolGeom& g, const T* xp, int64_t oh, int64_t ow, T& best_out,
                                 int32_t& at_out) {
  const int64_t h0 = std::max<int64_t>(oh * g.sh - g.ph, 0), h1 = std::min(oh * g.sh - g.ph + g.kh, g.H);
  const int64_t w0 = std::max<int64_t>(ow * g.sw - g.pw, 0), w1 = std::min(ow * g.sw - g.pw + g.kw, g.W);
  T best = -std::numeric_limits<T>::infinity();
  int32_t at = static_cast<int32_t>(h0 * g.W + w0);
  for (int64_t i = h0; i < h1; ++i)
    for (int64_t j = w0; j < w1; ++j) {
      const T v = xp[i * g.W + j];
      if (v > best || v != v) {
        best = v;
        at = static_cast<int32_t>(i * g.W + j);
      }
    }
  best_out = best;
  at_out = at;
}

// The 3x3, stride 2, padding 1 window (CifarNet's pool): interior columns with the nine taps
// unrolled in registers (the stride-2 loads vectorise), edge columns by maxpool_window. A row
// clipped by the padding is replaced by a repeat of its valid neighbour: visiting the same row
// twice in a row leaves (best, at) unchanged under the win rule, NaN included.
template <class T>
PYADR_INLINE void maxpool_plane_3x3s2(const PoolGeom& g, const T* PYADR_RESTRICT xp, T* PYADR_RESTRICT yp,
                                      int32_t* PYADR_RESTRICT ap) {
  const int64_t H = g.H, W = g.W, OH = g.OH(), OW = g.OW();
  const int64_t ow_hi = W >= 2 ? std::min<int64_t>(OW, (W - 2) / 2 + 1) : 1;  // 2ow + 1 <= W - 1
  for (int64_t oh = 0; oh < OH; ++oh) {
    const int64_t top = 2 * oh - 1;
    const int64_t h0 = std::max<int64_t>(top, 0), h1 = std::min<int64_t>(top + 3, H);
    int64_t r[3];
    if (h1 - h0 == 3) {
      r[0] = h0, r[1] = h0 + 1, r[2] = h0 + 2;
    } else if (h1 - h0 == 2) {
      if (top < 0) r[0] = h0, r[1] = h0, r[2] = h0 + 1;
      else r[0] = h0, r[1] = h0 + 1, r[2] = h0 + 1;
    } else {
      r[0] = r[1] = r[2] = h0;
    }
    const T* PYADR_RESTRICT x0 = xp + r[0] * W;
    const T* PYADR_RESTRICT x1 = xp + r[1] * W;
    const T* PYADR_RESTRICT x2 = xp + r[2] * W;
    const int32_t b0 = static_cast<int32_t>(r[0] * W), b1 = static_cast<int32_t>(r[1] * W),
                  b2 = static_cast<int32_t>(r[2] * W);
    T* PYADR_RESTRICT y = yp + oh * OW;
    int32_t* PYADR_RESTRICT a = ap ? ap + oh * OW : nullptr;
    {
      int32_t at0;
      maxpool_window(g, xp, oh, 0, y[0], at0);
      if (a) a[0] = at0;
    }
    for (int64_t ow = 1; ow < ow_hi; ++ow) {
      const int64_t c = 2 * ow - 1;
      T best = x0[c];
      int32_t at = b0 + static_cast<int32_t>(c);
#define PYADR_TAP(row, base, dc)                                  \
  {                                                               \
    const T v = row[c + dc];                                      \
    const bool win = v > best || v != v;                          \
    best = win ? v : best;                                        \
    at = win ? base + static_cast<int32_t>(c + dc) : at;          \
  }
      PYADR_TAP(x0, b0, 1) PYADR_TAP(x0, b0, 2)
      PYADR_TAP(x1, b1, 0) PYADR_TAP(x1, b1, 1) PYADR_TAP(x1, b1, 2)
      PYADR_TAP(x2, b2, 0) PYADR_TAP(x2, b2, 1) PYADR_TAP(x2, b2, 2)
#undef PYADR_TAP
      y[ow] = best;
      if (a) a[ow] = at;
    }
    for (int64_t ow = ow_hi; ow < OW; ++ow) {
      int32_t at;
      maxpool_window(g, xp, oh, ow, y[ow], at);
      if (a) a[ow] = at;
    }
  }
}

template <class T>
PYADR_INLINE void maxpool_plane(const PoolGeom& g, const T* PYADR_RESTRICT xp, T* PYADR_RESTRICT yp,
                                int32_t* PYADR_RESTRICT ap, T* PYADR_RESTRICT best, int32_t* PYADR_RESTRICT at) {
  if (g.kh == 3 && g.kw == 3 && g.sh == 2 && g.sw == 2 && g.ph == 1 && g.pw == 1) {
    maxpool_plane_3x3s2(g, xp, yp, ap);
    return;
  }
  if (g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0) {
    maxpool_plane_2x2(g, xp, yp, ap);
    return;
  }
  const int64_t H = g.H, W = g.W, OH = g.OH(), OW = g.OW(), sw = g.sw;
  // Per tap column j: the output columns [lo[j], hi[j]) whose input column ow*sw - pw + j lies in
  // [0, W) (computed once per plane; kw is small, larger kernels take the slow path below).
  constexpr int64_t kMaxTaps = 16;
  int64_t lo[kMaxTaps], hi[kMaxTaps];
  const int64_t taps = std::min<int64_t>(g.kw, kMaxTaps);
  auto col_range = [&](int64_t j, int64_t& l, int64_t& h) {
    const int64_t off = j - g.pw;
    l = off >= 0 ? 0 : (-off + sw - 1) / sw;
    h = W - 1 - off < 0 ? 0 : std::min<int64_t>(OW, (W - 1 - off) / sw + 1);
  };
  for (int64_t j = 0; j < taps; ++j) col_range(j, lo[j], hi[j]);
  for (int64_t oh = 0; oh < OH; ++oh) {
    const int64_t h0 = std::max<int64_t>(oh * g.sh - g.ph, 0), h1 = std::min(oh * g.sh - g.ph + g.kh, H);
    for (int64_t ow = 0; ow < OW; ++ow) {
      best[ow] = -std::numeric_limits<T>::infinity();
      at[ow] = static_cast<int32_t>(h0 * W + std::max<int64_t>(ow * sw - g.pw, 0));
    }
    for (int64_t i = h0; i < h1; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        // columns ow whose tap j reads input column c = ow*sw - pw + j inside [0, W)
        const int64_t off = j - g.pw;
        int64_t l, h;
        if (j < taps) {
          l = lo[j];
          h = hi[j];
        } else {
          col_range(j, l, h);
        }
        const T* row = xp + i * W + off;
        const int32_t base = static_cast<int32_t>(i * W + off);
        for (int64_t ow = l; ow < h; ++ow) {
          const T v = row[ow * sw];
          const bool win = v > best[ow] || v != v;
          best[ow] = win ? v : best[ow];
          at[ow] = win ? base + static_cast<int32_t>(ow * sw) : at[ow];
        }
      }
    }
    for (int64_t ow = 0; ow < OW; ++ow) yp[oh * OW + ow] = best[ow];
    if (ap)
      for (int64_t ow = 0; ow < OW; ++ow) ap[oh * OW + ow] = at[ow];
  }
}

PYADR_CLONES void maxpool_plane_f32(const PoolGeom& g, const float* x, float* y, int32_t* a, float* b, int32_t* t) {
  maxpool_plane(g, x, y, a, b, t);
}
PYADR_CLONES void maxpool_plane_f64(const PoolGeom& g, const double* x, double* y, int32_t* a, double* b,
                                   int32_t* t) {
  maxpool_plane(g, x, y, a, b, t);
}
inline void maxpool_plane_any(const PoolGeom& g, const float* x, float* y, int32_t* a, float* b, int32_t* t) {
  maxpool_plane_f32(g, x, y, a, b, t);
}
inline void maxpool_plane_any(const PoolGeom& g, const double* x, double* y, int32_t* a, double* b, int32_t* t) {
  maxpool_plane_f64(g, x, y, a, b, t);
}

}  // namespace

template <class T>
void maxpool2d_forward(const PoolGeom& g, const T* x, T* y, int32_t* arg) {
  check_pool(g);
  const int64_t HW = g.H * g.W, OHW = g.OH() * g.OW();
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(detail::threads_for(g.P))
#endif
  {
    std::vector<T> best;
    std::vector<int32_t> at;
    errors.run([&] {
      best.resize(static_cast<size_t>(g.OW()));
      at.resize(static_cast<size_t>(g.OW()));
    });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t p = 0; p < g.P; ++p)
      errors.run([&] {
        maxpool_plane_any(g, x + p * HW, y + p * OHW, arg ? arg + p * OHW : nullptr, best.data(), at.data());
      });
  }
  errors.rethrow();
}

template <class T>
void maxpool2d_backward(const PoolGeom& g, const T* dy, const int32_t* arg, T* dx) {
  check_pool(g);
  const int64_t HW = g.H * g.W, OHW = g.OH() * g.OW();
#ifdef _OPENMP
#pragma omp parallel for num_threads(detail::threads_for(g.P)) schedule(static)
#endif
  for (int64_t p = 0; p < g.P; ++p) {
    T* dp = dx + p * HW;
    for (int64_t i = 0; i < HW; ++i) dp[i] = T(0);
    const T* g_out = dy + p * OHW;
    const int32_t* ap = arg + p * OHW;
    for (int64_t o = 0; o < OHW; ++o) dp[ap[o]] += g_out[o];
  }
}

namespace {
// body(b, scratch) for every image b < B, images over the threads, one scratch of `scratch`
// values per thread.
template <class T, class F>
void for_each_image(int64_t B, int64_t scratch, F body) {
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(detail::threads_for(B))
#endif
  {
    std::vector<T> buf;
    errors.run([&] { buf.resize(static_cast<size_t>(scratch)); });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t b = 0; b < B; ++b) errors.run([&] { body(b, buf.data()); });
  }
  errors.rethrow();
}
}  // namespace

template <class T>
void lrn_forward(int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, T k, const T* x, T* y, T* s, T* scale) {
  if (B < 0 || C < 1 || HW < 1) throw Error("lrn: empty or negative input shape");
  if (size < 1) throw Error("lrn: size must be >= 1");
  if (!s) throw Error("lrn: s must not be null");
  for_each_image<T>(B, C * HW, [&](int64_t b, T* sq) {
    const int64_t o = b * C * HW;
    lrn_fwd(x + o, C, HW, size, alpha, beta, k, y + o, s + o, scale ? scale + o : nullptr, sq);
  });
}

template <class T>
void lrn_backward(int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, const T* x, const T* s,
                  const T* scale, const T* dy, T* dx) {
  if (B < 0 || C < 1 || HW < 1) throw Error("lrn: empty or negative input shape");
  if (size < 1) throw Error("lrn: size must be >= 1");
  for_each_image<T>(B, C * HW, [&](int64_t b, T* t) {
    const int64_t o = b * C * HW;
    lrn_bwd(x + o, s + o, scale + o, dy + o, C, HW, size, alpha, beta, dx + o, t);
  });
}

namespace {
constexpr int64_t kReluChunk = 16384;  // values per parallel item (64 KB of float)

template <class F>
void for_each_chunk(int64_t n, F body) {
  if (n < 0) throw Error("relu: negative size");
  const int64_t nchunks = (n + kReluChunk - 1) / kReluChunk;
#ifdef _OPENMP
#pragma omp parallel for num_threads(detail::threads_for(nchunks)) schedule(static)
#endif
  for (int64_t c = 0; c < nchunks; ++c) body(c * kReluChunk, std::min(n, (c + 1) * kReluChunk));
}
}  // namespace

template <class T>
void relu_forward(int64_t n, const T* x, T* y) {
  for_each_chunk(n, [&](int64_t i0, int64_t i1) {
    const T* PYADR_RESTRICT in = x + i0;
    T* PYADR_RESTRICT out = y + i0;
    for (int64_t i = 0; i < i1 - i0; ++i) out[i] = in[i] < T(0) ? T(0) : in[i];
  });
}

template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx) {
  for_each_chunk(n, [&](int64_t i0, int64_t i1) {
    const T* PYADR_RESTRICT out = y + i0;
    const T* PYADR_RESTRICT g = dy + i0;
    T* PYADR_RESTRICT d = dx + i0;
    for (int64_t i = 0; i < i1 - i0; ++i) {
      const T gi = g[i];  // loaded unconditionally, so the select vectorises
      d[i] = out[i] > T(0) ? gi : T(0);
    }
  });
}

template void relu_forward<float>(int64_t, const float*, float*);
template void relu_forward<double>(int64_t, const double*, double*);
template void relu_backward<float>(int64_t, const float*, const float*, float*);
template void relu_backward<double>(int64_t, const double*, const double*, double*);

template void maxpool2d_forward<float>(const PoolGeom&, const float*, float*, int32_t*);
template void maxpool2d_forward<double>(const PoolGeom&, const double*, double*, int32_t*);
template void maxpool2d_backward<float>(const PoolGeom&, const float*, const int32_t*, float*);
template void maxpool2d_backward<double>(const PoolGeom&, const double*, const int32_t*, double*);
template void lrn_forward<float>(int64_t, int64_t, int64_t, int, float, float, float, const float*, float*, float*,
                                 float*);
template void lrn_forward<double>(int64_t, int64_t, int64_t, int, double, double, double, const double*, double*,
                                  double*, double*);
template void lrn_backward<float>(int64_t, int64_t, int64_t, int, float, float, const float*, const float*,
                                  const float*, const float*, float*);
template void lrn_backward<double>(int64_t, int64_t, int64_t, int, double, double, const double*, const double*,
                                   const double*, const double*, double*);

}  // namespace pyadr
