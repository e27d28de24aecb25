// tapegrad/models/llama/model.hpp — a Llama-style language model (docs/llama.md).
//
//   x      = wte[idx]                         (B, T, d)   no position table
//   x      = block_i(x), i = 0..L-1           (B, T, d)   pre-norm RMSNorm, rotary causal attention, SwiGLU
//   logits = norm_f(x) wte^T                  (B, T, V)   tied embeddings
//   loss   = mean -log softmax(logits)[target]
// No biases anywhere. Parameters (named_parameters() order): wte, then per block
// h.<i>.norm_1.weight, h.<i>.attn.{w_q, w_k, w_v, w_o}, h.<i>.norm_2.weight,
// h.<i>.mlp.{w_gate, w_up, w_down}, then norm_f.weight.
// The embeddings are tied (wte is the output projection too), as the GPT's are: for a
// character vocabulary the table is small either way, and tying keeps the two families
// apart by exactly the three changes (RMSNorm, rotary positions, SwiGLU).
#pragma once

#include "../../ops/cross_entropy.hpp"
#include "../../ops/embedding.hpp"
#include "../decoder.hpp"
#include "block.hpp"

#include <string>
#include <vector>

namespace tapegrad::models {

// SwiGLU's default width: 8/3 d (two matrices in, one out: as many weights as a 4d GELU
// MLP's two), rounded up to a multiple of 32. 128 -> 352.
inline std::size_t swiglu_hidden_size(std::size_t d_model) { return (8 * d_model / 3 + 31) / 32 * 32; }

struct LlamaConfig {
  std::size_t vocab_size = 0, block_size = 0, n_layer = 0, n_head = 0, d_model = 0, d_hidden = 0;

  // What is wrong with the config, or "" when nothing is.
  std::string problem() const {
    if (vocab_size == 0) return "vocab_size must be positive";
    if (block_size == 0) return "block_size must be positive";
    if (n_layer == 0) return "n_layer must be positive";
    if (n_head == 0) return "n_head must be positive";
    if (d_model == 0 || d_model % (2 * n_head) != 0)
      return "d_model " + std::to_string(d_model) +
             " must be a positive multiple of 2 n_head = " + std::to_string(2 * n_head) +
             " (rope turns pairs of a head's dims)";
    if (d_hidden == 0) return "d_hidden must be positive";
    return "";
  }
  void validate() const {
    if (const std::string p = problem(); !p.empty()) throw ConfigError("Llama config: " + p);
  }
};

template <class T>
class Llama : public nn::Module<T> {
 public:
  // Parameters drawn from an Rng seeded with `seed`.
  Llama(const LlamaConfig& c, std::uint64_t seed) : Llama(c, nn::Rng(seed)) {}
  // Parameters made by `init`: ParameterInit::shapes_only() lists them without allocating.
  Llama(const LlamaConfig& c, const nn::ParameterInit& init)
      : config(c), norm_f((c.validate(), c.d_model), T(1e-5), init) {
    wte =
        this->register_parameter("wte", init.normal<T>({config.vocab_size, config.d_model}, nn::kInitStddev));
    this->register_module("h", h);
    for (std::size_t i = 0; i < config.n_layer; ++i)
      h.emplace_back(config.d_model, config.n_head, config.d_hidden, config.n_layer, init);
    this->register_module("norm_f", norm_f);
  }

  // idx (B, T) token ids -> logits (B, T, V). Without a cache the tokens sit at positions
  // 0..T-1 (T <= block_size). With one (decoding, under NoGradGuard: nn/kv_cache.hpp) they
  // sit at the positions after the p0 = cache->length() it holds (p0 + T <= block_size),
  // rope turns their q and k by those positions, and their keys and values join the cache.
  Tensor<T> forward(Tape& tape, const Ids& idx, nn::KVCache<T>* cache = nullptr) const {
    decoder_start("Llama", idx, h.size(), config.block_size, cache);  // the blocks' rope reads p0 from the cache
    const nn::ModuleScope scope(tape, *this);
    Tensor<T> x = ops::embedding(tape, wte, idx);             // (B, T, d)
    x = run_blocks(tape, h, x, cache, checkpoint_blocks);     // (B, T, d)
    x = norm_f.forward(tape, x);                              // (B, T, d)
    return ops::matmul(tape, x, wte, {.transpose_b = true});  // (B, T, V)
  }

  // A KV cache for this model: `batch` sequences, block_size positions each.
  nn::KVCache<T> make_kv_cache(std::size_t batch = 1) const { return decoder_kv_cache<T>(config, batch); }

  // Mean next-token cross-entropy; targets (B, T).
  Tensor<T> loss(Tape& tape, const Ids& idx, const Ids& targets) const {
    return ops::cross_entropy(tape, forward(tape, idx), targets);
  }

  LlamaConfig config;
  bool checkpoint_blocks = false;  // each block through checkpoint(), as GPT::checkpoint_blocks
  Tensor<T> wte;
  nn::ModuleList<LlamaBlock<T>> h;
  nn::RMSNorm<T> norm_f;

 private:
  Llama(const LlamaConfig& c, nn::Rng&& rng) : Llama(c, nn::ParameterInit(rng)) {}
};

// The parameters of Llama(config), by name and shape in named_parameters() order, from a
// shape-only construction: no weight is allocated or drawn.
inline nn::ParameterShapes expected_parameter_shapes(const LlamaConfig& config) {
  return nn::parameter_shapes(Llama<float>(config, nn::ParameterInit::shapes_only()));
}

}  // namespace tapegrad::models
