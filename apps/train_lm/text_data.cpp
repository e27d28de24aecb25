// train_lm/text_data.cpp — UTF-8 decoding, the character vocabulary, corpus
// loading and batch sampling.
#include "text_data.hpp"

#include <nlohmann/json.hpp>
#include <tapegrad/io/file.hpp>
#include <tapegrad/io/utf8.hpp>

#include <algorithm>
#include <cstdio>
#include <set>

namespace train_lm {

namespace {

// Calls f(character, index) for each character of `text` (its UTF-8 bytes and its
// position counted in characters); DataError naming `source` and the byte offset of
// the first ill-formed sequence.
template <class F>
void for_each_character(std::string_view text, const std::string& source, F&& f) {
  std::size_t index = 0;
  for (std::size_t at = 0; at < text.size(); ++index) {
    const std::size_t n = tapegrad::io::utf8_sequence_length(text.substr(at));
    if (n == 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", unsigned(std::uint8_t(text[at])));
      throw DataError(source + ": invalid UTF-8 at byte offset " + std::to_string(at) + " (byte " + hex + ")");
    }
    f(text.substr(at, n), index);
    at += n;
  }
}

constexpr std::size_t kCodePoints = 0x110000;

// The code point of one well-formed UTF-8 character.
std::uint32_t code_point(std::string_view c) {
  std::uint32_t cp = c.size() == 1 ? std::uint8_t(c[0]) : std::uint8_t(c[0]) & (0xFF >> (c.size() + 1));
  for (std::size_t i = 1; i < c.size(); ++i) cp = (cp << 6) | (std::uint8_t(c[i]) & 0x3F);
  return cp;
}

// The UTF-8 bytes of a code point.
std::string utf8_of(std::uint32_t cp) {
  if (cp < 0x80) return std::string(1, char(cp));
  if (cp < 0x800) return {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
  if (cp < 0x10000) return {char(0xE0 | (cp >> 12)), char(0x80 | ((cp >> 6) & 0x3F)), char(0x80 | (cp & 0x3F))};
  return {char(0xF0 | (cp >> 18)), char(0x80 | ((cp >> 12) & 0x3F)), char(0x80 | ((cp >> 6) & 0x3F)),
          char(0x80 | (cp & 0x3F))};
}

}  // namespace

std::vector<std::string> split_utf8(std::string_view text, const std::string& source) {
  std::vector<std::string> characters;
  for_each_character(text, source, [&](std::string_view c, std::size_t) { characters.emplace_back(c); });
  return characters;
}

std::string describe_character(const std::string& c) {
  if (c == "\n") return "'\\n'";
  if (c == "\t") return "'\\t'";
  if (c == "\r") return "'\\r'";
  const auto first = std::uint8_t(c.empty() ? 0 : c[0]);
  if (c.size() == 1 && first >= 0x20 && first < 0x7F) return "'" + c + "'";
  // The code point, and the character itself when it is printable.
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", unsigned(code_point(c)));
  return c.size() == 1 ? std::string(code) : "'" + c + "' (" + code + ")";
}

Vocabulary Vocabulary::of(const std::vector<std::string>& characters) {
  const std::set<std::string> distinct(characters.begin(), characters.end());
  return from_tokens({distinct.begin(), distinct.end()});
}

Vocabulary Vocabulary::of_text(std::string_view text, const std::string& source) {
  std::vector<bool> seen(kCodePoints);
  std::uint32_t highest = 0;
  for_each_character(text, source, [&](std::string_view c, std::size_t) {
    const std::uint32_t cp = code_point(c);
    seen[cp] = true;
    highest = std::max(highest, cp);
  });
  std::vector<std::string> tokens;
  for (std::uint32_t cp = 0; cp <= highest && !text.empty(); ++cp)
    if (seen[cp]) tokens.push_back(utf8_of(cp));
  return from_tokens(std::move(tokens));
}

Vocabulary Vocabulary::from_tokens(std::vector<std::string> tokens) {
  // A token as JSON ("ab", "\u00e9"): readable whatever bytes it holds.
  const auto quoted = [](const std::string& t) {
    return nlohmann::json(t).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  Vocabulary v;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (t.empty() || tapegrad::io::utf8_sequence_length(t) != t.size())
      throw DataError("token " + std::to_string(i) + " " + quoted(t) + " is not exactly one UTF-8 character");
    if (i > 0 && !(tokens[i - 1] < t))
      throw DataError("token " + std::to_string(i) + " " + quoted(t) + " does not come after token " +
                      std::to_string(i - 1) + " " + quoted(tokens[i - 1]) +
                      " (the tokens must be sorted, without repeats)");
    v.ids_.emplace(t, std::int64_t(i));
  }
  v.tokens_ = std::move(tokens);
  return v;
}

std::vector<std::int64_t> Vocabulary::encode(const std::vector<std::string>& characters, const std::string& source) const {
  std::vector<std::int64_t> ids;
  ids.reserve(characters.size());
  for (std::size_t i = 0; i < characters.size(); ++i) {
    const auto it = ids_.find(characters[i]);
    if (it == ids_.end())
      throw DataError(source + ": character " + describe_character(characters[i]) + " at position " + std::to_string(i) +
                      " is not in the model's vocabulary of " + std::to_string(size()) + " characters");
    ids.push_back(it->second);
  }
  return ids;
}

std::vector<std::int64_t> Vocabulary::encode_text(std::string_view text, const std::string& source) const {
  // Id by code point, up to the vocabulary's highest (its last token): 128 entries for ASCII.
  std::vector<std::int64_t> id_of(tokens_.empty() ? 0 : code_point(tokens_.back()) + 1, -1);
  for (std::size_t id = 0; id < tokens_.size(); ++id) id_of[code_point(tokens_[id])] = std::int64_t(id);
  std::size_t characters = 0;
  for_each_character(text, source, [&](std::string_view, std::size_t) { ++characters; });
  std::vector<std::int64_t> ids;
  ids.reserve(characters);
  for_each_character(text, source, [&](std::string_view c, std::size_t index) {
    const std::uint32_t cp = code_point(c);
    const std::int64_t id = cp < id_of.size() ? id_of[cp] : -1;
    if (id < 0)
      throw DataError(source + ": character " + describe_character(std::string(c)) + " at position " +
                      std::to_string(index) + " is not in the model's vocabulary of " + std::to_string(size()) +
                      " characters");
    ids.push_back(id);
  });
  return ids;
}

std::string Vocabulary::decode(const std::vector<std::int64_t>& ids) const {
  std::string text;
  for (auto id : ids) text += token(id);
  return text;
}

std::string Vocabulary::to_json() const { return nlohmann::json(tokens_).dump(); }

Vocabulary Vocabulary::from_json(const std::string& json, const std::string& source) {
  try {
    // A list of strings: anything nested fails at its start, before a tree of it is built.
    const auto flat = [](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
      using Event = nlohmann::json::parse_event_t;
      if (depth > 0 && (event == Event::object_start || event == Event::array_start))
        throw DataError("an entry is not a string");
      return true;
    };
    const auto j = nlohmann::json::parse(json, flat);
    if (!j.is_array()) throw DataError("not a JSON array");
    std::vector<std::string> tokens;
    for (const auto& t : j) {
      if (!t.is_string()) throw DataError("an entry is not a string");
      tokens.push_back(t.get<std::string>());
    }
    return from_tokens(std::move(tokens));
  } catch (const std::exception& e) {
    throw DataError(source + ": metadata 'vocab' is not a valid vocabulary: " + e.what());
  }
}

Text read_text_file(const std::filesystem::path& path) {
  Text text{"", path.string()};
  try {
    text.bytes = tapegrad::io::read_regular_file(path, {.max_bytes = kMaxTextBytes, .what = "a text file"});
  } catch (const tapegrad::FormatError& e) {
    throw DataError(e.what());
  }
  if (text.bytes.empty()) throw DataError(text.source + ": the file is empty");
  return text;
}

Text read_default_corpus(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.is_regular_file() && !entry.path().has_extension()) files.push_back(entry.path());
  if (files.empty())
    throw DataError("no --data given and no plain-text fortune files in " + dir.string() +
                    " (install Debian's 'fortunes' package, or pass --data FILE)");
  std::sort(files.begin(), files.end());
  Text corpus{"", "the " + std::to_string(files.size()) + " fortune files in " + dir.string()};
  for (const auto& f : files) corpus.bytes += read_text_file(f).bytes;
  return corpus;
}

std::uint64_t fingerprint(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) h = (h ^ std::uint8_t(c)) * 0x100000001b3ull;
  return h;
}

