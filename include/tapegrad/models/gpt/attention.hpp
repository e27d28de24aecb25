// tapegrad/models/gpt/attention.hpp — multi-head causal self-attention.
// By default the heads' softmax(mask(Q K^T / sqrt(dh))) V is one fused op
// (ops/causal_attention.hpp: no T x T tensor is saved); with `fused = false` it is
// one tape op per step, and every backward is the composition of the ops'
// hand-written rules. Both paths are derived in docs/derivations.md (5.3-5.7, 5.10).
// Given a KV cache layer (nn/kv_cache.hpp: decoding, no gradient), the new rows' q, k, v
// come from the same projections and attend to the cached positions instead.
#pragma once

#include "../../ops/causal_attention.hpp"
#include "../../ops/causal_mask.hpp"
#include "../../ops/heads.hpp"
#include "../../ops/matmul.hpp"
#include "../../ops/scale.hpp"
#include "../../ops/softmax.hpp"
#include "../../nn/kv_cache.hpp"
#include "../../nn/layers.hpp"

#include <cmath>

namespace tapegrad::models {

// W_q, W_k, W_v, W_o in R^{d x d}, no bias; h heads of head_dim = d / h.
template <class T>
class CausalSelfAttention : public nn::Module<T> {
 public:
  // `proj_stddev` initialises the residual projection w_o (GPT-2: 0.02 / sqrt(2 L)).
  CausalSelfAttention(std::size_t d, std::size_t n_heads, nn::Rng& rng, double stddev = nn::kInitStddev,
                      double proj_stddev = nn::kInitStddev)
      : heads(n_heads) {
    if (heads == 0 || d % heads != 0)
      throw ConfigError("CausalSelfAttention: d_model " + std::to_string(d) + " is not divisible by " +
                        std::to_string(heads) + " heads");
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
    Tensor<T> q = split_heads(tape, matmul(tape, x, w_q), heads);  // (B, h, T, dh)
    Tensor<T> k = split_heads(tape, matmul(tape, x, w_k), heads);  // (B, h, T, dh)
    Tensor<T> v = split_heads(tape, matmul(tape, x, w_v), heads);  // (B, h, T, dh)
    Tensor<T> o = cache   ? cache->attend(tape, q, k, v)
                  : fused ? causal_attention(tape, q, k, v)
                          : attend_composed(tape, q, k, v);  // (B, h, T, dh)
    return matmul(tape, merge_heads(tape, o), w_o);          // (B, h, T, dh) -> (B, T, d) -> (B, T, d)
  }

  // The same softmax(mask(Q K^T / sqrt(dh))) V one op per step; saves P (B, h, T, T).
  static Tensor<T> attend_composed(Tape& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v) {
    using namespace ops;
    const std::size_t head_dim = q.shape().back();
    Tensor<T> s = matmul(tape, q, k, {.transpose_b = true});  // (B, h, T, T)  Q K^T
    s = scale(tape, s, T(1 / std::sqrt(double(head_dim))));   // (B, h, T, T)  / sqrt(dh)
    s = causal_mask(tape, s);                                 // (B, h, T, T)  -inf above the diagonal
    Tensor<T> p = softmax(tape, s);                           // (B, h, T, T)  rows sum to 1
    return matmul(tape, p, v);                                // (B, h, T, dh)
  }

  Tensor<T> w_q, w_k, w_v, w_o;
  std::size_t heads;
  bool fused = true;  // false: the step-by-step ops (attend_composed); same parameters, same values up to rounding
};

}  // namespace tapegrad::models
