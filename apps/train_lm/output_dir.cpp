// train_lm/output_dir.cpp — the writability probe.
#include "output_dir.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <sys/stat.h>
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

void refuse_same_file(const std::filesystem::path& output, const std::string& output_what,
                      const std::filesystem::path& input, const std::string& input_what) {
  struct stat out {};
  struct stat in {};
  // No output yet: nothing to overwrite.
  if (::stat(output.c_str(), &out) != 0 || ::stat(input.c_str(), &in) != 0) return;
  if (out.st_dev == in.st_dev && out.st_ino == in.st_ino)
    throw std::runtime_error(output_what + " " + output.string() + " is the same file as " + input_what + " " +
                             input.string() + ": writing it would destroy the input; choose another");
}

}  // namespace train_lm
