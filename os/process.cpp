#include "os/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>
#include <variant>

#include "os/containment.h"

namespace storewatch::os {

namespace asio = boost::asio;
using std::chrono::steady_clock;

namespace {

std::atomic<bool> g_sigchld_only{false};

/// How long the end of a run waits for what it killed to be gone (reaped,
/// its cgroup removed); what takes longer is tidied at a later run.
constexpr std::chrono::milliseconds kTidyPatience{50};

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

// An fd closed on scope exit unless released.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  ~OwnedFd() { reset(); }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  OwnedFd read, write;
};

bool make_pipe(Pipe& p) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  p.read.reset(fds[0]);
  p.write.reset(fds[1]);
  return true;
}

struct SpawnFailure {
  ProcessResult::SpawnError kind;
  std::string message;
};

// argv[0] as posix_spawn should get it: with a '/' as given (relative to
// the working dir), else the first executable match on the child's PATH.
// posix_spawnp would search the agent's PATH, not the child's.
std::variant<std::string, SpawnFailure> resolve(const std::string& name, const std::string& path,
                                                const std::filesystem::path& working_dir) {
  if (name.empty()) return SpawnFailure{ProcessResult::SpawnError::not_found, "empty command"};
  if (name.find('/') != std::string::npos) {
    // Checked here as well as by posix_spawn: under qemu-user, posix_spawn's
    // vfork is emulated by a fork and exec errors come back as exit 127.
    const std::filesystem::path file =
        name[0] == '/' || working_dir.empty() ? std::filesystem::path(name) : working_dir / name;
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        return SpawnFailure{ProcessResult::SpawnError::not_found,
                            fmt::format("{}: not found", name)};
      }
    } else if (!S_ISREG(st.st_mode) || ::access(file.c_str(), X_OK) != 0) {
      return SpawnFailure{ProcessResult::SpawnError::not_executable,
                          fmt::format("{}: not executable ({})", name,
                                      S_ISDIR(st.st_mode) ? "a directory" : "Permission denied")};
    }
    return name;
  }
  bool seen_not_executable = false;
  std::string_view dirs = path;
  while (true) {
    const auto colon = dirs.find(':');
    std::string_view dir = dirs.substr(0, colon);
    if (!dir.empty()) {
      std::string candidate = fmt::format("{}/{}", dir, name);
      struct stat st {};
      if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        seen_not_executable = true;
      }
    }
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  if (seen_not_executable) {
    return SpawnFailure{ProcessResult::SpawnError::not_executable,
                        fmt::format("{}: found on PATH but not executable", name)};
  }
  return SpawnFailure{ProcessResult::SpawnError::not_found,
                      fmt::format("{}: not found on PATH ({})", name, path)};
}

SpawnFailure spawn_failure(const std::string& file, int err) {
  using E = ProcessResult::SpawnError;
  switch (err) {
    case ENOENT: {
      struct stat st {};
      if (::stat(file.c_str(), &st) == 0) {
        return {E::not_found, fmt::format("{}: its interpreter (the #! line) was not found", file)};
      }
      return {E::not_found, fmt::format("{}: not found", file)};
    }
    case EACCES:
    case EPERM:
      return {E::not_executable, fmt::format("{}: not executable ({})", file, std::strerror(err))};
    case ENOEXEC:
      return {E::exec_format,
              fmt::format("{}: exec format error (not a binary for this machine and no #! line)",
                          file)};
    default: return {E::other, fmt::format("{}: cannot start: {}", file, std::strerror(err))};
  }
}

/// One output pipe being drained.
struct Stream {
  explicit Stream(const asio::any_io_executor& ex) : pipe(ex) {}
  asio::posix::stream_descriptor pipe;
  std::string kept;
  std::size_t total = 0;  ///< bytes read, kept or not
  bool truncated = false;
  bool eof = false;
  std::array<char, 16 * 1024> buffer{};
};

}  // namespace

void use_sigchld_for_exits(bool on) {
  g_sigchld_only = on;
}

