// tapegrad/dist/communicator.hpp — the processes of a data-parallel job, over MPI.
//
// dist/ is a layer above core/ and nn/, used by training code (never by ops). It
// needs MPI (Open MPI from Debian's libopenmpi-dev); CMake builds it only where
// find_package(MPI) succeeds and links the target tapegrad::dist.
//
//   Communicator::world()   this process's rank and the job's size. The first call
//                           initialises MPI (once, MPI_THREAD_FUNNELED: only the thread
//                           that runs backward calls MPI); MPI is finalised at exit.
//                           A program started without a launcher (no mpirun) is a job
//                           of one process, rank 0, and never touches MPI, so the
//                           same binary runs as before without mpirun.
//   broadcast / all_reduce_sum / all_reduce_max   blocking collectives on spans.
//   gather_failures        every rank says whether it failed, and why; rank 0 learns
//                          all of it (a job checks its inputs together before step 1).
//   abort                  ends the whole job with an exit code (MPI_Abort).
#pragma once

#include "../core/error.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace tapegrad::dist {

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, int>) return MPI_INT;
  else if constexpr (std::is_same_v<T, char>) return MPI_CHAR;
  else static_assert(sizeof(T) == 0, "no MPI datatype for this type");
}

class Communicator {
 public:
  // The job this process belongs to (see the top of the file).
  static Communicator& world() {
    static Communicator instance;
    return instance;
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() {
    int finalized = 0;
    if (uses_mpi_ && (MPI_Finalized(&finalized), !finalized)) MPI_Finalize();
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // False for a job of one process started without a launcher: nothing goes over MPI.
  bool uses_mpi() const { return uses_mpi_; }
  MPI_Comm handle() const { return MPI_COMM_WORLD; }

  // `data` on every rank becomes rank `root`'s.
  template <class T>
  void broadcast(std::span<T> data, int root = 0) const {
    if (size_ > 1) check(MPI_Bcast(data.data(), count(data.size()), mpi_type<T>(), root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  // `data` on every rank becomes the element-wise sum (or max) over the ranks.
  template <class T>
  void all_reduce_sum(std::span<T> data) const { all_reduce(data, MPI_SUM); }
  template <class T>
  void all_reduce_max(std::span<T> data) const { all_reduce(data, MPI_MAX); }
  template <class T>
  T sum(T x) const {
    all_reduce_sum(std::span<T>(&x, 1));
    return x;
  }

  // Collective: each rank passes "" or what went wrong on it. Returns, on rank 0, one
  // line per distinct failure ("rank 2: <message>", "ranks 0, 1: <message>"), or just the
  // message when every rank failed alike, and on the others "failed" if any rank failed;
  // "" everywhere when every rank succeeded.
  std::string gather_failures(const std::string& message) const {
    if (size_ == 1) return message;
    int failed = message.empty() ? 0 : 1;
    all_reduce_max(std::span<int>(&failed, 1));
    if (!failed) return "";
    int length = int(message.size());
    std::vector<int> lengths(is_root() ? size_ : 0), offsets(lengths.size());
    check(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Gather");
    std::string all;
    if (is_root()) {
      for (int r = 0, at = 0; r < size_; at += lengths[r++]) offsets[r] = at;
      all.resize(std::size_t(offsets.back() + lengths.back()));
    }
    check(MPI_Gatherv(message.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
                      MPI_COMM_WORLD),
          "MPI_Gatherv");
    if (!is_root()) return "failed";
    std::vector<std::pair<std::string, std::string>> failures;  // (message, "rank 1" or "ranks 0, 1")
    for (int r = 0; r < size_; ++r) {
      if (lengths[r] == 0) continue;
      const std::string m = all.substr(std::size_t(offsets[r]), std::size_t(lengths[r]));
      auto same = std::find_if(failures.begin(), failures.end(), [&](const auto& f) { return f.first == m; });
      if (same == failures.end()) failures.emplace_back(m, "rank " + std::to_string(r));
      else same->second = (same->second[4] == 's' ? same->second : "ranks" + same->second.substr(4)) + ", " + std::to_string(r);
    }
    if (failures.size() == 1 && failures[0].second.find(", ") != std::string::npos &&
        std::count(failures[0].second.begin(), failures[0].second.end(), ',') == size_ - 1)
      return failures[0].first;  // the same failure on every rank: just the message
    std::string report;
    for (const auto& [m, ranks] : failures) report += (report.empty() ? "" : "\n") + ranks + ": " + m;
    return report;
  }

  // Ends every process of the job with `code` (non-zero).
  [[noreturn]] void abort(int code) const {
    if (uses_mpi_) MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

  // An MPI call's result: MPI_SUCCESS or a SystemError naming the call. (The default
  // error handler aborts the job before this sees a failure; the check is for others.)
  static void check(int result, const char* call) {
    if (result == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(result, text, &length);
    throw SystemError(std::string(call) + " failed: " + std::string(text, std::size_t(length)));
  }
  static int count(std::size_t n) {
    if (n > std::size_t(INT32_MAX)) throw ShapeError("MPI: a message of " + std::to_string(n) + " elements is too long (at most 2^31 - 1)");
    return int(n);
  }

 private:
  Communicator() {
    if (!launched_by_mpi()) return;
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    uses_mpi_ = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  // Open MPI's mpirun, PMIx launchers (srun, prterun) and MPICH's hydra set these.
  static bool launched_by_mpi() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
      if (std::getenv(name)) return true;
    return false;
  }
  template <class T>
  void all_reduce(std::span<T> data, MPI_Op op) const {
    if (size_ > 1)
      check(MPI_Allreduce(MPI_IN_PLACE, data.data(), count(data.size()), mpi_type<T>(), op, MPI_COMM_WORLD),
            "MPI_Allreduce");
  }

  bool uses_mpi_ = false;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace tapegrad::dist
