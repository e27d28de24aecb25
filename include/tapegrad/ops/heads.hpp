// tapegrad/ops/heads.hpp — attention's head split and merge.
//   split_heads: x (B, T, d) -> y (B, h, T, d/h)    y[b,i,t,e] = x[b,t,i*(d/h)+e]
//   merge_heads: x (B, h, T, dh) -> y (B, T, h*dh)  the inverse
// Saved: nothing but the shapes.
// Both are "view as rank 4, swap axes 1 and 2", and that swap is its own inverse, so
// one kernel (detail::permute_copy) is the forward of each and, accumulating, the
// backward of the other:
//   split_heads: dx += merge(dy)        merge_heads: dx += split(dy)
#pragma once

#include "../core/tape.hpp"
#include "permute.hpp"

#include <string>

namespace tapegrad::ops {

inline const OpName kSplitHeads{"split_heads"};
inline const OpName kMergeHeads{"merge_heads"};

namespace detail {

// x viewed as rank 4 `in` -> y of shape `out` (in with axes 1, 2 swapped, then `out`'s view).
template <class T>
Tensor<T> swap_heads(Tape& tape, const OpName& op, const Tensor<T>& x, const Shape& in, const Shape& out) {
  static const std::vector<std::size_t> swap12{0, 2, 1, 3};
  Tensor<T> y(Array<T>::from_shape(out));
  permute_copy<false>(in, swap12, x.data(), y.data());
  const Shape swapped{in[0], in[2], in[1], in[3]};  // dy viewed as rank 4

  return tape.record(op, y, [x = GradRef<T>(x), y = GradRef<T>(y), swapped, name = op.name()] {
    permute_copy<true>(swapped, swap12, y.grad().data(), x.grad_accumulator(name).data());
  }, x);
}

}  // namespace detail

template <class T>
Tensor<T> split_heads(Tape& tape, const Tensor<T>& x, std::size_t h) {
  const Shape s = x.shape();
  if (s.size() != 3) throw op_error(kSplitHeads, "x must be [B, T, d], got " + shape_str(s));
  if (h == 0) throw op_error(kSplitHeads, "the number of heads h must be positive, got 0 (x " + shape_str(s) + ")");
  if (s[2] % h != 0)
    throw op_error(kSplitHeads, "d = " + std::to_string(s[2]) + " is not divisible by h = " + std::to_string(h) +
                                    " (x " + shape_str(s) + ")");
  const std::size_t B = s[0], T_ = s[1], dh = s[2] / h;
  return detail::swap_heads(tape, kSplitHeads, x, {B, T_, h, dh}, {B, h, T_, dh});
}

template <class T>
Tensor<T> merge_heads(Tape& tape, const Tensor<T>& x) {
  const Shape s = x.shape();
  if (s.size() != 4) throw op_error(kMergeHeads, "x must be [B, h, T, dh], got " + shape_str(s));
  const std::size_t B = s[0], h = s[1], T_ = s[2], dh = s[3];
  return detail::swap_heads(tape, kMergeHeads, x, s, {B, T_, h * dh});
}

}  // namespace tapegrad::ops
