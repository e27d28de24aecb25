// tapegrad/core/parallel.hpp — the execution context ops run with, and the fixed-block
// loops every kernel splits its work with.
//
// A Context says how many threads an op may use, and nothing else: a plain value,
// checked once when it is made (a count below 1 is a ConfigError), whose default (one
// thread, serial) allocates nothing, so a kernel may make one inside a parallel loop.
// It travels with the computation: the Tape carries one (tape.context()), ops read it
// when they run and their backward rules keep the one they were recorded with;
// optimisers' step, clip_grad_norm and generate take one. Two tapes in one process may
// use different counts. (The buffers a training loop recycles are a separate thing,
// a BufferPool (memory.hpp), owned by the loop and handed to its tapes.)
//
// Work over n items is cut into blocks of a size fixed by the kernel (never by the
// thread count), the blocks are handed out dynamically, and a reduction keeps one
// partial per block and adds the partials in block order. So every result is the
// same, bit for bit, at any thread count (tests: "training ... bit-identical ...").
//
// The threads are a small process-wide pool (detail::BlockPool), not an OpenMP team: the
// calling thread takes blocks from an atomic counter and helpers join as they wake. A
// helper the OS has not scheduled yet (a loaded machine) is simply not waited for: the
// caller runs the blocks itself and waits only for blocks a helper has actually taken.
// An OpenMP region would wait at its join for every thread of the team, so on a loaded
// 2-core machine every op stalled for a time slice and 2 threads ran slower than 1.
// Helpers spin briefly between loops (a step runs hundreds of them) and then sleep.
#pragma once

#include "error.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tapegrad {

class Context {
 public:
  Context() = default;  // one thread
  // `threads` >= 1, else a ConfigError: the one place a thread count is checked.
  explicit Context(int threads) : threads_(threads) {
    if (threads < 1) throw ConfigError("threads must be >= 1, got " + std::to_string(threads));
  }
  int threads() const { return threads_; }

 private:
  int threads_ = 1;
};

inline std::size_t block_count(std::size_t n, std::size_t block) { return (n + block - 1) / block; }

namespace detail {

// The helper threads parallel_blocks shares blocks with: started on first use, as many as
// the largest Context asked for minus one, kept until the process ends. One loop at a time
// (a second caller, or a loop nested in a block, runs serially: same blocks, same results).
class BlockPool {
 public:
  static BlockPool& instance() {
    static BlockPool pool;
    return pool;
  }

  // body(b) for b in [0, blocks) on the calling thread and up to `helpers` pool threads;
  // false (nothing run) when the pool is busy or the caller is itself inside a loop.
  template <class Body>
  bool run(int helpers, std::size_t blocks, Body& body) {
    if (inside_loop() || !busy_.try_lock()) return false;
    std::lock_guard busy(busy_, std::adopt_lock);
    grow(helpers);
    {
      std::lock_guard lock(job_mutex_);
      call_ = [](void* b, std::size_t i) { (*static_cast<Body*>(b))(i); };
      body_ = &body;
      blocks_ = blocks;
      wanted_ = helpers;
      joined_ = 0;
      open_ = true;
      error_ = nullptr;
      next_.store(0, std::memory_order_relaxed);
      finished_.store(0, std::memory_order_relaxed);
    }
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    inside_loop() = true;
    take_blocks();
    inside_loop() = false;
    {
      std::lock_guard lock(job_mutex_);
      open_ = false;  // no helper joins from here on
    }
    // Wait only for blocks helpers are running (a helper that never woke holds none).
    for (int spin = 0;
         finished_.load(std::memory_order_acquire) < blocks || active_.load(std::memory_order_acquire) > 0;)
      if (++spin > kSpin) std::this_thread::yield();
    if (error_) std::rethrow_exception(error_);
    return true;
  }

