// tapegrad/ops/elementwise.hpp — the binary element-wise ops with numpy broadcasting:
// y = a + b, a - b, a * b, a / b, maximum(a, b).
//
//   a (...), b (...)  aligned on their trailing dims; a dim of 1, or a missing one,
//                     stretches. Either side may broadcast, or both:
//                     [B,T,d]+[d] (bias), [B,T,d]+[T,d] (positional), [2,1,3]*[4,1] -> [2,4,3]
//   y (broadcast shape)
// Saved: add and sub, nothing but the shapes (the broadcast plan); mul and maximum,
// both inputs; div, b and y.
// Backward: each output term is summed back onto the input element it read
// ("unbroadcast", flashlight's sumToShape), one reduction shared by every op:
//   add:     da += unbroadcast(dy)              db += unbroadcast(dy)
//   sub:     da += unbroadcast(dy)              db += unbroadcast(-dy)
//   mul:     da += unbroadcast(dy * b)          db += unbroadcast(dy * a)
//   div:     da += unbroadcast(dy / b)          db += unbroadcast(-dy * y / b)   (y = a / b)
//   maximum: da += unbroadcast(dy [a > b])      db += unbroadcast(dy [b > a]); a tie sends
//            dy / 2 to each (PyTorch's convention), so the rule is the mean of the one-sided ones.
// div's domain: b = 0 gives inf or NaN as IEEE division does (anomaly mode names it).
// Fast paths: same shape, and b's shape a trailing suffix of a's (bias, positional),
// both split over the context's threads (a suffix b's gradient as per-block column sums
// added in block order); anything else walks the output with an odometer, serially.
#pragma once

#include "../core/tape.hpp"

#include <algorithm>
#include <functional>

