#pragma once
/// \file
/// `status` as the running daemon answers it (DESIGN §7; agent/status.h
/// builds the same document from the database when no daemon runs), and
/// the one line of STATUS= it sends systemd.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/client_cert_watch.h"
#include "agent/engine.h"
#include "agent/hq_commands.h"
#include "agent/running_config.h"
#include "agent/scheduler.h"
#include "agent/storage_watch.h"
#include "agent/store_outboxes.h"
#include "agent/store_writer.h"
#include "base/clock.h"
#include "config/config.h"
#include "sync/notifier.h"
#include "sync/publisher.h"

namespace storewatch::agent {

/// The config in force and its reloads, for `status` and STATUS=.
struct ConfigState {
  /// The config loaded at start: `hash` of its files.
  ConfigState(std::string digest, WallTime at) : hash(std::move(digest)), loaded_at(at) {}

  std::string hash;
  WallTime loaded_at;
  int reloads = 0;  ///< accepted since start
  int refused = 0;  ///< refused since start
  std::optional<WallTime> last_reload_at;
  std::string last_error;   ///< of the last reload; "" when it was accepted
  std::string last_change;  ///< summary of the last accepted reload

  /// `agent.config` of `status`.
  nlohmann::json to_json(const std::vector<std::filesystem::path>& files) const;
};

/// `agent.store_writer` of `status`.
nlohmann::json writer_json(const StoreWriter::Health& h, std::chrono::steady_clock::time_point now);

/// `sync.commands` of `status`.
nlohmann::json commands_json(const HqCommands::Stats& s);

/// Reads, never changes, the parts of the running daemon; each must
/// outlive it. `publisher` and `notifier` are empty when sync could not
/// start (`sync_error` says why) or no [[notify]] channel is configured.
class LiveStatus {
 public:
  struct Parts {
    const RunningConfig& config;
    WallTime started;
    const ConfigState& config_state;
    const Engine& engine;
    const Scheduler& scheduler;
    const StoreWriter& writer;
    const StorageWatch& storage;
    StoreOutbox& outbox;
    const std::optional<sync::Publisher>& publisher;
    const std::string& sync_error;
    const HqCommands& hq_commands;
    const ClientCertWatch& cert_watch;
    const std::optional<sync::Notifier>& notifier;
  };

  explicit LiveStatus(Parts parts) : p_(parts) {}

  /// The `status` document.
  nlohmann::json document() const;

  /// "3 probes, 1 failing; 1 open incidents; sync connected, 0 queued".
  std::string line() const;

 private:
  Parts p_;
};

}  // namespace storewatch::agent
