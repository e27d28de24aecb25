// tapegrad/models/decoder.hpp — what the GPT and the Llama share: the pre-norm block and
// the decoder's skeleton around the blocks.
//
//   PreNormBlock<T, Norm, MLP>    x = x + attn(norm_1(x)); x = x + mlp(norm_2(x))
//                                 (the families name the norms: GPT ln_1/ln_2, Llama norm_1/norm_2)
//   decoder_start(model, ...)     checks idx (B, T) and the cache, returns p0, the first position
//   run_blocks(tape, h, x, ...)   the blocks in order, each with its cache layer or checkpointed
//   decoder_kv_cache(config, B)   a KV cache of the model's sizes
// The families' models (gpt/model.hpp, llama/model.hpp) add their embeddings and final norm
// around these; parameter names stay each family's (docs/contracts.md, docs/llama.md).
#pragma once

#include "../core/checkpoint.hpp"
#include "../nn/kv_cache.hpp"
#include "../nn/layers.hpp"
#include "../ops/elementwise.hpp"
#include "attention.hpp"

#include <cmath>
#include <string>

namespace tapegrad::models {

// Pre-norm: x = x + attn(norm_1(x)); x = x + mlp(norm_2(x)). `norm_names` are the names the
// two norms are registered under; attn and mlp are "attn" and "mlp".
template <class T, class Norm, class MLP>
class PreNormBlock : public nn::Module<T> {
 public:
  struct NormNames {
    const char *first, *second;
  };
  // `n_layer` scales the residual projections' init (w_o, the MLP's output): N(0, 0.02 / sqrt(2 n_layer)).
  static double residual_stddev(std::size_t n_layer) { return nn::kInitStddev / std::sqrt(2.0 * double(n_layer)); }

  // x (B, T, d) -> (B, T, d); `cache`: this block's keys and values (decoding), see attention.hpp.
  Tensor<T> forward(Tape& tape, const Tensor<T>& x, nn::LayerKVCache<T>* cache = nullptr) const {
    const nn::ModuleScope scope(tape, *this);
    Tensor<T> h = ops::add(tape, x, attn.forward(tape, norm_1.forward(tape, x), cache));
    return ops::add(tape, h, mlp.forward(tape, norm_2.forward(tape, h)));
  }

  Norm norm_1;
  CausalSelfAttention<T> attn;
  Norm norm_2;
  MLP mlp;

 protected:
  // `mlp_args`: the MLP's sizes before its init (d, and the Llama's d_hidden).
  template <class... MlpArgs>
  PreNormBlock(NormNames names, std::size_t d, std::size_t heads, std::size_t n_layer, std::optional<double> rope_theta,
               const nn::ParameterInit& init, MlpArgs... mlp_args)
      : norm_1(d, T(1e-5), init),
        attn(d, heads, init, nn::kInitStddev, residual_stddev(n_layer), rope_theta),
        norm_2(d, T(1e-5), init),
        mlp(mlp_args..., init, nn::kInitStddev, residual_stddev(n_layer)) {
    this->register_module(names.first, norm_1);
    this->register_module("attn", attn);
    this->register_module(names.second, norm_2);
    this->register_module("mlp", mlp);
  }
};

// Checks a decoder's input, idx (B, T) token ids, against its `cache` (may be null) and
// block_size, and returns p0: the position of the first token (cache->length(), else 0).
// ShapeError naming `model` ("GPT", "Llama") otherwise.
template <class T>
std::size_t decoder_start(const char* model, const Ids& idx, std::size_t n_layer, std::size_t block_size,
                          const nn::KVCache<T>* cache) {
  const std::string name(model);
  if (idx.dimension() != 2 || idx.shape()[1] == 0)
    throw ShapeError(name + ": token ids must have shape [B, T] with T >= 1, got " + shape_str(shape_of(idx)));
  if (cache && cache->layer_count() != n_layer)
    throw ShapeError(name + ": the KV cache has " + std::to_string(cache->layer_count()) + " layers, the model " +
                     std::to_string(n_layer));
  const std::size_t T_len = idx.shape()[1], p0 = cache ? cache->length() : 0;
  if (p0 + T_len > block_size)
    throw ShapeError(name + ": sequence length " + std::to_string(T_len) +
                     (cache ? " after " + std::to_string(p0) + " cached positions" : std::string()) +
                     " exceeds block_size " + std::to_string(block_size));
  return p0;
}

// x (B, T, d) through the blocks h[0..L-1]: with `cache`, each with its layer of it;
// else, with `checkpoint_blocks`, each through checkpoint() (core/checkpoint.hpp: the tape
// keeps one (B, T, d) input per block, backward runs the block again; gradients bit-identical).
template <class T, class Blocks>
Tensor<T> run_blocks(Tape& tape, const Blocks& h, Tensor<T> x, nn::KVCache<T>* cache, bool checkpoint_blocks) {
  // The last block is never checkpointed: its backward runs right after its forward, so a
  // replay would rebuild the same activations at the same peak for nothing.
  for (std::size_t i = 0; i < h.size(); ++i)  // (B, T, d)
    x = checkpoint_blocks && !cache && i + 1 < h.size()
            ? checkpoint(
                  tape, [block = &h[i]](Tape& t, const Tensor<T>& in) { return block->forward(t, in, nullptr); }, x)
            : h[i].forward(tape, x, cache ? &cache->layer(i) : nullptr);
  return x;
}

// A KV cache for a decoder of `config`'s sizes: `batch` sequences, block_size positions each.
template <class T, class Config>
nn::KVCache<T> decoder_kv_cache(const Config& config, std::size_t batch) {
  return nn::KVCache<T>({.layers = config.n_layer,
                         .batch = batch,
                         .kv_heads = config.n_head,
                         .capacity = config.block_size,
                         .head_dim = config.d_model / config.n_head});
}

}  // namespace tapegrad::models
