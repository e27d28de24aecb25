// memory: the buffer pool a training loop owns and each of its Tapes recycles (core/memory.hpp).
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::models;

namespace {

struct Counts {
  std::size_t hits, misses;
};

struct Run {
  std::vector<float> losses;
  std::vector<Array<float>> weights;
  std::vector<Counts> after_step;  // the pool's counters after each step (empty without a pool)
};

// `steps` nn::train_step calls on a tiny GPT (random batches from a fixed seed), recycling `pool` (null: none).
Run train(const std::shared_ptr<BufferPool>& pool, int steps) {
  const GPTConfig c{.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .d_model = 16};
  GPT<float> model(c, 3);
  const auto params = model.named_parameters();
  AdamW<float> opt(params);
  std::mt19937_64 rng(9);
  std::uniform_int_distribution<std::int64_t> token(0, 10);
  Run run;
  for (int step = 0; step < steps; ++step) {
    Ids x = Ids::from_shape({4, 8}), y = x;
    for (auto& v : x) v = token(rng);
    for (auto& v : y) v = token(rng);
    const StepResult r = train_step(
        opt, 1e-3, 1.0, [&](Tape& tape) { return model.loss(tape, x, y); }, Context{1}, pool);
    REQUIRE(r.updated);
    run.losses.push_back(float(r.loss));
    if (pool) run.after_step.push_back({pool->hits(), pool->misses()});
  }
  for (const auto& [n, t] : params) run.weights.push_back(t.value());
  return run;
}

}  // namespace

TEST_CASE("memory: the second training step takes its buffers from the pool the first step filled") {
  const auto pool = std::make_shared<BufferPool>();
  const Run run = train(pool, 3);
  REQUIRE(run.after_step.size() == 3);
  const Counts first = run.after_step[0];
  const Counts second{run.after_step[1].hits - first.hits, run.after_step[1].misses - first.misses};
  CHECK(first.misses > 0);
  CHECK(second.hits > 0);
  CHECK_MESSAGE(second.misses == 0, "step 2: " << second.hits << " hits, " << second.misses << " misses");
  CHECK(run.after_step[2].misses == run.after_step[1].misses);
  CHECK(pool->cached_bytes() > 0);  // the last step's activations, kept for a next one
}

TEST_CASE("memory: training gives bit-identical losses and weights with and without a pool") {
  const Run a = train(std::make_shared<BufferPool>(), 3), b = train(nullptr, 3);
  CHECK(a.losses == b.losses);
  REQUIRE(a.weights.size() == b.weights.size());
  for (std::size_t i = 0; i < a.weights.size(); ++i)
    CHECK(std::memcmp(a.weights[i].data(), b.weights[i].data(), a.weights[i].size() * sizeof(float)) == 0);
}

TEST_CASE("memory: a pool frees what it caches when it is destroyed, and its blocks outlive it") {
  auto pool = std::make_shared<BufferPool>();
  std::weak_ptr<BufferPool> watch = pool;
  std::vector<Array<float>> kept;
  {
    Tape tape(Context{1}, pool);
    Array<float> scratch = Array<float>::from_shape({256, 256});
    kept.push_back(Array<float>::from_shape({128}));
    scratch.fill(1.0f);
  }  // scratch went back to the pool, which stays alive with the shared_ptr here
  CHECK(pool->cached_bytes() == 256 * 256 * sizeof(float));
  {
    Tape tape(Context{1}, pool);
    Array<float> again = Array<float>::from_shape({256, 256});  // the same block again
    CHECK(pool->hits() == 1);
    CHECK(pool->cached_bytes() == 0);
  }
  pool->release();
  CHECK(pool->cached_bytes() == 0);
  pool.reset();
  CHECK(watch.expired());  // its owner here and the Tapes that held it are gone
  kept[0].fill(2.0f);      // a block from the destroyed pool is a plain block: usable, and freed without it
  CHECK(kept[0](127) == 2.0f);
}

TEST_CASE("memory: what the pool holds never exceeds twice the most it had handed out at once") {
  BufferPool pool;
  void* a = pool.allocate(1000);
  void* b = pool.allocate(3000);
  pool.deallocate(a, 1000);
  pool.deallocate(b, 3000);
  CHECK(pool.cached_bytes() == 4000);  // the high-water mark: 4000 bytes handed out
  void* c = pool.allocate(2000);       // a miss within the cap (8000): nothing evicted
  CHECK(pool.cached_bytes() == 4000);
  void* d = pool.allocate(5000);  // peak 7000, cap 14000: still nothing evicted
  CHECK(pool.cached_bytes() == 4000);
  pool.deallocate(c, 2000);
  pool.deallocate(d, 5000);
  CHECK(pool.cached_bytes() == 11000);
  void* e = pool.allocate(7000);  // 7000 + 11000 > 14000: blocks go until cached <= 7000
  CHECK(pool.misses() == 5);
  CHECK(pool.cached_bytes() <= 7000);
  pool.deallocate(e, 7000);
}

TEST_CASE("memory: a Tape makes its pool the active one only while it lives, on its own thread") {
  const auto pool = std::make_shared<BufferPool>();
  CHECK(active_buffer_pool == nullptr);
  {
    Tape outer(Context{1}, pool);
    CHECK(active_buffer_pool == pool);
    {
      Tape inner(Context{1});
      CHECK(active_buffer_pool == nullptr);
    }
    CHECK(active_buffer_pool == pool);
    bool worker_has_none = false;
    std::thread([&] { worker_has_none = active_buffer_pool == nullptr; }).join();
    CHECK(worker_has_none);
  }
  CHECK(active_buffer_pool == nullptr);
}
