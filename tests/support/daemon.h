#pragma once
/// \file
/// The agent daemon as the integration tests run it: its config file (the
/// [store], [agent] and [sync] sections every such test writes, with room
/// for the keys and sections that differ), tcp probes for it, and the real
/// `storewatch run` started on it and asked whether it is up.

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/support.h"

namespace storewatch::test {

/// The agent's config file. toml() writes [store], [agent] and [sync] with
/// the keys every test needs, each section followed by its extra keys, then
/// `body`.
struct DaemonConfig {
  std::string store_id;
  std::filesystem::path data_dir;
  std::filesystem::path control_socket;
  /// What [sync] dials. Nothing listens on port 1: the link stays down.
  std::string broker = "tcp://127.0.0.1:1";
  /// More keys of [store], [agent] and [sync]: whole lines, each ending in
  /// a newline.
  std::string store_keys;
  std::string agent_keys;
  std::string sync_keys;
  /// What follows [sync]: [[probe]] and [[remediation]] tables, [incidents].
  std::string body;

  /// A config for `store_id` whose data lives in dir/data and whose control
  /// socket is dir/control.sock.
  static DaemonConfig in(const TempDir& dir, std::string store_id);

  std::string toml() const;
  /// Writes toml() to `file`.
  void write(const std::filesystem::path& file) const;
};

/// A [[probe]] of type tcp on 127.0.0.1:port, then `keys` (whole lines).
std::string tcp_probe_toml(const std::string& name, int port, const std::string& keys = "");

/// `storewatch --config <config> <args>`, run to completion.
RunResult run_cli(const std::filesystem::path& config, std::vector<std::string> args,
                  std::map<std::string, std::string> env = {});

/// The command line of `storewatch --config <config> run`.
std::vector<std::string> daemon_command(const std::filesystem::path& config);

/// Starts `storewatch run` on `config`, its output in `log_dir`.
std::unique_ptr<Child> launch_daemon(const std::filesystem::path& config,
                                     const std::filesystem::path& log_dir);

/// Whether the daemon of `config` answers `status --json` as running.
bool daemon_is_running(const std::filesystem::path& config);

/// Whether the daemon of `config` says, in `sync status --json`, that it is
/// connected to its broker.
bool daemon_is_connected(const std::filesystem::path& config);

}  // namespace storewatch::test
