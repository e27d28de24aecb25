// Tape semantics: accumulation, requires_grad, no-grad, zero_grad, clearing, misuse.
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

using namespace tapegrad;
using ops::matmul;
using ops::scale;

namespace {
Tensor<double> row_vector(bool requires_grad = true) { return Tensor<double>::from({1, 3}, {1.0, -2.0, 0.5}, requires_grad); }

bool message_contains(const std::exception& e, const std::string& s) { return std::string(e.what()).find(s) != std::string::npos; }
}  // namespace

TEST_CASE("tape: an input used twice by one op gets both contributions (x x^T)") {
  Tape tape;
  auto x = row_vector();
  auto y = matmul(tape, x, x, {.transpose_b = true});  // sum_i x_i^2
  CHECK(y.item() == doctest::Approx(5.25));
  tape.backward(y);
  for (std::size_t i = 0; i < 3; ++i) CHECK(x.grad()(0, i) == doctest::Approx(2 * x.value()(0, i)));
}

TEST_CASE("tape: a value feeding two ops gets the sum of both paths") {
  Tape tape;
  auto x = row_vector();
  auto s = scale(tape, x, 2.0), t = scale(tape, x, 3.0);
  auto y = matmul(tape, s, t, {.transpose_b = true});  // 6 sum_i x_i^2
  tape.backward(y);
  for (std::size_t i = 0; i < 3; ++i) CHECK(x.grad()(0, i) == doctest::Approx(12 * x.value()(0, i)));
}

TEST_CASE("tape: inputs that do not require grad get no gradient and record nothing") {
  Tape tape;
  auto x = row_vector(false);
  auto w = Tensor<double>::from({3, 1}, {1, 1, 1}, true);
  auto y = matmul(tape, x, w);
  CHECK(tape.size() == 1);
  tape.backward(y);
  CHECK_FALSE(x.has_grad());
  CHECK(w.grad()(1, 0) == doctest::Approx(-2.0));

  auto c = scale(tape, x, 2.0);  // no input requires grad: no node
  CHECK(tape.size() == 0);
  CHECK_FALSE(c.requires_grad());
  CHECK(c.is_leaf());
}

TEST_CASE("tape: a no-grad scope computes values and records nothing") {
  Tape tape;
  auto x = row_vector();
  {
    NoGradGuard no_grad(tape);
    auto y = scale(tape, x, 2.0);
    CHECK(tape.size() == 0);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.value()(0, 1) == -4.0);
  }
  auto z = scale(tape, x, 2.0);
  CHECK(tape.size() == 1);
  CHECK(z.requires_grad());
}

TEST_CASE("tape: gradients accumulate across backward calls until zero_grad") {
  auto x = row_vector();
  auto once = [&] {
    Tape tape;
    tape.backward(matmul(tape, x, x, {.transpose_b = true}));
  };
  once();
  const Array<double> first = x.grad();
  once();
  CHECK(x.grad()(0, 0) == doctest::Approx(2 * first(0, 0)));
  x.zero_grad();
  CHECK(x.grad()(0, 0) == 0.0);
  once();
  CHECK(x.grad()(0, 2) == doctest::Approx(first(0, 2)));
}

TEST_CASE("tape: backward clears the tape, intermediates keep no gradient unless retained") {
  Tape tape;
  auto x = row_vector();
  auto s = scale(tape, x, 2.0);
  auto r = scale(tape, x, 3.0).retain_grad();
  auto y = matmul(tape, s, r, {.transpose_b = true});
  CHECK(tape.size() == 3);
  tape.backward(y);
  CHECK(tape.size() == 0);
  CHECK_FALSE(s.has_grad());
  REQUIRE(r.has_grad());
  CHECK(r.grad()(0, 1) == doctest::Approx(2 * -2.0));  // dy/dr = s
  CHECK(x.has_grad());
}

