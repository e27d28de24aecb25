// compare_runs A B — are two train_lm runs the same run? (the data-parallel equivalence tests)
//
// Compares A/log.csv with B/log.csv row by row (kind and step must match; loss within
// 1e-5 absolute, the train rows being each step's training loss and the val rows the
// validation loss) and A/model.safetensors with B/model.safetensors tensor by tensor
// (the same names and shapes; max |a - b| <= 1e-5 * max |b| over each tensor, i.e.
// relative to the tensor's scale, since an element near zero has no useful relative error).
// Prints the largest differences found; exits 1 when a limit is exceeded or the files differ in kind.
//
//   --limit X   both limits X instead of 1e-5 (0: the same bits)
//   --state     A/state.safetensors against B/state.safetensors too (weights and optimiser
//               state, each tensor as above)
//   --state-limit X   its limit, when it differs from --limit's (the moments of a bias
//               follow the float rounding of its gradient's sum more closely than the weights)
#include <tapegrad/io/safetensors.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr double kDefaultLimit = 1e-5;

struct Row {
  std::string kind;
  long long step = 0;
  double loss = 0;
};

std::vector<Row> read_log(const std::string& dir) {
  std::ifstream in(dir + "/log.csv");
  if (!in) throw std::runtime_error(dir + "/log.csv: cannot open");
  std::vector<Row> rows;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    Row r;
    std::string step, loss;
    std::getline(fields, r.kind, ',');
    std::getline(fields, step, ',');
    std::getline(fields, loss, ',');
    r.step = std::stoll(step);
    r.loss = std::stod(loss);
    rows.push_back(r);
  }
  return rows;
}

struct Largest {
  double difference = 0;  // of the tensor's scale
  std::string name;
  std::size_t tensors = 0;  // compared
};

// The largest difference between two safetensors files' tensors, or nothing when they
// differ in names, count or shapes (said on stdout).
std::optional<Largest> compare_tensors(const std::string& path_a, const std::string& path_b) {
  const auto file_a = tapegrad::io::Safetensors::read(path_a);
  const auto file_b = tapegrad::io::Safetensors::read(path_b);
  if (file_a.tensors().size() != file_b.tensors().size()) {
    std::printf("%s: %zu tensors against %zu\n", path_a.c_str(), file_a.tensors().size(), file_b.tensors().size());
    return std::nullopt;
  }
  Largest worst;
  worst.tensors = file_a.tensors().size();
  for (const auto& t : file_a.tensors()) {
    const auto wa = file_a.get<float>(t.name), wb = file_b.get<float>(t.name);  // get() checks the name exists
    if (wa.shape() != wb.shape()) {
      std::printf("tensor %s: shapes differ\n", t.name.c_str());
      return std::nullopt;
    }
    double diff = 0, scale = 0;
    for (std::size_t k = 0; k < wa.size(); ++k) {
      diff = std::max(diff, std::abs(double(wa.data()[k]) - double(wb.data()[k])));
      scale = std::max(scale, std::abs(double(wb.data()[k])));
    }
    const double relative = scale > 0 ? diff / scale : diff;
    if (!(relative <= worst.difference)) worst.difference = relative, worst.name = t.name;
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> dirs;
  double limit = kDefaultLimit;
  bool state = false;
  std::optional<double> state_limit;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--limit" && i + 1 < argc)
      limit = std::stod(argv[++i]);
    else if (arg == "--state-limit" && i + 1 < argc)
      state = true, state_limit = std::stod(argv[++i]);
    else if (arg == "--state")
      state = true;
    else
      dirs.push_back(arg);
  }
  if (dirs.size() != 2) {
    std::fprintf(stderr, "usage: compare_runs RUN_DIR_A RUN_DIR_B [--limit X] [--state] [--state-limit X]\n");
    return 2;
  }
  const std::string a = dirs[0], b = dirs[1];
  const double kLossLimit = limit, kWeightLimit = limit;
  try {
    const auto rows_a = read_log(a), rows_b = read_log(b);
    if (rows_a.size() != rows_b.size() || rows_a.empty()) {
      std::printf("log.csv: %zu rows against %zu\n", rows_a.size(), rows_b.size());
      return 1;
    }
    double worst_loss = 0;
    long long worst_step = 0;
    for (std::size_t i = 0; i < rows_a.size(); ++i) {
      if (rows_a[i].kind != rows_b[i].kind || rows_a[i].step != rows_b[i].step) {
        std::printf("log.csv row %zu: %s %lld against %s %lld\n", i + 1, rows_a[i].kind.c_str(), rows_a[i].step,
                    rows_b[i].kind.c_str(), rows_b[i].step);
        return 1;
      }
      const double d = std::abs(rows_a[i].loss - rows_b[i].loss);
      if (!(d <= worst_loss)) worst_loss = d, worst_step = rows_a[i].step;
    }
    const auto model = compare_tensors(a + "/model.safetensors", b + "/model.safetensors");
    if (!model) return 1;
    const double worst_weight = model->difference;
    const std::string worst_name = model->name;
    std::optional<Largest> states;
    if (state && !(states = compare_tensors(a + "/state.safetensors", b + "/state.safetensors"))) return 1;
    std::printf(
        "%zu log rows: largest loss difference %.3g (step %lld, limit %g); %zu tensors: largest weight "
        "difference %.3g of the tensor's scale (%s, limit %g)\n",
        rows_a.size(), worst_loss, worst_step, kLossLimit, model->tensors, worst_weight, worst_name.c_str(),
        kWeightLimit);
    if (states)
      std::printf("state.safetensors: largest difference %.3g of the tensor's scale (%s, limit %g)\n",
                  states->difference, states->name.c_str(), state_limit.value_or(limit));
    return worst_loss <= kLossLimit && worst_weight <= kWeightLimit &&
                   (!states || states->difference <= state_limit.value_or(limit))
               ? 0
               : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_runs: %s\n", e.what());
    return 1;
  }
}
