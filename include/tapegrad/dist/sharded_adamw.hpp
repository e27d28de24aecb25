// tapegrad/dist/sharded_adamw.hpp — AdamW with its moments sharded over the ranks
// (ZeRO stage 1): each rank keeps m and v for its 1/N of the parameters only.
//
//   dist::DataParallel<float> dp(comm, model.named_parameters(), {.shard = true});
//   dist::ShardedAdamW<float> opt(dp, recipe.adamw);
//   for each step:                       // every rank: its own slice of the global batch
//     nn::train_step(opt, lr, clip, loss, context, pool);
//
// A step: backward reduce-scatters the gradients (DataParallel, sharded: each rank gets
// the mean gradient of its shard, overlapping backward as the all-reduce does); then
// clip_gradients() takes the global norm (each rank's sum of squares over its shard in
// double, one all-reduce of a double) and scales the shard; step() applies AdamW
// (nn::AdamWUpdate, the same arithmetic as nn::AdamW) to the shard's weights and moments
// and all-gathers the weights. So every weight ends as replicated AdamW would leave it,
// up to the order of the float sums over the ranks (and the norm's double sum).
//
// State. state() and load_state() are collective and speak the replicated format: rank 0
// gets (gives) "m.<name>", "v.<name>" shaped like the parameters, in nn::AdamW's order, the
// other ranks an empty list (pass one), so a state saved with any number of ranks, sharded
// or not, loads into any other. load_state's checks run on rank 0 (nn::Optimizer's, the
// same FormatErrors); when they fail, rank 0 throws before the scatter, and the caller
// must end the job (the other ranks wait in the scatter, as far as the deadline).
// state_bytes() is this rank's moments: 2 x its shard x sizeof(T), about 1/N of nn::AdamW's.
//
// Parameters the loss did not use get a zero gradient and so an update (decay, and
// moments decaying), where nn::AdamW skips a parameter without a gradient.
#pragma once

#include "../nn/optim.hpp"
#include "data_parallel.hpp"

#include <cmath>
#include <span>
#include <vector>

namespace tapegrad::dist {

template <class T>
class ShardedAdamW final : public nn::Optimizer<T> {
 public:
  ShardedAdamW(DataParallel<T>& parallel, const Communicator& comm, nn::AdamWOptions opt = {})
      : nn::Optimizer<T>("AdamW", parallel.parameters(), opt.lr, {"m", "v"}, {"v"}, {}, false),
        parallel_(parallel),
        comm_(comm),
        opt_(opt),
        m_(parallel.shard_size(), T(0)),
        v_(parallel.shard_size(), T(0)) {
    nn::check_adamw_options(opt, "AdamW");
    if (!parallel.sharded()) throw ConfigError("ShardedAdamW: the DataParallel needs Options::shard = true");
  }
  const nn::AdamWOptions& options() const { return opt_; }

  // The global norm of the reduced gradient (see the top of the file), clipped to max_norm.
  T clip_gradients(T max_norm, const Context& context = {}) override {
    if (!(max_norm > 0)) throw ConfigError("clip_grad_norm: max_norm must be > 0");
    const std::span<T> g = reduced_gradient();
    double sum = 0;
    for (const auto& s : parallel_.shard_segments()) {
      const T* x = g.data() + s.at;
      sum += parallel_sum<double>(context, s.count, kElementBlock, [&](std::size_t b, std::size_t e) {
        double part = 0;
        for (std::size_t k = b; k < e; ++k) part += double(x[k]) * double(x[k]);
        return part;
      });
    }
    if (comm_.size() > 1) sum = comm_.sum(sum);
    const double norm = std::sqrt(sum);
    if (std::isfinite(norm) && norm > double(max_norm)) {
      const T scale = T(double(max_norm) / (norm + 1e-6));
      for (T& x : g) x *= scale;
    }
    return T(norm);
  }

  NamedTensors<T> state() const override { return gather(); }

  void load_state(const NamedTensors<T>& state, std::int64_t step_count) override {
    std::vector<const T*> m, v;
    if (comm_.is_root()) {
      const auto found = this->checked_state(state, step_count);
      for (std::size_t i = 0; i < this->parameter_count(); ++i) {
        m.push_back(found[0][i]->data());
        v.push_back(found[1][i]->data());
      }
    }
    std::int64_t step = step_count;
    if (comm_.size() > 1) comm_.broadcast(std::span<std::int64_t>(&step, 1));
    parallel_.scatter_shards(m, m_);
    parallel_.scatter_shards(v, v_);
    this->set_step_count(step);
  }

  std::size_t state_bytes() const override { return (m_.size() + v_.size()) * sizeof(T); }

 protected:
  void update(const Context& context) override {
    const std::span<T> g = reduced_gradient();
    const nn::AdamWUpdate<T> adamw(opt_, this->lr(), this->begin_step());
    const auto params = parallel_.parameters();
    for (const auto& s : parallel_.shard_segments()) {
      Tensor<T> p = params[s.parameter].second;
      adamw(context, p.data() + s.begin, g.data() + s.at, m_.data() + s.at, v_.data() + s.at, s.count, p.dim() == 2);
    }
    parallel_.all_gather_parameters();
  }

 private:
  // The step's reduced shard gradient, reducing now if backward did not complete it.
  std::span<T> reduced_gradient() {
    if (!parallel_.shard_gradient_ready()) parallel_.synchronize();
    return parallel_.shard_gradient();
  }

  NamedTensors<T> gather() const {  // parallel_'s buffers are scratch between steps
    std::vector<Array<T>> slots[2] = {parallel_.gather_shards(m_), parallel_.gather_shards(v_)};
    NamedTensors<T> out;
    if (!comm_.is_root()) return out;
    for (std::size_t s = 0; s < 2; ++s)
      for (std::size_t i = 0; i < this->parameter_count(); ++i)
        out.emplace_back(this->state_name(s, i), Tensor<T>(std::move(slots[s][i])));
    return out;
  }

  DataParallel<T>& parallel_;
  const Communicator& comm_;
  nn::AdamWOptions opt_;
  std::vector<T> m_, v_;  // this rank's shard of the moments (DataParallel's layout)
};

}  // namespace tapegrad::dist
