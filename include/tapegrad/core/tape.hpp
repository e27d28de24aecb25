// tapegrad/core/tape.hpp — the tape: ops recorded in creation order, replayed in reverse.
//
// An op computes its output, then calls tape.record(op_name, out, backward, inputs...).
// `backward` is a closure holding exactly what the rule needs (inputs, saved
// statistics, the output handle); it reads out's gradient and adds (+=) into the
// inputs' gradients. Because creation order is a topological order, backward is a
// plain reverse loop (as in Stan Math); because rules accumulate, a tensor used
// twice receives the sum of both contributions (as in llm.c).
//
// Gradient-final hooks. A leaf's gradient is complete as soon as the reverse loop has
// run the earliest-recorded node that reads it: every later use was replayed before.
// record() notes that node for each leaf carrying hooks (GradRef::add_gradient_final_hook),
// and backward() calls the leaf's hooks right after it, while the rest of the sweep goes
// on. What they are for: starting a gradient's all-reduce during backward
// (dist/data_parallel.hpp), per-parameter gradient statistics, moving a gradient
// elsewhere as soon as it is done. Leaves without hooks cost nothing.
#pragma once

#include "error.hpp"
#include "parallel.hpp"
#include "tensor.hpp"

#include <atomic>
#include <functional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

namespace tapegrad {

// The name of an op that can be recorded. Constructing one registers the name, so
// the gradcheck suite can list every op that exists and fail on one it has no row
// for. Each op file declares its names once: `inline const OpName kMatmul{"matmul"};`
class OpName {
 public:
  explicit OpName(const char* name) : name_(name) { registry().insert(name); }
  const char* name() const { return name_; }
  static std::set<std::string>& registry() {
    static std::set<std::string> names;
    return names;
  }

 private:
  const char* name_;
};

// The exception for bad arguments to an op: "matmul: inner dimensions differ: ...".
inline ShapeError op_error(const OpName& op, const std::string& what) {
  return ShapeError(std::string(op.name()) + ": " + what);
}

// Every id in [0, V), else an op_error naming the first bad `what` ("id", "target"),
// its position and V.
inline void check_ids(const OpName& op, const char* what, const Ids& ids, std::size_t V) {
  for (std::size_t k = 0; k < ids.size(); ++k)
    if (ids.data()[k] < 0 || ids.data()[k] >= static_cast<std::int64_t>(V))
      throw op_error(op, std::string(what) + " " + std::to_string(ids.data()[k]) + " at position " + std::to_string(k) +
                             " is outside [0, V) with V = " + std::to_string(V));
}

enum class KeepTape { no, yes };

class Tape {
 public:
  // `context` is what the ops recorded on this tape run with (threads); backward rules
  // keep the context of the op that recorded them.
  explicit Tape(Context context = {}) : id_(next_id()), context_(context) {
    if (context.threads < 1) throw std::invalid_argument("Tape: threads must be >= 1, got " + std::to_string(context.threads));
  }
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  bool recording() const { return recording_; }
  const Context& context() const { return context_; }
  std::size_t size() const { return nodes_.size(); }
  // The op names on the tape, in creation order.
  std::vector<std::string> op_names() const {
    std::vector<std::string> names;
    for (const auto& n : nodes_) names.emplace_back(n.op->name());
    return names;
  }

  // Record `out = op(inputs...)`. Checks that every input is a leaf or comes from
  // this tape's current recording. A node is kept only when gradients are on and
  // some input requires one; otherwise `out` stays a leaf without requires_grad.
  template <class T, class Backward, class... Inputs>
  Tensor<T> record(const OpName& op, Tensor<T> out, Backward&& backward, const Inputs&... inputs) {
    std::size_t index = 0;
    (check_input(op, inputs.meta(), ++index), ...);
    if (recording_ && (inputs.requires_grad() || ...)) {
      out.meta().requires_grad = true;
      out.meta().stamp = {id_, generation_};
      nodes_.push_back({&op, out.meta_ptr(), std::function<void()>(std::forward<Backward>(backward))});
      (note_hooked_leaf(inputs), ...);
    }
    return out;
  }

