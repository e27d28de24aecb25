// tapegrad/nn/optim.hpp — optimisers, gradient clipping and the learning-rate
// schedule used by `train` (docs/contracts.md, section 4).
//
//   AdamW<T>          PyTorch torch.optim.AdamW semantics (decoupled weight decay)
//   SGD<T>            PyTorch torch.optim.SGD semantics (momentum, L2 weight decay, nesterov)
//   clip_grad_norm    global L2 norm over all gradients, scaled down to max_norm
//   warmup_cosine_lr  nanoGPT's get_lr: linear warm-up, cosine decay, then a floor
//
// Both optimisers (and Muon, muon.hpp) are built from a model's named_parameters() and
// keep their per-parameter buffers by name, "<slot>.<parameter name>" (AdamW: "m.*",
// "v.*"; SGD: "momentum.*"), so state() / load_state() give an exact resume. An optimiser
// may keep a slot for some parameters only (Muon: "momentum.*" for the matrices it
// orthogonalises, AdamW's "m.*" and "v.*" for the rest).
//
// Weight decay, in both optimisers, applies to parameters with dim() == 2 only
// (embedding tables and weight matrices), never to biases or LayerNorm gains.
//
// A training step puts them together: nn::train_step (train_step.hpp), with the
// contract's recipe in nn::Recipe. It clips through the optimiser (clip_gradients), so
// that an optimiser holding part of the gradients (dist/sharded_adamw.hpp) can clip them
// with the global norm; state(), load_state() and clip_gradients() of such an optimiser
// are collective (every process of the job calls them).
#pragma once

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../core/vecmath.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numbers>
#include <optional>
#include <type_traits>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tapegrad::nn {

// `params` without the entries whose tensor an earlier name already holds: with
// weight tying one tensor appears under two names, and is updated (and its gradient
// counted) once.
template <class T>
NamedTensors<T> without_tied(const NamedTensors<T>& params) {
  NamedTensors<T> distinct;
  for (const auto& [name, p] : params) {
    bool tied = false;
    for (const auto& [n, q] : distinct) tied = tied || q.same_as(p);
    if (!tied) distinct.emplace_back(name, p);
  }
  return distinct;
}

// Global gradient-norm clipping, below.
template <class T>
T clip_grad_norm(const NamedTensors<T>& params, T max_norm, const Context& ctx = {});

