// tapegrad/io/utf8.hpp — well-formed UTF-8 (Unicode table 3-7): no stray continuation
// bytes, no overlong forms, no surrogates, nothing past U+10FFFF. Safetensors headers
// and names are checked with it; train_lm splits its text into characters with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tapegrad::io {

// Length (1 to 4) of the well-formed UTF-8 sequence at the start of `s`, or 0 if it
// is ill-formed or `s` is empty.
inline std::size_t utf8_sequence_length(std::string_view s) {
  if (s.empty()) return 0;
  auto byte = [&](std::size_t i) { return std::uint8_t(s[i]); };
  auto in = [&](std::size_t i, std::uint8_t lo, std::uint8_t hi) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  const std::uint8_t b0 = byte(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return in(1, 0x80, 0xBF) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const std::uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    return in(1, lo, hi) && in(2, 0x80, 0xBF) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const std::uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return in(1, lo, hi) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

inline bool is_valid_utf8(std::string_view text) {
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t n = utf8_sequence_length(text.substr(at));
    if (n == 0) return false;
    at += n;
  }
  return true;
}

}  // namespace tapegrad::io
