// tapegrad/core/checkpoint.hpp — activation checkpointing: a block recorded as one node
// that keeps only its inputs and runs the block's forward again during backward.
//
//   y = checkpoint(tape, fn, x, ...)      fn(Tape&, const Tensor<T>&...) -> Tensor<T>
//
// Forward: fn runs on a fresh inner tape (same Context and buffer pool, so the same
// threads and recycled buffers) on leaf copies of the inputs; its output's value becomes y, and the inner tape,
// with every activation it saved, is dropped. The node on `tape` keeps the inputs and
// lists as inputs too the leaves fn's ops read that need a gradient (its parameters).
// Backward of the node: fn runs again on a new inner tape, backward from y's gradient
// through it adds into the parameters' gradients, and the copies' gradients are added
// into the inputs'. So a model of L blocks keeps L block inputs instead of L blocks of
// activations, and pays one more forward of each block (docs/checkpointing.md).
//
// Memory: the replay's backward, and the backward of `tape` once it has recorded a
// checkpoint, free what each node saved as soon as its rule has run
// (Tape::free_saved_as_backward_passes), so a replay's gradients reuse the block's own
// activation buffers, and what only the closures after the block held (the loss's
// probabilities) is gone before the first replay.
//
// Same results: the replay runs the same ops on the same values with the same Context,
// and every rule adds into the parameters' gradients in the order the tape without
// checkpoint would, so the gradients are bit-identical to running fn directly on
// `tape` when each input of the block is read by the block only (as a Transformer's
// residual stream is); an input also read elsewhere gets the block's contribution as
// one sum, equal up to rounding.
//
// Gradient-final hooks: the inner tapes call none; the parameters are inputs of the node,
// so the outer tape calls their hooks right after the whole block has been replayed, in
// the order it would without checkpoint (tape.hpp). Anomaly mode reaches the inner tapes
// and names the op and module inside the block. fn must compute the same thing each time
// it runs (no randomness of its own), return a tensor its ops computed on the tape it is
// given, and outlive the backward (it is kept by value). Under a NoGradGuard (nothing is
// recorded) checkpoint is fn on `tape`.
#pragma once

#include "tape.hpp"

#include <array>
#include <concepts>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace tapegrad {

inline const OpName kCheckpoint{"checkpoint"};

namespace detail {

// A leaf holding a copy of x's value, needing a gradient when x does.
template <class T>
Tensor<T> leaf_copy(const Tensor<T>& x) {
  return Tensor<T>(Array<T>(x.value()), x.requires_grad());
}

// What a replay of the block takes from the tape it belongs to.
struct BlockSetting {
  Context context;
  std::shared_ptr<BufferPool> pool;
  bool detect_anomaly;
  std::string module_path;
};

// fn on `inner`, a tape set up to replay a block, from leaf copies of `inputs`; returns
// the copies and fn's output.
template <class T, std::size_t N, class Fn>
std::pair<std::array<Tensor<T>, N>, Tensor<T>> run_block(Tape& inner, const BlockSetting& setting, const Fn& fn,
                                                        const std::array<Tensor<T>, N>& inputs) {
  inner.defer_gradient_final_hooks();
  inner.free_saved_as_backward_passes();
  inner.set_detect_anomaly(setting.detect_anomaly);
  inner.exchange_module_path(setting.module_path);
  std::array<Tensor<T>, N> copies;
  for (std::size_t i = 0; i < N; ++i) copies[i] = leaf_copy(inputs[i]);
  Tensor<T> y = std::apply([&](const auto&... c) { return Tensor<T>(fn(inner, c...)); }, copies);
  if (!y.defined()) throw op_error(kCheckpoint, "the block returned an undefined tensor");
  if (y.is_leaf())
    throw op_error(kCheckpoint, "the block returned a leaf (one of its inputs, or a tensor it did not compute on the tape "
                                "it was given); its output must come from ops on that tape");
  return {std::move(copies), std::move(y)};
}

}  // namespace detail

template <class T, class Fn, class... Rest>
  requires(std::same_as<Rest, Tensor<T>> && ...)
Tensor<T> checkpoint(Tape& tape, Fn fn, const Tensor<T>& x, const Rest&... rest) {
  const std::array<Tensor<T>, 1 + sizeof...(Rest)> block_inputs{x, rest...};
  for (std::size_t i = 0; i < block_inputs.size(); ++i)
    if (!block_inputs[i].defined())
      throw op_error(kCheckpoint, "input " + std::to_string(i + 1) + " is an undefined tensor");
  if (!tape.recording()) return fn(tape, x, rest...);
  tape.free_saved_as_backward_passes();
  detail::BlockSetting setting{tape.context(), tape.pool(), tape.detect_anomaly(), tape.module_path()};
  std::vector<std::shared_ptr<TensorMeta>> inputs;
  for (const auto& in : block_inputs) inputs.push_back(in.meta_ptr());
  Array<T> value;
  {
    Tape inner(setting.context, setting.pool);
    auto [copies, y] = detail::run_block(inner, setting, fn, block_inputs);
    for (auto& leaf : inner.leaves_read()) inputs.push_back(std::move(leaf));
    value = std::move(y.value());  // the inner tape and everything it saved end here
  }
  Tensor<T> out(std::move(value));
  // y's gradient -> a replay of fn -> the parameters' gradients, and the copies' added into the inputs'.
  auto backward = [fn = std::move(fn), setting = std::move(setting), out = GradRef<T>(out), block_inputs]() {
    Tape inner(setting.context, setting.pool);
    auto [copies, y] = detail::run_block(inner, setting, fn, block_inputs);
    inner.backward(y, out.grad());
    for (std::size_t i = 0; i < copies.size(); ++i)
      if (block_inputs[i].requires_grad() && copies[i].has_grad())
        block_inputs[i].accumulate_grad("checkpoint backward", copies[i].grad());
  };
  return tape.record_all(kCheckpoint, std::move(out), std::move(backward), inputs);
}

}  // namespace tapegrad
