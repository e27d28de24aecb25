// tapegrad/ops/layernorm.hpp — y = (x - mean) * rstd * weight + bias over the last axis.
//   x (..., C), weight (C), bias (C), y (..., C); per row: biased variance,
//   rstd = 1 / sqrt(var + eps).
// The forward row kernel: layernorm_row (rows.hpp).
// Saved: x, weight (the inputs) and per-row mean and rstd (N = x.size() / C values
// each); the normalised row n = (x - mean) * rstd is recomputed in backward.
// Backward (per row, as in llm.c's layernorm_backward), with g = weight * dy:
//   dbias += dy      dweight += n * dy
//   dx    += rstd * (g - mean(g) - n * mean(g * n))
#pragma once

#include "../core/tape.hpp"
#include "rows.hpp"

#include <cmath>
#include <vector>

namespace tapegrad::ops {

inline const OpName kLayernorm{"layernorm"};

template <class T>
Tensor<T> layernorm(Tape& tape, const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias, T eps = T(1e-5)) {
  const Shape xs = x.shape();
  if (xs.empty() || xs.back() == 0 || weight.shape() != Shape{xs.back()} || bias.shape() != Shape{xs.back()})
    throw op_error(kLayernorm, "needs x (..., C) with C > 0, weight (C), bias (C), got x " + shape_str(xs) +
                                   ", weight " + shape_str(weight.shape()) + ", bias " + shape_str(bias.shape()));
  const std::size_t C = xs.back(), rows = x.size() / C;

  Tensor<T> y(Array<T>::from_shape(xs));
  PooledVector<T> mean(rows), rstd(rows);
  const T *w = weight.data(), *b = bias.data();
  const Context ctx = tape.context();
  parallel_blocks(ctx, rows, row_block(C), [&](std::size_t rb, std::size_t re) {
    for (std::size_t r = rb; r < re; ++r)
      layernorm_row(x.data() + r * C, C, w, b, eps, y.data() + r * C, mean[r], rstd[r]);
  });

  // dweight and dbias are column sums over rows: per block of rows into a partial
  // (dweight's C values, then dbias's), the partials added in block order.
  return tape.record(kLayernorm, y, [x, weight, bias = GradRef<T>(bias), y = GradRef<T>(y), mean = std::move(mean), rstd = std::move(rstd), ctx, rows, C] {
    const T* dy = y.grad().data();
    const T* wt = weight.data();
    T* dx = x.requires_grad() ? x.grad_accumulator(kLayernorm.name()).data() : nullptr;
    std::vector<T> dwb(2 * C, T(0));
    parallel_column_sum(ctx, rows, row_block(C), 2 * C, dwb.data(), [&](std::size_t rb, std::size_t re, T* part) {
      T *dw = part, *db = part + C;
      for (std::size_t r = rb; r < re; ++r) {
        const T *xr = x.data() + r * C, *dyr = dy + r * C;
        const T m = mean[r], s = rstd[r];
        T g_mean = 0, gn_mean = 0;
        for (std::size_t i = 0; i < C; ++i) {
          const T n = (xr[i] - m) * s, g = wt[i] * dyr[i];
          g_mean += g;
          gn_mean += g * n;
          dw[i] += n * dyr[i];
          db[i] += dyr[i];
        }
        g_mean /= T(C);
        gn_mean /= T(C);
        if (dx)
          for (std::size_t i = 0; i < C; ++i) {
            const T n = (xr[i] - m) * s;
            dx[r * C + i] += s * (wt[i] * dyr[i] - g_mean - n * gn_mean);
          }
      }
    });
    if (weight.requires_grad()) {
      T* dw = weight.grad_accumulator(kLayernorm.name()).data();
      for (std::size_t i = 0; i < C; ++i) dw[i] += dwb[i];
    }
    if (bias.requires_grad()) {
      T* db = bias.grad_accumulator(kLayernorm.name()).data();
      for (std::size_t i = 0; i < C; ++i) db[i] += dwb[C + i];
    }
  }, x, weight, bias);
}

}  // namespace tapegrad::ops
