// nn: module registry, the GPT's parameter contract, causality, initial loss,
// overfitting one batch, float vs double.
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::models;

namespace {

GPTConfig small_config() { return {.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .d_model = 16}; }

Ids ids_from(const Shape& shape, std::int64_t vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> u(0, vocab - 1);
  Ids ids = Ids::from_shape(shape);
  for (auto& v : ids) v = u(rng);
  return ids;
}

// docs/contracts.md section 1's parameter table as it is written there: a name ({i}: every layer)
// and a shape in V, T_max and d.
const std::vector<std::pair<std::string, std::string>> kSpecTable = {
    {"wte", "[V, d]"},
    {"wpe", "[T_max, d]"},
    {"h.{i}.ln_1.weight", "[d]"},
    {"h.{i}.ln_1.bias", "[d]"},
    {"h.{i}.attn.w_q", "[d, d]"},
    {"h.{i}.attn.w_k", "[d, d]"},
    {"h.{i}.attn.w_v", "[d, d]"},
    {"h.{i}.attn.w_o", "[d, d]"},
    {"h.{i}.ln_2.weight", "[d]"},
    {"h.{i}.ln_2.bias", "[d]"},
    {"h.{i}.mlp.w_1", "[d, 4d]"},
    {"h.{i}.mlp.b_1", "[4d]"},
    {"h.{i}.mlp.w_2", "[4d, d]"},
    {"h.{i}.mlp.b_2", "[d]"},
    {"ln_f.weight", "[d]"},
    {"ln_f.bias", "[d]"},
};

// The table spelled out for `c`, in its order with the {i} rows repeated per layer.
ParameterShapes spec_layout(const GPTConfig& c) {
  const auto size = [&](const std::string& symbol) -> std::size_t {
    if (symbol == "V") return c.vocab_size;
    if (symbol == "T_max") return c.block_size;
    if (symbol == "d") return c.d_model;
    if (symbol == "4d") return 4 * c.d_model;
    FAIL("unknown size " << symbol);
    return 0;
  };
  const auto shape = [&](std::string text) {  // "[d, 4d]"
    Shape s;
    text = text.substr(1, text.size() - 2);
    for (std::size_t at = 0; at <= text.size();) {
      const std::size_t comma = std::min(text.find(", ", at), text.size());
      s.push_back(size(text.substr(at, comma - at)));
      at = comma + 2;
    }
    return s;
  };
  ParameterShapes out;
  std::size_t row = 0;
  for (; row < kSpecTable.size() && kSpecTable[row].first.find("{i}") == std::string::npos; ++row)
    out.emplace_back(kSpecTable[row].first, shape(kSpecTable[row].second));
  const std::size_t layer_rows = row;
  for (std::size_t i = 0; i < c.n_layer; ++i)
    for (row = layer_rows; row < kSpecTable.size() && kSpecTable[row].first.find("{i}") != std::string::npos; ++row) {
      std::string name = kSpecTable[row].first;
      name.replace(name.find("{i}"), 3, std::to_string(i));
      out.emplace_back(name, shape(kSpecTable[row].second));
    }
  for (; row < kSpecTable.size(); ++row) out.emplace_back(kSpecTable[row].first, shape(kSpecTable[row].second));
  return out;
}

}  // namespace

TEST_CASE("nn: GPT parameters have the contract's names and shapes, in order") {
  for (const GPTConfig c : {GPTConfig{.vocab_size = 7, .block_size = 5, .n_layer = 2, .n_head = 2, .d_model = 4},
                            GPTConfig{.vocab_size = 5, .block_size = 3, .n_layer = 3, .n_head = 3, .d_model = 12}}) {
    const ParameterShapes spec = spec_layout(c);
    REQUIRE(spec.size() == 4 + 12 * c.n_layer);
    const GPT<double> model(c, 1);
    ParameterShapes built;
    for (const auto& [name, p] : model.named_parameters()) {
      built.emplace_back(name, p.shape());
      CHECK(p.requires_grad());
    }
    CHECK(built == spec);
    CHECK(expected_parameter_shapes(c) == spec);  // the shape-only construction lists the same
  }
}

