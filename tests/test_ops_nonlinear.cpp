// causal_mask, softmax, log_softmax, causal_attention, layernorm, gelu, embedding,
// cross_entropy: forward values against direct computation, extreme inputs, masking,
// and errors.
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace tapegrad;
using namespace tapegrad::ops;

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

// Softmax of one row, computed the textbook way (fine for small inputs).
std::vector<double> direct_softmax(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += std::exp(v);
  std::vector<double> p;
  for (double v : x) p.push_back(std::exp(v) / s);
  return p;
}

// A tensor with distinct smooth entries sin(f i + phase).
Tensor<double> smooth(const Shape& shape, double f, double phase, bool requires_grad = true) {
  Array<double> a = Array<double>::from_shape(shape);
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = std::sin(f * double(i) + phase);
  return Tensor<double>(std::move(a), requires_grad);
}

double max_abs_diff(const Array<double>& a, const Array<double>& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a.data()[i] - b.data()[i]));
  return m;
}
}  // namespace

TEST_CASE("causal_mask: -inf above the diagonal, copies the rest") {
  Tape tape;
  auto s = Tensor<double>::from({2, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3, -4, -5, -6, -7, -8, -9}, true);
  auto y = causal_mask(tape, s);
  CHECK(y.shape() == Shape{2, 3, 3});
  for (std::size_t b = 0; b < 2; ++b)
    for (std::size_t t = 0; t < 3; ++t)
      for (std::size_t u = 0; u < 3; ++u) {
        if (u > t)
          CHECK(y.value()(b, t, u) == -kInf);
        else
          CHECK(y.value()(b, t, u) == s.value()(b, t, u));
      }
}

TEST_CASE("causal_mask -> softmax: masked positions get exactly zero gradient") {
  Tape tape;
  auto s = Tensor<double>::from({1, 2, 4, 4}, std::vector<double>(32, 0.0), true);
  for (std::size_t i = 0; i < s.size(); ++i) s.data()[i] = std::sin(1.7 * double(i));
  auto p = softmax(tape, causal_mask(tape, s));
  Array<double> seed = Array<double>::from_shape({1, 2, 4, 4});
  for (std::size_t i = 0; i < seed.size(); ++i) seed.data()[i] = std::cos(0.9 * double(i)) + 0.3;
  tape.backward(p, seed);
  for (std::size_t h = 0; h < 2; ++h)
    for (std::size_t t = 0; t < 4; ++t) {
      double row = 0;
      for (std::size_t u = 0; u < 4; ++u) {
        row += p.value()(0, h, t, u);
        if (u > t) {
          CHECK(p.value()(0, h, t, u) == 0.0);
          CHECK(s.grad()(0, h, t, u) == 0.0);
        }
      }
      CHECK(row == doctest::Approx(1.0));
      if (t > 0) CHECK(s.grad()(0, h, t, 0) != 0.0);  // the unmasked part does get a gradient
    }
}

TEST_CASE("causal_attention: output and q, k, v gradients equal matmul -> scale -> causal_mask -> softmax -> matmul") {
  // (B, h, T, dh): one query block; T = 150, blocks of 64 rows (64, 64, 22); T = 1100, blocks
  // of 128 rows (8 full, one of 76): the strips, their diagonal blocks and the last partial block.
  for (const Shape& shape : {Shape{2, 3, 5, 4}, Shape{1, 2, 150, 4}, Shape{1, 1, 1100, 3}}) {
    CAPTURE(shape_str(shape));
    CHECK(ops::query_block(shape[2]) == (shape[2] < 1024 ? 64u : 128u));
    auto q = smooth(shape, 1.3, 0.1), k = smooth(shape, 0.7, 0.5), v = smooth(shape, 2.1, 0.9);
    const Array<double> seed = smooth(shape, 0.9, 0.3, false).value();

    Tape fused;
    auto o = causal_attention(fused, q, k, v);
    CHECK(fused.op_names() == std::vector<std::string>{"causal_attention"});
    fused.backward(o, seed);
    const Array<double> dq = q.grad(), dk = k.grad(), dv = v.grad();

    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
    Tape composed;
    auto s = scale(composed, matmul(composed, q, k, {.transpose_b = true}), 1 / std::sqrt(double(shape[3])));
    auto oc = matmul(composed, softmax(composed, causal_mask(composed, s)), v);
    CHECK(composed.op_names() == std::vector<std::string>{"matmul", "scale", "causal_mask", "softmax", "matmul"});
    composed.backward(oc, seed);

    CHECK(max_abs_diff(o.value(), oc.value()) < 1e-12);
    CHECK(max_abs_diff(dq, q.grad()) < 1e-12);
    CHECK(max_abs_diff(dk, k.grad()) < 1e-12);
    CHECK(max_abs_diff(dv, v.grad()) < 1e-12);
    CHECK(max_abs_diff(dq, xt::zeros<double>(shape)) > 0.01);  // not all zero
  }
}

