// tests/gradcheck_report.cpp (target gradcheck) — the gradient-check report: every op and module row of the
// table, in double, with shape, max abs error, max relative error and pass/fail.
// Exits non-zero when any row fails or an op has no row.
#include "gradcheck_table.hpp"

#include <cstdio>
#include <set>

int main() {
  using namespace tapegrad;
  using namespace tapegrad::testing;
  constexpr double tolerance = 1e-7;
  Rng rng(20261128);
  int failures = 0;
  std::set<std::string> covered;
  std::printf("%-22s %-48s %-16s %-12s %11s %11s  %s\n", "op", "sample", "input", "shape", "max abs", "max rel", "");
  for (const auto& row : gradcheck_rows<double>()) {
    const auto c = row.make(rng);
    const auto report = gradcheck<double>(c.forward, c.inputs);
    const bool op_recorded = !OpName::registry().count(row.op) || report.recorded(row.op);
    if (op_recorded) covered.insert(row.op);
    for (const auto& e : report.inputs) {
      const bool ok = e.max_rel_error <= tolerance && op_recorded;
      failures += !ok;
      std::printf("%-22s %-48s %-16s %-12s %11.2e %11.2e  %s\n", row.op.c_str(), row.sample.c_str(), e.name.c_str(),
                  shape_str(e.shape).c_str(), e.max_abs_error, e.max_rel_error, ok ? "pass" : "FAIL");
    }
  }
  for (const auto& name : OpName::registry())
    if (!covered.count(name)) {
      ++failures;
      std::printf("%-22s has no row in the gradcheck table: FAIL\n", name.c_str());
    }
  std::printf("%s: %d failure(s), tolerance %.0e on the max relative error\n", failures ? "FAILED" : "ok", failures,
              tolerance);
  return failures ? 1 : 0;
}
