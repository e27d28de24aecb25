// tapegrad/ops/causal_attention.hpp — O = softmax(mask(Q K^T / sqrt(dh))) V as one op, saving no T x T tensor.
//   q, k, v (..., T, dh), all of one shape; O (..., T, dh); c = 1/sqrt(dh); row t is a query, column s a key.
// Forward, per (batch, head) matrix, through one T x T scratch buffer per call:
//   S = c Q K^T (one GEMM);  L[t] = log sum_{s <= t} exp(S[t, s]) (max-subtracted);
//   P[t, s] = exp(S[t, s] - max) / sum for s <= t, exactly 0 for s > t (never exp'd);  O = P V (one GEMM).
// Saved: q, k, v, O and L (..., T): O(B h T) beyond the inputs, never the (..., T, T) probabilities.
// Backward, per (batch, head), recomputing P = exp(c Q K^T - L) (0 for s > t) in a scratch buffer:
//   D = rowsum(dO ∘ O)   (= rowsum(dP ∘ P); docs/derivations.md 5.10)
//   dV += P^T dO;  dP = dO V^T;  dS = P ∘ (dP - D);  dQ += c dS K;  dK += c dS^T Q
// dP and dS are computed only when q or k requires grad; each input gets a gradient only if it requires one.
#pragma once

#include "../core/blas.hpp"
#include "../core/tape.hpp"
#include "softmax.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace tapegrad::ops {

inline const OpName kCausalAttention{"causal_attention"};

namespace detail {

// One matrix's P into the (T, T) buffer p: S = c Q K^T (one GEMM), then row by row
// P = exp(S - max) / sum over s <= t, 0 above. The forward writes each row's log-sum-exp
// to lse_out; the backward passes the saved L as lse_in and recomputes P = exp(S - L).
template <class T>
void causal_probs(const T* q, const T* k, std::size_t n, std::size_t dh, T c, T* p, T* lse_out, const T* lse_in) {
  blas::gemm(false, true, n, n, dh, c, q, k, T(0), p);
  for (std::size_t t = 0; t < n; ++t) {
    T* row = p + t * n;
    if (lse_out) {
      const auto r = row_exp(row, t + 1, row);  // the diagonal is never masked: the row max is finite
      const T inv = T(1) / r.sum;
      for (std::size_t u = 0; u <= t; ++u) row[u] *= inv;
      lse_out[t] = r.log_sum_exp();
    } else {
      for (std::size_t u = 0; u <= t; ++u) row[u] = std::exp(row[u] - lse_in[t]);
    }
    std::fill(row + t + 1, row + n, T(0));
  }
}

}  // namespace detail

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
  std::vector<T> lse(mats * n);  // L (..., T), saved
  const Context ctx = tape.context();
  parallel_blocks(ctx, mats, 1, [&](std::size_t i, std::size_t) {
    std::vector<T> p(n * n);  // scratch: this matrix's P
    detail::causal_probs<T>(q.data() + i * sm, k.data() + i * sm, n, dh, c, p.data(), lse.data() + i * n, nullptr);
    blas::gemm(false, false, n, dh, n, T(1), p.data(), v.data() + i * sm, T(0), o.data() + i * sm);  // O = P V
  });

  return tape.record(kCausalAttention, o, [q, k, v, o, lse = std::move(lse), ctx, mats, n, dh, sm, c] {
    const T* dO = o.grad().data();
    const T* ov = o.data();
    const bool qk = q.requires_grad() || k.requires_grad();
    T* dQ = q.requires_grad() ? q.grad_accumulator(kCausalAttention.name()).data() : nullptr;
    T* dK = k.requires_grad() ? k.grad_accumulator(kCausalAttention.name()).data() : nullptr;
    T* dV = v.requires_grad() ? v.grad_accumulator(kCausalAttention.name()).data() : nullptr;
    parallel_blocks(ctx, mats, 1, [&](std::size_t i, std::size_t) {
      std::vector<T> p(n * n), ds(qk ? n * n : 0), D(n);  // scratch: this matrix's P, dP -> dS, D
      const std::size_t at = i * sm;
      detail::causal_probs<T>(q.data() + at, k.data() + at, n, dh, c, p.data(), nullptr, lse.data() + i * n);
      if (dV) blas::gemm(true, false, n, dh, n, T(1), p.data(), dO + at, T(1), dV + at);  // dV += P^T dO
      if (!qk) return;
      for (std::size_t t = 0; t < n; ++t) {  // D = rowsum(dO ∘ O)
        T dot = 0;
        for (std::size_t e = 0; e < dh; ++e) dot += dO[at + t * dh + e] * ov[at + t * dh + e];
        D[t] = dot;
      }
      blas::gemm(false, true, n, n, dh, T(1), dO + at, v.data() + at, T(0), ds.data());  // dP = dO V^T
      for (std::size_t t = 0; t < n; ++t) {  // dS = P ∘ (dP - D), exactly 0 above the diagonal
        T* row = ds.data() + t * n;
        const T* pr = p.data() + t * n;
        for (std::size_t u = 0; u <= t; ++u) row[u] = pr[u] * (row[u] - D[t]);
        std::fill(row + t + 1, row + n, T(0));
      }
      if (dQ) blas::gemm(false, false, n, dh, n, c, ds.data(), k.data() + at, T(1), dQ + at);  // dQ += c dS K
      if (dK) blas::gemm(true, false, n, dh, n, c, ds.data(), q.data() + at, T(1), dK + at);   // dK += c dS^T Q
    });
  }, q, k, v);
}

}  // namespace tapegrad::ops
