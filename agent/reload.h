#pragma once
/// \file
/// What a config reload (SIGHUP) changes. The daemon loads the new file
/// set, compares it with the running config here, refuses it as a whole when
/// something that needs a restart differs, and otherwise makes it the running
/// config: a new immutable snapshot (`std::shared_ptr<const config::Config>`)
/// that the engine, the scheduler and the loop's other readers take in place
/// of the old one, which lives on for as long as one of them still holds it.
/// The engine and the scheduler are told which probes came, went or changed.
///
/// At run time: [[probe]], [[remediation]], [[silence]], [incidents],
/// store.name, store.timezone, store.trading_hours, agent.log_level,
/// agent.max_concurrent_checks. Everything else needs a restart — store.id,
/// agent.data_dir, agent.control_socket, agent.retention, agent.max_db_size,
/// [sync] and the [[notify]] channels today, and any key or section added
/// later until it is made a run-time one in reload.cpp on purpose
/// (diff_config compares whole sections, not a list of keys). The TLS
/// files' *contents* are re-read on every SIGHUP anyway.
///
/// Before any of that, ReloadPreflight loads the new file set in a child
/// process: what crashes a parser takes down the child, not the daemon.

#include <boost/asio/any_io_executor.hpp>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/duration.h"
#include "config/config.h"
#include "os/process.h"

namespace storewatch::agent {

struct ConfigChange {
  /// What differs and needs a restart, by key where a message can name it
  /// ("store.id", "agent.retention") and else by section ("[sync]",
  /// "[[notify]]"); any of them refuses the reload.
  std::vector<std::string> needs_restart;
  std::vector<std::string> added;    ///< probes, in the new file's order
  std::vector<std::string> removed;  ///< probes, in the old file's order
  std::vector<std::string> changed;  ///< probes kept whose settings differ
  /// Probes kept whose check itself differs (type, interval, timeout or a
  /// type key): the scheduler replaces them.
  std::set<std::string> rescheduled;
  /// Probes kept whose remediation differs (another name, none any more, or
  /// the [[remediation]] it names changed): an attempt in flight is abandoned.
  std::set<std::string> remediation_changed;
  /// Other sections that differ and apply at run time ("silences", "incidents", …).
  std::vector<std::string> other;

  bool any() const {
    return !added.empty() || !removed.empty() || !changed.empty() || !other.empty();
  }
  /// One line: "probes +1 (lane-09), -0, changed 1 (lane-02); silences, incidents".
  std::string summary() const;
};

/// Compares the running config with the one just loaded.
ConfigChange diff_config(const config::Config& running, const config::Config& next);

/// How long `config check` of a new config may take in its child process.
/// Far above what a config of 16 MiB (the largest read) takes on a gateway.
inline constexpr Millis kPreflightTimeout = std::chrono::seconds(30);

/// Checks a new config in a child process before the daemon parses it, so
/// that no input can take the daemon down: a parser that crashes or hangs
/// on some file crashes or hangs the child, and the reload is refused while
/// the running config stays. The child is the daemon's own binary
/// (`/proc/self/exe`, the very build running even after a package upgrade
/// replaced the file) as `storewatch --config F --conf-dir D config check`,
/// run with os::Process: asynchronously, with a timeout, every process
/// of it killed at the end. Its answer is only whether it is safe to load:
/// exit 0 (valid) or 2 (errors, which the daemon's own load then reports)
/// are; a signal, the timeout or any other exit are not. A child that
/// cannot be started at all (the exec fails) is logged as a warning and the
/// daemon loads the config itself, as it did before this check.
class ReloadPreflight {
 public:
  /// nullopt: load the config in the daemon now; else why the reload is refused.
  using Done = std::function<void(std::optional<std::string>)>;

  /// `command` is the child's argv (check_command() for the daemon).
  ReloadPreflight(boost::asio::any_io_executor executor, std::vector<std::string> command,
                  Millis timeout = kPreflightTimeout);
  ~ReloadPreflight();
  ReloadPreflight(const ReloadPreflight&) = delete;
  ReloadPreflight& operator=(const ReloadPreflight&) = delete;

  /// `config check` of the file set `running` was loaded from, by this binary.
  static std::vector<std::string> check_command(const config::Config& running);

  /// Runs the check and calls `done` on the executor (never from inside
  /// run()). A run while one is in flight waits for it and then checks
  /// again (the files may have changed since the child read them); of
  /// several waiting, only the last one's `done` is called.
  void run(Done done);

  /// Kills a child still running; no `done` is called afterwards.
  void cancel();

  /// What a child's end means for the reload: nullopt when safe to load.
  static std::optional<std::string> verdict(const os::ProcessResult& result);

 private:
  void start(Done done);

  boost::asio::any_io_executor executor_;
  std::vector<std::string> command_;
  Millis timeout_;
  os::Process process_;
  bool running_ = false;
  std::optional<Done> queued_;
};

}  // namespace storewatch::agent
