// train_lm/report.cpp — log.csv, loss.svg and the progress line.
#include "report.hpp"

#include "number_text.hpp"

#include <tapegrad/io/atomic_file.hpp>
#include <tapegrad/io/file.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <system_error>
#include <ostream>
#include <sstream>

namespace train_lm {

namespace {

const std::string kCsvHeader = "kind,step,loss,perplexity,lr,tokens_per_s,elapsed_s";

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream s(line);
  for (std::string f; std::getline(s, f, ',');) fields.push_back(f);
  if (!line.empty() && line.back() == ',') fields.emplace_back();
  return fields;
}

// A row of log.csv, or false for a header, a torn line or a non-finite number
// (a hand-edited or foreign log: the plot and the resumed log keep finite rows only).
bool parse_row(const std::string& line, LogRow& row) {
  const auto f = split_csv(line);
  if (f.size() != 7 || (f[0] != "train" && f[0] != "val")) return false;
  const auto step = parse_number<std::int64_t>(f[1]);
  const auto loss = parse_number<double>(f[2]);
  const auto lr = parse_number<double>(f[4]);
  const auto tps = parse_number<double>(f[5]);
  const auto elapsed = parse_number<double>(f[6]);
  if (!step || !loss || !lr || !tps || !elapsed) return false;
  for (const double x : {*loss, *lr, *tps, *elapsed})
    if (!std::isfinite(x)) return false;
  row = {f[0], *step, *loss, *lr, *tps, *elapsed};
  return true;
}

// ---- the SVG ----------------------------------------------------------------

// Round tick positions covering [lo, hi]: steps of 1, 2 or 5 x 10^k, about `target` of
// them. Never empty, always increasing: a range it cannot divide gets its two ends.
std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (!(hi > lo)) hi = lo + std::max(1.0, std::abs(lo) * 1e-3);  // one value: a range around it
  const double raw = (hi - lo) / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  std::vector<double> ticks;
  const double first = std::floor(lo / step) * step;
  for (int i = 0; i <= 2 * target + 2; ++i) {  // a bounded count: no endless loop if `step` is lost in rounding
    const double t = first + i * step;
    if (t > hi + step * 1e-9) break;
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0 : t);
  }
  if (ticks.empty()) return {lo, hi};
  if (ticks.front() > lo) ticks.insert(ticks.begin(), ticks.front() - step);
  if (ticks.back() < hi) ticks.push_back(ticks.back() + step);
  if (!(ticks.back() > ticks.front())) return {lo, hi};
  return ticks;
}