// ---------------------------------------------------------------------------
// Shared plumbing: the parameter list, per-parameter state buffers by name, the
// step counter and the current learning rate. AdamW and SGD derive from it and
// only write their update loop.
template <class T>
class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Apply one update with the current learning rate, its loops on `context`'s threads
  // (the result does not depend on them); step_count() goes up by one.
  void step(const Context& context = {}) { update(context); }
  // Set the learning rate (as a schedule does), then step.
  void step(double lr, const Context& context = {}) {
    set_lr(lr);
    update(context);
  }

  double lr() const { return lr_; }
  void set_lr(double lr) {
    if (!(lr >= 0) || !std::isfinite(lr))
      throw ConfigError(kind_ + ": learning rate must be finite and >= 0, got " + std::to_string(lr));
    lr_ = lr;
  }

  // Number of step() calls so far (restored by load_state).
  std::int64_t step_count() const { return step_; }

  // The parameters being optimised, in order (tied duplicates removed).
  const NamedTensors<T>& parameters() const { return params_; }

  // Zero every parameter's gradient in place.
  void zero_grad() const {
    for (const auto& [name, p] : params_) p.zero_grad();
  }

  // A snapshot (copies) of every state buffer, named "<slot>.<parameter name>",
  // slot-major in parameter order. Save it together with step_count().
  virtual NamedTensors<T> state() const {
    NamedTensors<T> out;
    for (std::size_t s = 0; s < slots_.size(); ++s)
      for (std::size_t i = 0; i < params_.size(); ++i)
        if (holds(s, i)) out.emplace_back(state_name(s, i), Tensor<T>(Array<T>(buffers_[s][i])));
    return out;
  }

  // Largest step count load_state accepts (2^53: the step count is used as a double).
  static constexpr std::int64_t max_step_count = std::int64_t{1} << 53;

  // Restore what state() returned, and the step count saved with it. Every buffer
  // must be present exactly once with the parameter's shape, and nothing else; every
  // value must be finite (and >= 0 in a slot that holds squares, as AdamW's "v"); the
  // step count in [0, 2^53]. Everything is checked before anything changes: a corrupt
  // state is a FormatError naming the buffer, the index and the value.
  virtual void load_state(const NamedTensors<T>& state, std::int64_t step_count) {
    const auto found = checked_state(state, step_count);
    for (std::size_t s = 0; s < slots_.size(); ++s)
      for (std::size_t i = 0; i < params_.size(); ++i) {
        if (!holds(s, i)) continue;
        const T* src = found[s][i]->data();
        T* dst = buffers_[s][i].data();
        for (std::size_t k = 0, n = buffers_[s][i].size(); k < n; ++k) dst[k] = src[k];
      }
    step_ = step_count;
  }

  // Clip the global norm of the gradients the update uses to `max_norm` as clip_grad_norm
  // does, and return the norm before clipping.
  virtual T clip_gradients(T max_norm, const Context& context = {}) {
    return clip_grad_norm(params_, max_norm, context);
  }

  // Bytes of state this process holds (the buffers state() names; a sharded optimiser:
  // its share of them).
  virtual std::size_t state_bytes() const {
    std::size_t bytes = 0;
    for (const auto& slot : buffers_)
      for (const auto& b : slot) bytes += b.size() * sizeof(T);
    return bytes;
  }

 protected:
  // load_state's checks (see there) of `state`: for each slot and parameter held, the
  // tensor given for it. Throws FormatError before anything changes.
  std::vector<std::vector<const Tensor<T>*>> checked_state(const NamedTensors<T>& state,
                                                           std::int64_t step_count) const {
    const std::string where = kind_ + "::load_state: ";
    if (step_count < 0 || step_count > max_step_count)
      throw FormatError(where + "step count must be in [0, 2^53], got " + std::to_string(step_count));
    std::vector<std::vector<const Tensor<T>*>> found(slots_.size(), std::vector<const Tensor<T>*>(params_.size(), nullptr));
    for (const auto& [name, t] : state) {
      const auto it = index_.find(name);
      if (it == index_.end())
        throw FormatError(where + "unexpected state '" + name + "' (no parameter of that name, or unknown slot)");
      const auto [s, i] = it->second;
      if (found[s][i]) throw FormatError(where + "state '" + name + "' given twice");
      if (!t.has_value()) throw FormatError(where + "state '" + name + "' is an undefined tensor");
      if (t.shape() != params_[i].second.shape())
        throw FormatError(where + "state '" + name + "' has shape " + shape_str(t.shape()) + " but parameter '" +
                                    params_[i].first + "' has shape " + shape_str(params_[i].second.shape()));
      const T* values = t.data();
      for (std::size_t k = 0, n = t.size(); k < n; ++k)
        if (!std::isfinite(values[k]) || (non_negative_[s] && values[k] < 0))
          throw FormatError(where + "state '" + name + "' holds " + std::to_string(values[k]) +
                                      " at flat index " + std::to_string(k) + " (its values must be finite" +
                                      (non_negative_[s] ? " and >= 0)" : ")"));
      found[s][i] = &t;
    }
    for (std::size_t s = 0; s < slots_.size(); ++s)
      for (std::size_t i = 0; i < params_.size(); ++i)
        if (holds(s, i) && !found[s][i]) throw FormatError(where + "missing state '" + state_name(s, i) + "'");
    return found;
  }

  // `kind` names the optimiser in errors; `slots` are the per-parameter buffers
  // it keeps (zero-initialised, shaped like the parameter); `non_negative_slots`
  // those of them whose values can never be negative (load_state checks it).
  // `slot_holds(slot, parameter)` says which parameters have a buffer in a slot (default: all).
  // `allocate` false: the slots are named (state names, checked_state) but hold no buffer:
  // the derived class keeps the values its own way (and overrides state, load_state, state_bytes).
  using SlotFilter = std::function<bool(const std::string& slot, const Tensor<T>& parameter)>;
  Optimizer(std::string kind, const NamedTensors<T>& params, double lr, std::vector<std::string> slots,
            const std::vector<std::string>& non_negative_slots = {}, const SlotFilter& slot_holds = {},
            bool allocate = true)
      : kind_(std::move(kind)), slots_(std::move(slots)) {
    for (const auto& slot : slots_)
      non_negative_.push_back(std::find(non_negative_slots.begin(), non_negative_slots.end(), slot) !=
                              non_negative_slots.end());
    set_lr(lr);
    std::unordered_map<std::string, bool> seen;
    for (const auto& [name, p] : params) {
      if (!p.has_value()) throw ConfigError(kind_ + ": parameter '" + name + "' is an undefined tensor");
      if (seen.count(name)) throw ConfigError(kind_ + ": parameter name '" + name + "' appears twice");
      seen[name] = true;
    }
    params_ = without_tied(params);
    buffers_.resize(slots_.size());
    held_.assign(slots_.size(), std::vector<bool>(params_.size(), true));
    for (std::size_t s = 0; s < slots_.size(); ++s)
      for (std::size_t i = 0; i < params_.size(); ++i) {
        if (slot_holds && !slot_holds(slots_[s], params_[i].second)) {
          buffers_[s].emplace_back();  // none
          held_[s][i] = false;
          continue;
        }
        buffers_[s].emplace_back(allocate ? Array<T>(xt::zeros<T>(params_[i].second.shape())) : Array<T>());
        index_.emplace(state_name(s, i), std::pair{s, i});
      }
  }

  // One update (step() calls it): each optimiser writes its loop here.
  virtual void update(const Context& context) = 0;

  // Start a step: advance the counter and return the new count t (1 on the first step).
  std::int64_t begin_step() { return ++step_; }
  void set_step_count(std::int64_t step_count) { step_ = step_count; }

  // Parameter i's value, its gradient and their length, as flat arrays.
  struct FlatParameter {
    T* value;
    const T* grad;
    std::size_t size;
  };
  // Parameter i as flat arrays, or nothing if it has no gradient (it is then skipped, as
  // PyTorch skips p.grad is None).
  std::optional<FlatParameter> flat_parameter(std::size_t i) {
    Tensor<T>& t = params_[i].second;
    if (!t.has_grad()) return std::nullopt;
    const std::size_t n = t.size();
    bool resized = t.grad().size() != n;
    for (std::size_t s = 0; s < buffers_.size(); ++s) resized = resized || (holds(s, i) && buffers_[s][i].size() != n);
    if (resized)
      throw StateError(kind_ + ": parameter '" + params_[i].first + "' changed size since the optimiser was built");
    return FlatParameter{t.data(), t.grad().data(), n};
  }
  T* buffer(std::size_t slot, std::size_t i) { return buffers_[slot][i].data(); }
  bool holds(std::size_t slot, std::size_t i) const { return held_[slot][i]; }
  bool decayed(std::size_t i) const { return params_[i].second.dim() == 2; }
  std::size_t parameter_count() const { return params_.size(); }
  const std::string& kind() const { return kind_; }
  std::string state_name(std::size_t s, std::size_t i) const { return slots_[s] + "." + params_[i].first; }
  std::size_t slot_count() const { return slots_.size(); }

 private:
  std::string kind_;
  std::vector<std::string> slots_;
  std::vector<bool> non_negative_;  // per slot
  NamedTensors<T> params_;
  std::vector<std::vector<Array<T>>> buffers_;  // [slot][parameter]
  std::vector<std::vector<bool>> held_;         // [slot][parameter]: has a buffer there
  std::unordered_map<std::string, std::pair<std::size_t, std::size_t>> index_;  // state name -> (slot, parameter)
  std::int64_t step_ = 0;
  double lr_ = 0;
};

