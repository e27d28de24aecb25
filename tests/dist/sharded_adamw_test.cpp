// sharded_adamw_test — run under mpirun -np 2 and -np 3 (shards of unequal length):
// AdamW with its moments sharded over the ranks (dist::ShardedAdamW over a sharded
// dist::DataParallel) against replicated AdamW (nn::AdamW over the all-reduce).
//
// Checked on every rank, for three steps of a small GPT with the recipe (lr 1e-3, clip 1),
// each rank on its slice of a global batch:
//   - the weights within 1e-6 of the replicated run's (of each tensor's scale), and the
//     same on every rank, bit for bit; with 2 micro-batches per step (accumulation) too;
//   - one thread and two give the same weights, bit for bit;
//   - state() on rank 0 names what nn::AdamW's names, in its order, within 1e-6 of it;
//     loading it into a fresh sharded optimiser and gathering again gives it back bit for
//     bit, and a run resumed from it after step 2 ends where the uninterrupted one does;
//   - each rank holds 1/N of the replicated moments' bytes (to a few elements per
//     bucket), and the ranks' bytes add up to the replicated optimiser's.
#include <tapegrad/dist/sharded_adamw.hpp>
#include <tapegrad/tapegrad.hpp>

#include "rank_checks.hpp"
#include "small_gpt.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

using namespace tapegrad;

namespace {

using namespace small_gpt;
using rank_checks::check;

constexpr std::size_t kSteps = 3, kRowsEach = 2;
const dist::DataParallel<float>::Options kSharded{.bucket_bytes = 8 << 10, .shard = true};

bool bit_identical(const NamedTensors<float>& a, const NamedTensors<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.size() != b[i].second.size() ||
        std::memcmp(a[i].second.data(), b[i].second.data(), a[i].second.size() * sizeof(float)) != 0)
      return false;
  return true;
}

// Steps [from, to) of `model` with `optimizer`, this rank on its rows of each global
// batch, in `micro_steps` micro-batches (reduced in the last one's backward).
void train(models::GPT<float>& model, nn::Optimizer<float>& optimizer, dist::DataParallel<float>& parallel,
           const Batches& data, std::size_t from, std::size_t to, std::size_t micro_steps, const Context& context) {
  const std::size_t first = std::size_t(dist::Communicator::world().rank()) * kRowsEach, each = kRowsEach / micro_steps;
  for (std::size_t s = from; s < to; ++s) {
    const auto result = nn::train_step(
        optimizer, nn::Recipe{}.adamw.lr, nn::Recipe{}.clip_norm, micro_steps,
        [&](Tape& tape, std::size_t k) {
      const std::size_t at = first + k * each;
      return model.loss(tape, rows(data.inputs[s], at, each), rows(data.targets[s], at, each));
        },
        [&](std::size_t k) { parallel.set_accumulating(k + 1 < micro_steps); }, context);
    check(result.updated, "a step did not update");
  }
}

// A sharded run of steps [0, kSteps) from the same start; returns the model's weights.
struct ShardedRun {
  models::GPT<float> model{kConfig, 3};
  dist::DataParallel<float> parallel{dist::Communicator::world(), model.named_parameters(), kSharded};
  dist::ShardedAdamW<float> optimizer{parallel, dist::Communicator::world()};
};

}  // namespace