std::string tick_label(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

struct Plot {
  double left = 70, right = 690, top = 45, bottom = 360;  // the plotting area, in pixels
  double x0, x1, y0, y1;                                  // the data ranges shown
  double px(double x) const { return left + (x - x0) / (x1 - x0) * (right - left); }
  double py(double y) const { return bottom - (y - y0) / (y1 - y0) * (bottom - top); }
};

std::string polyline(const Plot& plot, const std::vector<LogRow>& rows, const std::string& colour, double width) {
  std::ostringstream s;
  s << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"" << width << "\" points=\"";
  for (const auto& r : rows) s << fixed(plot.px(double(r.step)), 1) << ',' << fixed(plot.py(r.loss), 1) << ' ';
  s << "\"/>\n";
  return s.str();
}

std::string axes(const Plot& plot, const std::vector<double>& xticks, const std::vector<double>& yticks) {
  std::ostringstream s;
  s << "<g stroke=\"#ddd\" stroke-width=\"1\">\n";
  for (double y : yticks) s << "<line x1=\"" << plot.left << "\" x2=\"" << plot.right << "\" y1=\"" << fixed(plot.py(y), 1) << "\" y2=\"" << fixed(plot.py(y), 1) << "\"/>\n";
  s << "</g>\n<g stroke=\"#000\" stroke-width=\"1\">\n";
  s << "<line x1=\"" << plot.left << "\" x2=\"" << plot.right << "\" y1=\"" << plot.bottom << "\" y2=\"" << plot.bottom << "\"/>\n";
  s << "<line x1=\"" << plot.left << "\" x2=\"" << plot.left << "\" y1=\"" << plot.top << "\" y2=\"" << plot.bottom << "\"/>\n";
  for (double x : xticks) s << "<line x1=\"" << fixed(plot.px(x), 1) << "\" x2=\"" << fixed(plot.px(x), 1) << "\" y1=\"" << plot.bottom << "\" y2=\"" << plot.bottom + 5 << "\"/>\n";
  for (double y : yticks) s << "<line x1=\"" << plot.left - 5 << "\" x2=\"" << plot.left << "\" y1=\"" << fixed(plot.py(y), 1) << "\" y2=\"" << fixed(plot.py(y), 1) << "\"/>\n";
  s << "</g>\n<g font-size=\"12\" fill=\"#000\">\n";
  for (double x : xticks) s << "<text x=\"" << fixed(plot.px(x), 1) << "\" y=\"" << plot.bottom + 19 << "\" text-anchor=\"middle\">" << tick_label(x) << "</text>\n";
  for (double y : yticks) s << "<text x=\"" << plot.left - 8 << "\" y=\"" << fixed(plot.py(y) + 4, 1) << "\" text-anchor=\"end\">" << tick_label(y) << "</text>\n";
  s << "<text x=\"" << (plot.left + plot.right) / 2 << "\" y=\"" << plot.bottom + 42 << "\" text-anchor=\"middle\" font-size=\"14\">step</text>\n";
  s << "<text transform=\"translate(18," << (plot.top + plot.bottom) / 2 << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"14\">loss (cross-entropy, nats)</text>\n";
  s << "</g>\n";
  return s.str();
}

std::string legend(const Plot& plot) {
  const double x = plot.right - 150, y = plot.top + 12;
  std::ostringstream s;
  s << "<g font-size=\"13\">\n"
    << "<rect x=\"" << x - 10 << "\" y=\"" << y - 14 << "\" width=\"150\" height=\"48\" fill=\"#fff\" stroke=\"#999\"/>\n"
    << "<line x1=\"" << x << "\" x2=\"" << x + 30 << "\" y1=\"" << y << "\" y2=\"" << y << "\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n"
    << "<text x=\"" << x + 38 << "\" y=\"" << y + 4 << "\">train (batch)</text>\n"
    << "<line x1=\"" << x << "\" x2=\"" << x + 30 << "\" y1=\"" << y + 20 << "\" y2=\"" << y + 20 << "\" stroke=\"#ff7f0e\" stroke-width=\"2.5\"/>\n"
    << "<circle cx=\"" << x + 15 << "\" cy=\"" << y + 20 << "\" r=\"3\" fill=\"#ff7f0e\"/>\n"
    << "<text x=\"" << x + 38 << "\" y=\"" << y + 24 << "\">validation</text>\n"
    << "</g>\n";
  return s.str();
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

// ---- log.csv ------------------------------------------------------------------

std::string csv_line(const LogRow& r) {
  return r.kind + "," + std::to_string(r.step) + "," + exact_text(r.loss) + "," + fixed(std::exp(r.loss), 4) + "," +
         exact_text(r.lr) + "," + fixed(r.tokens_per_s, 1) + "," + fixed(r.elapsed_s, 3);
}

TrainLog TrainLog::create(const std::filesystem::path& path) {
  TrainLog log(path);
  log.rewrite();
  return log;
}

TrainLog TrainLog::resume(const std::filesystem::path& path, std::int64_t step) {
  TrainLog log(path);
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::symlink_status(path, ec))) {
    std::istringstream in(tapegrad::io::read_regular_file(
        path, {.max_bytes = kMaxLogBytes, .follow_links = false, .what = "a training log"}));
    LogRow row;
    for (std::string line; std::getline(in, line);)
      if (parse_row(line, row) && row.step <= step) log.rows_.push_back(row);
  }
  log.rewrite();
  return log;
}

