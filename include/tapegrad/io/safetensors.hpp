// tapegrad/io/safetensors.hpp — read and write safetensors files.
//
// A safetensors file is: an 8-byte little-endian header length N, N bytes of JSON
// header, then the tensors' raw little-endian row-major bytes:
//
//   {"__metadata__": {"format": "tapegrad-gpt", ...},             (string values)
//    "wte": {"dtype": "F32", "shape": [65, 32], "data_offsets": [0, 8320]}, ...}
//
// data_offsets are [begin, end) byte offsets into the data that follows the header.
// Safetensors::read treats every file as untrusted: anything that breaks a rule of
// the format (see its comment) is a FormatError "<path>: <reason>", one line. The
// writer pads the header with spaces to a multiple of 8 bytes, as the reference
// implementation does, and replaces the target file atomically (atomic_file.hpp).
// The tapegrad dtypes are F32, F64, I32 and I64.
#pragma once

#include "../core/tensor.hpp"
#include "atomic_file.hpp"
#include "file.hpp"
#include "utf8.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tapegrad::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; tapegrad copies tensor bytes as they are");

// ---- dtypes

enum class DType { F32, F64, I32, I64 };
inline constexpr std::array<DType, 4> all_dtypes{DType::F32, DType::F64, DType::I32, DType::I64};

constexpr std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}
constexpr std::size_t dtype_size(DType d) { return d == DType::F32 || d == DType::I32 ? 4 : 8; }
constexpr std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType d : all_dtypes)
    if (dtype_name(d) == name) return d;
  return std::nullopt;
}

// The dtype that stores a T.
template <class T>
inline constexpr DType dtype_of = [] {
  if constexpr (std::same_as<T, float>)
    return DType::F32;
  else if constexpr (std::same_as<T, double>)
    return DType::F64;
  else if constexpr (std::same_as<T, std::int32_t>)
    return DType::I32;
  else {
    static_assert(std::same_as<T, std::int64_t>, "tensors hold float, double, int32 or int64");
    return DType::I64;
  }
}();

template <class T>
concept FloatElement = std::same_as<T, float> || std::same_as<T, double>;

using Metadata = std::map<std::string, std::string>;

// ---- errors

// A file that cannot be read or breaks the format: what() is "<path>: <reason>" (core/error.hpp).
using FormatError = tapegrad::FormatError;

// ---- limits

// What a header may hold. A header is parsed event by event into the tensor list (no
// JSON tree), so reading one costs time and memory linear in its length, with these
// bounds on what it can ask for. A tapegrad checkpoint is far inside them (a GPT
// state file holds 48 tensors per layer, a vocabulary of 1000 characters is ~6 kB).
struct SafetensorsLimits {
  static constexpr std::uint64_t header_bytes = 16u << 20;     // 16 MiB
  static constexpr std::size_t tensors = 65536;                // and as many __metadata__ entries
  static constexpr std::size_t name_bytes = 4096;              // tensor names and metadata keys
  static constexpr std::size_t rank = 8;                       // dimensions of a shape
  static constexpr std::uint64_t extent_product = 1ull << 48;  // extents multiplied, a 0 counted as 1
};

