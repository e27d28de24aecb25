// tapegrad/models/llama/attention.hpp — multi-head causal self-attention with rotary q and k.
//   q = rope(split(x W_q), p0), k = rope(split(x W_k), p0), v = split(x W_v)    (B, h, T, dh)
//   o = softmax(mask(q k^T / sqrt(dh))) v;  y = merge(o) W_o                   (B, T, d)
// No biases, no position table: rope turns q and k by their positions p0 + t, so a score
// q_t . k_s depends on the positions only through t - s. Derivation: docs/llama.md.
//
// One forward for training and for cached decoding (nn/kv_cache.hpp: the design). Without a
// cache p0 = 0 and the heads run through ops::causal_attention. With a cache layer
// (decoding, under NoGradGuard) the rows sit at the positions p0 = cache->length() ...:
// rope turns q and k by those real positions, and cache->attend stores the rotated k (a
// stored key is never turned again) and v and attends each new query to every position up
// to its own.
#pragma once

#include "../../nn/kv_cache.hpp"
#include "../../nn/layers.hpp"
#include "../../ops/causal_attention.hpp"
#include "../../ops/heads.hpp"
#include "../../ops/matmul.hpp"
#include "../../ops/rope.hpp"

#include <cmath>

namespace tapegrad::models {

// W_q, W_k, W_v, W_o in R^{d x d}, no bias; h heads of head_dim = d / h (even, for rope).
template <class T>
class RotaryAttention : public nn::Module<T> {
 public:
  // `proj_stddev` initialises the residual projection w_o (GPT-2's 0.02 / sqrt(2 L)).
  RotaryAttention(std::size_t d, std::size_t n_heads, nn::Rng& rng, double stddev = nn::kInitStddev,
                  double proj_stddev = nn::kInitStddev, double rope_theta = 10000.0)
      : heads(n_heads), theta(rope_theta) {
    if (heads == 0 || d % heads != 0 || (d / heads) % 2 != 0)
      throw ConfigError("RotaryAttention: d_model " + std::to_string(d) + " is not " + std::to_string(heads) +
                        " heads of an even head_dim");
    w_q = this->register_parameter("w_q", nn::normal_init<T>({d, d}, stddev, rng));
    w_k = this->register_parameter("w_k", nn::normal_init<T>({d, d}, stddev, rng));
    w_v = this->register_parameter("w_v", nn::normal_init<T>({d, d}, stddev, rng));
    w_o = this->register_parameter("w_o", nn::normal_init<T>({d, d}, proj_stddev, rng));
  }

  // x (B, T, d) -> (B, T, d). With `cache`, x holds the rows of the positions after the
  // cached ones, which they attend to as well.
  Tensor<T> forward(Tape& tape, const Tensor<T>& x, nn::LayerKVCache<T>* cache = nullptr) const {
    using namespace ops;
    const nn::ModuleScope scope(tape, *this);
    const std::size_t p0 = cache ? cache->length() : 0;
    Tensor<T> q = rope(tape, split_heads(tape, matmul(tape, x, w_q), heads), p0, theta);  // (B, h, T, dh)
    Tensor<T> k = rope(tape, split_heads(tape, matmul(tape, x, w_k), heads), p0, theta);  // (B, h, T, dh)
    Tensor<T> v = split_heads(tape, matmul(tape, x, w_v), heads);                         // (B, h, T, dh)
    Tensor<T> o = cache ? cache->attend(tape, q, k, v) : causal_attention(tape, q, k, v);  // (B, h, T, dh)
    return matmul(tape, merge_heads(tape, o), w_o);  // (B, h, T, dh) -> (B, T, d) -> (B, T, d)
  }

  Tensor<T> w_q, w_k, w_v, w_o;
  std::size_t heads;
  double theta;
};

}  // namespace tapegrad::models