TEST_CASE("causal_attention: outputs at positions <= t depend on no key or value after t") {
  const Shape shape{2, 3, 6, 4};
  const std::size_t T = 6, t = 2, dh = 4, mats = 6;
  auto q = smooth(shape, 1.1, 0.2, false), k = smooth(shape, 0.6, 0.4), v = smooth(shape, 1.9, 0.8);
  auto k2 = smooth(shape, 0.6, 0.4), v2 = smooth(shape, 1.9, 0.8);
  for (std::size_t i = t + 1; i < mats * T; ++i)  // row i is position i % T
    if (i % T > t)
      for (std::size_t e = 0; e < dh; ++e) {
        k2.data()[i * dh + e] += 0.7;
        v2.data()[i * dh + e] -= 1.3;
      }
  Array<double> a, b;
  {
    Tape tape;
    NoGradGuard no_grad(tape);
    a = causal_attention(tape, q, k, v).value();
    b = causal_attention(tape, q, k2, v2).value();
  }
  bool later_differs = false;
  for (std::size_t i = 0; i < mats * T * dh; ++i) {
    if (i / dh % T <= t)
      CHECK(a.data()[i] == b.data()[i]);  // bit for bit
    else
      later_differs |= a.data()[i] != b.data()[i];
  }
  CHECK(later_differs);

  // Seeding only position t: keys and values after t get exactly 0; q requires no grad and gets none.
  Tape tape;
  auto o = causal_attention(tape, q, k, v);
  Array<double> seed = xt::zeros<double>(shape);
  for (std::size_t i = 0; i < mats; ++i)
    for (std::size_t e = 0; e < dh; ++e) seed.data()[(i * T + t) * dh + e] = std::cos(double(i + e));
  tape.backward(o, seed);
  CHECK_FALSE(q.has_grad());
  double earlier = 0;
  for (std::size_t i = 0; i < mats * T * dh; ++i) {
    if (i / dh % T > t) {
      CHECK(k.grad().data()[i] == 0.0);
      CHECK(v.grad().data()[i] == 0.0);
    } else {
      earlier += std::abs(k.grad().data()[i]) + std::abs(v.grad().data()[i]);
    }
  }
  CHECK(earlier > 0);
}

TEST_CASE("softmax / log_softmax: extreme logits stay finite and rows sum to 1") {
  Tape tape;
  for (const float scale : {1.0f, 1e4f}) {
    CAPTURE(scale);
    auto x = Tensor<float>::from({3, 4}, {scale, -scale, 0, scale,         // two maxima, one far below
                                          -scale, -scale, -scale, -scale,  // all equal, very negative
                                          7, 7, 7, 7});                    // all equal
    auto p = softmax(tape, x);
    auto lp = log_softmax(tape, x);
    for (std::size_t r = 0; r < 3; ++r) {
      double sum = 0, lsum = 0;
      for (std::size_t j = 0; j < 4; ++j) {
        CHECK(std::isfinite(p.value()(r, j)));
        CHECK(std::isfinite(lp.value()(r, j)));
        sum += p.value()(r, j);
        lsum += std::exp(double(lp.value()(r, j)));
      }
      CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
      CHECK(lsum == doctest::Approx(1.0).epsilon(1e-6));
    }
    CHECK(p.value()(1, 2) == doctest::Approx(0.25));
    CHECK(p.value()(2, 0) == doctest::Approx(0.25));
  }
  auto big = Tensor<double>::from({1, 3}, {1e4, -1e4, 0});
  CHECK(softmax(tape, big).value()(0, 0) == 1.0);
  CHECK(log_softmax(tape, big).value()(0, 1) == doctest::Approx(-2e4));
}

