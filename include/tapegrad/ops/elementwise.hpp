// tapegrad/ops/elementwise.hpp — y = a + b and y = a * b with numpy broadcasting.
//
//   a (...), b (...)  aligned on their trailing dims; a dim of 1, or a missing one,
//                     stretches. Either side may broadcast, or both:
//                     [B,T,d]+[d] (bias), [B,T,d]+[T,d] (positional), [2,1,3]*[4,1] -> [2,4,3]
//   y (broadcast shape)
// Saved: add, nothing but the shapes (the broadcast plan); mul, both inputs.
// Backward: each output term is summed back onto the input element it read
// ("unbroadcast", flashlight's sumToShape), one reduction shared by both ops:
//   add: da += unbroadcast(dy)        db += unbroadcast(dy)
//   mul: da += unbroadcast(dy * b)    db += unbroadcast(dy * a)
// Fast paths: same shape, and b's shape a trailing suffix of a's (bias, positional),
// both split over the context's threads (a suffix b's gradient as per-block column sums
// added in block order); anything else walks the output with an odometer, serially.
#pragma once

#include "../core/tape.hpp"

#include <algorithm>
#include <functional>

namespace tapegrad::ops {

inline const OpName kAdd{"add"};
inline const OpName kMul{"mul"};

namespace detail {

// Where each element of y reads a and b from.
struct Broadcast {
  enum class Kind { same, suffix, general };
  Kind kind = Kind::same;
  Shape out;
  std::size_t inner = 1;            // suffix: b.size(), the period of b along y
  std::vector<std::size_t> sa, sb;  // general: a's and b's strides along y's dims (0 = stretched)
};

// Row-major strides of `s` laid along the last s.size() of `rank` dims; 0 where s stretches.
inline std::vector<std::size_t> stretch_strides(const Shape& s, std::size_t rank) {
  std::vector<std::size_t> st(rank, 0);
  for (std::size_t k = s.size(), stride = 1; k-- > 0; stride *= s[k])
    st[rank - s.size() + k] = s[k] == 1 ? 0 : stride;
  return st;
}

inline Broadcast broadcast(const OpName& op, const Shape& a, const Shape& b) {
  Broadcast p;
  const std::size_t r = std::max(a.size(), b.size());
  p.out.assign(r, 1);
  for (std::size_t k = 1; k <= r; ++k) {  // k-th dim from the right
    const std::size_t da = k <= a.size() ? a[a.size() - k] : 1, db = k <= b.size() ? b[b.size() - k] : 1;
    if (da != db && da != 1 && db != 1)
      throw op_error(op, "cannot broadcast a " + shape_str(a) + " with b " + shape_str(b));
    p.out[r - k] = da == 1 ? db : da;
  }
  if (a == b) return p;
  if (b.size() <= a.size() && std::equal(b.begin(), b.end(), a.end() - b.size())) {
    p.kind = Broadcast::Kind::suffix;
    p.inner = numel(b);
    return p;
  }
  p.kind = Broadcast::Kind::general;
  p.sa = stretch_strides(a, r);
  p.sb = stretch_strides(b, r);
  return p;
}

// Rows of a suffix broadcast (y viewed as (rows, inner)) per parallel block.
inline std::size_t suffix_rows(const Broadcast& p) { return std::max<std::size_t>(1, kElementBlock / p.inner); }

// Calls f(i, ia, ib) for every element i of y (flat, row-major), with ia and ib the
// flat indices of the elements of a and b it reads; the fast paths on ctx's threads,
// so f may write only element i's own data there.
template <class F>
void for_each_pair(const Context& ctx, const Broadcast& p, F&& f) {
  const std::size_t n = numel(p.out);
  if (n == 0) return;
  if (p.kind == Broadcast::Kind::same) {
    parallel_blocks(ctx, n, kElementBlock, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) f(i, i, i);
    });
  } else if (p.kind == Broadcast::Kind::suffix) {
    parallel_blocks(ctx, n / p.inner, suffix_rows(p), [&](std::size_t rb, std::size_t re) {
      for (std::size_t row = rb * p.inner; row < re * p.inner; row += p.inner)
        for (std::size_t j = 0; j < p.inner; ++j) f(row + j, row + j, j);
    });
  } else {  // odometer over y's index; the last dim is a plain strided loop
    const std::size_t r = p.out.size(), inner = p.out[r - 1], ua = p.sa[r - 1], ub = p.sb[r - 1];
    std::vector<std::size_t> idx(r, 0);
    std::size_t ia = 0, ib = 0;
    for (std::size_t row = 0; row < n; row += inner) {
      for (std::size_t j = 0; j < inner; ++j) f(row + j, ia + j * ua, ib + j * ub);
      for (std::size_t k = r - 1; k-- > 0;) {
        ia += p.sa[k];
        ib += p.sb[k];
        if (++idx[k] < p.out[k]) break;
        ia -= p.sa[k] * p.out[k];
        ib -= p.sb[k] * p.out[k];
        idx[k] = 0;
      }
    }
  }
}

