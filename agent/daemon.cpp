#include "agent/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <systemd/sd-daemon.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <thread>

#include "agent/control_ops.h"
#include "agent/control_server.h"
#include "agent/engine.h"
#include "agent/hq_commands.h"
#include "agent/notices.h"
#include "agent/reload.h"
#include "agent/remediation_runner.h"
#include "agent/retention.h"
#include "agent/scheduler.h"
#include "agent/status.h"
#include "agent/store.h"
#include "agent/store_writer.h"
#include "base/log.h"
#include "os/process.h"
#include "sync/mqtt_transport.h"
#include "sync/notifier.h"
#include "sync/publisher.h"

namespace storewatch::agent {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr auto kProbeStateFlush = std::chrono::seconds(60);
constexpr auto kStopGrace = std::chrono::milliseconds(2000);
constexpr auto kTick = std::chrono::seconds(1);
constexpr auto kFirstPrune = std::chrono::seconds(5);
constexpr auto kPruneEvery = std::chrono::minutes(10);
constexpr auto kPruneAgain = std::chrono::seconds(1);
constexpr auto kCertCheckEvery = std::chrono::hours(24);
/// The longest stall the test hook (STOREWATCH_TEST_STALL_SECONDS) makes.
constexpr int kMaxTestStallSeconds = 120;

/// The config in force and its reloads, for `status` and STATUS=.
struct ConfigState {
  std::string hash;
  WallTime loaded_at;
  int reloads = 0;  ///< accepted since start
  int refused = 0;  ///< refused since start
  std::optional<WallTime> last_reload_at;
  std::string last_error;   ///< of the last reload; "" when it was accepted
  std::string last_change;  ///< summary of the last accepted reload

  json to_json(const std::vector<std::filesystem::path>& files) const {
    json f = json::array();
    for (const auto& p : files) f.push_back(p.string());
    return json{{"files", std::move(f)},
                {"hash", hash},
                {"loaded_at", format_rfc3339(loaded_at)},
                {"reloads", reloads},
                {"refused", refused},
                {"last_reload_at", last_reload_at ? json(format_rfc3339(*last_reload_at)) : json()},
                {"last_reload_error", last_error},
                {"last_change", last_change}};
  }
};

/// What the last retention run measured, for `status` (written by the
/// writer's thread, read on the loop).
struct StorageFigures {
  std::atomic<std::int64_t> used_bytes{0};
  std::atomic<std::int64_t> cap_bytes{0};
  std::atomic<bool> over_cap{false};

  json to_json() const {
    return json{{"used_bytes", used_bytes.load()},
                {"cap_bytes", cap_bytes.load()},
                {"over_cap", over_cap.load()}};
  }
};

/// Commits failing for this long are the agent's storage incident (a lock
/// held for a moment is not); a full disk is one at once.
constexpr auto kWriterFailingFor = std::chrono::seconds(10);

/// The store writer's trouble in words, or nullopt when it commits. Worded
/// the same while it lasts: the incident is raised once, not per figure.
std::optional<std::string> writer_problem(const StoreWriter::Health& h,
                                          const std::filesystem::path& db,
                                          std::chrono::steady_clock::time_point now) {
  if (h.reserve_released && !h.disk_full) {
    return fmt::format(
        "the disk holding {} is full: storewatch gave up its {} MB reserve and writes into it; "
        "free space on the disk (the reserve is made again by itself)",
        db.string(), StoreWriter::kReserveBytes / (1024 * 1024));
  }
  if (!h.failing_since) return std::nullopt;
  if (h.disk_full) {
    return fmt::format(
        "the disk holding {} is full: changes wait in memory until there is space (`storewatch "
        "status` shows how many); they are lost if the agent stops before then",
        db.string());
  }
  if (now - *h.failing_since < kWriterFailingFor) return std::nullopt;
  return fmt::format(
      "the database {} refuses writes: changes wait in memory (`storewatch status` shows how "
      "many); they are lost if the agent stops before it takes them",
      db.string());
}

/// The agent's storage incident has two sources: retention (the database
/// stuck over its cap) and the store writer (commits failing, a full disk).
/// One incident says whichever are true; it resolves when none is (and no
/// dead letter waits for a person: Engine::dead_letter).
struct StorageProblems {
  Engine& engine;
  const StoreWriter& store_writer;
  std::filesystem::path db;
  std::optional<std::string> cap;
  std::optional<std::string> writer;

