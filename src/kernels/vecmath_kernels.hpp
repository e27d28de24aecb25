// src/kernels/vecmath_kernels.hpp — the float kernels of core/vecmath.hpp, written once over
// xsimd's batch<float, Arch>. Each vecmath_<isa>.cpp compiles them for one instruction set
// (its own -m flags) and fills one vec::Kernels table; vecmath_dispatch.cpp picks the table.
// Kept to plain loops: a std:: template instantiated here could be merged by the linker with
// another ISA's copy, so the kernels use nothing but xsimd (templated on Arch) and scalars.
#pragma once

#include <tapegrad/core/vecmath.hpp>

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstddef>
#include <ctime>

namespace tapegrad::vec::kernels {

template <class Arch>
struct For {
  using batch = xsimd::batch<float, Arch>;
  static constexpr std::size_t w = batch::size;

  static float exp_shifted(const float* x, std::size_t n, float shift, float* y) {
    std::size_t i = 0;
    batch acc(0.f);
    const batch s(shift);
    for (const std::size_t end = n - n % w; i < end; i += w) {
      const batch e = xsimd::exp(batch::load_unaligned(x + i) - s);
      e.store_unaligned(y + i);
      acc += e;
    }
    float sum = xsimd::hadd(acc);
    for (; i < n; ++i) {
      y[i] = std::exp(x[i] - shift);
      sum += y[i];
    }
    return sum;
  }

  static float max_of(const float* x, std::size_t n) {
    std::size_t i = 0;
    float m = x[0];
    if (n >= w) {
      batch acc = batch::load_unaligned(x);
      for (i = w; i < n - n % w; i += w) acc = xsimd::max(acc, batch::load_unaligned(x + i));
      alignas(64) float lanes[w];
      acc.store_aligned(lanes);
      m = lanes[0];
      for (std::size_t j = 1; j < w; ++j) m = lanes[j] > m ? lanes[j] : m;
    }
    for (; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
  }

  static void tanh_via_exp(const float* u, std::size_t n, float* y) {
    std::size_t i = 0;
    const batch one(1.f), two(2.f);
    for (const std::size_t end = n - n % w; i < end; i += w) {
      const batch e = xsimd::exp(two * batch::load_unaligned(u + i));
      (one - two / (one + e)).store_unaligned(y + i);
    }
    for (; i < n; ++i) y[i] = 1.0f - 2.0f / (1.0f + std::exp(2.0f * u[i]));
  }

  // C (M,N) = alpha op(A) op(B) + beta C, small shapes (vec::is_small_gemm). op(B) is packed
  // into a (K, np) panel, np = N rounded up to the vector width with zero columns; then
  // blocks of kRows rows of C times w columns are summed over k in order, one vector
  // accumulator per row (independent multiply-add chains), and stored as
  // beta * C + alpha * sum (C not read when beta = 0). A result depends on the shape and
  // the values alone, not on where C sits.
  static void small_gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                         std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
    constexpr std::size_t kRows = 4;
    alignas(64) float panel[kSmallGemmPanel];
    alignas(64) float out[w];
    const std::size_t np = (N + w - 1) / w * w;
    for (std::size_t k = 0; k < K; ++k)
      for (std::size_t j = 0; j < np; ++j) panel[k * np + j] = j >= N ? 0.f : tb ? B[j * ldb + k] : B[k * ldb + j];
    const std::size_t sa_i = ta ? 1 : lda, sa_k = ta ? lda : 1;  // A(i, k) = A[i sa_i + k sa_k]
    const batch va(alpha), vb(beta);
    for (std::size_t i0 = 0; i0 < M; i0 += kRows) {
      const float* a[kRows];  // the block's rows of A; past M, the last row again (computed, not stored)
      for (std::size_t r = 0; r < kRows; ++r) a[r] = A + std::min(i0 + r, M - 1) * sa_i;
      for (std::size_t j = 0; j < np; j += w) {
        batch acc[kRows];
        for (std::size_t r = 0; r < kRows; ++r) acc[r] = batch(0.f);
        for (std::size_t k = 0; k < K; ++k) {
          const batch p = batch::load_aligned(panel + k * np + j);
          for (std::size_t r = 0; r < kRows; ++r) acc[r] = xsimd::fma(batch(a[r][k * sa_k]), p, acc[r]);
        }
        const std::size_t cols = std::min(w, N - j);
        for (std::size_t r = 0; r < kRows && i0 + r < M; ++r) {
          float* c = C + (i0 + r) * ldc + j;
          if (cols == w) {
            (beta == 0.f ? va * acc[r] : vb * batch::load_unaligned(c) + va * acc[r]).store_unaligned(c);
          } else {
            (va * acc[r]).store_aligned(out);
            for (std::size_t u = 0; u < cols; ++u) c[u] = beta == 0.f ? out[u] : beta * c[u] + out[u];
          }
        }
      }
    }
  }