Corpus make_corpus(const Text& text, std::size_t block_size) {
  Corpus corpus{Vocabulary::of_text(text.bytes, text.source), {}, {}};
  auto ids = corpus.vocab.encode_text(text.bytes, text.source);
  const std::size_t n_train = ids.size() * 9 / 10;
  const std::size_t window = block_size + 1;
  if (n_train < window || ids.size() - n_train < window) {
    // The validation split holds n - floor(9n/10) = ceil(n/10) characters, so it reaches a
    // window at n = 10 (window - 1) + 1; the training split, 9 times larger, does too.
    const std::size_t minimum = 10 * (window - 1) + 1;
    throw DataError(text.source + ": " + std::to_string(ids.size()) + " characters is too short for block size " +
                    std::to_string(block_size) + ": the 10% validation split needs at least " + std::to_string(window) +
                    " characters, so the text at least " + std::to_string(minimum) +
                    "; use more text or a smaller --block");
  }
  corpus.val.assign(ids.begin() + std::ptrdiff_t(n_train), ids.end());
  ids.resize(n_train);
  corpus.train = std::move(ids);
  return corpus;
}

void fill_row(Batch& batch, std::size_t row, const std::vector<std::int64_t>& tokens, std::size_t start) {
  const std::size_t T = batch.inputs.shape()[1];
  for (std::size_t t = 0; t < T; ++t) {
    batch.inputs(row, t) = tokens[start + t];
    batch.targets(row, t) = tokens[start + t + 1];
  }
}

Batch random_batch(const std::vector<std::int64_t>& tokens, std::size_t batch, std::size_t block, std::mt19937_64& rng) {
  return random_batch(tokens, batch, block, rng, {0, batch});
}

Batch random_batch(const std::vector<std::int64_t>& tokens, std::size_t batch, std::size_t block, std::mt19937_64& rng,
                   RowRange rows) {
  Batch b{tapegrad::Ids::from_shape({rows.count, block}), tapegrad::Ids::from_shape({rows.count, block})};
  std::uniform_int_distribution<std::size_t> start(0, tokens.size() - block - 1);
  for (std::size_t row = 0; row < batch; ++row) {
    const std::size_t at = start(rng);
    if (row >= rows.first && row - rows.first < rows.count) fill_row(b, row - rows.first, tokens, at);
  }
  return b;
}

}  // namespace train_lm
