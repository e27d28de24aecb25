// tapegrad/ops/gelu.hpp — GPT-2's tanh GELU, elementwise:
//   y = 0.5 x (1 + t),  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   x (...), y (...)        Saved: x (the input) and t, so backward computes no tanh.
//   Backward (the exact derivative of this form):
//   dx += dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))
// For float, tanh(u) = 1 - 2 / (1 + exp(2u)) with a vector exp (core/vecmath.hpp): within
// 1e-7 of tanh (bench: GELU was the largest non-GEMM cost of a training step).
// The kernels: gelu_row and gelu_derivative (rows.hpp).
#pragma once

#include "../core/tape.hpp"
#include "rows.hpp"

#include <cmath>
#include <type_traits>
#include <vector>

namespace tapegrad::ops {

inline const OpName kGelu{"gelu"};

template <class T>
Tensor<T> gelu(Tape& tape, const Tensor<T>& x) {
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  PooledVector<T> t(x.size());
  const T* xs = x.data();
  T* ys = y.data();
  const Context ctx = tape.context();
  parallel_blocks(ctx, x.size(), kElementBlock,
                  [&](std::size_t b, std::size_t e) { gelu_row(xs + b, e - b, t.data() + b, ys + b); });

  return tape.record(kGelu, y, [x, y = GradRef<T>(y), t = std::move(t), ctx] {
    const T* dy = y.grad().data();
    const T* xin = x.data();
    T* dx = x.grad_accumulator(kGelu.name()).data();
    parallel_blocks(ctx, x.size(), kElementBlock, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) dx[i] += dy[i] * gelu_derivative(xin[i], t[i]);
    });
  }, x);
}

}  // namespace tapegrad::ops