TEST_CASE("softmax / log_softmax: -inf entries and all--inf rows") {
  Tape tape;
  auto x = Tensor<double>::from({2, 3}, {0.5, -kInf, 1.5, -kInf, -kInf, -kInf}, true);
  auto p = softmax(tape, x);
  CHECK(p.value()(0, 1) == 0.0);
  CHECK(p.value()(0, 0) + p.value()(0, 2) == doctest::Approx(1.0));
  for (std::size_t j = 0; j < 3; ++j) CHECK(p.value()(1, j) == 0.0);  // not NaN
  tape.backward(p, Array<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
  CHECK(x.grad()(0, 1) == 0.0);
  for (std::size_t j = 0; j < 3; ++j) CHECK(x.grad()(1, j) == 0.0);
  CHECK(x.grad()(0, 0) == doctest::Approx(-p.value()(0, 0) * p.value()(0, 2) * 2.0));

  x.zero_grad();
  Tape t2;
  auto lp = log_softmax(t2, x);
  CHECK(lp.value()(0, 1) == -kInf);
  CHECK(lp.value()(1, 0) == -kInf);
  CHECK(std::exp(lp.value()(0, 0)) + std::exp(lp.value()(0, 2)) == doctest::Approx(1.0));
  t2.backward(lp, Array<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
  CHECK(x.grad()(0, 1) == 0.0);
  for (std::size_t j = 0; j < 3; ++j) CHECK(x.grad()(1, j) == 0.0);
  // dx = dy - p * rowsum(dy over unmasked entries) = 1 - p0 * 4
  CHECK(x.grad()(0, 0) == doctest::Approx(1.0 - std::exp(lp.value()(0, 0)) * 4.0));
}

TEST_CASE("layernorm: normalised rows have mean 0 and variance 1, weight and bias apply after") {
  Tape tape;
  auto x = Tensor<double>::from({2, 4}, {1, 2, 3, 4, -3, 0.5, 10, 2});
  auto ones = Tensor<double>::from({4}, {1, 1, 1, 1}), zeros = Tensor<double>::zeros({4});
  auto y = layernorm(tape, x, ones, zeros);
  for (std::size_t r = 0; r < 2; ++r) {
    double m = 0, v = 0;
    for (std::size_t j = 0; j < 4; ++j) m += y.value()(r, j) / 4;
    for (std::size_t j = 0; j < 4; ++j) v += (y.value()(r, j) - m) * (y.value()(r, j) - m) / 4;
    CHECK(m == doctest::Approx(0.0).scale(1.0));
    CHECK(v == doctest::Approx(1.0).epsilon(1e-5));  // eps = 1e-5 in the denominator
  }
  // Row 0: mean 2.5, biased variance 1.25.
  const double rstd = 1 / std::sqrt(1.25 + 1e-5);
  CHECK(y.value()(0, 0) == doctest::Approx(-1.5 * rstd).epsilon(1e-14));
  auto w = Tensor<double>::from({4}, {2, -1, 0.5, 3}), b = Tensor<double>::from({4}, {0.1, 0.2, 0.3, 0.4});
  auto z = layernorm(tape, x, w, b);
  for (std::size_t j = 0; j < 4; ++j)
    CHECK(z.value()(1, j) == doctest::Approx(y.value()(1, j) * w.value()(j) + b.value()(j)).epsilon(1e-14));
}

TEST_CASE("embedding: looks up rows, repeated ids accumulate in backward") {
  Tape tape;
  auto table = Tensor<double>::from({3, 2}, {1, 2, 3, 4, 5, 6}, true);
  const Ids ids = {{2, 0}, {2, 2}};
  auto y = embedding(tape, table, ids);
  CHECK(y.shape() == Shape{2, 2, 2});
  CHECK(y.value()(0, 0, 0) == 5);
  CHECK(y.value()(0, 1, 1) == 2);
  CHECK(y.value()(1, 1, 0) == 5);
  tape.backward(y, Array<double>{{{1, 10}, {100, 1000}}, {{2, 20}, {3, 30}}});
  CHECK(table.grad()(2, 0) == 1 + 2 + 3);
  CHECK(table.grad()(2, 1) == 10 + 20 + 30);
  CHECK(table.grad()(0, 1) == 1000);
  CHECK(table.grad()(1, 0) == 0);
}

TEST_CASE("cross_entropy: mean of -log_softmax[target], backward is (softmax - onehot) / N") {
  Tape tape;
  auto logits = Tensor<double>::from({2, 1, 3}, {1.0, 2.0, 0.5, -1.0, 3.0, 0.0}, true);
  Ids targets = Ids::from_shape({2, 1});
  targets(0, 0) = 2;
  targets(1, 0) = 1;
  auto loss = cross_entropy(tape, logits, targets);
  CHECK(loss.dim() == 0);
  Tape other;
  auto lp = log_softmax(other, logits);
  const double expected = -(lp.value()(0, 0, 2) + lp.value()(1, 0, 1)) / 2;
  CHECK(loss.item() == doctest::Approx(expected).epsilon(1e-14));
  const auto p0 = direct_softmax({1.0, 2.0, 0.5});
  CHECK(loss.item() == doctest::Approx((-std::log(p0[2]) - lp.value()(1, 0, 1)) / 2));

  tape.backward(loss);
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t j = 0; j < 3; ++j) {
      const double onehot = std::int64_t(j) == targets(n, 0) ? 1.0 : 0.0;
      CHECK(logits.grad()(n, 0, j) == doctest::Approx((std::exp(lp.value()(n, 0, j)) - onehot) / 2).epsilon(1e-14));
    }
}

TEST_CASE("cross_entropy: extreme logits stay finite") {
  Tape tape;
  auto logits = Tensor<float>::from({2, 3}, {1e4f, -1e4f, 0, 5, 5, 5});
  auto loss = cross_entropy(tape, logits, Ids{0, 1});
  CHECK(std::isfinite(loss.item()));
  CHECK(loss.item() == doctest::Approx(std::log(3.0) / 2).epsilon(1e-6));
}

// The float exp the kernels use (core/vecmath.hpp, xsimd) against std::exp over a sweep of
// the float range, 2^20 points from -103 to 88.7 (the largest finite exp): in units in the
// last place where the result is a normal float up to x = 88.37, and in absolute terms below
// FLT_MIN (xsimd flushes subnormal results, x < -87.34, to 0: an error under 1.2e-38). Above
// 88.376 xsimd returns inf, where std::exp still has up to 3.4e38: the kernels only exponentiate
// x - max <= 0 and 2u for tanh, whose tanh is 1 either way. Then the edge values.
TEST_CASE(
    "vecmath: xsimd exp is within 1 ulp of std::exp for normal results, below FLT_MIN otherwise, exact at the edges") {
  auto ulps = [](float a, float b) {
    std::int32_t ia, ib;
    std::memcpy(&ia, &a, 4);
    std::memcpy(&ib, &b, 4);
    return std::abs(std::int64_t(ia) - std::int64_t(ib));  // both >= 0: ordered like the floats
  };
  const float tiny = std::numeric_limits<float>::min();
  const std::size_t n = std::size_t(1) << 20;
  std::vector<float> x(n), y(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = -103.f + 191.7f * float(i) / float(n - 1);
  vec::exp_shifted(x.data(), n, 0.f, y.data());
  std::int64_t worst = 0;
  float worst_at = 0, worst_below = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float ref = std::exp(x[i]);
    if (ref >= tiny && x[i] <= 88.37f && ulps(y[i], ref) > worst) worst = ulps(y[i], ref), worst_at = x[i];
    if (x[i] > 88.37f) CHECK_MESSAGE((ulps(y[i], ref) <= 1 || y[i] == std::numeric_limits<float>::infinity()), x[i]);
    if (ref < tiny) worst_below = std::max(worst_below, std::abs(y[i] - ref));
  }
  MESSAGE("xsimd exp: max " << worst << " ulp from std::exp for normal results (at x = " << worst_at
                            << "), max abs error " << worst_below << " below FLT_MIN");
  CHECK(worst <= 1);
  CHECK(worst_below < tiny);

  const float inf = std::numeric_limits<float>::infinity();
  // 16 values: one full vector on AVX-512, two on AVX2, four on SSE2.
  std::vector<float> edge{-inf, 0.f, 89.f, inf, -200.f, 1.f, -1.f, 2.f, -inf, 0.f, 89.f, inf, -200.f, 3.f, -3.f, 0.5f};
  std::vector<float> out(edge.size());
  vec::exp_shifted(edge.data(), edge.size(), 0.f, out.data());
  for (std::size_t v = 0; v < edge.size(); v += 8) {
    CHECK(out[v + 0] == 0.f);
    CHECK(out[v + 1] == 1.f);
    CHECK(out[v + 2] == inf);
    CHECK(out[v + 3] == inf);
    CHECK(out[v + 4] == 0.f);
    for (std::size_t i = v + 5; i < v + 8; ++i) CHECK(ulps(out[i], std::exp(edge[i])) <= 1);
  }
}

// The kernels in use are the CPU's widest, or the narrower ones TAPEGRAD_ISA names
// (ctest runs these tests once per path: kernels_<isa>_...).
TEST_CASE("vecmath: the kernels in use are TAPEGRAD_ISA's when the CPU has it, else the widest the CPU has") {
  const vec::Kernels& active = vec::active_kernels();
  const vec::Isa widest = vec::widest_kernels().isa;
  const char* env = std::getenv("TAPEGRAD_ISA");
  const std::string want = env ? env : "";
  MESSAGE("kernels in use: " << vec::isa_name(active.isa) << ", widest on this CPU: " << vec::isa_name(widest));
  if (want.empty() || (want == "avx512" && widest != vec::Isa::avx512) || (want == "avx2" && widest == vec::Isa::sse2))
    CHECK(active.isa == widest);
  else
    CHECK(std::string(vec::isa_name(active.isa)) == want);
  CHECK(int(active.isa) <= int(widest));
  CHECK(vec::widest_kernels().isa == (cpu::has_avx512() ? vec::Isa::avx512
                                      : cpu::has_avx2() ? vec::Isa::avx2
                                                        : vec::Isa::sse2));
}

TEST_CASE("vecmath: GELU's tanh through the vector exp is within 2e-7 of std::tanh") {
  std::vector<float> u(4096), t(4096);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = -12.f + 24.f * float(i) / 4095.f;
  vec::tanh_via_exp(u.data(), u.size(), t.data());
  double worst = 0;
  for (std::size_t i = 0; i < u.size(); ++i) worst = std::max(worst, std::abs(double(t[i]) - std::tanh(double(u[i]))));
  MESSAGE("tanh via exp: max abs error " << worst);
  CHECK(worst < 2e-7);
}

TEST_CASE("vecmath: the small-matrix GEMM matches a double-precision GEMM for every transpose, alpha and beta") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  int cases = 0;
  for (const auto& shape :
       {std::array<std::size_t, 3>{1, 1, 1}, {32, 32, 8}, {32, 8, 32}, {5, 17, 3}, {7, 33, 9}, {16, 64, 16}})
    for (const bool ta : {false, true})
      for (const bool tb : {false, true})
        for (const auto& scales : {std::pair{1.f, 0.f}, {0.25f, 1.f}, {-2.f, 0.5f}}) {
          // Plain variables, not structured bindings: INFO captures them in a lambda, which
          // clang 14 (the sanitizer build's compiler) refuses for bindings.
          const std::size_t M = shape[0], N = shape[1], K = shape[2];
          const float alpha = scales.first, beta = scales.second;
          INFO(M << "x" << N << "x" << K << " ta " << ta << " tb " << tb << " alpha " << alpha << " beta " << beta);
          REQUIRE(vec::is_small_gemm(M, N, K));
          // A, B and C stored with leading dimensions wider than the matrices (a GEMM on a sub-block).
          const std::size_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
          std::vector<float> a((ta ? K : M) * lda), b((tb ? N : K) * ldb), c(M * ldc);
          for (auto* v : {&a, &b, &c})
            for (float& x : *v) x = uniform(rng);
          if (beta == 0.f) std::fill(c.begin(), c.end(), std::numeric_limits<float>::quiet_NaN());  // never read
          std::vector<float> got = c;
          vec::active_kernels().small_gemm(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta, got.data(), ldc);
          double worst = 0;
          for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) {
              double sum = 0;
              for (std::size_t k = 0; k < K; ++k)
                sum += double(ta ? a[k * lda + i] : a[i * lda + k]) * double(tb ? b[j * ldb + k] : b[k * ldb + j]);
              const double want = double(alpha) * sum + (beta == 0.f ? 0.0 : double(beta) * double(c[i * ldc + j]));
              worst = std::max(worst, std::abs(double(got[i * ldc + j]) - want));
            }
          for (std::size_t i = 0; i < M; ++i)  // the padding columns of C are left alone
            for (std::size_t j = N; j < ldc; ++j)
              CHECK(std::memcmp(&got[i * ldc + j], &c[i * ldc + j], sizeof(float)) == 0);
          CHECK(worst < 1e-5 * double(K));
          ++cases;
        }
  CHECK(cases == 72);
}

