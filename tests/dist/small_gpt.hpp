// tests/dist/small_gpt.hpp — what the data-parallel test programs train and compare: a
// 2-layer GPT, random global batches (the same on every rank), one rank's rows of them,
// and the distance between two sets of weights.
#pragma once

#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace small_gpt {

using namespace tapegrad;

constexpr std::size_t kVocab = 16, kBlock = 8;
inline const models::GPTConfig kConfig{
    .vocab_size = kVocab, .block_size = kBlock, .n_layer = 2, .n_head = 2, .d_model = 32};

// Rows [first, first + count) of `all`.
inline Ids rows(const Ids& all, std::size_t first, std::size_t count) {
  Ids part = Ids::from_shape({count, kBlock});
  std::copy_n(all.data() + first * kBlock, count * kBlock, part.data());
  return part;
}

// The largest |a - b| over every tensor, each divided by max(1, the tensor's largest |a|).
template <class T>
double largest_difference(const NamedTensors<T>& a, const NamedTensors<T>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& x = a[i].second.value();
    const auto& y = b[i].second.value();
    double scale = 1, diff = 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      scale = std::max(scale, std::abs(double(x.data()[k])));
      diff = std::max(diff, std::abs(double(x.data()[k]) - double(y.data()[k])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

struct Batches {
  std::vector<Ids> inputs, targets;  // one global batch per step
};

// `steps` global batches of `batch` rows of random tokens from `seed`.
inline Batches random_batches(std::size_t steps, std::size_t batch, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> token(0, kVocab - 1);
  Batches b;
  for (std::size_t s = 0; s < steps; ++s) {
    b.inputs.push_back(Ids::from_shape({batch, kBlock}));
    b.targets.push_back(Ids::from_shape({batch, kBlock}));
    for (auto& t : b.inputs.back()) t = token(rng);
    for (auto& t : b.targets.back()) t = token(rng);
  }
  return b;
}

}  // namespace small_gpt