enum class Side { a, b };

// dx += unbroadcast(dy * w) for input `side`: every output term lands on the element of
// that input it read, so stretched dims are summed. w is the other input (mul), or
// null for add (w = 1).
template <class T>
void unbroadcast_accumulate(const Context& ctx, const Broadcast& p, Side side, const T* dy, const T* w, T* dx) {
  auto into = [&](auto term) {
    if (side == Side::a)
      for_each_pair(p.kind == Broadcast::Kind::general ? Context{} : ctx, p,
                    [&](std::size_t i, std::size_t ia, std::size_t ib) { dx[ia] += term(i, ib); });
    else if (p.kind == Broadcast::Kind::suffix)  // a column sum of y viewed as (rows, inner)
      parallel_column_sum(ctx, numel(p.out) / p.inner, suffix_rows(p), p.inner, dx,
                          [&](std::size_t rb, std::size_t re, T* part) {
                            for (std::size_t row = rb * p.inner; row < re * p.inner; row += p.inner)
                              for (std::size_t j = 0; j < p.inner; ++j) part[j] += term(row + j, row + j);
                          });
    else
      for_each_pair(p.kind == Broadcast::Kind::general ? Context{} : ctx, p,
                    [&](std::size_t i, std::size_t ia, std::size_t ib) { dx[ib] += term(i, ia); });
  };
  if (w)
    into([&](std::size_t i, std::size_t j) { return dy[i] * w[j]; });
  else
    into([&](std::size_t i, std::size_t) { return dy[i]; });
}

template <class T, class Fn>
Tensor<T> broadcast_apply(const Context& ctx, const Broadcast& p, const Tensor<T>& a, const Tensor<T>& b, Fn fn) {
  Tensor<T> y(Array<T>::from_shape(p.out));
  const T *as = a.data(), *bs = b.data();
  T* ys = y.data();
  for_each_pair(ctx, p, [&](std::size_t i, std::size_t ia, std::size_t ib) { ys[i] = fn(as[ia], bs[ib]); });
  return y;
}

}  // namespace detail

template <class T>
Tensor<T> add(Tape& tape, const Tensor<T>& a, const Tensor<T>& b) {
  using detail::Side;
  const detail::Broadcast p = detail::broadcast(kAdd, a.shape(), b.shape());
  const Context ctx = tape.context();
  Tensor<T> y = detail::broadcast_apply(ctx, p, a, b, std::plus<T>());

  return tape.record(kAdd, y, [a = GradRef<T>(a), b = GradRef<T>(b), y = GradRef<T>(y), p, ctx] {
    const T* dy = y.grad().data();
    if (a.requires_grad())
      detail::unbroadcast_accumulate<T>(ctx, p, Side::a, dy, nullptr, a.grad_accumulator(kAdd.name()).data());
    if (b.requires_grad())
      detail::unbroadcast_accumulate<T>(ctx, p, Side::b, dy, nullptr, b.grad_accumulator(kAdd.name()).data());
  }, a, b);
}

template <class T>
Tensor<T> mul(Tape& tape, const Tensor<T>& a, const Tensor<T>& b) {
  using detail::Side;
  const detail::Broadcast p = detail::broadcast(kMul, a.shape(), b.shape());
  const Context ctx = tape.context();
  Tensor<T> y = detail::broadcast_apply(ctx, p, a, b, std::multiplies<T>());

  return tape.record(kMul, y, [a, b, y = GradRef<T>(y), p, ctx] {
    const T* dy = y.grad().data();
    if (a.requires_grad())
      detail::unbroadcast_accumulate<T>(ctx, p, Side::a, dy, b.data(), a.grad_accumulator(kMul.name()).data());
    if (b.requires_grad())
      detail::unbroadcast_accumulate<T>(ctx, p, Side::b, dy, a.data(), b.grad_accumulator(kMul.name()).data());
  }, a, b);
}

}  // namespace tapegrad::ops
