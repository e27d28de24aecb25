// tests/gradcheck_report.cpp (target gradcheck) — the op table's report: every sample
// of every op and module row, in double, with the forward's error against its
// plain-loop reference, and per input the shape, max abs and max relative gradient
// error; then each op's error inputs. Exits non-zero when anything fails or a
// registered op has no row.
//
//   gradcheck             the full report (docs/derivations.md)
//   gradcheck --summary   one Markdown line per row, worst figures (docs/testing.md)
#include "op_table.hpp"

#include <cstdio>
#include <cstring>
#include <set>

int main(int argc, char** argv) {
  using namespace tapegrad;
  using namespace tapegrad::testing;
  const bool summary = argc == 2 && std::strcmp(argv[1], "--summary") == 0;
  if (argc > 1 && !summary) {
    std::fprintf(stderr, "usage: gradcheck [--summary]\n");
    return 2;
  }
  constexpr double grad_tolerance = 1e-7, forward_tolerance = 1e-12;
  Rng rng(20261128);
  int failures = 0;
  std::set<std::string> covered;
  if (summary) {
    std::printf("| op or module | samples | worst gradient error | worst forward error | error inputs |\n");
    std::printf("|---|---|---|---|---|\n");
  } else {
    std::printf("%-22s %-48s %-10s %-16s %-12s %11s %11s  %s\n", "op", "sample", "forward", "input", "shape", "max abs",
                "max rel", "");
  }
  for (const auto& row : op_table<double>()) {
    double worst_grad = 0, worst_forward = -1;
    for (const auto& sample : row.samples) {
      const auto c = sample.make(rng);
      double forward = -1;  // -1: no reference (a composite module)
      if (c.reference) {
        Tape tape;
        NoGradGuard no_grad(tape);
        forward = forward_error(c.forward(tape), c.reference());
        worst_forward = std::max(worst_forward, forward);
      }
      const auto report = gradcheck<double>(c.forward, c.inputs);
      const bool op_recorded = !OpName::registry().count(row.op) || report.recorded(row.op);
      if (op_recorded) covered.insert(row.op);
      const bool forward_ok = forward <= forward_tolerance;  // -1 (no reference) passes
      char forward_text[16] = "-";
      if (forward >= 0) std::snprintf(forward_text, sizeof forward_text, "%.2e", forward);
      for (const auto& e : report.inputs) {
        const bool ok = e.max_rel_error <= grad_tolerance && op_recorded && forward_ok;
        failures += !ok;
        worst_grad = std::max(worst_grad, e.max_rel_error);
        if (!summary)
          std::printf("%-22s %-48s %-10s %-16s %-12s %11.2e %11.2e  %s\n", row.op.c_str(), sample.name.c_str(),
                      forward_text, e.name.c_str(), shape_str(e.shape).c_str(), e.max_abs_error, e.max_rel_error,
                      ok ? "pass" : "FAIL");
      }
    }
    int refused = 0;
    for (const auto& error : row.errors) {
      Tape tape;
      bool ok = false;
      try {
        error.call(tape);
      } catch (const ShapeError& e) {
        ok = std::string(e.what()).find(error.message) != std::string::npos;
      } catch (...) {}
      refused += ok;
      failures += !ok;
      if (!summary) std::printf("%-22s refuses %-40s %s\n", row.op.c_str(), error.name.c_str(), ok ? "pass" : "FAIL");
    }
    if (summary) {
      char forward_text[32] = "(composite)";
      if (worst_forward >= 0) std::snprintf(forward_text, sizeof forward_text, "%.1e", worst_forward);
      const std::string errors = row.errors.empty()
                                     ? "none: " + row.accepts
                                     : std::to_string(refused) + " of " + std::to_string(row.errors.size());
      std::printf("| %s | %zu | %.1e | %s | %s |\n", row.op.c_str(), row.samples.size(), worst_grad, forward_text,
                  errors.c_str());
    }
  }
  for (const auto& name : OpName::registry())
    if (!covered.count(name)) {
      ++failures;
      std::printf("%-22s has no row in the op table: FAIL\n", name.c_str());
    }
  if (!summary)
    std::printf("%s: %d failure(s); limits %.0e on the max relative gradient error, %.0e on the forward's\n",
                failures ? "FAILED" : "ok", failures, grad_tolerance, forward_tolerance);
  return failures ? 1 : 0;
}
