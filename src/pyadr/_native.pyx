# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin binding over the C++ core: pointers and shapes in, C++ errors out as Python exceptions.

Types, dtypes, ranks and contiguity are checked by pyadr._api; values (sizes, geometry, reuse
parameters) are checked by the C++ core (native/src/params.cpp). This layer converts addresses,
checks that each array has the dtype of the call, releases the GIL around native work and owns
the reuse state of a forward call. C++ exceptions arrive through _native_shim.hpp's
raise_py_error: pyadr::Error -> ValueError, pyadr::TypeError -> TypeError, std::bad_alloc ->
MemoryError, anything else -> RuntimeError.
"""
from libc.stdint cimport int32_t, int64_t, uintptr_t
from libcpp cimport bool as cbool
from libcpp.string cimport string


cdef extern from "_native_shim.hpp" namespace "pyadr_shim":
    cdef void raise_py_error()


cdef extern from "pyadr/core.hpp" namespace "pyadr":
    cdef cppclass ConvGeom:
        int64_t B, C, H, W, M, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW
        void validate() except +raise_py_error
    void set_num_threads(int n) except +raise_py_error
    int num_threads()
    cbool openmp_enabled()
    const char* simd_level()
    const char* version()
    cbool blas_available()
    cbool onednn_loaded()
    string onednn_library()
    string onednn_kernels()
    size_t cached_bytes()
    size_t cache_cap()
    void release_cached()


cdef extern from "pyadr/params.hpp" namespace "pyadr::limits":
    const int kMaxHashBits
    const int64_t kMaxRowsPerCall
    const int64_t kMaxSubvectorLength
    const int64_t kMaxElements


cdef extern from "pyadr/core.hpp" namespace "pyadr::detail":
    void c_fail_allocs_after "pyadr::detail::fail_allocs_after"(int64_t n, cbool parallel_only, cbool internal)


cdef extern from "_native_shim.hpp" namespace "pyadr_shim":
    cdef cppclass State:
        int dtype
        int64_t nblocks()
        int64_t rows()
        int64_t clusters(int64_t j) except +raise_py_error
        int64_t block_len(int64_t j) except +raise_py_error
        double rc()
        size_t bytes()
        void copy_ids(int32_t* out)
        void copy_counts(int64_t j, int32_t* out) except +raise_py_error
        void copy_centroids(int64_t j, void* out) except +raise_py_error
    void forward_exact(int dtype, const ConvGeom& g, const void* x, const void* w, const void* b,
                       void* y) except +raise_py_error nogil
    void backward_exact(int dtype, const ConvGeom& g, const void* x, const void* w, const void* dy,
                        void* dx, void* dw, void* db) except +raise_py_error nogil
    State* forward_reuse(int dtype, const ConvGeom& g, int L, int H, int order, int hash, int scope,
                         const void* planes, const void* offsets, double width, int exact, const void* x,
                         const void* w, const void* b, void* y) except +raise_py_error nogil
    void backward_reuse(const State& s, int dtype, const void* dy, void* dx, void* dw, void* db) except +raise_py_error nogil
    cdef cppclass PoolGeom "pyadr::PoolGeom":
        pass
    PoolGeom pool_geom(int64_t P, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                       int64_t ph, int64_t pw)
    void c_maxpool_forward "pyadr_shim::maxpool_forward"(int dtype, const PoolGeom& g, const void* x, void* y,
                                                         int32_t* arg) except +raise_py_error nogil
    void c_maxpool_backward "pyadr_shim::maxpool_backward"(int dtype, const PoolGeom& g, const void* dy,
                                                           const int32_t* arg, void* dx) except +raise_py_error nogil
    void c_relu_forward "pyadr_shim::relu_forward"(int dtype, int64_t n, const void* x, void* y) except +raise_py_error nogil
    void c_relu_backward "pyadr_shim::relu_backward"(int dtype, int64_t n, const void* y, const void* dy,
                                                     void* dx) except +raise_py_error nogil
    void c_lrn_forward "pyadr_shim::lrn_forward"(int dtype, int64_t B, int64_t C, int64_t HW, int size,
                                                 double alpha, double beta, double k, const void* x, void* y,
                                                 void* s, void* scale) except +raise_py_error nogil
    void c_lrn_backward "pyadr_shim::lrn_backward"(int dtype, int64_t B, int64_t C, int64_t HW, int size,
                                                   double alpha, double beta, const void* x, const void* s,
                                                   const void* scale, const void* dy, void* dx) except +raise_py_error nogil
    void c_set_blas "pyadr_shim::set_blas"(uintptr_t s, uintptr_t d)
    void c_set_gemm_provider "pyadr_shim::set_gemm_provider"(int p) except +raise_py_error
    int c_gemm_provider "pyadr_shim::gemm_provider"()
    string c_onednn_load "pyadr_shim::onednn_load"(const string& path) except +raise_py_error
    void c_set_conv_provider "pyadr_shim::set_conv_provider"(int p) except +raise_py_error
    int c_conv_provider "pyadr_shim::conv_provider"()
    void c_gemm "pyadr_shim::gemm"(int dtype, cbool ta, cbool tb, int64_t m, int64_t n, int64_t k,
                                   double alpha, const void* A, int64_t lda, const void* B,
                                   int64_t ldb, double beta, void* C, int64_t ldc) except +raise_py_error nogil


cdef inline void* _ptr(object a):
    if a is None:
        return NULL
    return <void*><uintptr_t>a.__array_interface__["data"][0]


cdef int _dtype_code(object a) except -2:
    """0 for float32, 1 for float64 (native byte order), -1 for anything else."""
    t = a.__array_interface__["typestr"]
    if t == "<f4" or t == "=f4":
        return 0
    if t == "<f8" or t == "=f8":
        return 1
    return -1


cdef void* _arg(object a, int dtype, str name) except? NULL:
    """Address of array `a` (None: NULL) after checking it has the call's dtype."""
    if a is None:
        return NULL
    if _dtype_code(a) != dtype:
        raise TypeError(f"{name} must be {'float32' if dtype == 0 else 'float64'} like the call, "
                        f"got typestr {a.__array_interface__['typestr']}")
    return <void*><uintptr_t>a.__array_interface__["data"][0]


