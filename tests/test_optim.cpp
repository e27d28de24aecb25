// Optimisers, gradient clipping and the learning-rate schedule (nn/optim.hpp):
// AdamW against a scalar reference written here, weight decay on 2-D parameters
// only, skipping parameters without gradients, exact resume from state(),
// load_state's checks, SGD with momentum, clip_grad_norm, warmup_cosine_lr, train_step.
#include <tapegrad/nn/optim.hpp>
#include <tapegrad/nn/train_step.hpp>
#include <tapegrad/ops/matmul.hpp>
#include <tapegrad/ops/reduce.hpp>

#include <doctest/doctest.h>

#include <limits>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace tapegrad;
using nn::AdamW;
using nn::AdamWOptions;
using nn::SGD;
using nn::SGDOptions;

namespace {

bool message_contains(const std::exception& e, const std::string& s) { return std::string(e.what()).find(s) != std::string::npos; }

std::vector<double> values(const Tensor<double>& t) { return std::vector<double>(t.data(), t.data() + t.size()); }

// Replace p's gradient with `g` (row-major, p's shape).
void set_grad(const Tensor<double>& p, const std::vector<double>& g) {
  p.zero_grad();
  p.accumulate_grad("test", Tensor<double>::from(p.shape(), g).value());
}

// Scalar AdamW reference, written from the algorithm (not from optim.hpp):
// one parameter element through a sequence of gradients.
double reference_adamw(double p, const std::vector<double>& grads, const AdamWOptions& o, bool decayed) {
  double m = 0, v = 0;
  for (std::size_t i = 0; i < grads.size(); ++i) {
    const double t = double(i + 1), g = grads[i];
    if (decayed) p -= o.lr * o.weight_decay * p;
    m = o.beta1 * m + (1 - o.beta1) * g;
    v = o.beta2 * v + (1 - o.beta2) * g * g;
    const double m_hat = m / (1 - std::pow(o.beta1, t));
    const double v_hat = v / (1 - std::pow(o.beta2, t));
    p -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
  }
  return p;
}

}  // namespace

TEST_CASE("optim: AdamW one and two steps match a scalar reference (matrix decayed, vector not)") {
  auto w = Tensor<double>::from({2, 2}, {1.0, -2.0, 0.5, 3.0}, true);
  auto b = Tensor<double>::from({3}, {0.25, -1.0, 4.0}, true);
  const AdamWOptions o{.lr = 0.05, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1};
  AdamW<double> opt({{"w", w}, {"b", b}}, o);
  const std::vector<double> w0 = values(w), b0 = values(b);
  const std::vector<std::vector<double>> gw = {{0.5, -1.0, 2.0, 1e-3}, {-0.25, 0.5, 2.0, 3.0}};
  const std::vector<std::vector<double>> gb = {{1.0, 0.0, -3.0}, {0.1, 2.0, -3.0}};

  // Step 1 by hand, element (0,0) of w: decay 1 -> 1 - 0.05*0.1*1 = 0.995; m_hat = g, v_hat = g^2,
  // so the Adam update is lr * g / (|g| + eps) = 0.05 * 0.5 / (0.5 + 1e-8).
  set_grad(w, gw[0]);
  set_grad(b, gb[0]);
  opt.step();
  CHECK(opt.step_count() == 1);
  CHECK(w.data()[0] == doctest::Approx(0.995 - 0.05 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));
  CHECK(b.data()[1] == -1.0);  // zero gradient, no decay on a 1-D parameter: unchanged
  for (std::size_t k = 0; k < 4; ++k) CHECK(w.data()[k] == doctest::Approx(reference_adamw(w0[k], {gw[0][k]}, o, true)).epsilon(1e-14));
  for (std::size_t k = 0; k < 3; ++k) CHECK(b.data()[k] == doctest::Approx(reference_adamw(b0[k], {gb[0][k]}, o, false)).epsilon(1e-14));

  set_grad(w, gw[1]);
  set_grad(b, gb[1]);
  opt.step();
  CHECK(opt.step_count() == 2);
  for (std::size_t k = 0; k < 4; ++k)
    CHECK(w.data()[k] == doctest::Approx(reference_adamw(w0[k], {gw[0][k], gw[1][k]}, o, true)).epsilon(1e-14));
  for (std::size_t k = 0; k < 3; ++k)
    CHECK(b.data()[k] == doctest::Approx(reference_adamw(b0[k], {gb[0][k], gb[1][k]}, o, false)).epsilon(1e-14));

  // The moments are visible by name: m = 0.9 * 0.1 * g1 + 0.1 * g2 for b[0].
  const auto state = opt.state();
  REQUIRE(state.size() == 4);
  CHECK(state[0].first == "m.w");
  CHECK(state[1].first == "m.b");
  CHECK(state[2].first == "v.w");
  CHECK(state[3].first == "v.b");
  CHECK(state[1].second.data()[0] == doctest::Approx(0.9 * 0.1 * 1.0 + 0.1 * 0.1));
  CHECK(state[3].second.data()[0] == doctest::Approx(0.99 * 0.01 * 1.0 + 0.01 * 0.01));
}