TEST_CASE("tape: misuse gets a clear error") {
  SUBCASE("backward on a non-scalar without a seed") {
    Tape tape;
    auto y = scale(tape, row_vector(), 2.0);
    try {
      tape.backward(y);
      FAIL("no exception");
    } catch (const ShapeError& e) {
      CHECK(message_contains(e, "seed"));
      CHECK(message_contains(e, "[1, 3]"));
    }
  }
  SUBCASE("backward twice without keeping the tape") {
    Tape tape;
    auto x = row_vector();
    auto y = matmul(tape, x, x, {.transpose_b = true});
    tape.backward(y);
    try {
      tape.backward(y);
      FAIL("no exception");
    } catch (const StateError& e) {
      CHECK(message_contains(e, "already replayed"));
    }
  }
  SUBCASE("backward twice with KeepTape::yes accumulates twice") {
    Tape tape;
    auto x = row_vector();
    auto y = matmul(tape, x, x, {.transpose_b = true});
    tape.backward(y, KeepTape::yes);
    tape.backward(y);
    CHECK(x.grad()(0, 0) == doctest::Approx(4 * 1.0));
  }
  SUBCASE("values from two tapes mixed") {
    Tape a, b;
    auto x = row_vector();
    auto ya = scale(a, x, 2.0);
    try {
      scale(b, ya, 2.0);
      FAIL("no exception");
    } catch (const StateError& e) {
      CHECK(message_contains(e, "scale"));
      CHECK(message_contains(e, "different tape"));
    }
  }
  SUBCASE("a value from a recording already cleared") {
    Tape tape;
    auto x = row_vector();
    auto y = matmul(tape, x, x, {.transpose_b = true});
    tape.backward(y);
    CHECK_THROWS_WITH_AS(scale(tape, y, 2.0), doctest::Contains("already cleared"), StateError);
  }
  SUBCASE("backward on a loss from another tape") {
    Tape a, b;
    auto x = row_vector();
    auto y = matmul(a, x, x, {.transpose_b = true});
    CHECK_THROWS_WITH_AS(b.backward(y), doctest::Contains("different tape"), StateError);
  }
  SUBCASE("accumulating a gradient of the wrong shape names the op") {
    auto x = row_vector();
    CHECK_THROWS_WITH_AS(x.accumulate_grad("myop", Array<double>(xt::zeros<double>({3, 1}))),
                         doctest::Contains("myop: gradient of shape [3, 1] cannot accumulate into a tensor of shape [1, 3]"),
                         ShapeError);
  }
  SUBCASE("matmul with mismatched shapes names the op and the shapes") {
    Tape tape;
    auto a = Tensor<double>::zeros({2, 3}), b = Tensor<double>::zeros({4, 5});
    CHECK_THROWS_WITH_AS(matmul(tape, a, b), doctest::Contains("matmul: inner dimensions differ: a [2, 3], b [4, 5]"),
                         ShapeError);
    auto c = Tensor<double>::zeros({2, 2, 3}), d = Tensor<double>::zeros({3, 3, 4});
    CHECK_THROWS_WITH_AS(matmul(tape, c, d), doctest::Contains("batch dimensions differ"), ShapeError);
  }
}

TEST_CASE("matmul: forward values on hand-checkable inputs, every transpose") {
  Tape tape;
  auto a = Tensor<double>::from({2, 3}, {1, 2, 3, 4, 5, 6});
  auto b = Tensor<double>::from({3, 2}, {7, 8, 9, 10, 11, 12});
  auto c = matmul(tape, a, b);
  CHECK(c.shape() == Shape{2, 2});
  CHECK(c.value()(0, 0) == 58);
  CHECK(c.value()(0, 1) == 64);
  CHECK(c.value()(1, 0) == 139);
  CHECK(c.value()(1, 1) == 154);
  auto ct = matmul(tape, b, a, {.transpose_a = true, .transpose_b = true});  // (a b)^T
  CHECK(ct.value()(1, 0) == 64);
  auto batched = Tensor<double>::from({2, 1, 3}, {1, 2, 3, 4, 5, 6});
  auto cb = matmul(tape, batched, b);  // shared weight
  CHECK(cb.shape() == Shape{2, 1, 2});
  CHECK(cb.value()(1, 0, 1) == 154);
}

TEST_CASE("tape: a recorded result that the loss does not use is skipped by backward") {
  Tape tape;
  auto x = row_vector();
  auto unused = scale(tape, x, 5.0);  // on the tape, never reaches the loss
  auto y = matmul(tape, x, x, {.transpose_b = true});
  CHECK(tape.size() == 2);
  tape.backward(y);
  CHECK(x.grad()(0, 1) == doctest::Approx(-4.0));
  CHECK_FALSE(unused.has_grad());
}

TEST_CASE("tape: a GradRef shares the tensor's gradient but not its value") {
  auto x = row_vector();
  const GradRef<double> ref = x;  // what a backward rule keeps of an input it does not read
  CHECK(ref.shape() == Shape{1, 3});
  CHECK(ref.requires_grad());
  ref.accumulate_grad("test", Array<double>(xt::ones<double>({1, 3})));
  REQUIRE(x.has_grad());
  CHECK(x.grad()(0, 2) == 1.0);
  x.zero_grad();
  CHECK(ref.grad()(0, 2) == 0.0);
  CHECK_THROWS_WITH_AS(ref.accumulate_grad("test", Array<double>(xt::ones<double>({3}))),
                       doctest::Contains("test: gradient of shape [3] cannot accumulate into a tensor of shape [1, 3]"),
                       ShapeError);
}