namespace detail {

inline std::uint64_t decode_le64(const std::byte* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
  return value;
}
inline void append_le64(std::string& out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

inline std::optional<std::uint64_t> checked_multiply(std::uint64_t a, std::uint64_t b) {
  std::uint64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

}  // namespace detail

// ---- reading

// One tensor's header entry; begin/end are byte offsets into the data buffer.
struct StoredTensor {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::uint64_t begin = 0, end = 0;

  std::uint64_t byte_size() const { return end - begin; }
  std::size_t numel() const { return byte_size() / dtype_size(dtype); }
};

namespace detail {

// Turns the header's JSON parse events (nlohmann::json::sax_parse) straight into
// tensor entries and metadata, failing at the first event a valid header cannot
// hold: so a header nests at most 3 levels, and nothing but the entries themselves
// is kept. Errors are FormatErrors naming `source`.
class HeaderEvents : public nlohmann::json_sax<nlohmann::json> {
 public:
  HeaderEvents(const std::filesystem::path& source, std::vector<StoredTensor>& tensors, Metadata& metadata)
      : source_(source), tensors_(tensors), metadata_(metadata) {}

  bool start_object(std::size_t) override {
    if (depth_ == 0) {
      place_ = Place::top;
    } else if (place_ == Place::top && key_ == "__metadata__") {
      place_ = Place::metadata;
    } else if (place_ == Place::top) {
      if (tensors_.size() == SafetensorsLimits::tensors)
        fail_("header lists more than " + std::to_string(SafetensorsLimits::tensors) + " tensors");
      tensors_.push_back(StoredTensor{key_, DType::F32, {}, 0, 0});
      seen_ = {};
      place_ = Place::entry;
    } else {
      unexpected("an object");
    }
    ++depth_;
    return true;
  }
  bool end_object() override {
    --depth_;
    if (place_ == Place::entry) finish_entry();
    place_ = depth_ == 0 ? Place::done : Place::top;
    return true;
  }
  bool key(string_t& key) override {
    if (key.size() > SafetensorsLimits::name_bytes)
      fail_(std::string(place_ == Place::top ? "a tensor name" : "a key") + " is longer than " +
            std::to_string(SafetensorsLimits::name_bytes) + " bytes ('" + key.substr(0, 40) + "...')");
    if (place_ == Place::top) {
      if (key == "__metadata__" ? std::exchange(metadata_seen_, true) : names_.contains(key))
        fail_("duplicate tensor name '" + key + "'");
      if (key != "__metadata__") names_.insert(key);
    } else if (place_ == Place::metadata) {
      if (metadata_.contains(key)) fail_("duplicate key '" + key + "'");
      if (metadata_.size() == SafetensorsLimits::tensors)
        fail_("__metadata__ has more than " + std::to_string(SafetensorsLimits::tensors) + " entries");
    } else {
      const int field = key == "dtype" ? 0 : key == "shape" ? 1 : key == "data_offsets" ? 2 : -1;
      if (field < 0) fail_(entry() + ": unknown key '" + key + "'");
      if (seen_[std::size_t(field)]) fail_("duplicate key '" + key + "'");
      seen_[std::size_t(field)] = true;
    }
    key_ = std::move(key);
    return true;
  }
  bool start_array(std::size_t) override {
    if (place_ == Place::entry && key_ == "shape") {
      place_ = Place::shape;
    } else if (place_ == Place::entry && key_ == "data_offsets") {
      place_ = Place::offsets;
      offsets_count_ = 0;
    } else {
      unexpected("a list");
    }
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    if (place_ == Place::offsets && offsets_count_ != 2) fail_(entry() + ": data_offsets is not a pair [begin, end]");
    place_ = Place::entry;
    return true;
  }

  bool string(string_t& text) override {
    if (place_ == Place::metadata) {
      metadata_.emplace(key_, std::move(text));
    } else if (place_ == Place::entry && key_ == "dtype") {
      const auto known = dtype_from_name(text);
      if (!known) fail_(entry() + ": unknown dtype \"" + text + "\" (tapegrad reads F32, F64, I32, I64)");
      tensors_.back().dtype = *known;
    } else {
      unexpected("\"" + text + "\"");
    }
    return true;
  }
  bool number_unsigned(number_unsigned_t n) override {
    if (place_ == Place::shape) {
      Shape& shape = tensors_.back().shape;
      if (shape.size() == SafetensorsLimits::rank)
        fail_(entry() + ": shape has more than " + std::to_string(SafetensorsLimits::rank) + " dimensions");
      shape.push_back(n);
    } else if (place_ == Place::offsets) {
      if (offsets_count_ == 2) fail_(entry() + ": data_offsets is not a pair [begin, end]");
      (offsets_count_++ == 0 ? tensors_.back().begin : tensors_.back().end) = n;
    } else {
      unexpected(std::to_string(n));
    }
    return true;
  }
  bool number_integer(number_integer_t n) override {
    if (n < 0) unexpected(std::to_string(n));
    return number_unsigned(number_unsigned_t(n));
  }
  bool number_float(number_float_t, const string_t& text) override {
    unexpected(text);
  }
  bool boolean(bool b) override {
    unexpected(b ? "true" : "false");
  }
  bool null() override {
    unexpected("null");
  }
  bool binary(binary_t&) override {
    unexpected("binary data");
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    fail_("header is not valid JSON at byte offset " + std::to_string(position) +
          " of the header: " + json_error_text(e.what()));
  }

  // nlohmann's message without its tags, its line and column (the header is one line) and
  // the raw text it last read: "syntax error while parsing object key - unexpected end of
  // input; expected string literal".
  static std::string json_error_text(std::string text) {
    if (text.starts_with("[json.exception.")) text.erase(0, text.find("] ") + 2);
    if (text.starts_with("parse error")) text.erase(0, text.find(": ") + 2);
    if (const auto read = text.find("; last read: '"); read != std::string::npos) {
      const auto expected = text.rfind("; expected ");
      text.erase(read, expected != std::string::npos && expected > read ? expected - read : std::string::npos);
    }
    return text;
  }

  // The rule a value (described as `value`) breaks where it stands.
  [[noreturn]] void unexpected(const std::string& value) {
    switch (place_) {
      case Place::start: fail_("header is not a JSON object");
      case Place::top:
        if (key_ == "__metadata__") fail_("__metadata__ is not an object");
        fail_(entry_named(key_) + ": entry is not an object");
      case Place::metadata:
        if (key_ == "shape" || key_ == "data_offsets") fail_("a tensor may not be named '__metadata__'");
        fail_("__metadata__ value '" + key_ + "' is not a string");
      case Place::entry:
        if (key_ == "dtype") fail_(entry() + ": unknown dtype " + value + " (tapegrad reads F32, F64, I32, I64)");
        if (key_ == "shape") fail_(entry() + ": shape is not a list of non-negative integers");
        fail_(entry() + ": data_offsets is not a pair [begin, end]");
      case Place::shape: fail_(entry() + ": shape is not a list of non-negative integers");
      case Place::offsets: fail_(entry() + ": data_offsets are not non-negative integers");
      case Place::done: break;
    }
    fail_("header is not a JSON object");
  }
  [[noreturn]] void fail_(const std::string& reason) const { throw FormatError(source_, reason); }

 private:
  // Where the next event stands: before the header, in the top-level object, in
  // __metadata__, in a tensor entry, in its shape or data_offsets list, or after the end.
  enum class Place { start, top, metadata, entry, shape, offsets, done };

  static std::string entry_named(const std::string& name) { return "tensor '" + name + "'"; }
  std::string entry() const { return entry_named(tensors_.back().name); }

  // The entry's checks once it is complete: all keys there, offsets in order, and a
  // shape whose extents stay within SafetensorsLimits (so that no stride computation
  // overflows, even for a tensor with a zero extent) and match the byte size.
  void finish_entry() {
    const char* keys[] = {"dtype", "shape", "data_offsets"};
    for (std::size_t k = 0; k < 3; ++k)
      if (!seen_[k]) fail_(entry() + ": missing '" + keys[k] + "'");
    const StoredTensor& t = tensors_.back();
    if (t.end < t.begin) fail_(entry() + ": data_offsets end < begin");
    std::optional<std::uint64_t> product = 1;
    bool empty = false;
    for (std::size_t i = 0; i < t.shape.size() && product; ++i) {
      product = checked_multiply(*product, std::max<std::uint64_t>(t.shape[i], 1));
      empty = empty || t.shape[i] == 0;
    }
    if (!product || *product > SafetensorsLimits::extent_product)
      fail_(entry() + ": shape " + shape_str(t.shape) + " is too large (its extents, a 0 counted as 1, multiply to more than 2^48)");
    const std::uint64_t expected = empty ? 0 : dtype_size(t.dtype) * *product;
    if (expected != t.byte_size())
      fail_(entry() + ": byte size " + std::to_string(t.byte_size()) + " disagrees with dtype x shape (" +
            std::string(dtype_name(t.dtype)) + " x " + shape_str(t.shape) + " = " + std::to_string(expected) + " bytes)");
  }

  const std::filesystem::path& source_;
  std::vector<StoredTensor>& tensors_;
  Metadata& metadata_;
  std::set<std::string> names_;
  bool metadata_seen_ = false;
  Place place_ = Place::start;
  int depth_ = 0;
  std::string key_;
  std::array<bool, 3> seen_{};  // dtype, shape, data_offsets in the current entry
  int offsets_count_ = 0;
};

}  // namespace detail

// Safetensors bytes, read into memory and validated. Rules checked (each failure is
// a FormatError "<name>: <reason>" whose reason names the rule):
//  - (read) the file exists, is a regular file and can be read (io/file.hpp); its size is
//    checked against its header before its data is read, and against ReadOptions::max_bytes;
//  - the bytes are at least 8 long; the header length is at most 16 MiB and within them;
//  - the header is UTF-8, JSON, an object, starts with '{', has no duplicate key at
//    any level (duplicate tensor names included), at most 65536 tensors and 65536
//    __metadata__ entries, names and keys of at most 4096 bytes;
//  - __metadata__ is an object of string values (and not a tensor entry);
//  - each tensor entry is an object with exactly dtype, shape and data_offsets: a known
//    dtype, a shape of at most 8 non-negative integers whose product (a 0 counted as 1)
//    is at most 2^48, data_offsets a pair of non-negative integers with begin <= end,
//    whose size equals dtype size x shape;
//  - in offset order the tensors start at 0 and tile the data buffer to its end exactly
//    (no gap, no overlap).
// The header is parsed without building a JSON tree (detail::HeaderEvents), so a
// hostile header costs time and memory linear in its length and fails at its first fault.
class Safetensors {
 public:
  // The file at `path`, read whole; errors name the path.
  // The header is read and checked first, then the file's size against the data it
  // describes, then options.max_bytes; only then is the data read. A symbolic link is
  // refused unless options.follow_links (io/file.hpp).
  static Safetensors read(const std::filesystem::path& path, const ReadOptions& options = {}) {
    RegularFile in(path, {.follow_links = options.follow_links});
    if (in.size() < 8) in.fail("file is shorter than 8 bytes, the size of the header length");
    std::vector<std::byte> bytes(8);
    in.read_exactly(bytes);
    bytes.resize(8 + checked_header_length(bytes.data(), in.size(), path));
    in.read_exactly(std::span(bytes).subspan(8));
    Safetensors file(std::move(bytes), path, in.size());
    file.parse_header(file.header_text());
    file.check_layout();
    if (in.size() > options.max_bytes) in.over_limit(in.size(), options);
    file.bytes_.resize(in.size());
    in.read_exactly(std::span(file.bytes_).subspan(file.data_begin_));
    file.index_by_name();
    return file;
  }
  // Bytes already in memory (copied), as the Rust crate's SafeTensors::deserialize;
  // errors name `source`.
  static Safetensors from_bytes(std::span<const std::byte> bytes, std::filesystem::path source = "<bytes>") {
    return parse(std::vector<std::byte>(bytes.begin(), bytes.end()), std::move(source));
  }

  // The file's path, or from_bytes' `source`.
  const std::filesystem::path& path() const { return path_; }
  const Metadata& metadata() const { return metadata_; }
  // In data order (by data_offsets), which for files tapegrad writes is the order written.
  const std::vector<StoredTensor>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return index_.contains(name); }
  const StoredTensor& tensor(const std::string& name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) fail("no tensor named '" + name + "'");
    return tensors_[it->second];
  }

