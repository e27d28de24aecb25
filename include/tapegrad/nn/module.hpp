// tapegrad/nn/module.hpp — a Module owns named parameters and named submodules,
// in the spirit of the LibTorch C++ frontend.
//
//   named_parameters() -> {"h.0.attn.w_q", tensor}, ... in registration order
//
// A module knows the name it was registered under and its parent, so path() is the
// prefix of its parameters' names ("h.0.attn"); its forward opens a ModuleScope,
// and in anomaly mode the ops recorded there carry that path.
//
// Submodules are members of their parent, registered by reference, so a Module is
// neither copyable nor movable (the registry holds their addresses).
#pragma once

#include "../core/tape.hpp"
#include "../core/tensor.hpp"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tapegrad::nn {

template <class T>
class Module {
 public:
  using value_type = T;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  // Every parameter of this module and its submodules, with dotted names.
  NamedTensors<T> named_parameters() const {
    NamedTensors<T> out;
    collect("", out);
    return out;
  }
  std::vector<Tensor<T>> parameters() const {
    std::vector<Tensor<T>> out;
    for (auto& [name, p] : named_parameters()) out.push_back(p);
    return out;
  }
  std::size_t parameter_count() const {
    std::size_t n = 0;
    for (auto& [name, p] : named_parameters()) n += p.size();
    return n;
  }
  void zero_grad() const {
    for (auto& [name, p] : named_parameters()) p.zero_grad();
  }
  // The dotted names from the root module down to this one ("h.0.attn"; "" for the root).
  std::string path() const {
    if (!parent_) return "";
    const std::string above = parent_->path();
    return above.empty() ? name_ : above + "." + name_;
  }

 protected:
  // Registers `value` as a trainable parameter (requires_grad is set) and returns it.
  Tensor<T> register_parameter(const std::string& name, Tensor<T> value) {
    check_name(name);
    value.set_requires_grad(true);
    params_.emplace_back(name, value);
    return value;
  }
  template <class M>
  M& register_module(const std::string& name, M& child) {
    check_name(name);
    Module& registered = child;
    if (registered.parent_)
      throw ConfigError("Module: '" + name + "' is already registered as '" + registered.path() + "'");
    registered.parent_ = this;
    registered.name_ = name;
    children_.emplace_back(name, &child);
    return child;
  }

 private:
  void check_name(const std::string& name) const {
    if (name.empty() || name.find('.') != std::string::npos)
      throw ConfigError("Module: local name '" + name + "' must be non-empty and contain no '.'");
    for (auto& [n, p] : params_)
      if (n == name) throw ConfigError("Module: name '" + name + "' is already registered");
    for (auto& [n, m] : children_)
      if (n == name) throw ConfigError("Module: name '" + name + "' is already registered");
  }
  void collect(const std::string& prefix, NamedTensors<T>& out) const {
    for (auto& [name, p] : params_) out.emplace_back(prefix + name, p);
    for (auto& [name, m] : children_) m->collect(prefix + name + ".", out);
  }

  NamedTensors<T> params_;
  std::vector<std::pair<std::string, const Module*>> children_;
  const Module* parent_ = nullptr;
  std::string name_;  // under parent_
};

// Opened at the top of a module's forward: `const ModuleScope scope(tape, *this);`.
// In anomaly mode, and when the tape keeps its graph, the ops recorded until it closes
// carry the module's path; otherwise it does nothing.
class ModuleScope {
 public:
  template <class T>
  ModuleScope(Tape& tape, const Module<T>& module) : tape_(tape.tracks_module_paths() ? &tape : nullptr) {
    if (tape_) previous_ = tape_->exchange_module_path(module.path());
  }
  ~ModuleScope() {
    if (tape_) tape_->exchange_module_path(std::move(previous_));
  }
  ModuleScope(const ModuleScope&) = delete;
  ModuleScope& operator=(const ModuleScope&) = delete;

 private:
  Tape* tape_;
  std::string previous_;
};

// A list of modules named "0", "1", ... (GPT's `h`).
template <class M>
class ModuleList : public Module<typename M::value_type> {
 public:
  template <class... Args>
  M& emplace_back(Args&&... args) {
    items_.push_back(std::make_unique<M>(std::forward<Args>(args)...));
    return this->register_module(std::to_string(items_.size() - 1), *items_.back());
  }
  std::size_t size() const { return items_.size(); }
  M& operator[](std::size_t i) { return *items_.at(i); }
  const M& operator[](std::size_t i) const { return *items_.at(i); }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }

 private:
  std::vector<std::unique_ptr<M>> items_;
};

}  // namespace tapegrad::nn
