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

namespace {

// floor((proj + off) / width), range-checked against +-2^(bits-1) (checked on the quotient t:
// lo <= floor(t) < hi <=> lo <= t < hi for integer bounds; false for NaN), biased and packed.
// Keys are injective over the valid range; the tuple path (lsh_l2_keys) takes the rest. float
// with H >= 2 (|values| < 2^31): vector lanes, floor by truncation and a correction; otherwise
// lane by lane with std::floor.
template <class T, int HB>
PYADR_INLINE bool l2_packed_impl(const T* PYADR_RESTRICT proj, int64_t R, int H, const T* offsets, T width,
                                 uint64_t* PYADR_RESTRICT keys) {
  const int bits = 64 / H;
  const int64_t bias = bits >= 63 ? INT64_MIN / 2 : -(int64_t(1) << (bits - 1));
  const T lo = static_cast<T>(bias), hi = -lo;  // powers of two, exact in T
  T off[HB];
  for (int h = 0; h < HB; ++h) off[h] = h < H ? offsets[h] : T(0);
  if (sizeof(T) == 4 && H >= 2) {
    typedef float V __attribute__((vector_size(32)));
    typedef int32_t VI __attribute__((vector_size(32)));
    constexpr int NV = HB / 8;
    V vo[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&vo[v], off + 8 * v, sizeof(V));
    const V vlo = V{} + static_cast<float>(lo), vhi = V{} + static_cast<float>(hi), vw = V{} + static_cast<float>(width);
    for (int64_t r = 0; r < R; ++r) {
      int32_t qi[HB];
      VI ok = VI{} - 1;
      for (int v = 0; v < NV; ++v) {
        V x;
        std::memcpy(&x, proj + r * HB + 8 * v, sizeof(V));
        const V t = (x + vo[v]) / vw;
        ok &= (t >= vlo) & (t < vhi);
        const V tc = ok ? t : V{};  // keep the conversion in range
        VI i = __builtin_convertvector(tc, VI);
        i += __builtin_convertvector(i, V) > tc;  // truncation -> floor (true is -1)
        std::memcpy(qi + 8 * v, &i, sizeof(VI));
      }
      int32_t all = -1;
      for (int l = 0; l < 8; ++l) all &= ok[l];
      if (!all) return false;
      uint64_t key = 0;
      for (int h = 0; h < H; ++h) key |= static_cast<uint64_t>(static_cast<int64_t>(qi[h]) - bias) << (h * bits);
      keys[r] = key;
    }
    return true;
  }
  for (int64_t r = 0; r < R; ++r) {
    const T* p = proj + r * HB;
    uint64_t key = 0;
    for (int h = 0; h < H; ++h) {
      const T v = std::floor((p[h] + off[h]) / width);
      if (!(v >= lo && v < hi)) return false;
      const int64_t iv = static_cast<int64_t>(v);
      key |= bits >= 64 ? static_cast<uint64_t>(iv) : static_cast<uint64_t>(iv - bias) << (h * bits);
    }
    keys[r] = key;
  }
  return true;
}

#define PYADR_L2PACK(T, HB)                                                                              \
  PYADR_CLONES bool l2_packed_##T##_##HB(const T* proj, int64_t R, int H, const T* o, T w, uint64_t* k) { \
    return l2_packed_impl<T, HB>(proj, R, H, o, w, k);                                                   \
  }
PYADR_L2PACK(float, 8)
PYADR_L2PACK(float, 16)
PYADR_L2PACK(float, 32)
PYADR_L2PACK(float, 64)
PYADR_L2PACK(double, 8)
PYADR_L2PACK(double, 16)
PYADR_L2PACK(double, 32)
PYADR_L2PACK(double, 64)
#undef PYADR_L2PACK

}  // namespace

template <>
bool lsh_l2_packed_keys<float>(const float* proj, int64_t R, int HB, int H, const float* offsets, float width,
                               uint64_t* keys) {
  switch (HB) {
    case 8: return l2_packed_float_8(proj, R, H, offsets, width, keys);
    case 16: return l2_packed_float_16(proj, R, H, offsets, width, keys);
    case 32: return l2_packed_float_32(proj, R, H, offsets, width, keys);
    default: return l2_packed_float_64(proj, R, H, offsets, width, keys);
  }
}

template <>
bool lsh_l2_packed_keys<double>(const double* proj, int64_t R, int HB, int H, const double* offsets, double width,
                                uint64_t* keys) {
  switch (HB) {
    case 8: return l2_packed_double_8(proj, R, H, offsets, width, keys);
    case 16: return l2_packed_double_16(proj, R, H, offsets, width, keys);
    case 32: return l2_packed_double_32(proj, R, H, offsets, width, keys);
    default: return l2_packed_double_64(proj, R, H, offsets, width, keys);
  }
}

template void lsh_sign_keys<float>(const float*, int64_t, int, int, uint64_t*);
template void lsh_sign_keys<double>(const double*, int64_t, int, int, uint64_t*);
template void lsh_l2_keys<float>(const float*, int64_t, int, int, const float*, float, int64_t*);
template void lsh_l2_keys<double>(const double*, int64_t, int, int, const double*, double, int64_t*);

}  // namespace detail
}  // namespace pyadr
