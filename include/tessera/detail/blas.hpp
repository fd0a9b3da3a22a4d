// tessera/detail/blas.hpp - row-major matrix products on the CPU: CBLAS (OpenBLAS) by default, or
// oneDNN's dnnl_sgemm for gemm when built with TESSERA_GEMM_ONEDNN=1 (CMake: -DTESSERA_GEMM=onednn).
#pragma once

#include <cblas.h>

#include <cstddef>

#if defined(TESSERA_GEMM_ONEDNN) && TESSERA_GEMM_ONEDNN
#include <oneapi/dnnl/dnnl.h>

#include <string>

#include "tessera/core/error.hpp"
#endif

namespace tessera::detail::blas {

/// The library behind gemm: "cblas" or "onednn" (shown by benchmarks and tests).
#if defined(TESSERA_GEMM_ONEDNN) && TESSERA_GEMM_ONEDNN
inline constexpr const char* gemm_backend = "onednn";
#else
inline constexpr const char* gemm_backend = "cblas";
#endif

/// C (m x n) = alpha * op(A) * op(B) + beta * C, all row-major with leading dimensions.
inline void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                 std::size_t ldc) {
#if defined(TESSERA_GEMM_ONEDNN) && TESSERA_GEMM_ONEDNN
  // dnnl_sgemm is row-major. With oneDNN's OpenMP runtime it runs on omp_get_max_threads() of the
  // calling thread, so a worker that set omp_set_num_threads(1) gets a sequential product.
  const dnnl_status_t status =
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', static_cast<dnnl_dim_t>(m), static_cast<dnnl_dim_t>(n),
                 static_cast<dnnl_dim_t>(k), alpha, a, static_cast<dnnl_dim_t>(lda), b, static_cast<dnnl_dim_t>(ldb),
                 beta, c, static_cast<dnnl_dim_t>(ldc));
  if (status != dnnl_success) {
    throw Error(ErrorKind::runtime, "dnnl_sgemm failed (status " + std::to_string(static_cast<int>(status)) +
                                        ") for m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                        " k=" + std::to_string(k));
  }
#else
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda),
              b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
#endif
}

/// y (len m or n) = alpha * op(A) * x + beta * y, A row-major m x n (CBLAS with either backend).
inline void gemv(bool trans, std::size_t m, std::size_t n, float alpha, const float* a, std::size_t lda,
                 const float* x, float beta, float* y) {
  cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              alpha, a, static_cast<int>(lda), x, 1, beta, y, 1);
}

}  // namespace tessera::detail::blas
