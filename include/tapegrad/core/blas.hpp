// tapegrad/core/blas.hpp — row-major GEMM on contiguous buffers, for float and double.
//   C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C
// op(X) = X or X^T as the trans flag says; leading dimensions follow from the
// stored (untransposed) shapes. Backward rules pass beta = 1 to accumulate.
#pragma once

#include <cblas.h>

#include <cstddef>

namespace tapegrad::blas {

inline void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, float alpha,
                 const float* A, const float* B, float beta, float* C) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), alpha, A, int(trans_a ? M : K), B, int(trans_b ? K : N), beta, C, int(N));
}

inline void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, double alpha,
                 const double* A, const double* B, double beta, double* C) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), alpha, A, int(trans_a ? M : K), B, int(trans_b ? K : N), beta, C, int(N));
}

// Threads OpenBLAS may use for one GEMM.
inline void set_threads(int n) { openblas_set_num_threads(n); }

}  // namespace tapegrad::blas
