// compose_data_parallel — rings.hpp's classifier, a model the user composes, trained data
// parallel with tapegrad::dist::DataParallel and the library's nn::train_step.
//
//   ./build/examples/compose_data_parallel                   one process
//   mpirun -np 2 ./build/examples/compose_data_parallel      two: the same run, to rounding
//
// Every process draws every global batch of 96 points from the one seeded stream and
// trains on its own equal slice of it. DataParallel broadcasts rank 0's weights (each
// rank here starts from a different seed, so that matters), and backward returns with
// each gradient averaged over the ranks, so nn::train_step's clip and AdamW step are the
// same everywhere. Rank 0 prints the loss (the mean over the global batch) and, at the
// end, the held-out accuracy and the largest weight difference between the ranks,
// which must be 0 (the exit status says so).
#include "rings.hpp"

#include <tapegrad/dist/data_parallel.hpp>

#include <cstdio>

using namespace tapegrad;

int main() {
  dist::Communicator& comm = dist::Communicator::world();
  constexpr std::size_t kGlobalBatch = 96, kSteps = 300;
  if (kGlobalBatch % std::size_t(comm.size()) != 0) {
    if (comm.is_root()) std::fprintf(stderr, "compose_data_parallel: %d processes do not divide the batch of %zu\n", comm.size(), kGlobalBatch);
    return 1;
  }
  const std::size_t rows = kGlobalBatch / std::size_t(comm.size()), first = rows * std::size_t(comm.rank());

  nn::Rng init(100 + std::uint64_t(comm.rank()));
  compose::RingClassifier model(32, init);
  nn::Recipe recipe;
  recipe.adamw.lr = 1e-2;
  recipe.adamw.weight_decay = 0;
  nn::AdamW<float> optimizer(model.named_parameters(), recipe.adamw);
  dist::DataParallel<float> parallel(comm, model.named_parameters(), {.bucket_bytes = 2048});  // small: several buckets

  nn::Rng data(1);  // the one data stream
  double loss = 0;
  for (std::size_t step = 0; step < kSteps; ++step) {
    const compose::Points global = compose::make_points(kGlobalBatch, data);
    Tensor<float> x = Tensor<float>::zeros({rows, 2});
    Ids label = Ids::from_shape({rows});
    std::copy_n(global.x.data() + 2 * first, 2 * rows, x.data());
    std::copy_n(global.label.data() + first, rows, label.data());
    const auto result = nn::train_step(optimizer, recipe.lr_at(std::int64_t(step), std::int64_t(kSteps)), recipe.clip_norm,
                                       [&](Tape& tape) { return ops::cross_entropy(tape, model.forward(tape, x), label); });
    loss = comm.sum(result.loss) / comm.size();  // each rank's loss is the mean over its rows
    if (comm.is_root() && (step + 1) % 100 == 0) std::printf("step %zu: loss %.6f\n", step + 1, loss);
  }

  float worst = 0;  // every rank must hold rank 0's weights, bit for bit
  for (const auto& [name, p] : model.named_parameters()) {
    std::vector<float> root(p.data(), p.data() + p.size());
    comm.broadcast(std::span<float>(root));
    for (std::size_t k = 0; k < root.size(); ++k) worst = std::max(worst, std::abs(root[k] - p.data()[k]));
  }
  comm.all_reduce_max(std::span<float>(&worst, 1));
  const double accuracy = compose::accuracy(model, compose::make_points(2000, data));
  if (comm.is_root())
    std::printf("final loss %.9g, held-out accuracy %.1f%%, over %d process(es), %zu buckets; largest weight difference "
                "between ranks %g\n",
                loss, 100 * accuracy, comm.size(), parallel.bucket_count(), double(worst));
  return worst == 0 ? 0 : 1;
}