int main() {
  dist::Communicator& comm = dist::Communicator::world();
  if (comm.size() < 2) {
    std::fprintf(stderr, "sharded_adamw_test: run it under mpirun -np 2 (or more)\n");
    return 1;
  }
  const int n = comm.size();
  const Batches data = random_batches(kSteps, kRowsEach * std::size_t(n), 17);

  models::GPT<float> replicated_model(kConfig, 3);
  dist::DataParallel<float> replicated_parallel(comm, replicated_model.named_parameters(), {.bucket_bytes = 8 << 10});
  nn::AdamW<float> replicated(replicated_model.named_parameters());
  train(replicated_model, replicated, replicated_parallel, data, 0, kSteps, 1, Context{1});

  ShardedRun sharded, two_threads, accumulated;
  train(sharded.model, sharded.optimizer, sharded.parallel, data, 0, kSteps, 1, Context{1});
  train(two_threads.model, two_threads.optimizer, two_threads.parallel, data, 0, kSteps, 1, Context{2});
  train(accumulated.model, accumulated.optimizer, accumulated.parallel, data, 0, kSteps, 2, Context{1});

  const auto weights = sharded.model.named_parameters();
  const double difference = largest_difference(replicated_model.named_parameters(), weights);
  check(difference <= 1e-6, "sharded AdamW differs from replicated AdamW by " + std::to_string(difference));
  const double accumulated_difference =
      largest_difference(replicated_model.named_parameters(), accumulated.model.named_parameters());
  check(accumulated_difference <= 1e-6, "sharded AdamW with 2 micro-batches differs from replicated AdamW by " +
                                            std::to_string(accumulated_difference));
  check(bit_identical(weights, two_threads.model.named_parameters()), "two threads give other weights than one");

  // The same weights on every rank: rank 0's, broadcast, against this rank's.
  models::GPT<float> root_copy(kConfig, 3);
  auto root_weights = root_copy.named_parameters();
  for (std::size_t i = 0; i < weights.size(); ++i)
    std::copy_n(weights[i].second.data(), weights[i].second.size(), root_weights[i].second.data());
  for (auto& [name, w] : root_weights) comm.broadcast(std::span<float>(w.data(), w.size()));
  check(bit_identical(weights, root_weights), "this rank's weights differ from rank 0's");

  // The state, in the replicated format on rank 0.
  const auto state = sharded.optimizer.state();
  const auto replicated_state = replicated.state();
  if (comm.is_root()) {
    check(state.size() == replicated_state.size(), "state() has " + std::to_string(state.size()) +
                                                       " tensors, AdamW's " + std::to_string(replicated_state.size()));
    for (std::size_t i = 0; i < std::min(state.size(), replicated_state.size()); ++i)
      check(
          state[i].first == replicated_state[i].first && state[i].second.shape() == replicated_state[i].second.shape(),
          "state tensor " + std::to_string(i) + " is '" + state[i].first + "', AdamW's '" + replicated_state[i].first +
              "'");
    const double state_difference = largest_difference(replicated_state, state);
    check(state_difference <= 1e-6, "the sharded moments differ from AdamW's by " + std::to_string(state_difference));
  } else {
    check(state.empty(), "state() returned tensors on a rank other than 0");
  }
  {
    ShardedRun reloaded;
    reloaded.optimizer.load_state(state, sharded.optimizer.step_count());
    check(reloaded.optimizer.step_count() == std::int64_t(kSteps), "load_state did not restore the step count");
    const auto again = reloaded.optimizer.state();
    check(bit_identical(state, again), "the state loaded and gathered again is not the state");
  }
  {  // Interrupted after step 2: the weights and state of step 2 into a fresh run, then step 3.
    ShardedRun first, resumed;
    train(first.model, first.optimizer, first.parallel, data, 0, kSteps - 1, 1, Context{1});
    const auto saved = first.optimizer.state();
    auto target = resumed.model.named_parameters();
    const auto source = first.model.named_parameters();
    for (std::size_t i = 0; i < target.size(); ++i)
      std::copy_n(source[i].second.data(), source[i].second.size(), target[i].second.data());
    resumed.optimizer.load_state(saved, first.optimizer.step_count());
    train(resumed.model, resumed.optimizer, resumed.parallel, data, kSteps - 1, kSteps, 1, Context{1});
    check(bit_identical(weights, resumed.model.named_parameters()), "a run resumed after step 2 ends elsewhere");
  }

  // Memory: this rank's share of the moments.
  const std::size_t mine = sharded.optimizer.state_bytes(), all = replicated.state_bytes();
  const double total = comm.sum(double(mine));
  check(total == double(all),
        "the ranks hold " + std::to_string(total) + " bytes of moments together, AdamW " + std::to_string(all));
  const double slack = 2.0 * sizeof(float) * double(sharded.parallel.bucket_count());
  check(std::abs(double(mine) - double(all) / n) <= slack, "rank " + std::to_string(comm.rank()) + " holds " +
                                                               std::to_string(mine) + " bytes of moments, not 1/" +
                                                               std::to_string(n) + " of " + std::to_string(all));
  std::printf("rank %d: optimiser state %zu bytes of %zu replicated (%.4f of it, 1/%d = %.4f)\n", comm.rank(), mine,
              all, double(mine) / double(all), n, 1.0 / n);
  if (comm.is_root())
    std::printf(
        "%d ranks: sharded against replicated AdamW after %zu steps: largest weight difference %.3g, with 2 "
        "micro-batches %.3g\n",
        n, kSteps, difference, accumulated_difference);
  return rank_checks::finish("sharded_adamw_test");
}
