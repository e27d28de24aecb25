// train_lm/number_text.hpp — numbers to text and back, exactly.
//
// Losses, learning rates and settings are stored as text (CSV, safetensors
// metadata); the shortest round-trip form (std::to_chars) keeps them bit-exact,
// which is what lets a resumed run be compared with an uninterrupted one.
#pragma once

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>

namespace train_lm {

// Shortest text that parses back to exactly `x` (as a float for a float: 5e+28, not 4.99999993e+28).
template <std::floating_point F>
std::string exact_text(F x) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

// A number in a message: "NaN" for every NaN (whose sign means nothing), else as above ("inf", "2.5").
template <std::floating_point F>
std::string readable_number(F x) {
  return std::isnan(x) ? "NaN" : exact_text(x);
}

// The whole of `s` as a T, or nothing.
template <class T>
std::optional<T> parse_number(const std::string& s) {
  T value{};
  const auto r = std::from_chars(s.data(), s.data() + s.size(), value);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

}  // namespace train_lm