std::string ProcessResult::describe() const {
  switch (outcome) {
    case Outcome::exited: return fmt::format("exited with code {}", exit_code);
    case Outcome::signalled:
      return fmt::format("killed by signal {} ({})", signal, signal_name(signal));
    case Outcome::timed_out:
      return fmt::format("timed out after {:.1f} s", static_cast<double>(elapsed.count()) / 1e6);
    case Outcome::flooded: return "stopped: it wrote more than 1 MB of output";
    case Outcome::spawn_failed: return error;
  }
  return error;
}

struct Process::State : std::enable_shared_from_this<State> {
  State(const asio::any_io_executor& ex, ProcessSpec s, Done d)
      : executor(ex),
        spec(std::move(s)),
        done(std::move(d)),
        out(ex),
        err(ex),
        deadline(ex),
        grace(ex) {}

  ~State() {
    // Only when the io_context goes away with the child still unreaped: it
    // has been (or is now) SIGKILLed, so this wait is short.
    if (pid > 0 && !reaped) {
      kill_run();
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      detail::note_child(pid, false);
      group = detail::RunGroup();
      detail::tidy(kTidyPatience);
    }
  }

  asio::any_io_executor executor;
  ProcessSpec spec;
  Done done;
  pid_t pid = -1;
  Stream out;
  Stream err;
  std::optional<asio::posix::stream_descriptor> pidfd;
  std::optional<asio::signal_set> sigchld;
  asio::steady_timer deadline;
  asio::steady_timer grace;
  steady_clock::time_point started;
  siginfo_t exit_info{};
  detail::RunGroup group;  // the run's cgroup, or how its processes are tracked
  bool exited = false;     // the direct child is a zombie (not reaped yet)
  bool reaped = false;
  bool timed_out = false;
  bool flooded = false;   // we killed the group for writing too much
  bool finished = false;  // done called or cancelled: no more results
  ProcessResult result;

  void spawn();
  void read(Stream& s);
  void watch_exit();
  bool peek_exit();
  void check_exit();
  void on_exit();
  void kill_run();
  void kill_group_and_reap();
  void close_all();
  void finish();
};

