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

// C (m x n) = alpha * op(A) (m x k) * B + beta * C, with B packed by PackedB.
template <class T>
void gemm_packed(bool transA, int64_t m, T alpha, const T* A, int64_t lda, const PackedB<T>& B, T beta, T* C,
                 int64_t ldc);

}  // namespace detail
}  // namespace pyadr
