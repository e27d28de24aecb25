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
//
// Sharded (Options::shard, for ZeRO stage 1: dist::ShardedAdamW in sharded_adamw.hpp).
// Each bucket is cut into N consecutive pieces (sizes differ by at most one element);
// rank r owns piece r of every bucket, and its shard is those pieces one after the other.
// A bucket's reduction is then a reduce-scatter (sum) instead of the all-reduce, started
// by the same hooks, so it overlaps backward the same way: each rank receives the sum of
// its own piece only, and the step ends with shard_gradient() the mean over the ranks of
// this rank's shard; the parameters' own gradients keep this rank's local sums. The
// reduce-scatter is a ring of point-to-point messages (N - 1 rounds; in round k rank r
// sends piece (r - k - 1) mod N, as summed so far, to rank r + 1 and adds what rank r - 1
// sends into piece (r - k - 2) mod N), advanced by every hook and by the final wait, each
// bucket on its own tag of a communicator of its own: Open MPI 4.1's MPI_Ireduce_scatter
// reduces the whole bucket onto one rank and scatters it, 1.5 times the bytes of a ring
// for N = 2, where the ring sends what the all-reduce's reduce-scatter half does.
// After the optimiser has updated the shard's weights, all_gather_parameters() gives every
// rank every weight (MPI_Iallgatherv per bucket). In a ring, a reduce-scatter and an
// all-gather each send (N-1)/N of the data from every rank, together what one all-reduce
// sends; the all-gather comes after the update, so nothing hides it.
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
    // true: reduce-scatter into this rank's shard (see the top of the file).
    bool shard = false;
  };

  // Where a part of this rank's shard sits: parameter `parameter` (index in parameters()),
  // its flat elements [begin, begin + count), at shard_gradient()[at, at + count).
  struct ShardSegment {
    std::size_t parameter = 0, begin = 0, count = 0, at = 0;
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
    broadcast_parameters();
    make_buckets();
    if (options_.shard) make_shards();
    if (options_.shard && comm_.size() > 1)
      Communicator::check(MPI_Comm_dup(comm_.handle(), &ring_comm_), "MPI_Comm_dup");
    if (comm_.size() > 1 && options_.overlap)
      for (std::size_t i = 0; i < params_.size(); ++i)
        params_[i].hook = params_[i].tensor.add_gradient_final_hook([this, i](Array<T>& grad) { gradient_final(i, grad); });
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel() {
    for (auto& p : params_)
      if (p.hook) p.tensor.remove_gradient_final_hook(*p.hook);
    for (auto& b : buckets_) {
      if (b.request != MPI_REQUEST_NULL) MPI_Wait(&b.request, MPI_STATUS_IGNORE);
      for (auto& r : b.ring)
        if (r != MPI_REQUEST_NULL) MPI_Wait(&r, MPI_STATUS_IGNORE);
    }
    int finalized = 0;
    if (ring_comm_ != MPI_COMM_NULL && (MPI_Finalized(&finalized), !finalized)) MPI_Comm_free(&ring_comm_);
  }

  // Every gradient becomes its mean over the ranks (see the top of the file); free when
  // backward already did it. Sharded: shard_gradient() becomes this rank's shard of it.
  void synchronize() {
    if ((comm_.size() == 1 && !options_.shard) || accumulating_) return;
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
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      start_reduction(b);
      if (!options_.shard) comm_.wait(buckets_[b].request, "the gradient all-reduce");
    }
    if (options_.shard) wait_all();
    write_back_mean(start);
  }

  // Every parameter becomes rank 0's (the constructor does it).
  void broadcast_parameters() {
    for (auto& p : params_) comm_.broadcast(std::span<T>(p.tensor.data(), p.tensor.size()));
  }

  bool sharded() const { return options_.shard; }
  // The parameters, in the order ShardSegment::parameter counts them (a tied tensor once,
  // under its first name).
  NamedTensors<T> parameters() const {
    NamedTensors<T> named;
    for (const auto& p : params_) named.emplace_back(p.name, p.tensor);
    return named;
  }
  // Sharded: this rank's shard (see the top of the file), its length, and after a step's
  // reduction its mean gradient (StateError while the reduction is not complete).
  const std::vector<ShardSegment>& shard_segments() const { return segments_; }
  std::size_t shard_size() const { return shard_gradient_.size(); }
  std::span<T> shard_gradient() {
    if (!shard_ready_)
      throw StateError("DataParallel::shard_gradient: no reduced gradient (call it after backward and synchronize())");
    return shard_gradient_;
  }
  bool shard_gradient_ready() const { return shard_ready_; }

  // Sharded, collective: every rank's parameters become the values the shards' owners
  // hold (each rank has updated the weights of its own shard); ends the step's shard gradient.
  void all_gather_parameters() {
    require_sharded("all_gather_parameters");
    shard_ready_ = false;
    if (comm_.size() == 1) return;
    const auto start = std::chrono::steady_clock::now();
    for (const auto& s : segments_) {
      const Param& p = params_[s.parameter];
      Bucket& b = buckets_[p.bucket];
      std::copy_n(p.tensor.data() + s.begin, s.count, b.buffer.data() + p.offset + s.begin);
    }
    for (auto& b : buckets_)
      Communicator::check(MPI_Iallgatherv(MPI_IN_PLACE, 0, mpi_type<T>(), b.buffer.data(), b.counts.data(),
                                          b.displacements.data(), mpi_type<T>(), comm_.handle(), &b.request),
                          "MPI_Iallgatherv");
    for (auto& b : buckets_) comm_.wait(b.request, "the weight all-gather");
    for (auto& p : params_) std::copy_n(buckets_[p.bucket].buffer.data() + p.offset, p.tensor.size(), p.tensor.data());
    gather_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // Sharded, collective: values laid out as the shard (a slot of a sharded optimiser's
  // state), gathered on rank 0 into one array per parameter, in parameters() order and
  // shaped like it (empty on the other ranks).
  std::vector<Array<T>> gather_shards(std::span<const T> shard) {
    require_sharded("gather_shards");
    require_shard_length(shard.size(), "gather_shards");
    for (auto& b : buckets_) {
      const int mine = b.counts[std::size_t(comm_.rank())];
      if (comm_.size() == 1) {
        std::copy_n(shard.data() + b.shard_offset, mine, b.buffer.data());
        continue;
      }
      Communicator::check(
          MPI_Igatherv(shard.data() + b.shard_offset, mine, mpi_type<T>(), b.buffer.data(), b.counts.data(),
                       b.displacements.data(), mpi_type<T>(), 0, comm_.handle(), &b.request),
          "MPI_Igatherv");
      comm_.wait(b.request, "the gathering of the optimiser state");
    }
    std::vector<Array<T>> full;
    if (!comm_.is_root()) return full;
    for (const auto& p : params_) {
      full.push_back(Array<T>::from_shape(p.tensor.shape()));
      std::copy_n(buckets_[p.bucket].buffer.data() + p.offset, p.tensor.size(), full.back().data());
    }
    return full;
  }
  // Sharded, collective: the inverse of gather_shards. Rank 0 passes one array of values
  // per parameter (in parameters() order, each of its size; the other ranks' `full` is
  // not read); every rank receives its shard of them in `shard`.
  void scatter_shards(const std::vector<const T*>& full, std::span<T> shard) {
    require_sharded("scatter_shards");
    require_shard_length(shard.size(), "scatter_shards");
    if (comm_.is_root()) {
      if (full.size() != params_.size())
        throw ShapeError("DataParallel::scatter_shards: " + std::to_string(full.size()) + " arrays for " +
                         std::to_string(params_.size()) + " parameters");
      for (std::size_t i = 0; i < params_.size(); ++i)
        std::copy_n(full[i], params_[i].tensor.size(), buckets_[params_[i].bucket].buffer.data() + params_[i].offset);
    }
    for (auto& b : buckets_) {
      const int mine = b.counts[std::size_t(comm_.rank())];
      if (comm_.size() == 1) {
        std::copy_n(b.buffer.data(), mine, shard.data() + b.shard_offset);
        continue;
      }
      Communicator::check(
          MPI_Iscatterv(b.buffer.data(), b.counts.data(), b.displacements.data(), mpi_type<T>(),
                        shard.data() + b.shard_offset, mine, mpi_type<T>(), 0, comm_.handle(), &b.request),
          "MPI_Iscatterv");
      comm_.wait(b.request, "the scattering of the optimiser state");
    }
  }
  // Time spent in all_gather_parameters (sharded: the exposed half of the communication).
  double gather_seconds() const { return gather_seconds_; }

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

  // Reductions (all-reduces; sharded: reduce-scatters) started since construction, one
  // per bucket per reduced step.
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
    // Sharded: rank r's piece is buffer[displacements[r], + counts[r]); this rank's sits
    // at shard_gradient_[shard_offset, ...).
    std::vector<int> counts, displacements;
    std::size_t shard_offset = 0;
    // Sharded: the ring reduce-scatter under way (round < N - 1), its two messages and the
    // piece coming in.
    bool reducing = false;
    std::size_t round = 0;
    MPI_Request ring[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    std::vector<T> incoming;
  };

  // Rank r's neighbours in the ring and the pieces of round `round` (see the top of the file).
  std::size_t piece_sent(std::size_t round) const {
    const std::size_t n = std::size_t(comm_.size());
    return (std::size_t(comm_.rank()) + 2 * n - round - 1) % n;
  }
  void post_ring_round(std::size_t index) {
    Bucket& b = buckets_[index];
    const int n = comm_.size(), rank = comm_.rank(), tag = int(index);
    const std::size_t send = piece_sent(b.round), receive = piece_sent(b.round + 1);
    Communicator::check(
        MPI_Irecv(b.incoming.data(), b.counts[receive], mpi_type<T>(), (rank + n - 1) % n, tag, ring_comm_, &b.ring[0]),
        "MPI_Irecv");
    Communicator::check(MPI_Isend(b.buffer.data() + b.displacements[send], b.counts[send], mpi_type<T>(),
                                  (rank + 1) % n, tag, ring_comm_, &b.ring[1]),
                        "MPI_Isend");
  }
  // Advances bucket `index`'s ring by the rounds whose messages arrived; true once its
  // reduce-scatter is complete (this rank's piece summed into the shard).
  bool advance_ring(std::size_t index) {
    Bucket& b = buckets_[index];
    while (b.reducing) {
      int arrived = 0;
      Communicator::check(MPI_Testall(2, b.ring, &arrived, MPI_STATUSES_IGNORE), "MPI_Testall");
      if (!arrived) return false;
      const std::size_t piece = piece_sent(b.round + 1);
      T* sum = b.buffer.data() + b.displacements[piece];
      for (std::size_t k = 0, count = std::size_t(b.counts[piece]); k < count; ++k) sum[k] += b.incoming[k];
      if (++b.round + 1 < std::size_t(comm_.size())) {
        post_ring_round(index);
        continue;
      }
      b.reducing = false;
      const std::size_t mine = std::size_t(comm_.rank());
      std::copy_n(b.buffer.data() + b.displacements[mine], b.counts[mine], shard_gradient_.data() + b.shard_offset);
    }
    return true;
  }

  void make_shards() {
    const std::size_t n = std::size_t(comm_.size()), rank = std::size_t(comm_.rank());
    std::size_t shard = 0;
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      Bucket& bucket = buckets_[b];
      const std::size_t size = bucket.buffer.size();
      for (std::size_t r = 0; r < n; ++r) {
        bucket.displacements.push_back(Communicator::count(size * r / n));
        bucket.counts.push_back(Communicator::count(size * (r + 1) / n - size * r / n));
      }
      bucket.shard_offset = shard;
      bucket.incoming.resize(std::size_t(*std::max_element(bucket.counts.begin(), bucket.counts.end())));
      const std::size_t lo = std::size_t(bucket.displacements[rank]), hi = lo + std::size_t(bucket.counts[rank]);
      std::vector<std::pair<std::size_t, std::size_t>> in_bucket;  // (offset, parameter)
      for (std::size_t i = 0; i < params_.size(); ++i)
        if (params_[i].bucket == b) in_bucket.emplace_back(params_[i].offset, i);
      std::sort(in_bucket.begin(), in_bucket.end());
      for (const auto& [offset, i] : in_bucket) {
        const std::size_t begin = std::max(lo, offset), end = std::min(hi, offset + params_[i].tensor.size());
        if (begin < end) segments_.push_back({i, begin - offset, end - begin, shard + (begin - lo)});
      }
      shard += hi - lo;
    }
    shard_gradient_.assign(shard, T(0));
  }

  void require_sharded(const char* what) const {
    if (!options_.shard) throw StateError(std::string("DataParallel::") + what + ": needs Options::shard");
  }
  void require_shard_length(std::size_t length, const char* what) const {
    if (length != shard_gradient_.size())
      throw ShapeError(std::string("DataParallel::") + what + ": " + std::to_string(length) +
                       " values for a shard of " + std::to_string(shard_gradient_.size()));
  }

  // Waits for every bucket's reduction.
  void wait_all() {
    if (options_.shard) {
      comm_.wait_for(
          [&] {
        bool all = true;
        for (std::size_t b = 0; b < buckets_.size(); ++b) all = advance_ring(b) && all;
        return all;
          },
          "the gradient reduce-scatter");
      return;
    }
    for (auto& b : buckets_)
      if (b.request != MPI_REQUEST_NULL) comm_.wait(b.request, "the gradient all-reduce");
  }

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

  // grad = bucket sum / N for every parameter (sharded: for the shard); the next step starts afresh.
  void write_back_mean(std::chrono::steady_clock::time_point start) {
    const T n = T(comm_.size());
    if (options_.shard) {
      for (T& g : shard_gradient_) g /= n;
      shard_ready_ = true;
    }
    for (auto& p : params_) {
      p.final = false;
      if (options_.shard) continue;
      const T* src = buckets_[p.bucket].buffer.data() + p.offset;
      T* dst = p.tensor.grad_accumulator("DataParallel").data();
      for (std::size_t k = 0, size = p.tensor.size(); k < size; ++k) dst[k] = src[k] / n;
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
    wait_all();
    write_back_mean(start);
  }

  // Bucket `index`'s all-reduce, or sharded its reduce-scatter into this rank's piece.
  void start_reduction(std::size_t index) {
    Bucket& b = buckets_[index];
    ++all_reduces_started_;
    if (options_.shard) {
      if (comm_.size() == 1) {
        std::copy(b.buffer.begin(), b.buffer.end(), shard_gradient_.data() + b.shard_offset);
        return;
      }
      b.reducing = true;
      b.round = 0;
      post_ring_round(index);
      return;
    }
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
      start_reduction(next_launch_);
      launches_.push_back({next_launch_, during_backward, final_count_});
    }
    // Open MPI progresses non-blocking collectives inside MPI calls: give the ones in
    // flight a turn each time backward hands over a gradient.
    for (std::size_t k = 0; k < next_launch_; ++k) {
      int done = 0;
      if (options_.shard)
        advance_ring(k);
      else if (buckets_[k].request != MPI_REQUEST_NULL)
        MPI_Test(&buckets_[k].request, &done, MPI_STATUS_IGNORE);
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
  MPI_Comm ring_comm_ = MPI_COMM_NULL;  // sharded: the reduce-scatter's messages
  std::vector<ShardSegment> segments_;  // sharded: this rank's shard
  std::vector<T> shard_gradient_;
  bool shard_ready_ = false;  // shard_gradient_ holds the step's mean
  double gather_seconds_ = 0;
  std::vector<Launch> launches_;
  double sync_seconds_ = 0;
  std::size_t steps_ = 0;
};

}  // namespace tapegrad::dist
