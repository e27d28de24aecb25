// data_parallel_mlp — a model you compose yourself, trained data parallel with
// tapegrad::dist::DataParallel (not the GPT: any Module works the same way).
//
//   ./build/examples/data_parallel_mlp                      one process
//   mpirun -np 2 ./build/examples/data_parallel_mlp         two, same result to rounding
//
// The task: classify points of three interleaved spirals with a two-layer MLP. Every
// process makes the same data set from the same seed; each step's global batch of 96
// points is split in equal slices, one per process. Rank 0 prints the loss (the mean
// over the global batch, as one process computes it) and, at the end, checks that every
// process holds the same weights.
#include <tapegrad/dist/data_parallel.hpp>
#include <tapegrad/tapegrad.hpp>

#include <cmath>
#include <cstdio>
#include <numbers>
#include <random>

using namespace tapegrad;

namespace {

// The model: two Linear layers with a GELU between them.
class MLP : public nn::Module<float> {
 public:
  MLP(std::size_t d_in, std::size_t hidden, std::size_t classes, nn::Rng& rng)
      : fc1(d_in, hidden, true, rng, 0.5), fc2(hidden, classes, true, rng, 0.5) {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  Tensor<float> loss(Tape& tape, const Tensor<float>& x, const Ids& labels) const {
    return ops::cross_entropy(tape, fc2.forward(tape, ops::gelu(tape, fc1.forward(tape, x))), labels);
  }
  nn::Linear<float> fc1, fc2;
};

// n points per class of `classes` spirals in the plane, with their labels.
struct Points {
  std::vector<float> xy;
  std::vector<std::int64_t> label;
};
Points spirals(std::size_t n, std::size_t classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.15f);
  Points p;
  for (std::size_t c = 0; c < classes; ++c)
    for (std::size_t i = 0; i < n; ++i) {
      const float r = float(i) / float(n), angle = 4.0f * r + 2.0f * std::numbers::pi_v<float> * float(c) / float(classes);
      p.xy.push_back(r * std::cos(angle + noise(rng)));
      p.xy.push_back(r * std::sin(angle + noise(rng)));
      p.label.push_back(std::int64_t(c));
    }
  return p;
}

}  // namespace

int main() {
  dist::Communicator& comm = dist::Communicator::world();
  constexpr std::size_t kClasses = 3, kGlobalBatch = 96, kSteps = 300;
  if (kGlobalBatch % std::size_t(comm.size()) != 0) {
    if (comm.is_root()) std::fprintf(stderr, "data_parallel_mlp: %d processes do not divide the batch of %zu\n", comm.size(), kGlobalBatch);
    return 1;
  }
  const Points data = spirals(200, kClasses, 7);
  const std::size_t n_points = data.label.size(), rows = kGlobalBatch / std::size_t(comm.size());

  nn::Rng init(std::uint64_t(comm.rank()) + 1);  // a different seed on each rank: DataParallel broadcasts rank 0's weights
  MLP model(2, 64, kClasses, init);
  nn::AdamW<float> optimizer(model.named_parameters(), {.lr = 1e-2});
  dist::DataParallel<float> parallel(comm, model.named_parameters(), {.bucket_bytes = 1024});  // small: several buckets

  std::mt19937_64 sampler(11);  // the one data stream: every rank draws the whole global batch
  std::uniform_int_distribution<std::size_t> pick(0, n_points - 1);
  double loss = 0;
  for (std::size_t step = 1; step <= kSteps; ++step) {
    Tensor<float> x(Array<float>::from_shape({rows, 2}));
    Ids labels = Ids::from_shape({rows});
    for (std::size_t row = 0; row < kGlobalBatch; ++row) {
      const std::size_t i = pick(sampler), mine = row - rows * std::size_t(comm.rank());
      if (mine >= rows) continue;  // another rank's row
      x.data()[2 * mine] = data.xy[2 * i];
      x.data()[2 * mine + 1] = data.xy[2 * i + 1];
      labels(mine) = data.label[i];
    }
    optimizer.zero_grad();
    Tape tape;
    auto local_loss = model.loss(tape, x, labels);  // the mean over this rank's rows
    tape.backward(local_loss);                     // bucket all-reduces start in here
    parallel.synchronize();                        // every gradient: the mean over all 96 rows
    optimizer.step();
    loss = comm.sum(double(local_loss.item())) / comm.size();
    if (comm.is_root() && (step % 100 == 0 || step == 1)) std::printf("step %zu: loss %.6f\n", step, loss);
  }

  // Every rank must hold rank 0's weights, bit for bit.
  float worst = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    std::vector<float> root(p.data(), p.data() + p.size());
    comm.broadcast(std::span<float>(root));
    for (std::size_t k = 0; k < root.size(); ++k) worst = std::max(worst, std::abs(root[k] - p.data()[k]));
  }
  comm.all_reduce_max(std::span<float>(&worst, 1));
  if (comm.is_root()) {
    std::printf("final loss %.9g over %d process(es), %zu buckets; largest weight difference between ranks %g\n", loss,
                comm.size(), parallel.bucket_count(), double(worst));
  }
  return worst == 0 && loss < 0.5 ? 0 : 1;
}
