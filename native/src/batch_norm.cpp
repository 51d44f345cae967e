// Batch normalisation forward/backward on NCHW viewed as (B, C, HW) (nn_fast.hpp), the kernel
// behind pyadr.nn.BatchNorm2d for NumPy arrays; its NumPy version (normalization.py) is the
// reference it is tested against (tests/test_nn_fast_ops.py).
//
//   forward:  per channel c (one thread each): pass 1 sum x -> mean (double), pass 2 sum
//             (x - T(mean))^2 -> var (double), pass 3 y = (x - m) s gamma + beta [, max(., 0)].
//             A channel's B*HW values are re-read from cache: DRAM sees x once and y once.
//   backward: per channel: pass 1 sum g and sum g * xhat (double), pass 2 dx; reads x, dy
//             (and y for the fused ReLU's mask) once from DRAM, writes dx once. xhat is never
//             stored: the forward keeps only m and s per channel.
#include <algorithm>
#include <cmath>

#include "common.hpp"
#include "pyadr/nn_fast.hpp"

// Double sums in SIMD lanes: the pragma allows the reassociation a vectorised reduction needs
// (deterministic for a given build and SIMD level); without OpenMP the loop stays sequential.
#ifdef _OPENMP
#define PYADR_BN_PRAGMA(x) _Pragma(#x)
#define PYADR_SIMD_SUM(a) PYADR_BN_PRAGMA(omp simd reduction(+ : a))
#define PYADR_SIMD_SUM2(a, b) PYADR_BN_PRAGMA(omp simd reduction(+ : a, b))
#else
#define PYADR_SIMD_SUM(a)
#define PYADR_SIMD_SUM2(a, b)
#endif

namespace pyadr {
namespace {

void check_bn(int64_t B, int64_t C, int64_t HW) {
  if (B < 1 || C < 1 || HW < 1) throw Error("batch_norm: B, C and HW must be >= 1");
}

// The statistics of one channel: its B runs of HW values, `stride` apart.
template <class T>
PYADR_INLINE void channel_stats(const T* x, int64_t B, int64_t HW, int64_t stride, double& mean, double& var) {
  double s = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    double sb = 0.0;
    PYADR_SIMD_SUM(sb)
    for (int64_t i = 0; i < HW; ++i) sb += static_cast<double>(r[i]);
    s += sb;
  }
  const double n = static_cast<double>(B * HW);
  mean = s / n;
  const T m = static_cast<T>(mean);
  double q = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    double qb = 0.0;
    PYADR_SIMD_SUM(qb)
    for (int64_t i = 0; i < HW; ++i) {
      const T d = r[i] - m;
      qb += static_cast<double>(d * d);
    }
    q += qb;
  }
  var = q / n;
}

template <class T>
PYADR_INLINE void channel_apply(const T* x, int64_t B, int64_t HW, int64_t stride, T m, T s, T gamma, T beta,
                                bool relu, T* y) {
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    T* PYADR_RESTRICT o = y + b * stride;
    if (relu) {
      for (int64_t i = 0; i < HW; ++i) {
        const T v = (r[i] - m) * s * gamma + beta;
        o[i] = v < T(0) ? T(0) : v;
      }
    } else {
      for (int64_t i = 0; i < HW; ++i) o[i] = (r[i] - m) * s * gamma + beta;
    }
  }
}

