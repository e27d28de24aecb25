// The one driver over the op table (op_table.hpp): forward against the plain-loop
// reference, backward against central differences, every error input, and a
// complete row for every registered op.
#include "op_table.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

using namespace tapegrad;
using namespace tapegrad::testing;

namespace {

// Every sample of every row in T: the forward within `forward_tolerance` of its
// reference, every input's gradient within `grad_tolerance`, and each op row's
// samples recording the op.
template <class T>
void check_every_sample(GradcheckOptions options, double grad_tolerance, double forward_tolerance) {
  Rng rng(20261128);
  for (const auto& row : op_table<T>()) {
    CAPTURE(row.op);
    for (const auto& sample : row.samples) {
      CAPTURE(sample.name);
      const auto c = sample.make(rng);
      if (c.reference) {
        Tape tape;
        NoGradGuard no_grad(tape);
        CHECK(forward_error(c.forward(tape), c.reference()) <= forward_tolerance);
      }
      const auto report = gradcheck<T>(c.forward, c.inputs, options);
      REQUIRE_FALSE(report.inputs.empty());
      for (const auto& e : report.inputs) {
        CAPTURE(e.name);
        CHECK(e.max_rel_error <= grad_tolerance);
      }
      if (OpName::registry().count(row.op)) CHECK_MESSAGE(report.recorded(row.op), "the sample never recorded its op");
    }
  }
}

}  // namespace

TEST_CASE("op table: forward against the reference and gradients in double (1e-12, 1e-7)") {
  check_every_sample<double>({.eps = 1e-6}, 1e-7, 1e-12);
}

TEST_CASE("op table: float smoke profile (forward 2e-5, gradients 3e-2)") {
  check_every_sample<float>({.eps = 1e-2}, 3e-2, 2e-5);
}

TEST_CASE("op table: every error input throws a ShapeError naming the op, and records nothing") {
  int checked = 0;
  for (const auto& row : op_table<double>()) {
    CAPTURE(row.op);
    for (const auto& error : row.errors) {
      CAPTURE(error.name);
      Tape tape;
      CHECK_THROWS_WITH_AS(error.call(tape), doctest::Contains(error.message.c_str()), ShapeError);
      CHECK(error.message.rfind(row.op + ": ", 0) == 0);  // the message starts with the op's name
      CHECK(tape.size() == 0);
      ++checked;
    }
  }
  CHECK(checked >= 20);
}

TEST_CASE("op table: every registered op has a complete row") {
  const auto table = op_table<double>();
  std::set<std::string> rows;
  for (const auto& row : table) {
    CAPTURE(row.op);
    CHECK_MESSAGE(rows.insert(row.op).second, "two rows for one op");
    CHECK_MESSAGE(!row.samples.empty(), "a row without samples");
    CHECK_MESSAGE(row.errors.empty() != row.accepts.empty(), "a row needs error inputs, or `accepts` saying why none");
    if (!OpName::registry().count(row.op)) {
      CHECK_MESSAGE(row.op.rfind("nn.", 0) == 0, "a row names an op that is not registered");
      continue;
    }
    Rng rng(1);
    for (const auto& sample : row.samples) {
      CAPTURE(sample.name);
      CHECK_MESSAGE(bool(sample.make(rng).reference), "an op sample without a reference forward");
    }
  }
  REQUIRE(OpName::registry().size() >= 2);
  for (const auto& name : OpName::registry()) {
    CAPTURE(name);
    CHECK_MESSAGE(rows.count(name) == 1, "a registered op has no row in tests/op_table.hpp");
  }
}

TEST_CASE("op table: every header in ops/ is included by tapegrad.hpp (so its ops register)") {
  const std::filesystem::path root = std::filesystem::path(TAPEGRAD_SOURCE_DIR) / "include" / "tapegrad";
  std::ifstream umbrella(root / "tapegrad.hpp");
  std::stringstream text;
  text << umbrella.rdbuf();
  int headers = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root / "ops")) {
    if (entry.path().extension() != ".hpp") continue;
    ++headers;
    const std::string include = "\"ops/" + entry.path().filename().string() + "\"";
    CAPTURE(include);
    CHECK(text.str().find(include) != std::string::npos);
  }
  CHECK(headers >= 2);
}

TEST_CASE("op table: the driver catches a wrong forward and a wrong backward rule") {
  // A deliberately broken op: forward y = 2x, backward claims dx = 3 dy.
  static const OpName broken{"test_broken_double"};
  Tensor<double> x = Tensor<double>::from({3}, {1, 2, 3}, true);
  auto forward = [&](Tape& t) {
    Tensor<double> y(Array<double>(2.0 * x.value()));
    return t.record(
        broken, y,
        [x, y]() mutable {
      Array<double> g = 3.0 * y.grad();
      x.accumulate_grad("test_broken_double", g);
        },
        x);
  };
  const auto report = gradcheck<double>(forward, {{"x", x}});
  CHECK(report.worst_rel_error() == doctest::Approx(0.5));
  Tape tape;
  const auto y = forward(tape);
  CHECK(forward_error(y, ref_unary(ref_of(x), [](double v) { return 2 * v; })) == 0.0);
  CHECK(forward_error(y, ref_unary(ref_of(x), [](double v) { return 2 * v + 1e-9; })) > 1e-12);
  CHECK(forward_error(y, Ref{{1, 3}, {2, 4, 6}}) == INFINITY);  // same values, another shape
  OpName::registry().erase("test_broken_double");               // not a real op: keep the coverage test honest
}
