// Elementwise, reduce, reshape, permute, heads: what the op table (test_op_table.cpp)
// does not state: accumulation, exact inverse permutations, round trips, float.
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <numeric>

using namespace tapegrad;
using namespace tapegrad::ops;

namespace {
// 0, 1, 2, ... in a tensor of `shape`.
Tensor<double> iota(const Shape& shape, bool requires_grad = true) {
  std::vector<double> v(numel(shape));
  std::iota(v.begin(), v.end(), 0.0);
  return Tensor<double>::from(shape, v, requires_grad);
}
Tensor<double> of(const Shape& shape, std::vector<double> v, bool requires_grad = true) {
  return Tensor<double>::from(shape, v, requires_grad);
}
}  // namespace

TEST_CASE("add/mul: broadcast gradients sum back to each input's shape") {
  SUBCASE("bias add: grad equals the sum over rows") {
    Tape tape;
    auto x = iota({2, 3, 4}), bias = iota({4});
    auto y = add(tape, x, bias);
    Array<double> seed = iota({2, 3, 4}, false).value();
    tape.backward(y, seed);
    Array<double> rows = xt::sum(seed, {0, 1});
    for (std::size_t k = 0; k < 4; ++k) CHECK(bias.grad()(k) == doctest::Approx(rows(k)));
    CHECK(x.grad() == seed);
  }
  SUBCASE("both broadcast mul: [2,1,3] * [4,1]") {
    Tape tape;
    auto a = iota({2, 1, 3}), b = of({4, 1}, {1, -2, 3, 0.5});
    tape.backward(sum(tape, mul(tape, a, b)));
    // d/da[i,0,k] = sum_j b[j];  d/db[j] = sum_{i,k} a[i,0,k]
    for (std::size_t i = 0; i < 6; ++i) CHECK(a.grad().data()[i] == doctest::Approx(2.5));
    for (std::size_t j = 0; j < 4; ++j) CHECK(b.grad()(j, 0) == doctest::Approx(15.0));
  }
}

TEST_CASE("add/mul: the same tensor twice gets both contributions") {
  Tape tape;
  auto x = of({2, 3}, {1, -2, 0.5, 3, 4, -1});
  tape.backward(sum(tape, mul(tape, x, x)));
  for (std::size_t i = 0; i < 6; ++i) CHECK(x.grad().data()[i] == doctest::Approx(2 * x.data()[i]));
  x.zero_grad();
  Tape tape2;
  tape2.backward(sum(tape2, add(tape2, x, x)));
  for (std::size_t i = 0; i < 6; ++i) CHECK(x.grad().data()[i] == doctest::Approx(2.0));
}

TEST_CASE("permute: the backward applies the inverse permutation") {
  Tape tape;
  auto x = iota({2, 3, 4});
  auto y = permute(tape, x, {1, 2, 0});
  Array<double> seed = iota({3, 4, 2}, false).value();
  tape.backward(y, seed);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 4; ++k) CHECK(x.grad()(i, j, k) == seed(j, k, i));
}

TEST_CASE("split_heads/merge_heads: the round trip is the identity, backward too") {
  Tape tape;
  auto x = iota({2, 3, 6});
  auto m = merge_heads(tape, split_heads(tape, x, 3));
  CHECK(m.shape() == x.shape());
  CHECK(m.value() == x.value());
  Array<double> seed = iota({2, 3, 6}, false).value();
  tape.backward(m, seed);
  CHECK(x.grad() == seed);
}

TEST_CASE("shape ops: float works too") {
  Tape tape;
  auto x = Tensor<float>::from({2, 2}, {1, 2, 3, 4}, true);
  auto b = Tensor<float>::from({2}, {0.5f, -1}, true);
  auto y = mean(tape, mul(tape, transpose(tape, add(tape, x, b), 0, 1), x));  // mean_ji (x_ij + b_j) x_ji
  tape.backward(y);
  CHECK(b.grad()(0) == doctest::Approx((1 + 2) / 4.0));  // b_0 meets x_00, x_01
  CHECK(b.grad()(1) == doctest::Approx((3 + 4) / 4.0));
}
