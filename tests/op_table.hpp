// The op table (in the style of PyTorch's OpInfo): the whole contract of every op,
// and the gradient contract of the nn modules, in one place. A row is one op:
//
//   samples   inputs that exercise it (odd, non-square sizes; broadcasting where the
//             op broadcasts; batch*heads > 1 and T = 1 where it has them; values away
//             from kinks), each with a plain-loop double reference of the forward
//             (op_reference.hpp);
//   errors    inputs the op must refuse, each with the message it must give (a
//             ShapeError naming the op), or `accepts` saying why no input is wrong.
//
// One driver (tests/test_op_table.cpp, and the report tests/gradcheck_report.cpp)
// checks every sample's forward against its reference, its backward against central
// differences, and every error input. Adding an op means adding one row here; a
// registered op (OpName) without a complete row fails the suite.
#pragma once

#include "op_reference.hpp"

#include <tapegrad/tapegrad.hpp>

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace tapegrad::testing {

using Rng = std::mt19937_64;

template <class T>
struct Case {
  NamedTensors<T> inputs;                   // checked: every one that requires grad
  std::function<Tensor<T>(Tape&)> forward;  // builds the output from the inputs
  std::function<Ref()> reference;           // the output in plain loops; empty for composite modules
};

template <class T>
struct Sample {
  std::string name;  // what this sample exercises
  std::function<Case<T>(Rng&)> make;
};

// An input the op must refuse: `call` must throw a ShapeError whose what() contains `message`.
struct ErrorInput {
  std::string name;
  std::function<void(Tape&)> call;
  std::string message;
};

template <class T>
struct OpInfo {
  std::string op;  // the registered op name, or "nn.<Module>" for a module row
  std::vector<Sample<T>> samples;
  std::vector<ErrorInput> errors;
  std::string accepts = {};  // when `errors` is empty: why every input is valid
};

// ---- inputs

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

inline Tensor<double> zeros(const Shape& shape) { return Tensor<double>::zeros(shape, true); }

// The common samples: inputs drawn from N(0, 1), run through `f`, referenced by `ref`
// on the inputs' values.
template <class T, class F, class R>
Sample<T> unary(std::string name, Shape x_shape, F f, R ref) {
  return {std::move(name), [=](Rng& g) {
            auto x = randn<T>(x_shape, g);
            return Case<T>{{{"x", x}}, [=](Tape& t) { return f(t, x); }, [=] { return ref(ref_of(x)); }};
          }};
}
template <class T, class F, class R>
Sample<T> binary(std::string name, Shape a_shape, Shape b_shape, F f, R ref) {
  return {std::move(name), [=](Rng& g) {
            auto a = randn<T>(a_shape, g), b = randn<T>(b_shape, g);
            return Case<T>{
                {{"a", a}, {"b", b}}, [=](Tape& t) { return f(t, a, b); }, [=] { return ref(ref_of(a), ref_of(b)); }};
          }};
}
template <class T, class F, class R>
Sample<T> qkv(std::string name, Shape shape, F f, R ref) {
  return {std::move(name), [=](Rng& g) {
            auto q = randn<T>(shape, g), k = randn<T>(shape, g), v = randn<T>(shape, g);
            return Case<T>{{{"q", q}, {"k", k}, {"v", v}},
                           [=](Tape& t) { return f(t, q, k, v); },
                           [=] { return ref(ref_of(q), ref_of(k), ref_of(v)); }};
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

// A CausalSelfAttention sample: parameters perturbed, input x ~ N(0, 1), all checked;
// `fused = false` runs the step-by-step ops instead of causal_attention.
template <class T>
Sample<T> attention_module(std::string name, std::size_t d, std::size_t heads, Shape x_shape, bool fused = true) {
  return {std::move(name), [=](Rng& g) {
            auto attn = std::make_shared<models::CausalSelfAttention<T>>(d, heads, g);
            attn->fused = fused;
            perturb_parameters(*attn, g);
            auto x = randn<T>(x_shape, g);
            return Case<T>{with_parameters({{"x", x}}, *attn), [=](Tape& t) { return attn->forward(t, x); }, {}};
          }};
}

template <class T>
Sample<T> linear_module(std::string name, std::size_t d_in, std::size_t d_out, bool with_bias, Shape x_shape) {
  return {std::move(name), [=](Rng& g) {
            auto linear = std::make_shared<nn::Linear<T>>(d_in, d_out, with_bias, g);
            perturb_parameters(*linear, g);
            auto x = randn<T>(x_shape, g);
            return Case<T>{with_parameters({{"x", x}}, *linear), [=](Tape& t) { return linear->forward(t, x); },
                           [=] {
      const Ref y = ref_matmul(ref_of(x), ref_of(linear->weight), false, false);
      if (!with_bias) return y;
      return ref_broadcast(y, ref_of(linear->bias), [](double a, double b) { return a + b; });
                           }};
          }};
}

// An ops::linear sample: x ~ N(0, 1) of `x_shape`, W ~ N(0, 1) (K, n), b ~ N(0, 1) (n); the
// reference is the GEMM, the bias and (with GELU) the tanh GELU in double.
template <class T>
Sample<T> linear_op(std::string name, Shape x_shape, std::size_t n, ops::Activation activation) {
  return {std::move(name), [=](Rng& g) {
            auto x = randn<T>(x_shape, g), w = randn<T>({x_shape.back(), n}, g), b = randn<T>({n}, g);
            return Case<T>{{{"x", x}, {"weight", w}, {"bias", b}},
                           [=](Tape& t) { return ops::linear(t, x, w, b, activation); },
                           [=] {
      const Ref z = ref_broadcast(ref_matmul(ref_of(x), ref_of(w), false, false), ref_of(b),
                                  [](double u, double v) { return u + v; });
      return activation == ops::Activation::gelu ? ref_unary(z, ref_gelu) : z;
                           }};
          }};
}

// ---- the table

template <class T>
std::vector<OpInfo<T>> op_table() {
  using namespace ops;
  using C = Case<T>;
  const auto plus = [](double a, double b) { return a + b; };
  const auto times = [](double a, double b) { return a * b; };
  const auto minus = [](double a, double b) { return a - b; };
  const auto larger = [](double a, double b) { return std::max(a, b); };
  const auto logistic = [](double v) { return 1 / (1 + std::exp(-v)); };
  // a / b with b = +-U(0.5, 2), away from the pole.
  const auto divide = [](std::string name, Shape a_shape, Shape b_shape) {
    return Sample<T>{std::move(name),
                     [=](Rng& g) {
      auto a = randn<T>(a_shape, g), b = uniform<T>(b_shape, g, 0.5, 2.0);
      for (std::size_t i = 0; i < b.size(); i += 2) b.data()[i] = -b.data()[i];
      return Case<T>{{{"a", a}, {"b", b}},
                     [=](Tape& t) { return div(t, a, b); },
                     [=] { return ref_broadcast(ref_of(a), ref_of(b), [](double u, double v) { return u / v; }); }};
                     }};
  };
  const auto mm = [](bool ta, bool tb) {
    return [=](Tape& t, auto a, auto b) { return matmul(t, a, b, {.transpose_a = ta, .transpose_b = tb}); };
  };
  const auto mm_ref = [](bool ta, bool tb) {
    return [=](const Ref& a, const Ref& b) { return ref_matmul(a, b, ta, tb); };
  };
  const auto fused_attention = [](Tape& t, auto q, auto k, auto v) { return causal_attention(t, q, k, v); };
  const auto softmax_ref = [](const Ref& x) { return ref_softmax(x, false); };
  const auto log_softmax_ref = [](const Ref& x) { return ref_softmax(x, true); };

  return {
      {"matmul",
       {binary<T>("2-D (3,5) x (5,4)", {3, 5}, {5, 4}, mm(false, false), mm_ref(false, false)),
        binary<T>("2-D transposes (5,3)^T x (4,5)^T", {5, 3}, {4, 5}, mm(true, true), mm_ref(true, true)),
        binary<T>("batched (2,3,5) x shared weight (5,4)", {2, 3, 5}, {5, 4}, mm(false, false), mm_ref(false, false)),
        binary<T>("batched^T (2,5,3)^T x shared weight (4,5)^T", {2, 5, 3}, {4, 5}, mm(true, true), mm_ref(true, true)),
        binary<T>("batch*heads (2,3,4,5) x (2,3,6,5)^T, like Q K^T", {2, 3, 4, 5}, {2, 3, 6, 5}, mm(false, true),
                  mm_ref(false, true)),
        binary<T>("batch*heads T=1 (2,3,1,1) x (2,3,1,5), like P V", {2, 3, 1, 1}, {2, 3, 1, 5}, mm(false, false),
                  mm_ref(false, false))},
       {{"inner dimensions differ", [](Tape& t) { matmul(t, zeros({2, 3}), zeros({4, 5})); },
         "matmul: inner dimensions differ: a [2, 3], b [4, 5]"},
        {"batch dimensions differ", [](Tape& t) { matmul(t, zeros({2, 3, 4}), zeros({3, 4, 5})); },
         "matmul: batch dimensions differ: a [2, 3, 4], b [3, 4, 5]"},
        {"rank 1", [](Tape& t) { matmul(t, zeros({3}), zeros({3, 2})); }, "matmul: inputs need rank >= 2"},
        {"empty dimension", [](Tape& t) { matmul(t, zeros({0, 3}), zeros({3, 2})); }, "matmul: empty dimension"}}},

      {"linear",
       {linear_op<T>("(2,3,5) x (5,4) + (4)", {2, 3, 5}, 4, Activation::none),
        linear_op<T>("(2,3,5) x (5,6) + (6), GELU", {2, 3, 5}, 6, Activation::gelu),
        linear_op<T>("one row (1,7) x (7,3) + (3), GELU", {1, 7}, 3, Activation::gelu)},
       {{"bias of another width", [](Tape& t) { linear(t, zeros({2, 3}), zeros({3, 4}), zeros({5})); },
         "linear: needs x (..., K), weight (K, N) and bias (N) with K, N > 0, got x [2, 3], weight [3, 4], bias [5]"},
        {"inner dimensions differ", [](Tape& t) { linear(t, zeros({2, 3}), zeros({4, 5}), zeros({5})); },
         "linear: needs x (..., K), weight (K, N) and bias (N) with K, N > 0, got x [2, 3], weight [4, 5]"},
        {"weight of rank 3", [](Tape& t) { linear(t, zeros({2, 3}), zeros({1, 3, 4}), zeros({4})); },
         "linear: needs x (..., K), weight (K, N) and bias (N) with K, N > 0, got x [2, 3], weight [1, 3, 4]"}}},

      {"scale",
       {unary<T>("(2,3,5) by 1/sqrt(5)", {2, 3, 5}, [](Tape& t, auto x) { return scale(t, x, T(1 / std::sqrt(5.0))); },
                 [](const Ref& x) { return ref_unary(x, [](double v) { return v * double(T(1 / std::sqrt(5.0))); }); })},
       {},
       "any shape, any factor"},

      {"add",
       {binary<T>("same shape (3,5)", {3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return add(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, plus); }),
        binary<T>("bias (2,3,5) + (5)", {2, 3, 5}, {5}, [](Tape& t, auto a, auto b) { return add(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, plus); }),
        binary<T>("positional (3,5) + (2,3,5), a broadcasts", {3, 5}, {2, 3, 5},
                  [](Tape& t, auto a, auto b) { return add(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, plus); }),
        binary<T>("both broadcast (2,1,3) + (4,1)", {2, 1, 3}, {4, 1}, [](Tape& t, auto a, auto b) { return add(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, plus); })},
       {{"shapes that do not broadcast", [](Tape& t) { add(t, zeros({2, 3}), zeros({4})); },
         "add: cannot broadcast a [2, 3] with b [4]"}}},

      {"mul",
       {binary<T>("same shape (3,5)", {3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return mul(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, times); }),
        binary<T>("suffix (2,3,5) * (3,5)", {2, 3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return mul(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, times); }),
        binary<T>("(3,1) * (2,3,5), a broadcasts", {3, 1}, {2, 3, 5}, [](Tape& t, auto a, auto b) { return mul(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, times); }),
        binary<T>("scalar (3,5) * ()", {3, 5}, {}, [](Tape& t, auto a, auto b) { return mul(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, times); }),
        binary<T>("both broadcast (2,1,3) * (4,1)", {2, 1, 3}, {4, 1}, [](Tape& t, auto a, auto b) { return mul(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, times); })},
       {{"shapes that do not broadcast", [](Tape& t) { mul(t, zeros({2, 3}), zeros({3, 3})); },
         "mul: cannot broadcast a [2, 3] with b [3, 3]"}}},

      {"sum",
       {unary<T>("(2,3,5) -> ()", {2, 3, 5}, [](Tape& t, auto x) { return sum(t, x); }, ref_sum)},
       {},
       "any shape (an empty tensor sums to 0)"},

      {"mean",
       {unary<T>("(3,7) -> ()", {3, 7}, [](Tape& t, auto x) { return mean(t, x); }, ref_mean)},
       {{"empty tensor", [](Tape& t) { mean(t, zeros({0, 3})); }, "mean: mean of an empty tensor of shape [0, 3]"}}},

      {"reshape",
       {unary<T>("(2,3,5) -> (6,5)", {2, 3, 5}, [](Tape& t, auto x) { return reshape(t, x, {6, 5}); },
                 [](const Ref& x) { return ref_reshape(x, {6, 5}); })},
       {{"element counts differ", [](Tape& t) { reshape(t, zeros({2, 3}), {4, 2}); },
         "reshape: cannot reshape [2, 3] (6"}}},

      {"permute",
       {unary<T>("(2,3,4,5) axes (2,0,3,1)", {2, 3, 4, 5}, [](Tape& t, auto x) { return permute(t, x, {2, 0, 3, 1}); },
                 [](const Ref& x) { return ref_permute(x, {2, 0, 3, 1}); }),
        unary<T>("rank 0 () axes ()", {}, [](Tape& t, auto x) { return permute(t, x, {}); },
                 [](const Ref& x) { return ref_permute(x, {}); }),
        unary<T>("transpose (3,5) axes 0, 1", {3, 5}, [](Tape& t, auto x) { return transpose(t, x, 0, 1); },
                 [](const Ref& x) { return ref_permute(x, {1, 0}); })},
       {{"repeated axis", [](Tape& t) { permute(t, zeros({2, 3, 4}), {0, 1, 1}); },
         "permute: axes [0, 1, 1] are not a permutation of the axes of x [2, 3, 4]"},
        {"too few axes", [](Tape& t) { permute(t, zeros({2, 3, 4}), {0, 1}); }, "permute: axes [0, 1]"},
        {"axis out of range", [](Tape& t) { permute(t, zeros({2, 3, 4}), {0, 1, 3}); }, "permute: axes [0, 1, 3]"},
        {"transpose axis out of range", [](Tape& t) { transpose(t, zeros({2, 3, 4}), 0, 3); },
         "permute: transpose axes 0, 3"}}},

      {"split_heads",
       {unary<T>("(2,3,6) h=3 -> (2,3,3,2)", {2, 3, 6}, [](Tape& t, auto x) { return split_heads(t, x, 3); },
                 [](const Ref& x) { return ref_split_heads(x, 3); }),
        unary<T>("T=1 (2,1,10) h=2 -> (2,2,1,5)", {2, 1, 10}, [](Tape& t, auto x) { return split_heads(t, x, 2); },
                 [](const Ref& x) { return ref_split_heads(x, 2); })},
       {{"rank 2", [](Tape& t) { split_heads(t, zeros({2, 6}), 2); }, "split_heads: x must be [B, T, d], got [2, 6]"},
        {"d not divisible by h", [](Tape& t) { split_heads(t, zeros({2, 3, 6}), 4); },
         "split_heads: d = 6 is not divisible by h = 4"},
        {"no heads", [](Tape& t) { split_heads(t, zeros({2, 3, 6}), 0); },
         "split_heads: the number of heads h must be positive"}}},

      {"merge_heads",
       {unary<T>("(2,3,5,2) -> (2,5,6)", {2, 3, 5, 2}, [](Tape& t, auto x) { return merge_heads(t, x); }, ref_merge_heads),
        unary<T>("T=1 (3,2,1,5) -> (3,1,10)", {3, 2, 1, 5}, [](Tape& t, auto x) { return merge_heads(t, x); },
                 ref_merge_heads)},
       {{"rank 3", [](Tape& t) { merge_heads(t, zeros({2, 3, 6})); },
         "merge_heads: x must be [B, h, T, dh], got [2, 3, 6]"}}},

      // Through softmax: a projection of the masked -inf entries would not be finite.
      {"causal_mask",
       {unary<T>("softmax(mask(S)), batch*heads (2,3,5,5)", {2, 3, 5, 5},
                 [](Tape& t, auto s) { return softmax(t, causal_mask(t, s)); },
                 [](const Ref& s) { return ref_softmax(ref_causal_mask(s), false); }),
        unary<T>("softmax(mask(S)), T=1 (3,1,1)", {3, 1, 1}, [](Tape& t, auto s) { return softmax(t, causal_mask(t, s)); },
                 [](const Ref& s) { return ref_softmax(ref_causal_mask(s), false); })},
       {{"last two dims differ", [](Tape& t) { causal_mask(t, zeros({2, 3, 4})); }, "causal_mask: needs (..., T, T)"},
        {"rank 1", [](Tape& t) { causal_mask(t, zeros({3})); }, "causal_mask: needs (..., T, T)"}}},

      {"softmax",
       {{"batch*heads (2,3,4,7), logits sd 2",
         [=](Rng& g) {
           auto x = randn<T>({2, 3, 4, 7}, g, 2.0);
           return C{{{"x", x}}, [=](Tape& t) { return softmax(t, x); }, [=] { return softmax_ref(ref_of(x)); }};
         }},
        {"(3,5) with -inf entries and an all--inf row",
         [=](Rng& g) {
           auto x = randn<T>({3, 5}, g);
           const T ninf = -std::numeric_limits<T>::infinity();
           x.value()(0, 4) = x.value()(1, 0) = x.value()(1, 3) = ninf;
           for (std::size_t j = 0; j < 5; ++j) x.value()(2, j) = ninf;
           return C{{{"x", x}}, [=](Tape& t) { return softmax(t, x); }, [=] { return softmax_ref(ref_of(x)); }};
         }},
        unary<T>("T=1 one query, batch*heads (2,3,1,5)", {2, 3, 1, 5}, [](Tape& t, auto x) { return softmax(t, x); },
                 softmax_ref)},
       {{"rank 0", [](Tape& t) { softmax(t, Tensor<double>(Array<double>(3.0))); }, "softmax: needs rank >= 1"},
        {"empty last axis", [](Tape& t) { softmax(t, zeros({2, 0})); }, "softmax: needs rank >= 1 and a non-empty last axis"}}},

      {"log_softmax",
       {{"(2,3,7), logits sd 2",
         [=](Rng& g) {
           auto x = randn<T>({2, 3, 7}, g, 2.0);
           return C{{{"x", x}}, [=](Tape& t) { return log_softmax(t, x); }, [=] { return log_softmax_ref(ref_of(x)); }};
         }},
        unary<T>("T=1 (3,1,5)", {3, 1, 5}, [](Tape& t, auto x) { return log_softmax(t, x); }, log_softmax_ref)},
       {{"empty last axis", [](Tape& t) { log_softmax(t, zeros({2, 0})); },
         "log_softmax: needs rank >= 1 and a non-empty last axis, got [2, 0]"}}},

      {"layernorm",
       {{"(2,3,7), weight ~U(0.5,1.5), bias ~N(0,1)",
         [](Rng& g) {
           auto x = randn<T>({2, 3, 7}, g, 2.0), w = uniform<T>({7}, g, 0.5, 1.5), b = randn<T>({7}, g);
           return C{{{"x", x}, {"weight", w}, {"bias", b}}, [=](Tape& t) { return layernorm(t, x, w, b); },
                    [=] { return ref_layernorm(ref_of(x), ref_of(w), ref_of(b)); }};
         }},
        {"T=1 (3,1,5), offset rows",
         [](Rng& g) {
           auto x = uniform<T>({3, 1, 5}, g, 1.0, 4.0), w = uniform<T>({5}, g, -1.5, 1.5), b = randn<T>({5}, g);
           return C{{{"x", x}, {"weight", w}, {"bias", b}}, [=](Tape& t) { return layernorm(t, x, w, b); },
                    [=] { return ref_layernorm(ref_of(x), ref_of(w), ref_of(b)); }};
         }}},
       {{"weight and bias of another width", [](Tape& t) { layernorm(t, zeros({2, 3, 4}), zeros({3}), zeros({4})); },
         "layernorm: needs x (..., C) with C > 0, weight (C), bias (C), got x [2, 3, 4], weight [3]"}}},

      {"gelu",
       {{"(3,5,7) ~N(0, 2^2)",
         [](Rng& g) {
           auto x = randn<T>({3, 5, 7}, g, 2.0);
           return C{{{"x", x}}, [=](Tape& t) { return gelu(t, x); }, [=] { return ref_unary(ref_of(x), ref_gelu); }};
         }}},
       {},
       "elementwise on any shape"},

      {"relu",
       {{"(3,4,5), |x| >= 0.1 (away from the kink)",
         [](Rng& g) {
           auto x = randn<T>({3, 4, 5}, g);
           for (auto& v : x.value()) v += v < 0 ? T(-0.1) : T(0.1);
           return C{{{"x", x}}, [=](Tape& t) { return relu(t, x); },
                    [=] { return ref_unary(ref_of(x), [](double v) { return v > 0 ? v : 0.0; }); }};
         }}},
       {},
       "elementwise on any shape"},

      {"sub",
       {binary<T>("same shape (3,5)", {3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return sub(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, minus); }),
        binary<T>("suffix (2,3,5) - (5)", {2, 3, 5}, {5}, [](Tape& t, auto a, auto b) { return sub(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, minus); }),
        binary<T>("(3,5) - (2,3,5), a broadcasts", {3, 5}, {2, 3, 5}, [](Tape& t, auto a, auto b) { return sub(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, minus); }),
        binary<T>("both broadcast (2,1,3) - (4,1)", {2, 1, 3}, {4, 1}, [](Tape& t, auto a, auto b) { return sub(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, minus); })},
       {{"shapes that do not broadcast", [](Tape& t) { sub(t, zeros({2, 3}), zeros({2})); },
         "sub: cannot broadcast a [2, 3] with b [2]"}}},

      {"div",
       {divide("same shape (3,5)", {3, 5}, {3, 5}), divide("suffix (2,3,5) / (5)", {2, 3, 5}, {5}),
        divide("(3,1) / (2,3,5), a broadcasts", {3, 1}, {2, 3, 5}), divide("both broadcast (2,1,3) / (4,1)", {2, 1, 3}, {4, 1})},
       {{"shapes that do not broadcast", [](Tape& t) { div(t, zeros({4}), zeros({3})); },
         "div: cannot broadcast a [4] with b [3]"}}},

      {"maximum",
       {binary<T>("same shape (3,5)", {3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return maximum(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, larger); }),
        binary<T>("suffix (2,3,5) with (3,5)", {2, 3, 5}, {3, 5}, [](Tape& t, auto a, auto b) { return maximum(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, larger); }),
        binary<T>("both broadcast (2,1,3) with (4,1)", {2, 1, 3}, {4, 1},
                  [](Tape& t, auto a, auto b) { return maximum(t, a, b); },
                  [=](const Ref& a, const Ref& b) { return ref_broadcast(a, b, larger); }),
        {"ties (3,4): dy split half and half",
         [=](Rng& g) {
           auto a = randn<T>({3, 4}, g), b = randn<T>({3, 4}, g);
           for (std::size_t i = 0; i < a.size(); i += 2) b.data()[i] = a.data()[i];
           return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return maximum(t, a, b); },
                    [=] { return ref_broadcast(ref_of(a), ref_of(b), larger); }};
         }}},
       {{"shapes that do not broadcast", [](Tape& t) { maximum(t, zeros({2, 3}), zeros({3, 2})); },
         "maximum: cannot broadcast a [2, 3] with b [3, 2]"}}},

      {"exp",
       {unary<T>("(3,5,7)", {3, 5, 7}, [](Tape& t, auto x) { return ops::exp(t, x); },
                 [](const Ref& x) { return ref_unary(x, [](double v) { return std::exp(v); }); })},
       {},
       "elementwise on any shape (overflow gives inf, as std::exp)"},

      {"log",
       {{"(3,5,7) ~U(0.2, 3)",
         [](Rng& g) {
           auto x = uniform<T>({3, 5, 7}, g, 0.2, 3.0);
           return C{{{"x", x}}, [=](Tape& t) { return ops::log(t, x); },
                    [=] { return ref_unary(ref_of(x), [](double v) { return std::log(v); }); }};
         }}},
       {},
       "elementwise on any shape (x <= 0 gives -inf or NaN, as std::log)"},

      {"tanh",
       {unary<T>("(3,5,7)", {3, 5, 7}, [](Tape& t, auto x) { return ops::tanh(t, x); },
                 [](const Ref& x) { return ref_unary(x, [](double v) { return std::tanh(v); }); })},
       {},
       "elementwise on any shape"},

      {"sigmoid",
       {unary<T>("(3,5,7)", {3, 5, 7}, [](Tape& t, auto x) { return sigmoid(t, x); },
                 [=](const Ref& x) { return ref_unary(x, logistic); }),
        // Central differences cannot see s's slope e^-x near s = 1 (below 1's ulp); x > 0 large is
        // checked against the exact derivative in test_ops_nonlinear.cpp.
        {"(4,5) large negative x in [-40, -20]",
         [=](Rng& g) {
           auto x = uniform<T>({4, 5}, g, -40.0, -20.0);
           return C{{{"x", x}}, [=](Tape& t) { return sigmoid(t, x); }, [=] { return ref_unary(ref_of(x), logistic); }};
         }}},
       {},
       "elementwise on any shape"},

      {"silu",
       {{"(3,5,7) ~N(0, 3^2)",
         [=](Rng& g) {
           auto x = randn<T>({3, 5, 7}, g, 3.0);
           return C{{{"x", x}}, [=](Tape& t) { return silu(t, x); },
                    [=] { return ref_unary(ref_of(x), [=](double v) { return v * logistic(v); }); }};
         }},
        {"(4,5) large |x| in [20, 40] and [-40, -20]",
         [=](Rng& g) {
           auto x = uniform<T>({4, 5}, g, 20.0, 40.0);
           for (std::size_t i = 0; i < x.size(); i += 2) x.data()[i] = -x.data()[i];
           return C{{{"x", x}}, [=](Tape& t) { return silu(t, x); },
                    [=] { return ref_unary(ref_of(x), [=](double v) { return v * logistic(v); }); }};
         }}},
       {},
       "elementwise on any shape"},

      {"sqrt",
       {{"(3,5,7) ~U(0.2, 3)",
         [](Rng& g) {
           auto x = uniform<T>({3, 5, 7}, g, 0.2, 3.0);
           return C{{{"x", x}}, [=](Tape& t) { return ops::sqrt(t, x); },
                    [=] { return ref_unary(ref_of(x), [](double v) { return std::sqrt(v); }); }};
         }}},
       {},
       "elementwise on any shape (x < 0 gives NaN, as std::sqrt)"},

      {"concat",
       {{"three along axis 1: (2,3,4), (2,1,4), (2,2,4)",
         [](Rng& g) {
           auto a = randn<T>({2, 3, 4}, g), b = randn<T>({2, 1, 4}, g), c = randn<T>({2, 2, 4}, g);
           return C{{{"a", a}, {"b", b}, {"c", c}}, [=](Tape& t) { return concat(t, {a, b, c}, 1); },
                    [=] { return ref_concat({ref_of(a), ref_of(b), ref_of(c)}, 1); }};
         }},
        {"two along axis -1: (3,2), (3,5)",
         [](Rng& g) {
           auto a = randn<T>({3, 2}, g), b = randn<T>({3, 5}, g);
           return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return concat(t, {a, b}, -1); },
                    [=] { return ref_concat({ref_of(a), ref_of(b)}, 1); }};
         }},
        {"two along axis 0, the second needing no gradient: (1,3), (2,3)",
         [](Rng& g) {
           auto a = randn<T>({1, 3}, g), b = randn<T>({2, 3}, g);
           b.set_requires_grad(false);
           return C{{{"a", a}}, [=](Tape& t) { return concat(t, {a, b}, 0); },
                    [=] { return ref_concat({ref_of(a), ref_of(b)}, 0); }};
         }}},
       {{"no tensor", [](Tape& t) { concat(t, std::vector<Tensor<double>>{}, 0); }, "concat: needs at least one tensor"},
        {"shapes differ off the axis", [](Tape& t) { concat(t, {zeros({2, 3}), zeros({3, 3})}, 1); },
         "concat: every tensor needs the shape of the first [2, 3] but at axis 1, got [3, 3]"},
        {"ranks differ", [](Tape& t) { concat(t, {zeros({2, 3}), zeros({2, 3, 1})}, 0); },
         "concat: every tensor needs the shape of the first [2, 3] but at axis 0, got [2, 3, 1]"},
        {"axis out of range", [](Tape& t) { concat(t, {zeros({2, 3}), zeros({2, 3})}, 2); },
         "concat: axis 2 is out of range for x [2, 3]"}}},

      {"split",
       {{"(2,6,3) into 1, 2, 3 along axis 1, joined back in another order",
         [](Rng& g) {
           auto x = randn<T>({2, 6, 3}, g);
           return C{{{"x", x}},
                    [=](Tape& t) {
             const auto pieces = split(t, x, {1, 2, 3}, 1);
             return concat(t, {pieces[2], pieces[0], pieces[1]}, 1);
                    },
                    [=] {
             const Ref r = ref_of(x);
             return ref_concat({ref_slice(r, 1, 3, 6), ref_slice(r, 1, 0, 1), ref_slice(r, 1, 1, 3)}, 1);
                    }};
         }},
        {"(4,5) into 2, 3 along axis -1, one piece used",
         [](Rng& g) {
           auto x = randn<T>({4, 5}, g);
           return C{{{"x", x}}, [=](Tape& t) { return split(t, x, {2, 3}, -1)[1]; },
                    [=] { return ref_slice(ref_of(x), 1, 2, 5); }};
         }}},
       {{"sizes that do not add up", [](Tape& t) { split(t, zeros({2, 6}), {2, 3}, 1); },
         "split: the sizes add up to 5, not to x's 6 along axis 1 (x [2, 6])"},
        {"no sizes", [](Tape& t) { split(t, zeros({2, 6}), {}, 1); }, "split: the sizes add up to 0"},
        {"axis out of range", [](Tape& t) { split(t, zeros({2, 6}), {1, 1}, -3); },
         "split: axis -3 is out of range for x [2, 6]"}}},

      {"slice",
       {unary<T>("(3,5,4) axis 1 [1, 4)", {3, 5, 4}, [](Tape& t, auto x) { return slice(t, x, 1, 1, 4); },
                 [](const Ref& x) { return ref_slice(x, 1, 1, 4); }),
        unary<T>("(3,5,4) axis -1 [0, 2)", {3, 5, 4}, [](Tape& t, auto x) { return slice(t, x, -1, 0, 2); },
                 [](const Ref& x) { return ref_slice(x, 2, 0, 2); }),
        unary<T>("(3,5) axis 0 [2, 3), one row", {3, 5}, [](Tape& t, auto x) { return slice(t, x, 0, 2, 3); },
                 [](const Ref& x) { return ref_slice(x, 0, 2, 3); })},
       {{"end past the axis", [](Tape& t) { slice(t, zeros({3, 5}), 1, 2, 6); },
         "slice: [2, 6) is not a range within x's 5 along axis 1 (x [3, 5])"},
        {"begin after end", [](Tape& t) { slice(t, zeros({3, 5}), 0, 2, 1); }, "slice: [2, 1) is not a range"},
        {"axis out of range", [](Tape& t) { slice(t, zeros({3, 5}), 2, 0, 1); }, "slice: axis 2 is out of range"}}},

      {"rmsnorm",
       {{"(2,3,7), weight ~U(0.5,1.5)",
         [](Rng& g) {
           auto x = randn<T>({2, 3, 7}, g, 2.0), w = uniform<T>({7}, g, 0.5, 1.5);
           return C{{{"x", x}, {"weight", w}}, [=](Tape& t) { return rmsnorm(t, x, w); },
                    [=] { return ref_rmsnorm(ref_of(x), ref_of(w)); }};
         }},
        {"T=1 (3,1,5), offset rows, weight of both signs",
         [](Rng& g) {
           auto x = uniform<T>({3, 1, 5}, g, 1.0, 4.0), w = uniform<T>({5}, g, -1.5, 1.5);
           return C{{{"x", x}, {"weight", w}}, [=](Tape& t) { return rmsnorm(t, x, w); },
                    [=] { return ref_rmsnorm(ref_of(x), ref_of(w)); }};
         }}},
       {{"weight of another width", [](Tape& t) { rmsnorm(t, zeros({2, 3, 4}), zeros({3})); },
         "rmsnorm: needs x (..., C) with C > 0 and weight (C), got x [2, 3, 4], weight [3]"},
        {"rank 0", [](Tape& t) { rmsnorm(t, Tensor<double>(Array<double>(3.0)), zeros({1})); },
         "rmsnorm: needs x (..., C) with C > 0"}}},

      {"rope",
       {unary<T>("q-like (2,3,5,6), offset 0", {2, 3, 5, 6}, [](Tape& t, auto x) { return rope(t, x); },
                 [](const Ref& x) { return ref_rope(x, 0); }),
        unary<T>("T=1 decode (2,2,1,4) at position 7", {2, 2, 1, 4}, [](Tape& t, auto x) { return rope(t, x, 7); },
                 [](const Ref& x) { return ref_rope(x, 7); }),
        unary<T>("rank 3 (3,4,8), offset 2", {3, 4, 8}, [](Tape& t, auto x) { return rope(t, x, 2); },
                 [](const Ref& x) { return ref_rope(x, 2); })},
       {{"odd head dim", [](Tape& t) { rope(t, zeros({2, 3, 5})); }, "rope: needs x (..., T, dh) with T > 0 and dh even, got [2, 3, 5]"},
        {"rank 1", [](Tape& t) { rope(t, zeros({4})); }, "rope: needs x (..., T, dh)"},
        {"theta 1", [](Tape& t) { rope(t, zeros({2, 4}), 0, 1.0); }, "rope: theta must be a finite number > 1"}}},

      {"embedding",
       {{"table (7,5), ids (2,4) with repeats",
         [](Rng& g) {
           auto table = randn<T>({7, 5}, g);
           const Ids ids = {{1, 3, 1, 6}, {3, 3, 0, 1}};
           return C{{{"table", table}}, [=](Tape& t) { return embedding(t, table, ids); },
                    [=] { return ref_embedding(ref_of(table), ref_of(ids)); }};
         }},
        {"table (5,3), ids (3,1) T=1",
         [](Rng& g) {
           auto table = randn<T>({5, 3}, g);
           const Ids ids = random_ids({3, 1}, 5, g);
           return C{{{"table", table}}, [=](Tape& t) { return embedding(t, table, ids); },
                    [=] { return ref_embedding(ref_of(table), ref_of(ids)); }};
         }}},
       {{"id past the table", [](Tape& t) { embedding(t, zeros({5, 3}), Ids{1, 5}); },
         "embedding: id 5 at position 1 is outside [0, V) with V = 5"},
        {"negative id", [](Tape& t) { embedding(t, zeros({5, 3}), Ids{-1}); }, "embedding: id -1"},
        {"table of rank 3", [](Tape& t) { embedding(t, zeros({2, 3, 4}), Ids{0}); }, "embedding: table needs shape (V, d)"}}},

      {"cross_entropy",
       {{"[B,T,V] = (2,3,7), logits sd 2",
         [](Rng& g) {
           auto logits = randn<T>({2, 3, 7}, g, 2.0);
           const Ids targets = random_ids({2, 3}, 7, g);
           return C{{{"logits", logits}}, [=](Tape& t) { return cross_entropy(t, logits, targets); },
                    [=] { return ref_cross_entropy(ref_of(logits), ref_of(targets)); }};
         }},
        {"T=1 (3,1,5)",
         [](Rng& g) {
           auto logits = randn<T>({3, 1, 5}, g);
           const Ids targets = random_ids({3, 1}, 5, g);
           return C{{{"logits", logits}}, [=](Tape& t) { return cross_entropy(t, logits, targets); },
                    [=] { return ref_cross_entropy(ref_of(logits), ref_of(targets)); }};
         }}},
       {{"target past V", [](Tape& t) { cross_entropy(t, zeros({2, 3, 7}), Ids{{0, 1, 7}, {0, 0, 0}}); },
         "cross_entropy: target 7 at position 2 is outside [0, V) with V = 7"},
        {"targets of another shape", [](Tape& t) { cross_entropy(t, zeros({2, 3, 7}), Ids{{0, 1}, {0, 0}}); },
         "cross_entropy: needs logits (..., V) with V > 0 and targets (...), got logits [2, 3, 7], targets [2, 2]"},
        {"flat targets", [](Tape& t) { cross_entropy(t, zeros({2, 3, 7}), Ids{0, 1, 2, 3, 4, 5}); },
         "cross_entropy: needs logits (..., V)"}}},

      {"causal_attention",
       {qkv<T>("batch*heads (2,3,5,4), dh < T", {2, 3, 5, 4}, fused_attention, ref_causal_attention),
        qkv<T>("T=1 (3,2,1,4) (one query attends to itself)", {3, 2, 1, 4}, fused_attention, ref_causal_attention),
        qkv<T>("dh > T (2,2,3,7)", {2, 2, 3, 7}, fused_attention, ref_causal_attention),
        qkv<T>("rank 2 (6,3), one matrix", {6, 3}, fused_attention, ref_causal_attention)},
       {{"v of another shape",
         [](Tape& t) { causal_attention(t, zeros({2, 3, 4}), zeros({2, 3, 4}), zeros({2, 3, 5})); },
         "causal_attention: needs q, k, v of one shape (..., T, dh), got q [2, 3, 4], k [2, 3, 4], v [2, 3, 5]"},
        {"rank 1", [](Tape& t) { causal_attention(t, zeros({4}), zeros({4}), zeros({4})); },
         "causal_attention: needs q, k, v of one shape"},
        {"empty T", [](Tape& t) { causal_attention(t, zeros({2, 0, 4}), zeros({2, 0, 4}), zeros({2, 0, 4})); },
         "causal_attention: empty dimension in q [2, 0, 4]"}}},

      // ---- nn modules: every parameter and the input. Attention runs fused by default;
      // the composed samples check the step-by-step path through the separate ops' rules.
      {"nn.Linear",
       {linear_module<T>("with bias, (2,3,5) -> (2,3,4)", 5, 4, true, {2, 3, 5}),
        linear_module<T>("no bias, (3,5) -> (3,1)", 5, 1, false, {3, 5})},
       {},
       "its ops' errors (matmul, add)"},
      {"nn.Embedding",
       {{"(7,5) table, ids (2,3) with repeats",
         [](Rng& g) {
           auto embed = std::make_shared<nn::Embedding<T>>(7, 5, g);
           perturb_parameters(*embed, g);
           const Ids ids = {{0, 6, 0}, {2, 2, 5}};
           return C{with_parameters({}, *embed), [=](Tape& t) { return embed->forward(t, ids); },
                    [=] { return ref_embedding(ref_of(embed->weight), ref_of(ids)); }};
         }}},
       {},
       "its op's errors (embedding)"},
      {"nn.CausalSelfAttention",
       {attention_module<T>("B=2 T=5 d=6 h=3", 6, 3, {2, 5, 6}),
        attention_module<T>("T=1 (one token attends to itself)", 4, 2, {3, 1, 4}),
        attention_module<T>("composed (fused = false) B=2 T=5 d=6 h=3", 6, 3, {2, 5, 6}, false),
        attention_module<T>("composed (fused = false) T=1", 4, 2, {3, 1, 4}, false)},
       {},
       "its ops' errors"},
      {"nn.TransformerBlock",
       {{"B=2 T=4 d=6 h=2",
         [](Rng& g) {
           auto block = std::make_shared<models::TransformerBlock<T>>(6, 2, 2, g);
           perturb_parameters(*block, g);
           auto x = randn<T>({2, 4, 6}, g);
           return C{with_parameters({{"x", x}}, *block), [=](Tape& t) { return block->forward(t, x); }, {}};
         }}},
       {},
       "its ops' errors"},
      {"checkpoint",
       {{"a TransformerBlock B=2 T=4 d=6 h=2; reference: the block run directly",
         [](Rng& g) {
           auto block = std::make_shared<models::TransformerBlock<T>>(6, 2, 2, g);
           perturb_parameters(*block, g);
           auto x = randn<T>({2, 4, 6}, g);
           const auto run = [block](Tape& t, const Tensor<T>& in) { return block->forward(t, in); };
           return C{with_parameters({{"x", x}}, *block), [=](Tape& t) { return checkpoint(t, run, x); },
                    [=] {
                      Tape direct;
                      return ref_of(run(direct, x));
                    }};
         }},
        {"two inputs, one of them read twice: (a b) + a",
         [](Rng& g) {
           auto a = randn<T>({3, 4}, g), b = randn<T>({4, 4}, g);
           const auto run = [](Tape& t, const Tensor<T>& p, const Tensor<T>& q) { return add(t, matmul(t, p, q), p); };
           return C{{{"a", a}, {"b", b}}, [=](Tape& t) { return checkpoint(t, run, a, b); },
                    [=] { return ref_broadcast(ref_matmul(ref_of(a), ref_of(b), false, false), ref_of(a), std::plus<>()); }};
         }}},
       {{"an undefined input",
         [](Tape& t) { checkpoint(t, [](Tape& u, const Tensor<double>& x) { return scale(u, x, 2.0); }, Tensor<double>()); },
         "checkpoint: input 1 is an undefined tensor"},
        {"a block that returns its input",
         [](Tape& t) { checkpoint(t, [](Tape&, const Tensor<double>& x) { return x; }, zeros({2, 3})); },
         "checkpoint: the block returned a leaf"}}},
      {"nn.GPT",
       {{"V=7 T_max=6 L=2 h=2 d=8, B=2 T=5, loss",
         [](Rng& g) {
           auto gpt = std::make_shared<models::GPT<T>>(models::GPTConfig{7, 6, 2, 2, 8}, 17);
           perturb_parameters(*gpt, g);
           const Ids x = random_ids({2, 5}, 7, g), y = random_ids({2, 5}, 7, g);
           return C{with_parameters({}, *gpt), [=](Tape& t) { return gpt->loss(t, x, y); }, {}};
         }}},
       {},
       "its ops' errors, and the GPT's own (test_nn.cpp)"},
      {"nn.RotaryAttention",
       {{"B=2 T=5 d=8 h=2",
         [](Rng& g) {
           auto attn = std::make_shared<models::RotaryAttention<T>>(8, 2, g);
           perturb_parameters(*attn, g);
           auto x = randn<T>({2, 5, 8}, g);
           return C{with_parameters({{"x", x}}, *attn), [=](Tape& t) { return attn->forward(t, x); }, {}};
         }}},
       {},
       "its ops' errors, and an odd head_dim (test_nn.cpp)"},
      {"nn.SwiGLU",
       {{"(2,3,6) -> d_hidden 10 -> (2,3,6)",
         [](Rng& g) {
           auto mlp = std::make_shared<models::SwiGLU<T>>(6, 10, g);
           perturb_parameters(*mlp, g);
           auto x = randn<T>({2, 3, 6}, g);
           return C{with_parameters({{"x", x}}, *mlp), [=](Tape& t) { return mlp->forward(t, x); }, {}};
         }}},
       {},
       "its ops' errors"},
      {"nn.LlamaBlock",
       {{"B=2 T=4 d=8 h=2 d_hidden=12",
         [](Rng& g) {
           auto block = std::make_shared<models::LlamaBlock<T>>(8, 2, 12, 2, g);
           perturb_parameters(*block, g);
           auto x = randn<T>({2, 4, 8}, g);
           return C{with_parameters({{"x", x}}, *block), [=](Tape& t) { return block->forward(t, x); }, {}};
         }}},
       {},
       "its ops' errors"},
      {"nn.Llama",
       {{"V=7 T_max=6 L=2 h=2 d=8 d_hidden=12, B=2 T=5, loss",
         [](Rng& g) {
           auto llama = std::make_shared<models::Llama<T>>(models::LlamaConfig{7, 6, 2, 2, 8, 12}, 17);
           perturb_parameters(*llama, g);
           const Ids x = random_ids({2, 5}, 7, g), y = random_ids({2, 5}, 7, g);
           return C{with_parameters({}, *llama), [=](Tape& t) { return llama->loss(t, x, y); }, {}};
         }}},
       {},
       "its ops' errors, and the Llama's own (test_nn.cpp)"},
  };
}

// Built once, in op_table_{float,double}.cpp, for the suite and the report alike (the table is the
// largest instantiation in the tests).
extern template std::vector<OpInfo<float>> op_table<float>();
extern template std::vector<OpInfo<double>> op_table<double>();

}  // namespace tapegrad::testing
