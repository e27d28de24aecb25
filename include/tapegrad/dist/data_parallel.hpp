// tapegrad/dist/data_parallel.hpp — data-parallel training: one model replica per
// process, each computing the gradient of its slice of the global batch, and a
// gradient all-reduce that overlaps backward, as PyTorch's DistributedDataParallel.
//
//   dist::DataParallel<float> dp(dist::Communicator::world(), model.named_parameters());
//   for each step:                     // every rank: its own slice of the global batch
//     optimizer.zero_grad();
//     tape.backward(model.loss(tape, my_inputs, my_targets));   // all-reduces start in here
//     dp.synchronize();                // every gradient is now the global mean
//     clip_grad_norm(...); optimizer.step();                    // identical on every rank
//
// Construction broadcasts every parameter from rank 0, so all replicas start equal
// whatever each process's seed did, and groups the parameters into buckets of about
// `bucket_bytes` in reverse registration order (the order backward finishes them in a
// model built input to output). Each parameter gets a gradient-final hook (tape.hpp):
// when backward has finished every gradient of a bucket, the hook copies them into the
// bucket's flat buffer and a non-blocking MPI_Iallreduce (sum) starts for it while
// backward goes on. Buckets start in index order on every rank, whatever order their
// gradients complete in (MPI needs the same collective order on all ranks). When the
// last parameter's gradient is final, still inside backward, DataParallel waits for
// every bucket and writes sum / N back into each gradient, as PyTorch's DDP does at the
// end of backward: so code that cannot call synchronize() between backward and the
// optimiser (nn::train_step-style helpers) gets global gradients when backward returns,
// provided the loss uses every parameter. synchronize() is then free; for parameters
// the loss did not use it starts their buckets (zero gradients) and waits for the rest.
//
// Why the mean is the one-process gradient: each rank's loss is the mean over its
// B/N sequences, so (1/N) sum over ranks of the rank means is the mean over all B,
// exactly, when the slices are equal; only the float rounding of the sums differs.
//
// One backward per synchronize(). A job of one process reduces nothing: synchronize()
// returns at once and no hook is installed.
//
// Gradient accumulation (several backward passes per optimiser step, nn::train_step with
// micro_steps): set_accumulating(true), or a no_sync() scope, around every backward but
// the last. Those backward passes only add into the gradients (no hook copies or reduces
// anything, synchronize() does nothing); the last one reduces the accumulated sums, so a
// step costs one all-reduce however many micro-batches it has.
#pragma once

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "communicator.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace tapegrad::dist {

template <class T>
class DataParallel {
 public:
  struct Options {
    std::size_t bucket_bytes = std::size_t(1) << 20;  // a bucket closes once it holds at least this much
    // false: no hooks; synchronize() reduces every bucket after backward, one after the
    // other (the baseline the benchmark measures the overlap against).
    bool overlap = true;
  };

  // One bucket's all-reduce starting: which bucket, from a hook during backward or in
  // synchronize(), and how many parameters' gradients were final at that moment.
  struct Launch {
    std::size_t bucket = 0;
    bool during_backward = false;
    std::size_t parameters_final = 0;
  };

