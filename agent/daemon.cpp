#include "agent/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include <systemd/sd-daemon.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <thread>

#include "agent/control_ops.h"
#include "agent/notices.h"
#include "base/log.h"
#include "os/process.h"

namespace storewatch::agent {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr auto kProbeStateFlush = std::chrono::seconds(60);
constexpr auto kStopGrace = std::chrono::milliseconds(2000);
constexpr auto kTick = std::chrono::seconds(1);
constexpr auto kCertCheckEvery = std::chrono::hours(24);
/// The longest stall the test hook (STOREWATCH_TEST_STALL_SECONDS) makes.
constexpr int kMaxTestStallSeconds = 120;

Status read_snapshot(Store& store, WallTime now, EngineSnapshot& out, std::int64_t& session) {
  auto states = store.probe_states();
  if (!states) return states.error();
  auto unresolved = store.incidents(/*unresolved_only=*/true);
  if (!unresolved) return unresolved.error();
  auto resolved = store.resolved_incidents();
  if (!resolved) return resolved.error();
  auto silences = store.silences(now);
  if (!silences) return silences.error();
  auto s = store.sync_value(kSession);
  if (!s) return s.error();
  out.probe_states = std::move(*states);
  out.unresolved = std::move(*unresolved);
  out.resolved = std::move(*resolved);
  out.silences = std::move(*silences);
  session = *s;
  return {};
}

/// The link to HQ; nullptr with `error` set when the broker settings are
/// unusable (the agent then keeps probing and recording: incidents wait in
/// the outbox).
std::unique_ptr<sync::MqttTransport> open_transport(asio::io_context& io, const config::Config& cfg,
                                                    std::string& error) {
  sync::MqttOptions mo;
  mo.broker = cfg.sync;
  mo.client_id = cfg.store.id;
  auto t = sync::MqttTransport::create(io, std::move(mo));
  if (!t) {
    error = t.error().message;
    log::error("sync disabled, incidents are kept locally: {}", error);
    return nullptr;
  }
  return std::move(*t);
}

std::optional<std::chrono::microseconds> watchdog_period() {
  std::uint64_t usec = 0;
  if (::sd_watchdog_enabled(0, &usec) <= 0) return std::nullopt;
  return std::chrono::microseconds(usec / 2);
}

/// TEST HOOK, for tests/integration/watchdog_test.cpp only: with
/// STOREWATCH_TEST_STALL_SECONDS=N in the environment, SIGUSR2 blocks the
/// event loop for N seconds (at most kMaxTestStallSeconds), as a handler
/// that hangs would, so the test can see the watchdog pings stop. Without
/// the variable SIGUSR2 is not even caught.
int test_stall_seconds() {
  if (const char* v = std::getenv("STOREWATCH_TEST_STALL_SECONDS"); v != nullptr && *v != '\0') {
    return std::clamp(std::atoi(v), 0, kMaxTestStallSeconds);
  }
  return 0;
}

}  // namespace

struct Daemon::Opened {
  DataDirLock lock;
  Store writer_store;
  Store reader;
  EngineSnapshot snapshot;
  std::int64_t session = 0;
  std::unique_ptr<asio::io_context> io;
  std::unique_ptr<ControlServer> control;
};

std::unique_ptr<Daemon> Daemon::open(config::Config cfg, ConfigLoader load) {
  ::signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  std::filesystem::create_directories(cfg.agent.data_dir, ec);
  if (ec) {
    log::error("cannot create data dir {}: {}", cfg.agent.data_dir.string(), ec.message());
    return nullptr;
  }
  auto lock = DataDirLock::acquire(cfg.agent.data_dir);
  if (!lock) {
    log::error("{}", lock.error().message);
    return nullptr;
  }
  const auto db_path = cfg.agent.data_dir / "storewatch.db";
  auto writer_store = Store::open(db_path, Store::Mode::read_write);
  if (!writer_store) {
    log::error("{}", writer_store.error().message);
    return nullptr;
  }
  auto reader = Store::open(db_path, Store::Mode::read_write);
  if (!reader) {
    log::error("{}", reader.error().message);
    return nullptr;
  }
  EngineSnapshot snapshot;
  std::int64_t session = 0;
  if (auto st = read_snapshot(*reader, SystemClock().wall_now(), snapshot, session); !st) {
    log::error("reading {}: {}", db_path.string(), st.error().message);
    return nullptr;
  }
  auto io = std::make_unique<asio::io_context>(1);
  auto control = ControlServer::open(*io, cfg.agent.control_socket);
  if (!control) {
    log::error("{}", control.error().message);
    return nullptr;
  }
  return std::unique_ptr<Daemon>(
      new Daemon(std::move(cfg), std::move(load),
                 Opened{std::move(*lock), std::move(*writer_store), std::move(*reader),
                        std::move(snapshot), session, std::move(io), std::move(*control)}));
}

