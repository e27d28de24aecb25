// tapegrad/models/gpt/sampling.hpp — sampling from a GPT with a KV cache.
//
//   auto cache = model.make_kv_cache()                per layer, K and V of the positions run so far (batch 1)
//   forward_cached(model, cache, tokens, ctx, pool)   runs tokens (n >= 1) at positions cache.length() ...
//                                                     and returns the logits (V) after the last one
//   forward_next(model, cache, token, ctx, pool)      the same for one token: O(L (d^2 + p d)) at position p
//   draw_token(logits, options, rng)                  temperature / top-k / greedy choice of the next id
//   generate(model, prompt, n, options, rng, emit)
//
// The cached forward is GPT::forward itself, given the cache (nn/kv_cache.hpp: the design),
// on a tape that records nothing: the same modules, ops and kernels as training, each new
// row attending to the cached positions. So the logits equal GPT::forward's over the
// window the cache holds, up to rounding (tests: "generate: ..."). A one-row pass runs
// its GEMMs as GEMVs (core/blas.hpp). Derivation and costs: docs/derivations.md,
// "Sampling with a KV cache".
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

#include "../../core/error.hpp"
#include "../../nn/kv_cache.hpp"
#include "model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace tapegrad::models {

// Runs tokens (n >= 1) at positions cache.length() .. cache.length() + n - 1 (at most block_size
// in all) through GPT::forward with the cache, on a tape that records nothing, and returns the
// logits (V) after the last token. `context`: the threads; `pool` (may be null): the buffers a
// loop of calls recycles.
template <class T>
std::vector<T> forward_cached(const GPT<T>& model, nn::KVCache<T>& cache, std::span<const std::int64_t> tokens,
                              const Context& context = {}, std::shared_ptr<BufferPool> pool = nullptr) {
  if (tokens.empty()) throw ShapeError("generate: no token to run (an empty prompt?)");
  Ids idx = Ids::from_shape({1, tokens.size()});
  std::copy(tokens.begin(), tokens.end(), idx.begin());
  Tape tape(context, std::move(pool));
  const NoGradGuard no_grad(tape);
  const Tensor<T> logits = model.forward(tape, idx, &cache);  // (1, n, V)
  const std::size_t V = model.config.vocab_size;
  const T* last = logits.data() + (tokens.size() - 1) * V;
  return std::vector<T>(last, last + V);
}

template <class T>
std::vector<T> forward_next(const GPT<T>& model, nn::KVCache<T>& cache, std::int64_t token, const Context& context = {},
                            std::shared_ptr<BufferPool> pool = nullptr) {
  return forward_cached(model, cache, std::span<const std::int64_t>(&token, 1), context, std::move(pool));
}

struct GenerateOptions {
  double temperature = 1.0;              // > 0 divides the logits; 0 = greedy (argmax, no draw)
  std::size_t top_k = 0;                 // sample among the k largest logits; 0 = all
  std::optional<std::size_t> keep = {};  // tokens re-run when the cache is full (< block_size); default block_size / 2
  Context context = {};                  // threads (a one-row pass runs its attention serially)
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
  for (const std::int64_t id : prompt)
    if (id < 0 || std::size_t(id) >= model.config.vocab_size)
      throw ShapeError("generate: token id " + std::to_string(id) + " is out of range [0, " +
                       std::to_string(model.config.vocab_size) + ")");
  std::vector<std::int64_t> tokens(prompt.begin(), prompt.end());  // the prompt and what was drawn
  nn::KVCache<T> cache = model.make_kv_cache();
  const auto pool = std::make_shared<BufferPool>();  // every token's buffers, recycled
  const auto run_last = [&](std::size_t count) {     // the last `count` tokens into the cleared cache
    cache.clear();
    return forward_cached(model, cache, std::span(tokens).last(count), options.context, pool);
  };
  std::vector<T> logits = run_last(std::min(tokens.size(), block));
  for (std::size_t i = 0; i < n_tokens; ++i) {
    if (!std::all_of(logits.begin(), logits.end(), [](T z) { return std::isfinite(z); }))
      throw Error("the model's next-token logits are not finite: the model is diverged or corrupt");
    const std::int64_t id = draw_token(std::vector<double>(logits.begin(), logits.end()), options, rng);
    tokens.push_back(id);
    emit(id);
    if (i + 1 == n_tokens) break;
    logits = cache.full() ? run_last(keep + 1) : forward_next(model, cache, id, options.context, pool);
  }
}

}  // namespace tapegrad::models