  ~BlockPool() {
    stop_.store(true);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  static constexpr int kSpin = 4000;           // pause-loop rounds before yielding / sleeping
  static constexpr int kHelperSpin = 1 << 16;  // a helper's rounds of looking for the next loop (~100 us)

  static bool& inside_loop() {
    thread_local bool inside = false;
    return inside;
  }

  // New helpers start from the generation before the loop about to be published, so they
  // see that loop however late they start.
  void grow(int helpers) {
    const std::uint32_t before = generation_.load(std::memory_order_acquire);
    while (int(threads_.size()) < helpers) threads_.emplace_back([this, before] { helper(before); });
  }

  void take_blocks() {
    for (std::size_t b; (b = next_.fetch_add(1, std::memory_order_relaxed)) < blocks_;) {
      try {
        call_(body_, b);
      } catch (...) {
        std::lock_guard lock(job_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      finished_.fetch_add(1, std::memory_order_release);
    }
  }

  void helper(std::uint32_t seen) {
    inside_loop() = true;
    while (true) {
      std::uint32_t g = seen;
      for (int spin = 0; (g = generation_.load(std::memory_order_acquire)) == seen; ++spin)
        if (spin > kHelperSpin) {
          generation_.wait(seen, std::memory_order_acquire);
          spin = 0;
        }
      seen = g;
      if (stop_.load()) return;
      {
        std::lock_guard lock(job_mutex_);
        if (!open_ || joined_ >= wanted_ || next_.load(std::memory_order_relaxed) >= blocks_) continue;
        ++joined_;
        active_.fetch_add(1, std::memory_order_relaxed);
      }
      take_blocks();
      active_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::mutex busy_;       // held by the loop running
  std::mutex job_mutex_;  // guards joining the loop and its fields below
  std::vector<std::thread> threads_;
  std::atomic<std::uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
  void (*call_)(void*, std::size_t) = nullptr;
  void* body_ = nullptr;
  std::size_t blocks_ = 0;
  int wanted_ = 0, joined_ = 0;
  bool open_ = false;
  std::exception_ptr error_;
  std::atomic<std::size_t> next_{0}, finished_{0};
  std::atomic<int> active_{0};
};

}  // namespace detail

// f(begin, end) for each block [begin, end) of [0, n) cut every `block` items, on up to
// ctx.threads() threads, each taking the next block when free. Blocks must write disjoint data.
template <class F>
void parallel_blocks(const Context& ctx, std::size_t n, std::size_t block, F&& f) {
  const std::size_t blocks = block_count(n, block);
  const int threads = int(std::min<std::size_t>(std::size_t(ctx.threads()), blocks));
  auto body = [&](std::size_t b) { f(b * block, std::min(n, (b + 1) * block)); };
  if (threads > 1 && detail::BlockPool::instance().run(threads - 1, blocks, body)) return;
  for (std::size_t b = 0; b < blocks; ++b) body(b);
}

// f(s, begin, end) for each block [begin, end) of each segment s of sizes[s] items (a
// segment cut every `block` items from its start), the blocks of all segments in one
// loop: one wait at its end instead of one per segment (an optimiser's parameters).
// Blocks must write disjoint data.
template <class F>
void parallel_segments(const Context& ctx, const std::vector<std::size_t>& sizes, std::size_t block, F&& f) {
  std::vector<std::pair<std::size_t, std::size_t>> blocks;
  for (std::size_t s = 0; s < sizes.size(); ++s)
    for (std::size_t b = 0; b < sizes[s]; b += block) blocks.emplace_back(s, b);
  parallel_blocks(ctx, blocks.size(), 1, [&](std::size_t i, std::size_t) {
    const auto [s, b] = blocks[i];
    f(s, b, std::min(sizes[s], b + block));
  });
}

// The sum over blocks of f(begin, end) -> R, the partials added in block order.
template <class R, class F>
R parallel_sum(const Context& ctx, std::size_t n, std::size_t block, F&& f) {
  std::vector<R> partial(block_count(n, block), R(0));
  parallel_blocks(ctx, n, block, [&](std::size_t b, std::size_t e) { partial[b / block] = f(b, e); });
  R sum = R(0);
  for (const R& p : partial) sum += p;
  return sum;
}

// out[0, width) += sum over blocks of rows of f(begin, end, partial), where f adds its
// rows' contribution into `partial` (width values, zeroed); partials are added in block
// order. For column sums over rows (bias and LayerNorm gradients).
template <class T, class F>
void parallel_column_sum(const Context& ctx, std::size_t rows, std::size_t block, std::size_t width, T* out, F&& f) {
  const std::size_t blocks = block_count(rows, block);
  std::vector<T> partial(blocks * width, T(0));
  parallel_blocks(ctx, rows, block, [&](std::size_t b, std::size_t e) { f(b, e, partial.data() + (b / block) * width); });
  for (std::size_t k = 0; k < blocks; ++k)
    for (std::size_t j = 0; j < width; ++j) out[j] += partial[k * width + j];
}

// Items per block for element-wise loops: large enough that a block's work outweighs
// handing it to a thread.
inline constexpr std::size_t kElementBlock = 1 << 14;

}  // namespace tapegrad
