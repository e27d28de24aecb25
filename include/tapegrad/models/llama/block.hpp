// tapegrad/models/llama/block.hpp — the SwiGLU feed-forward net and the pre-norm Llama block.
#pragma once

#include "../../nn/layers.hpp"
#include "../../ops/elementwise.hpp"
#include "../../ops/matmul.hpp"
#include "../../ops/unary.hpp"
#include "../decoder.hpp"

namespace tapegrad::models {

// SwiGLU(x) = (silu(x W_gate) * (x W_up)) W_down:  W_gate, W_up (d, d_hidden), W_down (d_hidden, d).
template <class T>
class SwiGLU : public nn::Module<T> {
 public:
  SwiGLU(std::size_t d, std::size_t d_hidden, const nn::ParameterInit& init, double stddev = nn::kInitStddev,
         double proj_stddev = nn::kInitStddev) {
    w_gate = this->register_parameter("w_gate", init.normal<T>({d, d_hidden}, stddev));
    w_up = this->register_parameter("w_up", init.normal<T>({d, d_hidden}, stddev));
    w_down = this->register_parameter("w_down", init.normal<T>({d_hidden, d}, proj_stddev));
  }
  // x (B, T, d) -> (B, T, d)
  Tensor<T> forward(Tape& tape, const Tensor<T>& x) const {
    using namespace ops;
    const nn::ModuleScope scope(tape, *this);
    Tensor<T> gate = silu(tape, matmul(tape, x, w_gate));       // (B, T, d_hidden)
    Tensor<T> hidden = mul(tape, gate, matmul(tape, x, w_up));  // (B, T, d_hidden)
    return matmul(tape, hidden, w_down);                        // (B, T, d)
  }

  Tensor<T> w_gate, w_up, w_down;
};

// Pre-norm (decoder.hpp): x = x + attn(norm_1(x)); x = x + mlp(norm_2(x)), RMSNorms,
// rotary attention (RotaryAttention's base 10000), the SwiGLU MLP.
template <class T>
class LlamaBlock : public PreNormBlock<T, nn::RMSNorm<T>, SwiGLU<T>> {
 public:
  // `n_layer` scales the residual projections' init (w_o, w_down): N(0, 0.02 / sqrt(2 n_layer)).
  LlamaBlock(std::size_t d, std::size_t heads, std::size_t d_hidden, std::size_t n_layer, const nn::ParameterInit& init)
      : PreNormBlock<T, nn::RMSNorm<T>, SwiGLU<T>>({"norm_1", "norm_2"}, d, heads, n_layer, 10000.0, init, d,
                                                   d_hidden) {}
};

}  // namespace tapegrad::models
