// tapegrad/core/error.hpp — what the library throws, by what went wrong.
//
//   Error         the base: what() is one line, "<subject>: <reason>" (or "<reason>")
//   ShapeError    an op's or module's arguments: shapes, ids, axes, ranks
//   ConfigError   a configuration value: model, optimiser, schedule, preset
//   FormatError   the contents of a file (or of saved state): io/ gives it the path
//   StateError    the tape or a tensor used out of order: a second backward, a
//                 gradient read before any backward, an input from another tape
//   SystemError   a call to the operating system or MPI failed (writing a file, an
//                 MPI call); code() is its error code when it has one
//   AnomalyError  (anomaly.hpp) the first NaN or Inf anomaly mode found
//
// The thrower states the reason; a caller that knows what the error is about (the
// file, the command-line flag) names it with about() and rethrows the same object:
//
//   catch (tapegrad::ConfigError& e) { e.about("--preset"); throw; }
//   // what(): "--preset: unknown preset 'huge' (known: tiny, small, medium, long)"
#pragma once

#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace tapegrad {

// Text fit for a one-line message: control characters (a tensor name read from a file
// can hold any) are escaped as \xNN, and text past `max_length` bytes is cut with "...".
inline std::string one_line(std::string_view text, std::size_t max_length = 1000) {
  static constexpr char hex[] = "0123456789abcdef";
  const bool cut = text.size() > max_length;
  std::string out;
  for (const char c : text.substr(0, max_length)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return cut ? out + "..." : out;
}

class Error : public std::exception {
 public:
  explicit Error(const std::string& reason) : reason_(one_line(reason)), what_(reason_) {}
  const char* what() const noexcept override { return what_.c_str(); }
  // What went wrong, without the subject.
  const std::string& reason() const { return reason_; }
  // What it is about (a file, a flag); empty when no one said.
  const std::string& subject() const { return subject_; }
  // Names what the error is about; what() becomes "<subject>: <reason>".
  Error& about(const std::string& subject) {
    subject_ = one_line(subject, std::string::npos);
    what_ = subject_.empty() ? reason_ : subject_ + ": " + reason_;
    return *this;
  }

 private:
  std::string reason_, subject_, what_;
};

struct ShapeError : Error {
  using Error::Error;
};
struct ConfigError : Error {
  using Error::Error;
};
struct StateError : Error {
  using Error::Error;
};

// A call to the system failed; code() says which error (errno's, for file calls).
struct SystemError : Error {
  SystemError(const std::string& reason, std::error_code code = {}) : Error(reason), code_(code) {}
  std::error_code code() const { return code_; }

 private:
  std::error_code code_;
};

// A file that cannot be read or breaks its format; the subject is the file's path.
struct FormatError : Error {
  using Error::Error;
  FormatError(const std::filesystem::path& path, const std::string& reason) : Error(reason) { about(path.string()); }
  std::filesystem::path path() const { return subject(); }
};

}  // namespace tapegrad
