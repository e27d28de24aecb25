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
//
// Replaying a block (checkpoint.hpp). A tape set to defer_gradient_final_hooks() calls
// no hooks: it lists every leaf needing a gradient that its ops read (leaves_read()), and
// the checkpoint node of the outer tape reads them too, so the outer tape calls their hooks
// once the whole block has been replayed.
//
// The tape as a picture: with set_keep_graph(true) each node also keeps its inputs and
// module path, and write_dot() draws what was recorded as a Graphviz graph.
//
// Anomaly mode (set_detect_anomaly, off by default, one branch per op when off)
// checks each op's output after its forward and the gradients each backward rule
// wrote after the rule, and throws an AnomalyError (anomaly.hpp) at the first NaN
// or Inf. Modules name themselves in it: their forward opens a ModuleScope
// (nn/module.hpp), which sets module_path() for the ops recorded inside.
#pragma once

#include "anomaly.hpp"
#include "error.hpp"
#include "parallel.hpp"
#include "tensor.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <ostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tapegrad {

// The name of an op that can be recorded. Constructing one registers the name, so
// the gradcheck suite can list every op that exists and fail on one it has no row
// for. Each op file declares its names once: `inline const OpName kMatmul{"matmul"};`
// An op whose output holds -inf by design (a mask) says so, and anomaly mode lets
// -inf pass there.
class OpName {
 public:
  enum class Output { finite, may_hold_minus_inf };
  explicit OpName(const char* name, Output output = Output::finite) : name_(name), output_(output) {
    registry().insert(name);
  }
  const char* name() const { return name_; }
  bool minus_inf_allowed() const { return output_ == Output::may_hold_minus_inf; }
  static std::set<std::string>& registry() {
    static std::set<std::string> names;
    return names;
  }

