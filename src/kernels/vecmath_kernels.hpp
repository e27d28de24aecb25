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

  static constexpr Kernels table(Isa isa) { return {isa, &exp_shifted, &max_of, &tanh_via_exp, &fma_gflops}; }
};

}  // namespace tapegrad::vec::kernels