  // Multiply-adds on 12 independent accumulators (enough to hide the FMA latency on two
  // pipes), `rounds` times; GFLOP/s by the calling thread's CPU time.
  static double fma_gflops(std::size_t rounds) {
    constexpr int kAcc = 12;
    batch acc[kAcc];
    for (int j = 0; j < kAcc; ++j) acc[j] = batch(float(j) * 1e-3f);
    const batch m(0.999999f), a(1e-7f);
    timespec t0{}, t1{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    for (std::size_t r = 0; r < rounds; ++r)
      for (int j = 0; j < kAcc; ++j) acc[j] = xsimd::fma(acc[j], m, a);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    batch total = acc[0];
    for (int j = 1; j < kAcc; ++j) total += acc[j];
    volatile float sink = xsimd::hadd(total);  // keeps the loop
    (void)sink;
    const double s = double(t1.tv_sec - t0.tv_sec) + 1e-9 * double(t1.tv_nsec - t0.tv_nsec);
    return 2.0 * double(w) * kAcc * double(rounds) / s / 1e9;
  }

  // The same expressions for the vector body and the scalar tail, element by element.
  static void adamw(float* p, const float* g, float* m, float* v, std::size_t n, const AdamWStep& s) {
    std::size_t i = 0;
    const batch b1(s.b1), b2(s.b2), c1(s.c1), c2(s.c2), step(s.step_size), bc2(s.bc2_sqrt), eps(s.eps), decay(s.decay);
    for (const std::size_t end = n - n % w; i < end; i += w) {
      const batch gi = batch::load_unaligned(g + i);
      const batch mi = b1 * batch::load_unaligned(m + i) + c1 * gi;
      const batch vi = b2 * batch::load_unaligned(v + i) + c2 * gi * gi;
      mi.store_unaligned(m + i);
      vi.store_unaligned(v + i);
      (batch::load_unaligned(p + i) * decay - step * mi / (xsimd::sqrt(vi) / bc2 + eps)).store_unaligned(p + i);
    }
    for (; i < n; ++i) {
      m[i] = s.b1 * m[i] + s.c1 * g[i];
      v[i] = s.b2 * v[i] + s.c2 * g[i] * g[i];
      p[i] = p[i] * s.decay - s.step_size * m[i] / (std::sqrt(v[i]) / s.bc2_sqrt + s.eps);
    }
  }

  static double sum_squares(const float* x, std::size_t n) {
    using dbatch = xsimd::batch<double, Arch>;
    constexpr std::size_t dw = dbatch::size;
    alignas(64) double lanes[w];
    std::size_t i = 0;
    dbatch acc[4] = {dbatch(0.0), dbatch(0.0), dbatch(0.0), dbatch(0.0)};  // independent chains
    for (const std::size_t end = n - n % w; i < end; i += w) {
      for (std::size_t j = 0; j < w; ++j) lanes[j] = double(x[i + j]);
      for (std::size_t j = 0; j < w / dw; ++j) {
        const dbatch d = dbatch::load_aligned(lanes + j * dw);
        acc[j % 4] = xsimd::fma(d, d, acc[j % 4]);
      }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])).store_aligned(lanes);
    double sum = 0;
    for (std::size_t j = 0; j < dw; ++j) sum += lanes[j];
    for (; i < n; ++i) sum += double(x[i]) * double(x[i]);
    return sum;
  }

  static constexpr Kernels table(Isa isa) {
    return {isa, &exp_shifted, &max_of, &tanh_via_exp, &small_gemm, &fma_gflops, &adamw, &sum_squares};
  }
};

}  // namespace tapegrad::vec::kernels
