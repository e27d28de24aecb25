// tapegrad/core/vecmath.hpp — exp over contiguous float arrays, through xsimd.
//
// The hot transcendental loops (softmax rows, the attention's P, cross-entropy, GELU's
// tanh) call these. For float they use xsimd::exp on the widest vector the build targets
// (SSE2 in a default x86-64 build; AVX2/FMA or AVX-512 with -DTAPEGRAD_ARCH=..., see
// CMakeLists.txt); its error against std::exp is tested ("vecmath: ..." in
// tests/test_ops_nonlinear.cpp: at most 1 ulp where the result is a normal float; results
// below FLT_MIN, x < -87.34, are flushed to 0, and x > 88.376 gives inf, a little before
// std::exp's 88.72; the kernels exponentiate only x - max <= 0, and 2u for tanh).
// For double (the gradient checks) they stay on std::exp, so those figures do not move.
// No -ffast-math: exp(-inf) = 0 and exp of a finite argument past the range saturates
// as std::exp does.
#pragma once

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstddef>
#include <type_traits>

namespace tapegrad::vec {

// y[i] = exp(x[i] - shift), i < n (y may be x); returns the sum of the y[i] (vector lanes
// summed, then the tail, in a fixed order).
template <class T>
T exp_shifted(const T* x, std::size_t n, T shift, T* y) {
  std::size_t i = 0;
  T sum = 0;
  if constexpr (std::is_same_v<T, float>) {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    batch acc(0.f);
    const batch s(shift);
    for (const std::size_t end = n - n % w; i < end; i += w) {
      const batch e = xsimd::exp(batch::load_unaligned(x + i) - s);
      e.store_unaligned(y + i);
      acc += e;
    }
    sum = xsimd::hadd(acc);
  }
  for (; i < n; ++i) {
    y[i] = std::exp(x[i] - shift);
    sum += y[i];
  }
  return sum;
}

// The largest of x[0, n) (n >= 1); -inf only if every value is -inf. NaN-free input assumed.
template <class T>
T max_of(const T* x, std::size_t n) {
  std::size_t i = 0;
  T m = x[0];
  if constexpr (std::is_same_v<T, float>) {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    if (n >= w) {
      batch acc = batch::load_unaligned(x);
      for (i = w; i < n - n % w; i += w) acc = xsimd::max(acc, batch::load_unaligned(x + i));
      alignas(64) float lanes[w];
      acc.store_aligned(lanes);
      m = lanes[0];
      for (std::size_t j = 1; j < w; ++j) m = lanes[j] > m ? lanes[j] : m;
    }
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// y[i] = 1 - 2 / (1 + exp(2 u[i])) = tanh(u[i]) for float (within 1e-7 of tanh; GELU's tanh),
// std::tanh for double.
template <class T>
void tanh_via_exp(const T* u, std::size_t n, T* y) {
  std::size_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    const batch one(1.f), two(2.f);
    for (const std::size_t end = n - n % w; i < end; i += w) {
      const batch e = xsimd::exp(two * batch::load_unaligned(u + i));
      (one - two / (one + e)).store_unaligned(y + i);
    }
    for (; i < n; ++i) y[i] = 1.0f - 2.0f / (1.0f + std::exp(2.0f * u[i]));
  } else {
    for (; i < n; ++i) y[i] = std::tanh(u[i]);
  }
}

}  // namespace tapegrad::vec
