#include "os/containment.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "base/log.h"

namespace storewatch::os::detail {
namespace {

using std::chrono::steady_clock;

/// Passes over a run's processes when killing them: each one kills what
/// the last one saw, then looks again for what forked meanwhile.
constexpr int kKillPasses = 8;

/// Everything the runs of this process share.
struct Shared {
  std::mutex mu;        ///< guards the members below
  std::mutex spawn_mu;  ///< spawn_lock()
  bool detected = false;
  std::optional<Containment> forced;
  Containment mode = Containment::tracked;
  std::string base;  ///< the cgroup runs get theirs in (cgroup mode)
  bool subreaper = false;
  bool warned = false;
  std::uint64_t next_run = 0;
  std::set<pid_t> children;            ///< direct children of runs, not reaped
  std::set<pid_t> to_reap;             ///< killed processes that end as our zombies
  std::vector<std::string> to_remove;  ///< run cgroups to remove once empty
};

Shared& shared() {
  static auto* s = new Shared;  // never destroyed: runs may end during exit
  return *s;
}

std::optional<std::string> read_small(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buffer[4096];
  ssize_t n = 0;
  while (out.size() < (std::size_t{1} << 20) && (n = ::read(fd, buffer, sizeof buffer)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    out.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (n < 0) return std::nullopt;
  return out;
}

bool write_small(const std::string& path, std::string_view text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  }
  return out;
}

/// This process's cgroup v2 directory: /proc/self/cgroup's "0::" path under
/// the cgroup2 mount of /proc/self/mountinfo.
std::optional<std::string> own_cgroup_dir() {
  const auto cgroups = read_small("/proc/self/cgroup");
  const auto mounts = read_small("/proc/self/mountinfo");
  if (!cgroups || !mounts) return std::nullopt;
  std::optional<std::string> path;
  for (std::string_view line : lines_of(*cgroups)) {
    if (line.substr(0, 3) == "0::") path = std::string(line.substr(3));
  }
  if (!path) return std::nullopt;
  for (std::string_view line : lines_of(*mounts)) {
    const auto dash = line.find(" - ");
    if (dash == std::string_view::npos || line.substr(dash + 3, 8) != "cgroup2 ") continue;
    std::istringstream fields{std::string(line.substr(0, dash))};
    std::string id, parent, device, root, mount_point;
    if (!(fields >> id >> parent >> device >> root >> mount_point)) continue;
    if (root != "/" && path->compare(0, root.size(), root) != 0) continue;
    const std::string inside = root == "/" ? *path : path->substr(root.size());
    return inside == "/" || inside.empty() ? mount_point : mount_point + inside;
  }
  return std::nullopt;
}

bool can_make_cgroups_in(const std::string& dir) {
  const std::string trial = fmt::format("{}/storewatch-check-{}", dir, ::getpid());
  if (::mkdir(trial.c_str(), 0755) != 0) return false;
  ::rmdir(trial.c_str());
  return true;
}

void become_subreaper(Shared& s) {
  if (!s.subreaper && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0) s.subreaper = true;
}

/// cgroup.kill kills every member at once, forks in flight included (Linux
/// 5.14). Before it: freeze, kill each member, thaw.
void kill_cgroup(const std::string& dir) {
  if (write_small(dir + "/cgroup.kill", "1")) return;
  const bool frozen = write_small(dir + "/cgroup.freeze", "1");
  for (int pass = 0; pass < kKillPasses; ++pass) {
    const auto procs = read_small(dir + "/cgroup.procs");
    if (!procs || procs->empty()) break;
    std::istringstream in(*procs);
    for (pid_t pid = 0; in >> pid;) ::kill(pid, SIGKILL);
  }
  if (frozen) write_small(dir + "/cgroup.freeze", "0");
}

/// Run cgroups left in `dir` by a storewatch that is gone (kill -9, a
/// crash; under systemd the unit's stop does this): their processes are
/// killed and the cgroups removed. A live process's are never touched.
void clear_leftovers(Shared& s, const std::string& dir) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    static constexpr std::string_view kPrefix = "storewatch-run-";
    if (name.compare(0, kPrefix.size(), kPrefix) != 0) continue;
    const std::string rest = name.substr(kPrefix.size());
    const auto pid = static_cast<pid_t>(std::atol(rest.substr(0, rest.find('-')).c_str()));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    const std::string path = it->path().string();
    kill_cgroup(path);
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) s.to_remove.push_back(path);
  }
}

void detect(Shared& s) {
  if (s.detected) return;
  s.detected = true;
  if (s.forced != Containment::tracked) {
    if (auto dir = own_cgroup_dir(); dir && can_make_cgroups_in(*dir)) {
      s.mode = Containment::cgroup;
      s.base = *dir;
      clear_leftovers(s, *dir);
      return;
    }
  }
  s.mode = Containment::tracked;
  become_subreaper(s);
}