cdef ConvGeom _geom(tuple g) except *:
    cdef ConvGeom c
    (c.B, c.C, c.H, c.W, c.M, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw) = g
    c.validate()
    return c


def output_shape(tuple g):
    """(OH, OW) of a geometry tuple (B, C, H, W, M, kh, kw, sh, sw, ph, pw, dh, dw); validates."""
    cdef ConvGeom c = _geom(g)
    return c.OH, c.OW


def conv_forward_exact(int dtype, tuple g, x, w, b, y):
    cdef ConvGeom c = _geom(g)
    cdef void* px = _arg(x, dtype, "x")
    cdef void* pw = _arg(w, dtype, "w")
    cdef void* pb = _arg(b, dtype, "b")
    cdef void* py = _arg(y, dtype, "y")
    with nogil:
        forward_exact(dtype, c, px, pw, pb, py)


def conv_backward_exact(int dtype, tuple g, x, w, dy, dx, dw, db):
    cdef ConvGeom c = _geom(g)
    cdef void* px = _arg(x, dtype, "x")
    cdef void* pw = _arg(w, dtype, "w")
    cdef void* pdy = _arg(dy, dtype, "dy")
    cdef void* pdx = _arg(dx, dtype, "dx")
    cdef void* pdw = _arg(dw, dtype, "dw")
    cdef void* pdb = _arg(db, dtype, "db")
    with nogil:
        backward_exact(dtype, c, px, pw, pdy, pdx, pdw, pdb)


cdef class ReuseState:
    """Native state of one reuse forward: cluster ids, counts, centroids and weights."""
    cdef State* s

    def __dealloc__(self):
        del self.s

    @property
    def nblocks(self):
        return self.s.nblocks()

    @property
    def rows(self):
        return self.s.rows()

    @property
    def rc(self):
        return self.s.rc()

    @property
    def nbytes(self):
        return self.s.bytes()

    def clusters(self):
        return [self.s.clusters(j) for j in range(self.s.nblocks())]

    def ids_into(self, out):
        """Copies the (nblocks, N) int32 cluster ids into `out` (C-contiguous int32)."""
        self.s.copy_ids(<int32_t*>_ptr(out))

    def counts_into(self, int64_t j, out):
        self.s.copy_counts(j, <int32_t*>_ptr(out))

    def centroids_into(self, int64_t j, out):
        self.s.copy_centroids(j, _ptr(out))

    def block_len(self, int64_t j):
        return self.s.block_len(j)

    def backward(self, dy, dx, dw, db):
        """Gradients into dx, dw, db (each may be None) of dy's dtype, which must be the forward's."""
        cdef int dtype = _dtype_code(dy)
        cdef void* pdy = _ptr(dy)
        cdef void* pdx = _arg(dx, dtype, "dx")
        cdef void* pdw = _arg(dw, dtype, "dw")
        cdef void* pdb = _arg(db, dtype, "db")
        with nogil:
            backward_reuse(self.s[0], dtype, pdy, pdx, pdw, pdb)