 private:
  const char* name_;
  Output output_;
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
  // keep the context of the op that recorded them. `pool` (may be null) is the buffers
  // to recycle: while the tape lives, the Arrays its thread allocates and frees come
  // from and go back to it (memory.hpp). Whoever owns the training loop owns the pool
  // and hands it to each step's tape, so the buffers outlive the tape.
  explicit Tape(Context context = {}, std::shared_ptr<BufferPool> pool = nullptr)
      : id_(next_id()), context_(context), pool_scope_(std::move(pool)) {}
  // The nodes (and the activations they hold) are freed here, while the pool is still
  // the active one, so they go back to it whatever the members' order.
  ~Tape() { clear(); }
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  bool recording() const { return recording_; }
  const Context& context() const { return context_; }
  const std::shared_ptr<BufferPool>& pool() const { return pool_scope_.pool(); }
  bool detect_anomaly() const { return detect_anomaly_; }
  void set_detect_anomaly(bool on) { detect_anomaly_ = on; }
  // Nodes recorded from now on keep their inputs and module path, for write_dot().
  void set_keep_graph(bool on) { keep_graph_ = on; }
  bool keeps_graph() const { return keep_graph_; }
  // Whether modules must keep module_path() up to date (anomaly mode, or keeping the graph).
  bool tracks_module_paths() const { return detect_anomaly_ || keep_graph_; }
  // This tape replays a block for checkpoint(): backward calls no gradient-final hooks,
  // and leaves_read() lists the leaves needing a gradient that its ops read.
  void defer_gradient_final_hooks() { defer_hooks_ = true; }
  // backward (KeepTape::no) frees what each node saved as soon as its rule has run, not
  // at the end of the sweep: a lower peak, but the buffers come back in another order.
  void free_saved_as_backward_passes() { free_as_backward_passes_ = true; }
  std::vector<std::shared_ptr<TensorMeta>> leaves_read() const {
    std::vector<std::shared_ptr<TensorMeta>> leaves;
    for (const auto& [node, leaf] : hooked_leaves_) leaves.push_back(leaf);
    return leaves;
  }
  // The path of the module whose forward is running ("h.2.attn"; "" outside every
  // module), kept up to date when tracks_module_paths() only.
  const std::string& module_path() const { return module_path_; }
  std::string exchange_module_path(std::string path) { return std::exchange(module_path_, std::move(path)); }
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
    return record_each(op, std::move(out), std::forward<Backward>(backward), [&](auto&& f) { (f(inputs), ...); });
  }
  // The same for a list of same-typed inputs known at run time (concat).
  template <class T, class Backward>
  Tensor<T> record(const OpName& op, Tensor<T> out, Backward&& backward, const std::vector<Tensor<T>>& inputs) {
    return record_each(op, std::move(out), std::forward<Backward>(backward), [&](auto&& f) {
      for (const auto& in : inputs) f(in);
    });
  }
  // The same for an op whose inputs are known only when it runs (checkpoint: its tensor
  // inputs and the leaves its block read).
  template <class T, class Backward>
  Tensor<T> record_all(const OpName& op, Tensor<T> out, Backward&& backward,
                       const std::vector<std::shared_ptr<TensorMeta>>& inputs) {
    return record_each(op, std::move(out), std::forward<Backward>(backward), [&](auto&& f) {
      for (const auto& in : inputs) f(MetaInput{in});
    });
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
    if (detect_anomaly_) check_seed(seed);
    auto first_use = hooked_leaves_.rbegin();  // (node index, leaf) by node index: walked backwards with the nodes
    for (std::size_t i = nodes_.size(); i-- > 0;) {
      Node& node = nodes_[i];
      if (node.out->has_grad()) {  // else a result the objective does not use
        node.backward();
        if (detect_anomaly_) check_gradients(node, i);
        node.out->release_grad();  // every consumer of out came later on the tape: its gradient is complete and used
      }
      if (free_as_backward_passes_ && keep == KeepTape::no) node.backward = nullptr;  // what it saved goes now
      for (; !defer_hooks_ && first_use != hooked_leaves_.rend() && first_use->first == i; ++first_use)
        first_use->second->gradient_final();
    }
    if (keep == KeepTape::no) clear();
  }

  // The recording as a Graphviz digraph (`dot -Tsvg`): one ellipse per node (op name,
  // output shape), one box per leaf input (its name in `leaf_names`, else "leaf", and its
  // shape; grey when it needs no gradient), an edge from each input to the op reading it,
  // labelled with the input's position and dashed when no gradient flows back along it,
  // and the nodes of each module in a cluster named by its path. Needs set_keep_graph(true)
  // before the recording (else a StateError naming the first node without it).
  template <class T = float>
  void write_dot(std::ostream& os, const NamedTensors<T>& leaf_names = {}) const {
    std::unordered_map<const TensorMeta*, std::string> name_of, id_of;  // leaf names; graph ids of drawn tensors
    for (const auto& [name, t] : leaf_names) name_of.emplace(&t.meta(), name);  // a tied tensor keeps its first name
    std::map<std::string, std::vector<std::string>> members;                   // module path -> its nodes' lines
    std::string leaves, edges;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      const Node& node = nodes_[i];
      if (!node.watch)
        throw StateError("write_dot: node " + std::to_string(i) + " (" + node.op->name() +
                         ") was recorded before set_keep_graph(true)");
      const std::string id = "n" + std::to_string(i);
      for (std::size_t k = 0; k < node.watch->inputs.size(); ++k) {
        const TensorMeta* in = node.watch->inputs[k].get();
        auto [it, fresh] = id_of.emplace(in, "l" + std::to_string(id_of.size()));
        if (fresh) {  // not an earlier node's output: a leaf
          const auto name = name_of.find(in);
          leaves += "  " + it->second + " [shape=box, label=\"" + (name == name_of.end() ? "leaf" : name->second) +
                    "\\n" + shape_str(in->shape) + "\"" + (in->requires_grad ? "" : ", style=filled, fillcolor=gray90") +
                    "];\n";
        }
        edges += "  " + it->second + " -> " + id + " [label=\"" + std::to_string(k + 1) + "\"" +
                 (in->requires_grad ? "" : ", style=dashed") + "];\n";
      }
      id_of[node.out.get()] = id;
      members[node.watch->module_path].push_back(id + " [label=\"" + node.op->name() + "\\n" +
                                                  shape_str(node.out->shape) + "\"];");
    }
    std::map<std::string, std::set<std::string>> children;  // module path -> the paths of its submodules
    for (const auto& [path, lines] : members)
      for (std::string p = path; !p.empty();) {
        const std::size_t dot = p.rfind('.');
        const std::string parent = dot == std::string::npos ? "" : p.substr(0, dot);
        children[parent].insert(p);
        p = parent;
      }
    os << "digraph tape {\n  node [shape=ellipse, fontname=\"Helvetica\", fontsize=10];\n"
          "  edge [fontname=\"Helvetica\", fontsize=8];\n" << leaves;
    const std::function<void(const std::string&, const std::string&)> cluster = [&](const std::string& path,
                                                                                    const std::string& indent) {
      for (const auto& line : members[path]) os << indent << line << "\n";
      for (const auto& child : children[path]) {
        os << indent << "subgraph \"cluster_" << child << "\" {\n" << indent << "  label=\"" << child << "\";\n";
        cluster(child, indent + "  ");
        os << indent << "}\n";
      }
    };
    cluster("", "  ");
    os << edges << "}\n";
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
  struct Watch {  // what anomaly mode and the graph keep of a node: its module and inputs
    std::string module_path;
    std::vector<std::shared_ptr<TensorMeta>> inputs;
  };
  struct MetaInput {  // an input of record_all, seen as record's template code sees a tensor
    const std::shared_ptr<TensorMeta>& p;
    const TensorMeta& meta() const { return *p; }
    std::shared_ptr<TensorMeta> meta_ptr() const { return p; }
    bool requires_grad() const { return p->requires_grad; }
    const Shape& shape() const { return p->shape; }
  };

  // record() and record_all(): `each_input(f)` calls f on every input in order.
  template <class T, class Backward, class EachInput>
  Tensor<T> record_each(const OpName& op, Tensor<T> out, Backward&& backward, const EachInput& each_input) {
    std::size_t index = 0;
    bool any_requires_grad = false;
    each_input([&](const auto& in) {
      check_input(op, in.meta(), ++index);
      any_requires_grad = any_requires_grad || in.requires_grad();
    });
    const bool kept = recording_ && any_requires_grad;
    if (kept) {
      out.meta().requires_grad = true;
      out.meta().stamp = {id_, generation_};
      nodes_.push_back({&op, out.meta_ptr(), std::function<void()>(std::forward<Backward>(backward)), nullptr});
      if (tracks_module_paths()) {
        nodes_.back().watch.reset(new Watch{module_path_, {}});
        each_input([&](const auto& in) { nodes_.back().watch->inputs.push_back(in.meta_ptr()); });
      }
    }
    if (detect_anomaly_) check_output(op, out, kept, each_input);  // at NaN or Inf: drops the node and throws
    if (kept) each_input([&](const auto& in) { note_leaf(in); });
    return out;
  }
  struct Node {
    const OpName* op;
    std::shared_ptr<TensorMeta> out;
    std::function<void()> backward;
    std::unique_ptr<Watch> watch;  // anomaly mode, or keeping the graph
  };

  static std::uint64_t next_id() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
  }
  // The node being recorded is the earliest use of `in` so far: remember it when `in`
  // is a leaf with gradient-final hooks (any leaf needing a gradient, on a tape that
  // defers its hooks) seen for the first time in this recording.
  template <class In>
  void note_leaf(const In& in) {
    const TensorMeta& m = in.meta();
    if (m.stamp.tape != 0 || !m.requires_grad || !(defer_hooks_ || m.has_gradient_final_hooks())) return;
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

  // Anomaly mode, after a forward: `out` must be finite (a node `kept` on the tape is
  // dropped again if not).
  template <class T, class EachInput>
  void check_output(const OpName& op, const Tensor<T>& out, bool kept, const EachInput& each_input) {
    const std::optional<std::size_t> position = kept ? std::optional(nodes_.size() - 1) : std::nullopt;
    const auto bad = find_nonfinite(out.data(), out.size(), op.minus_inf_allowed());
    if (!bad) return;
    if (kept) nodes_.pop_back();
    const Shape index = anomaly::unravel(bad->offset, out.shape());
    std::string shapes, held;  // the inputs' shapes; which inputs already held NaN or Inf
    std::size_t i = 0;
    each_input([&](const auto& in) {
      shapes += (i++ ? ", " : "") + shape_str(in.shape());
      if constexpr (requires { in.data(); })
        if (const auto in_bad = find_nonfinite(in.data(), in.size()))
          held += "; " + anomaly::where(*in_bad, anomaly::unravel(in_bad->offset, in.shape()),
                                        "input " + std::to_string(i), in.shape()) + " was there before";
    });
    throw AnomalyError("anomaly: " + anomaly::op_origin(op.name(), position, module_path_) + " produced " +
                           anomaly::where(*bad, index, "its output", out.shape()) + " from inputs " + shapes +
                           (held.empty() ? ", all finite" : held),
                       op.name(), position, module_path_, index);
  }

  // Anomaly mode, after the backward rule of `node` (at `position`): every gradient it added into is finite.
  void check_gradients(const Node& node, std::size_t position) const {
    if (!node.watch) return;  // recorded before anomaly mode was on
    for (std::size_t i = 0; i < node.watch->inputs.size(); ++i) {
      const TensorMeta& in = *node.watch->inputs[i];
      const auto bad = in.find_nonfinite_grad();
      if (!bad) continue;
      const Shape index = anomaly::unravel(bad->offset, in.shape);
      const auto out_bad = node.out->find_nonfinite_grad();
      throw AnomalyError("anomaly: the backward of " + anomaly::op_origin(node.op->name(), position, node.watch->module_path) +
                             " wrote " + anomaly::where(*bad, index, "the gradient of input " + std::to_string(i + 1), in.shape) +
                             (out_bad ? " from an output gradient with " +
                                            anomaly::where(*out_bad, anomaly::unravel(out_bad->offset, node.out->shape),
                                                           "the output", node.out->shape)
                                      : " from a finite output gradient " + shape_str(node.out->shape)),
                         node.op->name(), position, node.watch->module_path, index);
    }
  }

  template <class T>
  static void check_seed(const Array<T>& seed) {
    if (const auto bad = find_nonfinite(seed.data(), seed.size())) {
      const Shape shape = shape_of(seed), index = anomaly::unravel(bad->offset, shape);
      throw AnomalyError("anomaly: backward was seeded with " + anomaly::where(*bad, index, "the seed", shape),
                         "backward seed", std::nullopt, "", index);
    }
  }

  std::uint64_t id_;
  Context context_;
  PoolScope pool_scope_;
  std::uint64_t generation_ = 0;
  bool recording_ = true;
  bool detect_anomaly_ = false;
  bool keep_graph_ = false;
  bool defer_hooks_ = false;
  bool free_as_backward_passes_ = false;
  std::string module_path_;
  std::vector<Node> nodes_;
  // (earliest node reading it, leaf): leaves with hooks, or every leaf needing a gradient when hooks are deferred
  std::vector<std::pair<std::size_t, std::shared_ptr<TensorMeta>>> hooked_leaves_;
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
