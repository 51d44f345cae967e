// pyadr native core: exact and deep-reuse convolution / linear kernels, no Python.
//
// Architecture (see DESIGN.md): every op takes raw pointers plus a shape struct.
//   geometry (ConvGeom)  -> layout.cpp   padded NHWC/NCHW copies, row/column offset runs
//                        -> lsh_hash.cpp sub-vector projections and hash keys
//                        -> cluster.hpp  key -> cluster id tables (dense or growing hash)
//                        -> gemm.cpp     one GEMM interface: built-in blocked kernel or BLAS
//                        -> rowops.cpp   indexed row sums/scatters (reconstruction, Gamma, dX)
//   conv_exact.cpp       tiled im2col + GEMM, forward and backward, never the full im2col
//   conv_reuse.cpp       fused hash/cluster/centroid pass, reduced GEMM, reuse backward
//   reuse_cache.cpp      inference cache of cluster products across calls (+ its C API)
//   nn_ops.cpp           pyadr.nn's max-pooling and LRN (NCHW), for the trainer
//   block_cache.cpp      large scratch blocks recycled between calls (no page faults per call)
//   c_api_model.cpp      C model runner: an exported weights file (model_file.cpp) run layer by layer
// Linear layers are convolutions of a 1x1 kernel over 1x1 images.
// Errors: a bad value (shape, size, parameter out of range) throws pyadr::Error
// (std::invalid_argument); a value of the wrong kind (dtype, context of another op) throws
// pyadr::TypeError; a failed allocation std::bad_alloc; invariants are asserted, or throw
// std::logic_error where a broken one would write out of bounds. The C API and the Python binding
// map them to PYADR_ERR_INVALID_ARGUMENT / ValueError, PYADR_ERR_TYPE / TypeError,
// PYADR_ERR_OUT_OF_MEMORY / MemoryError and PYADR_ERR_INTERNAL / RuntimeError.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace pyadr {

struct Error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Not derived from std::invalid_argument: catch it before pyadr::Error's base if you map both.
struct TypeError : std::logic_error {
  using std::logic_error::logic_error;
};

enum class Order : int { HWC = 0, CHW = 1 };
enum class HashKind : int { Sign = 0, L2 = 1 };
enum class Scope : int { Batch = 0, Input = 1 };

// Shapes of one convolution: x (B, C, H, W), w (M, C, kh, kw), y (B, M, OH, OW).
struct ConvGeom {
  int64_t B = 0, C = 0, H = 0, W = 0, M = 0, kh = 1, kw = 1;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  int64_t OH = 0, OW = 0;
  int64_t K() const { return C * kh * kw; }
  int64_t P() const { return OH * OW; }      // output positions per image
  int64_t N() const { return B * OH * OW; }  // im2col rows
  // Fills OH/OW and checks every size; throws Error naming the offending argument.
  void validate();
};

// The three products of a reusing layer, as bits of ReuseParams::exact (the C API's
// PYADR_EXACT_*): a set bit computes that product exactly, ignoring the clusters.
constexpr int kExactForward = 1, kExactWeightGrad = 2, kExactInputGrad = 4;
constexpr int kExactAll = kExactForward | kExactWeightGrad | kExactInputGrad;  // rejected: use the exact path

// Hashing parameters of a reuse call. planes: (L, H) row-major; offsets (H) and width for L2.
// exact: products computed exactly (bits above; 0: all three reuse the clusters).
template <class T>
struct ReuseParams {
  int L = 0, H = 0;
  Order order = Order::HWC;
  HashKind hash = HashKind::Sign;
  Scope scope = Scope::Batch;
  const T* planes = nullptr;
  const T* offsets = nullptr;
  T width = T(1);
  int exact = 0;
};

// ---- large-block recycling (block_cache.cpp) -------------------------------------------------
// Blocks of 256 KiB and more freed by one call are kept (up to PYADR_CACHE_MB, default 256) and
// handed to the next call's request of the same size class, instead of being returned to the OS
// and faulted in and zero-filled again. 64-byte aligned, uninitialised; free with the same size.
namespace detail {
void* cache_alloc(size_t bytes);               // throws std::bad_alloc
void cache_free(void* p, size_t bytes) noexcept;
// Test hook (always compiled, costs one relaxed atomic load per allocation): after `n` more
// successful cache_alloc calls the next one throws std::bad_alloc (or, with internal, a
// std::runtime_error standing for an unexpected failure), once; n < 0 disarms. With
// parallel_only, only allocations made inside an OpenMP parallel region count and fail, so a test
// can make a kernel fail inside its threads deterministically. Process-wide.
void fail_allocs_after(int64_t n, bool parallel_only = false, bool internal = false) noexcept;
}  // namespace detail
size_t cached_bytes();  // bytes now waiting in the cache
size_t cache_cap();     // the most it keeps (PYADR_CACHE_MB)
void release_cached();  // gives them back to the OS