// ---------------------------------------------------------------------------
// AdamW. Defaults are docs/contracts.md section 4's (PyTorch's own defaults differ:
// beta2 0.999, weight_decay 0.01).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.1;  // on dim() == 2 parameters only
};

// A ConfigError, naming `kind`, for betas outside [0, 1) or a negative eps or weight decay.
inline void check_adamw_options(const AdamWOptions& opt, const std::string& kind) {
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) throw ConfigError(kind + ": " + what);
  };
  check(opt.beta1 >= 0 && opt.beta1 < 1, "beta1 must be in [0, 1), got " + std::to_string(opt.beta1));
  check(opt.beta2 >= 0 && opt.beta2 < 1, "beta2 must be in [0, 1), got " + std::to_string(opt.beta2));
  check(opt.eps >= 0, "eps must be >= 0, got " + std::to_string(opt.eps));
  check(opt.weight_decay >= 0, "weight_decay must be >= 0, got " + std::to_string(opt.weight_decay));
}

// One AdamW update of a parameter p (n values) with gradient g and moments m, v, at
// learning rate lr and step count t (after increment); `decayed` parameters get the weight
// decay. One pass over each parameter (for float, the vector kernel of core/vecmath.hpp),
// every parameter's blocks in one parallel loop; element-wise, so the same at any thread count.
template <class T>
class AdamWUpdate {
 public:
  struct Slice {  // one parameter's (or a shard's) n values
    T* p;
    const T* g;
    T* m;
    T* v;
    std::size_t n;
    bool decayed;
  };

