// tapegrad/models/llama/sampling.hpp — sampling from a Llama with a KV cache.
//
//   LlamaKVCache<T> cache(config)                  per layer, rotated K and V of the positions run so far
//   forward_cached(model, cache, tokens, ctx)      runs tokens (n >= 1) at positions cache.length() ...
//                                                  and returns the logits (V) after the last one
//   generate(model, prompt, n, options, rng, emit) as the GPT's (gpt/sampling.hpp): same options,
//                                                  same draw, same window policy
// The cached path is Llama::forward itself (one forward per module, the cache optional):
// a prompt runs as in training, then each new token is one row at its real position,
// rope turning its q and k by that position, attending to every cached key. So the logits
// equal Llama::forward's on the same window up to rounding (tests: "llama: ...").
// The window: rope's scores depend only on t - s, but the cache still holds at most
// block_size positions; when full, generate() clears it and re-runs the last `keep` tokens
// plus the new one at positions 0..keep, as the GPT's does, so every logit is a full
// forward over the window the cache holds.
#pragma once

#include "../gpt/sampling.hpp"  // GenerateOptions, draw_token, detail::token_index
#include "model.hpp"

#include <span>
#include <vector>

namespace tapegrad::models {

template <class T>
std::vector<T> forward_cached(const Llama<T>& model, LlamaKVCache<T>& cache, std::span<const std::int64_t> tokens,
                              const Context& ctx = {}) {
  const std::size_t V = model.config.vocab_size;
  if (tokens.empty()) throw ShapeError("generate: no token to run (an empty prompt?)");
  for (const std::int64_t id : tokens) detail::token_index(id, V);  // a bad id throws before the cache changes
  Tape tape(ctx);
  NoGradGuard no_grad(tape);
  // A first call runs every token at once; after it, the rows go one at a time.
  const std::size_t rows = cache.length() == 0 ? tokens.size() : 1;
  Tensor<T> logits;
  for (std::size_t first = 0; first < tokens.size(); first += rows) {
    Ids idx = Ids::from_shape({1, rows});
    std::copy_n(tokens.begin() + std::ptrdiff_t(first), rows, idx.begin());
    logits = model.forward(tape, idx, &cache);
  }
  const T* last = logits.data() + (logits.size() - V);
  return std::vector<T>(last, last + V);
}

// Generates n_tokens ids after `prompt` (its last block_size tokens are the first window),
// calling emit(id) after each; errors as the GPT's generate.
template <class T>
void generate(const Llama<T>& model, std::span<const std::int64_t> prompt, std::size_t n_tokens,
              const GenerateOptions& options, std::mt19937_64& rng, const std::function<void(std::int64_t)>& emit) {
  const std::size_t block = model.config.block_size, keep = options.keep.value_or(block / 2);
  if (prompt.empty()) throw ShapeError("generate: the prompt is empty (it needs at least one token)");
  if (!(options.temperature >= 0) || !std::isfinite(options.temperature))
    throw ConfigError("generate: temperature must be a finite number >= 0, got " + std::to_string(options.temperature));
  if (keep >= block)
    throw ConfigError("generate: keep " + std::to_string(keep) + " must be below block_size " + std::to_string(block));
  for (const std::int64_t id : prompt) detail::token_index(id, model.config.vocab_size);
  std::vector<std::int64_t> context(prompt.begin(), prompt.end());
  LlamaKVCache<T> cache(model.config);
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
    logits = cache.length() == block ? run_last(keep + 1)
                                     : forward_cached(model, cache, std::span<const std::int64_t>(&context.back(), 1));
  }
}

}  // namespace tapegrad::models