  // A float tensor's values; the stored dtype must be exactly T's (F32 for float, F64 for double).
  template <FloatElement T>
  Array<T> get(const std::string& name) const {
    Array<T> values = Array<T>::from_shape(tensor(name).shape);
    copy_to(name, std::span<T>(values.data(), values.size()));
    return values;
  }
  // Copies a float tensor into `out`, which must hold exactly its element count.
  template <FloatElement T>
  void copy_to(const std::string& name, std::span<T> out) const {
    const StoredTensor& t = tensor(name);
    if (t.dtype != dtype_of<T>)
      fail("tensor '" + name + "' is " + std::string(dtype_name(t.dtype)) + ", expected " +
           std::string(dtype_name(dtype_of<T>)));
    if (out.size() != t.numel())
      throw ShapeError("Safetensors::copy_to: tensor '" + name + "' has " + std::to_string(t.numel()) +
                       " elements, the destination " + std::to_string(out.size()));
    copy_bytes(t, out.data());
  }
  // An integer tensor (I32 or I64) as int64 ids.
  Ids get_ids(const std::string& name) const {
    const StoredTensor& t = tensor(name);
    Ids ids = Ids::from_shape(t.shape);
    if (t.dtype == DType::I64) {
      copy_bytes(t, ids.data());
    } else if (t.dtype == DType::I32) {
      for (std::size_t i = 0; i < t.numel(); ++i) {
        std::int32_t id;
        std::memcpy(&id, bytes_of(t) + i * sizeof id, sizeof id);
        ids.data()[i] = id;
      }
    } else {
      fail("tensor '" + name + "' is " + std::string(dtype_name(t.dtype)) + ", expected I32 or I64");
    }
    return ids;
  }

