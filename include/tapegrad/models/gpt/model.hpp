// tapegrad/models/gpt/model.hpp — the GPT of docs/contracts.md, "Model". Its checkpoint
// metadata is checkpoint_metadata.hpp, the named model sizes presets.hpp.
//
//   x      = wte[idx] + wpe[p0:p0+T]         (B, T, d)   p0 = 0, or the positions a KV cache holds
//   x      = block_i(x), i = 0..L-1          (B, T, d)   pre-LN, causal
//   logits = ln_f(x) wte^T                   (B, T, V)   weight tying
//   loss   = mean -log softmax(logits)[target]
#pragma once

#include "../../ops/cross_entropy.hpp"
#include "../../ops/embedding.hpp"
#include "../decoder.hpp"
#include "block.hpp"

#include <string>

namespace tapegrad::models {

struct GPTConfig {
  std::size_t vocab_size = 0, block_size = 0, n_layer = 0, n_head = 0, d_model = 0;

  // What is wrong with the config ("n_layer must be positive"), or "" when nothing is.
  std::string problem() const {
    if (vocab_size == 0) return "vocab_size must be positive";
    if (block_size == 0) return "block_size must be positive";
    if (n_layer == 0) return "n_layer must be positive";
    if (n_head == 0) return "n_head must be positive";
    if (d_model == 0 || d_model % n_head != 0)
      return "d_model " + std::to_string(d_model) + " must be a positive multiple of n_head " + std::to_string(n_head);
    return "";
  }
  void validate() const {
    if (const std::string p = problem(); !p.empty()) throw ConfigError("GPT config: " + p);
  }
};

template <class T>
class GPT : public nn::Module<T> {
 public:
  // Parameters drawn from an Rng seeded with `seed` (GPT-2's initialisation).
  GPT(const GPTConfig& c, std::uint64_t seed) : GPT(c, nn::Rng(seed)) {}
  // Parameters made by `init`: ParameterInit::shapes_only() lists them without allocating.
  GPT(const GPTConfig& c, const nn::ParameterInit& init) : config(c), ln_f((c.validate(), c.d_model), T(1e-5), init) {
    wte = this->register_parameter("wte", init.normal<T>({config.vocab_size, config.d_model}, nn::kInitStddev));
    wpe = this->register_parameter("wpe", init.normal<T>({config.block_size, config.d_model}, nn::kInitStddev));
    this->register_module("h", h);
    for (std::size_t i = 0; i < config.n_layer; ++i) h.emplace_back(config.d_model, config.n_head, config.n_layer, init);
    this->register_module("ln_f", ln_f);
  }

  // idx (B, T) token ids -> logits (B, T, V). Without a cache the tokens sit at positions
  // 0..T-1 (T <= block_size). With one (decoding, under NoGradGuard: nn/kv_cache.hpp) they
  // sit at the positions after the p0 = cache->length() it holds (p0 + T <= block_size),
  // attend to those as well, and their keys and values are added to it.
  Tensor<T> forward(Tape& tape, const Ids& idx, nn::KVCache<T>* cache = nullptr) const {
    const std::size_t p0 = decoder_start("GPT", idx, h.size(), config.block_size, cache), T_len = idx.shape()[1];
    Ids positions = Ids::from_shape({T_len});
    for (std::size_t t = 0; t < T_len; ++t) positions(t) = std::int64_t(p0 + t);

    const nn::ModuleScope scope(tape, *this);
    Tensor<T> x = ops::add(tape, ops::embedding(tape, wte, idx), ops::embedding(tape, wpe, positions));  // (B, T, d)
    x = run_blocks(tape, h, x, cache, checkpoint_blocks);                                                // (B, T, d)
    x = ln_f.forward(tape, x);                                                                           // (B, T, d)
    return ops::matmul(tape, x, wte, {.transpose_b = true});                                             // (B, T, V)
  }

  // A KV cache for this model: `batch` sequences, block_size positions each.
  nn::KVCache<T> make_kv_cache(std::size_t batch = 1) const { return decoder_kv_cache<T>(config, batch); }

  // Mean next-token cross-entropy; targets (B, T).
  Tensor<T> loss(Tape& tape, const Ids& idx, const Ids& targets) const {
    return ops::cross_entropy(tape, forward(tape, idx), targets);
  }

  GPTConfig config;
  // Run each block but the last through checkpoint() (core/checkpoint.hpp): the tape keeps
  // one (B, T, d) input per block instead of its activations, and backward runs each such
  // block's forward again; the gradients are bit-identical.
  bool checkpoint_blocks = false;
  Tensor<T> wte, wpe;
  nn::ModuleList<TransformerBlock<T>> h;
  nn::LayerNorm<T> ln_f;

 private:
  GPT(const GPTConfig& c, nn::Rng&& rng) : GPT(c, nn::ParameterInit(rng)) {}
};

// The parameters of GPT(config), by name (docs/contracts.md) and shape in named_parameters() order,
// from a shape-only construction: no weight is allocated or drawn.
inline nn::ParameterShapes expected_parameter_shapes(const GPTConfig& config) {
  return nn::parameter_shapes(GPT<float>(config, nn::ParameterInit::shapes_only()));
}

}  // namespace tapegrad::models
