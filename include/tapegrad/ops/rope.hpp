// tapegrad/ops/rope.hpp — rotary position embedding (RoFormer; Llama's rotary q and k).
//   x (..., T, dh), dh even; row t sits at position p = offset + t; y (..., T, dh).
//   The head's dims pair as (i, i + dh/2), i < dh/2 (the "rotate half" layout of GPT-NeoX and
//   Hugging Face's Llama), each pair turned by the angle p * theta^(-2i/dh):
//     y[i]        = x[i] cos - x[i + dh/2] sin
//     y[i + dh/2] = x[i] sin + x[i + dh/2] cos
// Saved: the cos and sin table (T x dh/2 each, one for all the (..) rows). Backward is the
// rotation by minus the angle (a rotation's transpose is its inverse):
//     dx[i]        += dy[i] cos + dy[i + dh/2] sin
//     dx[i + dh/2] += dy[i + dh/2] cos - dy[i] sin
// `offset` is where the first row sits: a KV cache rotates new keys and queries at their
// real positions, so a cached key is never rotated again. The angles are computed in
// double for every T (cos and sin of p * freq rounded once to T), so float and double
// rotate by the same angles, and a row's rotation depends only on its position.
// Rows go in fixed blocks over the context's threads, each on its own elements.
#pragma once

#include "../core/tape.hpp"
#include "rows.hpp"  // row_block

#include <cmath>
#include <vector>

namespace tapegrad::ops {

inline const OpName kRope{"rope"};

namespace detail {

// cos and sin (T, dh/2 each, row-major) of (offset + t) * theta^(-2i/dh).
template <class T>
struct RopeTable {
  std::vector<T> cos, sin;
  RopeTable(std::size_t rows, std::size_t dh, std::size_t offset, double theta)
      : cos(rows * dh / 2), sin(rows * dh / 2) {
    const std::size_t half = dh / 2;
    for (std::size_t i = 0; i < half; ++i) {
      const double freq = std::pow(theta, -2.0 * double(i) / double(dh));
      for (std::size_t t = 0; t < rows; ++t) {
        const double angle = double(offset + t) * freq;
        cos[t * half + i] = T(std::cos(angle));
        sin[t * half + i] = T(std::sin(angle));
      }
    }
  }
};

// One row y (dh) = the rotation of x (dh) by the table's row (c, s of dh/2); `sign` -1
// turns the other way (the backward), and Accumulate adds into y.
template <bool Accumulate, class T>
void rope_row(const T* x, std::size_t dh, const T* c, const T* s, T sign, T* y) {
  const std::size_t half = dh / 2;
  for (std::size_t i = 0; i < half; ++i) {
    const T a = x[i], b = x[i + half], sn = sign * s[i];
    const T ya = a * c[i] - b * sn, yb = a * sn + b * c[i];
    if constexpr (Accumulate) {
      y[i] += ya;
      y[i + half] += yb;
    } else {
      y[i] = ya;
      y[i + half] = yb;
    }
  }
}

template <bool Accumulate, class T>
void rope_rows(const Context& ctx, const RopeTable<T>& table, std::size_t rows, std::size_t T_len, std::size_t dh,
               T sign, const T* x, T* y) {
  parallel_blocks(ctx, rows, row_block(dh), [&](std::size_t rb, std::size_t re) {
    for (std::size_t r = rb; r < re; ++r) {
      const std::size_t t = r % T_len;
      rope_row<Accumulate>(x + r * dh, dh, table.cos.data() + t * dh / 2, table.sin.data() + t * dh / 2, sign,
                           y + r * dh);
    }
  });
}

}  // namespace detail

template <class T>
Tensor<T> rope(Tape& tape, const Tensor<T>& x, std::size_t offset = 0, double theta = 10000.0) {
  const Shape s = x.shape();
  if (s.size() < 2 || s.back() == 0 || s.back() % 2 != 0 || s[s.size() - 2] == 0)
    throw op_error(kRope, "needs x (..., T, dh) with T > 0 and dh even, got " + shape_str(s));
  if (!(theta > 1) || !std::isfinite(theta))
    throw op_error(kRope, "theta must be a finite number > 1, got " + std::to_string(theta));
  const std::size_t dh = s.back(), T_len = s[s.size() - 2], rows = x.size() / dh;
  auto table = std::make_shared<const detail::RopeTable<T>>(T_len, dh, offset, theta);
  Tensor<T> y(Array<T>::from_shape(s));
  const Context ctx = tape.context();
  detail::rope_rows<false>(ctx, *table, rows, T_len, dh, T(1), x.data(), y.data());

  return tape.record(
      kRope, y,
      [x = GradRef<T>(x), y = GradRef<T>(y), table, ctx, rows, T_len, dh] {
    detail::rope_rows<true>(ctx, *table, rows, T_len, dh, T(-1), y.grad().data(),
                            x.grad_accumulator(kRope.name()).data());
      },
      x);
}

}  // namespace tapegrad::ops