template <class T>
PYADR_INLINE void channel_grad_sums(const T* x, const T* dy, const T* y, int64_t B, int64_t HW, int64_t stride, T m,
                                    T s, double& sum_g, double& sum_gx) {
  double sg = 0.0, sgx = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    const T* PYADR_RESTRICT d = dy + b * stride;
    double bg = 0.0, bgx = 0.0;
    if (y) {
      const T* PYADR_RESTRICT o = y + b * stride;
      PYADR_SIMD_SUM2(bg, bgx)
      for (int64_t i = 0; i < HW; ++i) {
        const T di = d[i];
        const T g = o[i] > T(0) ? di : T(0);
        bg += static_cast<double>(g);
        bgx += static_cast<double>(g * ((r[i] - m) * s));
      }
    } else {
      PYADR_SIMD_SUM2(bg, bgx)
      for (int64_t i = 0; i < HW; ++i) {
        bg += static_cast<double>(d[i]);
        bgx += static_cast<double>(d[i] * ((r[i] - m) * s));
      }
    }
    sg += bg;
    sgx += bgx;
  }
  sum_g = sg;
  sum_gx = sgx;
}

template <class T>
PYADR_INLINE void channel_dx(const T* x, const T* dy, const T* y, int64_t B, int64_t HW, int64_t stride, T m, T s,
                             T n, T dbeta, T dgamma, T scale, T* dx) {
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    const T* PYADR_RESTRICT d = dy + b * stride;
    T* PYADR_RESTRICT o = dx + b * stride;
    if (y) {
      const T* PYADR_RESTRICT out = y + b * stride;
      for (int64_t i = 0; i < HW; ++i) {
        const T di = d[i];
        const T g = out[i] > T(0) ? di : T(0);
        o[i] = (n * g - dbeta - (r[i] - m) * s * dgamma) * scale;
      }
    } else {
      for (int64_t i = 0; i < HW; ++i) o[i] = (n * d[i] - dbeta - (r[i] - m) * s * dgamma) * scale;
    }
  }
}

// One channel's forward / backward, compiled per SIMD level.
template <class T>
PYADR_INLINE void forward_channel(const T* x, int64_t B, int64_t HW, int64_t stride, T gamma, T beta, double eps,
                                  bool training, double& mean, double& var, T& m_out, T& s_out, bool relu, T* y) {
  if (training) channel_stats(x, B, HW, stride, mean, var);
  const T m = static_cast<T>(mean);
  const T s = T(1) / std::sqrt(static_cast<T>(var) + static_cast<T>(eps));
  m_out = m;
  s_out = s;
  channel_apply(x, B, HW, stride, m, s, gamma, beta, relu, y);
}

template <class T>
PYADR_INLINE void backward_channel(const T* x, const T* dy, const T* y, int64_t B, int64_t HW, int64_t stride, T m,
                                   T s, T gamma, T* dx, T& dgamma, T& dbeta) {
  double sg, sgx;
  channel_grad_sums(x, dy, y, B, HW, stride, m, s, sg, sgx);
  dbeta = static_cast<T>(sg);
  dgamma = static_cast<T>(sgx);
  const T n = static_cast<T>(B * HW);
  channel_dx(x, dy, y, B, HW, stride, m, s, n, dbeta, dgamma, gamma * s / n, dx);
}