Daemon::Daemon(config::Config config, ConfigLoader load, Opened opened)
    : started_with_(std::make_shared<const config::Config>(std::move(config))),
      config_(started_with_),
      load_(std::move(load)),
      started_(SystemClock().wall_now()),
      db_path_(started_with_->agent.data_dir / "storewatch.db"),
      lock_(std::move(opened.lock)),
      reader_(std::move(opened.reader)),
      io_(std::move(opened.io)),
      control_(std::move(opened.control)),
      writer_(
          std::move(opened.writer_store), *io_, [this] { committed(); },
          [this](const DeadLetter& letter) { engine_.dead_letter(letter.what); },
          [this] { storage_.check_writer(); }),
      runner_(make_remediation_runner(*io_)),
      command_sink_(writer_),
      engine_(config_.share(), clock_, command_sink_, engine_hooks()),
      // Retention runs on the writer's thread: it gets copies, not the config.
      storage_(*io_, engine_, writer_, db_path_,
               PrunePolicy{.retention = started_with_->agent.retention,
                           .max_db_bytes = started_with_->agent.max_db_bytes}),
      outbox_(reader_, writer_, opened.session),
      notify_outbox_(reader_, writer_, engine_),
      notifier_(
          started_with_->notify.empty()
              ? std::nullopt
              : std::optional<sync::Notifier>(std::in_place, *io_, *started_with_, notify_outbox_)),
      transport_(open_transport(*io_, *started_with_, sync_error_)),
      publisher_(transport_ ? std::optional<sync::Publisher>(std::in_place, *io_, *started_with_,
                                                             outbox_, *transport_)
                            : std::nullopt),
      cert_watch_(started_with_->sync, engine_),
      hq_commands_(config_, clock_, engine_, reader_, command_sink_, command_hooks()),
      scheduler_(*io_, config_.share(),
                 [this](const std::string& probe, const probes::ProbeResult& r) {
                   engine_.on_result(probe, r);
                   hq_commands_.on_probe_result(probe, r);
                 }),
      config_state_(sync::config_digest(started_with_->files), started_),
      status_({.config = config_,
               .started = started_,
               .config_state = config_state_,
               .engine = engine_,
               .scheduler = scheduler_,
               .writer = writer_,
               .storage = storage_,
               .outbox = outbox_,
               .publisher = publisher_,
               .sync_error = sync_error_,
               .hq_commands = hq_commands_,
               .cert_watch = cert_watch_,
               .notifier = notifier_}),
      preflight_(io_->get_executor(), ReloadPreflight::check_command(*started_with_)),
      flush_timer_(io_->get_executor(), kProbeStateFlush, [this] { flush(); }),
      tick_timer_(io_->get_executor(), kTick, [this] { tick(); }),
      cert_timer_(io_->get_executor(), kCertCheckEvery, [this] { cert_watch_.check(); }),
      watchdog_period_(watchdog_period()),
      watchdog_timer_(io_->get_executor(), watchdog_period_.value_or(kTick),
                      [this] { feed_watchdog(); }),
      test_stall_seconds_(test_stall_seconds()),
      signals_(*io_, SIGINT, SIGTERM, SIGHUP) {
  engine_.restore(std::move(opened.snapshot));
  if (auto letters = reader_.dead_letters(0); letters && letters->count > 0) {
    // Dead letters newer than the open storage incident: it waits for a
    // person, whatever the disk says now.
    for (const auto& [key, inc] : engine_.unresolved()) {
      if (inc.probe == kAgentProbe && inc.condition == kConditionStorage && inc.t_detect &&
          format_rfc3339(*inc.t_detect) <= letters->newest_at) {
        engine_.dead_letter("", /*record=*/false);
      }
    }
    log::warn(
        "store: the dead_letters table holds {} changes the database refused; "
        "`storewatch doctor` lists them",
        letters->count);
  }
  cert_watch_.load();
  if (publisher_) {
    publisher_->on_command(
        [this](const std::string& payload) { hq_commands_.on_command(payload); });
  }
  control_->handle("ping", [](const json&, const Peer&) { return json{{"pong", true}}; });
  control_->handle("status", [this](const json&, const Peer&) {
    return json{{"status", status_.document()}};
  });
  add_incident_handlers(*control_, engine_, reader_, config_);
  if (test_stall_seconds_ > 0) signals_.add(SIGUSR2);
}

