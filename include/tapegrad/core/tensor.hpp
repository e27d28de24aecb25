// tapegrad/core/tensor.hpp — the value type the tape works on.
//
// A Tensor<T> is a shared handle to one node's value and gradient. Copying a
// handle does not copy data: the tape's backward closures keep the handles
// they need, and a parameter handle held by a module is the same tensor that
// ops read. T is float (training) or double (gradient checks).
#pragma once

#include "error.hpp"
#include "memory.hpp"

#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tapegrad {

using Shape = std::vector<std::size_t>;
template <class T>  // row-major, contiguous: ops read .data() directly; buffers recycled (memory.hpp)
using Array = xt::xarray<T, xt::layout_type::row_major, PoolAllocator<T>>;
using Ids = xt::xarray<std::int64_t>;  // integer token ids / targets

inline std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

template <class E>
Shape shape_of(const E& e) {
  return Shape(e.shape().begin(), e.shape().end());
}

inline std::size_t numel(const Shape& s) {
  std::size_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// Which tape recorded the op that produced a tensor. {0, 0} marks a leaf.
struct TapeStamp {
  std::uint64_t tape = 0;
  std::uint64_t generation = 0;
};

// Where the first element of p[0, n) that is NaN or infinite sits, and its value;
// -inf passes when `minus_inf_allowed` (a mask's output).
struct NonFinite {
  std::size_t offset;
  double value;
};
template <class T>
std::optional<NonFinite> find_nonfinite(const T* p, std::size_t n, bool minus_inf_allowed = false) {
  std::size_t bad = 0;  // a branch-free first pass: the common case finds nothing
  for (std::size_t i = 0; i < n; ++i) bad += !std::isfinite(p[i]);
  if (bad == 0) return std::nullopt;
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i]) && !(minus_inf_allowed && p[i] == -std::numeric_limits<T>::infinity()))
      return NonFinite{i, double(p[i])};
  return std::nullopt;
}

// The small blocks every tensor handle is made of (its value's and its gradient side's
// shared_ptr control blocks), recycled per thread. A decoding step makes and drops a few
// hundred tensors, and their blocks outrun malloc's per-thread cache; these lists keep
// up to kCap blocks per 16-byte size class. A block may be freed on any thread (it goes
// to that thread's list); every block is a plain operator new block, and a thread's
// lists are freed when it exits, after which its frees go straight to operator delete.
namespace detail {

class SmallBlocks {
 public:
  static constexpr std::size_t kMaxBytes = 256, kClasses = kMaxBytes / 16, kCap = 1024;
  static void* allocate(std::size_t bytes) {
    if (bytes > kMaxBytes) return ::operator new(bytes);
    Lists& l = lists();
    if (!l.open) open(l);
    const std::size_t c = (bytes - 1) / 16;
    if (Free* f = l.head[c]) {
      l.head[c] = f->next;
      --l.count[c];
      return f;
    }
    return ::operator new((c + 1) * 16);
  }
  static void deallocate(void* p, std::size_t bytes) noexcept {
    Lists& l = lists();
    const std::size_t c = (bytes - 1) / 16;
    if (bytes > kMaxBytes || !l.open || l.count[c] == kCap) return ::operator delete(p);
    l.head[c] = new (p) Free{l.head[c]};
    ++l.count[c];
  }

