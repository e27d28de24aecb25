// tapegrad/core/memory.hpp — the buffers a training step recycles.
//
// A training step allocates its activations and gradients, frees them when the tape
// is destroyed or cleared, and allocates the same sizes again next step. glibc hands
// large blocks back to the kernel, so without recycling every step page-faults them in
// again (a third of a `small` preset step). A BufferPool keeps freed element buffers
// (Array<T>, tensor.hpp) in free lists by exact byte size and hands them out again.
//
// Who owns it: whoever owns the training loop (or any loop of tapes: a sampler) makes
// one, as a shared_ptr, and hands it to each Tape it makes (Tape(context, pool);
// nn::train_step passes it on), so the pool outlives the per-step tapes. A Tape makes
// its pool the active one of its thread for its lifetime (PoolScope). PoolAllocator,
// the allocator of Array<T>, consults the active pool of the calling thread; with none
// active (an OpenMP worker, code outside every tape, a tape given no pool) it uses
// plain operator new/delete. Every block is a plain operator new block, so a block may
// be freed with or without a pool, after its pool is gone, on another thread: nothing
// dangles. A mutex guards the lists (two threads may share one pool).
//
// Cap: what the pool holds (handed out and not yet returned, plus cached) stays at or
// below twice the most it ever had handed out at once; a miss that would pass that frees
// cached blocks first. Exact-size lists need more than the step's peak (each size is
// needed at its own peak), and a cap at the peak itself made every step evict blocks
// it needed later. A repeating step settles with no misses. Everything cached is freed
// when the pool is destroyed (its owner and its last Tape are gone) or on release().
#pragma once


#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tapegrad {

class BufferPool {
 public:
  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool() { release(); }

  void* allocate(std::size_t bytes) {
    std::lock_guard lock(mutex_);
    in_use_ += bytes;
    peak_in_use_ = std::max(peak_in_use_, in_use_);
    if (auto it = free_.find(bytes); it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= bytes;
      ++hits_;
      return p;
    }
    ++misses_;
    const std::size_t cap = 2 * peak_in_use_;
    for (auto it = free_.begin(); it != free_.end() && in_use_ + cached_bytes_ > cap; ++it)
      for (; !it->second.empty() && in_use_ + cached_bytes_ > cap; it->second.pop_back()) {
        ::operator delete(it->second.back());
        cached_bytes_ -= it->first;
      }
    return ::operator new(bytes);
  }
  // `p` may come from anywhere: another pool, or no pool.
  void deallocate(void* p, std::size_t bytes) noexcept {
    std::lock_guard lock(mutex_);
    in_use_ -= std::min(in_use_, bytes);
    try {
      free_[bytes].push_back(p);
      cached_bytes_ += bytes;
    } catch (const std::bad_alloc&) {  // no room to list it: give it back
      ::operator delete(p);
    }
  }
  // Free every cached block.
  void release() {
    std::lock_guard lock(mutex_);
    for (auto& [bytes, blocks] : free_)
      for (void* p : blocks) ::operator delete(p);
    free_.clear();
    cached_bytes_ = 0;
  }

  // Allocations served from the cache, and from the system; bytes cached now.
  std::size_t hits() const { std::lock_guard lock(mutex_); return hits_; }
  std::size_t misses() const { std::lock_guard lock(mutex_); return misses_; }
  std::size_t cached_bytes() const { std::lock_guard lock(mutex_); return cached_bytes_; }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;  // byte size -> free blocks
  std::size_t in_use_ = 0, peak_in_use_ = 0, cached_bytes_ = 0, hits_ = 0, misses_ = 0;
};

// The calling thread's active pool (or null). It owns a share of the pool, so a pool
// made active stays alive while it is; scopes that end out of order leave no dangling pointer.
inline thread_local std::shared_ptr<BufferPool> active_buffer_pool;

// Makes `pool` the calling thread's active pool until the end of the scope (null: none).
class PoolScope {
 public:
  explicit PoolScope(std::shared_ptr<BufferPool> pool) : pool_(pool), previous_(std::exchange(active_buffer_pool, std::move(pool))) {}
  ~PoolScope() { active_buffer_pool = std::move(previous_); }
  // The pool this scope made active.
  const std::shared_ptr<BufferPool>& pool() const { return pool_; }
  PoolScope(const PoolScope&) = delete;
  PoolScope& operator=(const PoolScope&) = delete;

 private:
  std::shared_ptr<BufferPool> pool_, previous_;
};

// The allocator of Array<T>: the active pool of the calling thread, else operator new.
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (BufferPool* pool = active_buffer_pool.get()) return static_cast<T*>(pool->allocate(bytes));
    return static_cast<T*>(::operator new(bytes));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (BufferPool* pool = active_buffer_pool.get()) return pool->deallocate(p, n * sizeof(T));
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const noexcept { return true; }
};

// What an op saves for its backward beside its tensors (GELU's tanh, LayerNorm's row
// statistics, a log-sum-exp per row) lives exactly as long as a tensor does, so it comes
// from the pool too.
template <class T>
using PooledVector = std::vector<T, PoolAllocator<T>>;

}  // namespace tapegrad
