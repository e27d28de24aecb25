// train_lm/replicas_mpi.cpp — Replicas over MPI (tapegrad/dist), built where CMake finds MPI.
#include "replicas_mpi.hpp"

#include <tapegrad/dist/sharded_adamw.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <signal.h>
#include <sstream>
#include <thread>
#include <utility>
#include <unistd.h>

namespace train_lm {

namespace {

using tapegrad::dist::Communicator;

// What rank 0 prints when mpirun stops the job from outside (SIGTERM: another rank
// died, or the job was interrupted). Written by the signal handler, so it is kept
// ready in one of two buffers and published with an atomic pointer.
char stop_messages[2][1024];
std::atomic<const char*> stop_message{nullptr};
static_assert(std::atomic<const char*>::is_always_lock_free);

extern "C" void on_stopped_from_outside(int) {
  if (const char* m = stop_message.load()) (void)!::write(STDERR_FILENO, m, std::strlen(m));
  ::_exit(1);
}

void set_stop_message(const std::string& text) {
  char* buffer = stop_messages[stop_message.load() == stop_messages[0] ? 1 : 0];
  std::snprintf(buffer, sizeof stop_messages[0], "%s\n", text.c_str());
  stop_message.store(buffer);
}

template <class T>
void broadcast_value(const Communicator& comm, T& x) {
  comm.broadcast(std::span<T>(&x, 1));
}

void broadcast_string(const Communicator& comm, std::string& s) {
  std::uint64_t length = s.size();
  broadcast_value(comm, length);
  s.resize(length);
  comm.broadcast(std::span<char>(s.data(), s.size()));
}

class MpiReplicas final : public Replicas {
 public:
  MpiReplicas(Communicator& comm, double collective_timeout_s) : comm_(comm) {
    if (comm_.size() == 1) return;
    comm_.set_deadline(collective_timeout_s, [this](const tapegrad::dist::Stall& stall) { on_stall(stall); });
    // Every rank ends on SIGTERM at once (mpirun sends it to all when one fails); rank 0 says why.
    if (comm_.is_root())
      set_stop_message("train_lm train: the job was stopped from outside (another rank failed, or mpirun was "
                     "interrupted) before the first checkpoint");
    struct sigaction action {};
    action.sa_handler = on_stopped_from_outside;
    sigemptyset(&action.sa_mask);
    for (int signal : {SIGTERM, SIGINT}) ::sigaction(signal, &action, nullptr);
  }

  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }

  void require_all_ok(const std::string& error) override {
    const std::string failures = comm_.gather_failures(error);
    if (failures.empty()) return;
    // The job ends for this reason alone: when mpirun stops a rank still exiting after
    // another's exit 1, it must not add "stopped from outside".
    stop_message.store(nullptr);
    if (!comm_.is_root()) throw ReportedByRankZero();
    throw std::runtime_error(failures);
  }

  void require_same_settings(const std::vector<Setting>& settings) override {
    std::string mine;  // "name\tvalue\n" per setting
    for (const auto& [name, value] : settings) mine += name + '\t' + value + '\n';
    std::string root = mine;
    broadcast_string(comm_, root);
    std::string disagreement;
    std::istringstream root_lines(root);
    std::string line;
    for (const auto& [name, value] : settings) {
      if (!std::getline(root_lines, line)) line.clear();
      const std::string root_value = line.substr(std::min(line.size(), name.size() + 1));
      if (line.compare(0, name.size() + 1, name + '\t') != 0 || root_value != value) {
        disagreement = name + " " + value + " differs from rank 0's " + root_value +
                       "; every process of the job needs the same options and data";
        break;
      }
    }
    require_all_ok(disagreement);
  }

  std::uint64_t root_value(std::uint64_t x) override {
    broadcast_value(comm_, x);
    return x;
  }

  std::unique_ptr<tapegrad::nn::Optimizer<float>> sharded_adamw(const LanguageModel<float>& model,
                                                                const tapegrad::nn::AdamWOptions& options) override {
    if (comm_.size() == 1) return Replicas::sharded_adamw(model, options);
    parallel_.emplace(comm_, model.named_parameters(), tapegrad::dist::DataParallel<float>::Options{.shard = true});
    return std::make_unique<tapegrad::dist::ShardedAdamW<float>>(*parallel_, comm_, options);
  }

