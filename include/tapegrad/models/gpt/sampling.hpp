// tapegrad/models/gpt/sampling.hpp — sampling from a GPT with a KV cache, no tape.
//
//   KVCache<T> cache(config)                      per layer, K and V of the positions run so far (batch 1)
//   forward_cached(model, cache, tokens, ctx)     runs tokens (n >= 1) at positions cache.length ...
//                                                 and returns the logits (V) after the last one
//   forward_next(model, cache, token)             the same for one token: O(L (d^2 + p d)) at position p
//   draw_token(logits, options, rng)              temperature / top-k / greedy choice of the next id
//   generate(model, prompt, n, options, rng, emit)
//
// A row at position p, per layer (SPEC section 1, one row of it; c = 1/sqrt(dh)):
//   a = LN_1(x);  q, k, v = a W_q, a W_k, a W_v                 (d) each, split into h heads of dh
//   K[:, p], V[:, p] = k, v                                      appended to the cache (h, block_size, dh)
//   per head: s = c K[0:p+1] q (p+1);  P = softmax(s);  o = P V[0:p+1] (dh)
//   x = x + merge(o) W_o;  x = x + GELU(LN_2(x) W_1 + b_1) W_2 + b_2
// logits = LN_f(x) wte^T at the last row only. Several rows (a prompt, a refill) run as GEMMs,
// row r attending to positions 0..p0+r. The arithmetic is the ops' (ops/layernorm.hpp,
// gelu.hpp, causal_attention.hpp: the same formulas, vec::exp, constants and summation
// order), so the logits equal GPT::forward's on the same window up to rounding (tests:
// "generate: ..."). Derivation and costs: docs/derivations.md, "Sampling with a KV cache".
//
// The window. wpe gives each position its own vector, so a token's K and V depend on where it
// sits in the window and cannot be shifted when the window slides. generate() fills the cache
// to block_size positions; when it is full, it clears it and re-runs the last `keep` tokens
// plus the new one at positions 0..keep (one multi-row pass). Every logit is then exactly a
// full forward over the window the cache holds: the last keep+1 .. block_size tokens.
// keep = block_size / 2 (the default) refills once per block_size / 2 tokens;
// keep = block_size - 1 refills at every token past the window and reproduces the sampler that
// crops the context to its last block_size tokens, token for token, at a full forward's cost.
#pragma once

#include "../../core/blas.hpp"
#include "../../core/error.hpp"
#include "../../core/vecmath.hpp"
#include "../../ops/gelu.hpp"
#include "../../ops/layernorm.hpp"
#include "../../ops/softmax.hpp"
#include "model.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace tapegrad::models {

// Keys and values of the positions 0..length-1 for batch 1: per layer, (n_head, block_size, head_dim)
// each, position p of head h at (h * block_size + p) * head_dim. 2 L block_size d values in all.
template <class T>
struct KVCache {
  explicit KVCache(const GPTConfig& config)
      : n_head(config.n_head), block_size(config.block_size), head_dim(config.d_model / config.n_head),
        keys(config.n_layer, std::vector<T>(config.d_model * config.block_size)),
        values(config.n_layer, std::vector<T>(config.d_model * config.block_size)) {}

  std::size_t n_head, block_size, head_dim;
  std::vector<std::vector<T>> keys, values;  // [layer] (n_head, block_size, head_dim)
  std::size_t length = 0;                    // positions held

  bool full() const { return length == block_size; }
  void clear() { length = 0; }
  // Head h's (block_size, head_dim) slab of layer l's keys / values.
  T* key(std::size_t l, std::size_t h) { return keys[l].data() + h * block_size * head_dim; }
  T* value(std::size_t l, std::size_t h) { return values[l].data() + h * block_size * head_dim; }
};

namespace detail {

// y (n) = alpha A (n, m) x (m), or with transpose_a, alpha A^T x for A (m, n): row-major A, one GEMV.
template <class T>
void matrix_vector(bool transpose_a, std::size_t rows_a, std::size_t cols_a, T alpha, const T* a, const T* x, T* y) {
  blas::detail::single_threaded_blas();
  const auto trans = transpose_a ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemv(CblasRowMajor, trans, int(rows_a), int(cols_a), alpha, a, int(cols_a), x, 1, 0.f, y, 1);
  else
    cblas_dgemv(CblasRowMajor, trans, int(rows_a), int(cols_a), alpha, a, int(cols_a), x, 1, 0.0, y, 1);
}

// y (rows, d_out) = x (rows, d_in) W (d_in, d_out): one row is a GEMV, y = W^T x (a GEMM with
// M = 1 would pack all of W for one row); several rows are a GEMM split over ctx's threads.
template <class T>
void rows_times(const Context& ctx, const T* x, std::size_t rows, const T* w, std::size_t d_in, std::size_t d_out, T* y) {
  if (rows == 1) return matrix_vector(true, d_in, d_out, T(1), w, x, y);
  blas::gemm(ctx, false, false, rows, d_out, d_in, T(1), x, w, T(0), y);
}

// The id as an index into the vocabulary; ShapeError outside [0, V).
inline std::size_t token_index(std::int64_t id, std::size_t V) {
  if (id < 0 || std::size_t(id) >= V)
    throw ShapeError("generate: token id " + std::to_string(id) + " is out of range [0, " + std::to_string(V) + ")");
  return std::size_t(id);
}

// y = LayerNorm(x) row by row over C: ops::layernorm's row kernel.
template <class T>
void layernorm_rows(const nn::LayerNorm<T>& ln, const T* x, std::size_t rows, std::size_t C, T* y) {
  T mean, rstd;
  for (std::size_t r = 0; r < rows; ++r)
    ops::detail::layernorm_row(x + r * C, C, ln.weight.data(), ln.bias.data(), T(ln.eps), y + r * C, mean, rstd);
}

// x (rows, C) += bias (C)
template <class T>
void add_rows(T* x, std::size_t rows, std::size_t C, const T* bias) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t i = 0; i < C; ++i) x[r * C + i] += bias[i];
}

