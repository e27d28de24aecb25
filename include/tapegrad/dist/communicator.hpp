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
//   barrier                every rank has arrived at `what` (against the deadline).
//   gather_failures        every rank says whether it failed, and why; rank 0 learns
//                          all of it (a job checks its inputs together before step 1).
//   abort                  ends the whole job with an exit code (MPI_Abort).
//   set_deadline           a collective that has not completed `seconds` after this rank
//                          entered it ends the job (see "Deadline" below).
//   wait                   waits for a request of a non-blocking collective, against the deadline;
//   wait_for               the same for a condition (a collective made of point-to-point steps).
//   host(rank)             the host name a rank runs on.
//
// Deadline. Every collective here is non-blocking underneath (MPI_Ibcast, MPI_Iallreduce,
// ...) and waited for by polling MPI_Test, so a rank that never arrives (stopped, hung,
// or cut off by a dead link: TCP alone would retry for many minutes) cannot hold the
// others forever. When a wait passes the deadline, the rank tells every other rank that
// it is waiting, over a communicator of its own (point to point), and listens for as
// long (a grace of half the deadline, 1 to 5 s): the ranks it hears from arrived, the
// others did not. The lowest rank that arrived is the reporter. The handler given to
// set_deadline then runs on each waiting rank with what was learnt (Stall), and the job
// ends: MPI_Abort(1) at once on the reporter, after the grace on the others (so that the
// reporter's message comes first). Without a deadline (0, the default) a wait is
// MPI_Wait. The deadline must exceed the longest time one rank can work between two
// collectives while the others wait (a step, an evaluation, rank 0's checkpoint save).
#pragma once

#include "../core/error.hpp"

#include <mpi.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
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