  [[noreturn]] void fail(const std::string& reason) const { throw FormatError(path_, reason); }

 private:
  Safetensors(std::vector<std::byte> bytes, std::filesystem::path path, std::uint64_t file_size)
      : path_(std::move(path)), bytes_(std::move(bytes)), file_size_(file_size) {}

  static Safetensors parse(std::vector<std::byte> bytes, std::filesystem::path path) {
    const std::uint64_t size = bytes.size();
    Safetensors file(std::move(bytes), std::move(path), size);
    file.parse_header(file.header_text());
    file.check_layout();
    file.index_by_name();
    return file;
  }

  const std::byte* bytes_of(const StoredTensor& t) const { return bytes_.data() + data_begin_ + t.begin; }
  std::uint64_t data_size() const { return file_size_ - data_begin_; }
  void copy_bytes(const StoredTensor& t, void* out) const {
    if (t.byte_size() != 0) std::memcpy(out, bytes_of(t), t.byte_size());  // an empty array's data() may be null
  }

  // Checks the header length (the limit, and against `total` bytes) from its 8 bytes.
  static std::uint64_t checked_header_length(const std::byte* length_bytes, std::uint64_t total,
                                             const std::filesystem::path& source) {
    const auto fail = [&](const std::string& reason) { throw FormatError(source, reason); };
    const std::uint64_t length = detail::decode_le64(length_bytes);
    if (length > SafetensorsLimits::header_bytes)
      fail("header length " + std::to_string(length) + " is over the 16 MiB limit");
    if (length > total - 8)
      fail("header length " + std::to_string(length) + " runs past the end of the file (" + std::to_string(total) +
           " bytes)");
    return length;
  }