// x (n) = GELU(x) in place: ops::gelu's kernel.
template <class T>
void gelu_in_place(T* x, std::size_t n) {
  std::vector<T> t(n);
  ops::detail::gelu_forward(x, n, t.data(), x);
}

}  // namespace detail

// Runs tokens (n >= 1) at positions cache.length .. cache.length + n - 1 (at most block_size in all),
// appending their keys and values, and returns the logits (V) after the last token. `ctx` splits
// the GEMMs of a multi-row call; one row runs single-threaded.
template <class T>
std::vector<T> forward_cached(const GPT<T>& model, KVCache<T>& cache, std::span<const std::int64_t> tokens,
                              const Context& ctx = {}) {
  const GPTConfig& cfg = model.config;
  const std::size_t n = tokens.size(), p0 = cache.length, d = cfg.d_model, H = cfg.n_head, dh = d / H,
                    V = cfg.vocab_size;
  if (cache.keys.size() != cfg.n_layer || cache.n_head != H || cache.block_size != cfg.block_size || cache.head_dim != dh)
    throw ShapeError("generate: the KV cache was made for another model config");
  if (n == 0) throw ShapeError("generate: no token to run (an empty prompt?)");
  if (p0 + n > cfg.block_size)
    throw ShapeError("generate: " + std::to_string(p0) + " cached + " + std::to_string(n) +
                     " new positions exceed block_size " + std::to_string(cfg.block_size));

  std::vector<T> x(n * d), a(n * d), q(n * d), k(n * d), v(n * d), o(n * d), hidden(n * 4 * d), s(p0 + n);
  for (std::size_t r = 0; r < n; ++r) {  // x = wte[token] + wpe[position]; a bad id throws before the cache changes
    const T *te = model.wte.data() + detail::token_index(tokens[r], V) * d, *pe = model.wpe.data() + (p0 + r) * d;
    for (std::size_t i = 0; i < d; ++i) x[r * d + i] = te[i] + pe[i];
  }
  const T c = T(1 / std::sqrt(double(dh)));
  for (std::size_t l = 0; l < cfg.n_layer; ++l) {
    const TransformerBlock<T>& block = model.h[l];
    detail::layernorm_rows(block.ln_1, x.data(), n, d, a.data());
    detail::rows_times(ctx, a.data(), n, block.attn.w_q.data(), d, d, q.data());
    detail::rows_times(ctx, a.data(), n, block.attn.w_k.data(), d, d, k.data());
    detail::rows_times(ctx, a.data(), n, block.attn.w_v.data(), d, d, v.data());
    for (std::size_t h = 0; h < H; ++h) {
      T *K = cache.key(l, h), *Vh = cache.value(l, h);  // (block_size, dh)
      for (std::size_t r = 0; r < n; ++r) {              // K[h, p0 + r] = k[r, head h], likewise V
        std::copy_n(k.data() + r * d + h * dh, dh, K + (p0 + r) * dh);
        std::copy_n(v.data() + r * d + h * dh, dh, Vh + (p0 + r) * dh);
      }
      for (std::size_t r = 0; r < n; ++r) {  // query row r sees positions 0..p = p0 + r
        const std::size_t seen = p0 + r + 1;
        detail::matrix_vector(false, seen, dh, c, K, q.data() + r * d + h * dh, s.data());  // s = c K[0:p+1] q
        const auto e = ops::detail::row_exp(s.data(), seen, s.data());                      // the diagonal is finite
        const T inv = T(1) / e.sum;
        for (std::size_t u = 0; u < seen; ++u) s[u] *= inv;                                  // P
        detail::matrix_vector(true, seen, dh, T(1), Vh, s.data(), o.data() + r * d + h * dh);  // o = P V[0:p+1]
      }
    }
    detail::rows_times(ctx, o.data(), n, block.attn.w_o.data(), d, d, a.data());
    for (std::size_t i = 0; i < n * d; ++i) x[i] += a[i];  // residual
    detail::layernorm_rows(block.ln_2, x.data(), n, d, a.data());
    detail::rows_times(ctx, a.data(), n, block.mlp.w_1.data(), d, 4 * d, hidden.data());
    detail::add_rows(hidden.data(), n, 4 * d, block.mlp.b_1.data());
    detail::gelu_in_place(hidden.data(), n * 4 * d);
    detail::rows_times(ctx, hidden.data(), n, block.mlp.w_2.data(), 4 * d, d, a.data());
    detail::add_rows(a.data(), n, d, block.mlp.b_2.data());
    for (std::size_t i = 0; i < n * d; ++i) x[i] += a[i];  // residual
  }
  cache.length = p0 + n;
  detail::layernorm_rows(model.ln_f, x.data() + (n - 1) * d, 1, d, a.data());  // the last row only
  std::vector<T> logits(V);
  detail::matrix_vector(false, V, d, T(1), model.wte.data(), a.data(), logits.data());  // logits = wte a
  return logits;
}