  /// The writer's condition now (every second, and as it changes).
  void check_writer() {
    writer = writer_problem(store_writer.health(), db, std::chrono::steady_clock::now());
    report();
  }

  void report() {
    if (cap && writer) {
      engine.set_storage_problem(*writer + "; and " + *cap);
    } else if (cap || writer) {
      engine.set_storage_problem(cap ? cap : writer);
    } else {
      engine.set_storage_problem(std::nullopt);
    }
  }
};

json writer_json(const StoreWriter::Health& h, std::chrono::steady_clock::time_point now) {
  return json{
      {"backlog", h.backlog},
      {"incident_changes", h.incident_changes},
      {"coalesced", h.coalesced},
      {"dropped", h.dropped},
      {"dead_letters", h.dead_letters},
      {"disk_full", h.disk_full},
      {"reserve_released", h.reserve_released},
      {"last_error", h.last_error},
      {"waiting_for_s",
       h.backlog > 0 ? std::chrono::duration<double>(now - h.progress_at).count() : 0.0},
      {"failing_for_s",
       h.failing_since
           ? json(std::chrono::duration_cast<std::chrono::seconds>(now - *h.failing_since).count())
           : json()},
  };
}

/// One bounded retention run; reports the storage condition and returns
/// when to run again (soon while there is more to prune).
std::chrono::milliseconds prune_once(
    Pruner& pruner, Store& store, StorageFigures& figures,
    const std::function<void(std::optional<std::string>)>& report) {
  auto r = pruner.run(store, SystemClock().wall_now());
  if (!r) {
    log::error("retention: {}", r.error().message);
    return kPruneEvery;
  }
  figures.used_bytes = r->used_bytes;
  figures.cap_bytes = r->cap_bytes;
  figures.over_cap = r->over_cap;
  const auto pruned = r->expired_incidents + r->shed_incidents;
  if (pruned > 0) {
    log::info(
        "retention: pruned {} closed incidents ({} past retention, {} shed for the cap) "
        "and {} events; database {} KB of {} KB",
        pruned, r->expired_incidents, r->shed_incidents, r->expired_events + r->shed_events,
        r->used_bytes / 1024, r->cap_bytes / 1024);
  }
  if (r->stuck_over_cap()) {
    report(
        fmt::format("the database holds {} MB, over its {} MB cap (max_db_size), and all of it "
                    "is unsynced events or open incidents, which are never dropped; the agent "
                    "keeps writing",
                    r->used_bytes / (1024 * 1024), r->cap_bytes / (1024 * 1024)));
  } else if (!r->over_cap) {
    report(std::nullopt);
  }
  return r->more ? std::chrono::milliseconds(kPruneAgain) : std::chrono::milliseconds(kPruneEvery);
}

/// One daemon per data directory: an flock on `<data_dir>/storewatch.lock`,
/// held for the life of the process (the kernel drops it on any exit).
class DataDirLock {
 public:
  static Result<DataDirLock> acquire(const std::filesystem::path& dir) {
    auto path = dir / "storewatch.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return Error{
          fmt::format("cannot open lock file {}: {}", path.string(), std::strerror(errno))};
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      char buf[32] = {};
      ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      ::close(fd);
      std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      return Error{fmt::format("another storewatch daemon (pid {}) is running with data dir {}",
                               pid, dir.string())};
    }
    std::string me = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
      log::warn("cannot record pid in {}: {}", path.string(), std::strerror(errno));
    }
    return DataDirLock(fd);
  }
  DataDirLock(DataDirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;
  DataDirLock& operator=(DataDirLock&&) = delete;
  ~DataDirLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

/// sync's view of the store: reads through the loop's connection, writes
/// through the writer.
class StoreOutbox final : public sync::Outbox {
 public:
  StoreOutbox(Store& reader, StoreWriter& writer, std::int64_t session)
      : reader_(reader), writer_(writer), session_(session) {}

  Result<std::vector<wire::Event>> events_after(std::int64_t after, int limit) override {
    auto rows = reader_.events_after(after, limit);
    if (!rows) return rows.error();
    std::vector<wire::Event> out;
    out.reserve(rows->size());
    for (const auto& r : *rows) {
      auto e = to_wire(r);
      if (!e) return e.error();
      out.push_back(std::move(*e));
    }
    return out;
  }
  std::int64_t max_seq() override { return reader_.max_seq().value_or(0); }
  std::int64_t hq_acked_seq() override { return reader_.sync_value(kHqAckedSeq).value_or(0); }
  void record_hq_acked_seq(std::int64_t seq) override {
    writer_.submit(SyncValue{kHqAckedSeq, seq, /*only_if_higher=*/true});
  }
  std::int64_t next_session() override {
    ++session_;
    writer_.submit(SyncValue{kSession, session_, true});
    return session_;
  }
  std::map<std::string, std::int64_t> open_by_severity() override {
    auto r = reader_.open_by_severity();
    return r ? *r : std::map<std::string, std::int64_t>{};
  }
  std::int64_t queued() override { return reader_.queued().value_or(0); }

 private:
  Store& reader_;
  StoreWriter& writer_;
  std::int64_t session_;
};

/// The notifier's view of the store: reads through the loop's connection,
/// writes through the writer; a dropped notice is a note on its incident.
class StoreNotifyOutbox final : public sync::NotifyOutbox {
 public:
  StoreNotifyOutbox(Store& reader, StoreWriter& writer, Engine& engine)
      : reader_(reader), writer_(writer), engine_(engine) {}

  Result<std::vector<sync::Notice>> due(std::int64_t now_ms, int limit) override {
    return reader_.due_notices(now_ms, limit);
  }
  Result<std::vector<sync::Notice>> queued(const std::string& channel, int limit) override {
    return reader_.queued_notices(channel, limit);
  }
  Result<std::vector<std::int64_t>> sent_since(const std::string& channel,
                                               std::int64_t since_ms) override {
    return reader_.notices_sent_since(channel, since_ms);
  }
  Result<std::optional<std::int64_t>> next_due() override { return reader_.next_notice_due(); }
  void update(sync::NoticeUpdate u) override { writer_.submit(std::move(u)); }
  void dropped(const sync::Notice& n, const std::string& why) override {
    auto stored = reader_.incident(n.incident_uid);
    // The agent drops it: DESIGN §6's actors are agent, cli:NAME and hq:NAME.
    auto r = engine_.act(Engine::Action::note, n.incident_uid, "agent",
                         fmt::format("{} notice to channel {} dropped: {}", n.kind, n.channel, why),
                         stored ? *stored : std::nullopt);
    if (!r) log::error("notify: recording the dropped notice: {}", r.error().message);
  }

 private:
  Store& reader_;
  StoreWriter& writer_;
  Engine& engine_;
};

json commands_json(const HqCommands::Stats& s) {
  return json{{"received", s.received},
              {"applied", s.applied},
              {"refused", s.refused},
              {"duplicates", s.duplicates}};
}

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

/// The client certificate the link to HQ uses, and the warning before it
/// expires: a log line, `sync status` and the agent's own incident.
class ClientCertWatch {
 public:
  ClientCertWatch(const config::SyncConfig& sync, Engine& engine) : sync_(sync), engine_(engine) {}

  /// Reads cert_file as it is now: at start, and after a reload was accepted.
  void load() {
    if (sync_.cert_file.empty()) {
      // No certificate (any more): an incident of an earlier run is over.
      engine_.set_client_cert_problem(std::nullopt, config::Severity::high);
      return;
    }
    auto cert = sync::read_cert(sync_.cert_file);
    if (!cert) {
      error_ = cert.error().message;
      log::warn("sync: cannot read the client certificate's expiry: {}", error_);
      return;
    }
    error_.clear();
    info_ = std::move(*cert);
    log::info("sync: client certificate {} ({}) valid until {}", info_->file.string(),
              info_->subject, format_rfc3339(info_->not_after));
    check();
  }

  /// Compares the expiry of the certificate in use with now (daily, and
  /// after each load).
  void check() {
    if (!info_) return;
    const WallTime now = SystemClock().wall_now();
    auto problem = sync::expiry_problem(*info_, sync_.cert_warn_days, now);
    if (problem) {
      log::warn("sync: {}", *problem);
    } else if (warned_) {
      log::info("sync: the client certificate in use is valid until {}; expiry warning cleared",
                format_rfc3339(info_->not_after));
    }
    warned_ = problem.has_value();
    engine_.set_client_cert_problem(
        problem, info_->not_after <= now ? config::Severity::critical : config::Severity::high);
  }

  json to_json() const { return client_cert_json(sync_, info_, error_, SystemClock().wall_now()); }

 private:
  const config::SyncConfig& sync_;
  Engine& engine_;
  std::optional<sync::CertInfo> info_;
  std::string error_;
  bool warned_ = false;
};

}  // namespace

