// Anomaly mode: the first NaN or Inf in an op's output or in a gradient a backward
// rule wrote throws an AnomalyError naming the op, its tape position, the module
// path, the shapes and the first bad index; off, nothing is checked.
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <limits>
#include <string>

using namespace tapegrad;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

bool message_contains(const std::exception& e, const std::string& s) { return std::string(e.what()).find(s) != std::string::npos; }

// Runs `f`, which must throw an AnomalyError, and returns it.
template <class F>
AnomalyError anomaly_of(F&& f) {
  try {
    f();
  } catch (const AnomalyError& e) {
    return e;
  }
  FAIL("no AnomalyError was thrown");
  throw std::logic_error("unreachable");
}

// A two-level module: `outer.norm` is a LayerNorm, `outer.scaler` multiplies by a weight.
struct Scaler : nn::Module<float> {
  Tensor<float> weight = register_parameter("weight", Tensor<float>::from({2, 3}, {1, 1, 1, 1, 1, 1e30f}));
  // y = scale(x * weight, 1e30): finite forward for x[1, 2] = 1e-30, but dx = weight * 1e30 * dy overflows there.
  Tensor<float> forward(Tape& tape, const Tensor<float>& x) const {
    const nn::ModuleScope scope(tape, *this);
    return ops::scale(tape, ops::mul(tape, x, weight), 1e30f);
  }
};
struct Inner : nn::Module<float> {
  nn::LayerNorm<float> norm{4};
  Scaler scaler;
  Inner() {
    register_module("norm", norm);
    register_module("scaler", scaler);
  }
};
struct Net : nn::Module<float> {
  Inner outer;
  Net() { register_module("outer", outer); }
};

models::GPTConfig tiny_config() { return {.vocab_size = 11, .block_size = 6, .n_layer = 2, .n_head = 2, .d_model = 8}; }

// (2, 6) ids using token 0, so that row 0 of wte is read.
Ids tiny_ids() {
  Ids ids = Ids::from_shape({2, 6});
  for (std::size_t i = 0; i < ids.size(); ++i) ids.data()[i] = std::int64_t(i % 11);
  return ids;
}

}  // namespace

TEST_CASE("anomaly: off by default, and then a NaN weight flows through unchecked") {
  models::GPT<float> model(tiny_config(), 1);
  model.h[1].mlp.w_1.data()[0] = kNaN;
  Tape tape;
  CHECK_FALSE(tape.detect_anomaly());
  Tensor<float> loss;
  CHECK_NOTHROW(loss = model.loss(tape, tiny_ids(), tiny_ids()));
  CHECK(std::isnan(loss.item()));
  CHECK_NOTHROW(tape.backward(loss));
  CHECK(tape.module_path().empty());  // module scopes do nothing when off
}

TEST_CASE("anomaly: a clean GPT step passes and computes what it computes with anomaly mode off") {
  for (bool fused : {true, false}) {  // the composed attention's mask holds -inf by design
    CAPTURE(fused);
    models::GPT<float> on_model(tiny_config(), 3), off_model(tiny_config(), 3);
    for (std::size_t i = 0; i < on_model.h.size(); ++i) on_model.h[i].attn.fused = off_model.h[i].attn.fused = fused;
    Tape on, off;
    on.set_detect_anomaly(true);
    const auto on_loss = on_model.loss(on, tiny_ids(), tiny_ids());
    const auto off_loss = off_model.loss(off, tiny_ids(), tiny_ids());
    CHECK(on_loss.item() == off_loss.item());
    CHECK(on.size() == off.size());
    on.backward(on_loss);
    off.backward(off_loss);
    const auto on_params = on_model.named_parameters(), off_params = off_model.named_parameters();
    for (std::size_t p = 0; p < on_params.size(); ++p) CHECK(on_params[p].second.grad() == off_params[p].second.grad());
    CHECK(on.module_path().empty());  // every scope closed
  }
}

TEST_CASE("anomaly: a NaN in any GPT weight is caught at the first op that reads it, in the module that owns it") {
  const auto names = models::GPT<float>(tiny_config(), 1).named_parameters();
  for (const auto& entry : names) {
    const std::string name = entry.first;
    CAPTURE(name);
    models::GPT<float> model(tiny_config(), 1);
    Tensor<float> weight;
    for (auto& [n, p] : model.named_parameters())
      if (n == name) weight = p;
    weight.data()[0] = kNaN;  // the first element: [0] or [0, 0]
    Tape tape;
    tape.set_detect_anomaly(true);
    const AnomalyError e = anomaly_of([&] { model.loss(tape, tiny_ids(), tiny_ids()); });

    // The module path is the weight's name without its last part: "h.1.mlp" for "h.1.mlp.w_1".
    const auto dot = name.rfind('.');
    CHECK(e.module_path == (dot == std::string::npos ? "" : name.substr(0, dot)));
    const std::string leaf = name.substr(dot == std::string::npos ? 0 : dot + 1);
    const std::string expected_op = leaf == "wte" || leaf == "wpe" ? "embedding"
                                    : leaf == "weight" || leaf == "bias"
                                        ? "layernorm"  // only LayerNorms have these in the GPT
                                    : e.module_path.ends_with("mlp") ? "linear"  // the MLP's w_i, b_i
                                                                     : "matmul";
    CHECK(e.op == expected_op);
    // The failing op was not kept: the tape holds exactly the ops before it.
    REQUIRE(e.position.has_value());
    CHECK(*e.position == tape.size());
    // The message names the poisoned element of the weight as an input that already held NaN.
    const std::string index = weight.dim() == 1 ? "[0]" : "[0, 0]";
    CHECK(message_contains(e, "NaN at " + index + " of input"));
    CHECK(message_contains(e, "was there before"));
    CHECK(message_contains(e, e.module_path.empty() ? "outside any module" : "module " + e.module_path + ")"));
  }
}

