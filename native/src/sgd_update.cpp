// SGD with momentum, Nesterov and weight decay in place, one pass over p, grad and buf
// (nn_fast.hpp), the kernel behind pyadr.nn.SGD.step for NumPy arrays; pyadr/nn/optim.py's
// array-module version is its reference (tests/test_nn_fast_ops.py). Chunks over the threads.
#include <algorithm>

#include "common.hpp"
#include "pyadr/nn_fast.hpp"

namespace pyadr {
namespace {

constexpr int64_t kSgdChunk = 16384;  // values per parallel item

// Same operation order (and roundings in T) as optim.py.
template <class T>
PYADR_INLINE void sgd_chunk(int64_t n, T* PYADR_RESTRICT p, const T* PYADR_RESTRICT grad, T* PYADR_RESTRICT buf,
                            T lr, T mom, T damp1, T wd, bool nesterov, bool first) {
  if (!buf) {
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * (wd != T(0) ? grad[i] + wd * p[i] : grad[i]);
    return;
  }
  if (first) {
    for (int64_t i = 0; i < n; ++i) {
      const T g = wd != T(0) ? grad[i] + wd * p[i] : grad[i];
      buf[i] = g;
      p[i] -= lr * (nesterov ? g + mom * g : g);
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T g = wd != T(0) ? grad[i] + wd * p[i] : grad[i];
    const T b = buf[i] * mom + damp1 * g;
    buf[i] = b;
    p[i] -= lr * (nesterov ? g + mom * b : b);
  }
}

PYADR_CLONES void sgd_f32(int64_t n, float* p, const float* g, float* b, float lr, float m, float d1, float wd,
                          bool nes, bool first) {
  sgd_chunk(n, p, g, b, lr, m, d1, wd, nes, first);
}
PYADR_CLONES void sgd_f64(int64_t n, double* p, const double* g, double* b, double lr, double m, double d1, double wd,
                          bool nes, bool first) {
  sgd_chunk(n, p, g, b, lr, m, d1, wd, nes, first);
}
inline void sgd_any(int64_t n, float* p, const float* g, float* b, float lr, float m, float d1, float wd, bool nes,
                    bool first) {
  sgd_f32(n, p, g, b, lr, m, d1, wd, nes, first);
}
inline void sgd_any(int64_t n, double* p, const double* g, double* b, double lr, double m, double d1, double wd,
                    bool nes, bool first) {
  sgd_f64(n, p, g, b, lr, m, d1, wd, nes, first);
}

}  // namespace

template <class T>
void sgd_update(int64_t n, T* p, const T* grad, T* buf, double lr, double momentum, double dampening,
                double weight_decay, bool nesterov, bool first) {
  if (n < 0) throw Error("sgd_update: negative size");
  if (!p || !grad) throw Error("sgd_update: null array");
  if (momentum != 0.0 && !buf) throw Error("sgd_update: momentum needs a buffer");
  if (momentum == 0.0) buf = nullptr;
  const int64_t nchunks = (n + kSgdChunk - 1) / kSgdChunk;
#ifdef _OPENMP
#pragma omp parallel for num_threads(detail::threads_for(nchunks)) schedule(static)
#endif
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t i0 = c * kSgdChunk, len = std::min(n, i0 + kSgdChunk) - i0;
    sgd_any(len, p + i0, grad + i0, buf ? buf + i0 : nullptr, static_cast<T>(lr), static_cast<T>(momentum),
            static_cast<T>(1.0 - dampening), static_cast<T>(weight_decay), nesterov, first);
  }
}

template void sgd_update<float>(int64_t, float*, const float*, float*, double, double, double, double, bool, bool);
template void sgd_update<double>(int64_t, double*, const double*, double*, double, double, double, double, bool,
                                 bool);

}  // namespace pyadr
