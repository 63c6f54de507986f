#pragma once
/// \file
/// What a config reload (SIGHUP) changes. The daemon loads the new file
/// set, compares it with the running config here, refuses it as a whole when
/// a key that needs a restart differs, and otherwise moves the keys that may
/// change at run time into the running Config object (whose address the
/// engine, scheduler and control handlers keep), then tells the engine and
/// the scheduler which probes came, went or changed.
///
/// At run time: [[probe]], [[remediation]], [[silence]], [incidents],
/// store.name, store.timezone, store.trading_hours, agent.log_level,
/// agent.max_concurrent_checks. Needs a restart: store.id, agent.data_dir,
/// agent.control_socket, agent.retention, agent.max_db_size, every [sync]
/// key, the [[notify]] channels (the TLS files' *contents* are re-read on
/// every SIGHUP anyway).

#include <set>
#include <string>
#include <vector>

#include "config/config.h"

namespace storewatch::agent {

struct ConfigChange {
  /// Keys that differ and need a restart ("store.id", "sync.broker",
  /// "notify"); any of them refuses the reload.
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

/// Moves the keys that may change at run time from `next` into `running`
/// (only them: the restart-only keys are read by other threads).
void apply_config(config::Config& running, config::Config&& next);

}  // namespace storewatch::agent
