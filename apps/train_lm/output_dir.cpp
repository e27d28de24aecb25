// train_lm/output_dir.cpp — the writability probe.
#include "output_dir.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <unistd.h>

namespace train_lm {

void check_writable_directory(const std::filesystem::path& dir_or_empty, const std::string& what) {
  const std::filesystem::path dir = dir_or_empty.empty() ? "." : dir_or_empty;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw std::runtime_error(what + ": " + dir.string() + " is not a directory");
  std::string probe = (dir / ".train_lm-write-test-XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) throw std::runtime_error(what + ": cannot create files in " + dir.string() + ": " + std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

void check_writable_file(const std::filesystem::path& file, const std::string& what) {
  if (!file.has_filename()) throw std::runtime_error(what + ": " + file.string() + " does not name a file");
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw std::runtime_error(what + ": " + file.string() + " is a directory");
  check_writable_directory(file.parent_path(), what);
}

}  // namespace train_lm
