// tapegrad/core/blas.hpp — row-major GEMM and GEMV on contiguous buffers, for float and
// double: the one file that calls CBLAS.
//   gemm: C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C
//   gemv: y (M)   = alpha * op(A) (M,K) * x (K) + beta * y
// op(X) = X or X^T as the trans flag says; leading dimensions follow from the
// stored (untransposed) shapes. Backward rules pass beta = 1 to accumulate.
// A GEMM of one row (M = 1) runs as a GEMV, y = op(B)^T a: a GEMM would pack all of B
// for one row (a sampler's one-token step is made of them).
//
// OpenBLAS always runs single-threaded here: the threads are tapegrad's own (OpenMP,
// core/parallel.hpp), one pool for GEMMs and every other kernel. gemm(ctx, ...) cuts C
// into blocks of rows (or of columns, when N > M) whose size depends only on the shape,
// and runs one single-threaded GEMM per block, in parallel. So each element of C comes
// from the same call, bit for bit, at any thread count; and OpenBLAS's own pthreads
// never compete with the OpenMP threads for the cores (measured in README, Performance).
#pragma once

#include "parallel.hpp"

#include <cblas.h>

#include <cstddef>

namespace tapegrad::blas {

namespace detail {

inline void raw(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
inline void raw(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, double alpha, const double* A,
                std::size_t lda, const double* B, std::size_t ldb, double beta, double* C, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

inline void raw_gemv(bool ta, std::size_t M, std::size_t K, float alpha, const float* A, std::size_t lda, const float* x,
                     float beta, float* y) {
  cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, int(ta ? K : M), int(ta ? M : K), alpha, A, int(lda), x, 1,
              beta, y, 1);
}
inline void raw_gemv(bool ta, std::size_t M, std::size_t K, double alpha, const double* A, std::size_t lda,
                     const double* x, double beta, double* y) {
  cblas_dgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, int(ta ? K : M), int(ta ? M : K), alpha, A, int(lda), x, 1,
              beta, y, 1);
}

// OpenBLAS's own thread count, set to 1 once per process.
inline void single_threaded_blas() {
  static const bool done = (openblas_set_num_threads(1), true);
  (void)done;
}

// GEMMs below this many multiply-adds run as one call: splitting costs more than it gains.
inline constexpr std::size_t kSplitWork = std::size_t(1) << 21;

// Rows (or columns) per block of a split GEMM: about 1/16 of the dimension, a multiple
// of 32, at least 64. A function of the shape only.
inline std::size_t split_block(std::size_t dim) { return std::max<std::size_t>(64, (dim / 16 + 31) / 32 * 32); }

// One GEMM call, or a GEMV when C is one row: y (N) = alpha op(B)^T a + beta y, where a
// is A's K values (contiguous whether A is stored (1, K) or, transposed, (K, 1)).
template <class T>
void gemm_call(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
               const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
  if (M == 1) return raw_gemv(!tb, N, K, alpha, B, ldb, A, beta, C);
  raw(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace detail

// y (M) = alpha op(A) (M,K) x (K) + beta y, single-threaded; A stored (M,K), or (K,M) with trans_a.
template <class T>
void gemv(bool trans_a, std::size_t M, std::size_t K, T alpha, const T* A, const T* x, T beta, T* y) {
  detail::single_threaded_blas();
  detail::raw_gemv(trans_a, M, K, alpha, A, trans_a ? M : K, x, beta, y);
}

// One single-threaded GEMM (inside a parallel region, or small work).
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, const T* B,
          T beta, T* C) {
  detail::single_threaded_blas();
  detail::gemm_call(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

// The same GEMM on up to ctx.threads() threads, cut into shape-fixed blocks of C.
template <class T>
void gemm(const Context& ctx, bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha,
          const T* A, const T* B, T beta, T* C) {
  detail::single_threaded_blas();
  const std::size_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  if (M * N * K < detail::kSplitWork || std::max(M, N) < 128 || M == 1) {
    detail::gemm_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
  } else if (M >= N) {  // blocks of rows: A's rows (columns of the stored A^T) and C's rows
    parallel_blocks(ctx, M, detail::split_block(M), [&](std::size_t b, std::size_t e) {
      detail::raw(trans_a, trans_b, e - b, N, K, alpha, A + (trans_a ? b : b * lda), lda, B, ldb, beta, C + b * N, N);
    });
  } else {  // blocks of columns: B's columns (rows of the stored B^T) and C's columns
    parallel_blocks(ctx, N, detail::split_block(N), [&](std::size_t b, std::size_t e) {
      detail::raw(trans_a, trans_b, M, e - b, K, alpha, A, lda, B + (trans_b ? b * ldb : b), ldb, beta, C + b, N);
    });
  }
}

}  // namespace tapegrad::blas
