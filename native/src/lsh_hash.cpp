// Sub-vector projections and hash keys (see lsh_hash.hpp). The projection is the inner loop of
// hashing, N*K*H multiply-adds per layer: several rows at a time against a fixed-width block of
// planes, with the accumulators in vector registers; the sum over k runs in order.
#include "lsh_hash.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace pyadr {
namespace detail {
namespace {

// RB rows at a time, HB hashes as NV vectors of 32 bytes: RB * NV accumulators stay in registers.
template <class T, int HB>
PYADR_INLINE void project_impl(const T* const* PYADR_RESTRICT rows, int64_t R, int64_t Lj,
                               const T* PYADR_RESTRICT Pp, T* PYADR_RESTRICT proj) {
  constexpr int VL = 32 / sizeof(T);
  constexpr int NV = HB / VL;
  constexpr int RB = NV == 1 ? 8 : NV == 2 ? 6 : NV == 4 ? 2 : 1;
  typedef T V __attribute__((vector_size(32)));
  int64_t r = 0;
  for (; r < R; r += RB) {
    const int rb = static_cast<int>(std::min<int64_t>(RB, R - r));
    const T* s[RB];
    for (int i = 0; i < RB; ++i) s[i] = rows[r + (i < rb ? i : 0)];
    V acc[RB][NV];
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = V{};
    for (int64_t k = 0; k < Lj; ++k) {
      V pv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) std::memcpy(&pv[v], Pp + k * HB + v * VL, sizeof(V));
#pragma GCC unroll 8
      for (int i = 0; i < RB; ++i) {
        const T a = s[i][k];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[i][v] += a * pv[v];
      }
    }
    for (int i = 0; i < rb; ++i)
      for (int v = 0; v < NV; ++v) std::memcpy(proj + (r + i) * HB + v * VL, &acc[i][v], sizeof(V));
  }
}

#define PYADR_PROJECT(T, HB)                                                                        \
  PYADR_CLONES void project_##T##_##HB(const T* const* rows, int64_t R, int64_t Lj, const T* Pp, T* proj) { \
    project_impl<T, HB>(rows, R, Lj, Pp, proj);                                                     \
  }
PYADR_PROJECT(float, 8)
PYADR_PROJECT(float, 16)
PYADR_PROJECT(float, 32)
PYADR_PROJECT(float, 64)
PYADR_PROJECT(double, 8)
PYADR_PROJECT(double, 16)
PYADR_PROJECT(double, 32)
PYADR_PROJECT(double, 64)
#undef PYADR_PROJECT

}  // namespace

template <>
void lsh_project<float>(const float* const* rows, int64_t R, int64_t Lj, const float* Pp, int HB, float* proj) {
  switch (HB) {
    case 8: return project_float_8(rows, R, Lj, Pp, proj);
    case 16: return project_float_16(rows, R, Lj, Pp, proj);
    case 32: return project_float_32(rows, R, Lj, Pp, proj);
    default: return project_float_64(rows, R, Lj, Pp, proj);
  }
}

template <>
void lsh_project<double>(const double* const* rows, int64_t R, int64_t Lj, const double* Pp, int HB,
                         double* proj) {
  switch (HB) {
    case 8: return project_double_8(rows, R, Lj, Pp, proj);
    case 16: return project_double_16(rows, R, Lj, Pp, proj);
    case 32: return project_double_32(rows, R, Lj, Pp, proj);
    default: return project_double_64(rows, R, Lj, Pp, proj);
  }
}

template <class T>
void lsh_sign_keys(const T* proj, int64_t R, int HB, int H, uint64_t* keys) {
  for (int64_t r = 0; r < R; ++r) {
    uint64_t key = 0;
    const T* p = proj + r * HB;
    for (int h = 0; h < H; ++h) key |= static_cast<uint64_t>(p[h] > T(0)) << h;
    keys[r] = key;
  }
}

template <class T>
void lsh_l2_keys(const T* proj, int64_t R, int HB, int H, const T* offsets, T width, int64_t* q) {
  for (int64_t r = 0; r < R; ++r)
    for (int h = 0; h < H; ++h) {
      const T v = std::floor((proj[r * HB + h] + offsets[h]) / width);
      if (!(std::fabs(v) < T(9.0e18)))
        throw Error("l2 hashing: a projection is not finite or too large for the bucket width (x contains "
                    "NaN/Inf, or width is too small)");
      q[r * H + h] = static_cast<int64_t>(v);
    }
}

bool pack_l2_keys(const int64_t* q, int64_t R, int H, uint64_t* keys) {
  const int bits = 64 / H;
  const int64_t lo = bits >= 63 ? INT64_MIN / 2 : -(int64_t(1) << (bits - 1));
  const int64_t hi = bits >= 63 ? INT64_MAX / 2 : (int64_t(1) << (bits - 1)) - 1;
  for (int64_t r = 0; r < R; ++r) {
    uint64_t key = 0;
    for (int h = 0; h < H; ++h) {
      const int64_t v = q[r * H + h];
      if (v < lo || v > hi) return false;
      const uint64_t field = bits >= 64 ? static_cast<uint64_t>(v) : static_cast<uint64_t>(v - lo);
      key |= bits >= 64 ? field : field << (h * bits);
    }
    keys[r] = key;
  }
  return true;
}

template void lsh_sign_keys<float>(const float*, int64_t, int, int, uint64_t*);
template void lsh_sign_keys<double>(const double*, int64_t, int, int, uint64_t*);
template void lsh_l2_keys<float>(const float*, int64_t, int, int, const float*, float, int64_t*);
template void lsh_l2_keys<double>(const double*, int64_t, int, int, const double*, double, int64_t*);

}  // namespace detail
}  // namespace pyadr