Daemon::~Daemon() {
  // Retention runs on the writer's thread and refers to storage_, which
  // goes first.
  writer_.stop();
}

EngineHooks Daemon::engine_hooks() {
  EngineHooks hooks;
  // Scheduler and engine need each other: the engine asks for re-checks,
  // posted so the scheduler never calls back into the engine re-entrantly.
  hooks.run_now = [this](const std::string& probe) {
    asio::post(*io_, [this, probe] { scheduler_.run_now(probe); });
  };
  hooks.runner = runner_.get();
  // Incidents the engine no longer holds, as committed (closing them after
  // close_after): the loop's own connection.
  hooks.stored = [this](const std::string& uid) -> std::optional<Incident> {
    auto found = reader_.incident(uid);
    if (!found || !*found || (*found)->uid != uid) return std::nullopt;
    return std::move(**found);
  };
  // Notices ride with the change that causes them (agent/notices.h).
  if (!started_with_->notify.empty()) {
    hooks.notices = [this](const Incident& inc, const IncidentEvent& ev) {
      return notices_for(*config_, inc, ev, engine_.silenced(inc.probe).has_value());
    };
  }
  return hooks;
}

HqCommandHooks Daemon::command_hooks() {
  HqCommandHooks hooks;
  if (transport_) {
    hooks.answer = [this](std::string payload) { publisher_->answer_command(std::move(payload)); };
    hooks.resync = [this](std::int64_t from_seq) { publisher_->resync(from_seq); };
  }
  hooks.run_probe = [this](const std::string& probe) { return scheduler_.run_now(probe); };
  return hooks;
}

void Daemon::committed() {
  engine_.on_committed(writer_.committed());
  if (publisher_) publisher_->notify();
  hq_commands_.on_commit();
  if (notifier_) notifier_->kick();
}

// Periodic work on the loop: flush probe_state, feed the watchdog. Both run
// only while the loop makes progress.
void Daemon::flush() {
  engine_.flush_probe_states();
  ::sd_notifyf(0, "STATUS=%s", status_.line().c_str());
}

// The engine's waiting work (close_after, backoff, verify, silences).
void Daemon::tick() {
  storage_.check_writer();
  engine_.tick();
}

// The pings also stop while the store writer is wedged (changes wait and
// nothing commits, for a reason other than a full disk): systemd then
// restarts the agent (agent/store_writer.h).
void Daemon::feed_watchdog() {
  const auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog_period_);
  if (writer_.stalled(std::chrono::steady_clock::now(), limit)) {
    if (!watchdog_withheld_) {
      const auto h = writer_.health();
      log::error(
          "watchdog: not pinging systemd: the store writer has committed nothing for {} s "
          "with {} changes waiting ({}); systemd restarts the agent if this lasts",
          limit.count() / 1000, h.backlog,
          h.last_error.empty() ? std::string("no answer from the database") : h.last_error);
    }
    watchdog_withheld_ = true;
  } else {
    if (watchdog_withheld_) log::info("watchdog: the store writer commits again; pinging");
    watchdog_withheld_ = false;
    ::sd_notify(0, "WATCHDOG=1");
  }
}

// SIGHUP, part 1: the whole config (agent/reload.h). A config that does
// not load, or changes a key that needs a restart, is refused as a whole
// and the running one stays. So is one whose check in a child process
// (ReloadPreflight) crashed or hung: `unsafe` says why.
void Daemon::reload_config(const std::optional<std::string>& unsafe) {
  if (!load_) return;
  const WallTime now = SystemClock().wall_now();
  config_state_.last_reload_at = now;
  auto refuse = [&](const std::string& why) {
    log::error("SIGHUP: config refused, the running config stays: {}", why);
    config_state_.last_error = why;
    ++config_state_.refused;
  };
  if (unsafe) return refuse(*unsafe);
  log::info("SIGHUP: re-reading the config ({} and its drop-ins)",
            config_->files.empty() ? std::string("?") : config_->files.front().string());
  auto loaded = load_();
  int errors = 0;
  for (const auto& d : loaded.diagnostics) {
    if (d.kind == config::Diagnostic::Kind::error) {
      ++errors;
      log::error("SIGHUP: {}", config::to_string(d));
    } else {
      log::warn("SIGHUP: {}", config::to_string(d));
    }
  }
  if (!loaded.ok()) {
    refuse(
        fmt::format("{} error{} in the new config (listed above; `storewatch config check` "
                    "shows them too)",
                    errors, errors == 1 ? "" : "s"));
    return;
  }
  ConfigChange change = diff_config(*config_, *loaded.config);
  if (!change.needs_restart.empty()) {
    refuse(
        fmt::format("{} changed, which needs a restart (systemctl restart storewatch); "
                    "put the old value back to reload the rest",
                    fmt::join(change.needs_restart, ", ")));
    return;
  }
  const std::string hash = sync::config_digest(loaded.config->files);
  auto next = std::make_shared<const config::Config>(std::move(*loaded.config));
  config_.replace(next);
  log::set_level(next->agent.log_level);
  // The engine first: the scheduler may start checks whose results it takes.
  engine_.reconfigure(next, change);
  scheduler_.reconfigure(next, change.rescheduled);
  config_state_.last_error.clear();
  ++config_state_.reloads;
  config_state_.loaded_at = now;
  config_state_.last_change = change.any() ? change.summary() : "nothing changed";
  if (hash != config_state_.hash) {
    config_state_.hash = hash;
    if (publisher_) publisher_->set_config_hash(hash);
  }
  log::info("SIGHUP: config reloaded ({}): {}", hash.substr(0, 19), config_state_.last_change);
}

