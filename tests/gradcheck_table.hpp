// The OpInfo-style table: every op (and, later, every nn module) registers sample
// inputs here; one generic driver (tests/test_gradcheck.cpp, tests/gradcheck_report.cpp)
// checks them all. Adding an op means adding a row; an op with no row fails the suite.
//
// Sample inputs: odd, non-square sizes; a broadcast case where the op broadcasts;
// batch*heads > 1 and T = 1 where the op has them; values away from kinks.
#pragma once

#include <tapegrad/tapegrad.hpp>

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

// The common rows: inputs a, b (or x) drawn from N(0, 1), checked through `f`.
template <class T, class F>
GradRow<T> binary(std::string op, std::string sample, Shape a_shape, Shape b_shape, F f) {
  return {std::move(op), std::move(sample), [=](Rng& g) {
            auto a = randn<T>(a_shape, g), b = randn<T>(b_shape, g);
            return GradCase<T>{{{"a", a}, {"b", b}}, [=](Tape& t) { return f(t, a, b); }};
          }};
}
// Attention rows: q, k, v of one shape, each drawn from N(0, 1), all checked through `f`.
template <class T, class F>
GradRow<T> qkv(std::string op, std::string sample, Shape shape, F f) {
  return {std::move(op), std::move(sample), [=](Rng& g) {
            auto q = randn<T>(shape, g), k = randn<T>(shape, g), v = randn<T>(shape, g);
            return GradCase<T>{{{"q", q}, {"k", k}, {"v", v}}, [=](Tape& t) { return f(t, q, k, v); }};
          }};
}
template <class T, class F>
GradRow<T> unary(std::string op, std::string sample, Shape x_shape, F f) {
  return {std::move(op), std::move(sample), [=](Rng& g) {
            auto x = randn<T>(x_shape, g);
            return GradCase<T>{{{"x", x}}, [=](Tape& t) { return f(t, x); }};
          }};
}

// Module rows: move every parameter away from its init (LayerNorm weights 1 +- 0.3,
// matrices ~N(0, 0.3^2)) so no path is degenerate, and check them all with the inputs.
template <class T>
void perturb_parameters(const nn::Module<T>& module, Rng& rng, double stddev = 0.3) {
  std::normal_distribution<double> normal(0.0, stddev);
  for (auto& [name, p] : module.named_parameters())
    for (std::size_t i = 0; i < p.size(); ++i) Tensor<T>(p).data()[i] += T(normal(rng));
}

template <class T>
NamedTensors<T> with_parameters(NamedTensors<T> inputs, const nn::Module<T>& module) {
  for (auto& named : module.named_parameters()) inputs.push_back(named);
  return inputs;
}

// A CausalSelfAttention row: parameters perturbed, input x ~ N(0, 1), all checked;
// `fused = false` runs the step-by-step ops instead of causal_attention.
template <class T>
GradRow<T> attention_module(std::string sample, std::size_t d, std::size_t heads, Shape x_shape, bool fused = true) {
  return {"nn.CausalSelfAttention", std::move(sample), [=](Rng& g) {
            auto attn = std::make_shared<nn::CausalSelfAttention<T>>(d, heads, g);
            attn->fused = fused;
            perturb_parameters(*attn, g);
            auto x = randn<T>(x_shape, g);
            return GradCase<T>{with_parameters({{"x", x}}, *attn), [=](Tape& t) { return attn->forward(t, x); }};
          }};
}

