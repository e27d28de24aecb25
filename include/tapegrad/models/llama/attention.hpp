// tapegrad/models/llama/attention.hpp — multi-head causal self-attention with rotary q and k.
//   q = rope(split(x W_q), p0), k = rope(split(x W_k), p0), v = split(x W_v)    (B, h, T, dh)
//   o = softmax(mask(q k^T / sqrt(dh))) v;  y = merge(o) W_o                   (B, T, d)
// No biases, no position table: rope turns q and k by their positions p0 + t, so a score
// q_t . k_s depends on the positions only through t - s. Derivation: docs/llama.md.
//
// One forward for training and for cached decoding. Without a cache p0 = 0 and the heads
// run through ops::causal_attention. With a LayerKV cache (batch 1, under a NoGradGuard)
// the rows sit at positions p0 = cache.length() ..., their rotated keys and values are
// appended to it, and they attend to every cached position: a prompt (p0 = 0) as in
// training, one new row (T = 1) by the same ops one step at a time (the row sees all of
// the cache, so no mask); several rows after a cache are not supported (Llama::forward
// runs them one by one).
#pragma once

#include "../../nn/layers.hpp"
#include "../../ops/causal_attention.hpp"
#include "../../ops/concat.hpp"
#include "../../ops/heads.hpp"
#include "../../ops/matmul.hpp"
#include "../../ops/rope.hpp"
#include "../../ops/scale.hpp"
#include "../../ops/softmax.hpp"

#include <cmath>

namespace tapegrad::models {

// One layer's keys (rotated) and values of the positions run so far: (1, h, length, dh) each.
template <class T>
struct LayerKV {
  Tensor<T> keys, values;  // undefined while empty
  std::size_t length() const { return keys.defined() ? keys.shape()[2] : 0; }
};

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

  // x (B, T, d) -> (B, T, d); with a cache, B = 1 and (after a first call) T = 1.
  Tensor<T> forward(Tape& tape, const Tensor<T>& x, LayerKV<T>* cache = nullptr) const {
    using namespace ops;
    const nn::ModuleScope scope(tape, *this);
    const std::size_t p0 = cache ? cache->length() : 0;
    Tensor<T> q = rope(tape, split_heads(tape, matmul(tape, x, w_q), heads), p0, theta);  // (B, h, T, dh)
    Tensor<T> k = rope(tape, split_heads(tape, matmul(tape, x, w_k), heads), p0, theta);  // (B, h, T, dh)
    Tensor<T> v = split_heads(tape, matmul(tape, x, w_v), heads);                         // (B, h, T, dh)
    if (cache && p0 > 0) {
      if (x.shape()[1] != 1)
        throw ShapeError("RotaryAttention: after a cache of " + std::to_string(p0) +
                         " positions, rows go one at a time, got T = " + std::to_string(x.shape()[1]));
      k = concat(tape, {cache->keys, k}, 2);  // (1, h, p0 + 1, dh)
      v = concat(tape, {cache->values, v}, 2);
    }
    if (cache) *cache = {k, v};
    Tensor<T> o = q.shape()[2] == k.shape()[2] ? causal_attention(tape, q, k, v) : attend_all(tape, q, k, v);
    return matmul(tape, merge_heads(tape, o), w_o);  // (B, h, T, dh) -> (B, T, d) -> (B, T, d)
  }

  // One query row per head against every key: softmax(q k^T / sqrt(dh)) v, nothing masked.
  static Tensor<T> attend_all(Tape& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v) {
    using namespace ops;
    const T c = T(1 / std::sqrt(double(q.shape().back())));
    return matmul(tape, softmax(tape, scale(tape, matmul(tape, q, k, {.transpose_b = true}), c)), v);
  }

  Tensor<T> w_q, w_k, w_v, w_o;
  std::size_t heads;
  double theta;
};

}  // namespace tapegrad::models
