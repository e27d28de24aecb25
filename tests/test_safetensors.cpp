// safetensors files and checkpoints: round trips, the exact byte layout, one malformed
// file per rejection rule, model mismatches that must leave parameters untouched, and
// atomic writes that keep the old file when they fail.
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include "test_files.hpp"

#include <limits>

#include <signal.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

using namespace tapegrad;
using namespace tapegrad::io;
using namespace tapegrad::testing;
namespace fs = std::filesystem;

namespace {

std::string le64(std::uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}
// A file: 8-byte little-endian header length, the header, the data buffer.
std::string file_bytes(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}
std::string zeros(std::size_t n) { return std::string(n, '\0'); }

// The one checker for rejected files: a one-line FormatError "<path>: ...<reason>...".
void check_rejected(const fs::path& path, const std::string& reason) {
  INFO("file ", path.string(), ", expected reason: ", reason);
  try {
    Safetensors::read(path);
    FAIL("the file was accepted");
  } catch (const FormatError& e) {
    const std::string message = e.what();
    INFO("message: ", message);
    CHECK(message.starts_with(path.string() + ": "));
    CHECK(message.find(reason) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
    CHECK(message.size() <= path.string().size() + 2 + 1003);  // file text in a reason is cut at 1000 bytes
    CHECK(e.path() == path);
  } catch (const std::exception& e) {
    FAIL("not a FormatError: ", e.what());
  }
}

template <class E>
std::vector<typename E::value_type> values_of(const E& e) {
  return {e.begin(), e.end()};
}

}  // namespace

// ---- round trips and layout

TEST_CASE("safetensors: F32, F64, I32 and I64 tensors and metadata round-trip") {
  TempDir dir;
  const Array<float> f32 = {{1.5f, -2.0f, 3.25f}, {0.0f, 1e-30f, -7.0f}};
  const Array<double> f64 = {0.1, -1e300, 3.0, 4.0};
  const xt::xarray<std::int32_t> i32 = {{-1, 2}, {2147483647, -2147483647 - 1}};
  const Ids i64 = {std::int64_t{1} << 40, -3, 0};
  const Array<double> scalar = 2.5;  // shape []
  const Array<float> empty = Array<float>::from_shape({0, 3});
  const Metadata metadata = {{"format", "tapegrad-gpt"}, {"vocab", "[\"a\",\"\\n\",\"é\"]"}};
  write_safetensors(dir / "t.safetensors",
                    {{"f32", f32}, {"f64", f64}, {"i32", i32}, {"i64", i64}, {"scalar", scalar}, {"empty", empty}},
                    metadata);

  const auto file = Safetensors::read(dir / "t.safetensors");
  CHECK(file.metadata() == metadata);
  std::vector<std::string> names;
  for (const auto& t : file.tensors()) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"f32", "f64", "i32", "i64", "scalar", "empty"});  // data order = given order
  CHECK(file.tensor("i32").dtype == DType::I32);
  CHECK(file.tensor("f32").shape == Shape{2, 3});
  CHECK(file.tensor("scalar").shape == Shape{});
  CHECK(file.contains("f64"));
  CHECK_FALSE(file.contains("nope"));

  CHECK(file.get<float>("f32") == f32);
  CHECK(file.get<double>("f64") == f64);
  CHECK(file.get<double>("scalar")() == 2.5);
  CHECK(file.get<float>("empty").shape() == empty.shape());
  CHECK(file.get_ids("i64") == i64);
  const Ids widened = file.get_ids("i32");
  CHECK(values_of(widened) == std::vector<std::int64_t>{-1, 2, 2147483647, -2147483648LL});
  CHECK(shape_of(widened) == Shape{2, 2});

  const std::string bytes = read_file(dir / "t.safetensors");
  CHECK(bytes.size() % 8 == 0);  // header padded to 8; all data here is a multiple of 8 bytes too
}

TEST_CASE("safetensors: the file is laid out byte for byte as the format says") {
  TempDir dir;
  const Array<float> x = {1.0f, -2.0f};
  write_safetensors(dir / "x.safetensors", {{"x", x}}, {{"k", "v"}});

  // 79 bytes of JSON padded with one space to 80 = 0x50, then 1.0f and -2.0f little-endian.
  const std::string header = R"({"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} )";
  const std::string expected =
      std::string("\x50\0\0\0\0\0\0\0", 8) + header + std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
  CHECK(read_file(dir / "x.safetensors") == expected);
}

