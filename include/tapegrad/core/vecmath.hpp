// tapegrad/core/vecmath.hpp — exp, max and tanh over contiguous float arrays, and a GEMM for
// small float matrices, at the widest vector width the CPU has, chosen at run time.
//
// The hot transcendental loops (softmax rows, the attention's P, cross-entropy, GELU's
// tanh) call these. For float they run xsimd kernels compiled once per instruction set in
// the tapegrad_kernels library (src/kernels/: SSE2, AVX2 + FMA, AVX-512), and the first
// call picks the widest the CPU supports, so one portable build runs 16 lanes on an
// AVX-512 CPU and 4 on an old one. TAPEGRAD_ISA=sse2|avx2|avx512 in the environment forces
// a narrower path (a wider one than the CPU has is refused with a warning on stderr and
// the widest supported runs). Results differ between paths only in the last bits of exp
// and the order lanes are summed in; within a path they are the same at any thread count.
// The error against std::exp is tested per path ("vecmath: ..." in
// tests/test_ops_nonlinear.cpp: at most 1 ulp where the result is a normal float; results
// below FLT_MIN, x < -87.34, are flushed to 0, and x > 88.376 gives inf, a little before
// std::exp's 88.72; the kernels exponentiate only x - max <= 0, and 2u for tanh).
// For double (the gradient checks) they stay on std::exp, so those figures do not move.
// No -ffast-math: exp(-inf) = 0 and exp of a finite argument past the range saturates
// as std::exp does.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>

namespace tapegrad::vec {

enum class Isa { sse2, avx2, avx512 };

// One AdamW step's constants (nn::AdamWUpdate): m <- b1 m + c1 g, v <- b2 v + c2 g^2,
// p <- p decay - step_size m / (sqrt(v) / bc2_sqrt + eps); decay is 1 without weight decay.
struct AdamWStep {
  float b1, b2, c1, c2, step_size, bc2_sqrt, eps, decay;
};

// One instruction set's float kernels (src/kernels/vecmath_kernels.hpp documents them).
struct Kernels {
  Isa isa;
  float (*exp_shifted)(const float* x, std::size_t n, float shift, float* y);
  float (*max_of)(const float* x, std::size_t n);
  void (*tanh_via_exp)(const float* u, std::size_t n, float* y);
  // C (M,N) = alpha op(A) op(B) + beta C for the small shapes of kSmallGemmWork (C not read
  // when beta = 0): blas.hpp's float GEMMs of that size, where a library call costs more
  // than the arithmetic.
  void (*small_gemm)(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                     std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc);
  double (*fma_gflops)(std::size_t rounds);  // one thread's multiply-add rate at this width
  // The AdamW update of n values of a parameter p, its gradient g and moments m, v, in place.
  void (*adamw)(float* p, const float* g, float* m, float* v, std::size_t n, const AdamWStep& step);
  // The sum of x[i]^2, i < n, in double (lanes summed, then the tail, in a fixed order).
  double (*sum_squares)(const float* x, std::size_t n);
};

// The float GEMMs small_gemm takes: at most kSmallGemmWork multiply-adds, and op(B) (K, N),
// its columns padded to a multiple of 16, of at most kSmallGemmPanel values (it is packed on
// the stack).
inline constexpr std::size_t kSmallGemmWork = std::size_t(1) << 14;
inline constexpr std::size_t kSmallGemmPanel = std::size_t(1) << 13;
inline bool is_small_gemm(std::size_t M, std::size_t N, std::size_t K) {
  return M * N * K <= kSmallGemmWork && K * ((N + 15) / 16 * 16) <= kSmallGemmPanel;
}

// The kernels in use: the widest the CPU has, or TAPEGRAD_ISA's (chosen on the first call).
const Kernels& active_kernels();
// The widest kernels the CPU supports, whatever TAPEGRAD_ISA says.
const Kernels& widest_kernels();
// "sse2", "avx2" or "avx512".
const char* isa_name(Isa isa);

// y[i] = exp(x[i] - shift), i < n (y may be x); returns the sum of the y[i] (vector lanes
// summed, then the tail, in a fixed order).
template <class T>
T exp_shifted(const T* x, std::size_t n, T shift, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    return active_kernels().exp_shifted(x, n, shift, y);
  } else {
    T sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
      y[i] = std::exp(x[i] - shift);
      sum += y[i];
    }
    return sum;
  }
}

// The largest of x[0, n) (n >= 1); -inf only if every value is -inf. NaN-free input assumed.
template <class T>
T max_of(const T* x, std::size_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return active_kernels().max_of(x, n);
  } else {
    T m = x[0];
    for (std::size_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
  }
}

// y[i] = 1 - 2 / (1 + exp(2 u[i])) = tanh(u[i]) for float (within 1e-7 of tanh; GELU's tanh),
// std::tanh for double.
template <class T>
void tanh_via_exp(const T* u, std::size_t n, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    active_kernels().tanh_via_exp(u, n, y);
  } else {
    for (std::size_t i = 0; i < n; ++i) y[i] = std::tanh(u[i]);
  }
}

// The machine's float multiply-add peak per core in GFLOP/s: a loop of independent FMAs at
// the widest width the CPU has, timed by the thread's CPU time (so other load barely moves it).
inline double fma_peak_gflops_per_core() {
  const Kernels& k = widest_kernels();
  k.fma_gflops(std::size_t(1) << 20);  // warm-up: clocks up, AVX-512 units on
  double best = 0;
  for (int r = 0; r < 5; ++r) best = std::max(best, k.fma_gflops(std::size_t(1) << 24));
  return best;
}

}  // namespace tapegrad::vec
