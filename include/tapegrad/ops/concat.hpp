// tapegrad/ops/concat.hpp — joining and cutting along an axis: concat, split, slice.
//   concat(xs, axis):              xs[k] (..., n_k, ...) all alike but at `axis` -> y (..., sum n_k, ...)
//   split(x, sizes, axis):         x (..., sum sizes, ...) -> one y_k (..., sizes[k], ...) per size
//   slice(x, axis, begin, end):    x (..., n, ...) -> y (..., end - begin, ...), elements [begin, end)
// A negative axis counts from the end (-1 is the last). Saved: nothing but the shapes.
// Viewed around `axis`, a tensor is (outer, n, inner): a slab [begin, end) of it is `outer`
// contiguous runs of (end - begin) * inner elements. One kernel copies such runs
// (detail::copy_slab); each op's backward is the same copy the other way, accumulating:
//   concat: dxs[k] += dy[..., o_k : o_k + n_k, ...]   (o_k = n_0 + ... + n_{k-1})
//   split:  dx[..., o_k : o_k + sizes[k], ...] += dy_k
//   slice:  dx[..., begin:end, ...] += dy
// split records one node per piece (each piece is its own output), so a piece the loss
// does not use adds nothing. Runs go in fixed blocks over the context's threads, each
// writing its own elements: the same bits at any thread count.
#pragma once

#include "../core/tape.hpp"

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

namespace tapegrad::ops {

inline const OpName kConcat{"concat"};
inline const OpName kSplit{"split"};
inline const OpName kSlice{"slice"};

namespace detail {

// A tensor of shape `s` viewed as (outer, n, inner) around `axis`.
struct AxisView {
  std::size_t outer = 1, n = 0, inner = 1;
};

// `axis` (negative counts from the end) as an index into s; op_error when out of range.
inline std::size_t resolve_axis(const OpName& op, const Shape& s, long axis) {
  const long rank = long(s.size());
  if (axis < -rank || axis >= rank)
    throw op_error(op, "axis " + std::to_string(axis) + " is out of range for x " + shape_str(s));
  return std::size_t(axis < 0 ? axis + rank : axis);
}

inline AxisView axis_view(const Shape& s, std::size_t axis) {
  AxisView v;
  for (std::size_t k = 0; k < axis; ++k) v.outer *= s[k];
  v.n = s[axis];
  for (std::size_t k = axis + 1; k < s.size(); ++k) v.inner *= s[k];
  return v;
}

// For every outer index o: `count` * inner elements, from src's row at `src_at` (of its
// `src_n` along the axis) to dst's at `dst_at` (of `dst_n`), added when Accumulate.
template <bool Accumulate, class T>
void copy_slab(const Context& ctx, std::size_t outer, std::size_t inner, std::size_t count, const T* src,
               std::size_t src_n, std::size_t src_at, T* dst, std::size_t dst_n, std::size_t dst_at) {
  const std::size_t run = count * inner;
  if (run == 0) return;
  parallel_blocks(ctx, outer, std::max<std::size_t>(1, kElementBlock / run), [&](std::size_t b, std::size_t e) {
    for (std::size_t o = b; o < e; ++o) {
      const T* from = src + (o * src_n + src_at) * inner;
      T* to = dst + (o * dst_n + dst_at) * inner;
      for (std::size_t j = 0; j < run; ++j) {
        if constexpr (Accumulate)
          to[j] += from[j];
        else
          to[j] = from[j];
      }
    }
  });
}

// y = x[..., begin:begin + count, ...] along `axis`, recorded as `op`.
template <class T>
Tensor<T> take_slab(Tape& tape, const OpName& op, const Tensor<T>& x, std::size_t axis, std::size_t begin,
                    std::size_t count) {
  const AxisView v = axis_view(x.shape(), axis);
  Shape out = x.shape();
  out[axis] = count;
  Tensor<T> y(Array<T>::from_shape(out));
  const Context ctx = tape.context();
  copy_slab<false>(ctx, v.outer, v.inner, count, x.data(), v.n, begin, y.data(), count, 0);

  return tape.record(
      op, y,
      [x = GradRef<T>(x), y = GradRef<T>(y), v, begin, count, ctx, name = op.name()] {
    copy_slab<true>(ctx, v.outer, v.inner, count, y.grad().data(), count, 0, x.grad_accumulator(name).data(), v.n,
                    begin);
      },
      x);
}

}  // namespace detail

template <class T>
Tensor<T> concat(Tape& tape, const std::vector<Tensor<T>>& xs, long axis) {
  if (xs.empty()) throw op_error(kConcat, "needs at least one tensor, got none");
  const Shape& first = xs.front().shape();
  const std::size_t a = detail::resolve_axis(kConcat, first, axis);
  Shape out = first;
  out[a] = 0;
  for (const auto& x : xs) {
    Shape s = x.shape();
    if (s.size() == first.size()) s[a] = first[a];
    if (s != first)
      throw op_error(kConcat, "every tensor needs the shape of the first " + shape_str(first) + " but at axis " +
                                  std::to_string(axis) + ", got " + shape_str(x.shape()));
    out[a] += x.shape()[a];
  }
  Tensor<T> y(Array<T>::from_shape(out));
  const detail::AxisView v = detail::axis_view(out, a);
  const Context ctx = tape.context();
  std::vector<std::size_t> at;  // where each input starts along the axis
  for (std::size_t k = 0, o = 0; k < xs.size(); o += xs[k].shape()[a], ++k) {
    at.push_back(o);
    detail::copy_slab<false>(ctx, v.outer, v.inner, xs[k].shape()[a], xs[k].data(), xs[k].shape()[a], 0, y.data(), v.n,
                             o);
  }

  std::vector<GradRef<T>> inputs(xs.begin(), xs.end());
  return tape.record(
      kConcat, y,
      [inputs = std::move(inputs), y = GradRef<T>(y), v, a, at = std::move(at), ctx] {
    const T* dy = y.grad().data();
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      if (!inputs[k].requires_grad()) continue;
      const std::size_t n = inputs[k].meta().shape[a];
      detail::copy_slab<true>(ctx, v.outer, v.inner, n, dy, v.n, at[k],
                              inputs[k].grad_accumulator(kConcat.name()).data(), n, 0);
    }
      },
      xs);
}

