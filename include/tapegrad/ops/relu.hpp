// tapegrad/ops/relu.hpp — y = max(x, 0), elementwise.
//   x (...), y (...)        Saved: the mask x > 0, one byte per element (x's and y's
//                           values are not kept for backward).
//   Backward: dx += dy where x > 0 (the derivative at 0 is taken as 0, as PyTorch does)
#pragma once

#include "../core/tape.hpp"

#include <vector>

namespace tapegrad::ops {

inline const OpName kRelu{"relu"};

template <class T>
Tensor<T> relu(Tape& tape, const Tensor<T>& x) {
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  std::vector<unsigned char> positive(x.size());
  const T* xs = x.data();
  T* ys = y.data();
  for (std::size_t i = 0, n = x.size(); i < n; ++i) {
    positive[i] = xs[i] > T(0);
    ys[i] = xs[i] < T(0) ? T(0) : xs[i];  // a NaN passes through
  }

  return tape.record(kRelu, y, [x = GradRef<T>(x), y = GradRef<T>(y), positive = std::move(positive)] {
    const T* dy = y.grad().data();
    T* dx = x.grad_accumulator(kRelu.name()).data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i)
      if (positive[i]) dx[i] += dy[i];
  }, x);
}

}  // namespace tapegrad::ops