void Process::State::spawn() {
  started = steady_clock::now();
  std::map<std::string, std::string> env{{"PATH", std::string(kDefaultPath)}, {"LANG", "C"}};
  for (const auto& [k, v] : spec.env) env[k] = v;

  auto fail = [&](SpawnFailure f) {
    result.outcome = ProcessResult::Outcome::spawn_failed;
    result.spawn_error = f.kind;
    result.error = std::move(f.message);
    asio::post(executor, [self = shared_from_this()] { self->finish(); });
  };
  if (spec.argv.empty()) {
    fail({ProcessResult::SpawnError::not_found, "empty command"});
    return;
  }
  auto resolved = resolve(spec.argv[0], env["PATH"], spec.working_dir);
  if (auto* f = std::get_if<SpawnFailure>(&resolved)) {
    fail(std::move(*f));
    return;
  }
  const std::string file = std::get<std::string>(resolved);
  if (std::error_code ec;
      !spec.working_dir.empty() && !std::filesystem::is_directory(spec.working_dir, ec)) {
    fail({ProcessResult::SpawnError::other,
          fmt::format("working directory {}: not a directory", spec.working_dir.string())});
    return;
  }

  Pipe out_pipe, err_pipe;
  if (!make_pipe(out_pipe) || !make_pipe(err_pipe)) {
    fail({ProcessResult::SpawnError::other, fmt::format("pipe: {}", std::strerror(errno))});
    return;
  }

  // The run's containment first: in tracked mode its marker goes into the
  // environment. No tidy() may take the fresh child for an orphan meanwhile.
  auto spawning = detail::spawn_lock();
  group = detail::RunGroup::open();
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  auto make_envp = [&] {
    env_strings.clear();
    for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
    if (!group.marker().empty()) env_strings.push_back(group.marker());
    envp.clear();
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
  };
  make_envp();
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t child = -1;
  if (group.mode() == Containment::cgroup) {
    OwnedFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    detail::ChildPlan plan;
    plan.file = file.c_str();
    plan.argv = argv.data();
    plan.envp = envp.data();
    plan.stdin_fd = dev_null.get();
    plan.stdout_fd = out_pipe.write.get();
    plan.stderr_fd = err_pipe.write.get();
    plan.working_dir = spec.working_dir.empty() ? nullptr : spec.working_dir.c_str();
    const auto spawned = group.spawn(plan);
    if (spawned.unsupported) {
      group.use_tracking();
      make_envp();
    } else if (spawned.pid < 0) {
      fail(spawn_failure(file, spawned.exec_error));
      return;
    } else {
      child = spawned.pid;
    }
  }
  if (child < 0) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawnattr_init(&attr);
    ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_adddup2(&actions, out_pipe.write.get(), 1);
    ::posix_spawn_file_actions_adddup2(&actions, err_pipe.write.get(), 2);
    if (!spec.working_dir.empty()) {
      ::posix_spawn_file_actions_addchdir_np(&actions, spec.working_dir.c_str());
    }
    ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t mask, defaults;
    sigemptyset(&mask);
    sigfillset(&defaults);
    sigdelset(&defaults, SIGKILL);
    sigdelset(&defaults, SIGSTOP);
    ::posix_spawnattr_setsigmask(&attr, &mask);
    ::posix_spawnattr_setsigdefault(&attr, &defaults);
    ::posix_spawnattr_setpgroup(&attr, 0);
    ::posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    const int rc = ::posix_spawn(&child, file.c_str(), &actions, &attr, argv.data(), envp.data());
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      // glibc reports exec failures here and has reaped its helper child.
      fail(spawn_failure(file, rc));
      return;
    }
  }
  detail::note_child(child, true);
  spawning.unlock();
  pid = child;
  result.pid = child;
  result.outcome = ProcessResult::Outcome::exited;  // refined in finish()
  out_pipe.write.reset();
  err_pipe.write.reset();
  out.pipe.assign(out_pipe.read.release());
  err.pipe.assign(err_pipe.read.release());

  read(out);
  read(err);
  watch_exit();
  if (spec.timeout.count() > 0) {
    deadline.expires_after(spec.timeout);
    deadline.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->finished) return;
      if (self->exited) {
        self->finish();  // exited in time; only the pipes are still open
        return;
      }
      self->timed_out = true;
      self->kill_run();  // the exit watch reports and reaps
    });
  }
}

void Process::State::read(Stream& s) {
  s.pipe.async_read_some(
      asio::buffer(s.buffer),
      [self = shared_from_this(), &s](const boost::system::error_code& ec, std::size_t n) {
        if (self->finished) return;
        if (n > 0) {
          const std::size_t room =
              self->spec.output_cap - std::min(self->spec.output_cap, s.kept.size());
          s.kept.append(s.buffer.data(), std::min(n, room));
          if (n > room) s.truncated = true;
          s.total += n;
          if (s.total > self->spec.drain_limit && !self->flooded) {
            // Enough: reading on would only burn the loop's time.
            self->flooded = true;
            if (!self->reaped) self->kill_run();
          }
        }
        if (ec) {
          s.eof = true;
          if (self->exited && self->out.eof && self->err.eof) self->finish();
          return;
        }
        self->read(s);
      });
}

void Process::State::watch_exit() {
  if (!g_sigchld_only) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd >= 0) {
      pidfd.emplace(executor, fd);
      pidfd->async_wait(asio::posix::descriptor_base::wait_read,
                        [self = shared_from_this()](const boost::system::error_code& ec) {
                          if (ec) return;
                          self->check_exit();
                        });
      return;
    }
    // ENOSYS (old kernel, qemu-user) or a seccomp filter: use SIGCHLD.
  }
  if (!sigchld) sigchld.emplace(executor, SIGCHLD);
  // The child may have exited before the handler was installed: look first.
  check_exit();
}

bool Process::State::peek_exit() {
  if (exited || reaped) return true;
  siginfo_t info{};
  // WNOWAIT leaves the child a zombie: its pid, and so its process group id,
  // cannot be reused before we have killed the group.
  int rc = 0;
  do {
    rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0 && info.si_pid == pid) {
    exit_info = info;
    return true;
  }
  if (rc != 0) {
    // ECHILD: someone else reaped it (SIGCHLD ignored, a waitpid(-1)); its
    // pid may be reused already, so its group is not killed either.
    exit_info = {};
    reaped = true;
    detail::note_child(pid, false);
    return true;
  }
  return false;
}