def conv_forward_reuse(int dtype, tuple g, int L, int H, int order, int hash, int scope, planes, offsets,
                       double width, int exact, x, w, b, y):
    """exact: the products computed exactly, bits 1 (forward), 2 (dw), 4 (dx); 0 reuses all three."""
    cdef ConvGeom c = _geom(g)
    cdef void* pp = _arg(planes, dtype, "planes")
    cdef void* po = _arg(offsets, dtype, "offsets")
    cdef void* px = _arg(x, dtype, "x")
    cdef void* pw = _arg(w, dtype, "w")
    cdef void* pb = _arg(b, dtype, "b")
    cdef void* py = _arg(y, dtype, "y")
    cdef State* st
    with nogil:
        st = forward_reuse(dtype, c, L, H, order, hash, scope, pp, po, width, exact, px, pw, pb, py)
    cdef ReuseState out = ReuseState.__new__(ReuseState)
    out.s = st
    return out


def gemm(int dtype, cbool ta, cbool tb, int64_t m, int64_t n, int64_t k, double alpha, A, int64_t lda, B,
         int64_t ldb, double beta, C, int64_t ldc):
    """C = alpha op(A) op(B) + beta C through the core's GEMM interface (row-major)."""
    cdef void* pa = _ptr(A)
    cdef void* pb = _ptr(B)
    cdef void* pc = _ptr(C)
    with nogil:
        c_gemm(dtype, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc)


def maxpool_forward(int dtype, tuple g, x, y, arg):
    """g = (P, H, W, kh, kw, sh, sw, ph, pw); x (P, H, W), y (P, OH, OW), arg int32 like y or None."""
    cdef PoolGeom pg = pool_geom(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8])
    cdef void* px = _ptr(x)
    cdef void* py = _ptr(y)
    cdef int32_t* pa = <int32_t*>_ptr(arg)
    with nogil:
        c_maxpool_forward(dtype, pg, px, py, pa)


def maxpool_backward(int dtype, tuple g, dy, arg, dx):
    cdef PoolGeom pg = pool_geom(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8])
    cdef void* pdy = _ptr(dy)
    cdef const int32_t* pa = <const int32_t*>_ptr(arg)
    cdef void* pdx = _ptr(dx)
    with nogil:
        c_maxpool_backward(dtype, pg, pdy, pa, pdx)


def relu_forward(int dtype, int64_t n, x, y):
    """y = max(x, 0) over n contiguous values."""
    cdef void* px = _ptr(x)
    cdef void* py = _ptr(y)
    with nogil:
        c_relu_forward(dtype, n, px, py)


def relu_backward(int dtype, int64_t n, y, dy, dx):
    """dx = dy where y > 0, else 0, over n contiguous values."""
    cdef void* py = _ptr(y)
    cdef void* pdy = _ptr(dy)
    cdef void* pdx = _ptr(dx)
    with nogil:
        c_relu_backward(dtype, n, py, pdy, pdx)


def lrn_forward(int dtype, int64_t B, int64_t C, int64_t HW, int size, double alpha, double beta, double k,
                x, y, s, scale):
    cdef void* px = _ptr(x)
    cdef void* py = _ptr(y)
    cdef void* ps = _ptr(s)
    cdef void* psc = _ptr(scale)
    with nogil:
        c_lrn_forward(dtype, B, C, HW, size, alpha, beta, k, px, py, ps, psc)


def lrn_backward(int dtype, int64_t B, int64_t C, int64_t HW, int size, double alpha, double beta,
                 x, s, scale, dy, dx):
    cdef void* px = _ptr(x)
    cdef void* ps = _ptr(s)
    cdef void* psc = _ptr(scale)
    cdef void* pdy = _ptr(dy)
    cdef void* pdx = _ptr(dx)
    with nogil:
        c_lrn_backward(dtype, B, C, HW, size, alpha, beta, px, ps, psc, pdy, pdx)


