// Padded layouts, column runs and NCHW row stores: the im2col machinery without the matrix.
#include "layout.hpp"

#include <algorithm>
#include <climits>
#include <string>

namespace pyadr {

namespace detail {

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
      std::memset(dst, 0, sizeof(T) * l.sB);
      for (int64_t h = 0; h < g.H; ++h)
        for (int64_t c = 0; c < g.C; ++c) {
          const T* s = src + c * HW + h * g.W;
          T* d = dst + (h + g.ph) * l.sH + g.pw * l.sW + c;
          for (int64_t w = 0; w < g.W; ++w) d[w * g.C] = s[w];
        }
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
    for (int64_t h = 0; h < g.H; ++h)
      for (int64_t c = 0; c < g.C; ++c) {
        const T* s = src + (h + g.ph) * l.sH + g.pw * l.sW + c;
        T* d = dst + c * HW + h * g.W;
        for (int64_t w = 0; w < g.W; ++w) d[w] = s[w * g.C];
      }
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
    const T* src = rows + (n - n0) * M;
    for (int64_t m = 0; m < M; ++m) {
      T* d = y + (b * M + m) * P + pos;
      const T bm = bias ? bias[m] : T(0);
      for (int64_t r = 0; r < len; ++r) d[r] = src[r * M + m] + bm;
    }
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
    T* dst = rows + (n - n0) * M;
    for (int64_t m = 0; m < M; ++m) {
      const T* s = dy + (b * M + m) * P + pos;
      for (int64_t r = 0; r < len; ++r) dst[r * M + m] = s[r];
    }
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
