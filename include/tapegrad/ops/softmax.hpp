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
#pragma once

#include "../core/tape.hpp"
#include "../core/vecmath.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tapegrad::ops {

inline const OpName kSoftmax{"softmax"};
inline const OpName kLogSoftmax{"log_softmax", OpName::Output::may_hold_minus_inf};

namespace detail {

template <class T>
struct RowExp {
  T max;  // row max; -inf for a row entirely -inf
  T sum;  // sum of exp(x - max); 0 for a row entirely -inf
  T log_sum_exp() const { return sum > T(0) ? max + std::log(sum) : -std::numeric_limits<T>::infinity(); }
};

// One row's max and max-subtracted exponential sum; writes e[i] = exp(x[i] - max)
// when e is given (0 for a row entirely -inf). Shared by softmax, log_softmax and
// cross_entropy.
// The exponentials are vec::exp_shifted's (core/vecmath.hpp).
template <class T>
RowExp<T> row_exp(const T* x, std::size_t n, T* e = nullptr) {
  RowExp<T> r{-std::numeric_limits<T>::infinity(), T(0)};
  if (n == 0) return r;
  r.max = vec::max_of(x, n);
  if (r.max == -std::numeric_limits<T>::infinity()) {
    if (e) std::fill(e, e + n, T(0));
    return r;
  }
  if (e) {
    r.sum = vec::exp_shifted(x, n, r.max, e);
  } else {  // the sum only: through a small buffer
    T buffer[256];
    for (std::size_t i = 0; i < n; i += 256) r.sum += vec::exp_shifted(x + i, std::min<std::size_t>(256, n - i), r.max, buffer);
  }
  return r;
}

// Rows per parallel block for row-wise kernels over rows of C elements.
inline std::size_t row_block(std::size_t C) { return std::max<std::size_t>(1, kElementBlock / C); }

// The row length C of an op over the last axis; throws for rank 0 or an empty row.
inline std::size_t last_axis(const OpName& op, const Shape& s) {
  if (s.empty() || s.back() == 0) throw op_error(op, "needs rank >= 1 and a non-empty last axis, got " + shape_str(s));
  return s.back();
}

}  // namespace detail

template <class T>
Tensor<T> softmax(Tape& tape, const Tensor<T>& x) {
  const std::size_t C = detail::last_axis(kSoftmax, x.shape()), rows = x.size() / C;
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  const Context ctx = tape.context();
  parallel_blocks(ctx, rows, detail::row_block(C), [&](std::size_t rb, std::size_t re) {
    for (std::size_t r = rb; r < re; ++r) {
      T* yr = y.data() + r * C;
      const auto s = detail::row_exp(x.data() + r * C, C, yr);
      const T inv = s.sum > T(0) ? T(1) / s.sum : T(0);
      for (std::size_t i = 0; i < C; ++i) yr[i] *= inv;
    }
  });

  return tape.record(kSoftmax, y, [x = GradRef<T>(x), y, ctx, rows, C] {
    const T* dy = y.grad().data();
    const T* yv = y.data();
    T* dx = x.grad_accumulator(kSoftmax.name()).data();
    parallel_blocks(ctx, rows, detail::row_block(C), [&](std::size_t rb, std::size_t re) {
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
  const std::size_t C = detail::last_axis(kLogSoftmax, x.shape()), rows = x.size() / C;
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  const Context ctx = tape.context();
  parallel_blocks(ctx, rows, detail::row_block(C), [&](std::size_t rb, std::size_t re) {
    for (std::size_t r = rb; r < re; ++r) {
      const T* xr = x.data() + r * C;
      T* yr = y.data() + r * C;
      const auto s = detail::row_exp(xr, C);  // (x - max) - log(sum): no cancellation against a large max
      const T log_sum = std::log(s.sum);
      for (std::size_t i = 0; i < C; ++i) yr[i] = s.sum > T(0) ? (xr[i] - s.max) - log_sum : ninf;
    }
  });

  return tape.record(kLogSoftmax, y, [x = GradRef<T>(x), y, ctx, rows, C] {
    const T* dy = y.grad().data();
    const T* yv = y.data();
    T* dx = x.grad_accumulator(kLogSoftmax.name()).data();
    parallel_blocks(ctx, rows, detail::row_block(C), [&](std::size_t rb, std::size_t re) {
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
