// tapegrad/ops/rows.hpp — the row kernels the ops over the last axis are made of: plain
// functions on contiguous rows, no tape, public so that code running a model without a
// tape (a sampler, a kernel of another op) computes exactly what the ops compute.
//
//   row_block(C)                    rows per parallel block for rows of C elements
//   last_axis(op, shape)            the row length C of an op over the last axis (op_error if none)
//   row_exp(x, n, e)                one row's max and sum of exp(x - max); e = exp(x - max)
//   layernorm_row(x, C, w, b, ...)  y = (x - mean) * rstd * w + b, mean and rstd returned
//   gelu_row(x, n, t, y)            GPT-2's tanh GELU, keeping t = tanh(u) for the backward
//   gelu_derivative(x, t)           its derivative at x from that t
//   rmsnorm_row(x, C, w, eps, y)    y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) returned
//
// Their formulas are derived in docs/derivations.md; the ops that use them (softmax,
// log_softmax, cross_entropy, causal_attention, layernorm, gelu, linear, rmsnorm) say so in their headers.
#pragma once

#include "../core/parallel.hpp"
#include "../core/tape.hpp"
#include "../core/vecmath.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace tapegrad::ops {

// Rows per parallel block for row-wise kernels over rows of C elements.
inline std::size_t row_block(std::size_t C) { return std::max<std::size_t>(1, kElementBlock / C); }

// The row length C of an op over the last axis; an op_error for rank 0 or an empty row.
inline std::size_t last_axis(const OpName& op, const Shape& s) {
  if (s.empty() || s.back() == 0) throw op_error(op, "needs rank >= 1 and a non-empty last axis, got " + shape_str(s));
  return s.back();
}

template <class T>
struct RowExp {
  T max;  // row max; -inf for a row entirely -inf
  T sum;  // sum of exp(x - max); 0 for a row entirely -inf
  T log_sum_exp() const { return sum > T(0) ? max + std::log(sum) : -std::numeric_limits<T>::infinity(); }
};

// One row's max and max-subtracted exponential sum; writes e[i] = exp(x[i] - max) when e
// is given (0 for a row entirely -inf; e may be x). The exponentials are
// vec::exp_shifted's (core/vecmath.hpp).
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
    for (std::size_t i = 0; i < n; i += 256)
      r.sum += vec::exp_shifted(x + i, std::min<std::size_t>(256, n - i), r.max, buffer);
  }
  return r;
}

// One row: y (C) = (x - mean) * rstd * w + b with the biased variance and
// rstd = 1 / sqrt(var + eps); mean and rstd are returned (ops::layernorm saves them).
template <class T>
void layernorm_row(const T* x, std::size_t C, const T* w, const T* b, T eps, T* y, T& mean, T& rstd) {
  T m = 0, v = 0;
  for (std::size_t i = 0; i < C; ++i) m += x[i];
  m /= T(C);
  for (std::size_t i = 0; i < C; ++i) v += (x[i] - m) * (x[i] - m);
  const T s = T(1) / std::sqrt(v / T(C) + eps);
  for (std::size_t i = 0; i < C; ++i) y[i] = (x[i] - m) * s * w[i] + b[i];
  mean = m;
  rstd = s;
}

// GPT-2's tanh GELU: y = 0.5 x (1 + t), t = tanh(u), u = gelu_k (x + gelu_c x^3).
template <class T>
inline constexpr T gelu_k = T(0.7978845608028654);  // sqrt(2/pi)
template <class T>
inline constexpr T gelu_c = T(0.044715);

// y (n) = GELU(x), keeping t (n) = tanh(u) for the backward; y may alias x. For float,
// tanh comes from a vector exp (vec::tanh_via_exp).
template <class T>
void gelu_row(const T* x, std::size_t n, T* t, T* y) {
  for (std::size_t i = 0; i < n; ++i) t[i] = gelu_k<T> * (x[i] + gelu_c<T> * x[i] * x[i] * x[i]);  // u
  vec::tanh_via_exp(t, n, t);
  for (std::size_t i = 0; i < n; ++i) y[i] = T(0.5) * x[i] * (T(1) + t[i]);
}

// GELU's derivative at x, from the saved t = tanh(u) (the exact derivative of the tanh form):
//   dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) gelu_k (1 + 3 gelu_c x^2).
template <class T>
T gelu_derivative(T x, T t) {
  const T du = gelu_k<T> * (T(1) + T(3) * gelu_c<T> * x * x);
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
}

// One RMSNorm row: y (C) = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps), returned
// (ops::rmsnorm saves it).
template <class T>
T rmsnorm_row(const T* x, std::size_t C, const T* w, T eps, T* y) {
  T ms = 0;
  for (std::size_t i = 0; i < C; ++i) ms += x[i] * x[i];
  const T s = T(1) / std::sqrt(ms / T(C) + eps);
  for (std::size_t i = 0; i < C; ++i) y[i] = x[i] * s * w[i];
  return s;
}

}  // namespace tapegrad::ops