TEST_CASE("optim: AdamW weight decay touches 2-D parameters only") {
  auto w = Tensor<double>::from({2, 2}, {1.0, -2.0, 0.5, 3.0}, true);     // matrix: decayed
  auto e = Tensor<double>::from({3, 1}, {4.0, 5.0, 6.0}, true);           // embedding-like: decayed
  auto bias = Tensor<double>::from({2}, {1.0, -1.0}, true);               // 1-D: not decayed
  auto gain = Tensor<double>::from({1, 2, 2}, {1.0, 1.0, 1.0, 1.0}, true);  // 3-D: not decayed
  AdamW<double> opt({{"w", w}, {"e", e}, {"bias", bias}, {"gain", gain}}, {.lr = 0.1, .weight_decay = 0.5});
  // Zero gradients: m = v = 0, so the Adam part is 0 / (0 + eps) = 0 and only decay acts.
  for (auto* p : {&w, &e, &bias, &gain}) set_grad(*p, std::vector<double>(p->size(), 0.0));
  opt.step();
  const double f = 1 - 0.1 * 0.5;
  CHECK(values(w) == std::vector<double>{1.0 * f, -2.0 * f, 0.5 * f, 3.0 * f});
  CHECK(values(e) == std::vector<double>{4.0 * f, 5.0 * f, 6.0 * f});
  CHECK(values(bias) == std::vector<double>{1.0, -1.0});
  CHECK(values(gain) == std::vector<double>{1.0, 1.0, 1.0, 1.0});
}

TEST_CASE("optim: AdamW skips parameters without a gradient (no decay, no state change)") {
  auto w = Tensor<double>::from({2, 2}, {1.0, -2.0, 0.5, 3.0}, true);
  auto frozen = Tensor<double>::from({2, 2}, {7.0, 8.0, 9.0, 10.0}, true);  // 2-D, but never gets a gradient
  AdamW<double> opt({{"w", w}, {"frozen", frozen}});
  for (int i = 0; i < 3; ++i) {
    set_grad(w, {1.0, 1.0, 1.0, 1.0});
    opt.step();
  }
  CHECK(!frozen.has_grad());
  CHECK(values(frozen) == std::vector<double>{7.0, 8.0, 9.0, 10.0});
  for (const auto& [name, t] : opt.state())
    if (name.ends_with(".frozen")) CHECK(values(t) == std::vector<double>(4, 0.0));
  CHECK(values(w) != std::vector<double>{1.0, -2.0, 0.5, 3.0});
}

