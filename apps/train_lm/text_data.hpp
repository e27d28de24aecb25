// train_lm/text_data.hpp — text in, token ids out.
//
//   UTF-8 bytes --decode--> characters (each one code point; the text stays bytes, the
//                           corpus is its token ids)
//   vocabulary  = the sorted set of characters of the training text; id = rank
//   split       = first 90% of the tokens for training, the last 10% for validation
//   window      = T+1 consecutive tokens w; inputs = w[0:T], targets = w[1:T+1]
//
// Errors are DataError with a message that names the file and what is wrong
// (byte offset of invalid UTF-8, a character outside the vocabulary, too little text).
#pragma once

#include <tapegrad/core/tensor.hpp>

#include <cstdint>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace train_lm {

struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The characters of `text`, one UTF-8 string per code point. Throws DataError
// naming `source` and the byte offset of the first ill-formed sequence
// (overlong forms, surrogates and code points above U+10FFFF are ill-formed).
std::vector<std::string> split_utf8(std::string_view text, const std::string& source);

// A readable name for a character in messages: 'a', '\n', U+00A0.
std::string describe_character(const std::string& character);

class Vocabulary {
 public:
  Vocabulary() = default;
  // The sorted set of `characters` (byte-wise order of the UTF-8 strings, which is code point order).
  static Vocabulary of(const std::vector<std::string>& characters);
  // The same for the characters of a UTF-8 text, without a string per character;
  // DataError naming `source` as split_utf8's.
  static Vocabulary of_text(std::string_view text, const std::string& source);
  // The tokens in id order, as saved in a checkpoint; DataError naming the token unless
  // each is exactly one UTF-8 character and they are strictly increasing (sorted, no repeats).
  static Vocabulary from_tokens(std::vector<std::string> tokens);

  std::size_t size() const { return tokens_.size(); }
  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::string& token(std::int64_t id) const { return tokens_.at(std::size_t(id)); }
  bool contains(const std::string& character) const { return ids_.count(character) != 0; }

  // Ids of `characters`; a DataError naming `source`, the character and its
  // position when one is not in the vocabulary.
  std::vector<std::int64_t> encode(const std::vector<std::string>& characters, const std::string& source) const;
  // The ids of a UTF-8 text's characters (8 bytes per character, nothing else per
  // character); the errors of split_utf8 and encode.
  std::vector<std::int64_t> encode_text(std::string_view text, const std::string& source) const;
  std::string decode(const std::vector<std::int64_t>& ids) const;

  // JSON array of the token strings (the checkpoint's `vocab` metadata) and back.
  std::string to_json() const;
  static Vocabulary from_json(const std::string& json, const std::string& source);

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int64_t> ids_;
};

// A text and where it came from.
struct Text {
  std::string bytes;
  std::string source;  // a file path, or a description of the default corpus
};

// Text files are read whole, and the token ids take 8 bytes per character: training
// on a file of N bytes of ASCII needs about 9N bytes. Past this size a file is refused.
inline constexpr std::uint64_t kMaxTextBytes = std::uint64_t{256} << 20;

// The whole file (io::read_regular_file); DataError when it is missing, not a regular
// file (a FIFO or /dev/zero would block or never end, a /proc file has no size to
// bound), over kMaxTextBytes, unreadable or empty.
Text read_text_file(const std::filesystem::path& path);

// Where `train` looks when no --data is given (Debian's `fortunes` package).
inline const std::filesystem::path kDefaultCorpusDir = "/usr/share/games/fortunes";

// The plain-text fortune files of `dir` (no extension: not *.dat, *.u8; not the
// offensive off/ subdirectory) concatenated in sorted name order; DataError when
// there are none.
Text read_default_corpus(const std::filesystem::path& dir = kDefaultCorpusDir);

// 64-bit FNV-1a of the bytes: recorded with a run so --resume can check the data.
std::uint64_t fingerprint(std::string_view bytes);

// A character-level corpus: the vocabulary and the train / validation token ids.
struct Corpus {
  Vocabulary vocab;
  std::vector<std::int64_t> train, val;
};

// Tokenises `text` with its own vocabulary and splits it 90/10. DataError when
// either part is shorter than one window of block_size + 1 tokens.
Corpus make_corpus(const Text& text, std::size_t block_size);

// A batch for teacher forcing: inputs and targets of shape [B, T].
struct Batch {
  tapegrad::Ids inputs, targets;
};

// The window of T+1 tokens starting at `start`, placed as row `row` of `batch`.
void fill_row(Batch& batch, std::size_t row, const std::vector<std::int64_t>& tokens, std::size_t start);

// B windows starting at uniformly random positions of `tokens` (needs size >= T+1).
// With `rows` = {first, count}: only rows [first, first + count) of those B, drawing
// (and so advancing `rng`) exactly as for all B: a data-parallel rank's slice.
struct RowRange {
  std::size_t first = 0, count = 0;
};
Batch random_batch(const std::vector<std::int64_t>& tokens, std::size_t batch, std::size_t block, std::mt19937_64& rng);
Batch random_batch(const std::vector<std::int64_t>& tokens, std::size_t batch, std::size_t block, std::mt19937_64& rng,
                   RowRange rows);

}  // namespace train_lm