int run_daemon(config::Config cfg, ConfigLoader load) {
  ::signal(SIGPIPE, SIG_IGN);
  const auto started = SystemClock().wall_now();

  std::error_code ec;
  std::filesystem::create_directories(cfg.agent.data_dir, ec);
  if (ec) {
    log::error("cannot create data dir {}: {}", cfg.agent.data_dir.string(), ec.message());
    return 1;
  }
  auto lock = DataDirLock::acquire(cfg.agent.data_dir);
  if (!lock) {
    log::error("{}", lock.error().message);
    return 1;
  }
  const auto db_path = cfg.agent.data_dir / "storewatch.db";
  auto writer_store = Store::open(db_path, Store::Mode::read_write);
  if (!writer_store) {
    log::error("{}", writer_store.error().message);
    return 1;
  }
  // The loop reads through its own connection; WAL lets it read while the
  // writer commits.
  auto reader = Store::open(db_path, Store::Mode::read_write);
  if (!reader) {
    log::error("{}", reader.error().message);
    return 1;
  }
  EngineSnapshot snapshot;
  std::int64_t session = 0;
  if (auto st = read_snapshot(*reader, SystemClock().wall_now(), snapshot, session); !st) {
    log::error("reading {}: {}", db_path.string(), st.error().message);
    return 1;
  }

  asio::io_context io(1);
  auto control = ControlServer::open(io, cfg.agent.control_socket);
  if (!control) {
    log::error("{}", control.error().message);
    return 1;
  }

  sync::Publisher* publisher_ptr = nullptr;
  HqCommands* commands_ptr = nullptr;
  sync::Notifier* notifier_ptr = nullptr;
  Engine* engine_ptr = nullptr;
  StoreWriter* writer_ptr = nullptr;
  StorageProblems* storage_problems_ptr = nullptr;
  StoreWriter writer(
      std::move(*writer_store), io,
      [&publisher_ptr, &commands_ptr, &notifier_ptr, &engine_ptr, &writer_ptr] {
        if (engine_ptr != nullptr && writer_ptr != nullptr) {
          engine_ptr->on_committed(writer_ptr->committed());
        }
        if (publisher_ptr != nullptr) publisher_ptr->notify();
        if (commands_ptr != nullptr) commands_ptr->on_commit();
        if (notifier_ptr != nullptr) notifier_ptr->kick();
      },
      [&engine_ptr](const DeadLetter& letter) {
        if (engine_ptr != nullptr) engine_ptr->dead_letter(letter.what);
      },
      [&storage_problems_ptr] {
        if (storage_problems_ptr != nullptr) storage_problems_ptr->check_writer();
      });
  writer_ptr = &writer;
  SystemClock clock;
  std::unique_ptr<RemediationRunner> runner = make_remediation_runner(io);
  // Scheduler and engine need each other: the engine asks for re-checks,
  // posted so the scheduler never calls back into the engine re-entrantly.
  Scheduler* scheduler_ptr = nullptr;
  EngineHooks hooks;
  hooks.run_now = [&io, &scheduler_ptr](const std::string& probe) {
    asio::post(io, [&scheduler_ptr, probe] {
      if (scheduler_ptr != nullptr) scheduler_ptr->run_now(probe);
    });
  };
  hooks.runner = runner.get();
  // Incidents the engine no longer holds, as committed (closing them after
  // close_after): the loop's own connection.
  hooks.stored = [&reader](const std::string& uid) -> std::optional<Incident> {
    auto found = reader->incident(uid);
    if (!found || !*found || (*found)->uid != uid) return std::nullopt;
    return std::move(**found);
  };
  // Notices ride with the change that causes them (agent/notices.h).
  if (!cfg.notify.empty()) {
    hooks.notices = [&cfg, &engine_ptr](const Incident& inc, const IncidentEvent& ev) {
      const bool silenced = engine_ptr != nullptr && engine_ptr->silenced(inc.probe).has_value();
      return notices_for(cfg, inc, ev, silenced);
    };
  }
  // HQ's commands reach the engine as the CLI's do; what a command changes
  // is committed with its id (agent/hq_commands.h).
  CommandSink command_sink(writer);
  Engine engine(cfg, clock, command_sink, hooks);
  engine_ptr = &engine;
  engine.restore(std::move(snapshot));
  if (auto letters = reader->dead_letters(0); letters && letters->count > 0) {
    // Dead letters newer than the open storage incident: it waits for a
    // person, whatever the disk says now.
    for (const auto& [key, inc] : engine.unresolved()) {
      if (inc.probe == kAgentProbe && inc.condition == kConditionStorage && inc.t_detect &&
          format_rfc3339(*inc.t_detect) <= letters->newest_at) {
        engine.dead_letter("", /*record=*/false);
      }
    }
    log::warn(
        "store: the dead_letters table holds {} changes the database refused; "
        "`storewatch doctor` lists them",
        letters->count);
  }

  // Retention and the size cap, on the writer's thread between its batches;
  // a database stuck over its cap is the agent's own critical incident.
  Pruner pruner(
      PrunePolicy{.retention = cfg.agent.retention, .max_db_bytes = cfg.agent.max_db_bytes});
  StorageFigures storage;
  StorageProblems storage_problems{engine, writer, db_path, std::nullopt, std::nullopt};
  storage_problems_ptr = &storage_problems;
  writer.schedule(kFirstPrune, [&pruner, &io, &storage_problems, &storage, &cfg](Store& s) {
    // HQ command ids are kept as long as closed history.
    if (auto r = s.prune_commands(SystemClock().wall_now() - cfg.agent.retention, 1000); !r) {
      log::error("retention: command ids: {}", r.error().message);
    }
    // So are notifications sent or dropped; queued ones never go.
    const auto before = SystemClock().wall_now() - cfg.agent.retention;
    if (auto r = s.prune_notifications(
            std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch())
                .count(),
            1000);
        !r) {
      log::error("retention: notifications: {}", r.error().message);
    }
    return prune_once(pruner, s, storage,
                      [&io, &storage_problems](std::optional<std::string> problem) {
                        asio::post(io, [&storage_problems, problem = std::move(problem)] {
                          storage_problems.cap = problem;
                          storage_problems.report();
                        });
                      });
  });
  StoreOutbox outbox(*reader, writer, session);
  StoreNotifyOutbox notify_outbox(*reader, writer, engine);
  std::optional<sync::Notifier> notifier;
  if (!cfg.notify.empty()) {
    notifier.emplace(io, cfg, notify_outbox);
    notifier_ptr = &*notifier;
  }

  std::unique_ptr<sync::MqttTransport> transport;
  std::optional<sync::Publisher> publisher;
  std::string sync_error;
  {
    sync::MqttOptions mo;
    mo.broker = cfg.sync;
    mo.client_id = cfg.store.id;
    auto t = sync::MqttTransport::create(io, std::move(mo));
    if (t) {
      transport = std::move(*t);
      publisher.emplace(io, cfg, outbox, *transport);
      publisher_ptr = &*publisher;
    } else {
      // Keep probing and recording incidents: they wait in the outbox.
      sync_error = t.error().message;
      log::error("sync disabled, incidents are kept locally: {}", sync_error);
    }
  }

  ClientCertWatch cert_watch(cfg.sync, engine);
  cert_watch.load();

  HqCommandHooks command_hooks;
  if (publisher) {
    command_hooks.answer = [&publisher](std::string payload) {
      publisher->answer_command(std::move(payload));
    };
    command_hooks.resync = [&publisher](std::int64_t from_seq) { publisher->resync(from_seq); };
  }
  command_hooks.run_probe = [&scheduler_ptr](const std::string& probe) {
    return scheduler_ptr != nullptr && scheduler_ptr->run_now(probe);
  };
  HqCommands hq_commands(cfg, clock, engine, *reader, command_sink, std::move(command_hooks));
  commands_ptr = &hq_commands;
  if (publisher) {
    publisher->on_command(
        [&hq_commands](const std::string& payload) { hq_commands.on_command(payload); });
  }

  Scheduler scheduler(
      io, cfg, [&engine, &hq_commands](const std::string& probe, const probes::ProbeResult& r) {
        engine.on_result(probe, r);
        hq_commands.on_probe_result(probe, r);
      });
  scheduler_ptr = &scheduler;

  ConfigState config_state;
  config_state.hash = sync::config_digest(cfg.files);
  config_state.loaded_at = started;

  auto live_status = [&]() {
    json probes = json::array();
    for (const auto& p : engine.probes()) probes.push_back(probe_json(p));
    sync::PublisherStats ps = publisher ? publisher->stats() : sync::PublisherStats{};
    if (!publisher) {
      ps.last_error = sync_error;
      ps.queued = outbox.queued();
      ps.hq_acked_seq = outbox.hq_acked_seq();
    }
    return json{
        {"store", cfg.store.id},
        {"probes", std::move(probes)},
        {"sync",
         [&] {
           json s = sync_json(cfg, ps, SystemClock().wall_now());
           s["commands"] = commands_json(hq_commands.stats());
           s["client_cert"] = cert_watch.to_json();
           return s;
         }()},
        {"incidents", {{"open", outbox.open_by_severity()}}},
        {"notify", notifier ? json{{"channels", cfg.notify.size()},
                                   {"sent", notifier->stats().sent},
                                   {"failed_attempts", notifier->stats().failed_attempts},
                                   {"dropped", notifier->stats().dropped},
                                   {"last_error", notifier->stats().last_error}}
                            : json{{"channels", 0}}},
        {"agent",
         {{"running", true},
          {"pid", ::getpid()},
          {"version", STOREWATCH_VERSION},
          {"started_at", format_rfc3339(started)},
          {"config", config_state.to_json(cfg.files)},
          {"store_backlog", writer.backlog()},
          {"store_writer", writer_json(writer.health(), std::chrono::steady_clock::now())},
          {"storage", storage.to_json()},
          {"schedule", schedule_json(scheduler.schedule_stats())}}},
    };
  };
  (*control)->handle("ping", [](const json&, const Peer&) { return json{{"pong", true}}; });
  (*control)->handle("status", [&](const json&, const Peer&) {
    return json{{"status", live_status()}};
  });
  add_incident_handlers(**control, engine, *reader, cfg);

  auto status_line = [&]() {
    int failing = 0;
    auto probes = engine.probes();
    for (const auto& p : probes) failing += p.level == CheckLevel::hard_fail;
    std::string line = fmt::format(
        "{} probes, {} failing; {} open incidents; sync {}, {} queued", probes.size(), failing,
        engine.unresolved().size(),
        publisher && publisher->stats().connected ? "connected" : "offline", outbox.queued());
    if (!config_state.last_error.empty()) line += "; config reload refused (see the log)";
    return line;
  };

  // Periodic work on the loop: flush probe_state, feed the watchdog. Both
  // run only while the loop makes progress.
  asio::steady_timer flush_timer(io);
  std::function<void()> arm_flush = [&]() {
    flush_timer.expires_after(kProbeStateFlush);
    flush_timer.async_wait([&](const boost::system::error_code& e) {
      if (e) return;
      engine.flush_probe_states();
      ::sd_notifyf(0, "STATUS=%s", status_line().c_str());
      arm_flush();
    });
  };
  // The engine's waiting work (close_after, backoff, verify, silences).
  asio::steady_timer tick_timer(io);
  std::function<void()> arm_tick = [&]() {
    tick_timer.expires_after(kTick);
    tick_timer.async_wait([&](const boost::system::error_code& e) {
      if (e) return;
      storage_problems.check_writer();
      engine.tick();
      arm_tick();
    });
  };
  asio::steady_timer watchdog_timer(io);
  std::uint64_t watchdog_usec = 0;
  const bool watchdog = ::sd_watchdog_enabled(0, &watchdog_usec) > 0;
  // The pings also stop while the store writer is wedged (changes wait and
  // nothing commits, for a reason other than a full disk): systemd then
  // restarts the agent (agent/store_writer.h).
  bool watchdog_withheld = false;
  std::function<void()> arm_watchdog = [&]() {
    watchdog_timer.expires_after(std::chrono::microseconds(watchdog_usec / 2));
    watchdog_timer.async_wait([&](const boost::system::error_code& e) {
      if (e) return;
      const auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::microseconds(watchdog_usec / 2));
      if (writer.stalled(std::chrono::steady_clock::now(), limit)) {
        if (!watchdog_withheld) {
          const auto h = writer.health();
          log::error(
              "watchdog: not pinging systemd: the store writer has committed nothing for {} s "
              "with {} changes waiting ({}); systemd restarts the agent if this lasts",
              limit.count() / 1000, h.backlog,
              h.last_error.empty() ? std::string("no answer from the database") : h.last_error);
        }
        watchdog_withheld = true;
      } else {
        if (watchdog_withheld) log::info("watchdog: the store writer commits again; pinging");
        watchdog_withheld = false;
        ::sd_notify(0, "WATCHDOG=1");
      }
      arm_watchdog();
    });
  };

  asio::steady_timer cert_timer(io);
  std::function<void()> arm_cert_check = [&]() {
    cert_timer.expires_after(kCertCheckEvery);
    cert_timer.async_wait([&](const boost::system::error_code& e) {
      if (e) return;
      cert_watch.check();
      arm_cert_check();
    });
  };

  // SIGHUP, part 1: the whole config (agent/reload.h). A config that does
  // not load, or changes a key that needs a restart, is refused as a whole
  // and the running one stays. So is one whose check in a child process
  // (ReloadPreflight) crashed or hung: `unsafe` says why.
  ReloadPreflight preflight(io.get_executor(), ReloadPreflight::check_command(cfg));
  auto reload_config = [&](const std::optional<std::string>& unsafe) {
    if (!load) return;
    const WallTime now = SystemClock().wall_now();
    config_state.last_reload_at = now;
    auto refuse = [&](const std::string& why) {
      log::error("SIGHUP: config refused, the running config stays: {}", why);
      config_state.last_error = why;
      ++config_state.refused;
    };
    if (unsafe) return refuse(*unsafe);
    log::info("SIGHUP: re-reading the config ({} and its drop-ins)",
              cfg.files.empty() ? std::string("?") : cfg.files.front().string());
    auto loaded = load();
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
    ConfigChange change = diff_config(cfg, *loaded.config);
    if (!change.needs_restart.empty()) {
      refuse(
          fmt::format("{} changed, which needs a restart (systemctl restart storewatch); "
                      "put the old value back to reload the rest",
                      fmt::join(change.needs_restart, ", ")));
      return;
    }
    const std::string hash = sync::config_digest(loaded.config->files);
    apply_config(cfg, std::move(*loaded.config));
    log::set_level(cfg.agent.log_level);
    // The engine first: the scheduler may start checks whose results it takes.
    engine.reconfigure(change);
    scheduler.reconfigure(change.rescheduled);
    config_state.last_error.clear();
    ++config_state.reloads;
    config_state.loaded_at = now;
    config_state.last_change = change.any() ? change.summary() : "nothing changed";
    if (hash != config_state.hash) {
      config_state.hash = hash;
      if (publisher) publisher->set_config_hash(hash);
    }
    log::info("SIGHUP: config reloaded ({}): {}", hash.substr(0, 19), config_state.last_change);
  };

  // SIGHUP, part 2: the sync TLS files (the same paths, new contents).
  auto reload_tls = [&]() {
    log::info(
        "SIGHUP: re-reading the sync TLS files (ca_file, cert_file, key_file, password_file)");
    if (!transport) {
      log::warn("SIGHUP: sync is disabled ({}); restart the service to apply new files",
                sync_error);
      cert_watch.load();
    } else if (auto r = transport->reload_tls(cfg.sync); !r) {
      const std::string why =
          "SIGHUP: new TLS files refused, the connection keeps the old ones: " + r.error().message;
      log::error("{}", why);
      publisher->note_error(why);
      cert_watch.check();
    } else if (*r) {
      log::info("SIGHUP: TLS files reloaded; reconnecting to {} with them", cfg.sync.broker);
      cert_watch.load();
    } else {
      log::info("SIGHUP: TLS files unchanged; the connection is kept");
      cert_watch.check();
    }
  };

  auto reload = [&]() {
    // Type=notify-reload wants RELOADING=1 with the monotonic time, then
    // READY=1; under Type=notify they are harmless.
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
                      static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
    ::sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the config", usec);
    auto finish = [&](const std::optional<std::string>& unsafe) {
      reload_config(unsafe);
      reload_tls();
      ::sd_notifyf(0, "READY=1\nSTATUS=%s", status_line().c_str());
    };
    if (load) {
      preflight.run(finish);
    } else {
      finish(std::nullopt);
    }
  };

  // TEST HOOK, for tests/integration/watchdog_test.cpp only: with
  // STOREWATCH_TEST_STALL_SECONDS=N in the environment, SIGUSR2 blocks the
  // event loop for N seconds (at most kMaxTestStallSeconds), as a handler
  // that hangs would, so the test can see the watchdog pings stop. Without
  // the variable SIGUSR2 is not even caught.
  int test_stall_seconds = 0;
  if (const char* v = std::getenv("STOREWATCH_TEST_STALL_SECONDS"); v != nullptr && *v != '\0') {
    test_stall_seconds = std::clamp(std::atoi(v), 0, kMaxTestStallSeconds);
  }

  bool stopping = false;
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  if (test_stall_seconds > 0) signals.add(SIGUSR2);
  std::function<void()> wait_signal = [&]() {
    signals.async_wait([&](const boost::system::error_code& e, int sig) {
      if (e) return;
      if (sig == SIGHUP) {
        if (!stopping) reload();
        wait_signal();
        return;
      }
      if (sig == SIGUSR2) {
        log::warn("test hook: blocking the event loop for {} s (STOREWATCH_TEST_STALL_SECONDS)",
                  test_stall_seconds);
        std::this_thread::sleep_for(std::chrono::seconds(test_stall_seconds));
        log::warn("test hook: the event loop runs again");
        wait_signal();
        return;
      }
      if (stopping) return;
      stopping = true;
      log::info("received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      ::sd_notify(0, "STOPPING=1");
      preflight.cancel();
      scheduler.stop();
      engine.stop();
      runner->stop();
      (*control)->stop();
      flush_timer.cancel();
      tick_timer.cancel();
      watchdog_timer.cancel();
      cert_timer.cancel();
      engine.flush_probe_states();
      if (publisher) publisher->stop(kStopGrace, [] {});
      if (notifier) notifier->stop();
    });
  };
  wait_signal();

  scheduler.start();
  (*control)->start();
  if (publisher) publisher->start();
  if (notifier) notifier->start();
  arm_flush();
  engine.tick();
  arm_tick();
  arm_cert_check();
  if (watchdog) arm_watchdog();
  log::info("storewatch {} running for store {}: {} probes, database {}, control socket {}",
            STOREWATCH_VERSION, cfg.store.id, cfg.probes.size(), db_path.string(),
            cfg.agent.control_socket.string());
  log::info("plugins and exec remediations: each run contained in {}",
            os::containment_description());
  ::sd_notifyf(0, "READY=1\nSTATUS=%s", status_line().c_str());

  io.run();

  writer.stop();
  log::info("stopped");
  return 0;
}

}  // namespace storewatch::agent
