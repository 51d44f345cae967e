// Internal GEMM helpers beside the public pyadr::gemm (core.hpp).
//   PackedB: op(B) (k x n) packed once into the micro-kernel's panels, for many GEMMs that share B
//   (a convolution's weight matrix against every tile of rows): C = alpha * op(A) * B + beta * C.
#pragma once

#include <vector>

#include "common.hpp"

namespace pyadr {
namespace detail {

template <class T>
class PackedB {
 public:
  PackedB(bool transB, int64_t k, int64_t n, const T* B, int64_t ldb);

 private:
  template <class U>
  friend void gemm_packed(bool, int64_t, U, const U*, int64_t, const PackedB<U>&, U, U*, int64_t);
  bool tb_;
  int64_t k_, n_;
  const T* B_;  // the caller's B, used when the BLAS provider is selected: must outlive this
  int64_t ldb_;
  int NR_;
  std::vector<T> data_;
  std::vector<int64_t> offsets_;
};

// The width NR of the B panels the builtin kernels read (gemm_panels' layout).
template <class T>
int gemm_panel_width();

// C (m x n) = alpha * op(A) (m x k) * Bp + beta * C with B already laid out as the kernels' panels:
// column c of row p at Bp[(c / NR) * panel + p * NR + c % NR], NR = gemm_panel_width<T>(), columns
// n..ceil(n / NR) * NR - 1 present (any finite value; their results are dropped). The caller gathers
// B straight into this layout (the exact weight gradient's im2col tile): no packing copy. Builtin only.
template <class T>
void gemm_panels(bool transA, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, const T* Bp,
                 int64_t panel, T beta, T* C, int64_t ldc);

// C (m x n) = alpha * op(A) (m x k) * B + beta * C, with B packed by PackedB.
template <class T>
void gemm_packed(bool transA, int64_t m, T alpha, const T* A, int64_t lda, const PackedB<T>& B, T beta, T* C,
                 int64_t ldc);

}  // namespace detail
}  // namespace pyadr
