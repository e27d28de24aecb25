// The generic gradcheck driver over the OpInfo table.
#include "gradcheck_table.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

using namespace tapegrad;
using namespace tapegrad::testing;

namespace {

// The one driver: every row of the table in T, each input within `tolerance`, and
// each op row must have recorded its op.
template <class T>
void check_every_row(GradcheckOptions options, double tolerance) {
  Rng rng(20261128);
  for (const auto& row : gradcheck_rows<T>()) {
    CAPTURE(row.op);
    CAPTURE(row.sample);
    const auto c = row.make(rng);
    const auto report = gradcheck<T>(c.forward, c.inputs, options);
    REQUIRE_FALSE(report.inputs.empty());
    for (const auto& e : report.inputs) {
      CAPTURE(e.name);
      CHECK(e.max_rel_error <= tolerance);
    }
    if (OpName::registry().count(row.op)) CHECK_MESSAGE(report.recorded(row.op), "the row never recorded its op");
  }
}

}  // namespace

TEST_CASE("gradcheck: every row in double, max relative error <= 1e-7") { check_every_row<double>({.eps = 1e-6}, 1e-7); }

TEST_CASE("gradcheck: float smoke profile, max relative error <= 3e-2") { check_every_row<float>({.eps = 1e-2}, 3e-2); }

TEST_CASE("gradcheck: every registered op has a row") {
  std::set<std::string> covered;
  for (const auto& row : gradcheck_rows<double>()) covered.insert(row.op);
  REQUIRE(OpName::registry().size() >= 2);
  for (const auto& name : OpName::registry()) {
    CAPTURE(name);
    CHECK(covered.count(name) == 1);
  }
}

TEST_CASE("gradcheck: every header in ops/ is included by tapegrad.hpp (so its ops register)") {
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

TEST_CASE("gradcheck: catches a wrong backward rule") {
  // A deliberately broken op: forward y = 2x, backward claims dx = 3 dy.
  static const OpName broken{"test_broken_double"};
  Tensor<double> x = Tensor<double>::from({3}, {1, 2, 3}, true);
  auto forward = [&](Tape& t) {
    Tensor<double> y(Array<double>(2.0 * x.value()));
    return t.record(broken, y, [x, y]() mutable {
      Array<double> g = 3.0 * y.grad();
      x.accumulate_grad("test_broken_double", g);
    }, x);
  };
  const auto report = gradcheck<double>(forward, {{"x", x}});
  CHECK(report.worst_rel_error() == doctest::Approx(0.5));
  OpName::registry().erase("test_broken_double");  // not a real op: keep the coverage test honest
}
