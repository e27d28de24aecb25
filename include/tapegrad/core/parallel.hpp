// tapegrad/core/parallel.hpp — the execution context ops run with, and the fixed-block
// loops every kernel splits its work with.
//
// A Context says how many threads an op may use. It travels with the computation:
// the Tape carries one (tape.context()), ops read it when they run and their backward
// rules keep the one they were recorded with; optimisers and clip_grad_norm take one.
// Two tapes in one process may use different counts.
//
// Work over n items is cut into blocks of a size fixed by the kernel (never by the
// thread count), the blocks are handed out dynamically (a thread takes the next block
// when it is done with one, so a thread the OS preempts holds up only the block it is
// on, not a fixed share of the work), and a reduction keeps one
// partial per block and adds the partials in block order. So every result is the
// same, bit for bit, at any thread count (tests: "training ... bit-identical ...").
// Threads come from OpenMP; without it (no -fopenmp) everything runs serially.
#pragma once

#include "memory.hpp"

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

namespace tapegrad {

struct Context {
  int threads = 1;  // >= 1
  // The buffers the tapes made with this Context recycle (memory.hpp); copies of a
  // Context share it, so it outlives each step's Tape. Null: no recycling.
  std::shared_ptr<BufferPool> pool = std::make_shared<BufferPool>();
};

inline std::size_t block_count(std::size_t n, std::size_t block) { return (n + block - 1) / block; }

// f(begin, end) for each block [begin, end) of [0, n) cut every `block` items, on up to
// ctx.threads threads, each taking the next block when free. Blocks must write disjoint data.
template <class F>
void parallel_blocks(const Context& ctx, std::size_t n, std::size_t block, F&& f) {
  const std::size_t blocks = block_count(n, block);
  [[maybe_unused]] const int threads = int(std::min<std::size_t>(std::size_t(std::max(ctx.threads, 1)), blocks));
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
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
