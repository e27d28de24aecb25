// tapegrad/ops/scale.hpp — y = c * x for a constant c (e.g. attention's 1/sqrt(head_dim)).
//   x (...), y (...)        Saved: nothing but c (x and y are held for their gradients only).
//   Backward: dx += c * dy
#pragma once

#include "../core/tape.hpp"

namespace tapegrad::ops {

inline const OpName kScale{"scale"};

template <class T>
Tensor<T> scale(Tape& tape, const Tensor<T>& x, T c) {
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  const T* xs = x.data();
  T* ys = y.data();
  for (std::size_t i = 0, n = x.size(); i < n; ++i) ys[i] = c * xs[i];

  return tape.record(kScale, y, [x = GradRef<T>(x), y = GradRef<T>(y), c] {
    const T* dy = y.grad().data();
    T* dx = x.grad_accumulator(kScale.name()).data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i) dx[i] += c * dy[i];
  }, x);
}

}  // namespace tapegrad::ops