struct ProcStat {
  pid_t ppid = 0;
  char state = '?';
  unsigned long long start = 0;  ///< since boot, in clock ticks: with the pid, who it is
};

std::optional<ProcStat> read_stat(pid_t pid) {
  const auto text = read_small(fmt::format("/proc/{}/stat", pid));
  if (!text) return std::nullopt;
  const auto paren = text->rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream in(text->substr(paren + 1));
  ProcStat st;
  std::string skip;
  in >> st.state >> st.ppid;
  for (int field = 5; field <= 21; ++field) in >> skip;  // pgrp .. itrealvalue
  in >> st.start;
  if (!in) return std::nullopt;
  return st;
}

/// Every process /proc shows, with its parent.
std::map<pid_t, ProcStat> all_processes() {
  std::map<pid_t, ProcStat> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    if (auto st = read_stat(pid)) out.emplace(pid, *st);
  }
  return out;
}

/// This process's children, from /proc/self/task/*/children; nullopt where
/// the kernel has no such file (CONFIG_PROC_CHILDREN).
std::optional<std::vector<pid_t>> own_children() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/task", ec), end; !ec && it != end;
       it.increment(ec)) {
    const auto text = read_small((it->path() / "children").string());
    if (!text) return std::nullopt;
    std::istringstream in(*text);
    for (pid_t pid = 0; in >> pid;) out.push_back(pid);
  }
  if (ec) return std::nullopt;
  return out;
}

/// Whether `pid`'s environment has the entry `marker` ("NAME=value").
bool carries(pid_t pid, std::string_view marker) {
  const auto env = read_small(fmt::format("/proc/{}/environ", pid));
  if (!env) return false;
  std::string_view rest = *env;
  while (!rest.empty()) {
    const auto end = rest.find('\0');
    if (rest.substr(0, end) == marker) return true;
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
  return false;
}

/// SIGKILL to the process `pid` that started at `start`, never to another
/// that got its pid meanwhile (a pidfd pins it while we look again).
bool kill_exactly(pid_t pid, unsigned long long start) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    if (errno != ENOSYS) return false;  // gone already
    return ::kill(pid, SIGKILL) == 0;
  }
  const auto now = read_stat(pid);
  const bool same = now && now->start == start;
  const bool sent = same && ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0) == 0;
  ::close(fd);
  return sent;
}

/// Tracked mode: the descendants of `child` (while it is ours), and every
/// orphan reparented to us that carries `marker`, with their descendants.
void kill_tracked(pid_t child, const std::string& marker) {
  Shared& s = shared();
  const pid_t self = ::getpid();
  for (int pass = 0; pass < kKillPasses; ++pass) {
    std::set<pid_t> runs;
    {
      std::lock_guard lock(s.mu);
      runs = s.children;
    }
    // The common case, cheaply: the child has exited and left no orphan.
    if (child <= 0 || read_stat(child).value_or(ProcStat{}).state == 'Z') {
      if (auto mine = own_children()) {
        bool orphan = false;
        for (pid_t pid : *mine) orphan = orphan || (pid != child && runs.count(pid) == 0);
        if (!orphan) return;
      }
    }
    const auto procs = all_processes();
    std::vector<pid_t> roots;
    if (child > 0 && procs.count(child) != 0) roots.push_back(child);
    for (const auto& [pid, st] : procs) {
      if (st.ppid == self && pid != child && runs.count(pid) == 0 && st.state != 'Z' &&
          carries(pid, marker)) {
        roots.push_back(pid);
      }
    }
    std::multimap<pid_t, pid_t> kids;
    for (const auto& [pid, st] : procs) kids.emplace(st.ppid, pid);
    std::vector<pid_t> victims;
    std::set<pid_t> seen;
    for (std::size_t i = 0; i < roots.size(); ++i) {
      if (!seen.insert(roots[i]).second) continue;
      victims.push_back(roots[i]);
      auto [first, last] = kids.equal_range(roots[i]);
      for (auto it = first; it != last; ++it) roots.push_back(it->second);
    }
    int signalled = 0;
    for (pid_t pid : victims) {
      const ProcStat& st = procs.at(pid);
      if (pid == self || st.state == 'Z' || runs.count(pid) != 0) continue;
      if (kill_exactly(pid, st.start)) {
        ++signalled;
        // Its parents die too: as our subreaper, it ends as our zombie.
        std::lock_guard lock(s.mu);
        if (s.subreaper) s.to_reap.insert(pid);
      }
    }
    // The direct child is ours (its pid stays its own until it is reaped).
    if (child > 0) ::kill(child, SIGKILL);
    if (signalled == 0) return;
  }
}

