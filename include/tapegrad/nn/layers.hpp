// tapegrad/nn/layers.hpp — the basic layers: Linear, LayerNorm, Embedding.
#pragma once

#include "../ops/elementwise.hpp"
#include "../ops/embedding.hpp"
#include "../ops/layernorm.hpp"
#include "../ops/matmul.hpp"
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

// While a ShapesOnly scope lives, the modules constructed on its thread get parameters
// that have a shape and no values: nothing is allocated or drawn (parameter_shapes).
class ShapesOnly {
 public:
  ShapesOnly() : previous_(active()) { active() = true; }
  ~ShapesOnly() { active() = previous_; }
  ShapesOnly(const ShapesOnly&) = delete;
  ShapesOnly& operator=(const ShapesOnly&) = delete;
  static bool& active() {
    thread_local bool on = false;
    return on;
  }

 private:
  bool previous_;
};

// A parameter value drawn from N(0, stddev^2).
template <class T>
Tensor<T> normal_init(const Shape& shape, double stddev, Rng& rng) {
  if (ShapesOnly::active()) return Tensor<T>::shape_only(shape);
  std::normal_distribution<double> normal(0.0, stddev);
  Array<T> a = Array<T>::from_shape(shape);
  for (auto& v : a) v = T(normal(rng));
  return Tensor<T>(std::move(a));
}

template <class T>
Tensor<T> constant_init(const Shape& shape, T value) {
  if (ShapesOnly::active()) return Tensor<T>::shape_only(shape);
  Array<T> a = Array<T>::from_shape(shape);
  std::fill(a.begin(), a.end(), value);
  return Tensor<T>(std::move(a));
}

// The (name, shape) list of M(args...).named_parameters(), from a shape-only
// construction: the modules' own registration is the one place a layout is written.
using ParameterShapes = std::vector<std::pair<std::string, Shape>>;
template <class M, class... Args>
ParameterShapes parameter_shapes(Args&&... args) {
  ShapesOnly scope;
  const M module(std::forward<Args>(args)...);
  ParameterShapes shapes;
  for (const auto& [name, p] : module.named_parameters()) shapes.emplace_back(name, p.shape());
  return shapes;
}

// y = x W (+ b):  x (..., d_in), W (d_in, d_out), b (d_out), y (..., d_out).
// The batch folds into the GEMM's rows (ops::matmul with a shared weight).
template <class T>
Tensor<T> linear(Tape& tape, const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = {}) {
  Tensor<T> y = ops::matmul(tape, x, weight);
  return bias.defined() ? ops::add(tape, y, bias) : y;
}

template <class T>
class Linear : public Module<T> {
 public:
  Linear(std::size_t d_in, std::size_t d_out, bool with_bias, Rng& rng, double stddev = kInitStddev) {
    weight = this->register_parameter("weight", normal_init<T>({d_in, d_out}, stddev, rng));
    if (with_bias) bias = this->register_parameter("bias", constant_init<T>({d_out}, T(0)));
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
  explicit LayerNorm(std::size_t d, T epsilon = T(1e-5)) : eps(epsilon) {
    weight = this->register_parameter("weight", constant_init<T>({d}, T(1)));
    bias = this->register_parameter("bias", constant_init<T>({d}, T(0)));
  }
  Tensor<T> forward(Tape& tape, const Tensor<T>& x) const {
    const ModuleScope scope(tape, *this);
    return ops::layernorm(tape, x, weight, bias, eps);
  }

  Tensor<T> weight, bias;
  T eps;
};

// A [num, d] table of vectors looked up by integer id.
template <class T>
class Embedding : public Module<T> {
 public:
  Embedding(std::size_t num, std::size_t d, Rng& rng, double stddev = kInitStddev) {
    weight = this->register_parameter("weight", normal_init<T>({num, d}, stddev, rng));
  }
  Tensor<T> forward(Tape& tape, const Ids& ids) const {
    const ModuleScope scope(tape, *this);
    return ops::embedding(tape, weight, ids);
  }

  Tensor<T> weight;
};

}  // namespace tapegrad::nn
