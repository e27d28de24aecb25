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
// thread count), the blocks are shared out statically, and a reduction keeps one
// partial per block and adds the partials in block order. So every result is the
// same, bit for bit, at any thread count (tests: "training ... bit-identical ...").
// Threads come from OpenMP; without it (no -fopenmp) everything runs serially.
#pragma once

#include "error.hpp"

#include <algorithm>
#include <cstddef>
#include <string>
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

// f(begin, end) for each block [begin, end) of [0, n) cut every `block` items, on up to
// ctx.threads() threads. Blocks must write disjoint data.
template <class F>
void parallel_blocks(const Context& ctx, std::size_t n, std::size_t block, F&& f) {
  const std::size_t blocks = block_count(n, block);
  [[maybe_unused]] const int threads = int(std::min<std::size_t>(std::size_t(ctx.threads()), blocks));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (std::size_t b = 0; b < blocks; ++b) f(b * block, std::min(n, (b + 1) * block));
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
