// train_lm/report.hpp — what a training run tells: the progress line on stderr,
// log.csv, and loss.svg.
//
//   log.csv   kind,step,loss,perplexity,lr,tokens_per_s,elapsed_s
//             kind "train": the loss of the batch of that step; kind "val": the
//             validation loss measured after that step. loss and lr are written
//             in shortest round-trip form (bit-exact); the two timing columns vary
//             from run to run.
//   loss.svg  train and validation loss against step; one self-contained file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

namespace train_lm {

// log.csv holds ~70 bytes a row: this bounds a resumed log at ~15 million rows.
inline constexpr std::uint64_t kMaxLogBytes = std::uint64_t{1} << 30;

struct LogRow {
  std::string kind;  // "train" or "val"
  std::int64_t step = 0;
  double loss = 0;
  double lr = 0;
  double tokens_per_s = 0;
  double elapsed_s = 0;
};

// log.csv, appended to (and flushed) row by row.
class TrainLog {
 public:
  // A fresh log: the file is replaced by the header line.
  static TrainLog create(const std::filesystem::path& path);
  // The existing log cut to the rows of steps <= `step` (rows written after the
  // checkpoint being resumed, and a torn last line, are dropped); a missing log starts
  // fresh. The log is read by io::read_regular_file: a symbolic link, a FIFO, a device
  // or a file over kMaxLogBytes is an io::FormatError naming it, and nothing is written.
  static TrainLog resume(const std::filesystem::path& path, std::int64_t step);
  // Rows kept, no file written (the data-parallel ranks other than 0).
  static TrainLog unwritten() { return TrainLog({}); }

  void append(const LogRow& row);
  const std::vector<LogRow>& rows() const { return rows_; }

 private:
  explicit TrainLog(std::filesystem::path path) : path_(std::move(path)) {}
  void rewrite();
  std::filesystem::path path_;
  std::vector<LogRow> rows_;
};

std::string csv_line(const LogRow& row);

// The loss curve as an SVG document.
std::string loss_svg(const std::vector<LogRow>& rows, const std::string& title);

// The progress line: redrawn in place with '\r' on a terminal, otherwise one
// plain line every `every` steps (and at the last step).
class Progress {
 public:
  Progress(std::ostream& out, bool terminal, std::int64_t total_steps, std::int64_t every);
  void update(std::int64_t step, double loss, double lr, double tokens_per_s, double eta_s);
  // A line of its own (eval results, notes), not overwritten by the next update.
  void message(const std::string& line);
  // Ends the in-place line, if any, leaving it on screen.
  void finish();

 private:
  std::ostream& out_;
  bool terminal_;
  std::int64_t total_, every_;
  bool line_open_ = false;
};

// "1h02m", "3m05s", "42s"
std::string format_duration(double seconds);

}  // namespace train_lm