TEST_CASE("anomaly: a layernorm whose finite input overflows the mean produces NaN, named with its row") {
  Net net;
  auto x = Tensor<float>::from({2, 4}, {1, 2, 3, 4, 3e38f, 3e38f, 1, 1}, true);  // row 1 sums past FLT_MAX
  Tape tape;
  tape.set_detect_anomaly(true);
  const AnomalyError e = anomaly_of([&] { net.outer.norm.forward(tape, x); });
  CHECK(e.op == "layernorm");
  CHECK(e.module_path == "outer.norm");
  CHECK(e.position == std::optional<std::size_t>(0));
  CHECK(e.index == Shape{1, 0});
  CHECK(message_contains(e, "anomaly: layernorm (tape position 0, module outer.norm) produced NaN at [1, 0] of its output [2, 4]"));
  CHECK(message_contains(e, "from inputs [2, 4], [4], [4], all finite"));
  CHECK(tape.size() == 0);
}

TEST_CASE("anomaly: softmax of a row holding +Inf names the output index and the input that held the Inf") {
  auto x = Tensor<float>::from({2, 3}, {0, 1, 2, 3, 4, kInf}, true);
  Tape tape;
  tape.set_detect_anomaly(true);
  ops::scale(tape, Tensor<float>::from({1}, {1}, true), 2.0f);  // position 0
  const AnomalyError e = anomaly_of([&] { ops::softmax(tape, x); });
  CHECK(e.op == "softmax");
  CHECK(e.position == std::optional<std::size_t>(1));
  CHECK(e.module_path == "");
  CHECK(e.index == Shape{1, 2});
  CHECK(message_contains(e, "NaN at [1, 2] of its output [2, 3]"));
  CHECK(message_contains(e, "Inf at [1, 2] of input 1 [2, 3] was there before"));
}

TEST_CASE("anomaly: a backward rule that overflows names the op, its position, its module and the gradient's index") {
  Net net;
  auto x = Tensor<float>::from({2, 3}, {1, 1, 1, 1, 1, 1e-30f}, true);
  Tape tape;
  tape.set_detect_anomaly(true);
  net.outer.norm.forward(tape, Tensor<float>::from({1, 4}, {1, 2, 3, 4}, true));  // position 0, not in the objective
  const auto y = net.outer.scaler.forward(tape, x);  // mul at 1, scale at 2: all finite (y[1, 2] = 1e30)
  const AnomalyError e = anomaly_of([&] { tape.backward(y, Array<float>(xt::ones<float>({2, 3}))); });
  CHECK(e.op == "mul");
  CHECK(e.position == std::optional<std::size_t>(1));
  CHECK(e.module_path == "outer.scaler");
  CHECK(e.index == Shape{1, 2});  // dx = weight * 1e30 * dy: Inf where weight is 1e30
  CHECK(message_contains(e, "the backward of mul (tape position 1, module outer.scaler) wrote Inf at [1, 2] of the gradient of input 1 [2, 3]"));
  CHECK(message_contains(e, "from a finite output gradient [2, 3]"));
}

TEST_CASE("anomaly: a NaN seed, and an op under no-grad (not on the tape), are reported too") {
  Tape tape;
  tape.set_detect_anomaly(true);
  auto x = Tensor<float>::from({2}, {1, 2}, true);
  const auto y = ops::scale(tape, x, 3.0f);
  const AnomalyError seed = anomaly_of([&] { tape.backward(y, Array<float>(Tensor<float>::from({2}, {1, kNaN}).value())); });
  CHECK(seed.op == "backward seed");
  CHECK(seed.index == Shape{1});

  NoGradGuard no_grad(tape);
  const AnomalyError e = anomaly_of([&] { ops::scale(tape, x, kInf); });
  CHECK(e.op == "scale");
  CHECK_FALSE(e.position.has_value());
  CHECK(message_contains(e, "scale (not on the tape, outside any module) produced Inf at [0]"));
}

TEST_CASE("anomaly: -inf passes only where an op declares it (the causal mask), never elsewhere") {
  Tape tape;
  tape.set_detect_anomaly(true);
  auto s = Tensor<float>::from({2, 2}, {1, 2, 3, 4}, true);
  CHECK_NOTHROW(ops::causal_mask(tape, s));
  auto minus_inf = Tensor<float>::from({2}, {1, -kInf}, true);
  const AnomalyError e = anomaly_of([&] { ops::scale(tape, minus_inf, 1.0f); });
  CHECK(e.op == "scale");
  CHECK(e.index == Shape{1});
  CHECK(message_contains(e, "-Inf at [1] of its output"));
}

TEST_CASE("module: a module registered under two parents is refused") {
  nn::LayerNorm<float> shared(4);
  Inner first;
  struct Holder : nn::Module<float> {
    explicit Holder(nn::LayerNorm<float>& m) { register_module("again", m); }
  };
  Holder holder(shared);
  CHECK(shared.path() == "again");
  CHECK(first.norm.path() == "norm");
  CHECK_THROWS_WITH_AS(Holder{shared}, doctest::Contains("already registered as 'again'"), ConfigError);
}