  // The header's text; sets data_begin_ past it.
  std::string_view header_text() {
    if (file_size_ < 8) fail("file is shorter than 8 bytes, the size of the header length");
    const std::uint64_t length = checked_header_length(bytes_.data(), file_size_, path_);
    data_begin_ = 8 + length;
    return {reinterpret_cast<const char*>(bytes_.data() + 8), length};
  }

  void parse_header(std::string_view header) {
    if (!is_valid_utf8(header)) fail("header is not valid UTF-8");
    detail::HeaderEvents events(path_, tensors_, metadata_);
    nlohmann::json::sax_parse(header, &events);
    if (header.front() != '{') fail("header does not start with '{'");
  }

  // Sorts the tensors by offset and checks that they tile the data buffer exactly.
  void check_layout() {
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const StoredTensor& a, const StoredTensor& b) {
      return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
    });
    const StoredTensor* previous = nullptr;
    for (const StoredTensor& t : tensors_) {
      const std::uint64_t expected_begin = previous ? previous->end : 0;
      if (!previous && t.begin != 0)
        fail("data_offsets do not start at 0 (tensor '" + t.name + "' begins at " + std::to_string(t.begin) + ")");
      if (t.begin != expected_begin)
        fail(std::string(t.begin > expected_begin ? "gap" : "overlap") + " between tensors '" + previous->name +
             "' (ends at " + std::to_string(previous->end) + ") and '" + t.name + "' (begins at " +
             std::to_string(t.begin) + ")");
      previous = &t;
    }
    const std::uint64_t covered = previous ? previous->end : 0;
    if (covered != data_size())
      fail("data_offsets do not cover the byte buffer to its end exactly (tensors end at " + std::to_string(covered) +
           ", the buffer has " + std::to_string(data_size()) + " bytes)");
  }
  void index_by_name() {
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  std::filesystem::path path_;
  std::vector<std::byte> bytes_;  // the whole file: header length, header, data
  std::uint64_t file_size_ = 0;   // of the file (bytes_ holds only the header while it is checked)
  std::uint64_t data_begin_ = 0;  // where the data buffer starts in bytes_
  Metadata metadata_;
  std::vector<StoredTensor> tensors_;
  std::map<std::string, std::size_t> index_;
};

