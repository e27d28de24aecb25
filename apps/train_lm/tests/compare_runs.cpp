// compare_runs A B — are two train_lm runs the same run? (the data-parallel equivalence tests)
//
// Compares A/log.csv with B/log.csv row by row (kind and step must match; loss within
// 1e-5 absolute, the train rows being each step's training loss and the val rows the
// validation loss) and A/model.safetensors with B/model.safetensors tensor by tensor
// (the same names and shapes; max |a - b| <= 1e-5 * max |b| over each tensor, i.e.
// relative to the tensor's scale, since an element near zero has no useful relative error).
// Prints the largest differences found; exits 1 when a limit is exceeded or the files differ in kind.
#include <tapegrad/io/safetensors.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr double kLossLimit = 1e-5, kWeightLimit = 1e-5;

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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: compare_runs RUN_DIR_A RUN_DIR_B\n");
    return 2;
  }
  const std::string a = argv[1], b = argv[2];
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
    const auto model_a = tapegrad::io::Safetensors::read(a + "/model.safetensors");
    const auto model_b = tapegrad::io::Safetensors::read(b + "/model.safetensors");
    if (model_a.tensors().size() != model_b.tensors().size()) {
      std::printf("model.safetensors: %zu tensors against %zu\n", model_a.tensors().size(), model_b.tensors().size());
      return 1;
    }
    double worst_weight = 0;
    std::string worst_name;
    for (const auto& t : model_a.tensors()) {
      const auto wa = model_a.get<float>(t.name), wb = model_b.get<float>(t.name);  // get() checks the name exists
      if (wa.shape() != wb.shape()) {
        std::printf("tensor %s: shapes differ\n", t.name.c_str());
        return 1;
      }
      double diff = 0, scale = 0;
      for (std::size_t k = 0; k < wa.size(); ++k) {
        diff = std::max(diff, std::abs(double(wa.data()[k]) - double(wb.data()[k])));
        scale = std::max(scale, std::abs(double(wb.data()[k])));
      }
      const double relative = scale > 0 ? diff / scale : diff;
      if (!(relative <= worst_weight)) worst_weight = relative, worst_name = t.name;
    }
    std::printf("%zu log rows: largest loss difference %.3g (step %lld, limit %g); %zu tensors: largest weight "
                "difference %.3g of the tensor's scale (%s, limit %g)\n",
                rows_a.size(), worst_loss, worst_step, kLossLimit, model_a.tensors().size(), worst_weight,
                worst_name.c_str(), kWeightLimit);
    return worst_loss <= kLossLimit && worst_weight <= kWeightLimit ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_runs: %s\n", e.what());
    return 1;
  }
}
