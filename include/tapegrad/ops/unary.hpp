// tapegrad/ops/unary.hpp — the element-wise unary ops: exp, log, tanh, sigmoid, silu, sqrt.
//   x (...), y (...) of the same shape.
//   op       y                      saved      backward
//   exp      e^x                    y          dx += dy * y
//   log      ln x                   x          dx += dy / x
//   tanh     tanh x                 y          dx += dy * (1 - y^2)
//   sigmoid  s = 1 / (1 + e^-x)     x          dx += dy * e / (1 + e)^2, e = e^-|x|  (= s (1 - s))
//   silu     x s                    x and s    dx += dy * s (1 + x (1 - s))
//   sqrt     x^(1/2)                y          dx += dy / (2 y)
// Domains (IEEE, no throw: values are data, anomaly mode names the first non-finite one):
// log of 0 is -inf and of x < 0 NaN, with gradient 1/x; sqrt of 0 is 0 with an infinite
// gradient, of x < 0 NaN. sigmoid as 1 / (1 + e^-x) never overflows into NaN: for
// x -> -inf e^-x -> inf and s -> 0, for x -> +inf s -> 1; silu follows (x s -> 0, x).
// sigmoid's derivative is taken from x, not as s (1 - s): where s rounds to 1 (x > 37 in
// double, 17 in float) 1 - s would be 0 and lose the gradient ~e^-x that e / (1 + e)^2 keeps.
// silu's s (1 + x (1 - s)) has no such loss: where 1 - s cancels, x (1 - s) is below 1's ulp.
// For float, exp (and so sigmoid, silu) and tanh run on core/vecmath.hpp's vector exp;
// for double on std::exp and std::tanh. Every op splits x into fixed blocks over the
// context's threads, each element computed alone: the same bits at any thread count.
#pragma once

#include "../core/tape.hpp"
#include "../core/vecmath.hpp"

#include <cmath>

namespace tapegrad::ops {

inline const OpName kExp{"exp"};
inline const OpName kLog{"log"};
inline const OpName kTanh{"tanh"};
inline const OpName kSigmoid{"sigmoid"};
inline const OpName kSilu{"silu"};
inline const OpName kSqrt{"sqrt"};

namespace detail {

// y (n) = 1 / (1 + exp(-x)); y may alias x.
template <class T>
void sigmoid_forward(const T* x, std::size_t n, T* y) {
  for (std::size_t i = 0; i < n; ++i) y[i] = -x[i];
  vec::exp_shifted(y, n, T(0), y);
  for (std::size_t i = 0; i < n; ++i) y[i] = T(1) / (T(1) + y[i]);
}

enum class Saves { input, output };

// y = forward(x) block by block; backward dx += dy * derivative(v) with v the saved
// input or output, as `saves` says.
template <Saves saves, class T, class Forward, class Derivative>
Tensor<T> unary_op(Tape& tape, const OpName& op, const Tensor<T>& x, Forward forward, Derivative derivative) {
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  const T* xs = x.data();
  T* ys = y.data();
  const Context ctx = tape.context();
  parallel_blocks(ctx, x.size(), kElementBlock, [&](std::size_t b, std::size_t e) { forward(xs + b, e - b, ys + b); });

  return tape.record(
      op, y,
      [x = GradRef<T>(x), y = GradRef<T>(y), v = saves == Saves::input ? x : y, ctx, derivative, name = op.name()] {
    const T *dy = y.grad().data(), *vs = v.data();
    T* dx = x.grad_accumulator(name).data();
    parallel_blocks(ctx, x.size(), kElementBlock, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) dx[i] += dy[i] * derivative(vs[i]);
    });
      },
      x);
}

}  // namespace detail

template <class T>
Tensor<T> exp(Tape& tape, const Tensor<T>& x) {
  return detail::unary_op<detail::Saves::output>(
      tape, kExp, x, [](const T* in, std::size_t n, T* out) { vec::exp_shifted(in, n, T(0), out); },
      [](T y) { return y; });
}

template <class T>
Tensor<T> log(Tape& tape, const Tensor<T>& x) {
  return detail::unary_op<detail::Saves::input>(
      tape, kLog, x,
      [](const T* in, std::size_t n, T* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = std::log(in[i]);
      },
      [](T v) { return T(1) / v; });
}

template <class T>
Tensor<T> tanh(Tape& tape, const Tensor<T>& x) {
  return detail::unary_op<detail::Saves::output>(
      tape, kTanh, x, [](const T* in, std::size_t n, T* out) { vec::tanh_via_exp(in, n, out); },
      [](T y) { return T(1) - y * y; });
}

template <class T>
Tensor<T> sigmoid(Tape& tape, const Tensor<T>& x) {
  return detail::unary_op<detail::Saves::input>(
      tape, kSigmoid, x, [](const T* in, std::size_t n, T* out) { detail::sigmoid_forward(in, n, out); },
      [](T v) {
    const T e = std::exp(-std::abs(v));
    return e / ((T(1) + e) * (T(1) + e));
      });
}

template <class T>
Tensor<T> sqrt(Tape& tape, const Tensor<T>& x) {
  return detail::unary_op<detail::Saves::output>(
      tape, kSqrt, x,
      [](const T* in, std::size_t n, T* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = std::sqrt(in[i]);
      },
      [](T y) { return T(0.5) / y; });
}

// SiLU (swish): y = x sigmoid(x). Saves x and s = sigmoid(x) (as GELU saves its tanh), so
// the backward computes no exponential.
template <class T>
Tensor<T> silu(Tape& tape, const Tensor<T>& x) {
  Tensor<T> y(Array<T>::from_shape(x.value().shape()));
  PooledVector<T> s(x.size());
  const T* xs = x.data();
  T* ys = y.data();
  const Context ctx = tape.context();
  parallel_blocks(ctx, x.size(), kElementBlock, [&](std::size_t b, std::size_t e) {
    detail::sigmoid_forward(xs + b, e - b, s.data() + b);
    for (std::size_t i = b; i < e; ++i) ys[i] = xs[i] * s[i];
  });

  return tape.record(
      kSilu, y,
      [x, y = GradRef<T>(y), s = std::move(s), ctx] {
    const T *dy = y.grad().data(), *xin = x.data();
    T* dx = x.grad_accumulator(kSilu.name()).data();
    parallel_blocks(ctx, x.size(), kElementBlock, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) dx[i] += dy[i] * s[i] * (T(1) + xin[i] * (T(1) - s[i]));
    });
      },
      x);
}

}  // namespace tapegrad::ops
