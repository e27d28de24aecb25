// checkpoint: a block recorded as one node and replayed in backward gives the gradients of
// the same model without it, bit for bit, and keeps the tape's other contracts (gradient-final
// hooks, anomaly mode, the buffer pool).
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace tapegrad;
using namespace tapegrad::models;

namespace {

struct Batch {
  Ids inputs, targets;
};

Batch random_batch(std::size_t B, std::size_t T, std::int64_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<std::int64_t> token(0, vocab - 1);
  Batch b{Ids::from_shape({B, T}), Ids::from_shape({B, T})};
  for (auto& v : b.inputs) v = token(rng);
  for (auto& v : b.targets) v = token(rng);
  return b;
}

struct Trace {
  std::vector<float> losses;
  std::vector<Array<float>> gradients;  // every parameter's, after each step's backward
  std::vector<Array<float>> weights;    // after the last step
};

// `steps` AdamW steps of a 3-block GPT (d 48, 4 heads, T 24, batch 5) on `threads` threads.
Trace train(bool checkpointed, int threads, int steps) {
  GPT<float> model({.vocab_size = 29, .block_size = 24, .n_layer = 3, .n_head = 4, .d_model = 48}, 11);
  model.checkpoint_blocks = checkpointed;
  nn::AdamW<float> opt(model.named_parameters());
  const auto pool = std::make_shared<BufferPool>();
  std::mt19937_64 rng(3);
  Trace trace;
  for (int step = 0; step < steps; ++step) {
    const Batch b = random_batch(5, 24, 29, rng);
    const auto r = nn::train_step(
        opt, 3e-3, 1.0, [&](Tape& tape) { return model.loss(tape, b.inputs, b.targets); }, Context{threads}, pool);
    trace.losses.push_back(float(r.loss));
    for (const auto& [name, p] : opt.parameters()) trace.gradients.push_back(p.grad());
  }
  for (const auto& [name, p] : model.named_parameters()) trace.weights.push_back(p.value());
  return trace;
}

bool same_bits(const std::vector<Array<float>>& a, const std::vector<Array<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0)
      return false;
  return true;
}

}  // namespace

TEST_CASE("checkpoint: a GPT whose blocks are checkpointed trains bit-identically to the plain one, at 1 and 2 threads") {
  const Trace plain = train(false, 1, 3);
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    const Trace checkpointed = train(true, threads, 3);
    CHECK(checkpointed.losses == plain.losses);
    CHECK(same_bits(checkpointed.gradients, plain.gradients));
    CHECK(same_bits(checkpointed.weights, plain.weights));
  }
}

TEST_CASE("checkpoint: the tape keeps one node in place of the ops of each block but the last") {
  GPT<float> model({.vocab_size = 13, .block_size = 8, .n_layer = 3, .n_head = 2, .d_model = 8}, 1);
  std::mt19937_64 rng(1);
  const Batch b = random_batch(2, 8, 13, rng);
  Tape plain;
  model.loss(plain, b.inputs, b.targets);
  Tape one_block;
  model.h[0].forward(one_block, Tensor<float>::zeros({2, 8, 8}, true));
  model.checkpoint_blocks = true;
  Tape tape;
  model.loss(tape, b.inputs, b.targets);
  const auto names = tape.op_names();
  // Every block but the last (its backward follows its forward at once: nothing to save).
  CHECK(std::count(names.begin(), names.end(), "checkpoint") == 2);
  CHECK(one_block.size() > 10);
  CHECK(tape.size() == plain.size() - 2 * one_block.size() + 2);
}

TEST_CASE("checkpoint: a parameter inside a checkpointed block gets its gradient-final hook once the block is replayed, "
          "in the plain model's order") {
  struct Event {
    std::string name;
    Array<float> grad_at_hook;
    bool first_block_untouched;  // h.0.attn.w_q had no gradient yet
  };
  auto run = [](bool checkpointed) {
    GPT<float> model({.vocab_size = 17, .block_size = 10, .n_layer = 3, .n_head = 2, .d_model = 8}, 4);
    model.checkpoint_blocks = checkpointed;
    std::vector<Event> events;
    const auto params = nn::without_tied(model.named_parameters());
    const Tensor<float> first_block_wq = model.h[0].attn.w_q;
    for (const auto& [name, p] : params)
      p.add_gradient_final_hook([&events, &first_block_wq, name = name](Array<float>& g) {
        events.push_back({name, g, !first_block_wq.has_grad()});
      });
    std::mt19937_64 rng(9);
    const Batch b = random_batch(3, 10, 17, rng);
    Tape tape;
    tape.backward(model.loss(tape, b.inputs, b.targets));
    for (auto& e : events) {
      const auto it = std::find_if(params.begin(), params.end(), [&](const auto& np) { return np.first == e.name; });
      CHECK_MESSAGE(e.grad_at_hook == it->second.grad(), e.name << "'s gradient was not final at its hook");
    }
    return events;
  };
  const auto plain = run(false), checkpointed = run(true);
  REQUIRE(checkpointed.size() == plain.size());
  for (std::size_t i = 0; i < plain.size(); ++i) {
    CHECK(checkpointed[i].name == plain[i].name);
    if (checkpointed[i].name.starts_with("h.1."))
      CHECK_MESSAGE(checkpointed[i].first_block_untouched, checkpointed[i].name << "'s hook waited for block 0's replay");
  }
}

