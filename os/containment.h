#pragma once
/// \file
/// Internal to os/process.cpp: keeping each run's processes together so
/// that the end of a run kills all of them, also those that left its process
/// group or session (a plugin whose child calls setsid(), or double-forks).
/// Two mechanisms, picked once per process (docs/PROBES.md says when):
///
///  - cgroup: when this process's cgroup (cgroup v2) lets it make child
///    cgroups (systemd's Delegate=, or root outside systemd), every run gets
///    a cgroup of its own, `storewatch-run-PID-N`: its child is forked, held
///    until it has been moved there (so not even its first fork happens
///    outside), then execs; the run is killed with cgroup.kill and the
///    cgroup removed afterwards. Nothing escapes.
///  - tracked: otherwise this process becomes a child subreaper
///    (PR_SET_CHILD_SUBREAPER), so what a run leaves behind is reparented to
///    it instead of to PID 1, and each run's environment carries a marker,
///    STOREWATCH_RUN=PID.N. The end of a run kills its direct child's
///    descendants and every orphan carrying its marker, with their
///    descendants, and reaps them. A process that clears its environment and
///    leaves its session is not told from others and is left running; it
///    is reaped when it exits.
///
/// Only processes of the run are ever signalled: descendants of its child,
/// members of its cgroup, or orphans with its marker.

#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include "os/process.h"

namespace storewatch::os::detail {

/// What a child started in a cgroup needs, all prepared before the fork:
/// the child may only make system calls before it execs.
struct ChildPlan {
  const char* file = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  const char* working_dir = nullptr;  ///< nullptr: this process's
};

/// One run's containment, from before its spawn to after its end.
class RunGroup {
 public:
  /// How the next run is contained; makes its cgroup if it gets one.
  static RunGroup open();

  RunGroup() = default;
  RunGroup(RunGroup&& other) noexcept;
  RunGroup& operator=(RunGroup&& other) noexcept;
  RunGroup(const RunGroup&) = delete;
  RunGroup& operator=(const RunGroup&) = delete;
  /// Removes the cgroup (now, or at a later run when it is not empty yet).
  ~RunGroup();

  Containment mode() const { return mode_; }
  /// "STOREWATCH_RUN=PID.N" in tracked mode, else empty.
  const std::string& marker() const { return marker_; }

  struct Spawned {
    pid_t pid = -1;
    int exec_error = 0;        ///< errno of a failed exec (the child is reaped)
    bool unsupported = false;  ///< the cgroup takes no process of ours: use tracked mode
  };
  /// Starts `plan` inside the run's cgroup (cgroup mode only), its own
  /// process group, default signal dispositions and an empty mask.
  Spawned spawn(const ChildPlan& plan);

  /// After spawn() said unsupported: this run, and every later one, is tracked.
  void use_tracking();

  /// SIGKILLs every process of the run. `child` is its direct child while it
  /// is not reaped (its pid is still ours), else -1.
  void kill(pid_t child);

 private:
  void close();

  Containment mode_ = Containment::tracked;
  std::string cgroup_;  ///< its directory, in cgroup mode
  int cgroup_fd_ = -1;
  std::string marker_;
};

/// Records a direct child of a run as spawned (true) or reaped (false): the
/// tidying never reaps those. Hold spawn_lock() across the spawn and this.
void note_child(pid_t pid, bool alive);
/// Serializes spawns against tidy(), so a fresh child is never taken for an orphan.
std::unique_lock<std::mutex> spawn_lock();

/// Reaps killed orphans (and, in tracked mode, any zombie child that no run
/// owns) and removes emptied cgroups, waiting at most `patience` for them.
void tidy(std::chrono::milliseconds patience);

}  // namespace storewatch::os::detail
