// train_lm/replicas.hpp — the processes one `train` run is spread over (data parallelism).
//
// Under `mpirun -np N` (built with MPI: replicas_mpi.cpp) every process runs the same
// Session on its rank's slice of each global batch; a run of one process uses
// single_process(), for which every call below is the identity, so the loop is the
// one-process loop. What the Session asks of it:
//
//   require_all_ok      collective, before step 1: a rank whose plan failed (its data file
//                       unreadable, say) fails the whole job; rank 0 names every failure
//   root_value          rank 0's value of a number (the data's fingerprint, to compare)
//   require_same_settings  collective, before step 1: every setting that shapes the run
//                       (named, as text) is rank 0's on every rank, or the job fails
//                       with one line naming the setting and the two values
//   sharded_adamw       --shard-optimizer: AdamW keeping this rank's 1/N of the moments
//                       (dist/sharded_adamw.hpp; one process: nn::AdamW), its gradient
//                       reduction set up; its state() and load_state() are collective
//   share_start         rank 0's weights, AdamW moments, step, sampler and elapsed time
//                       to every rank, and the gradient all-reduce set up (dist/)
//   set_accumulating    around every backward of a step but the last (--grad-accum)
//   require_gradients_averaged   after backward: checks that backward left every gradient
//                       the mean over the ranks (DataParallel does so when the loss uses
//                       every parameter, as both families' do)
//   sum                 a number summed over the ranks (losses)
//   checkpoint_saved    rank 0 wrote (the others: is writing) a checkpoint, for the
//                       message of a job stopped from outside or by a collective's deadline
//   finish_together     collective, after the last checkpoint: no rank exits (and so
//                       finalises MPI, which would wait forever) while another is missing
//   fail                an error after the start: the whole job ends, non-zero
#pragma once

#include "model_file.hpp"
#include "run_checkpoint.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace train_lm {

// An error rank 0 reported for the whole job: the other ranks exit 1 without a message.
struct ReportedByRankZero : std::runtime_error {
  ReportedByRankZero() : std::runtime_error("reported by rank 0") {}
};

class Replicas {
 public:
  virtual ~Replicas() = default;
  virtual int rank() const { return 0; }
  virtual int size() const { return 1; }
  bool is_root() const { return rank() == 0; }

  // Collective. `error` is "" or what failed on this rank. If any rank failed, throws
  // on every rank: on rank 0 a std::runtime_error naming each failed rank and its
  // error, on the others ReportedByRankZero.
  virtual void require_all_ok(const std::string& error) {
    if (!error.empty()) throw std::runtime_error(error);
  }
  // Rank 0's `x`, on every rank.
  virtual std::uint64_t root_value(std::uint64_t x) { return x; }
  // One setting of the run: its option name ("--lr") and value as text.
  using Setting = std::pair<std::string, std::string>;
  // Collective. Throws as require_all_ok, on rank 0 a std::runtime_error with one line per
  // disagreeing rank ("rank 1 has --lr 0.001 where rank 0 has 0.5: ..."), unless every
  // rank passes the same settings.
  virtual void require_same_settings(const std::vector<Setting>& /*settings*/) {}
  virtual std::unique_ptr<tapegrad::nn::Optimizer<float>> sharded_adamw(const LanguageModel<float>& model,
                                                                        const tapegrad::nn::AdamWOptions& options) {
    return std::make_unique<tapegrad::nn::AdamW<float>>(model.named_parameters(), options);
  }
  virtual void share_start(const LanguageModel<float>& /*model*/, tapegrad::nn::Optimizer<float>& /*optimizer*/,
                           TrainState& /*state*/) {}
  virtual void require_gradients_averaged() {}
  // While true, backward only accumulates gradients: no all-reduce (gradient accumulation).
  virtual void set_accumulating(bool /*accumulating*/) {}
  virtual double sum(double x) { return x; }
  virtual void checkpoint_saved(const std::filesystem::path& /*dir*/, std::int64_t /*step*/) {}
  virtual void finish_together() {}
  // Ends the job for `message`: one process rethrows; several abort (MPI_Abort, exit 1)
  // after rank 0, or the failing rank, has printed "train_lm train: error: <message>".
  [[noreturn]] virtual void fail(const std::string& message) { throw std::runtime_error(message); }
};

// A run of one process.
Replicas& single_process();

// The rows of each global batch of `batch` rows that rank `rank` of `size` computes;
// UsageError unless `size` divides `batch`.
RowRange batch_slice(std::size_t batch, int rank, int size);

}  // namespace train_lm