template <class T>
std::vector<T> forward_next(const GPT<T>& model, KVCache<T>& cache, std::int64_t token) {
  return forward_cached(model, cache, std::span<const std::int64_t>(&token, 1));
}

struct GenerateOptions {
  double temperature = 1.0;              // > 0 divides the logits; 0 = greedy (argmax, no draw)
  std::size_t top_k = 0;                 // sample among the k largest logits; 0 = all
  std::optional<std::size_t> keep = {};  // tokens re-run when the cache is full (< block_size); default block_size / 2
  Context context = {};                  // threads for the multi-row passes (the prompt, refills)
};

// The next id from the logits: greedy for temperature 0, else softmax(logits / temperature) over
// the top_k largest (ties at the k-th all kept), one std::discrete_distribution draw from rng.
inline std::int64_t draw_token(const std::vector<double>& logits, const GenerateOptions& options, std::mt19937_64& rng) {
  const auto best = std::max_element(logits.begin(), logits.end());
  if (options.temperature == 0) return std::int64_t(best - logits.begin());
  double threshold = -INFINITY;  // logits below it are dropped (top-k)
  if (options.top_k > 0 && options.top_k < logits.size()) {
    std::vector<double> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + std::ptrdiff_t(options.top_k - 1), sorted.end(), std::greater<>());
    threshold = sorted[options.top_k - 1];
  }
  std::vector<double> weights(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i)
    weights[i] = logits[i] < threshold ? 0.0 : std::exp((logits[i] - *best) / options.temperature);
  std::discrete_distribution<std::int64_t> next(weights.begin(), weights.end());
  return next(rng);
}

// Generates n_tokens ids after `prompt` (its last block_size tokens are the first window),
// calling emit(id) after each. Bad input (an empty prompt, an id outside [0, V), a negative or
// non-finite temperature, keep >= block_size) is an Error before anything is emitted; logits
// that are not finite are an Error naming the model.
template <class T>
void generate(const GPT<T>& model, std::span<const std::int64_t> prompt, std::size_t n_tokens,
              const GenerateOptions& options, std::mt19937_64& rng, const std::function<void(std::int64_t)>& emit) {
  const std::size_t block = model.config.block_size, keep = options.keep.value_or(block / 2);
  if (prompt.empty()) throw ShapeError("generate: the prompt is empty (it needs at least one token)");
  if (!(options.temperature >= 0) || !std::isfinite(options.temperature))
    throw ConfigError("generate: temperature must be a finite number >= 0, got " + std::to_string(options.temperature));
  if (keep >= block)
    throw ConfigError("generate: keep " + std::to_string(keep) + " must be below block_size " + std::to_string(block));
  for (const std::int64_t id : prompt) detail::token_index(id, model.config.vocab_size);
  std::vector<std::int64_t> context(prompt.begin(), prompt.end());
  KVCache<T> cache(model.config);
  const auto run_last = [&](std::size_t count) {  // the last `count` tokens of the context into the cleared cache
    cache.clear();
    return forward_cached(model, cache, std::span(context).last(count), options.context);
  };
  std::vector<T> logits = run_last(std::min(context.size(), block));
  for (std::size_t i = 0; i < n_tokens; ++i) {
    if (!std::all_of(logits.begin(), logits.end(), [](T z) { return std::isfinite(z); }))
      throw Error("the model's next-token logits are not finite: the model is diverged or corrupt");
    const std::int64_t id = draw_token(std::vector<double>(logits.begin(), logits.end()), options, rng);
    context.push_back(id);
    emit(id);
    if (i + 1 == n_tokens) break;
    logits = cache.full() ? run_last(keep + 1) : forward_next(model, cache, id);
  }
}

}  // namespace tapegrad::models
