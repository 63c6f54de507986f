#pragma once
/// \file
/// Runs one child process asynchronously on an Asio executor: the `exec`
/// probe's plugins and `exec` remediations. Nothing here blocks the
/// loop: output is read through pipes, the exit is seen through a pidfd (or,
/// where pidfd_open is missing, e.g. under some qemu-user builds, SIGCHLD
/// and waitid(WNOHANG)). Boost 1.74's signal_set installs its handler without
/// SA_RESTART, so in that fallback other threads' blocking calls may see EINTR.
///
/// The child:
///  - is started with posix_spawn from an argv, never through a shell;
///  - gets a minimal environment, not the agent's: PATH (kDefaultPath) and
///    LANG=C (so plugins print numbers with a '.' and messages in English),
///    with ProcessSpec::env merged over them;
///  - has stdin on /dev/null, stdout and stderr on pipes, and no other fd
///    (every fd above 2 is closed in the child; ours are O_CLOEXEC too);
///  - gets default signal dispositions and an empty signal mask (the agent
///    ignores SIGPIPE; a plugin must not inherit that);
///  - leads a process group of its own, so that on timeout or cancel() the
///    whole group — grandchildren too — gets SIGKILL;
///  - and is contained with everything it starts, also what leaves the group
///    or the session (setsid, a double fork): in a cgroup of its own where
///    this process may make cgroups, else tracked by this process as their
///    child subreaper (os/containment.h, docs/PROBES.md). The end of the
///    run, however it ends, kills every process of it.
///
/// When the direct child exits, the runner waits up to ProcessSpec::eof_grace
/// for both pipes to reach EOF (a grandchild may still hold them open), then
/// SIGKILLs the group and reaps the child. The child is never left a zombie.

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/duration.h"

namespace storewatch::os {

/// PATH of the child's environment unless ProcessSpec::env sets its own.
inline constexpr std::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run.
struct ProcessSpec {
  /// argv[0] is an absolute path, or a name without '/' looked up on the
  /// child's PATH. Relative paths with a '/' are taken from the working dir.
  std::vector<std::string> argv;
  /// Merged over the minimal environment (PATH, LANG=C).
  std::map<std::string, std::string> env;
  /// Empty: the agent's working directory.
  std::filesystem::path working_dir;
  /// 0: none (the caller cancels). Otherwise the whole group is killed after
  /// this long and the outcome is Outcome::timed_out.
  Millis timeout{0};
  /// Bytes kept of stdout and of stderr each; the rest is read and dropped.
  std::size_t output_cap = 64 * 1024;
  /// Bytes read from one stream, kept or dropped, before the whole group is
  /// killed (Outcome::flooded): a child printing 1 GB costs the loop no more
  /// than reading this much.
  std::size_t drain_limit = 1024 * 1024;
  /// How long to wait for EOF on the pipes after the direct child exited.
  Millis eof_grace{250};
};

/// How a run ended.
struct ProcessResult {
  enum class Outcome {
    exited,        ///< exit_code is set
    signalled,     ///< killed by `signal` (not by us)
    timed_out,     ///< we killed the group after ProcessSpec::timeout
    flooded,       ///< we killed the group: it wrote more than ProcessSpec::drain_limit
    spawn_failed,  ///< never ran: see spawn_error and error
  };
  enum class SpawnError { none, not_found, not_executable, exec_format, other };

  Outcome outcome = Outcome::spawn_failed;
  int exit_code = -1;
  int signal = 0;
  SpawnError spawn_error = SpawnError::none;
  /// Why the spawn failed, in words ("/x/y: not found").
  std::string error;
  std::string out;  ///< the first output_cap bytes of stdout
  std::string err;  ///< the first output_cap bytes of stderr
  bool out_truncated = false;
  bool err_truncated = false;
  pid_t pid = -1;
  std::chrono::microseconds elapsed{0};

  /// One line for a log or a message: "exited with code 2", "killed by
  /// signal 9 (KILL)", "timed out after 3s", or the spawn error.
  std::string describe() const;
};

/// A handle on a running child. Copies share the child. Dropping every handle
/// is safe: the run keeps itself alive until the child is reaped and still
/// calls `done`.
class Process {
 public:
  using Done = std::function<void(ProcessResult)>;

  /// Starts `spec.argv`. `done` is called exactly once on `executor` (never
  /// from inside start()), unless cancel() is called first.
  static Process start(const boost::asio::any_io_executor& executor, ProcessSpec spec, Done done);

  Process() = default;

  /// SIGKILLs the whole process group, closes the pipes and reaps the child
  /// (at once if it is already gone, else as soon as the kernel reports its
  /// exit); `done` is not called. Safe to call more than once, after
  /// completion, or on an empty handle.
  void cancel();

  /// The child's pid (and process group id), or -1 if there is none.
  pid_t pid() const;

  struct State;

 private:
  explicit Process(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

/// For tests, and for checking a qemu-user build: ignore pidfd_open and see
/// exits through SIGCHLD and waitid(WNOHANG), as when pidfd_open is missing.
void use_sigchld_for_exits(bool on);

/// How runs are kept together so that their end kills all their processes.
enum class Containment {
  cgroup,   ///< each run in a cgroup of its own, killed with cgroup.kill
  tracked,  ///< this process is a child subreaper; runs carry STOREWATCH_RUN
};

/// The mechanism runs get (found out on first use: cgroup where this
/// process's cgroup v2 directory lets it make cgroups, else tracked).
Containment containment();
/// The same in words, for a log line or `doctor`.
std::string containment_description();

/// For tests: find the mechanism again, never cgroups with `tracked`.
/// Becoming tracked makes this process a child subreaper; any call undoes
/// that first.
void force_containment(std::optional<Containment> mode);

}  // namespace storewatch::os
