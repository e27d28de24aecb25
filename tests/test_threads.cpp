// threads: the Context's thread count changes how work is shared, never the result.
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <type_traits>
#include <vector>

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::models;

namespace {

struct Run {
  std::vector<float> losses, norms;
  std::vector<Array<float>> weights;
};

// `steps` training steps (forward, backward, clip, AdamW) of `model` on random batches
// (B, T) of vocab 65 from a fixed seed, on `threads` threads.
template <class M>
Run train_model(M& model, std::size_t B, std::size_t T, int threads, int steps) {
  const Context context{threads};
  const auto params = model.named_parameters();
  AdamW<float> opt(params);
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<std::int64_t> token(0, 64);
  Run run;
  for (int step = 0; step < steps; ++step) {
    Ids x = Ids::from_shape({B, T}), y = x;
    for (auto& v : x) v = token(rng);
    for (auto& v : y) v = token(rng);
    Tape tape(context);
    opt.zero_grad();
    const Tensor<float> loss = model.loss(tape, x, y);
    run.losses.push_back(loss.item());
    tape.backward(loss);
    run.norms.push_back(clip_grad_norm(params, 1.0f, context));
    opt.step(1e-3, context);
  }
  for (const auto& [n, t] : params) run.weights.push_back(t.value());
  return run;
}

// The same for preset `name`'s GPT.
Run train(const char* name, int threads, int steps) {
  const Preset& p = find_preset(name);
  const GPTConfig c{
      .vocab_size = 65, .block_size = p.block_size, .n_layer = p.n_layer, .n_head = p.n_head, .d_model = p.d_model};
  GPT<float> model(c, 7);
  return train_model(model, p.batch, p.block_size, threads, steps);
}

bool same_bits(const Array<float>& a, const Array<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("threads: a Context is a checked thread count and nothing else") {
  static_assert(std::is_trivially_copyable_v<Context> &&
                sizeof(Context) == sizeof(int));  // making one allocates nothing
  CHECK(Context{}.threads() == 1);
  CHECK(Context{3}.threads() == 3);
  CHECK_THROWS_WITH_AS(Context{0}, "threads must be >= 1, got 0", ConfigError);
  CHECK_THROWS_AS(Context{-2}, ConfigError);
}

TEST_CASE("threads: a Context of 2 threads runs the blocks of one loop on 2 threads") {
  std::vector<std::thread::id> owner(64);
  parallel_blocks(Context{2}, owner.size(), 1, [&](std::size_t b, std::size_t) {
    owner[b] = std::this_thread::get_id();
    if (b == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the other thread takes blocks meanwhile
  });
  CHECK(std::set<std::thread::id>(owner.begin(), owner.end()).size() == 2);
}

// Blocks are handed out as threads come free: while one thread is held up on block 0 (as
// a thread the OS preempts would be), the other runs every other block. With a static
// split the held thread would own half of them and block 0 would wait for ever (here: 10 s).
TEST_CASE("threads: a thread held up on one block does not hold up the other blocks") {
  constexpr std::size_t kBlocks = 64;
  std::atomic<std::size_t> done{0};
  bool others_finished_first = false;
  parallel_blocks(Context{2}, kBlocks, 1, [&](std::size_t b, std::size_t) {
    if (b == 0) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (done.load() < kBlocks - 1 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
      others_finished_first = done.load() == kBlocks - 1;
    } else {
      done.fetch_add(1);
    }
  });
  CHECK(others_finished_first);
}

// The small preset's shapes cut every kernel into several blocks (GEMMs of 768 rows,
// GELU over 393k values, LayerNorm over 768 rows) and its attention has 48 (batch,
// head) matrices, so 1 and 2 threads share the work differently; the weights after
// 3 steps must still agree bit for bit.
TEST_CASE("threads: training preset small for 3 steps gives bit-identical losses and weights at 1 and 2 threads") {
  const Run one = train("small", 1, 3), two = train("small", 2, 3);
  CHECK(one.losses == two.losses);
  CHECK(one.norms == two.norms);
  REQUIRE(one.weights.size() == two.weights.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < one.weights.size(); ++i) differing += same_bits(one.weights[i], two.weights[i]) ? 0 : 1;
  CHECK_MESSAGE(differing == 0, differing << " of " << one.weights.size() << " parameters differ");
}

TEST_CASE(
    "threads: a Llama (B 12, T 64, d 128) trained 3 steps gives bit-identical losses and weights at 1 and 2 threads") {
  const LlamaConfig c{.vocab_size = 65,
                      .block_size = 64,
                      .n_layer = 2,
                      .n_head = 4,
                      .d_model = 128,
                      .d_hidden = swiglu_hidden_size(128)};
  const auto run = [&](int threads) {
    Llama<float> model(c, 7);
    return train_model(model, 12, 64, threads, 3);
  };
  const Run one = run(1), two = run(2);
  CHECK(one.losses == two.losses);
  CHECK(one.norms == two.norms);
  REQUIRE(one.weights.size() == two.weights.size());
  for (std::size_t i = 0; i < one.weights.size(); ++i) CHECK(same_bits(one.weights[i], two.weights[i]));
}