TEST_CASE("errors: one type per kind, each a tapegrad::Error, about() names the subject") {
  Tape tape;
  const auto a = Tensor<double>::zeros({2, 3}, true), b = Tensor<double>::zeros({4, 5}, true);
  CHECK_THROWS_AS(matmul(tape, a, b), ShapeError);
  CHECK_THROWS_AS(a.grad(), StateError);
  CHECK_THROWS_AS(models::find_preset("huge"), ConfigError);
  try {
    models::find_preset("huge");
    FAIL("no exception");
  } catch (Error& e) {  // a caller adds what the error is about and rethrows the same object
    CHECK(std::string(e.what()) == e.reason());
    e.about("--preset");
    CHECK(e.subject() == "--preset");
    CHECK(std::string(e.what()) == "--preset: " + e.reason());
  }
  const FormatError format("data/x.safetensors", "header is not\nJSON");
  CHECK(format.path() == "data/x.safetensors");
  CHECK(format.reason() == "header is not\\x0aJSON");  // one line
  CHECK(std::string(format.what()) == "data/x.safetensors: header is not\\x0aJSON");
}

TEST_CASE("tape: a gradient-final hook fires once per backward, right after the earliest node reading the leaf") {
  Tape tape;
  auto x = Tensor<double>::from({1, 2}, {1.0, -2.0});
  auto w1 = Tensor<double>::from({2, 2}, {0.5, -1.0, 2.0, 0.25}, true);
  auto w2 = Tensor<double>::from({2, 1}, {3.0, -0.5}, true);
  auto unreached = Tensor<double>::from({1, 2}, {1.0, 1.0}, true);
  std::vector<std::string> events;
  Array<double> w1_at_hook, w2_at_hook, w1_when_w2_was_final;
  const auto id1 = w1.add_gradient_final_hook([&](Array<double>& g) {
    events.push_back("w1");
    w1_at_hook = g;
  });
  w2.add_gradient_final_hook([&](Array<double>& g) {
    events.push_back("w2");
    w2_at_hook = g;
    w1_when_w2_was_final = w1.grad();  // only its later use is in: backward is still going
  });
  unreached.add_gradient_final_hook([&](Array<double>& g) {
    events.push_back("unreached");
    CHECK(g(0, 0) == 0.0);  // on the tape, but nothing reaches it: its final gradient is zero
  });
  auto a = matmul(tape, x, w1);                    // node 0: earliest use of w1
  auto b = matmul(tape, scale(tape, a, 2.0), w2);  // nodes 1, 2: the only use of w2
  auto c = matmul(tape, b, matmul(tape, x, w1));  // nodes 3, 4: w1 used again, (1, 1) x (1, 2)
  scale(tape, unreached, 1.0);                     // recorded after the loss's last node: the loss does not use it
  auto y = ops::sum(tape, c);
  tape.backward(y, KeepTape::yes);
  CHECK(events == std::vector<std::string>{"unreached", "w2", "w1"});
  CHECK(w1_at_hook == w1.grad());  // complete when the hook saw it: both uses are in
  CHECK(w2_at_hook == w2.grad());
  CHECK(w1_when_w2_was_final != w1.grad());
  w1.remove_gradient_final_hook(id1);
  events.clear();
  tape.backward(y);  // a second replay fires the remaining hooks again
  CHECK(events == std::vector<std::string>{"unreached", "w2"});
  CHECK_THROWS_AS(y.add_gradient_final_hook([](Array<double>&) {}), StateError);
}

