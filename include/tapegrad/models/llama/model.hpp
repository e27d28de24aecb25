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

#include "../../core/checkpoint.hpp"
#include "../../ops/cross_entropy.hpp"
#include "../../ops/embedding.hpp"
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
  Llama(const LlamaConfig& c, std::uint64_t seed) : config(c), norm_f((c.validate(), c.d_model)) {
    nn::Rng rng(seed);
    wte =
        this->register_parameter("wte", nn::normal_init<T>({config.vocab_size, config.d_model}, nn::kInitStddev, rng));
    this->register_module("h", h);
    for (std::size_t i = 0; i < config.n_layer; ++i)
      h.emplace_back(config.d_model, config.n_head, config.d_hidden, config.n_layer, rng);
    this->register_module("norm_f", norm_f);
  }

  // idx (B, T) token ids -> logits (B, T, V). Without a cache the tokens sit at positions
  // 0..T-1 (T <= block_size). With one (decoding, under NoGradGuard: nn/kv_cache.hpp) they
  // sit at the positions after the p0 = cache->length() it holds (p0 + T <= block_size),
  // rope turns their q and k by those positions, and their keys and values join the cache.
  Tensor<T> forward(Tape& tape, const Ids& idx, nn::KVCache<T>* cache = nullptr) const {
    if (idx.dimension() != 2 || idx.shape()[1] == 0)
      throw ShapeError("Llama: token ids must have shape [B, T] with T >= 1, got " + shape_str(shape_of(idx)));
    if (cache && cache->layer_count() != h.size())
      throw ShapeError("Llama: the KV cache has " + std::to_string(cache->layer_count()) + " layers, the model " +
                       std::to_string(h.size()));
    const std::size_t T_len = idx.shape()[1], p0 = cache ? cache->length() : 0;
    if (p0 + T_len > config.block_size)
      throw ShapeError("Llama: sequence length " + std::to_string(T_len) +
                       (cache ? " after " + std::to_string(p0) + " cached positions" : std::string()) +
                       " exceeds block_size " + std::to_string(config.block_size));

    const nn::ModuleScope scope(tape, *this);
    Tensor<T> x = ops::embedding(tape, wte, idx);  // (B, T, d)
    for (std::size_t i = 0; i < h.size(); ++i)  // (B, T, d)
      x = checkpoint_blocks && !cache
              ? checkpoint(tape, [block = &h[i]](Tape& t, const Tensor<T>& in) { return block->forward(t, in, nullptr); }, x)
              : h[i].forward(tape, x, cache ? &cache->layer(i) : nullptr);
    x = norm_f.forward(tape, x);                              // (B, T, d)
    return ops::matmul(tape, x, wte, {.transpose_b = true});  // (B, T, V)
  }

  // A KV cache for this model: `batch` sequences, block_size positions each.
  nn::KVCache<T> make_kv_cache(std::size_t batch = 1) const {
    return nn::KVCache<T>({.layers = config.n_layer, .batch = batch, .kv_heads = config.n_head,
                           .capacity = config.block_size, .head_dim = config.d_model / config.n_head});
  }

  // Mean next-token cross-entropy; targets (B, T).
  Tensor<T> loss(Tape& tape, const Ids& idx, const Ids& targets) const {
    return ops::cross_entropy(tape, forward(tape, idx), targets);
  }

  LlamaConfig config;
  bool checkpoint_blocks = false;  // each block through checkpoint(), as GPT::checkpoint_blocks
  Tensor<T> wte;
  nn::ModuleList<LlamaBlock<T>> h;
  nn::RMSNorm<T> norm_f;
};

// The parameters of Llama(config), by name and shape in named_parameters() order, from a
// shape-only construction: no weight is allocated or drawn.
inline nn::ParameterShapes expected_parameter_shapes(const LlamaConfig& config) {
  return nn::parameter_shapes<Llama<float>>(config, 0);
}

}  // namespace tapegrad::models
