// C API of the nn ops (pyadr/pyadr.h, section "nn ops") over the core's nn_ops.cpp: max-pooling
// with its argmax, local response normalisation across channels, ReLU; float32 and float64.
//
// This file only validates and forwards: every argument the core would trust (pointers, sizes,
// the window against the padded input, argmax indices, overlapping buffers) is checked here with
// a message naming it, then the core kernel runs. Status codes, the thread-local last error and
// the exception guard are those of c_api_internal.hpp.
//
//   maxpool2d: x (batch, channels, height, width) -> y, argmax (batch, channels, OH, OW)
//   lrn:       x, y, s, scale (batch, channels, spatial)
//   relu:      x, y, dy, dx (n)
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "c_api_internal.hpp"
#include "pyadr/core.hpp"
#include "pyadr/pyadr.h"

namespace {

using pyadr_capi::bad;
using pyadr_capi::guard;
using pyadr_capi::need_ptr;

std::string str(int64_t v) { return std::to_string(v); }

std::string num(double v) {  // %g: 1e-09, not to_string's 0.000000
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// a * b for non-negative sizes, or an error naming `what` when it exceeds `limit`.
int64_t mul_checked(int64_t a, int64_t b, int64_t limit, const char* what) {
  if (a != 0 && b > limit / a) bad(std::string(what) + " is too large (" + str(a) + " x " + str(b) + ")");
  return a * b;
}

// Number of elements of a dense array with these extents (each >= 0), checked so that its size
// in bytes (elem bytes each) fits in int64_t.
int64_t elements(std::initializer_list<int64_t> extents, size_t elem, const char* what) {
  const int64_t limit = INT64_MAX / static_cast<int64_t>(elem);
  int64_t n = 1;
  for (int64_t e : extents) n = mul_checked(n, e, limit, what);
  return n;
}

// Throws when [a, a + abytes) and [b, b + bbytes) share a byte: the core kernels assume their
// outputs do not alias their inputs.
void need_disjoint(const void* a, int64_t abytes, const char* an, const void* b, int64_t bbytes, const char* bn) {
  if (!a || !b || abytes == 0 || bbytes == 0) return;
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  if (a0 < b0 + static_cast<uintptr_t>(bbytes) && b0 < a0 + static_cast<uintptr_t>(abytes))
    bad(std::string(an) + " and " + bn + " must not overlap (no in-place operation)");
}

// ---- max-pooling ---------------------------------------------------------------------------
struct Pool {
  pyadr::PoolGeom g;
  int64_t in_count = 0, out_count = 0;  // elements of x and of y (= of argmax)
};

Pool to_pool(const pyadr_pool_geom* c, size_t elem) {
  need_ptr(c, "g");
  // Every extent in [lo, 2^31): argmax is an int32 index in the plane, and the sums below cannot
  // overflow.
  auto at_least = [](int64_t v, int64_t lo, const char* name) {
    if (v < lo || v > INT32_MAX)
      bad(std::string("g->") + name + " must be in [" + str(lo) + ", 2^31), got " + str(v));
  };
  at_least(c->batch, 1, "batch");
  at_least(c->channels, 1, "channels");
  at_least(c->height, 1, "height");
  at_least(c->width, 1, "width");
  at_least(c->kernel_h, 1, "kernel_h");
  at_least(c->kernel_w, 1, "kernel_w");
  at_least(c->stride_h, 1, "stride_h");
  at_least(c->stride_w, 1, "stride_w");
  at_least(c->pad_h, 0, "pad_h");
  at_least(c->pad_w, 0, "pad_w");
  if (2 * c->pad_h > c->kernel_h || 2 * c->pad_w > c->kernel_w)
    bad("g->pad_h/pad_w must be at most half of kernel_h/kernel_w (as PyTorch), got pad " + str(c->pad_h) + "x" +
        str(c->pad_w) + " for kernel " + str(c->kernel_h) + "x" + str(c->kernel_w));
  if (c->kernel_h > c->height + 2 * c->pad_h || c->kernel_w > c->width + 2 * c->pad_w)
    bad("the window g->kernel_h x g->kernel_w = " + str(c->kernel_h) + "x" + str(c->kernel_w) +
        " is larger than the padded input (height + 2*pad_h) x (width + 2*pad_w) = " +
        str(c->height + 2 * c->pad_h) + "x" + str(c->width + 2 * c->pad_w));
  if (c->height * c->width > INT32_MAX)
    bad("g->height * g->width must be < 2^31 (argmax is an int32 index in the plane), got " +
        str(c->height) + " x " + str(c->width));
  Pool p;
  p.g.P = mul_checked(c->batch, c->channels, INT64_MAX, "batch * channels");
  p.g.H = c->height;
  p.g.W = c->width;
  p.g.kh = c->kernel_h;
  p.g.kw = c->kernel_w;
  p.g.sh = c->stride_h;
  p.g.sw = c->stride_w;
  p.g.ph = c->pad_h;
  p.g.pw = c->pad_w;
  p.in_count = elements({p.g.P, p.g.H, p.g.W}, elem, "the input (batch*channels*height*width)");
  p.out_count = elements({p.g.P, p.g.OH(), p.g.OW()}, elem > 4 ? elem : 4, "the output");
  return p;
}

template <class T>
void maxpool_forward(const pyadr_pool_geom* gc, const T* x, T* y, int32_t* argmax) {
  const Pool p = to_pool(gc, sizeof(T));
  need_ptr(x, "x");
  need_ptr(y, "y");
  const int64_t xb = p.in_count * sizeof(T), yb = p.out_count * sizeof(T), ab = p.out_count * 4;
  need_disjoint(y, yb, "y", x, xb, "x");
  need_disjoint(argmax, ab, "argmax", x, xb, "x");
  need_disjoint(argmax, ab, "argmax", y, yb, "y");
  pyadr::maxpool2d_forward<T>(p.g, x, y, argmax);
}

template <class T>
void maxpool_backward(const pyadr_pool_geom* gc, const T* dy, const int32_t* argmax, T* dx) {
  const Pool p = to_pool(gc, sizeof(T));
  need_ptr(dy, "dy");
  need_ptr(argmax, "argmax");
  need_ptr(dx, "dx");
  const int64_t xb = p.in_count * sizeof(T), yb = p.out_count * sizeof(T), ab = p.out_count * 4;
  need_disjoint(dx, xb, "dx", dy, yb, "dy");
  need_disjoint(dx, xb, "dx", argmax, ab, "argmax");
  // The core scatters dx[argmax] += dy without bounds checks: a stale or foreign argmax must be
  // an error, not a write outside dx.
  const int64_t plane = p.g.H * p.g.W;
  for (int64_t i = 0; i < p.out_count; ++i)
    if (argmax[i] < 0 || argmax[i] >= plane)
      bad("argmax[" + str(i) + "] = " + str(argmax[i]) + " is not an index in a " + str(p.g.H) + "x" +
          str(p.g.W) + " plane (pass the argmax the forward with the same g wrote)");
  pyadr::maxpool2d_backward<T>(p.g, dy, argmax, dx);
}

// ---- local response normalisation ------------------------------------------------------------
int64_t lrn_count(int64_t batch, int64_t channels, int64_t spatial, int size, size_t elem) {
  if (batch < 1) bad("batch must be >= 1, got " + str(batch));
  if (channels < 1) bad("channels must be >= 1, got " + str(channels));
  if (spatial < 1) bad("spatial (height * width) must be >= 1, got " + str(spatial));
  if (size < 1) bad("size must be >= 1, got " + std::to_string(size));
  return elements({batch, channels, spatial}, elem, "the input (batch*channels*spatial)");
}

void lrn_check_params(double alpha, double beta) {
  if (!(std::isfinite(alpha) && alpha >= 0)) bad("alpha must be finite and >= 0, got " + num(alpha));
  if (!std::isfinite(beta)) bad("beta must be finite, got " + num(beta));
}

template <class T>
void lrn_forward(int64_t batch, int64_t channels, int64_t spatial, int size, double alpha, double beta, double k,
                 const T* x, T* y, T* s, T* scale) {
  const int64_t n = lrn_count(batch, channels, spatial, size, sizeof(T));
  lrn_check_params(alpha, beta);
  if (!(std::isfinite(k) && k > 0)) bad("k must be finite and > 0 (it keeps s positive), got " + num(k));
  need_ptr(x, "x");
  need_ptr(y, "y");
  const int64_t b = n * sizeof(T);
  need_disjoint(y, b, "y", x, b, "x");
  need_disjoint(s, b, "s", x, b, "x");
  need_disjoint(s, b, "s", y, b, "y");
  need_disjoint(scale, b, "scale", x, b, "x");
  need_disjoint(scale, b, "scale", y, b, "y");
  need_disjoint(scale, b, "scale", s, b, "s");
  std::vector<T> own_s;  // inference without s: the core needs it as a workspace
  if (!s) {
    own_s.resize(static_cast<size_t>(n));
    s = own_s.data();
  }
  pyadr::lrn_forward<T>(batch, channels, spatial, size, static_cast<T>(alpha), static_cast<T>(beta),
                        static_cast<T>(k), x, y, s, scale);
}

template <class T>
void lrn_backward(int64_t batch, int64_t channels, int64_t spatial, int size, double alpha, double beta, const T* x,
                  const T* s, const T* scale, const T* dy, T* dx) {
  const int64_t n = lrn_count(batch, channels, spatial, size, sizeof(T));
  lrn_check_params(alpha, beta);
  need_ptr(x, "x");
  need_ptr(s, "s (the forward's s)");
  need_ptr(scale, "scale (the forward's scale)");
  need_ptr(dy, "dy");
  need_ptr(dx, "dx");
  const int64_t b = n * sizeof(T);
  need_disjoint(dx, b, "dx", x, b, "x");
  need_disjoint(dx, b, "dx", s, b, "s");
  need_disjoint(dx, b, "dx", scale, b, "scale");
  need_disjoint(dx, b, "dx", dy, b, "dy");
  pyadr::lrn_backward<T>(batch, channels, spatial, size, static_cast<T>(alpha), static_cast<T>(beta), x, s, scale,
                         dy, dx);
}

// ---- ReLU ------------------------------------------------------------------------------------
int64_t relu_bytes(int64_t n, size_t elem) {
  if (n < 0) bad("n must be >= 0, got " + str(n));
  return elements({n}, elem, "n") * static_cast<int64_t>(elem);
}

template <class T>
void relu_forward(int64_t n, const T* x, T* y) {
  const int64_t b = relu_bytes(n, sizeof(T));
  need_ptr(x, "x");
  need_ptr(y, "y");
  need_disjoint(y, b, "y", x, b, "x");
  pyadr::relu_forward<T>(n, x, y);
}

template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx) {
  const int64_t b = relu_bytes(n, sizeof(T));
  need_ptr(y, "y");
  need_ptr(dy, "dy");
  need_ptr(dx, "dx");
  need_disjoint(dx, b, "dx", y, b, "y");
  need_disjoint(dx, b, "dx", dy, b, "dy");
  pyadr::relu_backward<T>(n, y, dy, dx);
}

}  // namespace

