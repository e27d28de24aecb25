// tapegrad/ops/causal_mask.hpp — y = x with y[.., t, u] = -inf for u > t (attention's causal mask).
//   x (..., T, T), y (..., T, T)        Saved: nothing (T only).
//   Backward: dx[.., t, u] += dy[.., t, u] for u <= t; masked entries (u > t) get nothing,
//   so their gradient is exactly 0 (y there is the constant -inf).
#pragma once

#include "../core/tape.hpp"

#include <limits>

namespace tapegrad::ops {

inline const OpName kCausalMask{"causal_mask", OpName::Output::may_hold_minus_inf};

template <class T>
Tensor<T> causal_mask(Tape& tape, const Tensor<T>& x) {
  const Shape xs = x.shape();
  const std::size_t r = xs.size();
  if (r < 2 || xs[r - 1] != xs[r - 2])
    throw op_error(kCausalMask, "needs (..., T, T) with equal last two dims, got " + shape_str(xs));
  const std::size_t n = xs[r - 1], mats = n ? x.size() / (n * n) : 0;

  Tensor<T> y(Array<T>::from_shape(xs));
  const T* xv = x.data();
  T* yv = y.data();
  for (std::size_t i = 0; i < mats * n; ++i)  // row i: query position t = i % n
    for (std::size_t u = 0, t = i % n; u < n; ++u)
      yv[i * n + u] = u <= t ? xv[i * n + u] : -std::numeric_limits<T>::infinity();

  return tape.record(kCausalMask, y, [x = GradRef<T>(x), y = GradRef<T>(y), mats, n] {
    const T* dy = y.grad().data();
    T* dx = x.grad_accumulator(kCausalMask.name()).data();
    for (std::size_t i = 0; i < mats * n; ++i)
      for (std::size_t u = 0, t = i % n; u <= t; ++u) dx[i * n + u] += dy[i * n + u];
  }, x);
}

}  // namespace tapegrad::ops