namespace tapegrad::ops {

inline const OpName kAdd{"add"};
inline const OpName kSub{"sub"};
inline const OpName kMul{"mul"};
inline const OpName kDiv{"div"};
inline const OpName kMaximum{"maximum"};

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
  for (std::size_t k = s.size(), stride = 1; k-- > 0; stride *= s[k]) st[rank - s.size() + k] = s[k] == 1 ? 0 : stride;
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

// dx += unbroadcast(term) for input x on `side`: term(i, ia, ib) is the gradient output
// element i sends to the element of that input it read (ia of a, ib of b), so stretched
// dims are summed. Where each element of x is read by exactly one element of y (same
// shapes; a in a suffix broadcast) and nothing was added to dx yet, dx is written instead
// (GradRef::grad_output): no zero-fill, no read.
template <class T, class Term>
void unbroadcast_accumulate(const Context& ctx, const Broadcast& p, Side side, const GradRef<T>& x, const char* op,
                            Term term) {
  const Context serial{};  // the odometer's walk is serial: its sums land on shared elements
  if (p.kind == Broadcast::Kind::same || (p.kind == Broadcast::Kind::suffix && side == Side::a)) {
    const auto dx = x.grad_output(op);
    T* d = dx.data;
    if (dx.beta == T(0))
      for_each_pair(ctx, p, [&](std::size_t i, std::size_t ia, std::size_t ib) {
        d[side == Side::a ? ia : ib] = term(i, ia, ib);
      });
    else
      for_each_pair(ctx, p, [&](std::size_t i, std::size_t ia, std::size_t ib) {
        d[side == Side::a ? ia : ib] += term(i, ia, ib);
      });
    return;
  }
  T* dx = x.grad_accumulator(op).data();
  if (side == Side::a)
    for_each_pair(serial, p, [&](std::size_t i, std::size_t ia, std::size_t ib) { dx[ia] += term(i, ia, ib); });
  else if (p.kind == Broadcast::Kind::suffix)  // a column sum of y viewed as (rows, inner)
    parallel_column_sum(ctx, numel(p.out) / p.inner, suffix_rows(p), p.inner, dx,
                        [&](std::size_t rb, std::size_t re, T* part) {
      for (std::size_t row = rb * p.inner; row < re * p.inner; row += p.inner)
        for (std::size_t j = 0; j < p.inner; ++j) part[j] += term(row + j, row + j, j);
    });
  else
    for_each_pair(serial, p, [&](std::size_t i, std::size_t ia, std::size_t ib) { dx[ib] += term(i, ia, ib); });
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

  return tape.record(
      kAdd, y,
      [a = GradRef<T>(a), b = GradRef<T>(b), y = GradRef<T>(y), p, ctx] {
    const T* dy = y.grad().data();
    const auto term = [dy](std::size_t i, std::size_t, std::size_t) { return dy[i]; };
    if (a.requires_grad()) detail::unbroadcast_accumulate(ctx, p, Side::a, a, kAdd.name(), term);
    if (b.requires_grad()) detail::unbroadcast_accumulate(ctx, p, Side::b, b, kAdd.name(), term);
      },
      a, b);
}

template <class T>
Tensor<T> sub(Tape& tape, const Tensor<T>& a, const Tensor<T>& b) {
  using detail::Side;
  const detail::Broadcast p = detail::broadcast(kSub, a.shape(), b.shape());
  const Context ctx = tape.context();
  Tensor<T> y = detail::broadcast_apply(ctx, p, a, b, std::minus<T>());

  return tape.record(
      kSub, y,
      [a = GradRef<T>(a), b = GradRef<T>(b), y = GradRef<T>(y), p, ctx] {
    const T* dy = y.grad().data();
    if (a.requires_grad())
      detail::unbroadcast_accumulate(ctx, p, Side::a, a, kSub.name(),
                                     [dy](std::size_t i, std::size_t, std::size_t) { return dy[i]; });
    if (b.requires_grad())
      detail::unbroadcast_accumulate(ctx, p, Side::b, b, kSub.name(),
                                     [dy](std::size_t i, std::size_t, std::size_t) { return -dy[i]; });
      },
      a, b);
}

template <class T>
Tensor<T> mul(Tape& tape, const Tensor<T>& a, const Tensor<T>& b) {
  using detail::Side;
  const detail::Broadcast p = detail::broadcast(kMul, a.shape(), b.shape());
  const Context ctx = tape.context();
  Tensor<T> y = detail::broadcast_apply(ctx, p, a, b, std::multiplies<T>());

  return tape.record(
      kMul, y,
      [a, b, y = GradRef<T>(y), p, ctx] {
    const T *dy = y.grad().data(), *av = a.data(), *bv = b.data();
    if (a.requires_grad())
      detail::unbroadcast_accumulate(ctx, p, Side::a, a, kMul.name(),
                                     [=](std::size_t i, std::size_t, std::size_t ib) { return dy[i] * bv[ib]; });
    if (b.requires_grad())
      detail::unbroadcast_accumulate(ctx, p, Side::b, b, kMul.name(),
                                     [=](std::size_t i, std::size_t ia, std::size_t) { return dy[i] * av[ia]; });
      },
      a, b);
}

// The quotient's derivative in b, -a / b^2, is read as -y / b from the saved output.
template <class T>
Tensor<T> div(Tape& tape, const Tensor<T>& a, const Tensor<T>& b) {
  using detail::Side;
  const detail::Broadcast p = detail::broadcast(kDiv, a.shape(), b.shape());
  const Context ctx = tape.context();
  Tensor<T> y = detail::broadcast_apply(ctx, p, a, b, std::divides<T>());

  return tape.record(
      kDiv, y,
      [a = GradRef<T>(a), b, y, p, ctx] {
    const T *dy = y.grad().data(), *bv = b.data(), *yv = y.data();
    if (a.requires_grad())
      detail::unbroadcast_accumulate(ctx, p, Side::a, a, kDiv.name(),
                                     [=](std::size_t i, std::size_t, std::size_t ib) { return dy[i] / bv[ib]; });
    if (b.requires_grad())
      detail::unbroadcast_accumulate(ctx, p, Side::b, b, kDiv.name(), [=](std::size_t i, std::size_t, std::size_t ib) {
        return -dy[i] * yv[i] / bv[ib];
      });
      },
      a, b);
}

template <class T>
Tensor<T> maximum(Tape& tape, const Tensor<T>& a, const Tensor<T>& b) {
  using detail::Side;
  const detail::Broadcast p = detail::broadcast(kMaximum, a.shape(), b.shape());
  const Context ctx = tape.context();
  Tensor<T> y = detail::broadcast_apply(ctx, p, a, b, [](T u, T v) { return u < v ? v : u; });

  return tape.record(
      kMaximum, y,
      [a, b, y = GradRef<T>(y), p, ctx] {
    const T *dy = y.grad().data(), *av = a.data(), *bv = b.data();
    // The share of dy that goes to `mine` against `other`: all, half at a tie, or none.
    const auto share = [](T mine, T other, T g) { return mine > other ? g : mine == other ? T(0.5) * g : T(0); };
    if (a.requires_grad())
      detail::unbroadcast_accumulate(
          ctx, p, Side::a, a, kMaximum.name(),
          [=](std::size_t i, std::size_t ia, std::size_t ib) { return share(av[ia], bv[ib], dy[i]); });
    if (b.requires_grad())
      detail::unbroadcast_accumulate(
          ctx, p, Side::b, b, kMaximum.name(),
          [=](std::size_t i, std::size_t ia, std::size_t ib) { return share(bv[ib], av[ia], dy[i]); });
      },
      a, b);
}

}  // namespace tapegrad::ops