TEST_CASE("safetensors: files other writers may produce are accepted") {
  TempDir dir;
  const std::string f32 = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  write_file(dir / "plain", file_bytes("{" + f32 + "}", zeros(4)));
  write_file(dir / "padded", file_bytes("{" + f32 + "}   \n", zeros(4)));
  write_file(dir / "reordered", file_bytes(R"({"a":{"data_offsets":[0,4],"shape":[1],"dtype":"F32"}})", zeros(4)));
  write_file(dir / "no tensors", file_bytes("{}"));
  write_file(dir / "zero-size tensor",
              file_bytes(R"({"z":{"dtype":"F64","shape":[0],"data_offsets":[0,0]},)" + f32 + "}", zeros(4)));
  for (const std::string name : {"plain", "padded", "reordered", "no tensors", "zero-size tensor"}) {
    INFO(name);
    CHECK_NOTHROW(Safetensors::read(dir / name));
  }
}

TEST_CASE("safetensors: reading the wrong kind of tensor or a missing name is a FormatError") {
  TempDir dir;
  const Array<float> x = {1.0f};
  const Ids ids = {1};
  write_safetensors(dir / "t.safetensors", {{"x", x}, {"ids", ids}});
  const auto file = Safetensors::read(dir / "t.safetensors");
  CHECK_THROWS_WITH_AS(file.get<double>("x"), doctest::Contains("tensor 'x' is F32, expected F64"), FormatError);
  CHECK_THROWS_WITH_AS(file.get<float>("ids"), doctest::Contains("tensor 'ids' is I64, expected F32"), FormatError);
  CHECK_THROWS_WITH_AS(file.get_ids("x"), doctest::Contains("tensor 'x' is F32, expected I32 or I64"), FormatError);
  CHECK_THROWS_WITH_AS(file.get<float>("y"), doctest::Contains("no tensor named 'y'"), FormatError);
}

TEST_CASE("safetensors: the writer refuses what the format cannot hold") {
  TempDir dir;
  const Array<float> x = {1.0f};
  CHECK_THROWS_WITH_AS(write_safetensors(dir / "t", {{"x", x}, {"x", x}}),
                       doctest::Contains("duplicate tensor name 'x'"), FormatError);
  CHECK_THROWS_WITH_AS(write_safetensors(dir / "t", {{"__metadata__", x}}), doctest::Contains("'__metadata__'"),
                       FormatError);
  CHECK_THROWS_WITH_AS(write_safetensors(dir / "t", {{"x", x}}, {{"k", "\xff"}}), doctest::Contains("not valid UTF-8"),
                       FormatError);
  CHECK(dir.entries().empty());
}

// ---- untrusted files: one malformed file per rule

