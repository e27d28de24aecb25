// memory: the buffer pool a training loop owns and each of its Tapes recycles (core/memory.hpp).
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <type_traits>
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

namespace {

// Fills `copies` pooled buffers of each of these element counts with NaN and hands them back
// to `pool`, so the next buffers of those sizes it hands out hold NaN.
template <class T>
void poison(const std::shared_ptr<BufferPool>& pool, const std::vector<std::size_t>& sizes, int copies = 4) {
  Tape tape(Context{1}, pool);
  std::vector<Array<T>> held;
  for (std::size_t n : sizes)
    for (int c = 0; c < copies; ++c) {
      held.push_back(Array<T>::from_shape({n}));
      held.back().fill(std::numeric_limits<T>::quiet_NaN());
    }
}

// matmul and linear on (M, K) x (K, N): the gradients of x and W, which their GEMMs write
// first (beta = 0), computed in buffers the pool filled with NaN, against plain loops.
template <class T>
void check_fresh_gradients(std::size_t M, std::size_t K, std::size_t N) {
  CAPTURE(M);
  CAPTURE(K);
  CAPTURE(N);
  Array<T> xv = Array<T>::from_shape({M, K}), wv = Array<T>::from_shape({K, N}), seed = Array<T>::from_shape({M, N});
  for (std::size_t i = 0; i < xv.size(); ++i) xv.data()[i] = T(std::sin(0.7 * double(i)));
  for (std::size_t i = 0; i < wv.size(); ++i) wv.data()[i] = T(std::cos(0.3 * double(i)));
  for (std::size_t i = 0; i < seed.size(); ++i) seed.data()[i] = T(std::sin(1.1 * double(i) + 0.5));
  std::vector<double> dx(M * K, 0.0), dw(K * N, 0.0);  // dx = seed W^T, dW = x^T seed
  for (std::size_t m = 0; m < M; ++m)
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t k = 0; k < K; ++k) {
        dx[m * K + k] += double(seed.data()[m * N + n]) * double(wv.data()[k * N + n]);
        dw[k * N + n] += double(xv.data()[m * K + k]) * double(seed.data()[m * N + n]);
      }
  const double tol = std::is_same_v<T, float> ? 1e-4 * double(M + N + K) : 1e-10;
  for (const bool with_bias : {false, true}) {
    CAPTURE(with_bias);
    const auto pool = std::make_shared<BufferPool>();
    poison<T>(pool, {M * K, K * N});
    Tensor<T> x(xv, true), w(wv, true), b = Tensor<T>::zeros({N}, true);
    Tape tape(Context{2}, pool);
    const Tensor<T> y = with_bias ? ops::linear(tape, x, w, b) : ops::matmul(tape, x, w);
    tape.backward(y, seed);
    const auto worst = [](const Array<T>& got, const std::vector<double>& want) {  // NaN if any value is NaN
      double m = 0;
      for (std::size_t i = 0; i < want.size(); ++i) {
        const double d = std::abs(double(got.data()[i]) - want[i]);
        m = std::isnan(m) || std::isnan(d) ? d + m : std::max(m, d);
      }
      return m;
    };
    CHECK(worst(x.grad(), dx) < tol);  // false for NaN
    CHECK(worst(w.grad(), dw) < tol);
  }
}

}  // namespace

TEST_CASE("memory: gradients a GEMM writes first never read their pooled buffers, which may hold NaN") {
  for (const auto& [M, K, N] :
       std::vector<std::array<std::size_t, 3>>{
           {1, 16, 8},       // one row: dx by a GEMV
           {4, 8, 8},        // tapegrad's small-matrix kernel
           {256, 96, 128}})  // a GEMM cut into blocks of rows (dx) and columns (dW), on 2 threads
  {
    check_fresh_gradients<float>(M, K, N);
    check_fresh_gradients<double>(M, K, N);
  }
}
