// tapegrad/ops/heads.hpp — attention's head split and merge.
//   split_heads: x (B, T, d) -> y (B, h, T, d/h)    y[b,i,t,e] = x[b,t,i*(d/h)+e]
//   merge_heads: x (B, h, T, dh) -> y (B, T, h*dh)  the inverse
// Saved: nothing but the shapes.
// Both are "view as rank 4, swap axes 1 and 2", and that swap is its own inverse, so
// one kernel (detail::swap_axes12) is the forward of each and, accumulating, the
// backward of the other:
//   split_heads: dx += merge(dy)        merge_heads: dx += split(dy)
// (written rather than added when dx has no other contribution yet: GradRef::grad_output).
#pragma once

#include "../core/tape.hpp"

#include <algorithm>
#include <string>

namespace tapegrad::ops {

inline const OpName kSplitHeads{"split_heads"};
inline const OpName kMergeHeads{"merge_heads"};

namespace detail {

// y (A0, A2, A1, A3) = x (A0, A1, A2, A3) with axes 1 and 2 swapped (y += ... when
// Accumulate). Each (a0, a2) is one contiguous A1 x A3 block of y, written by one thread.
template <bool Accumulate, class T>
void swap_axes12(const Context& ctx, const Shape& in, const T* x, T* y) {
  const std::size_t A1 = in[1], A2 = in[2], A3 = in[3], out_block = A1 * A3;
  if (out_block == 0) return;
  parallel_blocks(ctx, in[0] * A2, std::max<std::size_t>(1, kElementBlock / out_block),
                  [&](std::size_t b, std::size_t e) {
    for (std::size_t o = b; o < e; ++o) {
      const std::size_t a0 = o / A2, a2 = o % A2;
      T* dst = y + o * out_block;
      for (std::size_t a1 = 0; a1 < A1; ++a1) {
        const T* src = x + ((a0 * A1 + a1) * A2 + a2) * A3;
        for (std::size_t j = 0; j < A3; ++j) {
          if constexpr (Accumulate)
            dst[a1 * A3 + j] += src[j];
          else
            dst[a1 * A3 + j] = src[j];
        }
      }
    }
  });
}

// x viewed as rank 4 `in` -> y of shape `out` (in with axes 1, 2 swapped, then `out`'s view).
template <class T>
Tensor<T> swap_heads(Tape& tape, const OpName& op, const Tensor<T>& x, const Shape& in, const Shape& out) {
  Tensor<T> y(Array<T>::from_shape(out));
  const Context ctx = tape.context();
  swap_axes12<false>(ctx, in, x.data(), y.data());
  const Shape swapped{in[0], in[2], in[1], in[3]};  // dy viewed as rank 4

  return tape.record(
      op, y,
      [x = GradRef<T>(x), y = GradRef<T>(y), swapped, ctx, name = op.name()] {
    const auto dx = x.grad_output(name);  // written when nothing was added to it yet, else added to
    if (dx.beta == T(0))
      swap_axes12<false>(ctx, swapped, y.grad().data(), dx.data);
    else
      swap_axes12<true>(ctx, swapped, y.grad().data(), dx.data);
      },
      x);
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
