// Sub-vector projections and hash keys (see lsh_hash.hpp). The projection is the inner loop of
// hashing, N*K*H multiply-adds per layer: four rows at a time against a fixed-width block of
// planes, so the compiler keeps 4 x HB accumulators in vector registers.
#include "lsh_hash.hpp"

#include <cmath>
#include <string>

namespace pyadr {
namespace detail {
namespace {

template <class T, int HB>
PYADR_INLINE void project_impl(const T* PYADR_RESTRICT S, int64_t R, int64_t Lj, int64_t lds,
                               const T* PYADR_RESTRICT Pp, T* PYADR_RESTRICT proj) {
  int64_t r = 0;
  for (; r + 4 <= R; r += 4) {
    T a0[HB] = {}, a1[HB] = {}, a2[HB] = {}, a3[HB] = {};
    const T *s0 = S + r * lds, *s1 = s0 + lds, *s2 = s1 + lds, *s3 = s2 + lds;
    for (int64_t k = 0; k < Lj; ++k) {
      const T* p = Pp + k * HB;
      const T x0 = s0[k], x1 = s1[k], x2 = s2[k], x3 = s3[k];
      for (int h = 0; h < HB; ++h) {
        a0[h] += x0 * p[h];
        a1[h] += x1 * p[h];
        a2[h] += x2 * p[h];
        a3[h] += x3 * p[h];
      }
    }
    for (int h = 0; h < HB; ++h) {
      proj[(r + 0) * HB + h] = a0[h];
      proj[(r + 1) * HB + h] = a1[h];
      proj[(r + 2) * HB + h] = a2[h];
      proj[(r + 3) * HB + h] = a3[h];
    }
  }
  for (; r < R; ++r) {
    T a[HB] = {};
    const T* s = S + r * lds;
    for (int64_t k = 0; k < Lj; ++k)
      for (int h = 0; h < HB; ++h) a[h] += s[k] * Pp[k * HB + h];
    for (int h = 0; h < HB; ++h) proj[r * HB + h] = a[h];
  }
}

#define PYADR_PROJECT(T, HB)                                                                       \
  PYADR_CLONES void project_##T##_##HB(const T* S, int64_t R, int64_t Lj, int64_t lds, const T* Pp, \
                                       T* proj) {                                                  \
    project_impl<T, HB>(S, R, Lj, lds, Pp, proj);                                                  \
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
void lsh_project<float>(const float* S, int64_t R, int64_t Lj, int64_t lds, const float* Pp, int HB, float* proj) {
  switch (HB) {
    case 8: return project_float_8(S, R, Lj, lds, Pp, proj);
    case 16: return project_float_16(S, R, Lj, lds, Pp, proj);
    case 32: return project_float_32(S, R, Lj, lds, Pp, proj);
    default: return project_float_64(S, R, Lj, lds, Pp, proj);
  }
}

template <>
void lsh_project<double>(const double* S, int64_t R, int64_t Lj, int64_t lds, const double* Pp, int HB,
                         double* proj) {
  switch (HB) {
    case 8: return project_double_8(S, R, Lj, lds, Pp, proj);
    case 16: return project_double_16(S, R, Lj, lds, Pp, proj);
    case 32: return project_double_32(S, R, Lj, lds, Pp, proj);
    default: return project_double_64(S, R, Lj, lds, Pp, proj);
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

template void lsh_sign_keys<float>(const float*, int64_t, int, int, uint64_t*);
template void lsh_sign_keys<double>(const double*, int64_t, int, int, uint64_t*);
template void lsh_l2_keys<float>(const float*, int64_t, int, int, const float*, float, int64_t*);
template void lsh_l2_keys<double>(const double*, int64_t, int, int, const double*, double, int64_t*);

}  // namespace detail
}  // namespace pyadr
