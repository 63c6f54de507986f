#pragma once
/// \file
/// What the sync tests share: a store agent (the real `storewatch run`) with
/// one TCP device, a real `storewatch hq run`, a real mosquitto, and ways to
/// compare the agent's outbox with what HQ stored.

#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/store.h"
#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {

/// A mosquitto with a config of the test's own (listeners on other addresses,
/// websockets, TLS). Persistence is always off.
class OwnBroker {
 public:
  /// `listeners`: the listener blocks, e.g. "listener 1883 127.0.0.1\n".
  explicit OwnBroker(std::string listeners, int wait_port);
  ~OwnBroker() { stop(); }
  void start();
  void stop();
  const std::filesystem::path& dir() const { return dir_.path(); }
  std::string log() const { return child_ ? child_->err() : std::string(); }

 private:
  TempDir dir_;
  int wait_port_;
  std::unique_ptr<Child> child_;
};

/// Events as (seq, uid), in seq order.
using SeqUids = std::vector<std::pair<std::int64_t, std::string>>;

struct SyncLab {
  TempDir dir;
  TcpDevice device;
  std::string store = "store-sync";
  std::filesystem::path agent_config = dir / "storewatch.toml";
  std::filesystem::path hq_config = dir / "hq.toml";
  std::filesystem::path agent_db = dir / "agent" / "storewatch.db";
  std::filesystem::path hq_db = dir / "hq" / "hq.db";
  /// Prefix of the agent's command line (e.g. `ip netns exec NS`).
  std::vector<std::string> agent_prefix;
  /// Extra keys for HQ's [hq] (TLS files).
  std::string hq_extra;

  /// Writes both configs. `agent_broker` is what the agent dials, `hq_broker`
  /// what HQ dials; `sync_extra` lands in [sync].
  void configure(const std::string& agent_broker, const std::string& hq_broker,
                 const std::string& sync_extra = "");

  RunResult agent(std::vector<std::string> args);
  RunResult hq(std::vector<std::string> args);
  std::unique_ptr<Child> start_agent();
  std::unique_ptr<Child> start_hq();

  /// `sync status --json`, or null when it failed.
  nlohmann::json sync_status();

  /// Writes `n` events straight through the agent's Store (the daemon's own
  /// write path): n/2 incidents, each opened then resolved. The daemon must
  /// not be running.
  void seed_backlog(int n);

  SeqUids agent_events();
  SeqUids hq_events();
  /// HQ's acked seq for the store (0 when unknown).
  std::int64_t hq_acked();

  /// HQ holds exactly the agent's events: seq 1..N once each, same uids.
  /// Returns a description of the first difference, or "" when complete.
  std::string hq_difference();

  /// Starts HQ and the agent, takes the device down and up, and waits for
  /// both events to reach HQ through `broker`. "" when they did, else what
  /// went wrong, with the logs.
  std::string one_incident_reaches_hq(const OwnBroker& broker);
};

/// A test CA and certificates made with openssl: server.pem for 127.0.0.1,
/// and one client certificate per name (CN = the name), valid for a year.
class TestPki {
 public:
  explicit TestPki(const std::vector<std::string>& clients);
  std::string ca() const { return (dir_ / "ca.pem").string(); }
  std::string cert(const std::string& name) const { return (dir_ / (name + ".pem")).string(); }
  std::string key(const std::string& name) const { return (dir_ / (name + ".key")).string(); }
  /// [sync] or [hq] keys presenting `name`'s certificate.
  std::string keys(const std::string& name) const {
    return fmt::format("ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n", ca(),
                       cert(name), key(name));
  }
  /// Issues (again) the client certificate `name` with CN `cn`, valid for
  /// `days` days from now, with a new key.
  void issue_client(const std::string& name, const std::string& cn, int days);

 private:
  void must(const std::vector<std::string>& argv);
  void issue(const std::string& name, const std::string& cn, const std::string& ext, int days);
  TempDir dir_;
};

}  // namespace storewatch::test
