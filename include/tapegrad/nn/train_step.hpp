// tapegrad/nn/train_step.hpp — the training recipe of SPEC section 4, its constants
// named once: AdamW (lr 1e-3, betas (0.9, 0.99), eps 1e-8, weight decay 0.1 on
// matrices), the global gradient norm clipped to 1, linear warm-up over 100 steps,
// then cosine decay to lr / 10.
#pragma once

#include "optim.hpp"

#include <algorithm>
#include <cstdint>

namespace tapegrad::nn {

struct Recipe {
  AdamWOptions adamw;                  // lr, betas, eps, weight decay (optim.hpp: the SPEC's defaults)
  double clip_norm = 1.0;              // max global gradient norm
  std::int64_t warmup_steps = 100;     // a run shorter than that warms up throughout
  double min_lr_fraction = 0.1;        // the cosine decays to lr * this

  // The learning rate of the update with 0-based index `step` in a run of `total` steps.
  double lr_at(std::int64_t step, std::int64_t total) const {
    return warmup_cosine_lr(step, adamw.lr, warmup(total), total, adamw.lr * min_lr_fraction);
  }
  std::int64_t warmup(std::int64_t total) const { return std::min(warmup_steps, total); }
};

}  // namespace tapegrad::nn
