// tapegrad/models/gpt/block.hpp — the position-wise feed-forward net and the pre-LN block.
#pragma once

#include "../../ops/elementwise.hpp"
#include "../../ops/gelu.hpp"
#include "attention.hpp"
#include "../../nn/layers.hpp"

namespace tapegrad::models {

// FFN(x) = GELU(x W_1 + b_1) W_2 + b_2:  W_1 (d, 4d), b_1 (4d), W_2 (4d, d), b_2 (d).
template <class T>
class FeedForward : public nn::Module<T> {
 public:
  FeedForward(std::size_t d, nn::Rng& rng, double stddev = nn::kInitStddev, double proj_stddev = nn::kInitStddev) {
    w_1 = this->register_parameter("w_1", nn::normal_init<T>({d, 4 * d}, stddev, rng));
    b_1 = this->register_parameter("b_1", nn::constant_init<T>({4 * d}, T(0)));
    w_2 = this->register_parameter("w_2", nn::normal_init<T>({4 * d, d}, proj_stddev, rng));
    b_2 = this->register_parameter("b_2", nn::constant_init<T>({d}, T(0)));
  }
  // x (B, T, d) -> (B, T, d)
  Tensor<T> forward(Tape& tape, const Tensor<T>& x) const {
    const nn::ModuleScope scope(tape, *this);
    Tensor<T> hidden = ops::gelu(tape, nn::linear(tape, x, w_1, b_1));  // (B, T, 4d)
    return nn::linear(tape, hidden, w_2, b_2);                          // (B, T, d)
  }

  Tensor<T> w_1, b_1, w_2, b_2;
};

// Pre-LN: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)).
template <class T>
class TransformerBlock : public nn::Module<T> {
 public:
  // `n_layer` scales the residual projections' init: N(0, 0.02 / sqrt(2 n_layer)).
  TransformerBlock(std::size_t d, std::size_t heads, std::size_t n_layer, nn::Rng& rng)
      : ln_1(d), attn(d, heads, rng, nn::kInitStddev, residual_stddev(n_layer)), ln_2(d),
        mlp(d, rng, nn::kInitStddev, residual_stddev(n_layer)) {
    this->register_module("ln_1", ln_1);
    this->register_module("attn", attn);
    this->register_module("ln_2", ln_2);
    this->register_module("mlp", mlp);
  }
  static double residual_stddev(std::size_t n_layer) { return nn::kInitStddev / std::sqrt(2.0 * double(n_layer)); }

  // x (B, T, d) -> (B, T, d); `cache`: this block's keys and values (decoding), see attention.hpp.
  Tensor<T> forward(Tape& tape, const Tensor<T>& x, nn::LayerKVCache<T>* cache = nullptr) const {
    const nn::ModuleScope scope(tape, *this);
    Tensor<T> h = ops::add(tape, x, attn.forward(tape, ln_1.forward(tape, x), cache));
    return ops::add(tape, h, mlp.forward(tape, ln_2.forward(tape, h)));
  }

  nn::LayerNorm<T> ln_1;
  CausalSelfAttention<T> attn;
  nn::LayerNorm<T> ln_2;
  FeedForward<T> mlp;
};

}  // namespace tapegrad::models
