// Padded layouts, column runs and NCHW row stores: the im2col machinery without the matrix.
#include "layout.hpp"

#include <algorithm>
#include <climits>
#include <string>

namespace pyadr {

namespace detail {
namespace {

// dst[j * ds + i] = src[i * ss + j] (+ add[j]) for i < rows, j < cols, in 32 x 16 blocks: every
// cache line read or written is used whole while in L1 (the plain loops walked a 4 KB stride per
// element for VGG's 128 channels of 32 x 32, and cost 10-20 % of its layer).
template <class T>
PYADR_INLINE void transpose_impl(const T* PYADR_RESTRICT src, int64_t ss, int64_t rows, int64_t cols,
                                 T* PYADR_RESTRICT dst, int64_t ds, const T* add) {
  constexpr int64_t BI = 32, BJ = 16;
  for (int64_t i0 = 0; i0 < rows; i0 += BI) {
    const int64_t i1 = std::min(rows, i0 + BI);
    for (int64_t j0 = 0; j0 < cols; j0 += BJ) {
      const int64_t j1 = std::min(cols, j0 + BJ);
      for (int64_t j = j0; j < j1; ++j) {
        const T a = add ? add[j] : T(0);
        T* d = dst + j * ds;
        const T* s = src + j;
        for (int64_t i = i0; i < i1; ++i) d[i] = s[i * ss] + a;
      }
    }
  }
}
PYADR_CLONES void transpose_f32(const float* src, int64_t ss, int64_t rows, int64_t cols, float* dst, int64_t ds,
                                const float* add) {
  transpose_impl(src, ss, rows, cols, dst, ds, add);
}
PYADR_CLONES void transpose_f64(const double* src, int64_t ss, int64_t rows, int64_t cols, double* dst,
                                int64_t ds, const double* add) {
  transpose_impl(src, ss, rows, cols, dst, ds, add);
}
inline void transpose(const float* src, int64_t ss, int64_t rows, int64_t cols, float* dst, int64_t ds,
                      const float* add = nullptr) {
  transpose_f32(src, ss, rows, cols, dst, ds, add);
}
inline void transpose(const double* src, int64_t ss, int64_t rows, int64_t cols, double* dst, int64_t ds,
                      const double* add = nullptr) {
  transpose_f64(src, ss, rows, cols, dst, ds, add);
}

}  // namespace

Layout make_layout(const ConvGeom& g, bool nhwc) {
  Layout l;
  l.nhwc = nhwc;
  l.B = g.B;
  l.C = g.C;
  l.Hp = g.H + 2 * g.ph;
  l.Wp = g.W + 2 * g.pw;
  if (nhwc) {
    l.sC = 1;
    l.sW = g.C;
    l.sH = l.Wp * g.C;
  } else {
    l.sW = 1;
    l.sH = l.Wp;
    l.sC = l.Hp * l.Wp;
  }
  l.sB = g.C * l.Hp * l.Wp;
  return l;
}

int64_t column_offset(const ConvGeom& g, const Layout& l, Order order, int64_t k) {
  int64_t c, i, j;
  if (order == Order::HWC) {
    c = k % g.C;
    const int64_t q = k / g.C;
    i = q / g.kw;
    j = q % g.kw;
  } else {
    j = k % g.kw;
    const int64_t q = k / g.kw;
    i = q % g.kh;
    c = q / g.kh;
  }
  return c * l.sC + i * g.dh * l.sH + j * g.dw * l.sW;
}

std::vector<Run> column_runs(const ConvGeom& g, const Layout& l, Order order, int64_t k0, int64_t k1) {
  std::vector<Run> runs;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t off = column_offset(g, l, order, k);
    if (!runs.empty() && runs.back().src + runs.back().len == off) {
      ++runs.back().len;
    } else {
      runs.push_back(Run{off, static_cast<int32_t>(k - k0), 1});
    }
  }
  return runs;
}

std::vector<Run> panel_runs(const std::vector<Run>& runs, int NR, int64_t panel) {
  std::vector<Run> pieces;
  for (const Run& u : runs) {
    for (int32_t t = 0; t < u.len;) {
      const int64_t c = int64_t(u.dst) + t;
      const int32_t len = static_cast<int32_t>(std::min<int64_t>(u.len - t, NR - c % NR));
      const int64_t dst = (c / NR) * panel + c % NR;
      if (dst > INT32_MAX) throw Error("internal: im2col tile too large for 32-bit run offsets");
      pieces.push_back(Run{u.src + t, static_cast<int32_t>(dst), len});
      t += len;
    }
  }
  return pieces;
}

bool layout_is_input(const ConvGeom& g, const Layout& l) {
  if (g.ph != 0 || g.pw != 0) return false;
  return !l.nhwc || g.C == 1 || (g.H == 1 && g.W == 1);
}

std::vector<int64_t> row_bases(const ConvGeom& g, const Layout& l) {
  std::vector<int64_t> bases(static_cast<size_t>(g.N()));
  int64_t n = 0;
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) bases[n++] = b * l.sB + oh * g.sh * l.sH + ow * g.sw * l.sW;
  return bases;
}

