// Padded input layouts and the column-offset "runs" that replace an explicit im2col matrix.
//
// A padded copy xp of x is NHWC (B, Hp, Wp, C) or NCHW (B, C, Hp, Wp). Row n = (b, oh, ow) of the
// virtual im2col matrix starts at row_base(n); its ordered column k sits at row_base(n) + off(k).
// Consecutive columns whose offsets are consecutive form a Run, copied with one memcpy.
#pragma once

#include <vector>

#include "common.hpp"

namespace pyadr {
namespace detail {

struct Run {
  int64_t src;   // offset from the row base in xp
  int32_t dst;   // position inside the gathered segment
  int32_t len;
};

struct Layout {
  bool nhwc = true;
  int64_t B = 0, C = 0, Hp = 0, Wp = 0;
  int64_t sB = 0, sC = 0, sH = 0, sW = 0;
  int64_t size() const { return B * C * Hp * Wp; }
};

Layout make_layout(const ConvGeom& g, bool nhwc);

// Offset of ordered column k (order HWC: k = (i*kw + j)*C + c; CHW: k = (c*kh + i)*kw + j).
int64_t column_offset(const ConvGeom& g, const Layout& l, Order order, int64_t k);
// Runs covering ordered columns [k0, k1).
std::vector<Run> column_runs(const ConvGeom& g, const Layout& l, Order order, int64_t k0, int64_t k1);

// The runs cut where they cross an NR-column panel, their dst rewritten to the position in a tile
// laid out as panels of `panel` values (gemm_panels): column c of tile row r lands at
// r * NR + (c / NR) * panel + c % NR. gather_runs(base, pieces, ..., tile + r * NR) then fills row r.
std::vector<Run> panel_runs(const std::vector<Run>& runs, int NR, int64_t panel);

inline int64_t row_base(const ConvGeom& g, const Layout& l, int64_t n) {
  const int64_t P = g.P();
  const int64_t b = n / P, r = n % P, oh = r / g.OW, ow = r % g.OW;
  return b * l.sB + oh * g.sh * l.sH + ow * g.sw * l.sW;
}

// row_base of every row n < N (one pass, no divisions per row): the offsets the reuse kernels
// look up many times per call.
std::vector<int64_t> row_bases(const ConvGeom& g, const Layout& l);

// True when x itself already has layout l (no padding, same memory order): no copy needed.
bool layout_is_input(const ConvGeom& g, const Layout& l);
// xp <- x with zero padding (parallel over images).
template <class T>
void pad_input(const ConvGeom& g, const Layout& l, const T* x, T* xp);
// x itself when it already has layout l, else a padded copy in `buf`.
template <class T>
const T* padded_input(const ConvGeom& g, const Layout& l, const T* x, Buffer<T>& buf) {
  if (layout_is_input(g, l)) return x;
  buf.resize(l.size());
  pad_input(g, l, x, buf.data());
  return buf.data();
}
// Image b of dx <- the interior of image b of dxp (the adjoint of pad_input): dx is NCHW (B, C, H, W).
template <class T>
void unpad_image(const ConvGeom& g, const Layout& l, int64_t b, const T* dxp, T* dx);

template <class T>
PYADR_INLINE void gather_runs(const T* base, const Run* runs, size_t nruns, T* PYADR_RESTRICT out) {
  for (size_t r = 0; r < nruns; ++r) {
    const Run& u = runs[r];
    if (u.len == 1) out[u.dst] = base[u.src];
    else std::memcpy(out + u.dst, base + u.src, sizeof(T) * static_cast<size_t>(u.len));
  }
}

// y (B, M, P) NCHW <- rows [n0, n0 + R) given row-major (R, M) plus bias.
template <class T>
void store_rows_nchw(const ConvGeom& g, int64_t n0, int64_t R, const T* rows, const T* bias, T* y);
// rows (R, M) <- dy (B, M, P) rows [n0, n0 + R).
template <class T>
void load_rows_nchw(const ConvGeom& g, int64_t n0, int64_t R, const T* dy, T* rows);

}  // namespace detail
}  // namespace pyadr