def set_threads(int n):
    set_num_threads(n)


def get_threads():
    return num_threads()


def cache_bytes():
    return cached_bytes()


def cache_limit():
    return cache_cap()


def empty_cache():
    release_cached()


def set_blas(uintptr_t sgemm_addr, uintptr_t dgemm_addr):
    c_set_blas(sgemm_addr, dgemm_addr)


def has_blas():
    return blas_available()


def set_provider(int p):
    c_set_gemm_provider(p)


def get_provider():
    return c_gemm_provider()


def onednn_load(str path):
    """Loads oneDNN v3 from path ("" : the loader's search path); "" on success, else the reason."""
    return c_onednn_load(path.encode()).decode(errors="replace")


def onednn_info():
    """(loaded, "3.2.0 (/path/libdnnl.so.3)", kernels that ran: "fwd brg:avx512_core; ...")."""
    return bool(onednn_loaded()), onednn_library().decode(errors="replace"), onednn_kernels().decode(errors="replace")


def set_conv_provider(int p):
    c_set_conv_provider(p)


def get_conv_provider():
    return c_conv_provider()


def limits():
    """The native core's limits (native/include/pyadr/params.hpp), one definition for Python too."""
    return {"max_hash_bits": kMaxHashBits, "max_rows_per_call": kMaxRowsPerCall,
            "max_subvector_length": kMaxSubvectorLength, "max_elements": kMaxElements}


def _fail_allocs_after(int64_t n, cbool parallel_only=False, cbool internal=False):
    """Test hook: after n more native scratch allocations the next one fails (MemoryError, or
    RuntimeError with internal=True), once; n < 0 disarms. parallel_only: count only those made
    inside the kernels' OpenMP regions. Process-wide; for tests only."""
    c_fail_allocs_after(n, parallel_only, internal)


def info():
    return {"openmp": bool(openmp_enabled()), "simd": simd_level().decode(), "version": version().decode()}


# ---- nn_fast: batch norm and the SGD update (native/include/pyadr/nn_fast.hpp) -------------------
# Callers (pyadr.nn) pass C-contiguous arrays of the right shapes; dtypes are checked here.

cdef extern from "pyadr/nn_fast.hpp" namespace "pyadr":
    void c_batch_norm_forward "pyadr::batch_norm_forward"[T](
        int64_t B, int64_t C, int64_t HW, const T* x, const T* gamma, const T* beta, double eps, cbool training,
        double* mean, double* var, T* mean_t, T* inv_std, cbool relu, T* y) except +raise_py_error nogil
    void c_batch_norm_backward "pyadr::batch_norm_backward"[T](
        int64_t B, int64_t C, int64_t HW, const T* x, const T* dy, const T* y, const T* mean_t, const T* inv_std,
        const T* gamma, T* dx, T* dgamma, T* dbeta) except +raise_py_error nogil
    void c_sgd_update "pyadr::sgd_update"[T](int64_t n, T* p, const T* grad, T* buf, double lr, double momentum,
                                             double dampening, double weight_decay, cbool nesterov,
                                             cbool first) except +raise_py_error nogil
    void c_lrn_backward_recompute "pyadr::lrn_backward_recompute"[T](
        int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, T k, const T* x, const T* dy,
        T* dx) except +raise_py_error nogil


cdef void* _f64_arg(object a, str name) except? NULL:
    return _arg(a, 1, name)


