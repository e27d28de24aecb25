// tapegrad/ops/matmul.hpp — C = op(A) op(B), op(X) = X or X^T (a BLAS flag, never a copy).
//
//   a (..., M, K)  [stored (..., K, M) with transpose_a]
//   b (K, N)       a weight shared by every batch entry, or
//   b (..., K, N)  with the same batch dims as a        [stored (..., N, K) with transpose_b]
//   c (..., M, N)
// Saved: a, b (the inputs), nothing else.
// Backward (per batch entry; summed over the batch for a shared b):
//   d op(A) = dC op(B)^T        d op(B) = op(A)^T dC
// With a shared b and an untransposed a, the batch folds into M: one GEMM, no loop.
// Threads: one GEMM is split by blas::gemm(ctx, ...); a batch of GEMMs runs its entries
// in parallel, one single-threaded GEMM each, except the sum over the batch into a shared
// b's gradient, which stays in batch order.
#pragma once

#include "../core/blas.hpp"
#include "../core/tape.hpp"

#include <algorithm>
#include <limits>

namespace tapegrad::ops {

inline const OpName kMatmul{"matmul"};

namespace detail {

// f(i, ctx_i) for each batch entry i: one entry gets the whole context; several run in
// parallel with one thread each. Entries must write disjoint data.
template <class F>
void for_each_entry(const Context& ctx, std::size_t entries, F&& f) {
  if (entries == 1) return f(0, ctx);
  parallel_blocks(ctx, entries, 1, [&](std::size_t i, std::size_t) { f(i, Context{}); });
}

}  // namespace detail

struct MatmulOptions {
  bool transpose_a = false;
  bool transpose_b = false;
};

template <class T>
Tensor<T> matmul(Tape& tape, const Tensor<T>& a, const Tensor<T>& b, MatmulOptions opt = {}) {
  const Shape as = a.shape(), bs = b.shape();
  const std::size_t r = as.size();
  if (r < 2 || bs.size() < 2)
    throw op_error(kMatmul, "inputs need rank >= 2, got a " + shape_str(as) + ", b " + shape_str(bs));
  const bool shared_b = bs.size() == 2;
  if (!shared_b && (bs.size() != r || !std::equal(as.begin(), as.end() - 2, bs.begin())))
    throw op_error(kMatmul, "batch dimensions differ: a " + shape_str(as) + ", b " + shape_str(bs));
  const std::size_t M = opt.transpose_a ? as[r - 1] : as[r - 2];
  const std::size_t K = opt.transpose_a ? as[r - 2] : as[r - 1];
  const std::size_t Kb = opt.transpose_b ? bs[bs.size() - 1] : bs[bs.size() - 2];
  const std::size_t N = opt.transpose_b ? bs[bs.size() - 2] : bs[bs.size() - 1];
  if (K != Kb)
    throw op_error(kMatmul, "inner dimensions differ: a " + shape_str(as) + (opt.transpose_a ? "^T" : "") + ", b " +
                                shape_str(bs) + (opt.transpose_b ? "^T" : ""));
  if (M == 0 || N == 0 || K == 0)
    throw op_error(kMatmul, "empty dimension in a " + shape_str(as) + ", b " + shape_str(bs));
  if (std::max({a.size() / K, N, K}) > std::size_t(std::numeric_limits<int>::max()))
    throw op_error(kMatmul, "a dimension exceeds BLAS's int range: a " + shape_str(as) + ", b " + shape_str(bs));

  const std::size_t batch = a.size() / (M * K);
  const bool fold = shared_b && !opt.transpose_a;
  const std::size_t rows = fold ? batch * M : M, loops = fold ? 1 : batch;
  const std::size_t sa = rows * K, sb = shared_b ? 0 : K * N, sc = rows * N;  // per-loop strides

  Shape cs(as.begin(), as.end() - 2);
  cs.push_back(M);
  cs.push_back(N);
  Tensor<T> c(Array<T>::from_shape(cs));
  const bool ta = opt.transpose_a, tb = opt.transpose_b;
  const Context ctx = tape.context();
  detail::for_each_entry(ctx, loops, [&](std::size_t i, const Context& ci) {
    blas::gemm(ci, ta, tb, rows, N, K, T(1), a.data() + i * sa, b.data() + i * sb, T(0), c.data() + i * sc);
  });

  return tape.record(
      kMatmul, c,
      [a, b, c = GradRef<T>(c), ctx, ta, tb, rows, loops, N, K, sa, sb, sc] {
    const T* dC = c.grad().data();
    if (a.requires_grad()) {  // the entries write disjoint parts of dA
      const auto dA = a.grad_output(kMatmul.name());
      detail::for_each_entry(ctx, loops, [&](std::size_t i, const Context& ci) {
        if (!ta)  // dA (rows,K) += dC (rows,N) op(B)^T (N,K)
          blas::gemm(ci, false, !tb, rows, K, N, T(1), dC + i * sc, b.data() + i * sb, dA.beta, dA.data + i * sa);
        else  // dA (K,M) += op(B) (K,N) dC^T (N,M)
          blas::gemm(ci, tb, true, K, rows, N, T(1), b.data() + i * sb, dC + i * sc, dA.beta, dA.data + i * sa);
      });
    }
    if (b.requires_grad()) {
      const auto dB = b.grad_output(kMatmul.name());
      auto entry = [&](std::size_t i, const Context& ci, T beta) {
        if (!tb)  // dB (K,N) += op(A)^T (K,rows) dC (rows,N)
          blas::gemm(ci, !ta, false, K, N, rows, T(1), a.data() + i * sa, dC + i * sc, beta, dB.data + i * sb);
        else  // dB (N,K) += dC^T (N,rows) op(A) (rows,K)
          blas::gemm(ci, true, ta, N, K, rows, T(1), dC + i * sc, a.data() + i * sa, beta, dB.data + i * sb);
      };
      if (sb == 0)  // a shared b: the entries add into one gradient, in batch order (the first writes it)
        for (std::size_t i = 0; i < loops; ++i) entry(i, ctx, i == 0 ? dB.beta : T(1));
      else  // the entries write disjoint parts of dB
        detail::for_each_entry(ctx, loops, [&](std::size_t i, const Context& ci) { entry(i, ci, dB.beta); });
    }
      },
      a, b);
}

}  // namespace tapegrad::ops
