// Elementwise, reduce, reshape, permute, heads: forward values, argument errors, accumulation.
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

TEST_CASE("add/mul: forward values, same shape and both broadcast directions") {
  Tape tape;
  auto a = of({2, 3}, {1, 2, 3, 4, 5, 6});
  auto b = of({2, 3}, {10, 20, 30, 40, 50, 60});
  CHECK(add(tape, a, b).value() == Array<double>{{11, 22, 33}, {44, 55, 66}});
  CHECK(mul(tape, a, b).value() == Array<double>{{10, 40, 90}, {160, 250, 360}});

  auto bias = of({3}, {1, -1, 2});
  CHECK(add(tape, a, bias).value() == Array<double>{{2, 1, 5}, {5, 4, 8}});
  CHECK(add(tape, bias, a).value() == Array<double>{{2, 1, 5}, {5, 4, 8}});  // a broadcasts
  CHECK(mul(tape, bias, a).value() == Array<double>{{1, -2, 6}, {4, -5, 12}});

  auto col = of({2, 1}, {10, 100});
  CHECK(mul(tape, a, col).value() == Array<double>{{10, 20, 30}, {400, 500, 600}});

  // both broadcast: [2,1,3] op [4,1] -> [2,4,3]
  auto x = iota({2, 1, 3}), y = iota({4, 1});
  const auto s = add(tape, x, y), p = mul(tape, x, y);
  REQUIRE(s.shape() == Shape{2, 4, 3});
  REQUIRE(p.shape() == Shape{2, 4, 3});
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 4; ++j)
      for (std::size_t k = 0; k < 3; ++k) {
        CHECK(s.value()(i, j, k) == x.value()(i, 0, k) + y.value()(j, 0));
        CHECK(p.value()(i, j, k) == x.value()(i, 0, k) * y.value()(j, 0));
      }

  auto scalar = of({}, {2});
  CHECK(mul(tape, a, scalar).value() == Array<double>{{2, 4, 6}, {8, 10, 12}});
}

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

TEST_CASE("add/mul: incompatible shapes throw naming the op and both shapes") {
  Tape tape;
  auto a = iota({2, 3}), b = iota({4}), c = iota({3, 3});
  CHECK_THROWS_WITH_AS(add(tape, a, b), doctest::Contains("add: cannot broadcast a [2, 3] with b [4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(mul(tape, a, c), doctest::Contains("mul: cannot broadcast a [2, 3] with b [3, 3]"),
                       ShapeError);
}

TEST_CASE("sum/mean: rank-0 results and their gradients") {
  Tape tape;
  auto x = iota({2, 3});  // 0..5
  auto s = sum(tape, x), m = mean(tape, x);
  CHECK(s.shape() == Shape{});
  CHECK(s.item() == 15.0);
  CHECK(m.item() == doctest::Approx(2.5));
  tape.backward(add(tape, s, m));
  for (std::size_t i = 0; i < 6; ++i) CHECK(x.grad().data()[i] == doctest::Approx(1.0 + 1.0 / 6));
  CHECK_THROWS_WITH_AS(mean(tape, Tensor<double>::zeros({0, 3}, true)), doctest::Contains("mean: "),
                       ShapeError);
}

TEST_CASE("reshape: keeps row-major order, mismatched counts name both shapes") {
  Tape tape;
  auto x = iota({2, 3});
  auto y = reshape(tape, x, {3, 2});
  CHECK(y.value() == Array<double>{{0, 1}, {2, 3}, {4, 5}});
  CHECK_THROWS_WITH_AS(reshape(tape, x, {4, 2}), doctest::Contains("reshape: cannot reshape [2, 3]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(reshape(tape, x, {4, 2}), doctest::Contains("[4, 2]"), ShapeError);
}

TEST_CASE("permute/transpose: forward values match direct indexing") {
  Tape tape;
  auto x = iota({2, 3, 4});
  auto y = permute(tape, x, {2, 0, 1});
  REQUIRE(y.shape() == Shape{4, 2, 3});
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 4; ++k) CHECK(y.value()(k, i, j) == x.value()(i, j, k));

  auto m = iota({2, 3});
  auto t = transpose(tape, m, 0, 1);
  CHECK(t.value() == Array<double>{{0, 3}, {1, 4}, {2, 5}});
  CHECK(tape.op_names().back() == "permute");

  auto z = permute(tape, of({}, {7}), {});
  CHECK(z.item() == 7.0);
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

TEST_CASE("permute/transpose: bad axes throw naming the axes and the shape") {
  Tape tape;
  auto x = iota({2, 3, 4});
  CHECK_THROWS_WITH_AS(permute(tape, x, {0, 1, 1}),
                       doctest::Contains("permute: axes [0, 1, 1] are not a permutation of the axes of x [2, 3, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(permute(tape, x, {0, 1}), doctest::Contains("permute: axes [0, 1]"), ShapeError);
  CHECK_THROWS_WITH_AS(permute(tape, x, {0, 1, 3}), doctest::Contains("permute: axes [0, 1, 3]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(transpose(tape, x, 0, 3), doctest::Contains("permute: transpose axes 0, 3"),
                       ShapeError);
}

TEST_CASE("split_heads/merge_heads: forward values, round trip, errors") {
  Tape tape;
  auto x = iota({2, 3, 6});
  auto s = split_heads(tape, x, 3);  // dh = 2
  REQUIRE(s.shape() == Shape{2, 3, 3, 2});
  for (std::size_t b = 0; b < 2; ++b)
    for (std::size_t h = 0; h < 3; ++h)
      for (std::size_t t = 0; t < 3; ++t)
        for (std::size_t e = 0; e < 2; ++e) CHECK(s.value()(b, h, t, e) == x.value()(b, t, h * 2 + e));

  auto m = merge_heads(tape, s);
  CHECK(m.shape() == x.shape());
  CHECK(m.value() == x.value());
  Array<double> seed = iota({2, 3, 6}, false).value();
  tape.backward(m, seed);
  CHECK(x.grad() == seed);  // the round trip is the identity, backward too

  Tape t2;
  CHECK_THROWS_WITH_AS(split_heads(t2, iota({2, 6}), 2), doctest::Contains("split_heads: x must be [B, T, d], got [2, 6]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(split_heads(t2, x, 4), doctest::Contains("split_heads: d = 6 is not divisible by h = 4"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(split_heads(t2, x, 0), doctest::Contains("split_heads: the number of heads h must be positive"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(merge_heads(t2, x), doctest::Contains("merge_heads: x must be [B, h, T, dh], got [2, 3, 6]"),
                       ShapeError);
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