  // Reverse-mode sweep from a scalar loss (seed 1).
  template <class T>
  void backward(const Tensor<T>& loss, KeepTape keep = KeepTape::no) {
    if (loss.size() != 1)
      throw ShapeError("backward: the loss has shape " + shape_str(loss.shape()) +
                             "; a non-scalar needs a seed gradient: backward(out, seed)");
    backward(loss, Array<T>(xt::ones<T>(loss.value().shape())), keep);
  }

  // Reverse-mode sweep from `out` with d(objective)/d(out) = seed.
  template <class T>
  void backward(const Tensor<T>& out, const Array<T>& seed, KeepTape keep = KeepTape::no) {
    const TapeStamp& s = out.meta().stamp;
    if (!out.requires_grad()) throw StateError("backward: the output does not depend on any tensor that requires grad");
    if (s.tape != id_) throw StateError("backward: the output was recorded on a different tape");
    if (s.generation != generation_)
      throw StateError("backward: this tape was already replayed and cleared; "
                             "call the first backward with KeepTape::yes to run backward twice");
    out.accumulate_grad("backward seed", seed);
    auto first_use = hooked_leaves_.rbegin();  // (node index, leaf) by node index: walked backwards with the nodes
    for (std::size_t i = nodes_.size(); i-- > 0;) {
      Node& node = nodes_[i];
      if (node.out->has_grad()) {  // else a result the objective does not use
        node.backward();
        node.out->release_grad();  // every consumer of out came later on the tape: its gradient is complete and used
      }
      for (; first_use != hooked_leaves_.rend() && first_use->first == i; ++first_use) first_use->second->gradient_final();
    }
    if (keep == KeepTape::no) clear();
  }

  // Drop every node (and with them the saved activations). Tensors recorded
  // before this can no longer be used as op inputs on this tape.
  void clear() {
    nodes_.clear();
    hooked_leaves_.clear();
    hooked_seen_.clear();
    ++generation_;
  }

 private:
  friend class NoGradGuard;
  struct Node {
    const OpName* op;
    std::shared_ptr<TensorMeta> out;
    std::function<void()> backward;
  };

  static std::uint64_t next_id() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
  }
  // The node being recorded is the earliest use of `in` so far: remember it when `in`
  // is a leaf with gradient-final hooks seen for the first time in this recording.
  template <class In>
  void note_hooked_leaf(const In& in) {
    const TensorMeta& m = in.meta();
    if (m.stamp.tape != 0 || !m.requires_grad || !m.has_gradient_final_hooks()) return;
    if (hooked_seen_.insert(&m).second) hooked_leaves_.emplace_back(nodes_.size() - 1, in.meta_ptr());
  }
  void check_input(const OpName& op, const TensorMeta& in, std::size_t index) const {
    if (in.stamp.tape == 0) return;  // leaf
    if (in.stamp.tape != id_)
      throw StateError(std::string(op.name()) + ": input " + std::to_string(index) +
                             " was recorded on a different tape");
    if (in.stamp.generation != generation_)
      throw StateError(std::string(op.name()) + ": input " + std::to_string(index) +
                             " belongs to a recording this tape already cleared");
  }

  std::uint64_t id_;
  Context context_;
  std::uint64_t generation_ = 0;
  bool recording_ = true;
  std::vector<Node> nodes_;
  std::vector<std::pair<std::size_t, std::shared_ptr<TensorMeta>>> hooked_leaves_;  // (earliest node reading it, leaf)
  std::unordered_set<const TensorMeta*> hooked_seen_;
};

// Inside this scope ops compute values but record nothing (evaluation, sampling,
// finite differences).
class NoGradGuard {
 public:
  explicit NoGradGuard(Tape& tape) : tape_(tape), previous_(tape.recording_) { tape.recording_ = false; }
  ~NoGradGuard() { tape_.recording_ = previous_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  Tape& tape_;
  bool previous_;
};

}  // namespace tapegrad
