// accumulation_test — run under mpirun -np 2 (or more): gradient accumulation, one
// optimiser step over several micro-batches (nn::train_step with micro_steps), makes the
// update of one batch as large as the micro-batches together, and a data-parallel job
// all-reduces only in the last micro-batch's backward.
//
// Checked on every rank, for two steps of a small GPT with the recipe (AdamW, lr 1e-3, clip 1):
//   - one process: 4 micro-batches of 2 rows against one batch of 8 rows, the weights
//     within 1e-12 of each tensor's scale in double and 1e-6 in float;
//   - data parallel (DataParallel, float): each rank 3 micro-batches of 2 rows of a global
//     batch of 6 x ranks rows, against this rank alone on the whole global batch: weights
//     within 1e-6; no all-reduce starts before the last micro-batch's backward, and each
//     step starts exactly one per bucket.
#include <tapegrad/dist/data_parallel.hpp>
#include <tapegrad/tapegrad.hpp>

#include "rank_checks.hpp"
#include "small_gpt.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

using namespace tapegrad;

namespace {

using namespace small_gpt;
using rank_checks::check;

// Two steps of `model` on rows [first, first + micro_steps * rows_each) of each batch, in
// micro_steps micro-batches; before_backward(k) as nn::train_step's.
template <class T, class BeforeBackward>
void train(models::GPT<T>& model, const Batches& data, std::size_t first, std::size_t micro_steps,
           std::size_t rows_each, BeforeBackward&& before_backward) {
  nn::AdamW<T> optimizer(model.named_parameters());
  for (std::size_t s = 0; s < data.inputs.size(); ++s) {
    const auto result = nn::train_step(
        optimizer, nn::Recipe{}.adamw.lr, nn::Recipe{}.clip_norm, micro_steps,
        [&](Tape& tape, std::size_t k) {
      const std::size_t at = first + k * rows_each;
      return model.loss(tape, rows(data.inputs[s], at, rows_each), rows(data.targets[s], at, rows_each));
        },
        before_backward);
    check(result.updated, "a step did not update");
  }
}

template <class T>
void one_process(double limit, const char* type) {
  const Batches data = random_batches(2, 8, 11);
  models::GPT<T> whole(kConfig, 3), accumulated(kConfig, 3);
  train(whole, data, 0, 1, 8, [](std::size_t) {});
  train(accumulated, data, 0, 4, 2, [](std::size_t) {});
  const double difference = largest_difference(whole.named_parameters(), accumulated.named_parameters());
  check(difference <= limit, std::string(type) + ": 4 micro-batches of 2 rows differ from one batch of 8 by " +
                                 std::to_string(difference) + " (limit " + std::to_string(limit) + ")");
  if (dist::Communicator::world().is_root())
    std::printf("%s, one process: 4 micro-batches of 2 against one batch of 8: largest weight difference %.3g\n", type,
                difference);
}

}  // namespace

int main() {
  dist::Communicator& comm = dist::Communicator::world();
  if (comm.size() < 2) {
    std::fprintf(stderr, "accumulation_test: run it under mpirun -np 2 (or more)\n");
    return 1;
  }
  one_process<double>(1e-12, "double");
  one_process<float>(1e-6, "float");

  const std::size_t micro_steps = 3, rows_each = 2, per_rank = micro_steps * rows_each;
  const Batches data = random_batches(2, per_rank * std::size_t(comm.size()), 11);
  models::GPT<float> alone(kConfig, 3), parallel_model(kConfig, 3);
  train(alone, data, 0, 1, per_rank * std::size_t(comm.size()), [](std::size_t) {});

  dist::DataParallel<float> parallel(comm, parallel_model.named_parameters(), {.bucket_bytes = 8 << 10});
  std::vector<std::size_t> started_before;  // all-reduces started before each backward
  train(parallel_model, data, std::size_t(comm.rank()) * per_rank, micro_steps, rows_each, [&](std::size_t k) {
    started_before.push_back(parallel.all_reduces_started());
    parallel.set_accumulating(k + 1 < micro_steps);
  });
  const std::size_t buckets = parallel.bucket_count();
  check(buckets >= 2, "expected several buckets, got " + std::to_string(buckets));
  check(started_before.size() == 2 * micro_steps, "expected " + std::to_string(2 * micro_steps) + " micro-batches");
  for (std::size_t i = 0; i < started_before.size(); ++i)
    check(started_before[i] == (i / micro_steps) * buckets,
          "before micro-batch " + std::to_string(i % micro_steps) + " of step " + std::to_string(i / micro_steps) +
              ", " + std::to_string(started_before[i]) + " all-reduces had started, expected " +
              std::to_string((i / micro_steps) * buckets));
  check(parallel.all_reduces_started() == 2 * buckets, "two steps started " +
                                                           std::to_string(parallel.all_reduces_started()) +
                                                           " all-reduces, expected " + std::to_string(2 * buckets));
  const double difference = largest_difference(alone.named_parameters(), parallel_model.named_parameters());
  check(difference <= 1e-6,
        "data parallel with accumulation differs from one process by " + std::to_string(difference));
  if (comm.is_root())
    std::printf(
        "float, %d ranks x %zu micro-batches of %zu rows against one process with the global batch: largest weight "
        "difference %.3g; %zu all-reduces in 2 steps (%zu buckets)\n",
        comm.size(), micro_steps, rows_each, difference, parallel.all_reduces_started(), buckets);
  return rank_checks::finish("accumulation_test");
}
