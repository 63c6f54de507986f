#pragma once
/// \file
/// `storewatch run`: the daemon. One io_context thread owns the probes'
/// I/O, the incident engine, the publisher and the control socket; the store
/// writer commits on its own thread; Paho's threads only post.

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/client_cert_watch.h"
#include "agent/control_server.h"
#include "agent/data_dir_lock.h"
#include "agent/engine.h"
#include "agent/hq_commands.h"
#include "agent/live_status.h"
#include "agent/reload.h"
#include "agent/remediation_runner.h"
#include "agent/running_config.h"
#include "agent/scheduler.h"
#include "agent/storage_watch.h"
#include "agent/store.h"
#include "agent/store_outboxes.h"
#include "agent/store_writer.h"
#include "base/clock.h"
#include "base/periodic.h"
#include "config/config.h"
#include "sync/mqtt_transport.h"
#include "sync/notifier.h"
#include "sync/publisher.h"

namespace storewatch::agent {

/// Loads the config again from where the running one came from (the same
/// file and conf.d), for SIGHUP.
using ConfigLoader = std::function<config::Loaded<config::Config>()>;

/// The agent, built in the order its parts need each other (the members
/// below, top to bottom), run by run(), taken down in reverse. Every
/// callback one part hands another runs on the loop, and the loop runs only
/// in run(): by then every part a callback names exists.
class Daemon {
 public:
  /// Takes the data directory (one daemon each), opens the database and the
  /// control socket, and builds the agent on them; nullptr when one of those
  /// fails (each cause logged in one line).
  static std::unique_ptr<Daemon> open(config::Config config, ConfigLoader load = {});

  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  /// Runs until SIGTERM or SIGINT, then stops everything it started and
  /// returns the process exit code (0). SIGHUP reloads the config through
  /// the loader (agent/reload.h says what may change without a restart) and
  /// re-reads the sync TLS files; without a loader only the TLS files are
  /// re-read.
  int run();

 private:
  /// What open() opens before the daemon is built: each can fail.
  struct Opened;
  Daemon(config::Config config, ConfigLoader load, Opened opened);

  EngineHooks engine_hooks();
  HqCommandHooks command_hooks();
  /// The store writer committed a batch: the parts waiting for a commit go on.
  void committed();
  /// Every minute: probe states to disk, STATUS= to systemd.
  void flush();
  /// Every second: the engine's waiting work.
  void tick();
  /// Half of WatchdogSec: WATCHDOG=1, unless the store writer is wedged.
  void feed_watchdog();
  void wait_signal();
  void reload();
  /// SIGHUP, part 1: the whole config; `unsafe` is why ReloadPreflight refused it.
  void reload_config(const std::optional<std::string>& unsafe);
  /// SIGHUP, part 2: the sync TLS files (the same paths, new contents).
  void reload_tls();
  /// SIGTERM or SIGINT: cancels what keeps the loop running.
  void stop();

  /// The config the daemon started with. What needs a restart to change is
  /// read from it — a reload that changes any of that is refused, so it is
  /// the running config's too: the data directory, retention, the link to
  /// HQ, the notifier's channels, the client certificate.
  const std::shared_ptr<const config::Config> started_with_;
  /// The config in force, replaced as a whole by an accepted reload.
  RunningConfig config_;
  const ConfigLoader load_;
  const WallTime started_;
  const std::filesystem::path db_path_;
  DataDirLock lock_;
  /// The loop's own connection: WAL lets it read while the writer commits.
  Store reader_;
  std::unique_ptr<boost::asio::io_context> io_;
  std::unique_ptr<ControlServer> control_;
  StoreWriter writer_;
  SystemClock clock_;
  std::unique_ptr<RemediationRunner> runner_;
  /// HQ's commands reach the engine as the CLI's do; what a command changes
  /// is committed with its id (agent/hq_commands.h).
  CommandSink command_sink_;
  Engine engine_;
  StorageWatch storage_;
  StoreOutbox outbox_;
  StoreNotifyOutbox notify_outbox_;
  std::optional<sync::Notifier> notifier_;  ///< with [[notify]] channels only
  std::string sync_error_;                  ///< why transport_ is null
  std::unique_ptr<sync::MqttTransport> transport_;
  std::optional<sync::Publisher> publisher_;  ///< with a transport only
  ClientCertWatch cert_watch_;
  HqCommands hq_commands_;
  Scheduler scheduler_;
  ConfigState config_state_;
  LiveStatus status_;
  ReloadPreflight preflight_;
  Periodic flush_timer_;
  Periodic tick_timer_;
  Periodic cert_timer_;
  /// Half of WatchdogSec; nullopt when systemd watches no watchdog.
  const std::optional<std::chrono::microseconds> watchdog_period_;
  Periodic watchdog_timer_;
  bool watchdog_withheld_ = false;
  /// STOREWATCH_TEST_STALL_SECONDS (daemon.cpp), 0 without it.
  const int test_stall_seconds_;
  boost::asio::signal_set signals_;
  bool stopping_ = false;
};

/// Daemon::open(), then run(): the process exit code, 1 when it could not
/// start.
int run_daemon(config::Config config, ConfigLoader load = {});

}  // namespace storewatch::agent
