// tapegrad/ops/reduce.hpp — y = sum(x) and y = mean(x) over every element.
//   x (...), y () (rank 0)      Saved: nothing but the factor c (1, or 1/n for mean).
//   Backward: dx_i += c * dy
// The forward accumulates in double, so a float loss over many terms keeps its digits.
#pragma once

#include "../core/tape.hpp"

namespace tapegrad::ops {

inline const OpName kSum{"sum"};
inline const OpName kMean{"mean"};

namespace detail {

// y = c * sum_i x_i, recorded as `op`.
template <class T>
Tensor<T> scaled_total(Tape& tape, const OpName& op, const Tensor<T>& x, T c) {
  const T* xs = x.data();
  double s = 0;
  for (std::size_t i = 0, n = x.size(); i < n; ++i) s += double(xs[i]);
  Tensor<T> y(Array<T>::from_shape(Shape{}));
  *y.data() = T(s) * c;

  return tape.record(op, y, [x = GradRef<T>(x), y = GradRef<T>(y), c, name = op.name()] {
    const T g = c * *y.grad().data();
    T* dx = x.grad_accumulator(name).data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i) dx[i] += g;
  }, x);
}

}  // namespace detail

template <class T>
Tensor<T> sum(Tape& tape, const Tensor<T>& x) {
  return detail::scaled_total(tape, kSum, x, T(1));
}

template <class T>
Tensor<T> mean(Tape& tape, const Tensor<T>& x) {
  if (x.size() == 0) throw op_error(kMean, "mean of an empty tensor of shape " + shape_str(x.shape()));
  return detail::scaled_total(tape, kMean, x, T(1) / T(x.size()));
}

}  // namespace tapegrad::ops
