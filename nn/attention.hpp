// tapegrad/nn/attention.hpp — multi-head causal self-attention, one tape op per step.
// Every backward is the composition of the ops' hand-written rules; the derivation
// of each step is in docs/derivations.md.
#pragma once

#include "../ops/causal_mask.hpp"
#include "../ops/heads.hpp"
#include "../ops/matmul.hpp"
#include "../ops/scale.hpp"
#include "../ops/softmax.hpp"
#include "layers.hpp"

#include <cmath>

namespace tapegrad::nn {

// W_q, W_k, W_v, W_o in R^{d x d}, no bias; h heads of head_dim = d / h.
template <class T>
class CausalSelfAttention : public Module<T> {
 public:
  // `proj_stddev` initialises the residual projection w_o (GPT-2: 0.02 / sqrt(2 L)).
  CausalSelfAttention(std::size_t d, std::size_t heads, Rng& rng, double stddev = 0.02, double proj_stddev = 0.02)
      : heads(heads) {
    if (heads == 0 || d % heads != 0)
      throw std::invalid_argument("CausalSelfAttention: d_model " + std::to_string(d) + " is not divisible by " +
                                  std::to_string(heads) + " heads");
    w_q = this->register_parameter("w_q", normal_init<T>({d, d}, stddev, rng));
    w_k = this->register_parameter("w_k", normal_init<T>({d, d}, stddev, rng));
    w_v = this->register_parameter("w_v", normal_init<T>({d, d}, stddev, rng));
    w_o = this->register_parameter("w_o", normal_init<T>({d, d}, proj_stddev, rng));
  }

  // x (B, T, d) -> (B, T, d)
  Tensor<T> forward(Tape& tape, const Tensor<T>& x) const {
    using namespace ops;
    const std::size_t head_dim = x.shape().back() / heads;
    Tensor<T> q = split_heads(tape, matmul(tape, x, w_q), heads);  // (B, h, T, dh)
    Tensor<T> k = split_heads(tape, matmul(tape, x, w_k), heads);  // (B, h, T, dh)
    Tensor<T> v = split_heads(tape, matmul(tape, x, w_v), heads);  // (B, h, T, dh)
    Tensor<T> s = matmul(tape, q, k, {.transpose_b = true});       // (B, h, T, T)  Q K^T
    s = scale(tape, s, T(1 / std::sqrt(double(head_dim))));        // (B, h, T, T)  / sqrt(dh)
    s = causal_mask(tape, s);                                      // (B, h, T, T)  -inf above the diagonal
    Tensor<T> p = softmax(tape, s);                                // (B, h, T, T)  rows sum to 1
    Tensor<T> o = merge_heads(tape, matmul(tape, p, v));           // (B, h, T, dh) -> (B, T, d)
    return matmul(tape, o, w_o);                                   // (B, T, d)
  }

  Tensor<T> w_q, w_k, w_v, w_o;
  std::size_t heads;
};

}  // namespace tapegrad::nn
