// Glue between the Cython binding and the C++ core: integer enums, type-erased reuse state, and
// the translation of C++ exceptions into Python ones (raise_py_error, the `except +` handler).
#pragma once

#include <Python.h>

#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "pyadr/core.hpp"

namespace pyadr_shim {

using pyadr::ConvGeom;

// Called by Cython inside its catch (...) with the GIL held: the same mapping as the C API's
// status codes (c_api_internal.hpp). Cython's default handler would turn pyadr::TypeError into
// RuntimeError and std::length_error into RuntimeError.
inline void raise_py_error() {
  try {
    throw;
  } catch (const pyadr::TypeError& e) {
    PyErr_SetString(PyExc_TypeError, e.what());
  } catch (const std::bad_alloc&) {
    PyErr_SetString(PyExc_MemoryError, "pyadr: out of memory");
  } catch (const std::length_error& e) {
    PyErr_SetString(PyExc_MemoryError, (std::string("pyadr: allocation too large (") + e.what() + ")").c_str());
  } catch (const std::invalid_argument& e) {  // pyadr::Error included
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, (std::string("pyadr internal error: ") + e.what()).c_str());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "pyadr internal error (unknown exception)");
  }
}

inline const char* dtype_name(int dtype) { return dtype == 0 ? "float32" : dtype == 1 ? "float64" : "unsupported"; }

// dtype: 0 float32, 1 float64; anything else (an array of another dtype) is a TypeError.
inline void need_dtype(int dtype, const char* what) {
  if (dtype != 0 && dtype != 1)
    throw pyadr::TypeError(std::string(what) + " must be float32 or float64 (dtype code 0 or 1), got code " +
                           std::to_string(dtype));
}

struct State {
  int dtype = 0;  // 0: float32, 1: float64
  std::unique_ptr<pyadr::ReuseState<float>> f;
  std::unique_ptr<pyadr::ReuseState<double>> d;

  int64_t nblocks() const { return f ? f->nblocks : d->nblocks; }
  int64_t rows() const { return f ? f->g.N() : d->g.N(); }
  // Throws Error for a j outside [0, nblocks()) (the accessors below would read out of bounds).
  void need_block(int64_t j) const {
    if (j < 0 || j >= nblocks())
      throw pyadr::Error("j must be a sub-matrix index in [0, " + std::to_string(nblocks()) + "), got " +
                         std::to_string(j));
  }
  int64_t clusters(int64_t j) const {
    need_block(j);
    return f ? f->clusters(j) : d->clusters(j);
  }
  int64_t block_len(int64_t j) const {
    need_block(j);
    return f ? f->block_len(j) : d->block_len(j);
  }
  double rc() const { return f ? f->remaining_ratio() : d->remaining_ratio(); }
  size_t bytes() const { return f ? f->bytes() : d->bytes(); }
  void copy_ids(int32_t* out) const {
    const auto& v = f ? f->ids : d->ids;
    std::copy(v.begin(), v.end(), out);
  }
  void copy_counts(int64_t j, int32_t* out) const {
    need_block(j);
    const auto& v = f ? f->counts[j] : d->counts[j];
    std::copy(v.begin(), v.end(), out);
  }
  // out: (clusters(j), block_len(j)) of this state's dtype.
  void copy_centroids(int64_t j, void* out) const {
    need_block(j);
    if (f) std::copy(f->centroids[j].begin(), f->centroids[j].end(), static_cast<float*>(out));
    else std::copy(d->centroids[j].begin(), d->centroids[j].end(), static_cast<double*>(out));
  }
};

template <class T>
pyadr::ReuseParams<T> params(int L, int H, int order, int hash, int scope, const void* planes,
                             const void* offsets, double width, int exact) {
  pyadr::ReuseParams<T> p;
  p.L = L;
  p.H = H;
  p.order = static_cast<pyadr::Order>(order);
  p.hash = static_cast<pyadr::HashKind>(hash);
  p.scope = static_cast<pyadr::Scope>(scope);
  p.planes = static_cast<const T*>(planes);
  p.offsets = static_cast<const T*>(offsets);
  p.width = static_cast<T>(width);
  p.exact = exact;
  return p;
}

inline void forward_exact(int dtype, const ConvGeom& g, const void* x, const void* w, const void* b, void* y) {
  need_dtype(dtype, "x");
  if (dtype == 0)
    pyadr::conv2d_forward_exact<float>(g, (const float*)x, (const float*)w, (const float*)b, (float*)y);
  else
    pyadr::conv2d_forward_exact<double>(g, (const double*)x, (const double*)w, (const double*)b, (double*)y);
}

inline void backward_exact(int dtype, const ConvGeom& g, const void* x, const void* w, const void* dy, void* dx,
                           void* dw, void* db) {
  need_dtype(dtype, "x");
  if (dtype == 0)
    pyadr::conv2d_backward_exact<float>(g, (const float*)x, (const float*)w, (const float*)dy, (float*)dx,
                                        (float*)dw, (float*)db);
  else
    pyadr::conv2d_backward_exact<double>(g, (const double*)x, (const double*)w, (const double*)dy, (double*)dx,
                                         (double*)dw, (double*)db);
}