  AdamWUpdate(const AdamWOptions& opt, double lr, std::int64_t t)
      : b1_(T(opt.beta1)), b2_(T(opt.beta2)), c1_(T(1 - opt.beta1)), c2_(T(1 - opt.beta2)),
        step_size_(T(lr / (1 - std::pow(opt.beta1, double(t))))), bc2_sqrt_(T(std::sqrt(1 - std::pow(opt.beta2, double(t))))),
        eps_(T(opt.eps)), decay_(T(1 - lr * opt.weight_decay)), weight_decay_(opt.weight_decay != 0) {}

  void operator()(const Context& ctx, T* p, const T* g, T* m, T* v, std::size_t n, bool decayed) const {
    (*this)(ctx, std::vector<Slice>{{p, g, m, v, n, decayed}});
  }

  void operator()(const Context& ctx, const std::vector<Slice>& slices) const {
    std::vector<std::size_t> sizes;
    for (const Slice& s : slices) sizes.push_back(s.n);
    parallel_segments(ctx, sizes, kElementBlock, [&](std::size_t i, std::size_t b, std::size_t e) {
      const Slice& s = slices[i];
      const T decay = weight_decay_ && s.decayed ? decay_ : T(1);  // p * 1 is p exactly
      if constexpr (std::is_same_v<T, float>) {
        const vec::AdamWStep step{b1_, b2_, c1_, c2_, step_size_, bc2_sqrt_, eps_, decay};
        vec::active_kernels().adamw(s.p + b, s.g + b, s.m + b, s.v + b, e - b, step);
      } else {
        for (std::size_t k = b; k < e; ++k) {
          s.m[k] = b1_ * s.m[k] + c1_ * s.g[k];
          s.v[k] = b2_ * s.v[k] + c2_ * s.g[k] * s.g[k];
          s.p[k] = s.p[k] * decay - step_size_ * s.m[k] / (std::sqrt(s.v[k]) / bc2_sqrt_ + eps_);
        }
      }
    });
  }

 private:
  T b1_, b2_, c1_, c2_, step_size_, bc2_sqrt_, eps_, decay_;
  bool weight_decay_;
};