namespace {
// The parts of Tape::write_dot's output: op nodes (id -> label) and edges (from, to, label, dashed).
struct Dot {
  std::map<std::string, std::string> ops;
  struct Edge {
    std::string from, to, position;
    bool dashed;
  };
  std::vector<Edge> edges;
  std::vector<std::string> clusters;
};
Dot parse_dot(const std::string& text) {
  Dot dot;
  std::istringstream lines(text);
  std::smatch m;
  const std::regex op(R"re(^\s*(n\d+) \[label="([^"]*)"\];$)re"), edge(R"re(^\s*(\w+) -> (\w+) \[label="(\d+)"(, style=dashed)?\];$)re"),
      cluster(R"re(^\s*subgraph "cluster_([^"]+)" \{$)re");
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_match(line, m, op)) dot.ops[m[1]] = m[2];
    if (std::regex_match(line, m, edge)) dot.edges.push_back({m[1], m[2], m[3], m[4].matched});
    if (std::regex_match(line, m, cluster)) dot.clusters.push_back(m[1]);
  }
  return dot;
}
}  // namespace

TEST_CASE("tape: write_dot draws one node per recorded op and one edge per input, dashed where no gradient flows") {
  nn::Rng rng(1);
  nn::Linear<double> layer(3, 2, true, rng);
  const auto x = Tensor<double>::from({4, 3}, std::vector<double>(12, 0.5));  // needs no gradient
  Tape tape;
  tape.set_keep_graph(true);
  // matmul(x, weight), add(., bias), sum: the ops one at a time (Linear itself records one op)
  const auto forward = [&](Tape& t) { return ops::sum(t, ops::add(t, ops::matmul(t, x, layer.weight), layer.bias)); };
  const auto y = forward(tape);
  std::ostringstream out;
  tape.write_dot(out, layer.named_parameters());
  const Dot dot = parse_dot(out.str());
  REQUIRE(dot.ops.size() == tape.size());
  CHECK(dot.ops.at("n0") == "matmul\\n[4, 2]");
  CHECK(dot.ops.at("n1") == "add\\n[4, 2]");
  CHECK(dot.ops.at("n2").starts_with("sum\\n"));
  REQUIRE(dot.edges.size() == 5);  // x, weight -> matmul; matmul, bias -> add; add -> sum
  auto label_of = [&](const std::string& id) {
    const std::regex decl(id + R"re( \[shape=box, label="([^\\]*)\\n)re");
    std::smatch m;
    const std::string text = out.str();
    return std::regex_search(text, m, decl) ? std::string(m[1]) : std::string("?");
  };
  CHECK(label_of(dot.edges[0].from) == "leaf");
  CHECK((dot.edges[0].to == "n0" && dot.edges[0].position == "1" && dot.edges[0].dashed));
  CHECK(label_of(dot.edges[1].from) == "weight");
  CHECK((dot.edges[1].to == "n0" && dot.edges[1].position == "2" && !dot.edges[1].dashed));
  CHECK((dot.edges[2].from == "n0" && dot.edges[2].to == "n1" && !dot.edges[2].dashed));
  CHECK(label_of(dot.edges[3].from) == "bias");
  CHECK((dot.edges[4].from == "n1" && dot.edges[4].to == "n2"));
  CHECK(dot.clusters.empty());  // the root module's path is ""

  Tape plain;
  forward(plain);
  std::ostringstream ignored;
  CHECK_THROWS_WITH_AS(plain.write_dot(ignored), "write_dot: node 0 (matmul) was recorded before set_keep_graph(true)",
                       StateError);
}

TEST_CASE("tape: a GPT step's graph has a node per tape entry, each op's inputs as edges from earlier nodes, and a "
          "cluster per module") {
  models::GPT<float> model({.vocab_size = 11, .block_size = 6, .n_layer = 2, .n_head = 2, .d_model = 8}, 1);
  Ids idx = Ids::from_shape({2, 6});
  for (std::size_t i = 0; i < idx.size(); ++i) idx.data()[i] = std::int64_t(i % 11);
  Tape tape;
  tape.set_keep_graph(true);
  model.loss(tape, idx, idx);
  std::ostringstream out;
  tape.write_dot(out, model.named_parameters());
  const Dot dot = parse_dot(out.str());
  CHECK(dot.ops.size() == tape.size());
  const std::map<std::string, std::size_t> inputs{{"embedding", 1},        {"add", 2},         {"matmul", 2},
                                                  {"layernorm", 3},        {"split_heads", 1}, {"merge_heads", 1},
                                                  {"causal_attention", 3}, {"linear", 3},      {"cross_entropy", 1}};
  for (const auto& [id, label] : dot.ops) {
    const std::string op = label.substr(0, label.find('\\'));
    CAPTURE(op);
    std::size_t in = 0;
    for (const auto& e : dot.edges)
      if (e.to == id) {
        ++in;
        if (e.from[0] == 'n') CHECK(std::stoul(e.from.substr(1)) < std::stoul(id.substr(1)));  // creation order
      }
    REQUIRE(inputs.contains(op));
    CHECK(in == inputs.at(op));
  }
  for (const char* path : {"h", "h.0", "h.0.attn", "h.0.mlp", "h.0.ln_1", "h.1.ln_2", "ln_f"})
    CHECK(std::find(dot.clusters.begin(), dot.clusters.end(), path) != dot.clusters.end());
}