bool dup_onto(int fd, int target) {
  if (fd == target) return ::fcntl(fd, F_SETFD, 0) == 0;
  return ::dup2(fd, target) == target;
}

/// The kernel's struct sigaction (rt_sigaction) on x86-64, arm64 and arm:
/// what glibc's and the sanitizers' wrappers would fill in.
struct KernelSigaction {
  void* handler = nullptr;  // SIG_DFL
  unsigned long flags = 0;
  void* restorer = nullptr;
  unsigned long mask[8 / sizeof(unsigned long)] = {};
};

/// The forked child, a copy of this threaded process: only system calls
/// until execve (no allocation, no lock, no library's signal wrapper), as
/// posix_spawn's child does.
[[noreturn]] void run_child(const ChildPlan& p, int error_fd) noexcept {
  const KernelSigaction defaults;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) {
      ::syscall(SYS_rt_sigaction, sig, &defaults, nullptr, sizeof defaults.mask);
    }
  }
  bool ok = ::setpgid(0, 0) == 0 && dup_onto(p.stdin_fd, 0) && dup_onto(p.stdout_fd, 1) &&
            dup_onto(p.stderr_fd, 2) && (p.working_dir == nullptr || ::chdir(p.working_dir) == 0);
  if (ok) {
#ifdef SYS_close_range
    if (error_fd > 3) ::syscall(SYS_close_range, 3U, static_cast<unsigned>(error_fd - 1), 0U);
    ::syscall(SYS_close_range, static_cast<unsigned>(error_fd + 1), ~0U, 0U);
#endif
    const unsigned long none[8 / sizeof(unsigned long)] = {};
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, none, nullptr, sizeof none);
    ::execve(p.file, p.argv, p.envp);
  }
  const int error = errno;
  [[maybe_unused]] const ssize_t n = ::write(error_fd, &error, sizeof error);
  ::_exit(127);
}

}  // namespace

RunGroup RunGroup::open() {
  Shared& s = shared();
  std::lock_guard lock(s.mu);
  detect(s);
  RunGroup g;
  const std::uint64_t n = ++s.next_run;
  if (s.mode == Containment::cgroup) {
    std::string dir = fmt::format("{}/storewatch-run-{}-{}", s.base, ::getpid(), n);
    if (::mkdir(dir.c_str(), 0755) == 0) {
      const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd >= 0) {
        g.mode_ = Containment::cgroup;
        g.cgroup_ = std::move(dir);
        g.cgroup_fd_ = fd;
        return g;
      }
      ::rmdir(dir.c_str());
    }
    // No cgroup for this one (the cgroup.max.descendants limit, say): tracked.
  }
  become_subreaper(s);
  g.mode_ = Containment::tracked;
  g.marker_ = fmt::format("STOREWATCH_RUN={}.{}", ::getpid(), n);
  return g;
}

RunGroup::RunGroup(RunGroup&& other) noexcept
    : mode_(other.mode_),
      cgroup_(std::exchange(other.cgroup_, {})),
      cgroup_fd_(std::exchange(other.cgroup_fd_, -1)),
      marker_(std::move(other.marker_)) {}

RunGroup& RunGroup::operator=(RunGroup&& other) noexcept {
  if (this != &other) {
    close();
    mode_ = other.mode_;
    cgroup_ = std::exchange(other.cgroup_, {});
    cgroup_fd_ = std::exchange(other.cgroup_fd_, -1);
    marker_ = std::move(other.marker_);
  }
  return *this;
}

RunGroup::~RunGroup() {
  close();
}

void RunGroup::close() {
  if (cgroup_fd_ >= 0) ::close(cgroup_fd_);
  cgroup_fd_ = -1;
  if (cgroup_.empty()) return;
  if (::rmdir(cgroup_.c_str()) != 0 && errno != ENOENT) {
    Shared& s = shared();
    std::lock_guard lock(s.mu);
    s.to_remove.push_back(cgroup_);
  }
  cgroup_.clear();
}