template <class T>
class AdamW final : public Optimizer<T> {
 public:
  explicit AdamW(const NamedTensors<T>& params, AdamWOptions opt = {})
      : Optimizer<T>("AdamW", params, opt.lr, {"m", "v"}, {"v"}), opt_(opt) {
    check_adamw_options(opt, "AdamW");
  }
  const AdamWOptions& options() const { return opt_; }

 protected:
  // With t the step count after increment, for each parameter p with gradient g:
  //   p <- p * (1 - lr wd)                      (decoupled decay; dim() == 2 only)
  //   m <- b1 m + (1 - b1) g
  //   v <- b2 v + (1 - b2) g^2
  //   p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  // which is lr m_hat / (sqrt(v_hat) + eps), arranged as torch.optim.AdamW does.
  void update(const Context& context) override {
    const AdamWUpdate<T> adamw(opt_, this->lr(), this->begin_step());
    std::vector<typename AdamWUpdate<T>::Slice> slices;
    for (std::size_t i = 0; i < this->parameter_count(); ++i)
      if (const auto flat = this->flat_parameter(i))
        slices.push_back(
            {flat->value, flat->grad, this->buffer(0, i), this->buffer(1, i), flat->size, this->decayed(i)});
    adamw(context, slices);
  }

 private:
  AdamWOptions opt_;
};

// ---------------------------------------------------------------------------
// SGD with optional momentum (PyTorch convention, dampening 0) and L2 weight decay
// (added to the gradient, as torch.optim.SGD does; dim() == 2 parameters only).
struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

template <class T>
class SGD final : public Optimizer<T> {
 public:
  // The "momentum.<name>" buffers exist only when momentum != 0.
  explicit SGD(const NamedTensors<T>& params, SGDOptions opt = {})
      : Optimizer<T>("SGD", params, opt.lr, opt.momentum != 0 ? std::vector<std::string>{"momentum"} : std::vector<std::string>{}),
        opt_(opt) {
    if (!(opt.momentum >= 0)) throw ConfigError("SGD: momentum must be >= 0, got " + std::to_string(opt.momentum));
    if (!(opt.weight_decay >= 0))
      throw ConfigError("SGD: weight_decay must be >= 0, got " + std::to_string(opt.weight_decay));
    if (opt.nesterov && opt.momentum == 0) throw ConfigError("SGD: nesterov needs momentum > 0");
  }
  const SGDOptions& options() const { return opt_; }

 protected:
  // For each parameter p with gradient g:
  //   d <- g + wd p                  (wd only for dim() == 2)
  //   b <- mu b + d                  (momentum; b starts at 0, so b_1 = d_1)
  //   d <- d + mu b  if nesterov,  else d <- b
  //   p <- p - lr d
  void update(const Context&) override {  // one serial loop
    this->begin_step();
    const T lr = T(this->lr()), mu = T(opt_.momentum);
    const bool momentum = opt_.momentum != 0;
    for (std::size_t i = 0; i < this->parameter_count(); ++i) {
      const auto flat = this->flat_parameter(i);
      if (!flat) continue;
      T* p = flat->value;
      const T* g = flat->grad;
      const std::size_t n = flat->size;
      const T wd = this->decayed(i) ? T(opt_.weight_decay) : T(0);
      T* b = momentum ? this->buffer(0, i) : nullptr;
      for (std::size_t k = 0; k < n; ++k) {
        T d = g[k] + wd * p[k];
        if (momentum) {
          b[k] = mu * b[k] + d;
          d = opt_.nesterov ? d + mu * b[k] : b[k];
        }
        p[k] -= lr * d;
      }
    }
  }

 private:
  SGDOptions opt_;
};

