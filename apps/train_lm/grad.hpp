// train_lm/grad.hpp — `train_lm grad` (SPEC section 3): one forward and backward
// pass, for checking against another implementation.
//
//   checkpoint  F32 -> GPT<float>, F64 -> GPT<double> (double precision throughout);
//               no `vocab` needed
//   batch       integer tensors `inputs` and `targets`, both [B, T] (I64 or I32),
//               ids below vocab_size, T <= block_size
//   out         `loss` (one element, shape []) and `grad.<name>` for every parameter,
//               same shape and dtype as the parameter
#pragma once

#include "threads.hpp"
#include "text_data.hpp"

#include <filesystem>

namespace train_lm {

struct GradOptions {
  std::filesystem::path checkpoint, batch, out;
  int threads = default_threads();
};

// Reads and checks both files, computes, writes `out` atomically; returns the loss.
double run_grad(const GradOptions& options);

// The batch file's inputs and targets, checked against a vocabulary and block size.
Batch read_batch_file(const std::filesystem::path& path, std::size_t vocab_size, std::size_t block_size);

}  // namespace train_lm
