// Training helpers for pyadr.nn's non-convolution layers on NCHW arrays (core.hpp "nn ops"):
// max-pooling with its argmax, and local response normalisation across channels. NumPy versions
// of both (pyadr/nn/pooling.py, normalization.py) are the references they are tested against.
//
//   maxpool2d: planes (P = B*C, H, W) -> (P, OH, OW); arg = flat index (i*W + j) in the plane of
//              the first maximum in row-major window order (PyTorch's tie rule); padding never
//              wins; NaN propagates. Backward: dx[p, arg] += dy (one plane per thread).
//              Stride 2 on even widths (every model's pool): rows pooled first, flat over the
//              plane, then columns (maxpool_plane_s2_rows); other shapes window by window.
//   lrn:       s_c = k + alpha/n * sum_{c' in [c - n/2, c + (n-1)/2]} x_c'^2, y_c = x_c * s_c^-beta,
//              a window sum along channels, in blocks of 64 pixels of one image (C x 64 scratch
//              in cache), blocks over the threads: x read once, y written once.
//              Backward: dx_c = dy_c s_c^-beta - 2 alpha beta/n x_c sum_{c': c in window(c')} t_c',
//              t = dy x s^(-beta-1), from the stored s and s^-beta or (lrn_backward_recompute,
//              pyadr.nn's path) rebuilding them per block from x: x, dy read once, dx written once.
//   relu:      y = x < 0 ? 0 : x; dx = y > 0 ? dy : 0, in cache-sized chunks over the threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.hpp"
#include "pyadr/nn_fast.hpp"

