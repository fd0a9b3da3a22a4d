// The GEMM backend oneDNN: this executable is built with TESSERA_GEMM_ONEDNN=1 (tests/CMakeLists.txt),
// and its products agree with a plain triple loop for every transpose, on the calling thread and on
// a worker thread held to one OpenMP thread, as the data-parallel workers are.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <cstddef>
#include <thread>
#include <vector>

#include "tessera/device/cpu.hpp"

namespace {

using tessera::detail::blas::gemm;

// C = alpha op(A) op(B) + beta C, row-major, the slow way
void reference(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const std::vector<float>& a,
               std::size_t lda, const std::vector<float>& b, std::size_t ldb, float beta, std::vector<float>& c,
               std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0;
      for (std::size_t p = 0; p < k; ++p) {
        const float x = ta ? a[p * lda + i] : a[i * lda + p];
        const float y = tb ? b[j * ldb + p] : b[p * ldb + j];
        s += static_cast<double>(x) * y;
      }
      c[i * ldc + j] = static_cast<float>(alpha * s + beta * c[i * ldc + j]);
    }
  }
}

std::vector<float> ramp(std::size_t n, float scale) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(static_cast<int>(i % 17) - 8);
  return v;
}

// every transpose of a 37 x 29 x 41 product with padded leading dimensions
void check_all() {
  const std::size_t m = 37, n = 29, k = 41;
  for (const bool ta : {false, true}) {
    for (const bool tb : {false, true}) {
      const std::size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
      const auto a = ramp((ta ? k : m) * lda, 0.25f);
      const auto b = ramp((tb ? n : k) * ldb, 0.5f);
      auto c = ramp(m * ldc, 1.0f);
      auto expected = c;
      gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 2.0f, c.data(), ldc);
      reference(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 2.0f, expected, ldc);
      for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) REQUIRE(c[i * ldc + j] == Approx(expected[i * ldc + j]).margin(1e-4));
      }
    }
  }
}

}  // namespace

TEST_CASE("the GEMM backend of this build is oneDNN", "[onednn]") {
  REQUIRE(std::string(tessera::detail::blas::gemm_backend) == "onednn");
}

TEST_CASE("dnnl_sgemm agrees with a triple loop for every transpose", "[onednn]") { check_all(); }

TEST_CASE("dnnl_sgemm on a worker thread held to one OpenMP thread", "[onednn]") {
  bool ok = false;
  std::thread worker([&] {
    omp_set_num_threads(1);
    check_all();
    ok = true;
  });
  worker.join();
  REQUIRE(ok);
}

TEST_CASE("a dnnl_sgemm oneDNN refuses is a tessera::Error", "[onednn]") {
  std::vector<float> a(4), b(4), c(4);
  // lda below the row length: oneDNN reports dnnl_invalid_arguments
  REQUIRE_THROWS_AS(gemm(false, false, 2, 2, 2, 1.0f, a.data(), 1, b.data(), 2, 0.0f, c.data(), 2), tessera::Error);
}