void TrainLog::rewrite() {
  if (path_.empty()) return;
  std::string text = kCsvHeader + "\n";
  for (const auto& r : rows_) text += csv_line(r) + "\n";
  tapegrad::io::write_file_atomically(path_, text);
}

void TrainLog::append(const LogRow& row) {
  if (path_.empty()) {
    rows_.push_back(row);
    return;
  }
  std::ofstream out(path_, std::ios::app);
  out << csv_line(row) << '\n' << std::flush;
  if (!out) throw std::runtime_error("cannot append to " + path_.string());
  rows_.push_back(row);
}

// ---- loss.svg -----------------------------------------------------------------

std::string loss_svg(const std::vector<LogRow>& rows, const std::string& title) {
  std::vector<LogRow> train, val;
  for (const auto& r : rows)
    if (std::isfinite(r.loss)) (r.kind == "val" ? val : train).push_back(r);
  double max_step = 1, lo = INFINITY, hi = -INFINITY;  // over the rows plotted
  for (const auto* plotted : {&train, &val})
    for (const auto& r : *plotted) {
      max_step = std::max(max_step, double(r.step));
      lo = std::min(lo, r.loss);
      hi = std::max(hi, r.loss);
    }
  if (!(lo <= hi)) lo = 0, hi = 1;
  const auto xticks = nice_ticks(0, max_step, 8);
  const auto yticks = nice_ticks(lo, hi, 6);
  Plot plot;
  plot.x0 = xticks.front(), plot.x1 = xticks.back(), plot.y0 = yticks.front(), plot.y1 = yticks.back();

  std::ostringstream s;
  s << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"420\" viewBox=\"0 0 720 420\" font-family=\"sans-serif\">\n"
    << "<rect width=\"720\" height=\"420\" fill=\"#fff\"/>\n"
    << "<text x=\"360\" y=\"25\" text-anchor=\"middle\" font-size=\"13\">" << xml_escape(title) << "</text>\n"
    << axes(plot, xticks, yticks) << polyline(plot, train, "#1f77b4", 1) << polyline(plot, val, "#ff7f0e", 2.5);
  for (const auto& r : val) s << "<circle cx=\"" << fixed(plot.px(double(r.step)), 1) << "\" cy=\"" << fixed(plot.py(r.loss), 1) << "\" r=\"3\" fill=\"#ff7f0e\"/>\n";
  s << legend(plot) << "</svg>\n";
  return s.str();
}

// ---- progress -----------------------------------------------------------------

std::string format_duration(double seconds) {
  const auto total = std::int64_t(std::max(0.0, std::round(seconds)));
  const std::int64_t h = total / 3600, m = total / 60 % 60, s = total % 60;
  char buf[32];
  if (h > 0)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)h, (long long)m);
  else if (m > 0)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)m, (long long)s);
  else
    std::snprintf(buf, sizeof buf, "%llds", (long long)s);
  return buf;
}

Progress::Progress(std::ostream& out, bool terminal, std::int64_t total_steps, std::int64_t every)
    : out_(out), terminal_(terminal), total_(total_steps), every_(std::max<std::int64_t>(1, every)) {}

void Progress::update(std::int64_t step, double loss, double lr, double tokens_per_s, double eta_s) {
  if (!terminal_ && step % every_ != 0 && step != total_) return;
  char line[160];
  std::snprintf(line, sizeof line, "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s", (long long)step,
                (long long)total_, loss, lr, tokens_per_s, format_duration(eta_s).c_str());
  if (terminal_) {
    out_ << "\r\033[K" << line << std::flush;
    line_open_ = true;
  } else {
    out_ << line << std::endl;
  }
}

void Progress::message(const std::string& line) {
  if (line_open_) out_ << "\r\033[K";  // the next update redraws the progress line below
  line_open_ = false;
  out_ << tapegrad::one_line(line) << std::endl;  // a line may hold text from a file (a path, a data source)
}

void Progress::finish() {
  if (line_open_) out_ << std::endl;  // keep the last progress line
  line_open_ = false;
}

}  // namespace train_lm
