// tapegrad/ops/causal_attention.hpp — O = softmax(mask(Q K^T / sqrt(dh))) V as one op, saving no T x T tensor.
//   q, k, v (..., T, dh), all of one shape; O (..., T, dh); c = 1/sqrt(dh); row t is a query, column s a key.
// Blocked over the causal triangle: per (batch, head) matrix, query rows go in blocks of
// query_block(T) rows; block [t0, t1) only meets keys [0, t1), so every GEMM below touches the key
// blocks at or below the diagonal and nothing above it (only the diagonal block's upper half is
// computed and zeroed). The working memory is two query_block(T) x T strips per thread, O(T x tile).
// Forward, per query block, with S and P its (rows, t1) strip:
//   S = c Q_b K[0:t1]^T;  L[t] = log sum_{s <= t} exp(S[t, s]) (max-subtracted);
//   P[t, s] = exp(S[t, s] - max) / sum for s <= t, exactly 0 for s > t (never exp'd);  O_b = P V[0:t1].
// Saved: q, k, v, O and L (..., T): O(B h T) beyond the inputs, never the (..., T, T) probabilities.
// Backward, per query block, recomputing P = exp(c Q_b K[0:t1]^T - L) (0 for s > t):
//   D = rowsum(dO ∘ O)   (= rowsum(dP ∘ P); docs/derivations.md 5.10)
//   dV[0:t1] += P^T dO_b;  dP = dO_b V[0:t1]^T;  dS = P ∘ (dP - D);  dQ_b += c dS K[0:t1];  dK[0:t1] += c dS^T Q_b
// dP and dS are computed only when q or k requires grad; each input gets a gradient only if it requires one.
// Threads: the (batch, head) matrices run in parallel, each thread with its own strips and
// single-threaded GEMMs; within a matrix the blocks run in order, so the sums into dK and dV
// are the same at any thread count.
#pragma once

#include "../core/blas.hpp"
#include "../core/tape.hpp"
#include "rows.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace tapegrad::ops {

inline const OpName kCausalAttention{"causal_attention"};

// Query rows per block: T / 8 between 64 and 128, a function of T only (so the same at any
// thread count). A larger block makes fewer, larger GEMM calls (a library call costs a few
// microseconds of overhead, 7% of `long`'s step at 64 rows) but computes more of the diagonal
// blocks' masked upper halves (qb / (2 T) of the triangle's work). At T = 1024 the 128-row
// blocks cut `long`'s one-thread step by about 6%; at T = 256 the 64-row ones were as fast or
// faster (docs/performance.md). A 128 x T strip of floats is 4 MiB at T = 8192 (bench_attention).
inline std::size_t query_block(std::size_t T) { return std::clamp<std::size_t>(T / 8, 64, 128); }

// The (t1 - t0, t1) strip p of P for the query rows q_rows (t1 - t0, dh) at positions
// [t0, t1) of one (batch, head) matrix, against the keys k (t1, dh) at positions [0, t1):
// S = c q_rows k^T (one GEMM), then row by row P = exp(S - max) / sum over s <= t, exactly
// 0 above. Writes each row's log-sum-exp to lse_rows[t - t0].
template <class T>
void causal_probs(const T* q_rows, const T* k, std::size_t t0, std::size_t t1, std::size_t dh, T c, T* p, T* lse_rows) {
  blas::gemm(false, true, t1 - t0, t1, dh, c, q_rows, k, T(0), p);
  for (std::size_t t = t0; t < t1; ++t) {
    T* row = p + (t - t0) * t1;
    const auto r = row_exp(row, t + 1, row);  // the diagonal is never masked: the row max is finite
    const T inv = T(1) / r.sum;
    for (std::size_t u = 0; u <= t; ++u) row[u] *= inv;
    lse_rows[t - t0] = r.log_sum_exp();
    std::fill(row + t + 1, row + t1, T(0));
  }
}

// The same strip recomputed from the saved log-sum-exps (the backward):
// P = exp(c q_rows k^T - L), exactly 0 above the diagonal.
template <class T>
void causal_probs_from_lse(const T* q_rows, const T* k, std::size_t t0, std::size_t t1, std::size_t dh, T c, T* p,
                           const T* lse_rows) {
  blas::gemm(false, true, t1 - t0, t1, dh, c, q_rows, k, T(0), p);
  for (std::size_t t = t0; t < t1; ++t) {
    T* row = p + (t - t0) * t1;
    vec::exp_shifted(row, t + 1, lse_rows[t - t0], row);
    std::fill(row + t + 1, row + t1, T(0));
  }
}

// The forward for the query rows q_rows (t1 - t0, dh) at positions [t0, t1) of one
// (batch, head) matrix, against keys k and values v (t1, dh) at positions [0, t1):
// o_rows (t1 - t0, dh) = P v with P from causal_probs (p: scratch of (t1 - t0) t1 values).
// causal_attention runs it per query block; a KV cache (nn/kv_cache.hpp) runs it for
// the new positions against the cached ones.
template <class T>
void causal_attention_rows(const T* q_rows, const T* k, const T* v, std::size_t t0, std::size_t t1, std::size_t dh, T c,
                           T* p, T* o_rows, T* lse_rows) {
  causal_probs(q_rows, k, t0, t1, dh, c, p, lse_rows);
  blas::gemm(false, false, t1 - t0, dh, t1, T(1), p, v, T(0), o_rows);
}