template <class T>
void pad_input(const ConvGeom& g, const Layout& l, const T* x, T* xp) {
  const int64_t HW = g.H * g.W;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for(g.B)) schedule(static)
#endif
  for (int64_t b = 0; b < g.B; ++b) {
    T* dst = xp + b * l.sB;
    const T* src = x + b * g.C * HW;
    if (l.nhwc) {
      // Zero only the border; each interior row (W, C) is the transpose of x's (C, W) at row h.
      std::memset(dst, 0, sizeof(T) * g.ph * l.sH);
      for (int64_t h = 0; h < g.H; ++h) {
        T* row = dst + (h + g.ph) * l.sH;
        std::memset(row, 0, sizeof(T) * g.pw * l.sW);
        std::memset(row + (g.pw + g.W) * l.sW, 0, sizeof(T) * g.pw * l.sW);
        transpose(src + h * g.W, HW, g.C, g.W, row + g.pw * l.sW, g.C);
      }
      std::memset(dst + (g.ph + g.H) * l.sH, 0, sizeof(T) * g.ph * l.sH);
    } else {
      std::memset(dst, 0, sizeof(T) * l.sB);
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t h = 0; h < g.H; ++h)
          std::memcpy(dst + c * l.sC + (h + g.ph) * l.sH + g.pw, src + c * HW + h * g.W, sizeof(T) * g.W);
    }
  }
}

template <class T>
void unpad_image(const ConvGeom& g, const Layout& l, int64_t b, const T* dxp, T* dx) {
  const int64_t HW = g.H * g.W;
  const T* src = dxp + b * l.sB;
  T* dst = dx + b * g.C * HW;
  if (l.nhwc) {
    for (int64_t h = 0; h < g.H; ++h) transpose(src + (h + g.ph) * l.sH + g.pw * l.sW, g.C, g.W, g.C, dst + h * g.W, HW);
  } else {
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t h = 0; h < g.H; ++h)
        std::memcpy(dst + c * HW + h * g.W, src + c * l.sC + (h + g.ph) * l.sH + g.pw, sizeof(T) * g.W);
  }
}

template <class T>
void store_rows_nchw(const ConvGeom& g, int64_t n0, int64_t R, const T* rows, const T* bias, T* y) {
  const int64_t P = g.P(), M = g.M;
  int64_t n = n0;
  while (n < n0 + R) {
    const int64_t b = n / P, pos = n % P;
    const int64_t len = std::min(n0 + R - n, P - pos);
    transpose(rows + (n - n0) * M, M, len, M, y + b * M * P + pos, P, bias);
    n += len;
  }
}

template <class T>
void load_rows_nchw(const ConvGeom& g, int64_t n0, int64_t R, const T* dy, T* rows) {
  const int64_t P = g.P(), M = g.M;
  int64_t n = n0;
  while (n < n0 + R) {
    const int64_t b = n / P, pos = n % P;
    const int64_t len = std::min(n0 + R - n, P - pos);
    transpose(dy + b * M * P + pos, P, M, len, rows + (n - n0) * M, M);
    n += len;
  }
}

#define PYADR_INSTANTIATE(T)                                                                    \
  template void pad_input<T>(const ConvGeom&, const Layout&, const T*, T*);                   \
  template void unpad_image<T>(const ConvGeom&, const Layout&, int64_t, const T*, T*);        \
  template void store_rows_nchw<T>(const ConvGeom&, int64_t, int64_t, const T*, const T*, T*); \
  template void load_rows_nchw<T>(const ConvGeom&, int64_t, int64_t, const T*, T*);
PYADR_INSTANTIATE(float)
PYADR_INSTANTIATE(double)
#undef PYADR_INSTANTIATE

}  // namespace detail
}  // namespace pyadr
