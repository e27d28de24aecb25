// tapegrad/models/llama/block.hpp — the SwiGLU feed-forward net and the pre-norm Llama block.
#pragma once

#include "../../nn/layers.hpp"
#include "../../ops/elementwise.hpp"
#include "../../ops/unary.hpp"
#include "attention.hpp"

#include <cmath>

namespace tapegrad::models {

// SwiGLU(x) = (silu(x W_gate) * (x W_up)) W_down:  W_gate, W_up (d, d_hidden), W_down (d_hidden, d).
template <class T>
class SwiGLU : public nn::Module<T> {
 public:
  SwiGLU(std::size_t d, std::size_t d_hidden, nn::Rng& rng, double stddev = nn::kInitStddev,
         double proj_stddev = nn::kInitStddev) {
    w_gate = this->register_parameter("w_gate", nn::normal_init<T>({d, d_hidden}, stddev, rng));
    w_up = this->register_parameter("w_up", nn::normal_init<T>({d, d_hidden}, stddev, rng));
    w_down = this->register_parameter("w_down", nn::normal_init<T>({d_hidden, d}, proj_stddev, rng));
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

// Pre-norm: x = x + attn(norm_1(x)); x = x + mlp(norm_2(x)).
template <class T>
class LlamaBlock : public nn::Module<T> {
 public:
  // `n_layer` scales the residual projections' init (w_o, w_down): N(0, 0.02 / sqrt(2 n_layer)).
  LlamaBlock(std::size_t d, std::size_t heads, std::size_t d_hidden, std::size_t n_layer, nn::Rng& rng)
      : norm_1(d),
        attn(d, heads, rng, nn::kInitStddev, residual_stddev(n_layer)),
        norm_2(d),
        mlp(d, d_hidden, rng, nn::kInitStddev, residual_stddev(n_layer)) {
    this->register_module("norm_1", norm_1);
    this->register_module("attn", attn);
    this->register_module("norm_2", norm_2);
    this->register_module("mlp", mlp);
  }
  static double residual_stddev(std::size_t n_layer) { return nn::kInitStddev / std::sqrt(2.0 * double(n_layer)); }

  // x (B, T, d) -> (B, T, d); `cache` as RotaryAttention's.
  Tensor<T> forward(Tape& tape, const Tensor<T>& x, nn::LayerKVCache<T>* cache = nullptr) const {
    const nn::ModuleScope scope(tape, *this);
    Tensor<T> h = ops::add(tape, x, attn.forward(tape, norm_1.forward(tape, x), cache));
    return ops::add(tape, h, mlp.forward(tape, norm_2.forward(tape, h)));
  }

  nn::RMSNorm<T> norm_1;
  RotaryAttention<T> attn;
  nn::RMSNorm<T> norm_2;
  SwiGLU<T> mlp;
};

}  // namespace tapegrad::models
