// Test helpers for files: a scratch directory, whole-file read/write, and a
// temporary file-size limit that makes writes fail part-way (a full disk).
#pragma once

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

namespace tapegrad::testing {

namespace fs = std::filesystem;

// A fresh directory for one test, removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("tapegrad-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ignored);
    fs::remove_all(path_, ignored);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

inline void write_file(const fs::path& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The growth of this process's peak resident memory while `f` runs, in bytes
// (Linux: writing 5 to /proc/self/clear_refs resets VmHWM to the current VmRSS).
template <class F>
inline std::int64_t peak_memory_growth(F&& f) {
  const auto status_kib = [](const std::string& field) {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
      if (line.starts_with(field + ":")) return std::stoll(line.substr(field.size() + 1));
    FAIL("no " << field << " in /proc/self/status");
    return 0LL;
  };
  std::ofstream("/proc/self/clear_refs") << "5";
  const auto before = status_kib("VmRSS");
  REQUIRE(status_kib("VmHWM") <= before + 1024);  // the reset worked
  f();
  return (status_kib("VmHWM") - before) * 1024;
}

// While alive, a write past `bytes` fails with EFBIG (SIGXFSZ ignored), as on a full disk.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_limit_);
    saved_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    const rlimit lowered{bytes, saved_limit_.rlim_max};
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lowered) == 0);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_limit_);
    ::signal(SIGXFSZ, saved_handler_);
  }

 private:
  rlimit saved_limit_{};
  sighandler_t saved_handler_{};
};

}  // namespace tapegrad::testing
