// tapegrad/ops/cross_entropy.hpp — mean negative log-likelihood of integer targets.
//   logits (..., V), targets (...) integers in [0, V) (logits' shape without the last
//   axis), loss () = (1/N) sum_n [lse_n - logits[n, targets[n]]], N = rows of logits,
//   lse_n = max + log sum exp(logits[n] - max) (never log(softmax)); each term is summed
//   as log sum exp(logits[n] - max) - (logits[n, t] - max), which does not cancel for large logits.
// Saved: logits (the input), a copy of targets and the N values lse_n.
// Backward (fused softmax + NLL): dlogits[n, j] += dloss * (exp(logits[n, j] - lse_n) - [j == targets[n]]) / N
#pragma once

#include "softmax.hpp"

#include <cmath>
#include <string>
#include <vector>

namespace tapegrad::ops {

inline const OpName kCrossEntropy{"cross_entropy"};

template <class T>
Tensor<T> cross_entropy(Tape& tape, const Tensor<T>& logits, const Ids& targets) {
  const Shape ls = logits.shape();
  if (ls.empty() || ls.back() == 0 || !std::equal(ls.begin(), ls.end() - 1, targets.shape().begin(), targets.shape().end()))
    throw op_error(kCrossEntropy, "needs logits (..., V) with V > 0 and targets (...), got logits " + shape_str(ls) +
                                      ", targets " + shape_str(shape_of(targets)));
  const std::size_t V = ls.back(), N = logits.size() / V;
  if (N == 0) throw op_error(kCrossEntropy, "no positions to average over: logits " + shape_str(ls));
  check_ids(kCrossEntropy, "target", targets, V);

  PooledVector<T> lse(N);
  const Context ctx = tape.context();
  // a double accumulator: N can be large in float training
  const double total = parallel_sum<double>(ctx, N, row_block(V), [&](std::size_t b, std::size_t e) {
    double part = 0;
    for (std::size_t n = b; n < e; ++n) {
      const T* xr = logits.data() + n * V;
      const auto s = row_exp(xr, V);
      lse[n] = s.log_sum_exp();
      part += double(std::log(s.sum) - (xr[targets.data()[n]] - s.max));  // no cancellation against a large max
    }
    return part;
  });
  Tensor<T> loss(Array<T>::from_shape(Shape{}));
  *loss.data() = T(total / double(N));

  return tape.record(kCrossEntropy, loss, [logits, loss = GradRef<T>(loss), targets = Ids(targets), lse = std::move(lse), ctx, N, V] {
    const T g = *loss.grad().data() / T(N);
    const T* x = logits.data();
    T* dx = logits.grad_accumulator(kCrossEntropy.name()).data();
    parallel_blocks(ctx, N, row_block(V), [&](std::size_t b, std::size_t e) {
      std::vector<T> p(V);  // one row's softmax
      for (std::size_t n = b; n < e; ++n) {
        vec::exp_shifted(x + n * V, V, lse[n], p.data());
        for (std::size_t j = 0; j < V; ++j) dx[n * V + j] += g * p[j];
        dx[n * V + targets.data()[n]] -= g;
      }
    });
  }, logits);
}

}  // namespace tapegrad::ops
