// tapegrad/models/gpt/block.hpp — the position-wise feed-forward net and the pre-LN block.
#pragma once

#include "../../nn/layers.hpp"
#include "../../ops/elementwise.hpp"
#include "../../ops/gelu.hpp"
#include "../decoder.hpp"

namespace tapegrad::models {

// FFN(x) = GELU(x W_1 + b_1) W_2 + b_2:  W_1 (d, 4d), b_1 (4d), W_2 (4d, d), b_2 (d).
template <class T>
class FeedForward : public nn::Module<T> {
 public:
  FeedForward(std::size_t d, const nn::ParameterInit& init, double stddev = nn::kInitStddev,
              double proj_stddev = nn::kInitStddev) {
    w_1 = this->register_parameter("w_1", init.normal<T>({d, 4 * d}, stddev));
    b_1 = this->register_parameter("b_1", init.constant<T>({4 * d}, T(0)));
    w_2 = this->register_parameter("w_2", init.normal<T>({4 * d, d}, proj_stddev));
    b_2 = this->register_parameter("b_2", init.constant<T>({d}, T(0)));
  }
  // x (B, T, d) -> (B, T, d)
  Tensor<T> forward(Tape& tape, const Tensor<T>& x) const {
    const nn::ModuleScope scope(tape, *this);
    Tensor<T> hidden = nn::linear(tape, x, w_1, b_1, ops::Activation::gelu);  // (B, T, 4d)
    return nn::linear(tape, hidden, w_2, b_2);                                // (B, T, d)
  }

  Tensor<T> w_1, b_1, w_2, b_2;
};

// Pre-LN (decoder.hpp): x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)), LayerNorms, attention
// without rotation (the positions are the model's wpe), the GELU MLP.
template <class T>
class TransformerBlock : public PreNormBlock<T, nn::LayerNorm<T>, FeedForward<T>> {
 public:
  // `n_layer` scales the residual projections' init: N(0, 0.02 / sqrt(2 n_layer)).
  TransformerBlock(std::size_t d, std::size_t heads, std::size_t n_layer, const nn::ParameterInit& init)
      : PreNormBlock<T, nn::LayerNorm<T>, FeedForward<T>>({"ln_1", "ln_2"}, d, heads, n_layer, std::nullopt, init, d) {}

  nn::LayerNorm<T>& ln_1 = this->norm_1;  // the norms by their parameter names
  nn::LayerNorm<T>& ln_2 = this->norm_2;
};

}  // namespace tapegrad::models
