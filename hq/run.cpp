#include "hq/run.h"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/periodic.h"
#include "db/errors.h"
#include "hq/hq_database.h"
#include "hq/ingest.h"
#include "sync/mqtt_transport.h"

namespace storewatch::hq {

using namespace std::chrono_literals;

namespace {

/// How often a worker writes its row of `workers`.
constexpr auto kHealthEvery = 5s;

std::string host_name() {
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0) return {};
  return host.data();
}

}  // namespace

std::string default_client_id() {
  const std::string host = host_name();
  return host.empty() ? "storewatch-hq" : "storewatch-hq-" + host;
}

namespace {

volatile std::sig_atomic_t g_stop_waiting = 0;

/// Opens HQ's database. A PostgreSQL server out of reach at start is waited
/// for, with backoff (HQ is not READY meanwhile), until SIGTERM or SIGINT;
/// anything else — a refused login, a database that is not HQ's, a schema
/// newer than this build — is an Error at once.
Result<std::unique_ptr<HqDatabase>> open_waiting(const config::HqConfig& config,
                                                 const std::string& worker) {
  auto db = open_hq_database(config, HqOpen::read_write, worker);
  if (db || db.error().code != db::kUnreachable) return db;
  g_stop_waiting = 0;
  auto on_signal = [](int) { g_stop_waiting = 1; };
  auto old_term = std::signal(SIGTERM, on_signal);
  auto old_int = std::signal(SIGINT, on_signal);
  auto delay = 1s;
  int attempts = 1;
  while (!db && db.error().code == db::kUnreachable) {
    log::warn("hq: {}; not ready, trying again in {} s (attempt {})", db.error().message,
              delay.count(), attempts);
    ::sd_notifyf(0, "STATUS=waiting for PostgreSQL at %s", config.database_name().c_str());
    const auto until = std::chrono::steady_clock::now() + delay;
    while (g_stop_waiting == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(100ms);
    }
    if (g_stop_waiting != 0) break;
    delay = std::min<std::chrono::seconds>(delay * 2, 30s);
    ++attempts;
    db = open_hq_database(config, HqOpen::read_write, worker);
  }
  std::signal(SIGTERM, old_term);
  std::signal(SIGINT, old_int);
  if (g_stop_waiting != 0 && !db) {
    return Error{"stopped before the database could be reached", db::kUnreachable};
  }
  if (db && attempts > 1)
    log::info("hq: reached {} after {} attempt(s)", config.database_name(), attempts);
  return db;
}

}  // namespace

int run(const config::HqConfig& config) {
  const std::string worker = config.client_id.empty() ? default_client_id() : config.client_id;
  auto opened = open_waiting(config, worker);
  if (!opened) {
    if (g_stop_waiting != 0) {
      log::info("hq: stopped while waiting for the database");
      return 0;
    }
    log::error("hq: {}", opened.error().message);
    return 1;
  }
  HqDatabase* store = opened->get();

  boost::asio::io_context io;
  sync::MqttOptions options;
  options.broker = config;
  options.client_id = config.client_id.empty() ? default_client_id() : config.client_id;
  options.persistent_session = true;
  options.session_expiry = std::chrono::duration_cast<std::chrono::seconds>(24h);
  options.max_unhandled = Ingest::kMaxUnhandled;
  auto transport = sync::MqttTransport::create(io, std::move(options));
  if (!transport) {
    log::error("hq: {}", transport.error().message);
    return 1;
  }

  SystemClock clock;
  store->set_worker(worker);
  Ingest ingest(config, *store, **transport, clock, io.get_executor());

  // Under systemd (Type=notify, WatchdogSec=): WATCHDOG=1 from a timer on the
  // loop, so the pings stop when the loop stops making progress.
  std::uint64_t watchdog_usec = 0;
  const bool watchdog = ::sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  Periodic watchdog_timer(io.get_executor(), std::chrono::microseconds(watchdog_usec / 2),
                          [] { ::sd_notify(0, "WATCHDOG=1"); });

  // The worker's own row (`hq workers`, the health line of `hq stores`),
  // written while the database can be reached; a worker that stops writing
  // it shows as silent there.
  WorkerHealth health;
  health.worker = worker;
  health.host = host_name();
  health.pid = ::getpid();
  health.started = clock.wall_now();
  Periodic health_timer(io.get_executor(), kHealthEvery, [&] {
    const IngestStats stats = ingest.stats();
    health.heartbeat = clock.wall_now();
    health.last_commit = stats.last_commit;
    health.batches = stats.batches;
    health.inserted = stats.inserted;
    health.broker_connected = stats.connected;
    health.last_error = stats.last_error;
    health.last_error_at = stats.last_error_at;
    if (auto st = store->record_worker(health); !st) {
      log::debug("hq: cannot record this worker's health: {}", st.error().message);
    }
  });

  // Retention (docs/HQ.md): at start, then hourly; again soon while a prune
  // left more to do, in five minutes after a failure.
  Periodic retention_timer(io.get_executor(), [store, &config, &clock]() -> Periodic::Delay {
    auto pruned = store->prune(clock.wall_now(), config.retention);
    if (!pruned) log::warn("hq: retention: {}; trying again in 5 min", pruned.error().message);
    if (pruned && !pruned->empty()) log::info("hq: retention: {}", describe(*pruned));
    if (!pruned) return 5min;
    return pruned->more ? Periodic::Delay(1s) : Periodic::Delay(1h);
  });

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&ingest, &watchdog_timer, &health_timer, &retention_timer](
                         const boost::system::error_code& ec, int signal) {
    if (ec) return;
    log::info("hq: {} received, stopping", signal == SIGINT ? "SIGINT" : "SIGTERM");
    ::sd_notify(0, "STOPPING=1");
    watchdog_timer.cancel();
    health_timer.cancel();
    retention_timer.cancel();
    // With the transport stopped nothing is left waiting, so run() returns.
    ingest.stop(2s);
  });

  log::info("hq: storing into {}, broker {}{}", store->name(), config.broker,
            config.share_group.empty()
                ? ""
                : ", sharing the stores' events in group " + config.share_group);
  if (config.enroll == config::HqConfig::Enroll::list) {
    log::info("hq: enroll = \"list\": only the {} store(s) of [hq] stores are taken in",
              config.stores.size());
  } else {
    log::info("hq: enroll = \"auto\": every store that sends is taken in (each new one logged)");
  }
  if (!config.command_keys_dir.empty() || !config.command_key_file.empty()) {
    log::info(
        "hq: commands are signed with {}{}{}",
        config.command_keys_dir.empty() ? std::string()
                                        : "the store's key in " + config.command_keys_dir.string(),
        !config.command_keys_dir.empty() && !config.command_key_file.empty() ? ", else " : "",
        config.command_key_file.empty() ? std::string()
                                        : "the fleet key " + config.command_key_file.string());
  } else {
    log::info("hq: commands are not signed (no [hq] command_key_file or command_keys_dir)");
  }
  ingest.start();
  if (watchdog) watchdog_timer.start();
  health.heartbeat = health.started;
  if (auto st = store->record_worker(health); !st) {
    log::warn("hq: cannot record this worker's health: {}", st.error().message);
  }
  health_timer.start();
  retention_timer.start(0s);
  // Ready once the database is open and ingest has started; the broker may
  // still be out of reach (it is retried for as long as it takes).
  ::sd_notifyf(0, "READY=1\nSTATUS=storing into %s, broker %s", store->name().c_str(),
               config.broker.c_str());
  io.run();
  log::info("hq: stopped");
  return 0;
}

}  // namespace storewatch::hq
