// Memory-bound training kernels of pyadr.nn beyond nn_ops (batch_norm.cpp, sgd_update.cpp):
// each is one or two passes over its arrays, OpenMP over independent channels or chunks, SIMD
// through the core's multi-versioned loops. Throw pyadr::Error on bad sizes.
#pragma once

#include <cstdint>

#include "pyadr/core.hpp"

namespace pyadr {

// ---- batch normalisation over (B, C, HW), statistics per channel (batch_norm.cpp) ----------
// Forward. training: mean[c] = E x, var[c] = E (x - T(mean))^2 (biased), both accumulated in
// double and written to mean/var (C); otherwise mean/var are read (the running statistics).
// Then, with m = T(mean), s = 1 / sqrt(T(var) + eps): y = (x - m) * s * gamma + beta, then
// max(y, 0) when relu (gamma/beta null: 1 and 0). mean_t/inv_std (C, T) receive m and s, for the
// backward.
template <class T>
void batch_norm_forward(int64_t B, int64_t C, int64_t HW, const T* x, const T* gamma, const T* beta, double eps,
                        bool training, double* mean, double* var, T* mean_t, T* inv_std, bool relu, T* y);
// Backward of the training forward, from its input x and its mean_t/inv_std: with xhat =
// (x - m) * s and g = dy (g = dy where y > 0 when y is given: the fused ReLU's mask),
// dbeta = sum g, dgamma = sum g * xhat (double sums), dx = gamma * s / n * (n g - dbeta - xhat dgamma).
// dgamma/dbeta may be null (not affine: gamma null means 1).
template <class T>
void batch_norm_backward(int64_t B, int64_t C, int64_t HW, const T* x, const T* dy, const T* y, const T* mean_t,
                         const T* inv_std, const T* gamma, T* dx, T* dgamma, T* dbeta);

// ---- SGD with momentum / Nesterov / weight decay, in place, one pass (sgd_update.cpp) --------
// torch.optim.SGD's step on n values: g = grad + wd * p; buf = g on the first step (first=true)
// else momentum * buf + (1 - dampening) * g; g = g + momentum * buf (nesterov) or buf;
// p -= lr * g. buf may be null when momentum == 0 (then g is used directly).
template <class T>
void sgd_update(int64_t n, T* p, const T* grad, T* buf, double lr, double momentum, double dampening,
                double weight_decay, bool nesterov, bool first);

// ---- the fully connected layer, exact (linear.cpp; conv2d_*_exact dispatch here) ------------
// g: B samples, C = in features, M = out features, H = W = kh = kw = 1. y (B, M) = x w^T + b;
// backward dw = dy^T x, dx = dy w, db = column sums of dy (each output may be null).
template <class T>
void linear_forward(const ConvGeom& g, const T* x, const T* w, const T* b, T* y);
template <class T>
void linear_backward(const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db);

// ---- local response normalisation, backward recomputing s from x (nn_ops.cpp) ---------------
// The training forward then keeps nothing but x (lrn_forward with s = scale = null): x and dy
// read once, dx written once, s and s^-beta rebuilt per block of pixels in cache.
template <class T>
void lrn_backward_recompute(int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, T k, const T* x,
                            const T* dy, T* dx);

}  // namespace pyadr