// ---- writing

// A named tensor to write. It borrows the caller's array, which must outlive the
// write (binding a temporary array does not compile).
struct TensorView {
  std::string name;
  DType dtype;
  Shape shape;
  std::span<const std::byte> bytes;

  template <class T, class Allocator>  // an Array<T> (core/tensor.hpp) or any row-major xt::xarray
  TensorView(std::string tensor_name, const xt::xarray<T, xt::layout_type::row_major, Allocator>& values)
      : name(std::move(tensor_name)),
        dtype(dtype_of<T>),
        shape(shape_of(values)),
        bytes(std::as_bytes(std::span<const T>(values.data(), values.size()))) {}
  template <class T, class Allocator>
  TensorView(std::string tensor_name, xt::xarray<T, xt::layout_type::row_major, Allocator>&& values) = delete;
};

// The bytes of a safetensors file holding `tensors`, laid out in the given order.
// Throws FormatError for what the format cannot hold: a duplicate tensor
// name, a tensor named "__metadata__", a name or metadata text that is not UTF-8.
inline std::string serialize_safetensors(const std::vector<TensorView>& tensors, const Metadata& metadata = {}) {
  const auto require_utf8 = [](const std::string& text, const char* what) {
    if (!is_valid_utf8(text))
      throw FormatError(std::string("serialize_safetensors: ") + what + " is not valid UTF-8");
  };
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    for (const auto& [key, value] : metadata)
      require_utf8(key, "a metadata key"), require_utf8(value, "a metadata value");
    header["__metadata__"] = metadata;
  }
  std::uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    require_utf8(t.name, "a tensor name");
    if (t.name == "__metadata__")
      throw FormatError("serialize_safetensors: a tensor may not be named '__metadata__'");
    if (header.contains(t.name))
      throw FormatError("serialize_safetensors: duplicate tensor name '" + t.name + "'");
    header[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }

  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  detail::append_le64(out, text.size());
  out += text;
  for (const TensorView& t : tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

// Writes a safetensors file atomically: `path` holds either its old contents or the new file.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<TensorView>& tensors,
                              const Metadata& metadata = {}) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace tapegrad::io
