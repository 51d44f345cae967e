// Batch normalisation forward/backward on NCHW viewed as (B, C, HW) (nn_fast.hpp), the kernel
// behind pyadr.nn.BatchNorm2d for NumPy arrays; its NumPy version (normalization.py) is the
// reference it is tested against (tests/test_nn_fast_ops.py).
//
//   forward:  per channel c (one thread each): pass 1 sum x -> mean, pass 2 sum
//             (x - T(mean))^2 -> var, pass 3 y = (x - m) s gamma + beta [, max(., 0)].
//             Sums: each plane (HW values) in T lanes, the plane sums in double.
//   backward: per channel: pass 1 sum g and sum g * (x - m), pass 2 dx; reads x, dy (and y for
//             the fused ReLU's mask, a select that vectorises), writes dx. xhat is never stored:
//             the forward keeps only m and s per channel. The next plane's first lines are
//             prefetched (planes are C*HW apart: the hardware prefetcher restarts on each).
//   small HW (< kSmallPlane: VGG's 7x7, 3x3 and 1x1 maps): a channel's runs are too short to
//             vectorise, so a thread takes a block of channels and loops over b with the block's
//             C_blk * HW contiguous positions inside (per-position sums in T over
//             kImagesPerPartial images, then in double; reduced per channel after), the
//             per-channel constants expanded to positions.
//   Before (session 8): the backward's sums were double per element, which with the fused
//   ReLU's select did not vectorise: VGG-11's BN+ReLU took 60 ms per step, 4.0x its bytes
//   bound; now 29 ms, 1.8x (bench/nn_ops_table.py --model vgg11).
#include <algorithm>
#include <cmath>
#include <vector>

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

// The start of the next run of a channel (`stride` ahead): the runs are short (a plane) and far
// apart, so the hardware prefetcher would restart cold on every one of them.
template <class T>
PYADR_INLINE void prefetch_run(const T* p, int64_t HW) {
  const int64_t lines = std::min<int64_t>(8, (HW * static_cast<int64_t>(sizeof(T)) + 63) / 64);
  for (int64_t l = 0; l < lines; ++l) PYADR_PREFETCH(reinterpret_cast<const char*>(p) + 64 * l);
}

// The statistics of one channel: its B runs of HW values, `stride` apart. Each run is summed in
// T lanes (the vectorised reduction), the run sums in double: a run is at most a plane (HW values,
// HW / 16 per lane on AVX-512), so T's rounding stays that of a short sum.
template <class T>
PYADR_INLINE void channel_stats(const T* x, int64_t B, int64_t HW, int64_t stride, double& mean, double& var) {
  double s = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    if (b + 1 < B) prefetch_run(r + stride, HW);
    T sb = T(0);
    PYADR_SIMD_SUM(sb)
    for (int64_t i = 0; i < HW; ++i) sb += r[i];
    s += static_cast<double>(sb);
  }
  const double n = static_cast<double>(B * HW);
  mean = s / n;
  const T m = static_cast<T>(mean);
  double q = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    T qb = T(0);
    PYADR_SIMD_SUM(qb)
    for (int64_t i = 0; i < HW; ++i) {
      const T d = r[i] - m;
      qb += d * d;
    }
    q += static_cast<double>(qb);
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

// sum_g = sum of g, sum_gx = sum of g * xhat over the channel, g = dy masked by y > 0 when the
// forward fused a ReLU (y given). Runs summed in T lanes, run sums in double (as channel_stats);
// xhat = (x - m) s with s taken out of the sum. The mask is a select, so the loop vectorises.
template <class T>
PYADR_INLINE void channel_grad_sums(const T* x, const T* dy, const T* y, int64_t B, int64_t HW, int64_t stride, T m,
                                    T s, double& sum_g, double& sum_gx) {
  double sg = 0.0, sgx = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    const T* PYADR_RESTRICT d = dy + b * stride;
    if (b + 1 < B) {
      prefetch_run(r + stride, HW);
      prefetch_run(d + stride, HW);
      if (y) prefetch_run(y + (b + 1) * stride, HW);
    }
    T bg = T(0), bgx = T(0);
    if (y) {
      const T* PYADR_RESTRICT o = y + b * stride;
      PYADR_SIMD_SUM2(bg, bgx)
      for (int64_t i = 0; i < HW; ++i) {
        const T g = o[i] > T(0) ? d[i] : T(0);
        bg += g;
        bgx += g * (r[i] - m);
      }
    } else {
      PYADR_SIMD_SUM2(bg, bgx)
      for (int64_t i = 0; i < HW; ++i) {
        bg += d[i];
        bgx += d[i] * (r[i] - m);
      }
    }
    sg += static_cast<double>(bg);
    sgx += static_cast<double>(bgx);
  }
  sum_g = sg;
  sum_gx = sgx * static_cast<double>(s);
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