TEST_CASE("optim: AdamW state round trip resumes bit-identically") {
  const std::vector<double> w_init = {1.0, -2.0, 0.5, 3.0}, b_init = {0.25, -1.0};
  // A loss-like gradient that depends on the parameters and the step, so a wrong
  // resume would show.
  auto grads = [](const Tensor<double>& p, int step) {
    std::vector<double> g(p.size());
    for (std::size_t k = 0; k < g.size(); ++k) g[k] = p.data()[k] - 0.3 * double(k) + std::sin(double(step + k));
    return g;
  };
  const AdamWOptions o{.lr = 0.01};
  auto run = [&](AdamW<double>& opt, Tensor<double>& w, Tensor<double>& b, int from, int to) {
    for (int s = from; s < to; ++s) {
      set_grad(w, grads(w, s));
      set_grad(b, grads(b, s));
      opt.step(nn::warmup_cosine_lr(opt.step_count(), o.lr, 2, 6, o.lr / 10));
    }
  };

  auto w = Tensor<double>::from({2, 2}, w_init, true), b = Tensor<double>::from({2}, b_init, true);
  AdamW<double> straight({{"w", w}, {"b", b}}, o);
  run(straight, w, b, 0, 7);

  auto w1 = Tensor<double>::from({2, 2}, w_init, true), b1 = Tensor<double>::from({2}, b_init, true);
  AdamW<double> first({{"w", w1}, {"b", b1}}, o);
  run(first, w1, b1, 0, 3);
  const auto saved_state = first.state();
  const auto saved_step = first.step_count();
  CHECK(saved_step == 3);

  // A fresh model (parameters restored from the checkpoint) and a fresh optimiser.
  auto w2 = Tensor<double>::from({2, 2}, values(w1), true), b2 = Tensor<double>::from({2}, values(b1), true);
  AdamW<double> resumed({{"w", w2}, {"b", b2}}, o);
  resumed.load_state(saved_state, saved_step);
  CHECK(resumed.step_count() == 3);
  run(resumed, w2, b2, 3, 7);

  CHECK(values(w2) == values(w));  // bit-identical, not approximately equal
  CHECK(values(b2) == values(b));
  const auto s_straight = straight.state(), s_resumed = resumed.state();
  REQUIRE(s_straight.size() == s_resumed.size());
  for (std::size_t i = 0; i < s_straight.size(); ++i) CHECK(values(s_straight[i].second) == values(s_resumed[i].second));
  // state() is a snapshot: stepping on does not change what was saved.
  const auto saved_m = values(saved_state[0].second);
  run(first, w1, b1, 3, 4);
  CHECK(values(saved_state[0].second) == saved_m);
  CHECK(values(first.state()[0].second) != saved_m);
}

TEST_CASE("optim: AdamW load_state rejects wrong names and shapes, naming them, and changes nothing") {
  auto w = Tensor<double>::from({2, 2}, {1.0, -2.0, 0.5, 3.0}, true);
  auto b = Tensor<double>::from({2}, {0.25, -1.0}, true);
  AdamW<double> opt({{"w", w}, {"b", b}});
  set_grad(w, {1.0, 2.0, 3.0, 4.0});
  set_grad(b, {1.0, 2.0});
  opt.step();
  const auto before = opt.state();

  auto filled = [](const Shape& s) { return Tensor<double>(Array<double>(xt::ones<double>(s))); };
  const NamedTensors<double> good = {{"m.w", filled({2, 2})}, {"m.b", filled({2})}, {"v.w", filled({2, 2})}, {"v.b", filled({2})}};

  auto rejects = [&](NamedTensors<double> state, std::int64_t step, const std::string& needle) {
    bool threw = false;
    try {
      opt.load_state(state, step);
    } catch (const FormatError& e) {
      threw = true;
      INFO(e.what());
      CHECK(message_contains(e, needle));
    }
    CHECK(threw);
    // Nothing changed, not even the entries that came before the bad one.
    CHECK(opt.step_count() == 1);
    const auto now = opt.state();
    for (std::size_t i = 0; i < now.size(); ++i) CHECK(values(now[i].second) == values(before[i].second));
  };

  auto wrong_name = good;
  wrong_name[3].first = "v.bias";
  rejects(wrong_name, 5, "'v.bias'");
  auto wrong_shape = good;
  wrong_shape[2].second = filled({4});
  rejects(wrong_shape, 5, "'v.w'");
  rejects(wrong_shape, 5, "[4]");
  auto missing = good;
  missing.pop_back();
  rejects(missing, 5, "missing state 'v.b'");
  auto doubled = good;
  doubled.push_back(good[0]);
  rejects(doubled, 5, "'m.w' given twice");
  rejects(good, -1, "step count");
  rejects(good, (std::int64_t{1} << 53) + 1, "step count must be in [0, 2^53]");
  // Values are checked too. Second moments are finite and >= 0, first moments finite.
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (const double bad : {-1.0, nan, inf, -inf}) {
    auto bad_v = good;
    bad_v[2].second = Tensor<double>::from({2, 2}, {1.0, 1.0, bad, 1.0});
    rejects(bad_v, 5, "state 'v.w' holds");
    rejects(bad_v, 5, "at flat index 2 (its values must be finite and >= 0)");
  }
  for (const double bad : {nan, inf, -inf}) {
    auto bad_m = good;
    bad_m[1].second = Tensor<double>::from({2}, {bad, 1.0});
    rejects(bad_m, 5, "state 'm.b' holds");
  }
  auto negative_m = good;  // a first moment may be negative
  negative_m[0].second = Tensor<double>::from({2, 2}, {-1.0, 1.0, 1.0, 1.0});
  CHECK_NOTHROW(AdamW<double>({{"w", w}, {"b", b}}).load_state(negative_m, 5));

  opt.load_state(good, 5);  // the valid one goes through
  CHECK(opt.step_count() == 5);
  CHECK(values(opt.state()[0].second) == std::vector<double>(4, 1.0));
}