template <class T>
struct CachingAllocator {
  using value_type = T;
  CachingAllocator() = default;
  template <class U>
  CachingAllocator(const CachingAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(detail::cache_alloc(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { detail::cache_free(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const CachingAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const CachingAllocator<U>&) const noexcept { return false; }
};

// std::vector whose resize() leaves new elements uninitialised (default-init, not value-init):
// for buffers every element of which is written before it is read.
template <class T, class A = CachingAllocator<T>>
struct UninitAllocator : A {
  template <class U>
  struct rebind {
    using other = UninitAllocator<U, typename std::allocator_traits<A>::template rebind_alloc<U>>;
  };
  using A::A;
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    std::allocator_traits<A>::construct(static_cast<A&>(*this), p, std::forward<Args>(args)...);
  }
};
template <class T>
using UninitVector = std::vector<T, UninitAllocator<T>>;

// What a reuse forward keeps for its backward: ids, counts, centroids, reordered weights.
// Never the im2col matrix. Block j covers ordered columns [j*L, min((j+1)*L, K)).
// With an exact dW (exact & kExactWeightGrad) it also keeps a copy of the input x.
template <class T>
struct ReuseState {
  ConvGeom g;
  int L = 0;
  Order order = Order::HWC;
  Scope scope = Scope::Batch;
  int exact = 0;                               // ReuseParams::exact of the forward
  std::vector<T> x;                            // (B, C, H, W) input, exact dW only
  int64_t nblocks = 0;
  UninitVector<int32_t> ids;                   // (nblocks, N): cluster of row n in block j
  std::vector<std::vector<int32_t>> counts;    // block j: (nc_j) members per cluster
  std::vector<UninitVector<T>> centroids;      // block j: (nc_j, L_j) cluster means
  std::vector<T> Wm;                           // (K, M) weights, rows in `order`
  int64_t block_len(int64_t j) const;
  int64_t clusters(int64_t j) const { return static_cast<int64_t>(counts[j].size()); }
  double remaining_ratio() const;              // mean_j clusters(j) / N
  size_t bytes() const;                        // memory held for the backward
};

// ---- exact path ----------------------------------------------------------------------------
template <class T>
void conv2d_forward_exact(const ConvGeom& g, const T* x, const T* w, const T* b, T* y);
// dx, dw, db may each be null (not wanted).
template <class T>
void conv2d_backward_exact(const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db);

// ---- deep reuse ----------------------------------------------------------------------------
template <class T>
std::unique_ptr<ReuseState<T>> conv2d_forward_reuse(const ConvGeom& g, const ReuseParams<T>& p,
                                                    const T* x, const T* w, const T* b, T* y);
// Products in s.exact are computed as by the exact path (dX = col2im(dY . Wm^T), dW = X^T . dY).
template <class T>
void conv2d_backward_reuse(const ReuseState<T>& s, const T* dy, T* dx, T* dw, T* db);

// ---- nn ops: pyadr.nn's pooling and LRN on NCHW (nn_ops.cpp) -------------------------------
// P = B * C planes of H x W; pooled to OH x OW. Throws Error on bad sizes.
struct PoolGeom {
  int64_t P = 0, H = 0, W = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
  int64_t OH() const { return (H + 2 * ph - kh) / sh + 1; }
  int64_t OW() const { return (W + 2 * pw - kw) / sw + 1; }
};
// y (P, OH, OW); arg (P, OH, OW) flat in-plane index of each window's first maximum, or null.
template <class T>
void maxpool2d_forward(const PoolGeom& g, const T* x, T* y, int32_t* arg);
// dx (P, H, W) <- scatter of dy through arg.
template <class T>
void maxpool2d_backward(const PoolGeom& g, const T* dy, const int32_t* arg, T* dx);
// Local response normalisation across channels (torch.nn.LocalResponseNorm) of x (B, C, HW):
// y = x * s^-beta with s = k + alpha/size * (window sum of x^2); s (and scale = s^-beta, if not
// null) are kept for the backward.
template <class T>
void lrn_forward(int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, T k, const T* x, T* y, T* s, T* scale);
template <class T>
void lrn_backward(int64_t B, int64_t C, int64_t HW, int size, T alpha, T beta, const T* x, const T* s,
                  const T* scale, const T* dy, T* dx);

// ReLU on n values: y = max(x, 0) (NaN propagates); backward dx = dy where y > 0, else 0
// (PyTorch's threshold_backward). Elementwise, so any layout; outputs must not overlap inputs.
template <class T>
void relu_forward(int64_t n, const T* x, T* y);
template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx);

// ---- GEMM: C(m x n) = alpha * op(A) * op(B) + beta * C, row-major -------------------------
template <class T>
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Fortran BLAS ?gemm signatures (column-major), injectable by the Python build.
using sgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*,
                          const float*, const int*, const float*, const int*, const float*, float*,
                          const int*);
using dgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const double*,
                          const double*, const int*, const double*, const int*, const double*, double*,
                          const int*);
void set_blas(sgemm_fn s, dgemm_fn d);      // both null: forget BLAS
enum class GemmProvider : int { Builtin = 0, Blas = 1 };
void set_gemm_provider(GemmProvider p);     // throws Error if BLAS was not injected
GemmProvider gemm_provider();
bool blas_available();

// ---- exact-convolution provider (conv_onednn.cpp) ------------------------------------------
// The exact float convolution (forward, dX, dW, db) can run on oneDNN v3 (libdnnl.so.3, loaded
// at run time, never linked); double always runs on the builtin kernels. Auto (the default):
// oneDNN once onednn_load() succeeded, else builtin.
enum class ConvProvider : int { Auto = 0, Builtin = 1, OneDNN = 2 };
// Loads oneDNN from `path` (nullptr: "libdnnl.so.3" through the loader's search path). Returns
// true when loaded (also if it already was), else false with the reason in *why (may be null).
bool onednn_load(const char* path, std::string* why);
bool onednn_loaded();
std::string onednn_library();          // "3.2.0 (/path/libdnnl.so.3)", "" when not loaded
void set_conv_provider(ConvProvider p);  // OneDNN throws Error unless onednn_load() succeeded
ConvProvider conv_provider();
std::string onednn_kernels();          // oneDNN implementations that ran, e.g. "fwd brg:avx512_core"

// ---- runtime configuration -----------------------------------------------------------------
void set_num_threads(int n);  // n >= 1; defaults to OpenMP's max threads (OMP_NUM_THREADS)
int num_threads();
bool openmp_enabled();
const char* simd_level();     // "avx512", "avx2", or "baseline": what the kernels dispatch to
const char* version();

}  // namespace pyadr