void Process::State::check_exit() {
  if (peek_exit()) {
    on_exit();
    return;
  }
  // Not yet (a pidfd never says so early; SIGCHLD may be for another child).
  if (pidfd) {
    pidfd->async_wait(asio::posix::descriptor_base::wait_read,
                      [self = shared_from_this()](const boost::system::error_code& ec) {
                        if (ec) return;
                        self->check_exit();
                      });
  } else {
    sigchld->async_wait([self = shared_from_this()](const boost::system::error_code& ec, int) {
      if (ec) return;
      self->check_exit();
    });
  }
}

void Process::State::on_exit() {
  exited = true;
  if (finished) {  // cancelled: only the reaping was left
    kill_group_and_reap();
    close_all();
    return;
  }
  if (timed_out || (out.eof && err.eof)) {
    finish();
    return;
  }
  // A grandchild may hold the pipes open: give them a moment, then stop.
  grace.expires_after(spec.eof_grace);
  grace.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->finished) return;
    self->finish();
  });
}

void Process::State::kill_run() {
  if (pid <= 0) return;
  if (!reaped) ::kill(-pid, SIGKILL);
  group.kill(reaped ? -1 : pid);
}

void Process::State::kill_group_and_reap() {
  if (pid <= 0 || reaped) return;
  kill_run();
  if (!exited) return;  // reaped when the exit watch fires
  while (::waitpid(pid, nullptr, WNOHANG) < 0 && errno == EINTR) {
  }
  reaped = true;
  detail::note_child(pid, false);
}

void Process::State::close_all() {
  boost::system::error_code ignored;
  out.pipe.close(ignored);
  err.pipe.close(ignored);
  deadline.cancel();
  grace.cancel();
  if (reaped) {
    if (pidfd) pidfd->close(ignored);
    if (sigchld) sigchld->cancel(ignored);
    // The run is over: its cgroup goes, and what was killed of it is reaped.
    group = detail::RunGroup();
    detail::tidy(kTidyPatience);
  }
}

void Process::State::finish() {
  if (finished) return;
  finished = true;
  kill_group_and_reap();
  close_all();
  ProcessResult r = std::move(result);
  r.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - started);
  if (r.outcome != ProcessResult::Outcome::spawn_failed) {
    if (timed_out) {
      r.outcome = ProcessResult::Outcome::timed_out;
    } else if (flooded) {
      r.outcome = ProcessResult::Outcome::flooded;
    } else if (exit_info.si_code == CLD_EXITED) {
      r.outcome = ProcessResult::Outcome::exited;
      r.exit_code = exit_info.si_status;
    } else if (exit_info.si_code == CLD_KILLED || exit_info.si_code == CLD_DUMPED) {
      r.outcome = ProcessResult::Outcome::signalled;
      r.signal = exit_info.si_status;
    } else {
      r.outcome = ProcessResult::Outcome::spawn_failed;
      r.spawn_error = ProcessResult::SpawnError::other;
      r.error = "the exit status was lost (was SIGCHLD ignored?)";
    }
    r.out = std::move(out.kept);
    r.err = std::move(err.kept);
    r.out_truncated = out.truncated;
    r.err_truncated = err.truncated;
  }
  auto d = std::move(done);
  done = nullptr;
  if (d) d(std::move(r));
}

Process Process::start(const asio::any_io_executor& executor, ProcessSpec spec, Done done) {
  auto state = std::make_shared<State>(executor, std::move(spec), std::move(done));
  state->spawn();
  return Process(std::move(state));
}

void Process::cancel() {
  if (!state_ || state_->finished) return;
  state_->finished = true;
  state_->done = nullptr;
  state_->kill_group_and_reap();
  // SIGKILL may already have landed; if not, the pending exit watch reaps.
  if (state_->pid > 0 && state_->peek_exit()) state_->on_exit();
  state_->close_all();
}

pid_t Process::pid() const {
  return state_ ? state_->pid : -1;
}

}  // namespace storewatch::os
