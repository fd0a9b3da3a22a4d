// tessera/detail/blas.hpp - row-major matrix products on the CPU through CBLAS (OpenBLAS).
#pragma once

#include <cblas.h>

#include <cstddef>

namespace tessera::detail::blas {

/// C (m x n) = alpha * op(A) * op(B) + beta * C, all row-major with leading dimensions.
inline void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                 std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda),
              b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

/// y (len m or n) = alpha * op(A) * x + beta * y, A row-major m x n.
inline void gemv(bool trans, std::size_t m, std::size_t n, float alpha, const float* a, std::size_t lda,
                 const float* x, float beta, float* y) {
  cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              alpha, a, static_cast<int>(lda), x, 1, beta, y, 1);
}

}  // namespace tessera::detail::blas