template <class T>
Tensor<T> concat(Tape& tape, std::initializer_list<Tensor<T>> xs, long axis) {
  return concat(tape, std::vector<Tensor<T>>(xs), axis);
}

template <class T>
std::vector<Tensor<T>> split(Tape& tape, const Tensor<T>& x, const std::vector<std::size_t>& sizes, long axis) {
  const std::size_t a = detail::resolve_axis(kSplit, x.shape(), axis);
  std::size_t total = 0;
  for (std::size_t n : sizes) total += n;
  if (sizes.empty() || total != x.shape()[a])
    throw op_error(kSplit, "the sizes add up to " + std::to_string(total) + ", not to x's " +
                               std::to_string(x.shape()[a]) + " along axis " + std::to_string(axis) + " (x " +
                               shape_str(x.shape()) + ")");
  std::vector<Tensor<T>> pieces;
  for (std::size_t k = 0, begin = 0; k < sizes.size(); begin += sizes[k], ++k)
    pieces.push_back(detail::take_slab(tape, kSplit, x, a, begin, sizes[k]));
  return pieces;
}

template <class T>
Tensor<T> slice(Tape& tape, const Tensor<T>& x, long axis, std::size_t begin, std::size_t end) {
  const std::size_t a = detail::resolve_axis(kSlice, x.shape(), axis);
  if (begin > end || end > x.shape()[a])
    throw op_error(kSlice, "[" + std::to_string(begin) + ", " + std::to_string(end) + ") is not a range within x's " +
                               std::to_string(x.shape()[a]) + " along axis " + std::to_string(axis) + " (x " +
                               shape_str(x.shape()) + ")");
  return detail::take_slab(tape, kSlice, x, a, begin, end - begin);
}

}  // namespace tapegrad::ops
