// tapegrad/ops/gelu.hpp — GPT-2's tanh GELU, elementwise:
//   y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   x (...), y (...)        Saved: x (the input).
//   Backward (the exact derivative of this form):
//   dx += dy * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2))
#pragma once

#include "../core/tape.hpp"

#include <cmath>

namespace tapegrad::ops {

inline const OpName kGelu{"gelu"};

namespace detail {
template <class T>
inline constexpr T gelu_k = T(0.7978845608028654);  // sqrt(2/pi)
template <class T>
inline constexpr T gelu_c = T(0.044715);
}  // namespace detail

template <class T>
Tensor<T> gelu(Tape& tape, const Tensor<T>& x) {
  using detail::gelu_c, detail::gelu_k;
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  const T* xs = x.data();
  T* ys = y.data();
  for (std::size_t i = 0, n = x.size(); i < n; ++i) {
    const T v = xs[i];
    ys[i] = T(0.5) * v * (T(1) + std::tanh(gelu_k<T> * (v + gelu_c<T> * v * v * v)));
  }

  return tape.record(kGelu, y, [x, y] {
    const T* dy = y.grad().data();
    const T* xs = x.data();
    T* dx = x.grad_accumulator(kGelu.name()).data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i) {
      const T v = xs[i], th = std::tanh(gelu_k<T> * (v + gelu_c<T> * v * v * v));
      const T du = gelu_k<T> * (T(1) + T(3) * gelu_c<T> * v * v);
      dx[i] += dy[i] * (T(0.5) * (T(1) + th) + T(0.5) * v * (T(1) - th * th) * du);
    }
  }, x);
}

}  // namespace tapegrad::ops