TEST_CASE("sigmoid / silu: large |x| keeps its exact gradient and finite values, in double and float") {
  const std::vector<double> xs = {-800, -40, -20, 20, 40, 800};
  Tensor<double> x = Tensor<double>::from({6}, xs, true);
  Tape tape;
  auto s = sigmoid(tape, x);
  tape.backward(sum(tape, s));
  for (std::size_t i = 0; i < xs.size(); ++i) {
    CAPTURE(xs[i]);
    const double e = std::exp(-std::abs(xs[i])), exact = e / ((1 + e) * (1 + e));
    CHECK(s.data()[i] == doctest::Approx(1 / (1 + std::exp(-xs[i]))).epsilon(1e-15));
    // x = 40: s rounds to 1, so s (1 - s) would give 0; the gradient is e^-40 to the last bits
    CHECK(x.grad().data()[i] == doctest::Approx(exact).epsilon(1e-14));
  }
  Tensor<float> xf = Tensor<float>::from({6}, {-800.f, -40.f, -20.f, 20.f, 40.f, 800.f}, true);
  Tape tape_f;
  auto y = silu(tape_f, xf);
  tape_f.backward(sum(tape_f, y));
  for (std::size_t i = 0; i < 6; ++i) {
    CAPTURE(xs[i]);
    CHECK(std::isfinite(y.data()[i]));
    CHECK(std::isfinite(xf.grad().data()[i]));
    CHECK(y.data()[i] == doctest::Approx(xs[i] > 0 ? xs[i] : 0.0).epsilon(1e-6));
    CHECK(xf.grad().data()[i] == doctest::Approx(xs[i] > 0 ? 1.0 : 0.0).epsilon(1e-6));
  }
}