 private:
  struct Free {
    Free* next;
  };
  struct Lists {  // trivially destructible: usable while the thread's other objects are destroyed
    Free* head[kClasses];
    std::size_t count[kClasses];
    bool open;
  };
  struct Closer {  // frees the thread's lists when it exits
    bool armed = false;
    ~Closer() {
      Lists& l = lists();
      l.open = false;
      for (std::size_t c = 0; c < kClasses; ++c)
        for (Free* f = l.head[c]; f;) ::operator delete(std::exchange(f, f->next));
    }
  };
  static Lists& lists() {
    static thread_local Lists l{};
    return l;
  }
  static void open(Lists& l) {
    static thread_local Closer closer;
    closer.armed = true;
    l.open = true;
  }
};

// The allocator of the handles' control blocks (std::allocate_shared).
template <class T>
struct SmallBlockAllocator {
  using value_type = T;
  SmallBlockAllocator() = default;
  template <class U>
  SmallBlockAllocator(const SmallBlockAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(SmallBlocks::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { SmallBlocks::deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const SmallBlockAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace detail

// What the tape needs to know about a tensor, whatever its scalar type.
struct TensorMeta {
  Shape shape;  // of the value, fixed when the tensor is made
  bool requires_grad = false;
  bool retain_grad = false;  // keep a non-leaf's gradient after backward
  TapeStamp stamp;
  virtual ~TensorMeta() = default;
  virtual bool has_grad() const = 0;
  virtual void release_grad() = 0;
  // Gradient-final hooks (GradRef::add_gradient_final_hook); the tape calls
  // gradient_final() once per backward, when a leaf's gradient is complete.
  virtual bool has_gradient_final_hooks() const = 0;
  virtual void gradient_final() = 0;
  virtual std::optional<NonFinite> find_nonfinite_grad() const = 0;  // anomaly mode
};

template <class T>
struct TensorData final : TensorMeta {
  // Empty until a backward rule adds into it: a default xarray would hold (and allocate) one element.
  std::optional<Array<T>> grad;
  std::vector<std::pair<std::size_t, std::function<void(Array<T>& grad)>>> gradient_final_hooks;  // {id, hook}
  std::size_t next_hook_id = 0;
  bool has_grad() const override { return grad.has_value(); }
  void release_grad() override {
    if (!retain_grad) grad.reset();
  }
  // The gradient, allocated as zeros if nothing was added yet.
  Array<T>& zeroed_grad() {
    if (!grad) {
      grad.emplace(Array<T>::from_shape(shape));
      std::fill_n(grad->data(), grad->size(), T(0));  // a memset: xt::zeros assigns element by element
    }
    return *grad;
  }
  bool has_gradient_final_hooks() const override { return !gradient_final_hooks.empty(); }
  void gradient_final() override {
    Array<T>& g = zeroed_grad();  // no contribution reached it: its gradient is zero
    for (auto& [id, hook] : gradient_final_hooks) hook(g);
  }
  std::optional<NonFinite> find_nonfinite_grad() const override {
    return grad ? find_nonfinite(grad->data(), grad->size()) : std::nullopt;
  }
};

// The gradient side of a tensor: all a backward rule needs of a tensor whose value
// it does not read. Tensor<T> adds the value. A rule that captures a GradRef rather
// than a Tensor lets the value be freed once no Tensor handle holds it (attention's
// scaled and masked scores, for one). Copying a Tensor into a GradRef keeps only this part.
// A handle: const-ness does not reach the gradient, which backward rules write.
template <class T>
class GradRef {
 public:
  const Shape& shape() const { return d_->shape; }
  std::size_t dim() const { return d_->shape.size(); }
  std::size_t size() const { return numel(d_->shape); }
  bool requires_grad() const { return d_->requires_grad; }
  bool is_leaf() const { return d_->stamp.tape == 0; }
  bool has_grad() const { return d_->has_grad(); }
  const Array<T>& grad() const {
    if (!d_->grad)
      throw StateError("Tensor::grad: tensor of shape " + shape_str(d_->shape) +
                       " has no gradient (no backward reached it, or it is a non-leaf without retain_grad)");
    return *d_->grad;
  }
  // Zero the gradient in place (keeps the buffer), as at the start of a training step.
  void zero_grad() const {
    if (d_->grad) std::fill(d_->grad->begin(), d_->grad->end(), T(0));
  }

  // For backward rules: the zero-initialised gradient buffer, shaped like the value,
  // that the rule adds (+=) into. `op` names the caller in errors.
  Array<T>& grad_accumulator(const char* op) const {
    if (d_->grad && !std::equal(d_->grad->shape().begin(), d_->grad->shape().end(), d_->shape.begin(), d_->shape.end()))
      throw StateError(std::string(op) + ": gradient buffer " + shape_str(shape_of(*d_->grad)) +
                       " does not match value " + shape_str(d_->shape));
    return d_->zeroed_grad();
  }
  // For backward rules that write the whole gradient in one pass (a GEMM's C, a copy): the
  // gradient buffer and the beta to write it with, as in C = A B + beta C. beta is 0 when
  // nothing was added yet: the buffer is then not zeroed, and the rule must write every value
  // without reading any (a GEMM with beta = 0 does; blas.hpp). Else beta is 1: add. Saves
  // the zero-fill and the GEMM's read of C for a gradient with one contribution.
  struct GradOutput {
    T* data;
    T beta;
  };
  GradOutput grad_output(const char* op) const {
    if (d_->grad) return {grad_accumulator(op).data(), T(1)};
    d_->grad.emplace(Array<T>::from_shape(d_->shape));  // not zeroed: the rule writes every value
    return {d_->grad->data(), T(0)};
  }
  // Add `g` into the gradient; throws, naming `op`, when the shapes differ.
  void accumulate_grad(const char* op, const Array<T>& g) const {
    if (shape_of(g) != d_->shape)
      throw ShapeError(std::string(op) + ": gradient of shape " + shape_str(shape_of(g)) +
                       " cannot accumulate into a tensor of shape " + shape_str(d_->shape));
    Array<T>& acc = grad_accumulator(op);
    T* dst = acc.data();
    const T* src = g.data();
    for (std::size_t i = 0, n = acc.size(); i < n; ++i) dst[i] += src[i];
  }

  // Calls hook(grad) in every backward pass through a tape this leaf was used on, as
  // soon as its gradient for that pass is complete: right after the tape has replayed
  // the earliest-recorded node that reads it, while the rest of backward goes on
  // (tape.hpp). `grad` is the leaf's accumulated gradient, allocated (zero) if nothing
  // reached it; a hook may read or change it. Hooks run in the order added. Returns an
  // id for remove_gradient_final_hook. A hook must not capture a handle to this same
  // tensor (that would keep it alive forever): it is given the gradient instead.
  std::size_t add_gradient_final_hook(std::function<void(Array<T>& grad)> hook) const {
    if (!is_leaf()) throw StateError("add_gradient_final_hook: only a leaf's gradient becomes final in backward");
    d_->gradient_final_hooks.emplace_back(d_->next_hook_id, std::move(hook));
    return d_->next_hook_id++;
  }
  void remove_gradient_final_hook(std::size_t id) const {
    std::erase_if(d_->gradient_final_hooks, [id](const auto& h) { return h.first == id; });
  }

  TensorMeta& meta() const { return *d_; }
  std::shared_ptr<TensorMeta> meta_ptr() const { return d_; }

 protected:
  std::shared_ptr<TensorData<T>> d_;
};

template <class T>
class Tensor : public GradRef<T> {
 public:
  using value_type = T;

  Tensor() = default;  // an undefined handle
  explicit Tensor(Array<T>&& value, bool requires_grad = false)
      : value_(std::allocate_shared<Array<T>>(detail::SmallBlockAllocator<Array<T>>(), std::move(value))) {
    this->d_ = std::allocate_shared<TensorData<T>>(detail::SmallBlockAllocator<TensorData<T>>());
    this->d_->shape = shape_of(*value_);
    this->d_->requires_grad = requires_grad;
  }
  explicit Tensor(const Array<T>& value, bool requires_grad = false) : Tensor(Array<T>(value), requires_grad) {}
  static Tensor zeros(const Shape& shape, bool requires_grad = false) {
    Array<T> a = Array<T>::from_shape(shape);
    std::fill(a.begin(), a.end(), T(0));
    return Tensor(std::move(a), requires_grad);
  }
  // A tensor of `shape` holding `values` in row-major order.
  static Tensor from(const Shape& shape, const std::vector<T>& values, bool requires_grad = false) {
    if (numel(shape) != values.size())
      throw ShapeError("Tensor::from: shape " + shape_str(shape) + " needs " + std::to_string(numel(shape)) +
                       " values, got " + std::to_string(values.size()));
    Array<T> a = Array<T>::from_shape(shape);
    std::copy(values.begin(), values.end(), a.data());
    return Tensor(std::move(a), requires_grad);
  }

  // A tensor with a shape and no values: what a module built shape-only registers
  // (nn::parameter_shapes); nothing is allocated for the shape. shape() and size() are
  // the shape's; value() and data() are a StateError.
  static Tensor shape_only(const Shape& shape) {
    Tensor t;
    t.d_ = std::allocate_shared<TensorData<T>>(detail::SmallBlockAllocator<TensorData<T>>());
    t.d_->shape = shape;
    return t;
  }

  // A handle to a value: false for a default-constructed handle.
  bool defined() const { return this->d_ != nullptr; }
  // Whether the tensor holds values (false for a shape-only tensor).
  bool has_value() const { return value_ != nullptr; }
  // The value's elements may change in place (optimisers, gradient checks); its shape may not.
  const Array<T>& value() const { return *checked_value(); }
  Array<T>& value() { return *checked_value(); }
  const T* data() const { return checked_value()->data(); }
  T* data() { return checked_value()->data(); }
  T item() const {
    if (this->size() != 1)
      throw ShapeError("Tensor::item: tensor of shape " + shape_str(this->shape()) + " is not a scalar");
    return *data();
  }

  Tensor& set_requires_grad(bool on) {
    if (!this->is_leaf()) throw StateError("set_requires_grad: only a leaf tensor's flag can be set");
    this->d_->requires_grad = on;
    return *this;
  }
  Tensor& retain_grad() {
    this->d_->retain_grad = true;
    return *this;
  }
  bool same_as(const Tensor& other) const { return this->d_ == other.d_; }

 private:
  Array<T>* checked_value() const {
    if (!value_)
      throw StateError(this->d_ ? "Tensor: the tensor of shape " + shape_str(this->d_->shape) +
                                      " is shape-only: it has no values"
                                : std::string("Tensor: an undefined tensor has no values"));
    return value_.get();
  }

  std::shared_ptr<Array<T>> value_;
};

// Tensors by name, in order: a module's parameters, an optimiser's state, gradcheck's inputs.
template <class T>
using NamedTensors = std::vector<std::pair<std::string, Tensor<T>>>;

}  // namespace tapegrad