void Daemon::reload_tls() {
  log::info("SIGHUP: re-reading the sync TLS files (ca_file, cert_file, key_file, password_file)");
  if (!transport_) {
    log::warn("SIGHUP: sync is disabled ({}); restart the service to apply new files", sync_error_);
    cert_watch_.load();
  } else if (auto r = transport_->reload_tls(started_with_->sync); !r) {
    const std::string why =
        "SIGHUP: new TLS files refused, the connection keeps the old ones: " + r.error().message;
    log::error("{}", why);
    publisher_->note_error(why);
    cert_watch_.check();
  } else if (*r) {
    log::info("SIGHUP: TLS files reloaded; reconnecting to {} with them",
              started_with_->sync.broker);
    cert_watch_.load();
  } else {
    log::info("SIGHUP: TLS files unchanged; the connection is kept");
    cert_watch_.check();
  }
}

void Daemon::reload() {
  // Type=notify-reload wants RELOADING=1 with the monotonic time, then
  // READY=1; under Type=notify they are harmless.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
                    static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
  ::sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the config", usec);
  auto finish = [this](const std::optional<std::string>& unsafe) {
    reload_config(unsafe);
    reload_tls();
    ::sd_notifyf(0, "READY=1\nSTATUS=%s", status_.line().c_str());
  };
  if (load_) {
    preflight_.run(finish);
  } else {
    finish(std::nullopt);
  }
}

void Daemon::wait_signal() {
  signals_.async_wait([this](const boost::system::error_code& e, int sig) {
    if (e) return;
    if (sig == SIGHUP) {
      if (!stopping_) reload();
      wait_signal();
      return;
    }
    if (sig == SIGUSR2) {
      log::warn("test hook: blocking the event loop for {} s (STOREWATCH_TEST_STALL_SECONDS)",
                test_stall_seconds_);
      std::this_thread::sleep_for(std::chrono::seconds(test_stall_seconds_));
      log::warn("test hook: the event loop runs again");
      wait_signal();
      return;
    }
    if (stopping_) return;
    stopping_ = true;
    log::info("received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    stop();
  });
}

void Daemon::stop() {
  ::sd_notify(0, "STOPPING=1");
  preflight_.cancel();
  scheduler_.stop();
  engine_.stop();
  runner_->stop();
  control_->stop();
  flush_timer_.cancel();
  tick_timer_.cancel();
  watchdog_timer_.cancel();
  cert_timer_.cancel();
  engine_.flush_probe_states();
  if (publisher_) publisher_->stop(kStopGrace, [] {});
  if (notifier_) notifier_->stop();
}

int Daemon::run() {
  wait_signal();
  scheduler_.start();
  control_->start();
  if (publisher_) publisher_->start();
  if (notifier_) notifier_->start();
  flush_timer_.start();
  engine_.tick();
  tick_timer_.start();
  cert_timer_.start();
  if (watchdog_period_) watchdog_timer_.start();
  log::info("storewatch {} running for store {}: {} probes, database {}, control socket {}",
            STOREWATCH_VERSION, config_->store.id, config_->probes.size(), db_path_.string(),
            config_->agent.control_socket.string());
  log::info("plugins and exec remediations: each run contained in {}",
            os::containment_description());
  ::sd_notifyf(0, "READY=1\nSTATUS=%s", status_.line().c_str());

  io_->run();

  writer_.stop();
  log::info("stopped");
  return 0;
}

int run_daemon(config::Config config, ConfigLoader load) {
  auto daemon = Daemon::open(std::move(config), std::move(load));
  return daemon ? daemon->run() : 1;
}

}  // namespace storewatch::agent