TEST_CASE("log, sqrt, div at the edge of their domain give IEEE values, and anomaly mode names the op") {
  Tensor<double> zero = Tensor<double>::from({1}, {0.0}, true);
  Tape tape;
  CHECK(ops::log(tape, zero).data()[0] == -kInf);
  auto root = ops::sqrt(tape, zero);
  CHECK(root.data()[0] == 0.0);
  tape.backward(sum(tape, root));
  CHECK(zero.grad().data()[0] == kInf);
  Tape watched;
  watched.set_detect_anomaly(true);
  CHECK_THROWS_WITH_AS(div(watched, Tensor<double>::from({1}, {1.0}, true), zero), doctest::Contains("div"),
                       AnomalyError);
}

TEST_CASE("rope: rotation keeps each pair's length, and position p with offset equals row p of a longer run") {
  Tensor<double> x = smooth({2, 3, 9, 8}, 0.37, 0.1);
  Tape tape;
  const auto y = rope(tape, x);
  for (std::size_t r = 0; r < x.size() / 8; ++r)
    for (std::size_t i = 0; i < 4; ++i) {
      const double* a = x.data() + r * 8;
      const double* b = y.data() + r * 8;
      CHECK(std::hypot(b[i], b[i + 4]) == doctest::Approx(std::hypot(a[i], a[i + 4])).epsilon(1e-14));
    }
  // rows 5..8 rotated alone with offset 5 are rows 5..8 of the whole: what a KV cache relies on
  const auto tail = rope(tape, slice(tape, x, 2, 5, 9), 5);
  const auto expected = slice(tape, y, 2, 5, 9);
  CHECK(max_abs_diff(tail.value(), expected.value()) == 0.0);
}

