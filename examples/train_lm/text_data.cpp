// train_lm/text_data.cpp — UTF-8 decoding, the character vocabulary, corpus
// loading and batch sampling.
#include "text_data.hpp"

#include <nlohmann/json.hpp>
#include <tapegrad/io/utf8.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>

namespace train_lm {

std::vector<std::string> split_utf8(std::string_view text, const std::string& source) {
  std::vector<std::string> characters;
  characters.reserve(text.size());
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t n = tapegrad::io::utf8_sequence_length(text.substr(at));
    if (n == 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", unsigned(std::uint8_t(text[at])));
      throw DataError(source + ": invalid UTF-8 at byte offset " + std::to_string(at) + " (byte " + hex + ")");
    }
    characters.emplace_back(text.substr(at, n));
    at += n;
  }
  return characters;
}

std::string describe_character(const std::string& c) {
  if (c == "\n") return "'\\n'";
  if (c == "\t") return "'\\t'";
  if (c == "\r") return "'\\r'";
  const auto first = std::uint8_t(c.empty() ? 0 : c[0]);
  if (c.size() == 1 && first >= 0x20 && first < 0x7F) return "'" + c + "'";
  // The code point, and the character itself when it is printable.
  std::uint32_t cp = c.size() == 1 ? first : first & (0xFF >> (c.size() + 1));
  for (std::size_t i = 1; i < c.size(); ++i) cp = (cp << 6) | (std::uint8_t(c[i]) & 0x3F);
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", unsigned(cp));
  return c.size() == 1 ? std::string(code) : "'" + c + "' (" + code + ")";
}

Vocabulary Vocabulary::of(const std::vector<std::string>& characters) {
  const std::set<std::string> distinct(characters.begin(), characters.end());
  return from_tokens({distinct.begin(), distinct.end()});
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

std::string Vocabulary::decode(const std::vector<std::int64_t>& ids) const {
  std::string text;
  for (auto id : ids) text += token(id);
  return text;
}

std::string Vocabulary::to_json() const { return nlohmann::json(tokens_).dump(); }

Vocabulary Vocabulary::from_json(const std::string& json, const std::string& source) {
  try {
    const auto j = nlohmann::json::parse(json);
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
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw DataError(path.string() + ": no such file");
  if (std::filesystem::is_directory(path, ec)) throw DataError(path.string() + ": is a directory, not a text file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path.string() + ": cannot open for reading");
  Text text{std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), path.string()};
  if (in.bad()) throw DataError(path.string() + ": read error");
  if (text.bytes.empty()) throw DataError(path.string() + ": the file is empty");
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
  const auto characters = split_utf8(text.bytes, text.source);
  Corpus corpus{Vocabulary::of(characters), {}, {}};
  auto ids = corpus.vocab.encode(characters, text.source);
  const std::size_t n_train = ids.size() * 9 / 10;
  const std::size_t window = block_size + 1;
  if (n_train < window || ids.size() - n_train < window)
    throw DataError(text.source + ": " + std::to_string(ids.size()) + " characters is too short for block size " +
                    std::to_string(block_size) + ": the 10% validation split needs at least " + std::to_string(window) +
                    " characters, so the text at least " + std::to_string(10 * window) + "; use more text or a smaller --block");
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
  Batch b{tapegrad::Ids::from_shape({batch, block}), tapegrad::Ids::from_shape({batch, block})};
  std::uniform_int_distribution<std::size_t> start(0, tokens.size() - block - 1);
  for (std::size_t row = 0; row < batch; ++row) fill_row(b, row, tokens, start(rng));
  return b;
}

}  // namespace train_lm