PYADR_CLONES void fwd_f32(const float* x, int64_t B, int64_t HW, int64_t st, float g, float b, double eps, bool tr,
                          double& mean, double& var, float& m, float& s, bool relu, float* y) {
  forward_channel(x, B, HW, st, g, b, eps, tr, mean, var, m, s, relu, y);
}
PYADR_CLONES void fwd_f64(const double* x, int64_t B, int64_t HW, int64_t st, double g, double b, double eps,
                          bool tr, double& mean, double& var, double& m, double& s, bool relu, double* y) {
  forward_channel(x, B, HW, st, g, b, eps, tr, mean, var, m, s, relu, y);
}
PYADR_CLONES void bwd_f32(const float* x, const float* dy, const float* y, int64_t B, int64_t HW, int64_t st,
                          float m, float s, float g, float* dx, float& dg, float& db) {
  backward_channel(x, dy, y, B, HW, st, m, s, g, dx, dg, db);
}
PYADR_CLONES void bwd_f64(const double* x, const double* dy, const double* y, int64_t B, int64_t HW, int64_t st,
                          double m, double s, double g, double* dx, double& dg, double& db) {
  backward_channel(x, dy, y, B, HW, st, m, s, g, dx, dg, db);
}
inline void fwd_any(const float* x, int64_t B, int64_t HW, int64_t st, float g, float b, double eps, bool tr,
                    double& mean, double& var, float& m, float& s, bool relu, float* y) {
  fwd_f32(x, B, HW, st, g, b, eps, tr, mean, var, m, s, relu, y);
}
inline void fwd_any(const double* x, int64_t B, int64_t HW, int64_t st, double g, double b, double eps, bool tr,
                    double& mean, double& var, double& m, double& s, bool relu, double* y) {
  fwd_f64(x, B, HW, st, g, b, eps, tr, mean, var, m, s, relu, y);
}
inline void bwd_any(const float* x, const float* dy, const float* y, int64_t B, int64_t HW, int64_t st, float m,
                    float s, float g, float* dx, float& dg, float& db) {
  bwd_f32(x, dy, y, B, HW, st, m, s, g, dx, dg, db);
}
inline void bwd_any(const double* x, const double* dy, const double* y, int64_t B, int64_t HW, int64_t st, double m,
                    double s, double g, double* dx, double& dg, double& db) {
  bwd_f64(x, dy, y, B, HW, st, m, s, g, dx, dg, db);
}

}  // namespace

template <class T>
void batch_norm_forward(int64_t B, int64_t C, int64_t HW, const T* x, const T* gamma, const T* beta, double eps,
                        bool training, double* mean, double* var, T* mean_t, T* inv_std, bool relu, T* y) {
  check_bn(B, C, HW);
  if (!(eps > 0)) throw Error("batch_norm: eps must be > 0");
  if (!x || !y || !mean || !var || !mean_t || !inv_std) throw Error("batch_norm: null array");
  const int64_t stride = C * HW;
#ifdef _OPENMP
#pragma omp parallel for num_threads(detail::threads_for(C)) schedule(static)
#endif
  for (int64_t c = 0; c < C; ++c)
    fwd_any(x + c * HW, B, HW, stride, gamma ? gamma[c] : T(1), beta ? beta[c] : T(0), eps, training, mean[c], var[c],
            mean_t[c], inv_std[c], relu, y + c * HW);
}

template <class T>
void batch_norm_backward(int64_t B, int64_t C, int64_t HW, const T* x, const T* dy, const T* y, const T* mean_t,
                         const T* inv_std, const T* gamma, T* dx, T* dgamma, T* dbeta) {
  check_bn(B, C, HW);
  if (!x || !dy || !mean_t || !inv_std || !dx) throw Error("batch_norm: null array");
  const int64_t stride = C * HW;
#ifdef _OPENMP
#pragma omp parallel for num_threads(detail::threads_for(C)) schedule(static)
#endif
  for (int64_t c = 0; c < C; ++c) {
    T dg, db;
    bwd_any(x + c * HW, dy + c * HW, y ? y + c * HW : nullptr, B, HW, stride, mean_t[c], inv_std[c],
            gamma ? gamma[c] : T(1), dx + c * HW, dg, db);
    if (dgamma) dgamma[c] = dg;
    if (dbeta) dbeta[c] = db;
  }
}

template void batch_norm_forward<float>(int64_t, int64_t, int64_t, const float*, const float*, const float*, double,
                                        bool, double*, double*, float*, float*, bool, float*);
template void batch_norm_forward<double>(int64_t, int64_t, int64_t, const double*, const double*, const double*,
                                         double, bool, double*, double*, double*, double*, bool, double*);
template void batch_norm_backward<float>(int64_t, int64_t, int64_t, const float*, const float*, const float*,
                                         const float*, const float*, const float*, float*, float*, float*);
template void batch_norm_backward<double>(int64_t, int64_t, int64_t, const double*, const double*, const double*,
                                          const double*, const double*, const double*, double*, double*, double*);

}  // namespace pyadr