  DataParallel(const Communicator& comm, const NamedTensors<T>& parameters, Options options = {})
      : comm_(comm), options_(options) {
    for (const auto& [name, p] : parameters)
      if (std::none_of(params_.begin(), params_.end(), [&](const Param& q) { return q.tensor.same_as(p); }))
        params_.push_back({name, p});
    for (auto& p : params_) comm_.broadcast(std::span<T>(p.tensor.data(), p.tensor.size()));
    make_buckets();
    if (comm_.size() > 1 && options_.overlap)
      for (std::size_t i = 0; i < params_.size(); ++i)
        params_[i].hook = params_[i].tensor.add_gradient_final_hook([this, i](Array<T>& grad) { gradient_final(i, grad); });
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel() {
    for (auto& p : params_)
      if (p.hook) p.tensor.remove_gradient_final_hook(*p.hook);
    for (auto& b : buckets_)
      if (b.request != MPI_REQUEST_NULL) MPI_Wait(&b.request, MPI_STATUS_IGNORE);
  }

  // Every gradient becomes its mean over the ranks (see the top of the file); free when
  // backward already did it.
  void synchronize() {
    if (comm_.size() == 1 || accumulating_) return;
    if (completed_in_backward_) {
      completed_in_backward_ = false;
      return;
    }
    if (options_.overlap) {
      for (std::size_t i = 0; i < params_.size(); ++i)
        if (!params_[i].final) gradient_final(i, params_[i].tensor.grad_accumulator("DataParallel"), false);
      if (completed_in_backward_) completed_in_backward_ = false;  // the last one completed the step
      else complete_step();
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < params_.size(); ++i) copy_in(i, params_[i].tensor.grad_accumulator("DataParallel"));
    for (auto& b : buckets_) {
      start_all_reduce(b);
      comm_.wait(b.request, kWhat);
    }
    write_back_mean(start);
  }

  // While true, backward only accumulates: no all-reduce starts (see the top of the file).
  void set_accumulating(bool accumulating) {
    if (accumulating && final_count_ > 0)
      throw StateError("DataParallel::set_accumulating: a reduction is under way; call synchronize() first");
    accumulating_ = accumulating;
  }
  bool accumulating() const { return accumulating_; }
  // set_accumulating(true) for the scope's life.
  class NoSync {
   public:
    explicit NoSync(DataParallel& parallel) : parallel_(parallel) { parallel_.set_accumulating(true); }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;
    ~NoSync() { parallel_.set_accumulating(false); }

   private:
    DataParallel& parallel_;
  };
  [[nodiscard]] NoSync no_sync() { return NoSync(*this); }

  // All-reduces started since construction (one per bucket per reduced step).
  std::size_t all_reduces_started() const { return all_reduces_started_; }

  // True between a backward that left some parameter's gradient unfinished (the loss did
  // not use it) and the synchronize() that completes the step.
  bool reduction_pending() const { return final_count_ > 0; }

  std::size_t bucket_count() const { return buckets_.size(); }
  // The parameter names of bucket b, in the order they sit in its buffer.
  std::vector<std::string> bucket_parameters(std::size_t b) const {
    std::vector<std::pair<std::size_t, std::string>> at;
    for (const auto& p : params_)
      if (p.bucket == b) at.emplace_back(p.offset, p.name);
    std::sort(at.begin(), at.end());
    std::vector<std::string> names;
    for (auto& [offset, name] : at) names.push_back(name);
    return names;
  }
  // The bucket launches of the last step, in order (cleared when the next one starts).
  const std::vector<Launch>& launches() const { return launches_; }
  // Time spent waiting for the all-reduces and writing back the means, and the number of
  // steps: with overlap, the part of the all-reduce that backward did not hide; without,
  // the whole all-reduce.
  double sync_seconds() const { return sync_seconds_; }
  std::size_t steps() const { return steps_; }

 private:
  struct Param {
    std::string name;
    Tensor<T> tensor;
    std::optional<std::size_t> hook = std::nullopt;
    std::size_t bucket = 0, offset = 0;  // where its gradient sits in the bucket buffer
    bool final = false;                  // this step
  };
  struct Bucket {
    std::vector<T> buffer;
    std::size_t params = 0, pending = 0;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  void make_buckets() {
    for (std::size_t i = params_.size(); i-- > 0;) {
      if (buckets_.empty() || buckets_.back().buffer.size() * sizeof(T) >= options_.bucket_bytes) buckets_.emplace_back();
      Bucket& b = buckets_.back();
      params_[i].bucket = buckets_.size() - 1;
      params_[i].offset = b.buffer.size();
      b.buffer.resize(b.buffer.size() + params_[i].tensor.size());
      b.pending = ++b.params;
    }
  }

  // grad = bucket sum / N for every parameter; the next step starts afresh.
  void write_back_mean(std::chrono::steady_clock::time_point start) {
    const T n = T(comm_.size());
    for (auto& p : params_) {
      const T* src = buckets_[p.bucket].buffer.data() + p.offset;
      T* dst = p.tensor.grad_accumulator("DataParallel").data();
      for (std::size_t k = 0, size = p.tensor.size(); k < size; ++k) dst[k] = src[k] / n;
      p.final = false;
    }
    for (auto& b : buckets_) b.pending = b.params;
    next_launch_ = 0;
    final_count_ = 0;
    sync_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++steps_;
  }

  // Waits for every bucket's all-reduce and writes back the mean.
  void complete_step() {
    const auto start = std::chrono::steady_clock::now();
    for (auto& b : buckets_) comm_.wait(b.request, kWhat);
    write_back_mean(start);
  }

  static constexpr const char* kWhat = "the gradient all-reduce";  // names the wait in a Stall (communicator.hpp)

  void start_all_reduce(Bucket& b) {
    ++all_reduces_started_;
    Communicator::check(MPI_Iallreduce(MPI_IN_PLACE, b.buffer.data(), Communicator::count(b.buffer.size()),
                                       mpi_type<T>(), MPI_SUM, comm_.handle(), &b.request),
                        "MPI_Iallreduce");
  }

  void copy_in(std::size_t i, const Array<T>& grad) {
    const Param& p = params_[i];
    std::copy_n(grad.data(), p.tensor.size(), buckets_[p.bucket].buffer.data() + p.offset);
  }

  void gradient_final(std::size_t i, Array<T>& grad, bool during_backward = true) {
    if (accumulating_) return;
    Param& p = params_[i];
    if (p.final)
      throw StateError("DataParallel: the gradient of '" + p.name +
                             "' became final twice before synchronize(); call synchronize() after each backward");
    if (final_count_ == 0) {
      launches_.clear();
      completed_in_backward_ = false;  // a step whose synchronize() was not called
    }
    p.final = true;
    ++final_count_;
    copy_in(i, grad);
    --buckets_[p.bucket].pending;
    // Start every bucket that is complete, in index order.
    for (; next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0; ++next_launch_) {
      start_all_reduce(buckets_[next_launch_]);
      launches_.push_back({next_launch_, during_backward, final_count_});
    }
    // Open MPI progresses non-blocking collectives inside MPI calls: give the ones in
    // flight a turn each time backward hands over a gradient.
    for (std::size_t k = 0; k < next_launch_; ++k) {
      int done = 0;
      if (buckets_[k].request != MPI_REQUEST_NULL) MPI_Test(&buckets_[k].request, &done, MPI_STATUS_IGNORE);
    }
    if (final_count_ == params_.size()) {  // the last gradient: the step's reduction ends here
      complete_step();
      completed_in_backward_ = true;
    }
  }

  const Communicator& comm_;
  Options options_;
  std::vector<Param> params_;
  std::vector<Bucket> buckets_;
  std::size_t next_launch_ = 0, final_count_ = 0;
  bool completed_in_backward_ = false;  // the last hook completed the step: synchronize() has nothing to do
  bool accumulating_ = false;
  std::size_t all_reduces_started_ = 0;
  std::vector<Launch> launches_;
  double sync_seconds_ = 0;
  std::size_t steps_ = 0;
};

}  // namespace tapegrad::dist
