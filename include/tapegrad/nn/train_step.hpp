// tapegrad/nn/train_step.hpp — one training step, and the recipe of docs/contracts.md section 4
// with its constants named once: AdamW (lr 1e-3, betas (0.9, 0.99), eps 1e-8, weight
// decay 0.1 on matrices), the global gradient norm clipped to 1, linear warm-up over
// 100 steps, then cosine decay to lr / 10.
//
//   nn::Recipe recipe;
//   nn::AdamW<float> opt(model.named_parameters(), recipe.adamw);
//   const Context context{threads};                      // the threads every step runs on
//   const auto pool = std::make_shared<BufferPool>();   // the buffers the steps recycle
//   for (std::int64_t step = 0; step < total; ++step) {
//     const auto r = nn::train_step(opt, recipe.lr_at(step, total), recipe.clip_norm,
//                                   [&](Tape& tape) { return model.loss(tape, inputs, targets); }, context, pool);
//     if (!r.updated) break;  // the loss or the gradient norm was NaN or infinite
//   }
#pragma once

#include "../core/error.hpp"
#include "../core/tape.hpp"
#include "muon.hpp"
#include "optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>

namespace tapegrad::nn {

enum class OptimizerKind { adamw, muon };

struct Recipe {
  AdamWOptions adamw;               // lr, betas, eps, weight decay (optim.hpp: the contract's defaults)
  OptimizerKind optimizer = OptimizerKind::adamw;
  double muon_lr = MuonOptions{}.lr;  // with Muon: the matrices' peak lr (adamw.lr is the other parameters')
  double clip_norm = 1.0;           // max global gradient norm
  std::int64_t warmup_steps = 100;  // a run shorter than that warms up throughout
  double min_lr_fraction = 0.1;     // the cosine decays to lr * this

  // The learning rate of the update with 0-based index `step` in a run of `total` steps.
  double lr_at(std::int64_t step, std::int64_t total) const {
    return warmup_cosine_lr(step, adamw.lr, warmup(total), total, adamw.lr * min_lr_fraction);
  }
  std::int64_t warmup(std::int64_t total) const { return std::min(warmup_steps, total); }
  // What to pass to the optimiser's step for the schedule's lr_at(): itself for AdamW; for
  // Muon the matrices' lr, muon_lr scaled alike (its AdamW part follows in proportion, muon.hpp).
  double optimizer_lr(double lr) const { return optimizer == OptimizerKind::muon ? lr * muon_lr / adamw.lr : lr; }
  MuonOptions muon_options() const { return {.lr = muon_lr, .adamw = adamw}; }
};

struct StepResult {
  double loss = 0;       // the batch loss, before the update
  double grad_norm = 0;  // the global gradient norm before clipping (0 when the loss was not finite)
  bool updated = false;  // false: the loss or the norm was NaN or infinite, and no weight changed
};

// Zero the gradients, loss(tape) on a fresh Tape(context, pool), backward, clip the
// global gradient norm to `clip_norm`, opt.step(lr, context). `loss` returns a
// one-element tensor. A loss or gradient norm that is not finite skips the update, so
// the caller can stop with the weights as they were. `pool` (may be null: no recycling)
// is the loop's: pass the same one every step and the second step allocates nothing new.
template <class T, class LossFn>
StepResult train_step(Optimizer<T>& opt, double lr, double clip_norm, LossFn&& loss, const Context& context = {},
                      std::shared_ptr<BufferPool> pool = nullptr) {
  StepResult result;
  opt.zero_grad();
  Tape tape(context, std::move(pool));
  const Tensor<T> value = loss(tape);
  result.loss = double(value.item());
  if (!std::isfinite(result.loss)) return result;
  tape.backward(value);
  result.grad_norm = double(opt.clip_gradients(T(clip_norm), context));
  if (!std::isfinite(result.grad_norm)) return result;
  opt.step(lr, context);
  result.updated = true;
  return result;
}

// Gradient accumulation: one optimiser step over `micro_steps` micro-batches, for a
// batch too large to hold at once. loss(tape, k) is micro-batch k's mean loss; each
// backward is seeded with 1 / micro_steps, so the accumulated gradient is the mean over
// the micro-batches, which for equal micro-batches is the gradient of the whole batch's
// mean loss (up to rounding). before_backward(k) runs before micro-batch k's backward (a
// data-parallel job turns its all-reduce off for all but the last: dist/DataParallel's
// set_accumulating). Tapes, context and pool as above. result.loss is the mean of the micro-batch losses; a non-finite one
// stops before its backward, without an update.
template <class T, class LossFn, class BeforeBackward>
StepResult train_step(Optimizer<T>& opt, double lr, double clip_norm, std::size_t micro_steps, LossFn&& loss,
                      BeforeBackward&& before_backward, const Context& context = {},
                      std::shared_ptr<BufferPool> pool = nullptr) {
  if (micro_steps == 0) throw ConfigError("train_step: micro_steps must be at least 1, got 0");
  StepResult result;
  opt.zero_grad();
  double sum = 0;
  for (std::size_t k = 0; k < micro_steps; ++k) {
    Tape tape(context, pool);
    const Tensor<T> value = loss(tape, k);
    sum += double(value.item());
    result.loss = sum / double(micro_steps);
    if (!std::isfinite(result.loss)) return result;
    before_backward(k);
    Array<T> seed = Array<T>::from_shape(value.value().shape());
    std::fill_n(seed.data(), seed.size(), T(1) / T(micro_steps));
    tape.backward(value, seed);
  }
  result.grad_norm = double(opt.clip_gradients(T(clip_norm), context));
  if (!std::isfinite(result.grad_norm)) return result;
  opt.step(lr, context);
  result.updated = true;
  return result;
}

}  // namespace tapegrad::nn
