// tapegrad/core/memory.hpp — keep freed tape buffers in the process.
//
// A training step allocates its activations and gradients, frees them when the
// tape is cleared, and allocates the same sizes again next step. glibc hands large
// blocks back to the kernel (mmap/munmap, heap trimming), so every step page-faults
// them in again: measured at a third of a `small` preset step. Programs that train
// (train_lm, bench_train) call this once at start; peak memory is unchanged.
#pragma once

#include <malloc.h>

namespace tapegrad {

inline void retain_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // serve blocks up to 1 GiB from the heap, not mmap
  mallopt(M_TRIM_THRESHOLD, -1);       // never shrink the heap back
}

}  // namespace tapegrad