inline State* forward_reuse(int dtype, const ConvGeom& g, int L, int H, int order, int hash, int scope,
                            const void* planes, const void* offsets, double width, int exact, const void* x,
                            const void* w, const void* b, void* y) {
  need_dtype(dtype, "x");
  std::unique_ptr<State> s(new State());
  s->dtype = dtype;
  if (dtype == 0)
    s->f = pyadr::conv2d_forward_reuse<float>(g, params<float>(L, H, order, hash, scope, planes, offsets, width, exact),
                                              (const float*)x, (const float*)w, (const float*)b, (float*)y);
  else
    s->d = pyadr::conv2d_forward_reuse<double>(g, params<double>(L, H, order, hash, scope, planes, offsets, width, exact),
                                               (const double*)x, (const double*)w, (const double*)b, (double*)y);
  return s.release();
}

// dtype: that of dy, dx, dw, db (the binding checks they agree); must be the forward's.
inline void backward_reuse(const State& s, int dtype, const void* dy, void* dx, void* dw, void* db) {
  if (dtype != s.dtype)
    throw pyadr::TypeError(std::string("dy must have the dtype of the forward call (") + dtype_name(s.dtype) +
                           "), got " + dtype_name(dtype));
  if (s.f)
    pyadr::conv2d_backward_reuse<float>(*s.f, (const float*)dy, (float*)dx, (float*)dw, (float*)db);
  else
    pyadr::conv2d_backward_reuse<double>(*s.d, (const double*)dy, (double*)dx, (double*)dw, (double*)db);
}

inline void set_blas(uintptr_t s, uintptr_t d) {
  pyadr::set_blas(reinterpret_cast<pyadr::sgemm_fn>(s), reinterpret_cast<pyadr::dgemm_fn>(d));
}
inline void set_gemm_provider(int p) { pyadr::set_gemm_provider(static_cast<pyadr::GemmProvider>(p)); }
inline int gemm_provider() { return static_cast<int>(pyadr::gemm_provider()); }

// oneDNN as the exact convolution's provider: "" on success, else why it could not be loaded.
inline std::string onednn_load(const std::string& path) {
  std::string why;
  return pyadr::onednn_load(path.empty() ? nullptr : path.c_str(), &why) ? std::string() : why;
}
inline void set_conv_provider(int p) { pyadr::set_conv_provider(static_cast<pyadr::ConvProvider>(p)); }
inline int conv_provider() { return static_cast<int>(pyadr::conv_provider()); }

inline void gemm(int dtype, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const void* A,
                 int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc) {
  if (dtype == 0)
    pyadr::gemm<float>(ta, tb, m, n, k, (float)alpha, (const float*)A, lda, (const float*)B, ldb, (float)beta,
                       (float*)C, ldc);
  else
    pyadr::gemm<double>(ta, tb, m, n, k, alpha, (const double*)A, lda, (const double*)B, ldb, beta, (double*)C,
                        ldc);
}

inline pyadr::PoolGeom pool_geom(int64_t P, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                 int64_t ph, int64_t pw) {
  pyadr::PoolGeom g;
  g.P = P;
  g.H = H;
  g.W = W;
  g.kh = kh;
  g.kw = kw;
  g.sh = sh;
  g.sw = sw;
  g.ph = ph;
  g.pw = pw;
  return g;
}

inline void maxpool_forward(int dtype, const pyadr::PoolGeom& g, const void* x, void* y, int32_t* arg) {
  if (dtype == 0) pyadr::maxpool2d_forward<float>(g, (const float*)x, (float*)y, arg);
  else pyadr::maxpool2d_forward<double>(g, (const double*)x, (double*)y, arg);
}

inline void maxpool_backward(int dtype, const pyadr::PoolGeom& g, const void* dy, const int32_t* arg, void* dx) {
  if (dtype == 0) pyadr::maxpool2d_backward<float>(g, (const float*)dy, arg, (float*)dx);
  else pyadr::maxpool2d_backward<double>(g, (const double*)dy, arg, (double*)dx);
}

inline void relu_forward(int dtype, int64_t n, const void* x, void* y) {
  if (dtype == 0) pyadr::relu_forward<float>(n, (const float*)x, (float*)y);
  else pyadr::relu_forward<double>(n, (const double*)x, (double*)y);
}

inline void relu_backward(int dtype, int64_t n, const void* y, const void* dy, void* dx) {
  if (dtype == 0) pyadr::relu_backward<float>(n, (const float*)y, (const float*)dy, (float*)dx);
  else pyadr::relu_backward<double>(n, (const double*)y, (const double*)dy, (double*)dx);
}

inline void lrn_forward(int dtype, int64_t B, int64_t C, int64_t HW, int size, double alpha, double beta, double k,
                        const void* x, void* y, void* s, void* scale) {
  if (dtype == 0)
    pyadr::lrn_forward<float>(B, C, HW, size, (float)alpha, (float)beta, (float)k, (const float*)x, (float*)y,
                              (float*)s, (float*)scale);
  else
    pyadr::lrn_forward<double>(B, C, HW, size, alpha, beta, k, (const double*)x, (double*)y, (double*)s,
                               (double*)scale);
}

inline void lrn_backward(int dtype, int64_t B, int64_t C, int64_t HW, int size, double alpha, double beta,
                         const void* x, const void* s, const void* scale, const void* dy, void* dx) {
  if (dtype == 0)
    pyadr::lrn_backward<float>(B, C, HW, size, (float)alpha, (float)beta, (const float*)x, (const float*)s,
                               (const float*)scale, (const float*)dy, (float*)dx);
  else
    pyadr::lrn_backward<double>(B, C, HW, size, alpha, beta, (const double*)x, (const double*)s,
                                (const double*)scale, (const double*)dy, (double*)dx);
}

}  // namespace pyadr_shim