TEST_CASE("nn: a shape-only construction allocates and draws nothing") {
  const GPTConfig huge{.vocab_size = 100'000, .block_size = 100'000, .n_layer = 2, .n_head = 8, .d_model = 100'000};
  const ParameterShapes shapes = expected_parameter_shapes(huge);  // 8e10 floats per wte, were it allocated
  CHECK(shapes.front() == std::pair<std::string, Shape>{"wte", {100'000, 100'000}});
  const GPT<float> model(huge, ParameterInit::shapes_only());
  const std::size_t d = 100'000;  // wte, wpe; per block 4 d^2 (attention) + 8 d^2 + 5 d (MLP) + 4 d (two LayerNorms); ln_f
  CHECK(model.parameter_count() == 2 * d * d + 2 * (12 * d * d + 9 * d) + 2 * d);
  CHECK_FALSE(model.wte.has_value());

  const ParameterInit shapes_only = ParameterInit::shapes_only();
  const LayerNorm<float> ln(5, 1e-5f, shapes_only);
  const CausalSelfAttention<float> attn(6, 2, shapes_only);
  CHECK(ln.weight.shape() == Shape{5});
  CHECK(ln.weight.size() == 5);
  CHECK_FALSE(ln.weight.has_value());  // nothing allocated: reading the values is an error, not an empty array
  CHECK_FALSE(attn.w_q.has_value());
  CHECK_THROWS_WITH_AS(attn.w_q.data(), "Tensor: the tensor of shape [6, 6] is shape-only: it has no values",
                       StateError);
}

TEST_CASE("nn: modules built from an Rng hold values, and a shape-only build elsewhere does not change that") {
  Rng rng(1);
  const Rng before = rng;
  {
    const GPT<float> listed({.vocab_size = 7, .block_size = 4, .n_layer = 1, .n_head = 2, .d_model = 8},
                            ParameterInit::shapes_only());
    CHECK(rng == before);  // the shape-only build drew nothing from any Rng
    const CausalSelfAttention<float> attn(6, 2, rng);  // built while a shape-only model lives, on the same thread
    CHECK(attn.w_q.has_value());
    CHECK(attn.w_q.value().size() == 36);
  }
  CHECK(rng != before);
  CHECK(LayerNorm<float>(5).weight.has_value());
  CHECK(LayerNorm<float>(5).weight.value()(4) == 1.0f);
  CHECK_THROWS_AS(Linear<float>(2, 3, false, ParameterInit{}), ConfigError);  // a normal init without an Rng
}

TEST_CASE("nn: GPT-2 initialisation statistics") {
  const GPTConfig c{.vocab_size = 64, .block_size = 32, .n_layer = 4, .n_head = 4, .d_model = 64};
  GPT<double> model(c, 3);
  auto stddev = [](const Tensor<double>& t) {
    double s = 0;
    for (auto v : t.value()) s += v * v;
    return std::sqrt(s / double(t.size()));
  };
  CHECK(stddev(model.wte) == doctest::Approx(0.02).epsilon(0.05));
  CHECK(stddev(model.h[0].attn.w_q) == doctest::Approx(0.02).epsilon(0.05));
  CHECK(stddev(model.h[0].attn.w_o) == doctest::Approx(0.02 / std::sqrt(8.0)).epsilon(0.05));
  CHECK(stddev(model.h[3].mlp.w_2) == doctest::Approx(0.02 / std::sqrt(8.0)).epsilon(0.05));
  CHECK(stddev(model.h[1].mlp.b_1) == 0.0);
  CHECK(model.ln_f.weight.value()(0) == 1.0);
  CHECK(model.h[2].ln_2.bias.value()(5) == 0.0);
}

TEST_CASE("nn: module names may not contain '.' or repeat") {
  struct Bad : Module<double> {
    explicit Bad(const std::string& a, const std::string& b) {
      register_parameter(a, Tensor<double>::zeros({1}));
      register_parameter(b, Tensor<double>::zeros({1}));
    }
  };
  CHECK_THROWS_WITH_AS(Bad("a.b", "c"), doctest::Contains("'a.b'"), ConfigError);
  CHECK_THROWS_WITH_AS(Bad("a", "a"), doctest::Contains("already registered"), ConfigError);
}

TEST_CASE("nn: bad GPT input is rejected with a clear error") {
  GPT<float> model(small_config(), 1);
  Tape tape;
  CHECK_THROWS_WITH_AS(model.forward(tape, ids_from({2, 9}, 11, 1)), doctest::Contains("exceeds block_size 8"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(model.forward(tape, ids_from({9}, 11, 1)), doctest::Contains("[B, T]"), ShapeError);
  CHECK_THROWS_AS(GPT<float>(GPTConfig{11, 8, 2, 3, 16}, 1), ConfigError);
  CHECK_THROWS_WITH_AS(find_preset("huge"), doctest::Contains("unknown preset 'huge'"), ConfigError);
}

namespace {
// Two batches (2, T) of vocab 11 that agree up to position t: the model's logits at
// positions <= t agree bit for bit, and later ones differ. Returns the first batch.
template <class M>
Ids check_later_tokens_leave_earlier_logits(const M& model, std::size_t T, std::size_t t) {
  Ids a = ids_from({2, T}, 11, 7), b = a;
  for (std::size_t s = t + 1; s < T; ++s) b(0, s) = (a(0, s) + 1 + s) % 11, b(1, s) = (a(1, s) + 3) % 11;
  Tape tape;
  NoGradGuard no_grad(tape);
  const Array<double> la = model.forward(tape, a).value(), lb = model.forward(tape, b).value();
  bool later_differs = false;
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t s = 0; s < T; ++s)
      for (std::size_t v = 0; v < 11; ++v) {
        if (s <= t) CHECK(la(i, s, v) == lb(i, s, v));  // bit for bit
        else later_differs |= la(i, s, v) != lb(i, s, v);
      }
  CHECK(later_differs);
  return a;
}
}  // namespace

TEST_CASE("nn: causality — later tokens change neither earlier logits nor earlier gradients") {
  GPT<double> model(small_config(), 5);
  const std::size_t T = 8, t = 3;
  const Ids a = check_later_tokens_leave_earlier_logits(model, T, t);

  // The gradient of position t's output with respect to later positions' inputs (wpe rows > t) is exactly 0.
  Tape rec;
  const Tensor<double> logits = model.forward(rec, a);
  Array<double> seed = xt::zeros<double>(logits.value().shape());
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t v = 0; v < 11; ++v) seed(i, t, v) = std::sin(double(1 + v + 3 * i));
  model.zero_grad();
  rec.backward(logits, seed);
  const Array<double>& g = model.wpe.grad();
  double earlier = 0;
  for (std::size_t s = 0; s < T; ++s)
    for (std::size_t k = 0; k < 16; ++k) {
      if (s > t) CHECK(g(s, k) == 0.0);
      else earlier += std::abs(g(s, k));
    }
  CHECK(earlier > 0);
}

TEST_CASE("nn: a fresh GPT's loss is within 0.1 of ln(V), the tied wte gets gradient from both uses") {
  const GPTConfig c{.vocab_size = 65, .block_size = 32, .n_layer = 2, .n_head = 4, .d_model = 32};
  GPT<float> model(c, 11);
  const Ids x = ids_from({4, 32}, 65, 1), y = ids_from({4, 32}, 65, 2);
  Tape tape;
  auto loss = model.loss(tape, x, y);
  MESSAGE("fresh loss " << loss.item() << ", ln(65) = " << std::log(65.0));
  CHECK(std::abs(loss.item() - std::log(65.0)) < 0.1);
  tape.backward(loss);
  // A row of wte whose token is not in the input still gets gradient: from the output head.
  std::vector<bool> used(65, false);
  for (auto v : x) used[std::size_t(v)] = true;
  std::size_t unused = 0;
  while (unused < 65 && used[unused]) ++unused;
  REQUIRE(unused < 65);
  double head_only = 0;
  for (std::size_t k = 0; k < 32; ++k) head_only += std::abs(model.wte.grad()(unused, k));
  CHECK(head_only > 0);
}

TEST_CASE("nn: AdamW overfits one fixed batch of preset tiny (loss < 0.1 within 300 steps)") {
  const Preset& p = find_preset("tiny");
  const GPTConfig c = p.config(16);
  GPT<float> model(c, 42);
  const Ids x = ids_from({p.batch, p.block_size}, 16, 3), y = ids_from({p.batch, p.block_size}, 16, 4);
  AdamW<float> opt(model.named_parameters(), {.lr = 3e-3, .weight_decay = 0.0});
  float first = 0, last = 0;
  int steps = 0;
  for (; steps < 300; ++steps) {
    Tape tape;
    model.zero_grad();
    auto loss = model.loss(tape, x, y);
    if (steps == 0) first = loss.item();
    last = loss.item();
    if (last < 0.1f) break;
    tape.backward(loss);
    opt.step();
  }
  MESSAGE("tiny overfit: loss " << first << " -> " << last << " in " << steps << " steps");
  CHECK(last < 0.1f);
}

TEST_CASE("nn: the same model and batch give the same loss in float and double (1e-4 relative)") {
  const GPTConfig c = small_config();
  GPT<float> f(c, 9);
  GPT<double> d(c, 9);
  // Parameters well away from the tiny init, so the logits are O(1) and float rounding shows.
  std::mt19937_64 rng(4);
  std::normal_distribution<double> normal(0.0, 0.5);
  auto fp = f.named_parameters();
  auto dp = d.named_parameters();
  for (std::size_t i = 0; i < dp.size(); ++i)
    for (std::size_t k = 0; k < dp[i].second.size(); ++k) {
      const double v = normal(rng);
      dp[i].second.data()[k] = double(float(v));
      fp[i].second.data()[k] = float(v);
    }
  const Ids x = ids_from({3, 8}, 11, 5), y = ids_from({3, 8}, 11, 6);
  Tape tape;
  const double lf = f.loss(tape, x, y).item(), ld = d.loss(tape, x, y).item();
  MESSAGE("loss float " << lf << ", double " << ld << ", relative difference " << std::abs(lf - ld) / ld);
  CHECK(std::abs(lf - ld) / ld < 1e-4);
}

TEST_CASE("nn: Llama parameters have the documented names and shapes, in order, and no biases") {
  const LlamaConfig c{.vocab_size = 7, .block_size = 5, .n_layer = 2, .n_head = 2, .d_model = 8, .d_hidden = 12};
  ParameterShapes documented = {{"wte", {7, 8}}};
  for (std::size_t i = 0; i < 2; ++i) {
    const std::string h = "h." + std::to_string(i) + ".";
    documented.insert(documented.end(), {{h + "norm_1.weight", {8}},
                                         {h + "attn.w_q", {8, 8}},
                                         {h + "attn.w_k", {8, 8}},
                                         {h + "attn.w_v", {8, 8}},
                                         {h + "attn.w_o", {8, 8}},
                                         {h + "norm_2.weight", {8}},
                                         {h + "mlp.w_gate", {8, 12}},
                                         {h + "mlp.w_up", {8, 12}},
                                         {h + "mlp.w_down", {12, 8}}});
  }
  documented.emplace_back("norm_f.weight", Shape{8});
  const Llama<double> model(c, 1);
  ParameterShapes built;
  for (const auto& [name, p] : model.named_parameters()) built.emplace_back(name, p.shape());
  CHECK(built == documented);
  CHECK(expected_parameter_shapes(c) == documented);
  CHECK(swiglu_hidden_size(128) == 352);
  CHECK(swiglu_hidden_size(8) == 32);
}

TEST_CASE("nn: bad Llama input and configs are rejected with a clear error") {
  const Llama<float> model(LlamaConfig{11, 8, 1, 2, 16, 24}, 1);
  Tape tape;
  CHECK_THROWS_WITH_AS(model.forward(tape, ids_from({2, 9}, 11, 1)), "Llama: sequence length 9 exceeds block_size 8",
                       ShapeError);
  CHECK_THROWS_WITH_AS(model.forward(tape, ids_from({9}, 11, 1)), doctest::Contains("[B, T]"), ShapeError);
  CHECK_THROWS_WITH_AS(Llama<float>(LlamaConfig{11, 8, 1, 4, 12, 24}, 1),  // head_dim 3: rope needs pairs
                       doctest::Contains("d_model 12 must be a positive multiple of 2 n_head = 8"), ConfigError);
  CHECK_THROWS_WITH_AS(Llama<float>(LlamaConfig{11, 8, 1, 2, 16, 0}, 1), doctest::Contains("d_hidden must be positive"),
                       ConfigError);
  nn::Rng rng(1);
  CHECK_THROWS_WITH_AS(RotaryAttention<float>(6, 2, rng), doctest::Contains("even head_dim"), ConfigError);
}

TEST_CASE("nn: Llama causality — later tokens do not change earlier logits, and a fresh loss is within 0.1 of ln(V)") {
  check_later_tokens_leave_earlier_logits(Llama<double>(LlamaConfig{11, 8, 2, 2, 16, 24}, 5), 8, 3);

  const Llama<float> fresh(LlamaConfig{65, 32, 2, 4, 32, swiglu_hidden_size(32)}, 11);
  Tape rec;
  const auto loss = fresh.loss(rec, ids_from({4, 32}, 65, 1), ids_from({4, 32}, 65, 2));
  CHECK(std::abs(loss.item() - std::log(65.0)) < 0.1);
}
