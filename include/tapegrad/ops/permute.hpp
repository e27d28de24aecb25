// tapegrad/ops/permute.hpp — y = x with its axes reordered: y's axis k is x's axis axes[k].
//   x (s_0, ..., s_{r-1}), y (s_axes[0], ..., s_axes[r-1]), contiguous.   Saved: the axes.
//   Backward: dx += permute(dy, inverse(axes))
// transpose(x, i, j) is permute with axes i and j swapped (recorded as "permute").
#pragma once

#include "../core/tape.hpp"

#include <string>
#include <utility>

namespace tapegrad::ops {

inline const OpName kPermute{"permute"};

namespace detail {

// dst = src permuted by `axes` (dst += ... when Accumulate): src is row-major of
// `shape`, dst row-major of shape[axes[0]], ..., shape[axes[r-1]]. An odometer walks
// dst's index; its innermost axis is a plain strided loop. `axes` must be valid.
// Also the kernel of split_heads/merge_heads (ops/heads.hpp).
template <bool Accumulate, class T>
void permute_copy(const Shape& shape, const std::vector<std::size_t>& axes, const T* src, T* dst) {
  const std::size_t r = shape.size(), n = numel(shape);
  auto put = [&](std::size_t i, std::size_t from) {
    if constexpr (Accumulate) dst[i] += src[from];
    else dst[i] = src[from];
  };
  if (n == 0) return;
  if (r == 0) return put(0, 0);
  std::vector<std::size_t> stride(r), out(r), step(r), idx(r, 0);
  for (std::size_t k = r, s = 1; k-- > 0; s *= shape[k]) stride[k] = s;
  for (std::size_t k = 0; k < r; ++k) out[k] = shape[axes[k]], step[k] = stride[axes[k]];
  const std::size_t inner = out[r - 1], inner_step = step[r - 1];
  std::size_t from = 0;
  for (std::size_t row = 0; row < n; row += inner) {
    for (std::size_t j = 0; j < inner; ++j) put(row + j, from + j * inner_step);
    for (std::size_t k = r - 1; k-- > 0;) {
      from += step[k];
      if (++idx[k] < out[k]) break;
      from -= step[k] * out[k];
      idx[k] = 0;
    }
  }
}

}  // namespace detail

template <class T>
Tensor<T> permute(Tape& tape, const Tensor<T>& x, std::vector<std::size_t> axes) {
  const Shape xs = x.shape();
  const std::size_t r = xs.size();
  std::vector<std::size_t> inverse(r, r);  // r marks "not seen yet"
  bool valid = axes.size() == r;
  for (std::size_t k = 0; valid && k < r; ++k) {
    valid = axes[k] < r && inverse[axes[k]] == r;
    if (valid) inverse[axes[k]] = k;
  }
  if (!valid)
    throw op_error(kPermute, "axes " + shape_str(axes) + " are not a permutation of the axes of x " + shape_str(xs));

  Shape ys(r);
  for (std::size_t k = 0; k < r; ++k) ys[k] = xs[axes[k]];
  Tensor<T> y(Array<T>::from_shape(ys));
  detail::permute_copy<false>(xs, axes, x.data(), y.data());

  return tape.record(kPermute, y, [x = GradRef<T>(x), y = GradRef<T>(y), ys, inverse] {
    detail::permute_copy<true>(ys, inverse, y.grad().data(), x.grad_accumulator(kPermute.name()).data());
  }, x);
}

template <class T>
Tensor<T> transpose(Tape& tape, const Tensor<T>& x, std::size_t i, std::size_t j) {
  const std::size_t r = x.dim();
  if (i >= r || j >= r)
    throw op_error(kPermute, "transpose axes " + std::to_string(i) + ", " + std::to_string(j) +
                                 " out of range for x " + shape_str(x.shape()));
  std::vector<std::size_t> axes(r);
  for (std::size_t k = 0; k < r; ++k) axes[k] = k;
  std::swap(axes[i], axes[j]);
  return permute(tape, x, std::move(axes));
}

}  // namespace tapegrad::ops