template <class T>
std::vector<GradRow<T>> gradcheck_rows() {
  using namespace ops;
  using C = GradCase<T>;
  const auto fused_attention = [](Tape& t, auto q, auto k, auto v) { return causal_attention(t, q, k, v); };
  return {
      // ---- matmul
      binary<T>("matmul", "2-D (3,5) x (5,4)", {3, 5}, {5, 4}, [](Tape& t, auto a, auto b) { return matmul(t, a, b); }),
      binary<T>("matmul", "2-D transposes (5,3)^T x (4,5)^T", {5, 3}, {4, 5}, [](Tape& t, auto a, auto b) { return matmul(t, a, b, {.transpose_a = true, .transpose_b = true}); }),
      binary<T>("matmul", "batched (2,3,5) x shared weight (5,4)", {2, 3, 5}, {5, 4}, [](Tape& t, auto a, auto b) { return matmul(t, a, b); }),
      binary<T>("matmul", "batched^T (2,5,3)^T x shared weight (4,5)^T", {2, 5, 3}, {4, 5}, [](Tape& t, auto a, auto b) { return matmul(t, a, b, {.transpose_a = true, .transpose_b = true}); }),
      binary<T>("matmul", "batch*heads (2,3,4,5) x (2,3,6,5)^T, like Q K^T", {2, 3, 4, 5}, {2, 3, 6, 5}, [](Tape& t, auto a, auto b) { return matmul(t, a, b, {.transpose_b = true}); }),
      binary<T>("matmul", "batch*heads T=1 (2,3,1,1) x (2,3,1,5), like P V", {2, 3, 1, 1}, {2, 3, 1, 5}, [](Tape& t, auto a, auto b) { return matmul(t, a, b); }),
      // ---- scale
      unary<T>("scale", "(2,3,5) by 1/sqrt(5)", {2, 3, 5}, [](Tape& t, auto x) { return scale(t, x, T(1 / std::sqrt(5.0))); }),
      // ---- elementwise, reduce, reshape, permute, heads
      binary<T>("add", "same shape (3,5)", {3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return add(t, a, b); }),
      binary<T>("add", "bias (2,3,5) + (5)", {2, 3, 5}, {5}, [](Tape& t, auto a, auto b) { return add(t, a, b); }),
      binary<T>("add", "positional (3,5) + (2,3,5), a broadcasts", {3, 5}, {2, 3, 5}, [](Tape& t, auto a, auto b) { return add(t, a, b); }),
      binary<T>("add", "both broadcast (2,1,3) + (4,1)", {2, 1, 3}, {4, 1}, [](Tape& t, auto a, auto b) { return add(t, a, b); }),
      binary<T>("mul", "same shape (3,5)", {3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return mul(t, a, b); }),
      binary<T>("mul", "suffix (2,3,5) * (3,5)", {2, 3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return mul(t, a, b); }),
      binary<T>("mul", "(3,1) * (2,3,5), a broadcasts", {3, 1}, {2, 3, 5}, [](Tape& t, auto a, auto b) { return mul(t, a, b); }),
      binary<T>("mul", "both broadcast (2,1,3) * (4,1)", {2, 1, 3}, {4, 1}, [](Tape& t, auto a, auto b) { return mul(t, a, b); }),
      unary<T>("sum", "(2,3,5) -> ()", {2, 3, 5}, [](Tape& t, auto x) { return sum(t, x); }),
      unary<T>("mean", "(3,7) -> ()", {3, 7}, [](Tape& t, auto x) { return mean(t, x); }),
      unary<T>("reshape", "(2,3,5) -> (6,5)", {2, 3, 5}, [](Tape& t, auto x) { return reshape(t, x, {6, 5}); }),
      unary<T>("permute", "(2,3,4,5) axes (2,0,3,1)", {2, 3, 4, 5}, [](Tape& t, auto x) { return permute(t, x, {2, 0, 3, 1}); }),
      unary<T>("permute", "transpose (3,5) axes 0, 1", {3, 5}, [](Tape& t, auto x) { return transpose(t, x, 0, 1); }),
      unary<T>("split_heads", "(2,3,6) h=3 -> (2,3,3,2)", {2, 3, 6}, [](Tape& t, auto x) { return split_heads(t, x, 3); }),
      unary<T>("split_heads", "T=1 (2,1,10) h=2 -> (2,2,1,5)", {2, 1, 10}, [](Tape& t, auto x) { return split_heads(t, x, 2); }),
      unary<T>("merge_heads", "(2,3,5,2) -> (2,5,6)", {2, 3, 5, 2}, [](Tape& t, auto x) { return merge_heads(t, x); }),
      unary<T>("merge_heads", "T=1 (3,2,1,5) -> (3,1,10)", {3, 2, 1, 5}, [](Tape& t, auto x) { return merge_heads(t, x); }),
      // ---- causal_mask, softmax, layernorm, gelu, embedding, cross_entropy
      // ---- causal_mask (through softmax: a projection of -inf would not be finite)
      {"causal_mask", "softmax(mask(S)), batch*heads (2,3,5,5)", [](Rng& g) {
         auto s = randn<T>({2, 3, 5, 5}, g);
         return C{{{"s", s}}, [=](Tape& t) { return softmax(t, causal_mask(t, s)); }};
       }},
      {"causal_mask", "softmax(mask(S)), T=1 (3,1,1)", [](Rng& g) {
         auto s = randn<T>({3, 1, 1}, g);
         return C{{{"s", s}}, [=](Tape& t) { return softmax(t, causal_mask(t, s)); }};
       }},
      // ---- softmax
      {"softmax", "batch*heads (2,3,4,7), logits sd 2", [](Rng& g) {
         auto x = randn<T>({2, 3, 4, 7}, g, 2.0);
         return C{{{"x", x}}, [=](Tape& t) { return softmax(t, x); }};
       }},
      {"softmax", "(3,5) with -inf entries and an all--inf row", [](Rng& g) {
         auto x = randn<T>({3, 5}, g);
         const T ninf = -std::numeric_limits<T>::infinity();
         x.value()(0, 4) = x.value()(1, 0) = x.value()(1, 3) = ninf;
         for (std::size_t j = 0; j < 5; ++j) x.value()(2, j) = ninf;
         return C{{{"x", x}}, [=](Tape& t) { return softmax(t, x); }};
       }},
      unary<T>("softmax", "T=1 one query, batch*heads (2,3,1,5)", {2, 3, 1, 5}, [](Tape& t, auto x) { return softmax(t, x); }),
      // ---- log_softmax
      {"log_softmax", "(2,3,7), logits sd 2", [](Rng& g) {
         auto x = randn<T>({2, 3, 7}, g, 2.0);
         return C{{{"x", x}}, [=](Tape& t) { return log_softmax(t, x); }};
       }},
      unary<T>("log_softmax", "T=1 (3,1,5)", {3, 1, 5}, [](Tape& t, auto x) { return log_softmax(t, x); }),
      // ---- layernorm
      {"layernorm", "(2,3,7), weight ~U(0.5,1.5), bias ~N(0,1)", [](Rng& g) {
         auto x = randn<T>({2, 3, 7}, g, 2.0), w = uniform<T>({7}, g, 0.5, 1.5), b = randn<T>({7}, g);
         return C{{{"x", x}, {"weight", w}, {"bias", b}}, [=](Tape& t) { return layernorm(t, x, w, b); }};
       }},
      {"layernorm", "T=1 (3,1,5), offset rows", [](Rng& g) {
         auto x = uniform<T>({3, 1, 5}, g, 1.0, 4.0), w = uniform<T>({5}, g, -1.5, 1.5), b = randn<T>({5}, g);
         return C{{{"x", x}, {"weight", w}, {"bias", b}}, [=](Tape& t) { return layernorm(t, x, w, b); }};
       }},
      // ---- gelu
      {"gelu", "(3,5,7) ~N(0, 2^2)", [](Rng& g) {
         auto x = randn<T>({3, 5, 7}, g, 2.0);
         return C{{{"x", x}}, [=](Tape& t) { return gelu(t, x); }};
       }},
      // ---- embedding
      {"embedding", "table (7,5), ids (2,4) with repeats", [](Rng& g) {
         auto table = randn<T>({7, 5}, g);
         const Ids ids = {{1, 3, 1, 6}, {3, 3, 0, 1}};
         return C{{{"table", table}}, [=](Tape& t) { return embedding(t, table, ids); }};
       }},
      {"embedding", "table (5,3), ids (3,1) T=1", [](Rng& g) {
         auto table = randn<T>({5, 3}, g);
         const Ids ids = random_ids({3, 1}, 5, g);
         return C{{{"table", table}}, [=](Tape& t) { return embedding(t, table, ids); }};
       }},
      // ---- cross_entropy
      {"cross_entropy", "[B,T,V] = (2,3,7), logits sd 2", [](Rng& g) {
         auto logits = randn<T>({2, 3, 7}, g, 2.0);
         const Ids targets = random_ids({2, 3}, 7, g);
         return C{{{"logits", logits}}, [=](Tape& t) { return cross_entropy(t, logits, targets); }};
       }},
      {"cross_entropy", "T=1 (3,1,5)", [](Rng& g) {
         auto logits = randn<T>({3, 1, 5}, g);
         const Ids targets = random_ids({3, 1}, 5, g);
         return C{{{"logits", logits}}, [=](Tape& t) { return cross_entropy(t, logits, targets); }};
       }},
      // ---- causal_attention (fused softmax(mask(Q K^T / sqrt(dh))) V)
      qkv<T>("causal_attention", "batch*heads (2,3,5,4), dh < T", {2, 3, 5, 4}, fused_attention),
      qkv<T>("causal_attention", "T=1 (3,2,1,4) (one query attends to itself)", {3, 2, 1, 4}, fused_attention),
      qkv<T>("causal_attention", "dh > T (2,2,3,7)", {2, 2, 3, 7}, fused_attention),
      qkv<T>("causal_attention", "rank 2 (6,3), one matrix", {6, 3}, fused_attention),
      // ---- nn modules: every parameter and the input. Attention runs fused by default;
      // the composed rows check the step-by-step path through the separate ops' rules.
      attention_module<T>("B=2 T=5 d=6 h=3", 6, 3, {2, 5, 6}),
      attention_module<T>("T=1 (one token attends to itself)", 4, 2, {3, 1, 4}),
      attention_module<T>("composed (fused = false) B=2 T=5 d=6 h=3", 6, 3, {2, 5, 6}, false),
      attention_module<T>("composed (fused = false) T=1", 4, 2, {3, 1, 4}, false),
      {"nn.Linear", "with bias, (2,3,5) -> (2,3,4)", [](Rng& g) {
         auto linear = std::make_shared<nn::Linear<T>>(5, 4, /*with_bias=*/true, g);
         perturb_parameters(*linear, g);
         auto x = randn<T>({2, 3, 5}, g);
         return C{with_parameters({{"x", x}}, *linear), [=](Tape& t) { return linear->forward(t, x); }};
       }},
      {"nn.Linear", "no bias, (3,5) -> (3,1)", [](Rng& g) {
         auto linear = std::make_shared<nn::Linear<T>>(5, 1, /*with_bias=*/false, g);
         perturb_parameters(*linear, g);
         auto x = randn<T>({3, 5}, g);
         return C{with_parameters({{"x", x}}, *linear), [=](Tape& t) { return linear->forward(t, x); }};
       }},
      {"nn.Embedding", "(7,5) table, ids (2,3) with repeats", [](Rng& g) {
         auto embedding = std::make_shared<nn::Embedding<T>>(7, 5, g);
         perturb_parameters(*embedding, g);
         const Ids ids = {{0, 6, 0}, {2, 2, 5}};
         return C{with_parameters({}, *embedding), [=](Tape& t) { return embedding->forward(t, ids); }};
       }},
      {"nn.TransformerBlock", "B=2 T=4 d=6 h=2", [](Rng& g) {
         auto block = std::make_shared<nn::TransformerBlock<T>>(6, 2, 2, g);
         perturb_parameters(*block, g);
         auto x = randn<T>({2, 4, 6}, g);
         return C{with_parameters({{"x", x}}, *block), [=](Tape& t) { return block->forward(t, x); }};
       }},
      {"nn.GPT", "V=7 T_max=6 L=2 h=2 d=8, B=2 T=5, loss", [](Rng& g) {
         auto gpt = std::make_shared<nn::GPT<T>>(nn::GPTConfig{7, 6, 2, 2, 8}, 17);
         perturb_parameters(*gpt, g);
         const Ids x = random_ids({2, 5}, 7, g), y = random_ids({2, 5}, 7, g);
         return C{with_parameters({}, *gpt), [=](Tape& t) { return gpt->loss(t, x, y); }};
       }},
  };
}

}  // namespace tapegrad::testing