extern "C" {

void pyadr_pool_geom_init(pyadr_pool_geom* g, int64_t batch, int64_t channels, int64_t height, int64_t width,
                          int64_t kernel_h, int64_t kernel_w) {
  if (!g) return;
  g->batch = batch;
  g->channels = channels;
  g->height = height;
  g->width = width;
  g->kernel_h = kernel_h;
  g->kernel_w = kernel_w;
  g->stride_h = kernel_h;
  g->stride_w = kernel_w;
  g->pad_h = g->pad_w = 0;
}

pyadr_status pyadr_maxpool2d_output_shape(const pyadr_pool_geom* g, int64_t* out_h, int64_t* out_w) {
  return guard("pyadr_maxpool2d_output_shape", [&] {
    const Pool p = to_pool(g, sizeof(double));
    if (out_h) *out_h = p.g.OH();
    if (out_w) *out_w = p.g.OW();
  });
}

pyadr_status pyadr_maxpool2d_forward(const pyadr_pool_geom* g, const float* x, float* y, int32_t* argmax) {
  return guard("pyadr_maxpool2d_forward", [&] { maxpool_forward<float>(g, x, y, argmax); });
}

pyadr_status pyadr_maxpool2d_forward_f64(const pyadr_pool_geom* g, const double* x, double* y, int32_t* argmax) {
  return guard("pyadr_maxpool2d_forward_f64", [&] { maxpool_forward<double>(g, x, y, argmax); });
}

pyadr_status pyadr_maxpool2d_backward(const pyadr_pool_geom* g, const float* dy, const int32_t* argmax, float* dx) {
  return guard("pyadr_maxpool2d_backward", [&] { maxpool_backward<float>(g, dy, argmax, dx); });
}

pyadr_status pyadr_maxpool2d_backward_f64(const pyadr_pool_geom* g, const double* dy, const int32_t* argmax,
                                          double* dx) {
  return guard("pyadr_maxpool2d_backward_f64", [&] { maxpool_backward<double>(g, dy, argmax, dx); });
}

pyadr_status pyadr_lrn_forward(int64_t batch, int64_t channels, int64_t spatial, int size, double alpha, double beta,
                               double k, const float* x, float* y, float* s, float* scale) {
  return guard("pyadr_lrn_forward",
               [&] { lrn_forward<float>(batch, channels, spatial, size, alpha, beta, k, x, y, s, scale); });
}

pyadr_status pyadr_lrn_forward_f64(int64_t batch, int64_t channels, int64_t spatial, int size, double alpha,
                                   double beta, double k, const double* x, double* y, double* s, double* scale) {
  return guard("pyadr_lrn_forward_f64",
               [&] { lrn_forward<double>(batch, channels, spatial, size, alpha, beta, k, x, y, s, scale); });
}

pyadr_status pyadr_lrn_backward(int64_t batch, int64_t channels, int64_t spatial, int size, double alpha, double beta,
                                const float* x, const float* s, const float* scale, const float* dy, float* dx) {
  return guard("pyadr_lrn_backward",
               [&] { lrn_backward<float>(batch, channels, spatial, size, alpha, beta, x, s, scale, dy, dx); });
}

pyadr_status pyadr_lrn_backward_f64(int64_t batch, int64_t channels, int64_t spatial, int size, double alpha,
                                    double beta, const double* x, const double* s, const double* scale,
                                    const double* dy, double* dx) {
  return guard("pyadr_lrn_backward_f64",
               [&] { lrn_backward<double>(batch, channels, spatial, size, alpha, beta, x, s, scale, dy, dx); });
}

pyadr_status pyadr_relu_forward(int64_t n, const float* x, float* y) {
  return guard("pyadr_relu_forward", [&] { relu_forward<float>(n, x, y); });
}

pyadr_status pyadr_relu_forward_f64(int64_t n, const double* x, double* y) {
  return guard("pyadr_relu_forward_f64", [&] { relu_forward<double>(n, x, y); });
}

pyadr_status pyadr_relu_backward(int64_t n, const float* y, const float* dy, float* dx) {
  return guard("pyadr_relu_backward", [&] { relu_backward<float>(n, y, dy, dx); });
}

pyadr_status pyadr_relu_backward_f64(int64_t n, const double* y, const double* dy, double* dx) {
  return guard("pyadr_relu_backward_f64", [&] { relu_backward<double>(n, y, dy, dx); });
}

}  // extern "C"