namespace pyadr {
namespace {

constexpr int64_t kLrnBlock = 64;  // pixels per block: C * 64 values per scratch array stay in L1/L2

// s^-beta over n values; beta = 0.75 (the usual value) by two square roots instead of pow.
template <class T>
PYADR_INLINE void inverse_power(const T* PYADR_RESTRICT s, int64_t n, T beta, T* PYADR_RESTRICT out) {
  if (beta == T(0.75)) {
    for (int64_t p = 0; p < n; ++p) {
      const T r = std::sqrt(s[p]);
      out[p] = T(1) / (r * std::sqrt(r));
    }
  } else {
    for (int64_t p = 0; p < n; ++p) out[p] = std::pow(s[p], -beta);
  }
}

// acc[p] = sum_{c' in [c - lo, c + hi] within [0, C)} in[c' * kLrnBlock + p], p < len, in
// increasing c' (a direct sum, not a running one: no cancellation drift).
template <class T>
PYADR_INLINE void window_sum(const T* PYADR_RESTRICT in, int64_t C, int64_t c, int lo, int hi, int64_t len,
                             T* PYADR_RESTRICT acc) {
  const int64_t c0 = std::max<int64_t>(0, c - lo), c1 = std::min<int64_t>(C - 1, c + hi);
  const T* PYADR_RESTRICT first = in + c0 * kLrnBlock;
  for (int64_t p = 0; p < len; ++p) acc[p] = first[p];
  for (int64_t d = c0 + 1; d <= c1; ++d) {
    const T* PYADR_RESTRICT src = in + d * kLrnBlock;
    for (int64_t p = 0; p < len; ++p) acc[p] += src[p];
  }
}

// S, SC (C, kLrnBlock) <- s = k + alpha/n * window sum of x^2 and s^-beta for the block's len
// pixels of one image (x at the block's first pixel, channel stride HW); sq: scratch of the same size.
template <class T>
PYADR_INLINE void lrn_block_s(const T* PYADR_RESTRICT x, int64_t C, int64_t HW, int64_t len, int n, T alpha,
                              T beta, T k, T* PYADR_RESTRICT S, T* PYADR_RESTRICT SC, T* PYADR_RESTRICT sq) {
  for (int64_t c = 0; c < C; ++c) {
    const T* PYADR_RESTRICT xc = x + c * HW;
    T* PYADR_RESTRICT q = sq + c * kLrnBlock;
    for (int64_t p = 0; p < len; ++p) q[p] = xc[p] * xc[p];
  }
  const T a = alpha / T(n);
  for (int64_t c = 0; c < C; ++c) {
    T* PYADR_RESTRICT sc = S + c * kLrnBlock;
    window_sum(sq, C, c, n / 2, (n - 1) / 2, len, sc);
    for (int64_t p = 0; p < len; ++p) sc[p] = k + a * sc[p];
    inverse_power(sc, len, beta, SC + c * kLrnBlock);
  }
}

// One block of pixels of one image: y = x * s^-beta; s and s^-beta also stored when s_out/sc_out
// are not null (the C API's contract). scratch: 3 * C * kLrnBlock values.
template <class T>
PYADR_INLINE void lrn_block_forward(const T* x, int64_t C, int64_t HW, int64_t len, int n, T alpha, T beta, T k,
                                    T* y, T* s_out, T* sc_out, T* scratch) {
  T* S = scratch;
  T* SC = S + C * kLrnBlock;
  lrn_block_s(x, C, HW, len, n, alpha, beta, k, S, SC, SC + C * kLrnBlock);
  for (int64_t c = 0; c < C; ++c) {
    const T* PYADR_RESTRICT xc = x + c * HW;
    const T* PYADR_RESTRICT sc = SC + c * kLrnBlock;
    T* PYADR_RESTRICT yc = y + c * HW;
    for (int64_t p = 0; p < len; ++p) yc[p] = xc[p] * sc[p];
    if (s_out) std::copy(S + c * kLrnBlock, S + c * kLrnBlock + len, s_out + c * HW);
    if (sc_out) std::copy(sc, sc + len, sc_out + c * HW);
  }
}

// One block of the backward: dx_c = dy_c sc_c - 2 alpha beta/n x_c sum_{c': c in window(c')} t_c',
// t = dy x sc / s; s and sc read from s_in/sc_in, or rebuilt from x when they are null.
template <class T>
PYADR_INLINE void lrn_block_backward(const T* x, const T* dy, const T* s_in, const T* sc_in, int64_t C, int64_t HW,
                                     int64_t len, int n, T alpha, T beta, T k, T* dx, T* scratch) {
  T* S = scratch;
  T* SC = S + C * kLrnBlock;
  T* t = SC + C * kLrnBlock;
  if (s_in) {
    for (int64_t c = 0; c < C; ++c) {
      std::copy(s_in + c * HW, s_in + c * HW + len, S + c * kLrnBlock);
      std::copy(sc_in + c * HW, sc_in + c * HW + len, SC + c * kLrnBlock);
    }
  } else {
    lrn_block_s(x, C, HW, len, n, alpha, beta, k, S, SC, t);
  }
  for (int64_t c = 0; c < C; ++c) {
    const T* PYADR_RESTRICT xc = x + c * HW;
    const T* PYADR_RESTRICT gc = dy + c * HW;
    const T* PYADR_RESTRICT sv = S + c * kLrnBlock;
    const T* PYADR_RESTRICT sc = SC + c * kLrnBlock;
    T* PYADR_RESTRICT tc = t + c * kLrnBlock;
    for (int64_t p = 0; p < len; ++p) tc[p] = gc[p] * xc[p] * sc[p] / sv[p];
  }
  const T coef = T(2) * alpha * beta / T(n);
  alignas(64) T acc[kLrnBlock];
  for (int64_t c = 0; c < C; ++c) {
    // c receives from every c' whose window holds c: c' in [c - (n-1)/2, c + n/2]
    window_sum(t, C, c, (n - 1) / 2, n / 2, len, acc);
    const T* PYADR_RESTRICT xc = x + c * HW;
    const T* PYADR_RESTRICT gc = dy + c * HW;
    const T* PYADR_RESTRICT sc = SC + c * kLrnBlock;
    T* PYADR_RESTRICT d = dx + c * HW;
    for (int64_t p = 0; p < len; ++p) d[p] = gc[p] * sc[p] - coef * xc[p] * acc[p];
  }
}

PYADR_CLONES void lrn_fwd_f32(const float* x, int64_t C, int64_t HW, int64_t len, int n, float al, float be,
                              float k, float* y, float* s, float* sc, float* scratch) {
  lrn_block_forward(x, C, HW, len, n, al, be, k, y, s, sc, scratch);
}
PYADR_CLONES void lrn_fwd_f64(const double* x, int64_t C, int64_t HW, int64_t len, int n, double al, double be,
                              double k, double* y, double* s, double* sc, double* scratch) {
  lrn_block_forward(x, C, HW, len, n, al, be, k, y, s, sc, scratch);
}
PYADR_CLONES void lrn_bwd_f32(const float* x, const float* dy, const float* s, const float* sc, int64_t C,
                              int64_t HW, int64_t len, int n, float al, float be, float k, float* dx,
                              float* scratch) {
  lrn_block_backward(x, dy, s, sc, C, HW, len, n, al, be, k, dx, scratch);
}
PYADR_CLONES void lrn_bwd_f64(const double* x, const double* dy, const double* s, const double* sc, int64_t C,
                              int64_t HW, int64_t len, int n, double al, double be, double k, double* dx,
                              double* scratch) {
  lrn_block_backward(x, dy, s, sc, C, HW, len, n, al, be, k, dx, scratch);
}
inline void lrn_fwd(const float* x, int64_t C, int64_t HW, int64_t len, int n, float al, float be, float k, float* y,
                    float* s, float* sc, float* scratch) {
  lrn_fwd_f32(x, C, HW, len, n, al, be, k, y, s, sc, scratch);
}
inline void lrn_fwd(const double* x, int64_t C, int64_t HW, int64_t len, int n, double al, double be, double k,
                    double* y, double* s, double* sc, double* scratch) {
  lrn_fwd_f64(x, C, HW, len, n, al, be, k, y, s, sc, scratch);
}
inline void lrn_bwd(const float* x, const float* dy, const float* s, const float* sc, int64_t C, int64_t HW,
                    int64_t len, int n, float al, float be, float k, float* dx, float* scratch) {
  lrn_bwd_f32(x, dy, s, sc, C, HW, len, n, al, be, k, dx, scratch);
}
inline void lrn_bwd(const double* x, const double* dy, const double* s, const double* sc, int64_t C, int64_t HW,
                    int64_t len, int n, double al, double be, double k, double* dx, double* scratch) {
  lrn_bwd_f64(x, dy, s, sc, C, HW, len, n, al, be, k, dx, scratch);
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

// Stride 2 with an even W = 2 OW (the 2x2 and 3x3-pad-1 pools of every model here), separable:
// stage 1 pools each input row along W, flat over the whole plane (window j of the plane's
// H * OW row windows starts at input 2j - PAD: rows of 14 or 7 outputs are too short for SIMD,
// the plane is not), stage 2 pools stage 1's rows along H. The win rule (greater or NaN, taps in
// row-major order) gives the last NaN of a window, else its first maximum, and that is the same
// when rows are folded first: stage 1 keeps each row's, stage 2 the window's (rows in order).
// A window's left edge clipped by the padding (ow = 0, PAD = 1) is redone per row; the right
// edge never is (W = 2 OW). hv/hi: scratch of H * OW + 16 values and indices (padding read by
// stage 2's whole-vector rows, never used).
template <class T, int K, int PAD>
PYADR_INLINE void maxpool_plane_s2_rows(const PoolGeom& g, const T* PYADR_RESTRICT xp, T* PYADR_RESTRICT yp,
                                        int32_t* PYADR_RESTRICT ap, T* PYADR_RESTRICT hv,
                                        int32_t* PYADR_RESTRICT hi) {
  const int32_t H = static_cast<int32_t>(g.H), W = static_cast<int32_t>(g.W);
  const int32_t OH = static_cast<int32_t>(g.OH()), OW = static_cast<int32_t>(g.OW()), n = H * OW;
  for (int32_t j = PAD; j < n; ++j) {  // j < PAD would read before the plane; redone below
    const int32_t c = 2 * j - PAD;
    T best = xp[c];
    int32_t at = c;
    for (int t = 1; t < K; ++t) {
      const T v = xp[c + t];
      const bool win = v > best || v != v;
      best = win ? v : best;
      at = win ? c + t : at;
    }
    hv[j] = best;
    hi[j] = at;
  }
  if (PAD)
    for (int32_t i = 0; i < H; ++i) {  // ow = 0: taps PAD .. K-1 are columns 0 .. K-1-PAD
      const int32_t c = i * W;
      T best = xp[c];
      int32_t at = c;
      for (int t = 1; t < K - PAD && t < W; ++t) {
        const T v = xp[c + t];
        const bool win = v > best || v != v;
        best = win ? v : best;
        at = win ? c + t : at;
      }
      hv[i * OW] = best;
      hi[i * OW] = at;
    }
  // Stage 2, rows of OW <= kRow (14 and 7 here) as whole kRow-wide vectors: the lanes past the
  // row read stage 1's next row (or its padding) and land in the next output row, rewritten after,
  // or, for the plane's last rows, in tmp.
  constexpr int32_t kRow = 16;
  if (OW <= kRow) {
    alignas(64) T ty[kRow];
    alignas(64) int32_t ta[kRow];
    for (int32_t oh = 0; oh < OH; ++oh) {
      const int32_t r0 = std::max(2 * oh - PAD, 0), r1 = std::min(2 * oh - PAD + K, H);
      const bool direct = (oh * OW + kRow <= OH * OW) && ap;
      T* PYADR_RESTRICT y = direct ? yp + oh * OW : ty;
      int32_t* PYADR_RESTRICT a = direct ? ap + oh * OW : ta;
      const T* PYADR_RESTRICT v0 = hv + r0 * OW;
      const int32_t* PYADR_RESTRICT i0 = hi + r0 * OW;
      for (int32_t ow = 0; ow < kRow; ++ow) {
        y[ow] = v0[ow];
        a[ow] = i0[ow];
      }
      for (int32_t r = r0 + 1; r < r1; ++r) {
        const T* PYADR_RESTRICT v = hv + r * OW;
        const int32_t* PYADR_RESTRICT ix = hi + r * OW;
        for (int32_t ow = 0; ow < kRow; ++ow) {
          const bool win = v[ow] > y[ow] || v[ow] != v[ow];
          y[ow] = win ? v[ow] : y[ow];
          a[ow] = win ? ix[ow] : a[ow];
        }
      }
      if (!direct) {
        std::copy(ty, ty + OW, yp + oh * OW);
        if (ap) std::copy(ta, ta + OW, ap + oh * OW);
      }
    }
    return;
  }
  for (int32_t oh = 0; oh < OH; ++oh) {
    const int32_t r0 = std::max(2 * oh - PAD, 0), r1 = std::min(2 * oh - PAD + K, H);
    T* PYADR_RESTRICT y = yp + oh * OW;
    int32_t* PYADR_RESTRICT a = ap ? ap + oh * OW : nullptr;
    const T* PYADR_RESTRICT v0 = hv + r0 * OW;
    const int32_t* PYADR_RESTRICT i0 = hi + r0 * OW;
    for (int32_t ow = 0; ow < OW; ++ow) y[ow] = v0[ow];
    if (a)
      for (int32_t ow = 0; ow < OW; ++ow) a[ow] = i0[ow];
    for (int32_t r = r0 + 1; r < r1; ++r) {
      const T* PYADR_RESTRICT v = hv + r * OW;
      const int32_t* PYADR_RESTRICT ix = hi + r * OW;
      if (a) {
        for (int32_t ow = 0; ow < OW; ++ow) {
          const bool win = v[ow] > y[ow] || v[ow] != v[ow];
          y[ow] = win ? v[ow] : y[ow];
          a[ow] = win ? ix[ow] : a[ow];
        }
      } else {
        for (int32_t ow = 0; ow < OW; ++ow) y[ow] = (v[ow] > y[ow] || v[ow] != v[ow]) ? v[ow] : y[ow];
      }
    }
  }
}

// True when maxpool_plane_s2_rows applies (its scratch: H * OW values and indices per thread).
inline bool s2_rows_path(const PoolGeom& g) {
  const bool k2 = g.kh == 2 && g.kw == 2 && g.ph == 0 && g.pw == 0;
  const bool k3 = g.kh == 3 && g.kw == 3 && g.ph == 1 && g.pw == 1;
  return (k2 || k3) && g.sh == 2 && g.sw == 2 && g.W == 2 * g.OW();
}

template <class T>
PYADR_INLINE void maxpool_plane(const PoolGeom& g, const T* PYADR_RESTRICT xp, T* PYADR_RESTRICT yp,
                                int32_t* PYADR_RESTRICT ap, T* PYADR_RESTRICT best, int32_t* PYADR_RESTRICT at) {
  if (s2_rows_path(g)) {
    if (g.kh == 2) maxpool_plane_s2_rows<T, 2, 0>(g, xp, yp, ap, best, at);
    else maxpool_plane_s2_rows<T, 3, 1>(g, xp, yp, ap, best, at);
    return;
  }
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
      const int64_t n = s2_rows_path(g) ? g.H * g.OW() + 16 : g.OW();  // + a kRow of padding
      best.resize(static_cast<size_t>(n));
      at.resize(static_cast<size_t>(n));
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
// body(offset, len, scratch) for every block of kLrnBlock pixels of every image (offset: of the
// block's first value in the (B, C, HW) array), blocks over the threads, one scratch of
// 3 * C * kLrnBlock values per thread.
template <class T, class F>
void for_each_lrn_block(int64_t B, int64_t C, int64_t HW, F body) {
  const int64_t per_image = (HW + kLrnBlock - 1) / kLrnBlock, items = B * per_image;
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(detail::threads_for(items))
#endif
  {
    std::vector<T> buf;
    errors.run([&] { buf.resize(static_cast<size_t>(3 * C * kLrnBlock)); });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t i = 0; i < items; ++i)
      errors.run([&] {
        const int64_t b = i / per_image, p0 = (i % per_image) * kLrnBlock;
        body(b * C * HW + p0, std::min(kLrnBlock, HW - p0), buf.data());
      });
  }
  errors.rethrow();
}

void check_lrn(int64_t B, int64_t C, int64_t HW, int size) {
  if (B < 0 || C < 1 || HW < 1) throw Error("lrn: empty or negative input shape");
  if (size < 1) throw Error("lrn: size must be >= 1");
}
}  // namespace

// s and scale may be null (the training forward of pyadr.nn keeps neither: its backward is
// lrn_backward_recompute); otherwise they receive s and s^-beta.
template <class T>
void lrn_forward(int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, T k, const T* x, T* y, T* s, T* scale) {
  check_lrn(B, C, HW, size);
  for_each_lrn_block<T>(B, C, HW, [&](int64_t o, int64_t len, T* scratch) {
    lrn_fwd(x + o, C, HW, len, size, alpha, beta, k, y + o, s ? s + o : nullptr, scale ? scale + o : nullptr,
            scratch);
  });
}

template <class T>
void lrn_backward(int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, const T* x, const T* s,
                  const T* scale, const T* dy, T* dx) {
  check_lrn(B, C, HW, size);
  if (!s || !scale) throw Error("lrn_backward: s and scale must not be null");
  for_each_lrn_block<T>(B, C, HW, [&](int64_t o, int64_t len, T* scratch) {
    lrn_bwd(x + o, dy + o, s + o, scale + o, C, HW, len, size, alpha, beta, T(1), dx + o, scratch);
  });
}

template <class T>
void lrn_backward_recompute(int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, T k, const T* x,
                            const T* dy, T* dx) {
  check_lrn(B, C, HW, size);
  for_each_lrn_block<T>(B, C, HW, [&](int64_t o, int64_t len, T* scratch) {
    lrn_bwd(x + o, dy + o, nullptr, nullptr, C, HW, len, size, alpha, beta, k, dx + o, scratch);
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
template void lrn_backward_recompute<float>(int64_t, int64_t, int64_t, int, float, float, float, const float*,
                                            const float*, float*);
template void lrn_backward_recompute<double>(int64_t, int64_t, int64_t, int, double, double, double, const double*,
                                             const double*, double*);

}  // namespace pyadr