// What a rank learnt when a collective passed the deadline (see the top of the file).
struct Stall {
  std::string collective;    // what was waited for: "MPI_Iallreduce", or the caller's name for it
  double seconds = 0;        // the deadline
  std::vector<int> missing;  // the ranks that did not arrive, ascending (may be empty)
  std::string missing_text;  // "rank 1 (host b)", "ranks 1 (host b), 3 (host c)"
  bool reporter = false;     // this rank is the lowest that arrived: it says what happened
  // "rank 1 (host b) did not arrive at the gradient all-reduce within 30 s"
  std::string describe() const {
    char deadline[32];
    std::snprintf(deadline, sizeof deadline, " within %g s", seconds);
    const std::string within = deadline;
    if (missing.empty())
      return "every rank was waiting in " + collective + within + " (the ranks disagree on what to do)";
    return missing_text + " did not arrive at " + collective + within + " (stopped, hung, or cut off from the others)";
  }
};

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
    if (size_ == 1) return;
    MPI_Request request;
    check(MPI_Ibcast(data.data(), count(data.size()), mpi_type<T>(), root, MPI_COMM_WORLD, &request), "MPI_Ibcast");
    wait(request, "a broadcast from rank " + std::to_string(root));
  }
  // Returns when every rank has called barrier; `what` names the point in a Stall.
  void barrier(const std::string& what) const {
    if (size_ == 1) return;
    MPI_Request request;
    check(MPI_Ibarrier(MPI_COMM_WORLD, &request), "MPI_Ibarrier");
    wait(request, what);
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
    MPI_Request request;
    check(MPI_Igather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD, &request), "MPI_Igather");
    wait(request, "the gathering of the ranks' errors");
    std::string all;
    if (is_root()) {
      for (int r = 0, at = 0; r < size_; at += lengths[r++]) offsets[r] = at;
      all.resize(std::size_t(offsets.back() + lengths.back()));
    }
    check(MPI_Igatherv(message.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
                       MPI_COMM_WORLD, &request),
          "MPI_Igatherv");
    wait(request, "the gathering of the ranks' errors");
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

  // From now on a collective not complete `seconds` after this rank entered it ends the
  // job (0: wait forever), after `on_stall` ran on every rank that was waiting (it
  // should print describe() on the reporter). Call it on every rank alike.
  void set_deadline(double seconds, std::function<void(const Stall&)> on_stall = {}) {
    if (!(seconds >= 0))
      throw std::invalid_argument("Communicator::set_deadline: seconds must be >= 0, got " + std::to_string(seconds));
    deadline_s_ = seconds;
    on_stall_ = std::move(on_stall);
  }
  double deadline() const { return deadline_s_; }

  // Waits for `request` (of a non-blocking collective on this communicator), against the
  // deadline; `what` names it in the Stall.
  void wait(MPI_Request& request, const std::string& what) const {
    if (deadline_s_ <= 0) {
      check(MPI_Wait(&request, MPI_STATUS_IGNORE), "MPI_Wait");
      return;
    }
    wait_for(
        [&] {
      int done = 0;
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      return done != 0;
        },
        what);
  }
  // Calls `done` (which tests requests, and may start more) until it returns true, against
  // the deadline as wait() does.
  template <class Done>
  void wait_for(Done&& done, const std::string& what) const {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto deadline =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(deadline_s_));
    for (unsigned polls = 1;; ++polls) {
      if (done()) return;
      if (polls % 64 != 0) continue;  // the clock every 64 polls
      const auto now = Clock::now();
      if (deadline_s_ > 0 && now > deadline) stalled(what);
      // Past the first millisecond the others are late: poll less, so that a waiting
      // rank leaves the CPU to the ones still working (MPI_Wait yields too, when oversubscribed).
      if (now - start > std::chrono::milliseconds(1)) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  // The host rank `r` runs on (MPI_Get_processor_name, gathered at start).
  const std::string& host(int r) const { return hosts_.at(std::size_t(r)); }

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
    if (n > std::size_t(INT32_MAX))
      throw ShapeError("MPI: a message of " + std::to_string(n) + " elements is too long (at most 2^31 - 1)");
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
    check(MPI_Comm_dup(MPI_COMM_WORLD, &stall_comm_), "MPI_Comm_dup");
    char name[MPI_MAX_PROCESSOR_NAME] = {};
    int length = 0;
    MPI_Get_processor_name(name, &length);
    std::vector<char> names(std::size_t(size_) * MPI_MAX_PROCESSOR_NAME);
    check(MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                        MPI_COMM_WORLD),
          "MPI_Allgather");
    hosts_.clear();
    for (int r = 0; r < size_; ++r) hosts_.emplace_back(names.data() + std::size_t(r) * MPI_MAX_PROCESSOR_NAME);
  }

  // A wait passed the deadline: learn who is waiting too (see the top of the file), let
  // the handler speak, end the job.
  [[noreturn]] void stalled(const std::string& what) const {
    using Clock = std::chrono::steady_clock;
    constexpr int kTag = 7001;
    const int mine = 1;
    std::vector<int> heard(std::size_t(size_), 0);
    std::vector<MPI_Request> sends, receives;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      sends.emplace_back();
      MPI_Isend(&mine, 1, MPI_INT, r, kTag, stall_comm_, &sends.back());
      receives.emplace_back();
      MPI_Irecv(&heard[std::size_t(r)], 1, MPI_INT, r, kTag, stall_comm_, &receives.back());
    }
    const double grace_s = std::clamp(deadline_s_ / 2, 1.0, 5.0);
    const auto until =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(grace_s));
    for (int all = 0; !all && Clock::now() < until;) {
      MPI_Testall(int(receives.size()), receives.data(), &all, MPI_STATUSES_IGNORE);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    Stall stall{what, deadline_s_, {}, "", false};
    int lowest_arrived = rank_;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_ || heard[std::size_t(r)]) {
        lowest_arrived = std::min(lowest_arrived, r);
        continue;
      }
      stall.missing.push_back(r);
      stall.missing_text += (stall.missing_text.empty() ? "" : ", ") + std::to_string(r) + " (host " + host(r) + ")";
    }
    stall.missing_text = (stall.missing.size() > 1 ? "ranks " : "rank ") + stall.missing_text;
    stall.reporter = lowest_arrived == rank_;
    if (on_stall_)
      on_stall_(stall);
    else if (stall.reporter)
      std::fprintf(stderr, "tapegrad::dist: rank %d: %s\n", rank_, stall.describe().c_str());
    std::fflush(stderr);
    if (!stall.reporter) std::this_thread::sleep_for(std::chrono::duration<double>(grace_s));
    // A rank on another host that did not arrive may be cut off (a dead link): then no
    // message reaches its daemon, and the launcher, which MPI_Abort asks to end the job,
    // waits for it until TCP gives up (many minutes). So the local launcher (mpirun, or
    // the daemon it started here) is told to end too: each side of the cut ends its own.
    if (std::any_of(stall.missing.begin(), stall.missing.end(), [&](int r) { return host(r) != host(rank_); }))
      end_local_launcher();
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

  // Ends this process's parent if it is Open MPI's or PMIx's launcher or daemon: SIGTERM
  // twice, 0.2 s apart (Open MPI's mpirun starts an orderly abort on the first, which
  // waits for every daemon, and exits on the second, killing its local processes). This
  // process ignores SIGTERM meanwhile; the caller then ends it.
  static void end_local_launcher() {
#ifdef __linux__
    const pid_t parent = ::getppid();
    std::FILE* file = std::fopen(("/proc/" + std::to_string(parent) + "/comm").c_str(), "r");
    if (!file) return;
    char name[64] = {};
    const bool read = std::fgets(name, sizeof name, file) != nullptr;
    std::fclose(file);
    const std::string command = read ? std::string(name, std::strcspn(name, "\n")) : "";
    const char* launchers[] = {"mpirun", "mpiexec", "orterun", "orted", "prterun", "prted"};
    if (std::none_of(std::begin(launchers), std::end(launchers), [&](const char* l) { return command == l; })) return;
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGINT, SIG_IGN);
    for (int time = 0; time < 2; ++time) {
      ::kill(parent, SIGTERM);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
#endif
  }
  // Open MPI's mpirun, PMIx launchers (srun, prterun) and MPICH's hydra set these.
  static bool launched_by_mpi() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
      if (std::getenv(name)) return true;
    return false;
  }
  template <class T>
  void all_reduce(std::span<T> data, MPI_Op op) const {
    if (size_ == 1) return;
    MPI_Request request;
    check(MPI_Iallreduce(MPI_IN_PLACE, data.data(), count(data.size()), mpi_type<T>(), op, MPI_COMM_WORLD, &request),
          "MPI_Iallreduce");
    wait(request, "an all-reduce");
  }

  bool uses_mpi_ = false;
  int rank_ = 0;
  int size_ = 1;
  std::vector<std::string> hosts_{"localhost"};
  MPI_Comm stall_comm_ = MPI_COMM_NULL;  // the deadline's point-to-point messages, apart from the job's
  double deadline_s_ = 0;
  std::function<void(const Stall&)> on_stall_;
};

}  // namespace tapegrad::dist