TEST_CASE("checkpoint: anomaly mode reaches inside the block and names the op and module there") {
  GPT<float> model({.vocab_size = 11, .block_size = 6, .n_layer = 3, .n_head = 2, .d_model = 8}, 2);
  model.checkpoint_blocks = true;
  std::mt19937_64 rng(2);
  const Batch b = random_batch(2, 6, 11, rng);
  SUBCASE("finite values: the same gradients as without anomaly mode") {
    Tape quiet;
    quiet.backward(model.loss(quiet, b.inputs, b.targets));
    const Array<float> expected = model.h[1].mlp.w_1.grad();
    model.zero_grad();
    Tape checked;
    checked.set_detect_anomaly(true);
    checked.backward(model.loss(checked, b.inputs, b.targets));
    CHECK(model.h[1].mlp.w_1.grad() == expected);
  }
  SUBCASE("a NaN weight in the second block") {
    model.h[1].mlp.w_1.data()[3] = std::nanf("");
    Tape tape;
    tape.set_detect_anomaly(true);
    try {
      model.loss(tape, b.inputs, b.targets);
      FAIL("no AnomalyError");
    } catch (const AnomalyError& e) {
      CHECK(e.op == "linear");
      CHECK(e.module_path == "h.1.mlp");
    }
  }
}

TEST_CASE("checkpoint: the replays take their buffers from the pool: from the second step on nothing is allocated") {
  GPT<float> model({.vocab_size = 19, .block_size = 16, .n_layer = 3, .n_head = 2, .d_model = 16}, 3);
  model.checkpoint_blocks = true;
  nn::AdamW<float> opt(model.named_parameters());
  const auto pool = std::make_shared<BufferPool>();
  std::mt19937_64 rng(4);
  std::vector<std::size_t> misses;
  for (int step = 0; step < 3; ++step) {
    const Batch b = random_batch(3, 16, 19, rng);
    nn::train_step(opt, 1e-3, 1.0, [&](Tape& tape) { return model.loss(tape, b.inputs, b.targets); }, {}, pool);
    misses.push_back(pool->misses());
  }
  CHECK(misses[0] > 0);
  CHECK(misses[2] == misses[1]);
}

TEST_CASE("checkpoint: under a no-grad scope it is the block itself, and records nothing") {
  Tape tape;
  const auto w = Tensor<double>::from({2, 2}, {1.0, 2.0, -1.0, 0.5}, true);
  const auto x = Tensor<double>::from({1, 2}, {3.0, -1.0}, true);
  const auto block = [&](Tape& t, const Tensor<double>& in) { return ops::matmul(t, in, w); };
  NoGradGuard no_grad(tape);
  const Tensor<double> y = checkpoint(tape, block, x);
  CHECK(tape.size() == 0);
  CHECK(y.value() == ops::matmul(tape, x, w).value());
}

namespace {

// y = x, recorded with a closure that owns a token (what a real op's saved values would be)
// and, in backward, runs `on_backward` before passing the gradient on. Its name is made on
// first use, and the test erases it from the op registry.
Tensor<double> token_pass(Tape& tape, const Tensor<double>& x, std::weak_ptr<int>& token,
                          std::function<void()> on_backward = {}) {
  static const OpName kTokenPass{"test_checkpoint_token_pass"};
  const auto saved = std::make_shared<int>(0);
  token = saved;
  Tensor<double> y(Array<double>(x.value()));
  return tape.record(
      kTokenPass, y,
      [x, y = GradRef<double>(y), saved, on_backward]() {
    if (on_backward) on_backward();
    x.accumulate_grad("test_checkpoint_token_pass", y.grad());
      },
      x);
}

}  // namespace

TEST_CASE("checkpoint: what an op saved is freed once its rule has run, inside a replay and on the recording tape") {
  std::weak_ptr<int> first_in_block, second_in_block, after_block;
  bool replayed = false, second_freed = false, after_freed = false;
  const auto block = [&](Tape& t, const Tensor<double>& in) {
    const auto h = token_pass(t, in, first_in_block, [&] {
      replayed = true;
      second_freed = second_in_block.expired();  // the later op of the same replay
      after_freed = after_block.expired();       // an op after the block on the outer tape
    });
    return token_pass(t, h, second_in_block);
  };
  Tape tape;
  const auto x = Tensor<double>::from({3}, {1.0, -2.0, 0.5}, true);
  const auto y = token_pass(tape, checkpoint(tape, block, x), after_block);
  CHECK_FALSE(after_block.expired());  // recorded, not yet replayed
  tape.backward(y, Array<double>(xt::ones<double>({3})));
  CHECK(replayed);
  CHECK(second_freed);
  CHECK(after_freed);
  CHECK(x.grad() == Array<double>(xt::ones<double>({3})));
  OpName::registry().erase("test_checkpoint_token_pass");  // not a real op: keep the op table's coverage honest
}
