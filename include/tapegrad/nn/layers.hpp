// tapegrad/nn/layers.hpp — the basic layers: Linear, LayerNorm, RMSNorm, Embedding.
#pragma once

#include "../ops/elementwise.hpp"
#include "../ops/embedding.hpp"
#include "../ops/gelu.hpp"
#include "../ops/layernorm.hpp"
#include "../ops/linear.hpp"
#include "../ops/matmul.hpp"
#include "../ops/rmsnorm.hpp"
#include "module.hpp"

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace tapegrad::nn {

using Rng = std::mt19937_64;

// GPT-2's initialisation: matrices and embeddings from N(0, 0.02^2) (docs/contracts.md, section 1).
inline constexpr double kInitStddev = 0.02;

// How a module makes its parameters, passed down its constructor to its submodules.
// From an Rng (the usual case; an Rng& converts to one): values drawn and filled in.
// ParameterInit::shapes_only(): tensors with a shape and no values (Tensor::shape_only),
// nothing allocated or drawn, for listing a model's parameters (parameter_shapes) or
// counting them before building it. Without an Rng, constant() fills values and normal()
// is a ConfigError (a LayerNorm needs no Rng).
class ParameterInit {
 public:
  ParameterInit() = default;
  ParameterInit(Rng& rng) : rng_(&rng) {}  // NOLINT(google-explicit-constructor): modules take an Rng as before
  static ParameterInit shapes_only() {
    ParameterInit init;
    init.shapes_only_ = true;
    return init;
  }
  bool is_shapes_only() const { return shapes_only_; }

  // A parameter value drawn from N(0, stddev^2).
  template <class T>
  Tensor<T> normal(const Shape& shape, double stddev) const {
    if (shapes_only_) return Tensor<T>::shape_only(shape);
    if (!rng_)
      throw ConfigError("ParameterInit: a normal initialisation of shape " + shape_str(shape) + " needs an Rng");
    std::normal_distribution<double> normal(0.0, stddev);
    Array<T> a = Array<T>::from_shape(shape);
    for (auto& v : a) v = T(normal(*rng_));
    return Tensor<T>(std::move(a));
  }
  // A parameter value filled with `value`.
  template <class T>
  Tensor<T> constant(const Shape& shape, T value) const {
    if (shapes_only_) return Tensor<T>::shape_only(shape);
    Array<T> a = Array<T>::from_shape(shape);
    std::fill(a.begin(), a.end(), value);
    return Tensor<T>(std::move(a));
  }

 private:
  Rng* rng_ = nullptr;
  bool shapes_only_ = false;
};

// The (name, shape) list of module.named_parameters(); of a module built with
// ParameterInit::shapes_only() it costs no parameter memory: the modules' own
// registration is the one place a layout is written.
using ParameterShapes = std::vector<std::pair<std::string, Shape>>;
template <class T>
ParameterShapes parameter_shapes(const Module<T>& module) {
  ParameterShapes shapes;
  for (const auto& [name, p] : module.named_parameters()) shapes.emplace_back(name, p.shape());
  return shapes;
}

// y = x W (+ b), then `activation`:  x (..., d_in), W (d_in, d_out), b (d_out), y (..., d_out).
// The batch folds into the GEMM's rows. With a bias, one op (ops::linear: the bias and the
// activation applied to the GEMM's output while it is in cache); without, ops::matmul (and
// ops::gelu).
template <class T>
Tensor<T> linear(Tape& tape, const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = {},
                 ops::Activation activation = ops::Activation::none) {
  if (bias.defined()) return ops::linear(tape, x, weight, bias, activation);
  Tensor<T> y = ops::matmul(tape, x, weight);
  return activation == ops::Activation::gelu ? ops::gelu(tape, y) : y;
}

template <class T>
class Linear : public Module<T> {
 public:
  Linear(std::size_t d_in, std::size_t d_out, bool with_bias, const ParameterInit& init, double stddev = kInitStddev) {
    weight = this->register_parameter("weight", init.normal<T>({d_in, d_out}, stddev));
    if (with_bias) bias = this->register_parameter("bias", init.constant<T>({d_out}, T(0)));
  }
  Tensor<T> forward(Tape& tape, const Tensor<T>& x) const {
    const ModuleScope scope(tape, *this);
    return linear(tape, x, weight, bias);
  }

  Tensor<T> weight, bias;  // bias undefined without bias
};

// LayerNorm over the last axis (biased variance, eps 1e-5): weight 1, bias 0 at init.
template <class T>
class LayerNorm : public Module<T> {
 public:
  explicit LayerNorm(std::size_t d, T epsilon = T(1e-5), const ParameterInit& init = {}) : eps(epsilon) {
    weight = this->register_parameter("weight", init.constant<T>({d}, T(1)));
    bias = this->register_parameter("bias", init.constant<T>({d}, T(0)));
  }
  Tensor<T> forward(Tape& tape, const Tensor<T>& x) const {
    const ModuleScope scope(tape, *this);
    return ops::layernorm(tape, x, weight, bias, eps);
  }

  Tensor<T> weight, bias;
  T eps;
};

// RMSNorm over the last axis (eps 1e-5): weight 1 at init, no bias.
template <class T>
class RMSNorm : public Module<T> {
 public:
  explicit RMSNorm(std::size_t d, T epsilon = T(1e-5), const ParameterInit& init = {}) : eps(epsilon) {
    weight = this->register_parameter("weight", init.constant<T>({d}, T(1)));
  }
  Tensor<T> forward(Tape& tape, const Tensor<T>& x) const {
    const ModuleScope scope(tape, *this);
    return ops::rmsnorm(tape, x, weight, eps);
  }

  Tensor<T> weight;
  T eps;
};

// A [num, d] table of vectors looked up by integer id.
template <class T>
class Embedding : public Module<T> {
 public:
  Embedding(std::size_t num, std::size_t d, const ParameterInit& init, double stddev = kInitStddev) {
    weight = this->register_parameter("weight", init.normal<T>({num, d}, stddev));
  }
  Tensor<T> forward(Tape& tape, const Ids& ids) const {
    const ModuleScope scope(tape, *this);
    return ops::embedding(tape, weight, ids);
  }

  Tensor<T> weight;
};

}  // namespace tapegrad::nn