TEST_CASE("optim: AdamW updates a tensor tied under two names once, and runs in float") {
  auto w = Tensor<double>::from({1, 1}, {1.0}, true);
  AdamW<double> opt({{"wte", w}, {"lm_head", w}}, {.lr = 0.1, .weight_decay = 0});
  CHECK(opt.parameters().size() == 1);
  set_grad(w, {2.0});
  opt.step();
  CHECK(w.item() == doctest::Approx(0.9).epsilon(1e-7));  // one Adam step of ~lr, not two

  auto f = Tensor<float>::from({2}, {1.0f, -1.0f}, true);
  AdamW<float> fopt({{"f", f}}, {.lr = 0.1});
  f.accumulate_grad("test", Tensor<float>::from({2}, {1.0f, -1.0f}).value());
  fopt.step();
  CHECK(f.data()[0] == doctest::Approx(0.9f));
  CHECK(f.data()[1] == doctest::Approx(-0.9f));
}

TEST_CASE("optim: SGD with momentum follows the update rule and minimises a quadratic") {
  // By hand, constant gradient 1, lr 0.1, mu 0.9: b1 = 1, p1 = 0.9; b2 = 1.9, p2 = 0.71.
  auto x = Tensor<double>::from({1}, {1.0}, true);
  SGD<double> hand({{"x", x}}, {.lr = 0.1, .momentum = 0.9});
  set_grad(x, {1.0});
  hand.step();
  CHECK(x.item() == doctest::Approx(0.9));
  hand.step();
  CHECK(x.item() == doctest::Approx(0.71));
  REQUIRE(hand.state().size() == 1);
  CHECK(hand.state()[0].first == "momentum.x");
  CHECK(hand.state()[0].second.item() == doctest::Approx(1.9));

  // f(p) = 1/2 sum_i a_i (p_i - c_i)^2, gradient a (p - c).
  const std::vector<double> a = {1.0, 4.0, 0.5, 2.0}, c = {3.0, -1.0, 0.25, 2.0};
  auto p = Tensor<double>::from({2, 2}, {0.0, 0.0, 0.0, 0.0}, true);
  SGD<double> opt({{"p", p}}, {.lr = 0.1, .momentum = 0.9});
  auto loss = [&] {
    double f = 0;
    for (std::size_t k = 0; k < 4; ++k) f += 0.5 * a[k] * (p.data()[k] - c[k]) * (p.data()[k] - c[k]);
    return f;
  };
  const double f0 = loss();
  for (int s = 0; s < 300; ++s) {
    std::vector<double> g(4);
    for (std::size_t k = 0; k < 4; ++k) g[k] = a[k] * (p.data()[k] - c[k]);
    set_grad(p, g);
    opt.step();
  }
  CHECK(f0 > 1.0);
  CHECK(loss() < 1e-12);
  for (std::size_t k = 0; k < 4; ++k) CHECK(p.data()[k] == doctest::Approx(c[k]).epsilon(1e-6));
}

