// overlap_test — run under mpirun -np 2 (or more): DataParallel's all-reduces start
// during backward, and synchronize() leaves every gradient equal to the mean over ranks.
//
// Deterministic properties checked on every rank, for two steps of a small GPT split
// into several buckets (bucket_bytes 8 KiB):
//   - when tape.backward() returns, before synchronize(), every bucket's all-reduce has
//     started, from a gradient-final hook, in bucket order;
//   - every bucket but the last started while some parameter's gradient was still to be
//     finished by backward (so its all-reduce overlaps the rest of backward); the last
//     holds wte, tied to the output layer, whose gradient is final only after the
//     embedding's backward, the tape's first node;
//   - the buckets take the parameters in reverse registration order;
//   - when backward returns each gradient already equals the element-wise mean of the
//     ranks' own gradients (caught by a gradient-final hook added before DataParallel's,
//     reduced here with a blocking MPI_Allreduce) to 1e-6, and synchronize() changes nothing.
#include <tapegrad/dist/data_parallel.hpp>
#include <tapegrad/tapegrad.hpp>

#include "rank_checks.hpp"

#include <cstdio>
#include <random>

using namespace tapegrad;

using rank_checks::check;

int main() {
  dist::Communicator& comm = dist::Communicator::world();
  if (comm.size() < 2) {
    std::fprintf(stderr, "overlap_test: run it under mpirun -np 2 (or more)\n");
    return 1;
  }
  models::GPT<float> model({.vocab_size = 16, .block_size = 8, .n_layer = 2, .n_head = 2, .d_model = 32}, 5);
  const auto params = model.named_parameters();
  std::vector<Array<float>> own(params.size());  // each rank's own gradients, before the reduction
  for (std::size_t i = 0; i < params.size(); ++i)
    params[i].second.add_gradient_final_hook([&own, i](Array<float>& grad) { own[i] = grad; });
  dist::DataParallel<float> parallel(comm, model.named_parameters(), {.bucket_bytes = 8 << 10});
  const std::size_t n_buckets = parallel.bucket_count();
  check(n_buckets >= 3, "expected several buckets, got " + std::to_string(n_buckets));
  check(parallel.bucket_parameters(0).front() == params.back().first, "bucket 0 does not start with the last parameter");
  check(parallel.bucket_parameters(n_buckets - 1).back() == "wte", "the last bucket does not end with wte");

  std::mt19937_64 rng(100 + std::uint64_t(comm.rank()));  // each rank its own data
  std::uniform_int_distribution<std::int64_t> token(0, 15);
  for (int step = 0; step < 2; ++step) {
    Ids inputs = Ids::from_shape({2, 8}), targets = Ids::from_shape({2, 8});
    for (auto& t : inputs) t = token(rng);
    for (auto& t : targets) t = token(rng);
    model.zero_grad();
    Tape tape;
    tape.backward(model.loss(tape, inputs, targets));

    const auto& launches = parallel.launches();  // before synchronize(): what backward started
    check(launches.size() == n_buckets, "step " + std::to_string(step) + ": " + std::to_string(launches.size()) + " of " +
                                            std::to_string(n_buckets) + " buckets started during backward");
    for (std::size_t k = 0; k < launches.size(); ++k) {
      check(launches[k].bucket == k && launches[k].during_backward, "bucket " + std::to_string(k) + " out of order");
      if (k + 1 < n_buckets)
        check(launches[k].parameters_final < params.size(),
              "bucket " + std::to_string(k) + " started only after backward had finished every gradient");
      if (comm.is_root() && step == 0)
        std::printf("bucket %zu (%zu parameters, first %s) started when %zu of %zu gradients were final\n", k,
                    parallel.bucket_parameters(k).size(), parallel.bucket_parameters(k).front().c_str(),
                    launches[k].parameters_final, params.size());
    }

    std::vector<Array<float>> expected;
    for (Array<float> g : own) {
      comm.all_reduce_sum(std::span<float>(g.data(), g.size()));
      for (auto& x : g) x /= float(comm.size());
      expected.push_back(std::move(g));
    }
    const Array<float> first_after_backward = params[0].second.grad();
    parallel.synchronize();
    check(params[0].second.grad() == first_after_backward, "synchronize() changed a gradient backward had reduced");
    for (std::size_t i = 0; i < params.size(); ++i) {
      float worst = 0, scale = 0;
      for (std::size_t k = 0; k < expected[i].size(); ++k) {
        worst = std::max(worst, std::abs(params[i].second.grad().data()[k] - expected[i].data()[k]));
        scale = std::max(scale, std::abs(expected[i].data()[k]));
      }
      check(worst <= 1e-6f * scale, params[i].first + ": gradient is not the mean over the ranks");
    }
  }
  return rank_checks::finish("overlap_test");
}
