// train_lm/evaluate.hpp — measuring a model's loss without recording a tape.
//
//   batch_loss           mean cross-entropy of one batch
//   validation_loss      the mean over a fixed set of random validation windows
//                        (its own seeded RNG: evaluating never moves the training sampler);
//                        sharded over data-parallel ranks, each returns its batches' share
//                        of the mean and the shares add up to it
//   text_loss            the whole token sequence in consecutive windows of
//                        `block` tokens: every token after the first is predicted once
//   run_eval             `train_lm eval`: a checkpoint on a text file
#pragma once

#include "threads.hpp"
#include "model_file.hpp"

#include <filesystem>
#include <memory>
#include <optional>

namespace train_lm {

// `context`: the threads the forward passes run on (the losses do not depend on it);
// `pool` (may be null): the buffers a loop of batches recycles.
template <class T>
double batch_loss(const GPT<T>& model, const Batch& batch, const tapegrad::Context& context = {},
                  std::shared_ptr<tapegrad::BufferPool> pool = nullptr);

struct Shard {
  std::size_t index = 0, count = 1;  // batches i with i % count == index
};
template <class T>
double validation_loss(const GPT<T>& model, const std::vector<std::int64_t>& tokens, std::size_t batch,
                       std::size_t block, std::size_t n_batches, std::uint64_t seed, const tapegrad::Context& context = {},
                       Shard shard = {});

struct TextLoss {
  double loss = 0;           // mean over the predicted tokens
  std::size_t predicted = 0; // number of tokens predicted
  double perplexity() const;
};

template <class T>
TextLoss text_loss(const GPT<T>& model, const std::vector<std::int64_t>& tokens, std::size_t block, std::size_t batch,
                   const tapegrad::Context& context = {});

struct EvalOptions {
  std::filesystem::path checkpoint;
  std::filesystem::path data;
  std::optional<std::size_t> block = {};  // default: the checkpoint's block size
  std::size_t batch = 16;                 // windows per forward pass
  int threads = default_threads();
};

// Checks everything first (checkpoint, data, block), then evaluates; a loss that is
// not finite (a model whose finite weights overflow) is an error, not a result.
TextLoss run_eval(const EvalOptions& options);

}  // namespace train_lm