TEST_CASE("optim: SGD weight decay on 2-D only, state round trip, bad options") {
  auto w = Tensor<double>::from({1, 2}, {1.0, 2.0}, true);
  auto b = Tensor<double>::from({2}, {1.0, 2.0}, true);
  SGD<double> opt({{"w", w}, {"b", b}}, {.lr = 0.1, .weight_decay = 0.5});
  CHECK(opt.state().empty());  // no momentum, no buffers
  set_grad(w, {0.0, 0.0});
  set_grad(b, {0.0, 0.0});
  opt.step();
  CHECK(values(w) == std::vector<double>{1.0 - 0.1 * 0.5 * 1.0, 2.0 - 0.1 * 0.5 * 2.0});
  CHECK(values(b) == std::vector<double>{1.0, 2.0});

  auto x = Tensor<double>::from({2}, {1.0, 2.0}, true);
  SGD<double> m({{"x", x}}, {.lr = 0.1, .momentum = 0.5});
  set_grad(x, {1.0, -1.0});
  m.step();
  auto y = Tensor<double>::from({2}, values(x), true);
  SGD<double> n({{"x", y}}, {.lr = 0.1, .momentum = 0.5});
  n.load_state(m.state(), m.step_count());
  set_grad(y, {1.0, -1.0});
  m.step();
  n.step();
  CHECK(values(x) == values(y));
  CHECK_THROWS_WITH_AS(n.load_state({{"momentum.z", y}}, 1), doctest::Contains("'momentum.z'"), FormatError);
  CHECK_THROWS_AS(SGD<double>({{"x", x}}, {.momentum = -1}), ConfigError);
  CHECK_THROWS_AS(AdamW<double>({{"x", x}}, {.beta2 = 1.0}), ConfigError);
  CHECK_THROWS_AS(AdamW<double>({{"x", x}, {"x", y}}), ConfigError);
}

