// tapegrad/ops/gelu.hpp — GPT-2's tanh GELU, elementwise:
//   y = 0.5 x (1 + t),  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   x (...), y (...)        Saved: x (the input) and t, so backward computes no tanh.
//   Backward (the exact derivative of this form):
//   dx += dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))
// For float, tanh(u) = 1 - 2 / (1 + exp(2u)) with a vector exp (core/vecmath.hpp): within
// 1e-7 of tanh (bench: GELU was the largest non-GEMM cost of a training step).
#pragma once

#include "../core/tape.hpp"
#include "../core/vecmath.hpp"

#include <cmath>
#include <type_traits>
#include <vector>

namespace tapegrad::ops {

inline const OpName kGelu{"gelu"};

namespace detail {
template <class T>
inline constexpr T gelu_k = T(0.7978845608028654);  // sqrt(2/pi)
template <class T>
inline constexpr T gelu_c = T(0.044715);

// y (n) = GELU(x), keeping t (n) = tanh(u) for the backward; y may alias x.
template <class T>
void gelu_forward(const T* x, std::size_t n, T* t, T* y) {
  for (std::size_t i = 0; i < n; ++i) t[i] = gelu_k<T> * (x[i] + gelu_c<T> * x[i] * x[i] * x[i]);  // u
  vec::tanh_via_exp(t, n, t);
  for (std::size_t i = 0; i < n; ++i) y[i] = T(0.5) * x[i] * (T(1) + t[i]);
}

}  // namespace detail

template <class T>
Tensor<T> gelu(Tape& tape, const Tensor<T>& x) {
  using detail::gelu_c, detail::gelu_k;
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  PooledVector<T> t(x.size());
  const T* xs = x.data();
  T* ys = y.data();
  const Context ctx = tape.context();
  parallel_blocks(ctx, x.size(), kElementBlock,
                  [&](std::size_t b, std::size_t e) { detail::gelu_forward(xs + b, e - b, t.data() + b, ys + b); });

  return tape.record(kGelu, y, [x, y = GradRef<T>(y), t = std::move(t), ctx] {
    const T* dy = y.grad().data();
    const T* xin = x.data();
    T* dx = x.grad_accumulator(kGelu.name()).data();
    parallel_blocks(ctx, x.size(), kElementBlock, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) {
        const T v = xin[i], du = gelu_k<T> * (T(1) + T(3) * gelu_c<T> * v * v);
        dx[i] += dy[i] * (T(0.5) * (T(1) + t[i]) + T(0.5) * v * (T(1) - t[i] * t[i]) * du);
      }
    });
  }, x);
}

}  // namespace tapegrad::ops