template <class T>
Tensor<T> causal_attention(Tape& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v) {
  const Shape qs = q.shape();
  const std::size_t r = qs.size();
  if (r < 2 || k.shape() != qs || v.shape() != qs)
    throw op_error(kCausalAttention, "needs q, k, v of one shape (..., T, dh), got q " + shape_str(qs) + ", k " +
                                         shape_str(k.shape()) + ", v " + shape_str(v.shape()));
  const std::size_t n = qs[r - 2], dh = qs[r - 1];
  if (n == 0 || dh == 0) throw op_error(kCausalAttention, "empty dimension in q " + shape_str(qs));
  if (std::max(n, dh) > std::size_t(std::numeric_limits<int>::max()))
    throw op_error(kCausalAttention, "a dimension exceeds BLAS's int range: q " + shape_str(qs));
  const std::size_t mats = q.size() / (n * dh), sm = n * dh;  // (batch, head) matrices and their stride
  const T c = T(1 / std::sqrt(double(dh)));

  Tensor<T> o(Array<T>::from_shape(qs));
  PooledVector<T> lse(mats * n);  // L (..., T), saved
  const Context ctx = tape.context();
  const std::size_t qb = query_block(n);
  parallel_blocks(ctx, mats, 1, [&](std::size_t i, std::size_t) {
    std::vector<T> p(std::min(qb, n) * n);  // scratch: one block's strip of P
    const T *qi = q.data() + i * sm, *ki = k.data() + i * sm, *vi = v.data() + i * sm;
    for (std::size_t t0 = 0; t0 < n; t0 += qb) {
      const std::size_t t1 = std::min(n, t0 + qb);
      causal_attention_rows<T>(qi + t0 * dh, ki, vi, t0, t1, dh, c, p.data(), o.data() + i * sm + t0 * dh,
                               lse.data() + i * n + t0);  // O_b = P V
    }
  });

  return tape.record(
      kCausalAttention, o,
      [q, k, v, o, lse = std::move(lse), ctx, qb, mats, n, dh, sm, c] {
    const T* dO = o.grad().data();
    const T* ov = o.data();
    const bool qk = q.requires_grad() || k.requires_grad();
    T* dQ = q.requires_grad() ? q.grad_accumulator(kCausalAttention.name()).data() : nullptr;
    T* dK = k.requires_grad() ? k.grad_accumulator(kCausalAttention.name()).data() : nullptr;
    T* dV = v.requires_grad() ? v.grad_accumulator(kCausalAttention.name()).data() : nullptr;
    parallel_blocks(ctx, mats, 1, [&](std::size_t i, std::size_t) {
      const std::size_t at = i * sm;
      const T *qi = q.data() + at, *ki = k.data() + at, *vi = v.data() + at, *dOi = dO + at;
      std::vector<T> p(std::min(qb, n) * n), ds(qk ? std::min(qb, n) * n : 0),
          D(n);  // scratch: P and dP -> dS strips, D
      if (qk)
        for (std::size_t t = 0; t < n; ++t) {  // D = rowsum(dO ∘ O)
          T dot = 0;
          for (std::size_t e = 0; e < dh; ++e) dot += dOi[t * dh + e] * ov[at + t * dh + e];
          D[t] = dot;
        }
      for (std::size_t t0 = 0; t0 < n; t0 += qb) {
        const std::size_t t1 = std::min(n, t0 + qb), rows = t1 - t0;
        causal_probs_from_lse<T>(qi + t0 * dh, ki, t0, t1, dh, c, p.data(), lse.data() + i * n + t0);
        if (dV) blas::gemm(true, false, t1, dh, rows, T(1), p.data(), dOi + t0 * dh, T(1), dV + at);  // dV += P^T dO_b
        if (!qk) continue;
        blas::gemm(false, true, rows, t1, dh, T(1), dOi + t0 * dh, vi, T(0), ds.data());  // dP = dO_b V^T
        for (std::size_t t = t0; t < t1; ++t) {  // dS = P ∘ (dP - D), exactly 0 above the diagonal
          T* row = ds.data() + (t - t0) * t1;
          const T* pr = p.data() + (t - t0) * t1;
          for (std::size_t u = 0; u <= t; ++u) row[u] = pr[u] * (row[u] - D[t]);
          std::fill(row + t + 1, row + t1, T(0));
        }
        if (dQ) blas::gemm(false, false, rows, dh, t1, c, ds.data(), ki, T(1), dQ + at + t0 * dh);  // dQ_b += c dS K
        if (dK) blas::gemm(true, false, t1, dh, rows, c, ds.data(), qi + t0 * dh, T(1), dK + at);   // dK += c dS^T Q_b
      }
    });
      },
      q, k, v);
}

}  // namespace tapegrad::ops