TEST_CASE("optim: clip_grad_norm returns the pre-clip norm and clips to max_norm") {
  auto a = Tensor<double>::from({2}, {3.0, 4.0}, true);
  auto b = Tensor<double>::from({1, 1}, {0.0}, true);
  auto none = Tensor<double>::from({2}, {1.0, 1.0}, true);  // no gradient: ignored
  const NamedTensors<double> params = {{"a", a}, {"b", b}, {"none", none}};
  auto global_norm = [&] {
    double s = 0;
    for (const auto& [name, p] : params)
      if (p.has_grad())
        for (std::size_t k = 0; k < p.size(); ++k) s += p.grad().data()[k] * p.grad().data()[k];
    return std::sqrt(s);
  };

  SUBCASE("above the threshold: scaled down to max_norm") {
    set_grad(a, {3.0, 4.0});
    set_grad(b, {12.0});
    const double norm = nn::clip_grad_norm(params, 1.0);
    CHECK(norm == doctest::Approx(13.0).epsilon(1e-15));
    CHECK(global_norm() == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(a.grad().data()[0] / a.grad().data()[1] == doctest::Approx(0.75));  // direction kept
    CHECK(!none.has_grad());
  }
  SUBCASE("under the threshold: gradients left alone") {
    set_grad(a, {3.0, 4.0});
    set_grad(b, {12.0});
    const double norm = nn::clip_grad_norm(params, 20.0);
    CHECK(norm == doctest::Approx(13.0).epsilon(1e-15));
    CHECK(values(Tensor<double>(a.grad())) == std::vector<double>{3.0, 4.0});
    CHECK(b.grad().data()[0] == 12.0);
  }
  SUBCASE("float gradients, norm accumulated in double") {
    auto f = Tensor<float>::from({3}, {0.f, 0.f, 0.f}, true);
    f.accumulate_grad("test", Tensor<float>::from({3}, {2.f, 3.f, 6.f}).value());
    const float norm = nn::clip_grad_norm(NamedTensors<float>{{"f", f}}, 1.0f);
    CHECK(norm == doctest::Approx(7.0f));
    CHECK(f.grad().data()[2] == doctest::Approx(6.0f / 7.0f));
  }
  CHECK_THROWS_AS(nn::clip_grad_norm(params, 0.0), ConfigError);
}

TEST_CASE("optim: warmup_cosine_lr schedule (nanoGPT get_lr convention)") {
  const double base = 1e-3, min = 1e-4;
  const std::int64_t warmup = 100, total = 1100;
  auto lr = [&](std::int64_t s) { return nn::warmup_cosine_lr(s, base, warmup, total, min); };
  CHECK(lr(0) == doctest::Approx(base / 101).epsilon(1e-15));          // step 0: base * 1 / (warmup + 1)
  CHECK(lr(99) == doctest::Approx(base * 100 / 101).epsilon(1e-15));   // last warm-up step
  CHECK(lr(100) == doctest::Approx(base).epsilon(1e-15));              // end of warm-up: the peak
  CHECK(lr(600) == doctest::Approx((base + min) / 2).epsilon(1e-15));  // half-way through the decay
  CHECK(lr(1100) == doctest::Approx(min).epsilon(1e-15));              // end of decay
  CHECK(lr(1101) == min);                                              // after: the floor
  CHECK(lr(100000) == min);
  for (std::int64_t s = 1; s < 1200; ++s) {  // rises through warm-up, then never rises again
    if (s <= warmup) CHECK(lr(s) > lr(s - 1));
    else CHECK(lr(s) <= lr(s - 1));
  }
  CHECK(nn::warmup_cosine_lr(0, base, 0, 10, min) == base);  // no warm-up
  CHECK(nn::warmup_cosine_lr(5, base, 5, 5, min) == min);    // no decay phase
  CHECK_THROWS_AS(nn::warmup_cosine_lr(-1, base, warmup, total, min), ConfigError);
  CHECK_THROWS_AS(nn::warmup_cosine_lr(0, base, 10, 5, min), ConfigError);
}

TEST_CASE("optim: train_step zeroes, backpropagates, clips and steps, and after a non-finite loss nothing changes") {
  const auto make_weight = [] { return Tensor<double>::from({2, 2}, {1, -2, 3, 0.5}, true); };
  Tensor<double> by_hand = make_weight(), stepped = make_weight();
  Tensor<double> x = Tensor<double>::from({1, 2}, {3, 4});
  const auto loss_of = [&x](const Tensor<double>& w) {
    return [&x, w](Tape& t) { return ops::sum(t, ops::matmul(t, x, w)); };
  };
  AdamW<double> hand_opt({{"w", by_hand}}), step_opt({{"w", stepped}});
  stepped.accumulate_grad("stale", Array<double>(xt::ones<double>({2, 2})));  // train_step must zero it first

  const auto result = nn::train_step(step_opt, 0.01, 0.5, loss_of(stepped));
  Tape tape;
  const auto loss = loss_of(by_hand)(tape);
  tape.backward(loss);
  const double norm = nn::clip_grad_norm<double>({{"w", by_hand}}, 0.5);  // dL/dw = x^T 1: norm sqrt(50), clipped
  hand_opt.step(0.01);

  CHECK(result.updated);
  CHECK(result.loss == loss.item());
  CHECK(result.grad_norm == doctest::Approx(std::sqrt(50.0)));
  CHECK(result.grad_norm == norm);
  for (std::size_t i = 0; i < 4; ++i) CHECK(stepped.data()[i] == by_hand.data()[i]);
  CHECK(step_opt.step_count() == 1);

  x.data()[0] = std::numeric_limits<double>::quiet_NaN();
  const Array<double> before = stepped.value();
  const auto skipped = nn::train_step(step_opt, 0.01, 0.5, loss_of(stepped));
  CHECK_FALSE(skipped.updated);
  CHECK(std::isnan(skipped.loss));
  CHECK(stepped.value() == before);
  CHECK(step_opt.step_count() == 1);
}