constexpr int64_t kSmallPlane = 64;     // HW below this takes the channel-block path
constexpr int64_t kBlockPositions = 1024;  // positions (channels * HW) per block, about

// Channel-block path, one block [c0, c0 + nc) of positions P = nc * HW; scratch: acc (2P
// doubles), vec (4P values of T). The same arithmetic per element as the channel path.
template <class T>
PYADR_INLINE void forward_block(const T* x, int64_t B, int64_t HW, int64_t stride, int64_t nc, const T* gamma,
                                const T* beta, double eps, bool training, double* mean, double* var, T* m_out,
                                T* s_out, bool relu, T* y, double* acc, T* vec) {
  const int64_t P = nc * HW;
  const double n = static_cast<double>(B * HW);
  T* PYADR_RESTRICT mv = vec;
  T* PYADR_RESTRICT sv = vec + P;
  T* PYADR_RESTRICT gv = vec + 2 * P;
  T* PYADR_RESTRICT bv = vec + 3 * P;
  if (training) {
    for (int64_t j = 0; j < P; ++j) acc[j] = 0.0;
    for (int64_t b = 0; b < B; ++b) {
      const T* PYADR_RESTRICT r = x + b * stride;
      for (int64_t j = 0; j < P; ++j) acc[j] += static_cast<double>(r[j]);
    }
    for (int64_t c = 0; c < nc; ++c) {
      double sum = 0.0;
      for (int64_t i = 0; i < HW; ++i) sum += acc[c * HW + i];
      mean[c] = sum / n;
      for (int64_t i = 0; i < HW; ++i) mv[c * HW + i] = static_cast<T>(mean[c]);
    }
    for (int64_t j = 0; j < P; ++j) acc[j] = 0.0;
    for (int64_t b = 0; b < B; ++b) {
      const T* PYADR_RESTRICT r = x + b * stride;
      for (int64_t j = 0; j < P; ++j) {
        const T d = r[j] - mv[j];
        acc[j] += static_cast<double>(d * d);
      }
    }
    for (int64_t c = 0; c < nc; ++c) {
      double sum = 0.0;
      for (int64_t i = 0; i < HW; ++i) sum += acc[c * HW + i];
      var[c] = sum / n;
    }
  }
  for (int64_t c = 0; c < nc; ++c) {
    const T m = static_cast<T>(mean[c]);
    const T sd = T(1) / std::sqrt(static_cast<T>(var[c]) + static_cast<T>(eps));
    m_out[c] = m;
    s_out[c] = sd;
    for (int64_t i = 0; i < HW; ++i) {
      mv[c * HW + i] = m;
      sv[c * HW + i] = sd;
      gv[c * HW + i] = gamma ? gamma[c] : T(1);
      bv[c * HW + i] = beta ? beta[c] : T(0);
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    T* PYADR_RESTRICT o = y + b * stride;
    if (relu) {
      for (int64_t j = 0; j < P; ++j) {
        const T v = (r[j] - mv[j]) * sv[j] * gv[j] + bv[j];
        o[j] = v < T(0) ? T(0) : v;
      }
    } else {
      for (int64_t j = 0; j < P; ++j) o[j] = (r[j] - mv[j]) * sv[j] * gv[j] + bv[j];
    }
  }
}

// Images per float partial sum in the channel-block path: the per-position sums run in T over
// this many images, then join the double totals (a short T sum, as in the channel path).
constexpr int64_t kImagesPerPartial = 16;

template <class T>
PYADR_INLINE void backward_block(const T* x, const T* dy, const T* y, int64_t B, int64_t HW, int64_t stride,
                                 int64_t nc, const T* mean_t, const T* inv_std, const T* gamma, T* dx, T* dgamma,
                                 T* dbeta, double* acc, T* vec) {
  const int64_t P = nc * HW;
  double* PYADR_RESTRICT ag = acc;
  double* PYADR_RESTRICT agx = acc + P;
  T* PYADR_RESTRICT mv = vec;
  T* PYADR_RESTRICT pg = vec + P;       // pass 1: partial sums in T; pass 2: dbeta, dgamma per position
  T* PYADR_RESTRICT pgx = vec + 2 * P;
  T* PYADR_RESTRICT scv = vec + 3 * P;  // pass 2: the scale per position
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t i = 0; i < HW; ++i) mv[c * HW + i] = mean_t[c];
  for (int64_t j = 0; j < P; ++j) ag[j] = agx[j] = 0.0;
  for (int64_t b0 = 0; b0 < B; b0 += kImagesPerPartial) {
    for (int64_t j = 0; j < P; ++j) pg[j] = pgx[j] = T(0);
    for (int64_t b = b0; b < std::min(B, b0 + kImagesPerPartial); ++b) {
      const T* PYADR_RESTRICT r = x + b * stride;
      const T* PYADR_RESTRICT d = dy + b * stride;
      if (y) {
        const T* PYADR_RESTRICT o = y + b * stride;
        for (int64_t j = 0; j < P; ++j) {
          const T g = o[j] > T(0) ? d[j] : T(0);
          pg[j] += g;
          pgx[j] += g * (r[j] - mv[j]);
        }
      } else {
        for (int64_t j = 0; j < P; ++j) {
          pg[j] += d[j];
          pgx[j] += d[j] * (r[j] - mv[j]);
        }
      }
    }
    for (int64_t j = 0; j < P; ++j) {
      ag[j] += static_cast<double>(pg[j]);
      agx[j] += static_cast<double>(pgx[j]);
    }
  }
  const T n = static_cast<T>(B * HW);
  T* PYADR_RESTRICT dbv = pg;
  T* PYADR_RESTRICT dgv = pgx;
  for (int64_t c = 0; c < nc; ++c) {
    double sg = 0.0, sgx = 0.0;
    for (int64_t i = 0; i < HW; ++i) {
      sg += ag[c * HW + i];
      sgx += agx[c * HW + i];
    }
    const T db = static_cast<T>(sg), dg = static_cast<T>(sgx * static_cast<double>(inv_std[c]));
    if (dbeta) dbeta[c] = db;
    if (dgamma) dgamma[c] = dg;
    const T s = inv_std[c];
    const T scale = (gamma ? gamma[c] : T(1)) * s / n;
    for (int64_t i = 0; i < HW; ++i) {
      dbv[c * HW + i] = db;
      dgv[c * HW + i] = s * dg;  // xhat * dgamma = (x - m) * (s * dgamma)
      scv[c * HW + i] = scale;
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    const T* PYADR_RESTRICT r = x + b * stride;
    const T* PYADR_RESTRICT d = dy + b * stride;
    T* PYADR_RESTRICT out = dx + b * stride;
    if (y) {
      const T* PYADR_RESTRICT o = y + b * stride;
      for (int64_t j = 0; j < P; ++j) {
        const T g = o[j] > T(0) ? d[j] : T(0);
        out[j] = (n * g - dbv[j] - (r[j] - mv[j]) * dgv[j]) * scv[j];
      }
    } else {
      for (int64_t j = 0; j < P; ++j) out[j] = (n * d[j] - dbv[j] - (r[j] - mv[j]) * dgv[j]) * scv[j];
    }
  }
}

PYADR_CLONES void fwd_blk_f32(const float* x, int64_t B, int64_t HW, int64_t st, int64_t nc, const float* g,
                              const float* b, double eps, bool tr, double* mean, double* var, float* m, float* s,
                              bool relu, float* y, double* acc, float* vec) {
  forward_block(x, B, HW, st, nc, g, b, eps, tr, mean, var, m, s, relu, y, acc, vec);
}
PYADR_CLONES void fwd_blk_f64(const double* x, int64_t B, int64_t HW, int64_t st, int64_t nc, const double* g,
                              const double* b, double eps, bool tr, double* mean, double* var, double* m, double* s,
                              bool relu, double* y, double* acc, double* vec) {
  forward_block(x, B, HW, st, nc, g, b, eps, tr, mean, var, m, s, relu, y, acc, vec);
}
PYADR_CLONES void bwd_blk_f32(const float* x, const float* dy, const float* y, int64_t B, int64_t HW, int64_t st,
                              int64_t nc, const float* m, const float* s, const float* g, float* dx, float* dg,
                              float* db, double* acc, float* vec) {
  backward_block(x, dy, y, B, HW, st, nc, m, s, g, dx, dg, db, acc, vec);
}
PYADR_CLONES void bwd_blk_f64(const double* x, const double* dy, const double* y, int64_t B, int64_t HW, int64_t st,
                              int64_t nc, const double* m, const double* s, const double* g, double* dx, double* dg,
                              double* db, double* acc, double* vec) {
  backward_block(x, dy, y, B, HW, st, nc, m, s, g, dx, dg, db, acc, vec);
}
inline void fwd_blk(const float* x, int64_t B, int64_t HW, int64_t st, int64_t nc, const float* g, const float* b,
                    double eps, bool tr, double* mean, double* var, float* m, float* s, bool relu, float* y,
                    double* acc, float* vec) {
  fwd_blk_f32(x, B, HW, st, nc, g, b, eps, tr, mean, var, m, s, relu, y, acc, vec);
}
inline void fwd_blk(const double* x, int64_t B, int64_t HW, int64_t st, int64_t nc, const double* g, const double* b,
                    double eps, bool tr, double* mean, double* var, double* m, double* s, bool relu, double* y,
                    double* acc, double* vec) {
  fwd_blk_f64(x, B, HW, st, nc, g, b, eps, tr, mean, var, m, s, relu, y, acc, vec);
}
inline void bwd_blk(const float* x, const float* dy, const float* y, int64_t B, int64_t HW, int64_t st, int64_t nc,
                    const float* m, const float* s, const float* g, float* dx, float* dg, float* db, double* acc,
                    float* vec) {
  bwd_blk_f32(x, dy, y, B, HW, st, nc, m, s, g, dx, dg, db, acc, vec);
}
inline void bwd_blk(const double* x, const double* dy, const double* y, int64_t B, int64_t HW, int64_t st,
                    int64_t nc, const double* m, const double* s, const double* g, double* dx, double* dg,
                    double* db, double* acc, double* vec) {
  bwd_blk_f64(x, dy, y, B, HW, st, nc, m, s, g, dx, dg, db, acc, vec);
}

// body(c0, nc, acc, vec) for every block of channels, blocks over the threads, scratch per thread.
template <class T, class F>
void for_each_channel_block(int64_t C, int64_t HW, F body) {
  const int64_t per = std::max<int64_t>(1, kBlockPositions / HW);
  const int64_t nblocks = (C + per - 1) / per;
  detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel num_threads(detail::threads_for(nblocks))
#endif
  {
    std::vector<double> acc;
    std::vector<T> vec;
    errors.run([&] {
      acc.resize(static_cast<size_t>(2 * per * HW));
      vec.resize(static_cast<size_t>(4 * per * HW));
    });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t k = 0; k < nblocks; ++k)
      errors.run([&] {
        const int64_t c0 = k * per;
        body(c0, std::min(per, C - c0), acc.data(), vec.data());
      });
  }
  errors.rethrow();
}

}  // namespace