// ---------------------------------------------------------------------------
// Global gradient-norm clipping (torch.nn.utils.clip_grad_norm_):
//   norm = sqrt(sum over all gradients of g^2)   (accumulated in double)
//   if norm > max_norm:  g <- g * max_norm / (norm + 1e-6)
// Parameters without a gradient are ignored; a tensor listed twice (tied) counts
// once. Returns the norm before clipping. A non-finite norm (NaN/inf gradients)
// is returned as is and the gradients are left alone, so the caller can skip the step.
// Runs on ctx's threads; each tensor's sum is per-block partials added in block order.
template <class T>
T clip_grad_norm(const NamedTensors<T>& params, T max_norm, const Context& ctx) {
  if (!(max_norm > 0)) throw ConfigError("clip_grad_norm: max_norm must be > 0");
  std::vector<Tensor<T>> grads;
  for (const auto& [name, p] : without_tied(params))
    if (p.has_value() && p.has_grad()) grads.push_back(p);
  std::vector<std::size_t> sizes;
  for (const auto& p : grads) sizes.push_back(p.grad().size());
  // One partial per block; each tensor's partials added in block order, then the tensors in order.
  std::vector<std::vector<double>> partial(grads.size());
  for (std::size_t i = 0; i < grads.size(); ++i) partial[i].assign(block_count(sizes[i], kElementBlock), 0.0);
  parallel_segments(ctx, sizes, kElementBlock, [&](std::size_t i, std::size_t b, std::size_t e) {
    const T* g = grads[i].grad().data();
    double part = 0;
    if constexpr (std::is_same_v<T, float>) {
      part = vec::active_kernels().sum_squares(g + b, e - b);
    } else {
      for (std::size_t k = b; k < e; ++k) part += double(g[k]) * double(g[k]);
    }
    partial[i][b / kElementBlock] = part;
  });
  double sum = 0;
  for (const auto& tensor : partial) {
    double tensor_sum = 0;
    for (const double p : tensor) tensor_sum += p;
    sum += tensor_sum;
  }
  const double norm = std::sqrt(sum);
  if (std::isfinite(norm) && norm > double(max_norm)) {
    const T scale = T(double(max_norm) / (norm + 1e-6));
    std::vector<T*> data;
    for (const auto& p : grads) data.push_back(p.grad_accumulator("clip_grad_norm").data());
    parallel_segments(ctx, sizes, kElementBlock, [&](std::size_t i, std::size_t b, std::size_t e) {
      for (std::size_t k = b; k < e; ++k) data[i][k] *= scale;
    });
  }
  return T(norm);
}

// ---------------------------------------------------------------------------
// Learning rate for the update with 0-based index `step` (pass opt.step_count()
// before calling step()). nanoGPT's get_lr, exactly:
//   step <  warmup:          base * (step + 1) / (warmup + 1)      (base/(warmup+1) at step 0)
//   warmup <= step <= total: min + (base - min) * (1 + cos(pi r)) / 2,  r = (step - warmup) / (total - warmup)
//                            (base at step == warmup, (base + min)/2 half-way, min at step == total)
//   step >  total:           min
// warmup_steps == 0 means no warm-up; total_steps == warmup_steps means no decay
// phase (min from step `total` on).
inline double warmup_cosine_lr(std::int64_t step, double base_lr, std::int64_t warmup_steps, std::int64_t total_steps,
                               double min_lr) {
  if (step < 0) throw ConfigError("warmup_cosine_lr: step must be >= 0, got " + std::to_string(step));
  if (warmup_steps < 0 || total_steps < warmup_steps)
    throw ConfigError("warmup_cosine_lr: need 0 <= warmup_steps <= total_steps, got warmup " +
                                std::to_string(warmup_steps) + ", total " + std::to_string(total_steps));
  if (step < warmup_steps) return base_lr * double(step + 1) / double(warmup_steps + 1);
  if (step >= total_steps) return min_lr;
  const double r = double(step - warmup_steps) / double(total_steps - warmup_steps);
  return min_lr + 0.5 * (1.0 + std::cos(std::numbers::pi * r)) * (base_lr - min_lr);
}

}  // namespace tapegrad::nn