def batch_norm_forward(int64_t B, int64_t C, int64_t HW, x, gamma, beta, double eps, cbool training,
                       mean, var, mean_t, inv_std, cbool relu, y):
    """x, y (B, C, HW) of one dtype; gamma, beta (C,) or None; mean, var (C,) float64 (written when
    training, read otherwise); mean_t, inv_std (C,) of x's dtype, written."""
    cdef int dt = _dtype_code(x)
    if dt < 0:
        raise TypeError("batch_norm_forward: x must be float32 or float64")
    cdef void* px = _arg(x, dt, "x")
    cdef void* pg = _arg(gamma, dt, "gamma")
    cdef void* pb = _arg(beta, dt, "beta")
    cdef double* pm = <double*>_f64_arg(mean, "mean")
    cdef double* pv = <double*>_f64_arg(var, "var")
    cdef void* pmt = _arg(mean_t, dt, "mean_t")
    cdef void* ps = _arg(inv_std, dt, "inv_std")
    cdef void* py = _arg(y, dt, "y")
    with nogil:
        if dt == 0:
            c_batch_norm_forward[float](B, C, HW, <const float*>px, <const float*>pg, <const float*>pb, eps,
                                        training, pm, pv, <float*>pmt, <float*>ps, relu, <float*>py)
        else:
            c_batch_norm_forward[double](B, C, HW, <const double*>px, <const double*>pg, <const double*>pb, eps,
                                         training, pm, pv, <double*>pmt, <double*>ps, relu, <double*>py)


def batch_norm_backward(int64_t B, int64_t C, int64_t HW, x, dy, y, mean_t, inv_std, gamma, dx, dgamma, dbeta):
    """dx (B, C, HW) and dgamma, dbeta (C,) (or None) from x, dy, the fused ReLU's output y (or
    None) and the forward's mean_t, inv_std."""
    cdef int dt = _dtype_code(x)
    if dt < 0:
        raise TypeError("batch_norm_backward: x must be float32 or float64")
    cdef void* px = _arg(x, dt, "x")
    cdef void* pdy = _arg(dy, dt, "dy")
    cdef void* py = _arg(y, dt, "y")
    cdef void* pmt = _arg(mean_t, dt, "mean_t")
    cdef void* ps = _arg(inv_std, dt, "inv_std")
    cdef void* pg = _arg(gamma, dt, "gamma")
    cdef void* pdx = _arg(dx, dt, "dx")
    cdef void* pdg = _arg(dgamma, dt, "dgamma")
    cdef void* pdb = _arg(dbeta, dt, "dbeta")
    with nogil:
        if dt == 0:
            c_batch_norm_backward[float](B, C, HW, <const float*>px, <const float*>pdy, <const float*>py,
                                         <const float*>pmt, <const float*>ps, <const float*>pg, <float*>pdx,
                                         <float*>pdg, <float*>pdb)
        else:
            c_batch_norm_backward[double](B, C, HW, <const double*>px, <const double*>pdy, <const double*>py,
                                          <const double*>pmt, <const double*>ps, <const double*>pg, <double*>pdx,
                                          <double*>pdg, <double*>pdb)


def sgd_update(int64_t n, p, grad, buf, double lr, double momentum, double dampening, double weight_decay,
               cbool nesterov, cbool first):
    """In place on n contiguous values of p (and buf, None when momentum == 0), from grad."""
    cdef int dt = _dtype_code(p)
    if dt < 0:
        raise TypeError("sgd_update: p must be float32 or float64")
    cdef void* pp = _arg(p, dt, "p")
    cdef void* pg = _arg(grad, dt, "grad")
    cdef void* pb = _arg(buf, dt, "buf")
    with nogil:
        if dt == 0:
            c_sgd_update[float](n, <float*>pp, <const float*>pg, <float*>pb, lr, momentum, dampening,
                                weight_decay, nesterov, first)
        else:
            c_sgd_update[double](n, <double*>pp, <const double*>pg, <double*>pb, lr, momentum, dampening,
                                 weight_decay, nesterov, first)


def lrn_backward_recompute(int64_t B, int64_t C, int64_t HW, int size, double alpha, double beta, double k,
                           x, dy, dx):
    """LRN backward from x alone (s and s^-beta rebuilt per block): x, dy, dx (B, C, HW) contiguous."""
    cdef int dt = _dtype_code(x)
    if dt < 0:
        raise TypeError("lrn_backward_recompute: x must be float32 or float64")
    cdef void* px = _arg(x, dt, "x")
    cdef void* pdy = _arg(dy, dt, "dy")
    cdef void* pdx = _arg(dx, dt, "dx")
    with nogil:
        if dt == 0:
            c_lrn_backward_recompute[float](B, C, HW, size, <float>alpha, <float>beta, <float>k, <const float*>px,
                                            <const float*>pdy, <float*>pdx)
        else:
            c_lrn_backward_recompute[double](B, C, HW, size, alpha, beta, k, <const double*>px,
                                             <const double*>pdy, <double*>pdx)
