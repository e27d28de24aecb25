// tapegrad/ops/linear.hpp — a linear layer with its bias, and optionally GPT-2's GELU, in one op:
//   z = x W + b,  y = z               (Activation::none)
//   z = x W + b,  y = GELU(z)          (Activation::gelu, the tanh form of gelu.hpp)
//
//   x (..., K), W (K, N), b (N), y (..., N); the batch folds into the GEMM's rows.
// Saved: x and W (the inputs); with GELU, z and t = tanh(u), so backward computes no tanh
// (the kernels: gelu_row, gelu_derivative in rows.hpp).
// Backward, with dz = dy (none) or dz = dy * GELU'(z) (gelu.hpp's rule):
//   db += sum over rows of dz        dx += dz W^T        dW += x^T dz
// The same arithmetic as matmul, add and gelu one after another (bit for bit where N is a
// multiple of the vector width, which meets gelu's vector blocks; tested), in
// fewer passes: the bias and the GELU run on each block of the GEMM's output rows right
// after it is computed, while the rows are in cache (blas::gemm's epilogue), and backward
// computes dz and the bias gradient's column sums in one pass over dy (none: dz is dy itself,
// no copy), with no tensor for x W or z on the tape.
#pragma once

#include "../core/blas.hpp"
#include "../core/tape.hpp"
#include "rows.hpp"

#include <algorithm>

namespace tapegrad::ops {

inline const OpName kLinear{"linear"};

enum class Activation { none, gelu };

template <class T>
Tensor<T> linear(Tape& tape, const Tensor<T>& x, const Tensor<T>& w, const Tensor<T>& b,
                 Activation activation = Activation::none) {
  const Shape xs = x.shape(), ws = w.shape(), bs = b.shape();
  if (xs.empty() || ws.size() != 2 || xs.back() != ws[0] || bs != Shape{ws[1]} || ws[0] == 0 || ws[1] == 0)
    throw op_error(kLinear, "needs x (..., K), weight (K, N) and bias (N) with K, N > 0, got x " + shape_str(xs) +
                                ", weight " + shape_str(ws) + ", bias " + shape_str(bs));
  const std::size_t K = ws[0], N = ws[1], rows = x.size() / K;
  const bool gelu = activation == Activation::gelu;
  Shape ys(xs.begin(), xs.end() - 1);
  ys.push_back(N);
  Tensor<T> y(Array<T>::from_shape(ys));
  // z and t, with GELU: pooled like a tensor's values, and not zero-filled (every value is written)
  Array<T> z = Array<T>::from_shape({gelu ? rows * N : 0}), t = Array<T>::from_shape({gelu ? rows * N : 0});
  T* out = gelu ? z.data() : y.data();  // where the GEMM writes z
  const T* bias = b.data();
  const Context ctx = tape.context();
  blas::gemm(ctx, false, false, rows, N, K, T(1), x.data(), w.data(), T(0), out, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t j = 0; j < N; ++j) out[r * N + j] = out[r * N + j] + bias[j];
    if (gelu) gelu_row(z.data() + r0 * N, (r1 - r0) * N, t.data() + r0 * N, y.data() + r0 * N);
  });

  return tape.record(
      kLinear, y,
      [x, w, b = GradRef<T>(b), y = GradRef<T>(y), z = std::move(z), t = std::move(t), ctx, gelu, rows, K, N] {
    const T* dy = y.grad().data();
    Array<T> dz_buffer = Array<T>::from_shape({gelu ? rows * N : 0});
    T* dz = gelu ? dz_buffer.data() : nullptr;
    const T *zs = z.data(), *ts = t.data();
    // dz for rows [r0, r1) (with GELU), and the bias gradient's contribution of those rows into `part`.
    const auto rows_pass = [&](std::size_t r0, std::size_t r1, T* part) {
      if (gelu)
        for (std::size_t i = r0 * N; i < r1 * N; ++i) dz[i] = dy[i] * gelu_derivative(zs[i], ts[i]);
      const T* d = gelu ? dz : dy;
      if (part)
        for (std::size_t r = r0; r < r1; ++r)
          for (std::size_t j = 0; j < N; ++j) part[j] += d[r * N + j];
    };
    const std::size_t block_rows = std::max<std::size_t>(1, kElementBlock / N);
    if (b.requires_grad())
      parallel_column_sum(ctx, rows, block_rows, N, b.grad_accumulator(kLinear.name()).data(), rows_pass);
    else if (gelu)
      parallel_blocks(ctx, rows, block_rows, [&](std::size_t r0, std::size_t r1) { rows_pass(r0, r1, nullptr); });
    const T* d = gelu ? dz : dy;
    if (x.requires_grad()) {  // dx (rows, K) += dz (rows, N) W^T (N, K)
      const auto dx = x.grad_output(kLinear.name());
      blas::gemm(ctx, false, true, rows, K, N, T(1), d, w.data(), dx.beta, dx.data);
    }
    if (w.requires_grad()) {  // dW (K, N) += x^T (K, rows) dz (rows, N)
      const auto dw = w.grad_output(kLinear.name());
      blas::gemm(ctx, true, false, K, N, rows, T(1), x.data(), d, dw.beta, dw.data);
    }
      },
      x, w, b);
}

}  // namespace tapegrad::ops