RunGroup::Spawned RunGroup::spawn(const ChildPlan& plan) {
  Spawned out;
  int error_pipe[2];
  int go_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
    out.exec_error = errno;
    return out;
  }
  if (::pipe2(go_pipe, O_CLOEXEC) != 0) {
    out.exec_error = errno;
    ::close(error_pipe[0]);
    ::close(error_pipe[1]);
    return out;
  }
  // No handler of ours may run in the child before execve: block every
  // signal across the fork; the child sets them to default, then unblocks.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Nothing of its own runs before it is in the run's cgroup: not even a
    // fork can happen outside it.
    char go = 0;
    ssize_t n = 0;
    do {
      n = ::read(go_pipe[0], &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(127);
    run_child(plan, error_pipe[1]);
  }
  const int fork_error = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(go_pipe[0]);
  ::close(error_pipe[1]);
  auto give_up = [&] {
    ::close(go_pipe[1]);
    ::close(error_pipe[0]);
  };
  if (pid < 0) {
    give_up();
    out.exec_error = fork_error;
    return out;
  }
  if (!write_small(cgroup_ + "/cgroup.procs", std::to_string(pid))) {
    // This cgroup takes no processes from us (permissions, a cgroup with
    // controllers in its subtree): the child goes without having run.
    ::kill(pid, SIGKILL);
    give_up();
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    out.unsupported = true;
    return out;
  }
  const bool went = ::write(go_pipe[1], "g", 1) == 1;
  ::close(go_pipe[1]);
  int child_error = went ? 0 : EPIPE;
  ssize_t n = 0;
  do {
    n = ::read(error_pipe[0], &child_error, sizeof child_error);
  } while (n < 0 && errno == EINTR);
  ::close(error_pipe[0]);
  if (!went || n == static_cast<ssize_t>(sizeof child_error)) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    out.exec_error = child_error;
    return out;
  }
  out.pid = pid;
  return out;
}

void RunGroup::use_tracking() {
  close();
  Shared& s = shared();
  std::lock_guard lock(s.mu);
  if (s.mode == Containment::cgroup && !s.warned) {
    s.warned = true;
    log::warn(
        "plugins: cannot start them in cgroups of their own under {}; tracking their "
        "processes as a child subreaper instead",
        s.base);
  }
  s.mode = Containment::tracked;
  become_subreaper(s);
  mode_ = Containment::tracked;
  marker_ = fmt::format("STOREWATCH_RUN={}.{}", ::getpid(), ++s.next_run);
}

void RunGroup::kill(pid_t child) {
  if (mode_ == Containment::cgroup) {
    kill_cgroup(cgroup_);
  } else {
    kill_tracked(child, marker_);
  }
}

void note_child(pid_t pid, bool alive) {
  Shared& s = shared();
  std::lock_guard lock(s.mu);
  if (alive) {
    s.children.insert(pid);
  } else {
    s.children.erase(pid);
  }
}

std::unique_lock<std::mutex> spawn_lock() {
  return std::unique_lock<std::mutex>(shared().spawn_mu);
}

void tidy(std::chrono::milliseconds patience) {
  Shared& s = shared();
  const auto deadline = steady_clock::now() + patience;
  while (true) {
    bool left = false;
    {
      std::lock_guard spawning(s.spawn_mu);
      std::lock_guard lock(s.mu);
      for (auto it = s.to_reap.begin(); it != s.to_reap.end();) {
        siginfo_t info{};
        const int rc = ::waitid(P_PID, static_cast<id_t>(*it), &info, WEXITED | WNOHANG);
        // Reaped; or not our child (anymore) and gone.
        const bool done = (rc == 0 && info.si_pid == *it) ||
                          (rc != 0 && errno == ECHILD && ::kill(*it, 0) != 0 && errno == ESRCH);
        it = done ? s.to_reap.erase(it) : std::next(it);
      }
      // A subreaper gets the orphans of every descendant: those no run
      // claimed (a process that cleared its environment) are reaped here
      // once they exit.
      if (s.subreaper) {
        if (auto mine = own_children()) {
          for (pid_t pid : *mine) {
            if (s.children.count(pid) != 0) continue;
            if (read_stat(pid).value_or(ProcStat{}).state != 'Z') continue;
            siginfo_t info{};
            ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG);
          }
        }
      }
      std::erase_if(s.to_remove, [](const std::string& dir) {
        return ::rmdir(dir.c_str()) == 0 || errno == ENOENT;
      });
      left = !s.to_reap.empty() || !s.to_remove.empty();
    }
    if (!left || steady_clock::now() >= deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace storewatch::os::detail

namespace storewatch::os {

Containment containment() {
  auto& s = detail::shared();
  std::lock_guard lock(s.mu);
  detail::detect(s);
  return s.mode;
}

std::string containment_description() {
  auto& s = detail::shared();
  std::lock_guard lock(s.mu);
  detail::detect(s);
  if (s.mode == Containment::cgroup) return fmt::format("a cgroup of its own under {}", s.base);
  return "its process tree (no cgroup to delegate: the daemon is their child subreaper, each "
         "run's processes carry STOREWATCH_RUN)";
}

void force_containment(std::optional<Containment> mode) {
  auto& s = detail::shared();
  std::lock_guard lock(s.mu);
  if (s.subreaper) {
    ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    s.subreaper = false;
  }
  s.forced = mode;
  s.detected = false;
  s.warned = false;
  s.base.clear();
  detail::detect(s);
}

}  // namespace storewatch::os
