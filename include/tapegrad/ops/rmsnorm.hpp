// tapegrad/ops/rmsnorm.hpp — y = x * rstd * weight over the last axis (RMSNorm: no mean, no bias).
//   x (..., C), weight (C), y (..., C); per row rstd = 1 / sqrt(mean(x^2) + eps).
// Saved: x, weight (the inputs) and per-row rstd (N = x.size() / C values); the
// normalised row n = x * rstd is recomputed in backward. The row kernel is rows.hpp's rmsnorm_row.
// Backward (per row; LayerNorm's without the mean terms), with g = weight * dy:
//   dweight += n * dy      dx += rstd * (g - n * mean(g * n))
// eps keeps rstd finite on a row of zeros (rstd = 1 / sqrt(eps), y = 0, and the
// gradient rstd * g); 1e-5 as the LayerNorm's, Llama's own value.
#pragma once

#include "../core/tape.hpp"
#include "rows.hpp"  // row_block, rmsnorm_row

#include <cmath>
#include <vector>

namespace tapegrad::ops {

inline const OpName kRmsnorm{"rmsnorm"};

template <class T>
Tensor<T> rmsnorm(Tape& tape, const Tensor<T>& x, const Tensor<T>& weight, T eps = T(1e-5)) {
  const Shape xs = x.shape();
  if (xs.empty() || xs.back() == 0 || weight.shape() != Shape{xs.back()})
    throw op_error(kRmsnorm, "needs x (..., C) with C > 0 and weight (C), got x " + shape_str(xs) + ", weight " +
                                 shape_str(weight.shape()));
  const std::size_t C = xs.back(), rows = x.size() / C;

  Tensor<T> y(Array<T>::from_shape(xs));
  PooledVector<T> rstd(rows);
  const T* w = weight.data();
  const Context ctx = tape.context();
  parallel_blocks(ctx, rows, row_block(C), [&](std::size_t rb, std::size_t re) {
    for (std::size_t r = rb; r < re; ++r) rstd[r] = rmsnorm_row(x.data() + r * C, C, w, eps, y.data() + r * C);
  });

  // dweight is a column sum over rows: per block of rows into a partial, added in block order.
  return tape.record(
      kRmsnorm, y,
      [x, weight, y = GradRef<T>(y), rstd = std::move(rstd), ctx, rows, C] {
    const T *dy = y.grad().data(), *wt = weight.data();
    T* dx = x.requires_grad() ? x.grad_accumulator(kRmsnorm.name()).data() : nullptr;
    std::vector<T> dw_sum(C, T(0));
    parallel_column_sum(ctx, rows, row_block(C), C, dw_sum.data(), [&](std::size_t rb, std::size_t re, T* dw) {
      for (std::size_t r = rb; r < re; ++r) {
        const T *xr = x.data() + r * C, *dyr = dy + r * C;
        const T s = rstd[r];
        T gn_mean = 0;
        for (std::size_t i = 0; i < C; ++i) {
          const T n = xr[i] * s;
          gn_mean += wt[i] * dyr[i] * n;
          dw[i] += n * dyr[i];
        }
        gn_mean /= T(C);
        if (dx)
          for (std::size_t i = 0; i < C; ++i) dx[r * C + i] += s * (wt[i] * dyr[i] - xr[i] * s * gn_mean);
      }
    });
    if (weight.requires_grad()) {
      T* dw = weight.grad_accumulator(kRmsnorm.name()).data();
      for (std::size_t i = 0; i < C; ++i) dw[i] += dw_sum[i];
    }
      },
      x, weight);
}

}  // namespace tapegrad::ops