namespace {
struct MalformedFile {
  std::string rule;
  std::string bytes;
  std::string reason;  // a substring of the expected message
};

// Headers with tensors named "a" (and "b") whose entries hold `a` (and `b`).
std::string one_tensor(const std::string& a) { return R"({"a":{)" + a + "}}"; }
std::string two_tensors(const std::string& a, const std::string& b) {
  return R"({"a":{)" + a + R"(},"b":{)" + b + "}}";
}

const std::vector<MalformedFile>& malformed_files() {
  static const std::vector<MalformedFile> table = {
      {"empty file", "", "shorter than 8 bytes"},
      {"shorter than 8 bytes", "abcdefg", "shorter than 8 bytes"},
      {"header length over 16 MiB", le64(16'777'217) + "{}", "header length 16777217 is over the 16 MiB limit"},
      {"header length 2^64 - 1", le64(~std::uint64_t{0}) + "{}", "is over the 16 MiB limit"},
      {"header length past the end of the file", le64(64) + "{}", "header length 64 runs past the end of the file"},
      {"header not UTF-8", file_bytes("{\"\xff\":{}}"), "header is not valid UTF-8"},
      {"header with overlong UTF-8", file_bytes("{\"\xc0\xaf\":{}}"), "header is not valid UTF-8"},
      {"header not JSON", file_bytes(R"({"a":)"), "header is not valid JSON"},
      {"header with a comment", file_bytes("{/* c */}"), "header is not valid JSON"},
      {"header not an object", file_bytes("[1, 2]"), "header is not a JSON object"},
      {"header starting with a space", file_bytes(" {}"), "header does not start with '{'"},
      {"header nested 100 levels deep", file_bytes(R"({"a":)" + std::string(100, '[') + std::string(100, ']') + "}"),
       "tensor 'a': entry is not an object"},
      {"a list nested in a shape", file_bytes(one_tensor(R"("shape":[[[[[]]]]],"dtype":"F32","data_offsets":[0,0])")),
       "tensor 'a': shape is not a list of non-negative integers"},
      {"an object nested in metadata", file_bytes(R"({"__metadata__":{"k":{"k":{}}}})"),
       "__metadata__ value 'k' is not a string"},
      // Numbers past double's range are a FormatError, not nlohmann's out_of_range.
      {"metadata number overflowing a double", file_bytes(R"({"a":1e400})"),
       "header is not valid JSON at byte offset 10 of the header: number overflow parsing '1e400'"},
      {"extent overflowing a double",
       file_bytes(one_tensor(R"("dtype":"F32","shape":[1e400],"data_offsets":[0,4])"), zeros(4)), "number overflow"},
      {"extent past 2^64",
       file_bytes(one_tensor(R"("dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4])"), zeros(4)),
       "tensor 'a': shape is not a list of non-negative integers"},
      // A zero-element tensor still has bounded rank and extents.
      {"zero-element tensor with huge extents",
       file_bytes(
           one_tensor(R"("dtype":"F32","shape":[0,9223372036854775808,9223372036854775808],"data_offsets":[0,0])")),
       "tensor 'a': shape [0, 9223372036854775808, 9223372036854775808] is too large"},
      {"zero-element tensor with extents just past 2^48",
       file_bytes(one_tensor(R"("dtype":"F32","shape":[16777216,0,16777217],"data_offsets":[0,0])")),
       "is too large (its extents, a 0 counted as 1, multiply to more than 2^48)"},
      {"rank 9", file_bytes(one_tensor(R"("dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4])"), zeros(4)),
       "tensor 'a': shape has more than 8 dimensions"},
      {"unknown dtype", file_bytes(one_tensor(R"("dtype":"BF16","shape":[1],"data_offsets":[0,2])"), zeros(2)),
       "tensor 'a': unknown dtype \"BF16\""},
      {"dtype not a string", file_bytes(one_tensor(R"("dtype":4,"shape":[1],"data_offsets":[0,4])"), zeros(4)),
       "tensor 'a': unknown dtype 4"},
      {"negative shape", file_bytes(one_tensor(R"("dtype":"F32","shape":[-1],"data_offsets":[0,4])"), zeros(4)),
       "tensor 'a': shape is not a list of non-negative integers"},
      {"fractional shape", file_bytes(one_tensor(R"("dtype":"F32","shape":[1.5],"data_offsets":[0,4])"), zeros(4)),
       "shape is not a list of non-negative integers"},
      {"shape not a list", file_bytes(one_tensor(R"("dtype":"F32","shape":1,"data_offsets":[0,4])"), zeros(4)),
       "shape is not a list of non-negative integers"},
      {"negative offset", file_bytes(one_tensor(R"("dtype":"F32","shape":[0],"data_offsets":[-4,0])")),
       "tensor 'a': data_offsets are not non-negative integers"},
      {"fractional offset", file_bytes(one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[0,4.0])"), zeros(4)),
       "data_offsets are not non-negative integers"},
      {"offsets not a pair", file_bytes(one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[0,4,4])"), zeros(4)),
       "tensor 'a': data_offsets is not a pair"},
      {"offsets not a list", file_bytes(one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":"0-4")"), zeros(4)),
       "data_offsets is not a pair"},
      {"offsets end < begin", file_bytes(one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[4,0])"), zeros(4)),
       "tensor 'a': data_offsets end < begin"},
      {"gap between tensors",
       file_bytes(two_tensors(R"("dtype":"F32","shape":[1],"data_offsets":[0,4])",
                              R"("dtype":"F32","shape":[1],"data_offsets":[8,12])"),
                  zeros(12)),
       "gap between tensors 'a' (ends at 4) and 'b' (begins at 8)"},
      {"overlapping tensors",
       file_bytes(two_tensors(R"("dtype":"F32","shape":[2],"data_offsets":[0,8])",
                              R"("dtype":"F32","shape":[2],"data_offsets":[4,12])"),
                  zeros(12)),
       "overlap between tensors 'a' (ends at 8) and 'b' (begins at 4)"},
      {"same range twice",
       file_bytes(two_tensors(R"("dtype":"F32","shape":[1],"data_offsets":[0,4])",
                              R"("dtype":"I32","shape":[1],"data_offsets":[0,4])"),
                  zeros(4)),
       "overlap between tensors"},
      {"offsets not starting at 0",
       file_bytes(one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[4,8])"), zeros(8)),
       "data_offsets do not start at 0"},
      {"bytes after the last tensor",
       file_bytes(one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[0,4])"), zeros(8)),
       "data_offsets do not cover the byte buffer to its end exactly (tensors end at 4, the buffer has 8 bytes)"},
      {"tensor past the end of the buffer",
       file_bytes(one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":[0,8])"), zeros(4)),
       "do not cover the byte buffer to its end exactly (tensors end at 8, the buffer has 4 bytes)"},
      {"data but no tensors", file_bytes("{}", zeros(4)), "do not cover the byte buffer to its end exactly"},
      {"byte size disagrees with dtype x shape",
       file_bytes(one_tensor(R"("dtype":"F64","shape":[2],"data_offsets":[0,8])"), zeros(8)),
       "tensor 'a': byte size 8 disagrees with dtype x shape (F64 x [2] = 16 bytes)"},
      {"dtype x shape overflows",
       file_bytes(one_tensor(R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0])")),
       "tensor 'a': shape [4294967296, 4294967296] is too large"},
      {"duplicate tensor names",
       file_bytes(
           R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           zeros(8)),
       "duplicate tensor name 'a'"},
      {"duplicate key in a tensor entry",
       file_bytes(one_tensor(R"("dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4])"), zeros(4)),
       "duplicate key 'dtype'"},
      {"duplicate metadata key", file_bytes(R"({"__metadata__":{"k":"1","k":"2"}})"), "duplicate key 'k'"},
      {"duplicate __metadata__", file_bytes(R"({"__metadata__":{},"__metadata__":{}})"),
       "duplicate tensor name '__metadata__'"},
      {"__metadata__ not an object", file_bytes(R"({"__metadata__":["k"]})"), "__metadata__ is not an object"},
      {"non-string metadata value", file_bytes(R"({"__metadata__":{"k":1}})"),
       "__metadata__ value 'k' is not a string"},
      {"tensor named __metadata__",
       file_bytes(R"({"__metadata__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", zeros(4)),
       "a tensor may not be named '__metadata__'"},
      {"unknown key in a tensor entry",
       file_bytes(one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[0,4],"offset":0)"), zeros(4)),
       "tensor 'a': unknown key 'offset'"},
      {"missing key in a tensor entry", file_bytes(one_tensor(R"("dtype":"F32","shape":[1])"), zeros(4)),
       "tensor 'a': missing 'data_offsets'"},
      {"tensor entry not an object", file_bytes(R"({"a":[0,4]})"), "tensor 'a': entry is not an object"},
      {"control character in a name", file_bytes(R"({"a\n":[0,4]})"), "tensor 'a\\x0a': entry is not an object"},
      {"100 kB tensor name", file_bytes("{\"" + std::string(100'000, 'n') + "\":[0,4]}"),
       "a tensor name is longer than 4096 bytes ('nnnnnnnn"},
      {"4097-byte tensor name", file_bytes("{\"" + std::string(4097, 'n') + "\":{}}"),
       "a tensor name is longer than 4096 bytes"},
      {"4097-byte metadata key", file_bytes(R"({"__metadata__":{")" + std::string(4097, 'k') + R"(":""}})"),
       "a key is longer than 4096 bytes"},
  };
  return table;
}
}  // namespace

TEST_CASE("safetensors: every malformed file is rejected with the rule it breaks") {
  TempDir dir;
  const auto& table = malformed_files();
  for (std::size_t i = 0; i < table.size(); ++i) {
    INFO("rule: ", table[i].rule);
    const fs::path path = dir / ("malformed-" + std::to_string(i) + ".safetensors");
    write_file(path, table[i].bytes);
    check_rejected(path, table[i].reason);
  }
}

TEST_CASE("safetensors: from_bytes reads a buffer in memory as read reads a file") {
  TempDir dir;
  const Array<float> x = {{1.5f, -2.0f}, {0.25f, 8.0f}};
  const Ids ids = {7, -1};
  const std::string bytes = serialize_safetensors({{"x", x}, {"ids", ids}}, {{"k", "v"}});
  const auto memory = Safetensors::from_bytes(std::as_bytes(std::span(bytes.data(), bytes.size())), "buffer");
  CHECK(memory.path() == "buffer");
  CHECK(memory.metadata() == Metadata{{"k", "v"}});
  CHECK(memory.get<float>("x") == x);
  CHECK(memory.get_ids("ids") == ids);
  // The same rules: every malformed file of the table is refused from memory, naming the source.
  for (const MalformedFile& row : malformed_files()) {
    INFO("rule: ", row.rule);
    try {
      Safetensors::from_bytes(std::as_bytes(std::span(row.bytes.data(), row.bytes.size())), "buf");
      FAIL("accepted");
    } catch (const FormatError& e) {
      CHECK(std::string(e.what()).starts_with("buf: "));
      CHECK(e.reason().find(row.reason) != std::string::npos);
    }
  }
}

TEST_CASE("safetensors: the header bounds are inclusive") {
  // 8 dimensions, and extents multiplying to exactly 2^48 around a 0, are accepted.
  const std::string rank8 = file_bytes(one_tensor(R"("dtype":"F32","shape":[1,1,1,1,1,1,1,2],"data_offsets":[0,8])"), zeros(8));
  CHECK(Safetensors::from_bytes(std::as_bytes(std::span(rank8.data(), rank8.size()))).tensor("a").shape.size() == 8);
  const std::string wide = file_bytes(one_tensor(R"("dtype":"F64","shape":[16777216,0,16777216],"data_offsets":[0,0])"));
  const auto file = Safetensors::from_bytes(std::as_bytes(std::span(wide.data(), wide.size())));
  CHECK(file.get<double>("a").size() == 0);
  // 65536 tensors are accepted, 65537 are not.
  const auto many = [](std::size_t count) {
    std::string header = "{";
    for (std::size_t i = 0; i < count; ++i)
      header += (i ? ",\"" : "\"") + std::to_string(i) + R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
    return file_bytes(header + "}");
  };
  const std::string at_limit = many(SafetensorsLimits::tensors), past = many(SafetensorsLimits::tensors + 1);
  CHECK(Safetensors::from_bytes(std::as_bytes(std::span(at_limit.data(), at_limit.size()))).tensors().size() == 65536);
  CHECK_THROWS_WITH_AS(Safetensors::from_bytes(std::as_bytes(std::span(past.data(), past.size()))),
                       doctest::Contains("header lists more than 65536 tensors"), FormatError);
}

// A header was once parsed into a JSON tree before its rules were checked:
// a 50 MB header took 1.6 GB and 9 s. Now a header near the 16 MiB limit full of what a
// header may not hold fails at its first fault, in memory about the size of the file.
TEST_CASE("safetensors: a large hostile header fails fast in memory near the file's size") {
  TempDir dir;
  const std::size_t target = 15u << 20;
  std::string zeros_list = R"({"a":[)";
  while (zeros_list.size() < target) zeros_list += "0,";
  zeros_list += "0]}";
  std::string metadata = R"({"__metadata__":{)";
  for (std::size_t i = 0; metadata.size() < target; ++i) metadata += (i ? ",\"" : "\"") + std::to_string(i) + "\":\"\"";
  metadata += "}}";
  const struct {
    std::string name, header, reason;
  } headers[] = {{"a list of 7.8 million zeros", zeros_list, "tensor 'a': entry is not an object"},
                 {"1.4 million metadata entries", metadata, "__metadata__ has more than 65536 entries"}};
  for (const auto& h : headers) {
    INFO(h.name);
    write_file(dir / "big", file_bytes(h.header));
    const std::int64_t growth = peak_memory_growth([&] { check_rejected(dir / "big", h.reason); });
    CHECK(growth < 3 * std::int64_t(target));  // the file read whole, its text, the error: not a JSON tree
  }
}

TEST_CASE("safetensors: a path that is not a readable file is rejected") {
  TempDir dir;
  check_rejected(dir / "missing.safetensors", ": no such file");
  fs::create_directory(dir / "a-directory");
  check_rejected(dir / "a-directory", "not a regular file (a directory)");
  if (::geteuid() != 0) {  // root reads files whatever their mode
    write_file(dir / "unreadable", file_bytes("{}"));
    fs::permissions(dir / "unreadable", fs::perms::none);
    check_rejected(dir / "unreadable", "cannot read: the file cannot be opened");
  }
}

TEST_CASE(
    "safetensors: a file far larger than its header describes is refused by its size, nothing read past the header") {
  TempDir dir;
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  write_file(dir / "sparse.safetensors", file_bytes(header, zeros(4)));
  const std::uint64_t tebibyte = std::uint64_t{1} << 40;
  fs::resize_file(dir / "sparse.safetensors", tebibyte);  // sparse: no disk blocks
  const std::int64_t growth = peak_memory_growth([&] {
    check_rejected(dir / "sparse.safetensors", "the buffer has " + std::to_string(tebibyte - 8 - header.size()));
  });
  CHECK(growth < std::int64_t(64) << 20);
}

TEST_CASE(
    "safetensors: a file whose header describes more data than the caller's limit is refused before its data is read") {
  TempDir dir;
  const std::string header = R"({"a":{"dtype":"F32","shape":[256],"data_offsets":[0,1024]}})";
  write_file(dir / "big.safetensors", file_bytes(header, zeros(1024)));
  const std::string error = [&] {
    try {
      Safetensors::read(dir / "big.safetensors", {.max_bytes = 1000, .what = "a test file"});
    } catch (const FormatError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  }();
  CHECK(error == (dir / "big.safetensors").string() + ": " + std::to_string(8 + header.size() + 1024) +
                     " bytes is over the limit of 1000 bytes for a test file");
  CHECK(Safetensors::read(dir / "big.safetensors", {.max_bytes = 8 + header.size() + 1024}).tensor("a").numel() == 256);
}

TEST_CASE(
    "safetensors: a JSON syntax error is one line with its offset and what was expected, not the parser's raw text") {
  TempDir dir;
  const struct {
    std::string header, offset, expected;
  } cases[] = {{R"({"a":{"dtype")", "byte offset 14 ", "expected ':'"},
               {"{\"a\x01\":1}", "byte offset 4 ", "control character U+0001"},
               {R"({"a":tru})", "byte offset 9 ", "invalid literal"}};
  for (const auto& c : cases) {
    INFO(c.header);
    write_file(dir / "bad.safetensors", file_bytes(c.header));
    check_rejected(dir / "bad.safetensors", "header is not valid JSON at " + c.offset);
    check_rejected(dir / "bad.safetensors", c.expected);
    try {
      Safetensors::read(dir / "bad.safetensors");
    } catch (const FormatError& e) {
      const std::string message = e.what();
      CHECK(message.find("json.exception") == std::string::npos);
      CHECK(message.find("last read") == std::string::npos);
      CHECK(message.find("line 1, column") == std::string::npos);
    }
  }
}

TEST_CASE("safetensors: what read opens must be a regular file of known size, and a link is refused when asked") {
  TempDir dir;
  write_file(dir / "target.safetensors", file_bytes("{}"));
  fs::create_symlink(dir / "target.safetensors", dir / "link.safetensors");
  CHECK(Safetensors::read(dir / "link.safetensors").tensors().empty());
  try {
    Safetensors::read(dir / "link.safetensors", {.follow_links = false});
    FAIL("a link was followed");
  } catch (const FormatError& e) {
    CHECK(std::string(e.what()) == (dir / "link.safetensors").string() +
                                       ": is a symbolic link, which is not followed here: put the file itself there");
  }
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  check_rejected(dir / "fifo", "not a regular file (a FIFO)");  // at once: the open does not wait for a writer
  check_rejected("/dev/zero", "not a regular file (a character device)");
  check_rejected("/proc/self/status", "reports size 0 but has content");
}

TEST_CASE("read_regular_file: bounded, and a file under /proc is read as a pseudo file only when asked") {
  TempDir dir;
  write_file(dir / "text", "0123456789");
  CHECK(read_regular_file(dir / "text", {.max_bytes = 10}) == "0123456789");
  CHECK_THROWS_WITH(read_regular_file(dir / "text", {.max_bytes = 9, .what = "a note"}),
                    ((dir / "text").string() + ": 10 bytes is over the limit of 9 bytes for a note").c_str());
  CHECK(read_regular_file("/proc/self/status", {.max_bytes = 1 << 20, .pseudo_file = true}).starts_with("Name:"));
  CHECK_THROWS_WITH(read_regular_file("/proc/self/status", {.max_bytes = 5, .pseudo_file = true, .what = "a status"}),
                    doctest::Contains("bytes is over the limit of 5 bytes for a status"));
  write_file(dir / "empty", "");
  CHECK(read_regular_file(dir / "empty").empty());
}

TEST_CASE(
    "safetensors: write_file_atomically over a symbolic link replaces the link and does not take its target's mode") {
  TempDir dir;
  write_file(dir / "target", "old");
  fs::permissions(dir / "target", fs::perms::all);  // 0777: what a link to a shared file could carry over
  fs::create_symlink(dir / "target", dir / "link");
  const mode_t umask_before = ::umask(022);
  write_file_atomically(dir / "link", "new");
  ::umask(umask_before);
  CHECK(fs::is_regular_file(fs::symlink_status(dir / "link")));
  CHECK((fs::status(dir / "link").permissions() & (fs::perms::others_write | fs::perms::group_write)) ==
        fs::perms::none);
  CHECK(read_file(dir / "target") == "old");
}

// ---- checkpoints

namespace {
template <class T>
NamedTensors<T> small_model(T first_value) {
  std::vector<T> wte(6), bias(2);
  for (std::size_t i = 0; i < wte.size(); ++i) wte[i] = first_value + T(i);
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = -first_value - T(i);
  return {{"wte", Tensor<T>::from({3, 2}, wte, true)}, {"ln.bias", Tensor<T>::from({2}, bias, true)}};
}

template <class T>
std::vector<std::vector<T>> values_of(const NamedTensors<T>& params) {
  std::vector<std::vector<T>> out;
  for (const auto& [name, p] : params) out.push_back(values_of(p.value()));
  return out;
}
}  // namespace

TEST_CASE_TEMPLATE("checkpoint: parameters and metadata round-trip in the model's dtype", T, float, double) {
  TempDir dir;
  const auto saved = small_model<T>(T(1.5));
  save_parameters(dir / "model.safetensors", saved, {{"format", "tapegrad-gpt"}, {"n_layer", "2"}});

  const auto file = Safetensors::read(dir / "model.safetensors");
  CHECK(checkpoint_dtype(file) == dtype_of<T>);
  CHECK(checkpoint_dtype(dir / "model.safetensors") == dtype_of<T>);
  CHECK(file.metadata().at("n_layer") == "2");

  const auto loaded = small_model<T>(T(0));
  const T* wte_before = loaded[0].second.data();
  load_parameters(dir / "model.safetensors", loaded);
  CHECK(values_of(loaded) == values_of(saved));
  CHECK(loaded[0].second.data() == wte_before);  // copied into the existing buffers
}

namespace {
using FileValues = std::variant<Array<float>, Array<double>>;
struct ModelMismatch {
  std::string what;
  std::vector<std::pair<std::string, FileValues>> file;
  std::string reason;
};
}  // namespace

TEST_CASE("checkpoint: a file that does not match the model is rejected and loads nothing") {
  // The model is small_model<float>: wte [3, 2], then ln.bias [2]. In every row wte is
  // valid, so a loader that copied before checking everything would change it.
  const Array<float> wte = xt::ones<float>({3, 2}), bias = xt::ones<float>({2});
  const std::vector<ModelMismatch> table = {
      {"missing name", {{"wte", wte}}, "missing parameters: 'ln.bias'"},
      {"unexpected name", {{"wte", wte}, {"ln.bias", bias}, {"lm_head", bias}}, "unexpected tensors: 'lm_head'"},
      {"shape",
       {{"wte", wte}, {"ln.bias", Array<float>(xt::ones<float>({3}))}},
       "shape differs from the model's: 'ln.bias' [3] (model [2])"},
      {"dtype",
       {{"wte", wte}, {"ln.bias", Array<double>(xt::ones<double>({2}))}},
       "dtype is not the model's F32: 'ln.bias' F64"},
      {"several at once",
       {{"wte", Array<float>(xt::ones<float>({2, 3}))}, {"other", bias}},
       "missing parameters: 'ln.bias'; unexpected tensors: 'other'; shape differs from the model's: 'wte' [2, 3] "
       "(model [3, 2])"},
  };
  TempDir dir;
  for (const ModelMismatch& row : table) {
    INFO("mismatch: ", row.what);
    std::vector<TensorView> views;
    for (const auto& entry : row.file)  // not a structured binding: clang 14 cannot capture one in a lambda
      std::visit([&](const auto& a) { views.emplace_back(entry.first, a); }, entry.second);
    const fs::path path = dir / "model.safetensors";
    write_safetensors(path, views);

    const auto model = small_model<float>(7.0f);
    const auto before = values_of(model);
    CHECK_THROWS_WITH_AS(load_parameters(path, model),
                         doctest::Contains((path.string() + ": does not match the model: " + row.reason).c_str()),
                         FormatError);
    CHECK(values_of(model) == before);
  }
}

TEST_CASE("checkpoint: a non-finite weight is a corrupt checkpoint and loads nothing") {
  TempDir dir;
  const fs::path path = dir / "model.safetensors";
  const Array<float> wte = xt::ones<float>({3, 2});
  Array<float> bias = xt::ones<float>({2});
  bias(1) = std::numeric_limits<float>::quiet_NaN();
  write_safetensors(path, {TensorView("wte", wte), TensorView("ln.bias", bias)});
  const auto model = small_model<float>(7.0f);
  const auto before = values_of(model);
  CHECK_THROWS_WITH_AS(load_parameters(path, model),
                       doctest::Contains((path.string() + ": tensor 'ln.bias' holds a non-finite value").c_str()),
                       FormatError);
  CHECK(values_of(model) == before);
}

// No save writes a checkpoint holding a non-finite weight.
TEST_CASE("checkpoint: save_parameters refuses a non-finite weight and keeps the previous file") {
  TempDir dir;
  const fs::path path = dir / "model.safetensors";
  auto model = small_model<double>(1.0);
  save_parameters(path, model);
  const std::string good = read_file(path);
  for (const double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    model[1].second.data()[1] = bad;
    CHECK_THROWS_WITH_AS(save_parameters(path, model),
                         doctest::Contains("not written: tensor 'ln.bias' holds a non-finite value"),
                         FormatError);
    CHECK(read_file(path) == good);
  }
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("checkpoint: a long list of mismatched names is cut short") {
  TempDir dir;
  NamedTensors<float> model;
  for (int i = 0; i < 8; ++i) model.emplace_back(std::string("p").append(std::to_string(i)), Tensor<float>::zeros({1}));
  const Array<float> x = {1.0f};
  write_safetensors(dir / "m", {{"x", x}});
  CHECK_THROWS_WITH_AS(
      load_parameters(dir / "m", model),
      doctest::Contains("missing parameters: 'p0', 'p1', 'p2', 'p3', 'p4' and 3 more; unexpected tensors: 'x'"),
      FormatError);
}

TEST_CASE("checkpoint: checkpoint_dtype needs float tensors of one dtype") {
  TempDir dir;
  const Array<float> f = {1.0f};
  const Array<double> d = {1.0};
  const Ids ids = {1};
  write_safetensors(dir / "mixed", {{"a", f}, {"b", d}});
  write_safetensors(dir / "ids", {{"a", f}, {"ids", ids}});
  write_safetensors(dir / "empty", {});
  CHECK_THROWS_WITH_AS(checkpoint_dtype(dir / "mixed"), doctest::Contains("mixes dtypes ('a' is F32, 'b' is F64)"),
                       FormatError);
  CHECK_THROWS_WITH_AS(checkpoint_dtype(dir / "ids"),
                       doctest::Contains("tensor 'ids' is I64: checkpoint tensors are F32 or F64"), FormatError);
  CHECK_THROWS_WITH_AS(checkpoint_dtype(dir / "empty"), doctest::Contains("checkpoint holds no tensors"), FormatError);
}

// ---- atomic writes

namespace {
// Lowers this process's file-size limit, so a write past `bytes` fails with EFBIG

void check_write_fails(const fs::path& target, const std::string& bytes, const std::string& reason) {
  try {
    write_file_atomically(target, bytes);
    FAIL("the write succeeded");
  } catch (const SystemError& e) {
    const std::string message = e.what();
    INFO("message: ", message);
    CHECK(message.find(target.string()) != std::string::npos);
    CHECK(message.find(reason) != std::string::npos);
  }
}
}  // namespace

TEST_CASE("safetensors: write_file_atomically replaces the target and leaves no temporary file") {
  TempDir dir;
  write_file_atomically(dir / "target", "old");
  write_file_atomically(dir / "target", "new contents");
  CHECK(read_file(dir / "target") == "new contents");
  CHECK(dir.entries() == std::vector<std::string>{"target"});
}

// The replace once reset a 0600 checkpoint to 0644.
TEST_CASE("safetensors: write_file_atomically keeps the permission bits of the file it replaces") {
  TempDir dir;
  for (const fs::perms mode : {fs::perms::owner_read | fs::perms::owner_write,
                               fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read}) {
    write_file_atomically(dir / "target", "old");
    fs::permissions(dir / "target", mode);
    write_file_atomically(dir / "target", "new");
    CHECK(fs::status(dir / "target").permissions() == mode);
    CHECK(read_file(dir / "target") == "new");
  }
}

// Temporary files of killed writers once stayed forever.
TEST_CASE("safetensors: remove_stale_temporary_files removes what dead writers left, nothing else") {
  TempDir dir;
  write_file(dir / "model.safetensors", "kept");
  const std::string live = ".model.safetensors.tmp-" + std::to_string(::getpid()) + "-0";
  for (const std::string& name : std::vector<std::string>{".model.safetensors.tmp-2147483646-0", ".model.safetensors.tmp-2147483646-17", live,
                                 ".model.safetensors.tmp-junk", ".state.safetensors.tmp-2147483646-0", "other"})
    write_file(dir / name, "x");
  CHECK(remove_stale_temporary_files(dir / "model.safetensors") == 2);
  CHECK(dir.entries() == std::vector<std::string>{live, ".model.safetensors.tmp-junk",
                                                  ".state.safetensors.tmp-2147483646-0", "model.safetensors", "other"});
}

TEST_CASE("safetensors: a failed atomic write keeps the old target and removes its temporary file") {
  TempDir dir;
  write_file(dir / "target", "old");

  SUBCASE("the disk fills up part-way") {
    const FileSizeLimit limit(4096);
    check_write_fails(dir / "target", std::string(1 << 20, 'x'), "writing the temporary file failed");
  }
  SUBCASE("the rename fails (the target is a directory)") {
    fs::create_directory(dir / "target-dir");
    write_file(dir / "target-dir" / "inside", "kept");
    check_write_fails(dir / "target-dir", "new", "renaming the temporary file over it failed");
    CHECK(read_file(dir / "target-dir" / "inside") == "kept");
    fs::remove_all(dir / "target-dir");
  }
  SUBCASE("the temporary file cannot be created") {
    check_write_fails(dir / "no-such-dir" / "target", "new", "cannot create a temporary file");
    if (::geteuid() != 0) {  // root writes into read-only directories
      fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
      check_write_fails(dir / "target", "new", "cannot create a temporary file");
      fs::permissions(dir.path(), fs::perms::owner_all);
    }
  }
  CHECK(read_file(dir / "target") == "old");
  CHECK(dir.entries() == std::vector<std::string>{"target"});
}

TEST_CASE("checkpoint: a save that fails part-way leaves the previous checkpoint loadable") {
  TempDir dir;
  const fs::path path = dir / "model.safetensors";
  const auto previous = small_model<float>(1.0f);
  save_parameters(path, previous);

  NamedTensors<float> bigger = small_model<float>(2.0f);
  bigger.emplace_back("big", Tensor<float>::zeros({1 << 16}));
  {
    const FileSizeLimit limit(4096);
    CHECK_THROWS_AS(save_parameters(path, bigger), SystemError);
  }
  const auto loaded = small_model<float>(0.0f);
  load_parameters(path, loaded);
  CHECK(values_of(loaded) == values_of(previous));
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
}