  void share_start(const LanguageModel<float>& model, tapegrad::nn::Optimizer<float>& optimizer,
                   TrainState& state) override {
    if (comm_.size() == 1) return;
    broadcast_value(comm_, state.step);
    broadcast_value(comm_, state.elapsed_s);
    std::ostringstream sampler_text;
    sampler_text << state.sampler;
    std::string sampler = sampler_text.str();
    broadcast_string(comm_, sampler);
    std::istringstream(sampler) >> state.sampler;
    if (parallel_ && parallel_->sharded()) {  // the moments were scattered as they were loaded
      parallel_->broadcast_parameters();
      return;
    }
    if (state.step > 0) {  // resumed on rank 0: its AdamW moments too
      auto moments = optimizer.state();
      for (auto& [name, m] : moments) comm_.broadcast(std::span<float>(m.data(), m.size()));
      optimizer.load_state(moments, state.step);
    }
    parallel_.emplace(comm_, model.named_parameters());  // broadcasts the weights from rank 0
  }

  void require_gradients_averaged() override {
    if (parallel_ && parallel_->reduction_pending())
      throw std::logic_error("a parameter's gradient was not final in backward, so the gradients were not averaged "
                             "over the ranks before the update");
  }

  void set_accumulating(bool accumulating) override {
    if (parallel_) parallel_->set_accumulating(accumulating);
  }

  double sum(double x) override {
    x = comm_.sum(x);
    // Rank 0 saves between two sums: once past the next one, its save is complete.
    if (saving_step_) checkpoint_step_ = std::exchange(saving_step_, std::nullopt);
    return x;
  }

  void checkpoint_saved(const std::filesystem::path& dir, std::int64_t step) override {
    checkpoint_dir_ = dir;
    if (!comm_.is_root())
      saving_step_ = step;
    else
      checkpoint_step_ = step;
    if (comm_.size() > 1 && comm_.is_root())
      set_stop_message("train_lm train: the job was stopped from outside (another rank failed, or mpirun was "
                       "interrupted); the last checkpoint in " + dir.string() + " is at step " + std::to_string(step) +
                       ": continue with --resume");
  }

  void finish_together() override {
    comm_.barrier("the end of training");
    if (saving_step_) checkpoint_step_ = std::exchange(saving_step_, std::nullopt);
  }

  [[noreturn]] void fail(const std::string& message) override {
    if (comm_.size() == 1) throw std::runtime_error(message);
    // An error every rank meets (a non-finite loss) is printed by rank 0, whose
    // MPI_Abort ends the others while they wait; an error of one rank alone is
    // printed by that rank after the wait.
    if (!comm_.is_root()) std::this_thread::sleep_for(std::chrono::seconds(2));
    std::cout.flush();
    std::cerr << "train_lm train: error" << (comm_.is_root() ? "" : " on rank " + std::to_string(comm_.rank())) << ": "
              << message << " (the job is aborted)" << std::endl;
    comm_.abort(1);
  }

 private:
  // A collective passed --collective-timeout (communicator.hpp): the reporter says which
  // rank did not arrive and where the last checkpoint is; the job then ends.
  void on_stall(const tapegrad::dist::Stall& stall) {
    stop_message.store(nullptr);  // this, not "stopped from outside", is why the job ends
    if (!stall.reporter) return;
    std::cout.flush();
    std::cerr << "train_lm train: error" << (comm_.is_root() ? "" : " on rank " + std::to_string(comm_.rank())) << ": "
              << stall.describe() << " (--collective-timeout); "
              << (checkpoint_step_ ? "the last checkpoint in " + checkpoint_dir_.string() + " is at step " +
                                         std::to_string(*checkpoint_step_) + ": continue with --resume"
                                   : std::string("no checkpoint was written"))
              << " (the job is aborted)" << std::endl;
  }

  Communicator& comm_;
  std::optional<tapegrad::dist::DataParallel<float>> parallel_;
  std::filesystem::path checkpoint_dir_;
  std::optional<std::int64_t> checkpoint_step_;  // the last complete checkpoint
  std::optional<std::int64_t> saving_step_;      // not rank 0: the one rank 0 is writing
};

}  // namespace

Replicas& mpi_replicas(double collective_timeout_s) {
  static MpiReplicas replicas(Communicator::world(), collective_timeout_s);
  return replicas;
}

}  // namespace train_lm
