// tapegrad/models/attention.hpp — multi-head causal self-attention, the GPT's and the Llama's.
//
//   q = split(x W_q), k = split(x W_k), v = split(x W_v)     (B, h, T, dh)
//   rotary (the Llama): q = rope(q, p0), k = rope(k, p0)     turned by their positions p0 + t
//   o = softmax(mask(q k^T / sqrt(dh))) v;  y = merge(o) W_o  (B, T, d)
//
// W_q, W_k, W_v, W_o in R^{d x d}, no bias; h heads of head_dim = d / h (even, for rope).
// Without rope (the GPT) positions come from the model's wpe; with it, a score q_t . k_s
// depends on the positions only through t - s (docs/llama.md).
//
// By default the heads' softmax(mask(Q K^T / sqrt(dh))) V is one fused op
// (ops/causal_attention.hpp: no T x T tensor is saved); with `fused = false` it is one
// tape op per step, and every backward is the composition of the ops' hand-written
// rules. Both paths are derived in docs/derivations.md (5.3-5.7, 5.10).
//
// One forward for training and for cached decoding (nn/kv_cache.hpp: the design). Without
// a cache p0 = 0. With a cache layer (decoding, under NoGradGuard) x holds the rows of the
// positions p0 = cache->length() ...: rope turns q and k by those real positions, and
// cache->attend stores k (rotated: a stored key is never turned again) and v and attends
// each new query to every position up to its own.
#pragma once

#include "../nn/kv_cache.hpp"
#include "../nn/layers.hpp"
#include "../ops/causal_attention.hpp"
#include "../ops/causal_mask.hpp"
#include "../ops/heads.hpp"
#include "../ops/matmul.hpp"
#include "../ops/rope.hpp"
#include "../ops/scale.hpp"
#include "../ops/softmax.hpp"

#include <cmath>
#include <optional>

namespace tapegrad::models {

template <class T>
class CausalSelfAttention : public nn::Module<T> {
 public:
  // `proj_stddev` initialises the residual projection w_o (GPT-2: 0.02 / sqrt(2 L)).
  // `rope_theta`: rotary q and k with that base (the Llama's 10000); none: no rotation.
  CausalSelfAttention(std::size_t d, std::size_t n_heads, const nn::ParameterInit& init,
                      double stddev = nn::kInitStddev, double proj_stddev = nn::kInitStddev,
                      std::optional<double> rope_theta = std::nullopt)
      : heads(n_heads), theta(rope_theta) {
    if (theta && (heads == 0 || d % heads != 0 || (d / heads) % 2 != 0))
      throw ConfigError("RotaryAttention: d_model " + std::to_string(d) + " is not " + std::to_string(heads) +
                        " heads of an even head_dim");
    if (heads == 0 || d % heads != 0)
      throw ConfigError("CausalSelfAttention: d_model " + std::to_string(d) + " is not divisible by " +
                        std::to_string(heads) + " heads");
    w_q = this->register_parameter("w_q", init.normal<T>({d, d}, stddev));
    w_k = this->register_parameter("w_k", init.normal<T>({d, d}, stddev));
    w_v = this->register_parameter("w_v", init.normal<T>({d, d}, stddev));
    w_o = this->register_parameter("w_o", init.normal<T>({d, d}, proj_stddev));
  }

  // x (B, T, d) -> (B, T, d). With `cache`, x holds the rows of the positions after the
  // cached ones, which they attend to as well.
  Tensor<T> forward(Tape& tape, const Tensor<T>& x, nn::LayerKVCache<T>* cache = nullptr) const {
    using namespace ops;
    const nn::ModuleScope scope(tape, *this);
    const std::size_t p0 = cache ? cache->length() : 0;
    Tensor<T> q = rotate(tape, split_heads(tape, matmul(tape, x, w_q), heads), p0);  // (B, h, T, dh)
    Tensor<T> k = rotate(tape, split_heads(tape, matmul(tape, x, w_k), heads), p0);  // (B, h, T, dh)
    Tensor<T> v = split_heads(tape, matmul(tape, x, w_v), heads);                    // (B, h, T, dh)
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
  std::optional<double> theta;  // rope's base; none: no rotation
  bool fused = true;  // false: the step-by-step ops (attend_composed); same parameters, same values up to rounding

 private:
  // (B, h, T, dh) turned by rope at positions p0 + t, or as it is without rope.
  Tensor<T> rotate(Tape& tape, const Tensor<T>& x, std::size_t p0) const {
    return theta ? ops::rope(tape, x, p0, *theta) : x;
  }
};

// The Llama's attention: CausalSelfAttention with rotary q and k (base 10000 by default).
template <class T>
class RotaryAttention : public CausalSelfAttention<T> {
 public:
  RotaryAttention(std::size_t d, std::size_t n_heads, const nn::ParameterInit& init, double stddev = nn::kInitStddev,
                  double proj_stddev = nn::kInitStddev, double rope_theta = 10000.0)
      : CausalSelfAttention<T>(d, n_heads, init, stddev, proj_stddev, rope_theta) {}
};

}  // namespace tapegrad::models