TEST_CASE("linear: the bias and GELU in one op equal matmul -> add -> gelu bit for bit, at 1 and 2 threads") {
  // (rows, K, N): a GEMM too small to split, one cut into blocks of rows (the epilogue runs
  // on each block), one cut into blocks of columns (the epilogue runs after); N a multiple of
  // 16, so the composed GELU's blocks meet the vector exp at the same elements.
  for (const auto& shape : {std::array<std::size_t, 3>{6, 5, 16}, {512, 64, 160}, {96, 256, 512}})
    for (const Activation activation : {Activation::none, Activation::gelu})
      for (const int threads : {1, 2}) {
        const std::size_t rows = shape[0], K = shape[1], N = shape[2];  // plain variables for INFO (clang 14)
        INFO(rows << "x" << K << "x" << N << " gelu " << (activation == Activation::gelu) << " threads " << threads);
        std::mt19937 rng(7);
        std::normal_distribution<float> normal(0.f, 1.f);
        const auto random = [&](const Shape& dims) {
          Array<float> a = Array<float>::from_shape(dims);
          for (float& v : a) v = normal(rng);
          return Tensor<float>(std::move(a), true);
        };
        auto x = random({2, rows / 2, K}), w = random({K, N}), b = random({N});
        const Array<float> seed = random({2, rows / 2, N}).value();

        Tape fused(Context{threads});
        const Tensor<float> y = linear(fused, x, w, b, activation);
        CHECK(fused.op_names() == std::vector<std::string>{"linear"});
        fused.backward(y, seed);
        const Array<float> dx = x.grad(), dw = w.grad(), db = b.grad();

        x.zero_grad();
        w.zero_grad();
        b.zero_grad();
        Tape composed(Context{threads});
        Tensor<float> yc = add(composed, matmul(composed, x, w), b);
        if (activation == Activation::gelu) yc = gelu(composed, yc);
        composed.backward(yc, seed);

        const auto same_bits = [](const Array<float>& p, const Array<float>& q) {
          return p.shape() == q.shape() && std::memcmp(p.data(), q.data(), p.size() * sizeof(float)) == 0;
        };
        CHECK(same_bits(y.value(), yc.value()));
        CHECK(same_bits(dx, x.grad()));
        CHECK(same_bits(dw, w.grad()));
        CHECK(same_bits(db, b.grad()));
        CHECK(std::abs(db.data()[0]) > 0);  // not all zero
      }
}