template <class T>
void batch_norm_forward(int64_t B, int64_t C, int64_t HW, const T* x, const T* gamma, const T* beta, double eps,
                        bool training, double* mean, double* var, T* mean_t, T* inv_std, bool relu, T* y) {
  check_bn(B, C, HW);
  if (!(eps > 0)) throw Error("batch_norm: eps must be > 0");
  if (!x || !y || !mean || !var || !mean_t || !inv_std) throw Error("batch_norm: null array");
  const int64_t stride = C * HW;
  if (HW < kSmallPlane) {
    for_each_channel_block<T>(C, HW, [&](int64_t c0, int64_t nc, double* acc, T* vec) {
      fwd_blk(x + c0 * HW, B, HW, stride, nc, gamma ? gamma + c0 : nullptr, beta ? beta + c0 : nullptr, eps,
              training, mean + c0, var + c0, mean_t + c0, inv_std + c0, relu, y + c0 * HW, acc, vec);
    });
    return;
  }
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
  if (HW < kSmallPlane) {
    for_each_channel_block<T>(C, HW, [&](int64_t c0, int64_t nc, double* acc, T* vec) {
      bwd_blk(x + c0 * HW, dy + c0 * HW, y ? y + c0 * HW : nullptr, B, HW, stride, nc, mean_t + c0, inv_std + c0,
              gamma ? gamma + c0 : nullptr, dx + c0 * HW, dgamma ? dgamma + c0 : nullptr, dbeta ? dbeta + c0 : nullptr,
              acc, vec);
    });
    return;
  }
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
