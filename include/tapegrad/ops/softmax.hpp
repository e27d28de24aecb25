// tapegrad/ops/softmax.hpp — softmax and log_softmax over the last axis, max-subtracted.
//   x (..., C), y (..., C); rows are the contiguous C-blocks of the last axis.
//   softmax:     y = exp(x - max) / sum(exp(x - max))          Saved: y.
//                Backward: dx += y * (dy - rowsum(dy * y))
//   log_softmax: y = (x - max) - log sum(exp(x - max))         Saved: y.
//                Backward: dx += dy - exp(y) * rowsum(dy)
// Masked entries (x = -inf, e.g. after causal_mask) are constants: softmax gives
// them probability exactly 0 and gradient exactly 0 (y = 0 there); log_softmax
// gives them -inf, adds nothing to their gradient and leaves their dy out of
// rowsum(dy). Chosen convention for a row that is entirely -inf (nothing to attend
// to): softmax is 0 on the whole row (not NaN, so it cannot poison the sum that
// uses it) and log_softmax is -inf on the whole row; both pass zero gradient.
// The row kernel: row_exp (rows.hpp).
#pragma once

#include "../core/tape.hpp"
#include "rows.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tapegrad::ops {

inline const OpName kSoftmax{"softmax"};
inline const OpName kLogSoftmax{"log_softmax", OpName::Output::may_hold_minus_inf};


template <class T>
Tensor<T> softmax(Tape& tape, const Tensor<T>& x) {
  const std::size_t C = last_axis(kSoftmax, x.shape()), rows = x.size() / C;
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  const Context ctx = tape.context();
  parallel_blocks(ctx, rows, row_block(C), [&](std::size_t rb, std::size_t re) {
    for (std::size_t r = rb; r < re; ++r) {
      T* yr = y.data() + r * C;
      const auto s = row_exp(x.data() + r * C, C, yr);
      const T inv = s.sum > T(0) ? T(1) / s.sum : T(0);
      for (std::size_t i = 0; i < C; ++i) yr[i] *= inv;
    }
  });

  return tape.record(kSoftmax, y, [x = GradRef<T>(x), y, ctx, rows, C] {
    const T* dy = y.grad().data();
    const T* yv = y.data();
    T* dx = x.grad_accumulator(kSoftmax.name()).data();
    parallel_blocks(ctx, rows, row_block(C), [&](std::size_t rb, std::size_t re) {
      for (std::size_t r = rb * C; r < re * C; r += C) {
        T dot = 0;
        for (std::size_t i = r; i < r + C; ++i) dot += dy[i] * yv[i];
        for (std::size_t i = r; i < r + C; ++i) dx[i] += yv[i] * (dy[i] - dot);
      }
    });
  }, x);
}

template <class T>
Tensor<T> log_softmax(Tape& tape, const Tensor<T>& x) {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  const std::size_t C = last_axis(kLogSoftmax, x.shape()), rows = x.size() / C;
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  const Context ctx = tape.context();
  parallel_blocks(ctx, rows, row_block(C), [&](std::size_t rb, std::size_t re) {
    for (std::size_t r = rb; r < re; ++r) {
      const T* xr = x.data() + r * C;
      T* yr = y.data() + r * C;
      const auto s = row_exp(xr, C);  // (x - max) - log(sum): no cancellation against a large max
      const T log_sum = std::log(s.sum);
      for (std::size_t i = 0; i < C; ++i) yr[i] = s.sum > T(0) ? (xr[i] - s.max) - log_sum : ninf;
    }
  });

  return tape.record(kLogSoftmax, y, [x = GradRef<T>(x), y, ctx, rows, C] {
    const T* dy = y.grad().data();
    const T* yv = y.data();
    T* dx = x.grad_accumulator(kLogSoftmax.name()).data();
    parallel_blocks(ctx, rows, row_block(C), [&](std::size_t rb, std::size_t re) {
      for (std::size_t r = rb * C; r < re * C; r += C) {
        T sum = 0;
        for (std::size_t i = r; i < r + C; ++i)
          if (yv[i] != ninf) sum += dy[i];
        for (std::size_t i = r; i < r + C; ++i)
          if (yv[i] != ninf) dx[i] += dy[i] - std::exp(yv[i]) * sum;
      }
    });
  }, x);
}

}  // namespace tapegrad::ops
