// threads: the Context's thread count changes how work is shared, never the result.
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <omp.h>

#include <cstring>
#include <random>
#include <set>
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

// `steps` training steps (forward, backward, clip, AdamW) of preset `name` (vocab 65,
// random batches from a fixed seed) on `threads` threads.
Run train(const char* name, int threads, int steps) {
  const Preset& p = find_preset(name);
  const GPTConfig c{.vocab_size = 65, .block_size = p.block_size, .n_layer = p.n_layer, .n_head = p.n_head, .d_model = p.d_model};
  GPT<float> model(c, 7);
  const Context context{threads};
  const auto params = model.named_parameters();
  AdamW<float> opt(params);
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<std::int64_t> token(0, 64);
  Run run;
  for (int step = 0; step < steps; ++step) {
    Ids x = Ids::from_shape({p.batch, p.block_size}), y = x;
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
  std::vector<int> owner(64, -1);
  parallel_blocks(Context{2}, owner.size(), 1, [&](std::size_t b, std::size_t) { owner[b] = omp_get_thread_num(); });
  CHECK(std::set<int>(owner.begin(), owner.end()) == std::set<int>{0, 1});
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
