// The OpInfo-style table: every op (and, later, every nn module) registers sample
// inputs here; one generic driver (tests/test_gradcheck.cpp, examples/gradcheck.cpp)
// checks them all. Adding an op means adding a row; an op with no row fails the suite.
//
// Sample inputs: odd, non-square sizes; a broadcast case where the op broadcasts;
// batch*heads > 1 and T = 1 where the op has them; values away from kinks.
#pragma once

#include <tapegrad.hpp>

#include <functional>
#include <random>
#include <string>
#include <vector>

namespace tapegrad::testing {

using Rng = std::mt19937_64;

template <class T>
struct GradCase {
  NamedTensors<T> inputs;                    // checked: every one that requires grad
  std::function<Tensor<T>(Tape&)> forward;  // builds the output from the inputs
};

template <class T>
struct GradRow {
  std::string op;      // the registered op name (or "nn.Module" for a module row)
  std::string sample;  // what this sample exercises
  std::function<GradCase<T>(Rng&)> make;
};

// A leaf that requires grad, entries drawn from N(0, stddev^2).
template <class T>
Tensor<T> randn(const Shape& shape, Rng& rng, double stddev = 1.0) {
  std::normal_distribution<double> normal(0.0, stddev);
  Array<T> a = Array<T>::from_shape(shape);
  for (auto& v : a) v = T(normal(rng));
  return Tensor<T>(std::move(a), /*requires_grad=*/true);
}

// A leaf that requires grad, entries uniform in [lo, hi].
template <class T>
Tensor<T> uniform(const Shape& shape, Rng& rng, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  Array<T> a = Array<T>::from_shape(shape);
  for (auto& v : a) v = T(u(rng));
  return Tensor<T>(std::move(a), /*requires_grad=*/true);
}

// Integer ids in [0, vocab).
inline Ids random_ids(const Shape& shape, std::int64_t vocab, Rng& rng) {
  std::uniform_int_distribution<std::int64_t> u(0, vocab - 1);
  Ids ids = Ids::from_shape(shape);
  for (auto& v : ids) v = u(rng);
  return ids;
}

template <class T>
std::vector<GradRow<T>> gradcheck_rows() {
  using namespace ops;
  using C = GradCase<T>;
  return {
      // ---- matmul
      {"matmul", "2-D (3,5) x (5,4)", [](Rng& g) {
         auto a = randn<T>({3, 5}, g), b = randn<T>({5, 4}, g);
         return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return matmul(t, a, b); }};
       }},
      {"matmul", "2-D transposes (5,3)^T x (4,5)^T", [](Rng& g) {
         auto a = randn<T>({5, 3}, g), b = randn<T>({4, 5}, g);
         return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return matmul(t, a, b, {.transpose_a = true, .transpose_b = true}); }};
       }},
      {"matmul", "batched (2,3,5) x shared weight (5,4)", [](Rng& g) {
         auto a = randn<T>({2, 3, 5}, g), b = randn<T>({5, 4}, g);
         return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return matmul(t, a, b); }};
       }},
      {"matmul", "batched^T (2,5,3)^T x shared weight (4,5)^T", [](Rng& g) {
         auto a = randn<T>({2, 5, 3}, g), b = randn<T>({4, 5}, g);
         return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return matmul(t, a, b, {.transpose_a = true, .transpose_b = true}); }};
       }},
      {"matmul", "batch*heads (2,3,4,5) x (2,3,6,5)^T, like Q K^T", [](Rng& g) {
         auto a = randn<T>({2, 3, 4, 5}, g), b = randn<T>({2, 3, 6, 5}, g);
         return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return matmul(t, a, b, {.transpose_b = true}); }};
       }},
      {"matmul", "batch*heads T=1 (2,3,1,1) x (2,3,1,5), like P V", [](Rng& g) {
         auto a = randn<T>({2, 3, 1, 1}, g), b = randn<T>({2, 3, 1, 5}, g);
         return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return matmul(t, a, b); }};
       }},
      // ---- scale
      {"scale", "(2,3,5) by 1/sqrt(5)", [](Rng& g) {
         auto x = randn<T>({2, 3, 5}, g);
         return C{{{"x", x}}, [=](Tape& t) { return scale(t, x, T(1 / std::sqrt(5.0))); }};
       }},
      // ROWS: elementwise, reduce, reshape, permute, heads (helper A)
      // ROWS: causal_mask, softmax, layernorm, gelu, embedding, cross_entropy (helper B)
      // ROWS: nn modules
  };
}

}  // namespace tapegrad::testing
