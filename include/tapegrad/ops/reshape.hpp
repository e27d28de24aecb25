// tapegrad/ops/reshape.hpp — y = x with a new shape, same row-major element order.
//   x (...), y (shape), numel(shape) == x.size()     Saved: nothing.
//   Backward: dx += dy (read in x's shape)
// The output is a copy: tensors own their data, there are no views.
#pragma once

#include "../core/tape.hpp"

#include <algorithm>
#include <string>

namespace tapegrad::ops {

inline const OpName kReshape{"reshape"};

template <class T>
Tensor<T> reshape(Tape& tape, const Tensor<T>& x, const Shape& shape) {
  if (numel(shape) != x.size())
    throw op_error(kReshape, "cannot reshape " + shape_str(x.shape()) + " (" + std::to_string(x.size()) +
                                 " elements) to " + shape_str(shape) + " (" + std::to_string(numel(shape)) +
                                 " elements)");
  Tensor<T> y(Array<T>::from_shape(shape));
  std::copy_n(x.data(), x.size(), y.data());

  return tape.record(kReshape, y, [x = GradRef<T>(x), y = GradRef<T>(y)] {
    const T* dy = y.grad().data();
    T* dx = x.grad_accumulator(kReshape.name()).data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i) dx[i] += dy[i];
  }, x);
}

}  // namespace tapegrad::ops
