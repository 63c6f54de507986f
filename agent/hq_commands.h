#pragma once
/// \file
/// HQ's commands on `P/stores/S/cmd` (DESIGN §6, docs/SYNC.md), applied on
/// the loop through the same path as the CLI's (agent/control_ops.h) with
/// the actor `hq:NAME`, once per command id, and answered on `cmd/result`.
///
/// An answer is sent once its command's row is committed (on_commit).
///
/// Once per id: the answer is kept in the `commands` table, written in the
/// same transaction as the change the command made (CommandSink gathers the
/// engine's changes while a command is applied), so a command delivered
/// again — MQTT QoS 1 may, and HQ retries — is answered alike and never
/// applied twice, across restarts too. Refused payloads that carry no usable
/// command are answered each time and not kept.
///
/// With `[sync] command_key_file` set, only commands signed with its key for
/// this store and not expired are taken (sync/commands.h); the others are
/// answered ok:false and change nothing.
///
/// Nothing here runs anything but configured probes: `probe_run` names one
/// from the config, and the scheduler runs it as it would on its own.

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/engine.h"
#include "agent/running_config.h"
#include "agent/store.h"
#include "agent/store_writer.h"
#include "base/clock.h"
#include "config/config.h"
#include "probes/probe.h"
#include "sync/commands.h"

namespace storewatch::agent {

/// Sits between the engine and the store writer. Passes changes through,
/// except while an HQ command is applied: then it gathers them and hands
/// them over with the command's row as one AppliedCommand.
class CommandSink final : public ChangeSink {
 public:
  explicit CommandSink(ChangeSink& next) : next_(next) {}

  void submit(Change change) override;
  /// While gathering, what is gathered goes to the writer as one more change.
  std::uint64_t ticket() const override { return next_.ticket() + (gathering_ ? 1 : 0); }

  /// Starts gathering.
  void begin();
  /// Submits what was gathered since begin() together with `row`.
  void finish(CommandRow row);

 private:
  ChangeSink& next_;
  bool gathering_ = false;
  std::vector<EngineChange> gathered_;
};

/// What HqCommands asks of the daemon.
struct HqCommandHooks {
  /// Publishes an answer on `P/stores/S/cmd/result`.
  std::function<void(std::string payload)> answer;
  /// Sends stored events again from `from_seq` (Publisher::resync).
  std::function<void(std::int64_t from_seq)> resync;
  /// Runs a configured probe now (Scheduler::run_now); its result comes back
  /// through on_probe_result. False for a probe the scheduler does not know.
  std::function<bool(const std::string& probe)> run_probe;
};

class HqCommands {
 public:
  /// `config` is read at each command (a reload may replace it).
  HqCommands(const RunningConfig& config, const Clock& clock, Engine& engine, Store& reader,
             CommandSink& sink, HqCommandHooks hooks);

  /// One message from `P/stores/S/cmd`, as received.
  void on_command(std::string_view payload);

  /// The store writer committed a batch: answers whose command is now
  /// durable are sent. An answer never says "done" before its commit
  /// (DESIGN §2: nothing reaches HQ before it is committed).
  void on_commit();

  /// Every probe result, so a pending probe_run can answer with it.
  void on_probe_result(const std::string& probe, const probes::ProbeResult& result);

  struct Stats {
    std::uint64_t received = 0;
    std::uint64_t applied = 0;     ///< applied, ok or refused by the engine's rules
    std::uint64_t refused = 0;     ///< malformed: not applied, not kept
    std::uint64_t duplicates = 0;  ///< answered from the kept answer
  };
  Stats stats() const { return stats_; }

  /// probe_run commands waiting for their probe's result, at most.
  static constexpr std::size_t kMaxPendingProbeRuns = 64;
  /// Answers kept in memory until their commit is surely done (the database
  /// has them after that).
  static constexpr std::size_t kRecentAnswers = 1024;
  /// Answers waiting for their commit, at most.
  static constexpr std::size_t kMaxUnsent = 1024;

 private:
  /// The CommandAuth for a payload received now; an Error when
  /// `command_key_file` is set but its key cannot be used (then no command
  /// is taken: failing closed).
  Result<sync::CommandAuth> auth();
  void apply(const sync::Command& cmd);
  /// Keeps the answer (fields of a success, or why it was refused) with the
  /// changes gathered for it, and sends it.
  void finish(const sync::Command& cmd, const Result<nlohmann::json>& outcome);
  void send_after_commit(const std::string& id, std::string answer);

  const RunningConfig& config_;
  const Clock& clock_;
  Engine& engine_;
  Store& reader_;
  CommandSink& sink_;
  HqCommandHooks hooks_;
  Stats stats_;
  /// Answers given lately, before their commit may be done.
  std::map<std::string, std::string> recent_;
  std::deque<std::string> recent_order_;
  /// Answers (by command id) whose command's row is not committed yet.
  std::deque<std::pair<std::string, std::string>> unsent_;
  /// probe_run commands by probe, waiting for a result.
  std::map<std::string, std::vector<sync::Command>> probe_runs_;
  std::size_t pending_probe_runs_ = 0;
};

}  // namespace storewatch::agent
