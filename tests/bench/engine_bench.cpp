// The incident engine's two throughput figures (issue 4, docs/BENCHMARKS.md),
// on real SQLite files:
//
//  (a) results per second that change nothing: Engine::on_result fed ok
//      results for PROBES probes, round after round, the engine wired to a
//      real StoreWriter on a real file, so any write it made would show (it
//      must make none); and the same with failing results for probes whose
//      incident is already open;
//  (b) state-changing events committed per second with synchronous=FULL:
//      IncidentChange rows (an incident opened, then resolved) pushed through
//      the real StoreWriter as fast as it takes them, timed until the last
//      commit; and one row per transaction (submit, wait for its commit) for
//      the ratio. The writer's own counters give the batch sizes; plain SQLite
//      inserts on the same disk (100 rows and 1 row per transaction) say what
//      the disk allowed at that moment;
//  (c) memory held for resolved incidents (issue 18): incidents opened and
//      resolved through the engine, 1,000 a minute on a driven clock, for
//      RESOLVED_MINUTES minutes (close_after 24 h, so none closes), handed to
//      a sink that drops them as committed (SQLite's page cache is not the
//      engine's); the heap in use (mallinfo2) before and after, per incident.
//
// Exits non-zero if (a) wrote anything or (b) lost an event. Prints one JSON
// object on stdout (tests/bench/engine_load.py turns it into
// the Markdown section) and a summary on stderr.
//
//   engine_bench [--probes 1000] [--rounds 300] [--events 200000]
//                [--single-seconds 5] [--resolved-minutes 13] [--reps 3] [--dir DIR]

#include <malloc.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/engine.h"
#include "agent/store.h"
#include "agent/store_writer.h"
#include "base/clock.h"
#include "base/log.h"
#include "config/config.h"
#include "incident/incident.h"
#include "probes/registry.h"
#include "tests/bench/bench_config.h"

namespace storewatch::bench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Steady = std::chrono::steady_clock;

double seconds_since(Steady::time_point t0) {
  return std::chrono::duration<double>(Steady::now() - t0).count();
}

/// CPU time of the whole process (every thread), user + system.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "engine_bench: %s\n", what.c_str());
  std::exit(1);
}

/// A StoreWriter on a fresh file with its io_context running on a thread of
/// its own (the daemon's loop), and a way to wait for its commits.
class Writer {
 public:
  explicit Writer(const fs::path& file) {
    fs::remove(file);
    fs::remove(file.string() + "-wal");
    fs::remove(file.string() + "-shm");
    auto store = agent::Store::open(file, agent::Store::Mode::read_write);
    if (!store) die(store.error().message);
    // The writer's connection is this one: read back what Store::open set.
    {
      auto sync = store->database().prepare("PRAGMA synchronous");
      if (!sync || !sync->step().value_or(false)) die("cannot read PRAGMA synchronous");
      synchronous_ = sync->int64(0);
    }
    io_thread_ = std::thread([this] { io_.run(); });
    writer_ = std::make_unique<agent::StoreWriter>(std::move(*store), io_, [this] {
      {
        std::lock_guard lock(mutex_);
        ++commits_;
      }
      committed_.notify_all();
    });
  }
  ~Writer() {
    writer_->stop();
    work_.reset();
    io_thread_.join();
  }

  agent::StoreWriter& writer() { return *writer_; }
  /// 2 = FULL.
  std::int64_t synchronous() const { return synchronous_; }

  /// Waits until everything submitted is committed.
  void drain() {
    std::unique_lock lock(mutex_);
    committed_.wait(lock, [this] { return writer_->backlog() == 0; });
  }
  /// Waits for the commit after `commits` commits (one row per transaction).
  void wait_commits(std::uint64_t commits) {
    std::unique_lock lock(mutex_);
    committed_.wait(lock, [&] { return commits_ >= commits; });
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::thread io_thread_;
  std::unique_ptr<agent::StoreWriter> writer_;
  std::int64_t synchronous_ = -1;
  std::mutex mutex_;
  std::condition_variable committed_;
  std::uint64_t commits_ = 0;
};

/// A config of `n` tcp probes (through the real loader, like the daemon's).
config::Config make_config(int n) {
  return tcp_probes_config("[store]\nid = \"store-bench\"\n", n, 3, 2);
}

/// The one place the engine is built: its constructor may gain parameters.
std::unique_ptr<agent::Engine> make_engine(const config::Config& config, const Clock& clock,
                                           agent::ChangeSink& sink) {
  return std::make_unique<agent::Engine>(std::make_shared<const config::Config>(config), clock,
                                         sink);
}

/// (a): `rounds` rounds of one `status` result per probe after a warm-up that
/// brings every probe to the level that status keeps it at.
json results_without_change(const config::Config& config, const fs::path& dir, int rounds,
                            probes::ProbeStatus status) {
  Writer w(dir / "engine-a.db");
  SystemClock clock;
  auto engine = make_engine(config, clock, w.writer());
  std::vector<std::string> names;
  for (const auto& p : config.probes) names.push_back(p.name);
  const probes::ProbeResult r = result_of(status);

  // Warm-up: first results move every probe out of `unknown` (and, failing,
  // to hard_fail with an open incident): those are state changes, written.
  for (int i = 0; i < 5; ++i) {
    for (const auto& n : names) engine->on_result(n, r);
  }
  w.drain();
  const auto before = w.writer().stats();

  const auto t0 = Steady::now();
  for (int round = 0; round < rounds; ++round) {
    for (const auto& n : names) engine->on_result(n, r);
  }
  const double elapsed = seconds_since(t0);
  const std::size_t backlog = w.writer().backlog();
  w.drain();
  const auto after = w.writer().stats();
  const double results = static_cast<double>(rounds) * static_cast<double>(names.size());
  return json{{"results", results},
              {"seconds", elapsed},
              {"per_second", results / elapsed},
              {"open_incidents", engine->unresolved().size()},
              {"backlog_after", backlog},
              {"changes_written", after.changes - before.changes},
              {"warmup_changes", before.changes}};
}

/// The `i`-th of a stream of changes: incidents opened and resolved in turn
/// over `probes` probes, each a full row plus its event.
agent::IncidentChange change_of(std::size_t i, int probes, WallTime at) {
  const std::size_t k = i / 2;
  Incident inc;
  inc.uid = fmt::format("01900000-0000-7000-8000-{:012x}", k);
  inc.probe = fmt::format("p{:04}", k % static_cast<std::size_t>(probes));
  inc.dedup_key = "store-bench:" + inc.probe + ":down";
  inc.condition = "down";
  inc.severity = config::Severity::high;
  inc.priority = priority_for(inc.severity);
  inc.t_fault = at - std::chrono::milliseconds(3000);
  inc.t_detect = at;
  inc.summary = inc.probe + " is down: connect to 127.0.0.1:9: connection refused";
  std::string type = "opened";
  if (i % 2 == 1) {
    inc.state = IncidentState::resolved;
    inc.t_restored = at;
    inc.t_resolved = at;
    type = "resolved";
  }
  IncidentEvent ev{new_uid(at), type, at, "agent",
                   json{{"message", "connect to 127.0.0.1:9: connection refused"}}};
  return agent::IncidentChange{std::move(inc), std::move(ev)};
}

json writer_stats(const agent::StoreWriter::Stats& s) {
  return json{{"batches", s.batches},
              {"changes", s.changes},
              {"largest_batch", s.largest_batch},
              {"checkpoints", s.checkpoints},
              {"mean_batch", s.batches ? static_cast<double>(s.changes) / s.batches : 0.0}};
}

std::int64_t events_in(const fs::path& file) {
  auto store = agent::Store::open(file, agent::Store::Mode::read_only);
  if (!store) die(store.error().message);
  return store->max_seq().value_or(-1);
}

/// (b) group commit: `n` changes submitted as fast as the writer takes them.
json group_commit(const fs::path& dir, std::size_t n, int probes) {
  const fs::path file = dir / "engine-b.db";
  std::vector<agent::Change> changes;
  changes.reserve(n);
  const WallTime at = SystemClock().wall_now();
  for (std::size_t i = 0; i < n; ++i) changes.emplace_back(change_of(i, probes, at));

  json out;
  {
    Writer w(file);
    const double cpu0 = cpu_seconds();
    const auto t0 = Steady::now();
    for (auto& c : changes) w.writer().submit(std::move(c));
    const double submitted = seconds_since(t0);
    w.drain();
    const double elapsed = seconds_since(t0);
    out = json{{"changes", n},
               {"seconds", elapsed},
               {"cpu_seconds", cpu_seconds() - cpu0},
               {"submit_seconds", submitted},
               {"per_second", static_cast<double>(n) / elapsed},
               {"synchronous", w.synchronous()},
               {"writer", writer_stats(w.writer().stats())}};
  }
  out["events_in_file"] = events_in(file);
  return out;
}

/// (b) one row per transaction: submit one change, wait for its commit.
json one_per_transaction(const fs::path& dir, double seconds, int probes) {
  const fs::path file = dir / "engine-b1.db";
  json out;
  {
    Writer w(file);
    const WallTime at = SystemClock().wall_now();
    std::size_t i = 0;
    const double cpu0 = cpu_seconds();
    const auto t0 = Steady::now();
    while (seconds_since(t0) < seconds) {
      w.writer().submit(change_of(i, probes, at));
      w.wait_commits(++i);
    }
    const double elapsed = seconds_since(t0);
    out = json{{"changes", i},
               {"seconds", elapsed},
               {"cpu_seconds", cpu_seconds() - cpu0},
               {"per_second", static_cast<double>(i) / elapsed},
               {"synchronous", w.synchronous()},
               {"writer", writer_stats(w.writer().stats())}};
  }
  out["events_in_file"] = events_in(file);
  return out;
}

/// A clock the benchmark drives: minutes of a store's life in seconds.
class DrivenClock final : public Clock {
 public:
  SteadyTime steady_now() const override { return steady_; }
  WallTime wall_now() const override { return wall_; }
  void advance(std::chrono::milliseconds d) {
    steady_ += d;
    wall_ += d;
  }

 private:
  SteadyTime steady_{};
  WallTime wall_ = SystemClock().wall_now();
};

std::size_t heap_in_use() {
  ::malloc_trim(0);
  return mallinfo2().uordblks;
}

/// Takes the engine's changes as a writer would once it has committed them
/// (they are dropped at once), counting incidents opened and resolved: (c)
/// measures what the engine itself holds, not SQLite's page cache.
class CountingSink final : public agent::ChangeSink {
 public:
  void submit(agent::Change change) override {
    ++submitted_;
    if (const auto* c = std::get_if<agent::IncidentChange>(&change)) {
      if (c->event.type == "opened") ++opened;
      if (c->event.type == "resolved") ++resolved;
      if (c->event.type == "closed" || c->event.type == "reopened") ++other;
    }
  }
  std::uint64_t ticket() const override { return submitted_; }
  std::int64_t opened = 0, resolved = 0, other = 0;

 private:
  std::uint64_t submitted_ = 0;
};

/// (c): incidents opened and resolved, 1,000 a minute for `minutes`, none
/// closing; the heap the engine holds for them afterwards.
json resolved_memory(int minutes) {
  constexpr int kProbes = 50;
  constexpr int kPerMinute = 1000;
  config::Config config = make_config(kProbes);
  config.incidents.close_after = std::chrono::hours(24);
  // A probe fails again 3 s (of store time) after it recovered: past this
  // window, so each failure is a new incident, as 1,000 different ones a
  // minute would be.
  config.incidents.reopen_window = std::chrono::seconds(1);
  CountingSink sink;
  DrivenClock clock;
  auto engine = make_engine(config, clock, sink);
  const probes::ProbeResult fail = result_of(probes::ProbeStatus::fail);
  const probes::ProbeResult ok = result_of(probes::ProbeStatus::ok);
  // One incident: opened at the third failure, resolved at the second
  // success; enough successes after it that the probe never counts as
  // flapping (a flapping probe keeps one incident open instead).
  auto cycle = [&](const std::string& name) {
    for (int i = 0; i < 3; ++i) engine->on_result(name, fail);
    for (int i = 0; i < 20; ++i) engine->on_result(name, ok);
  };
  // Every probe through one incident first: the engine's steady state.
  for (const auto& p : config.probes) cycle(p.name);
  clock.advance(std::chrono::seconds(2));  // past reopen_window: no reopens
  engine->tick();
  engine->on_committed(sink.ticket());
  const std::size_t before = heap_in_use();
  // An incident resolves every 60 ms of store time, each probe in turn.
  const std::chrono::milliseconds step(60'000 / kPerMinute);
  const int total = minutes * kPerMinute;
  const auto t0 = Steady::now();
  for (int k = 0; k < total; ++k) {
    cycle(config.probes[static_cast<std::size_t>(k % kProbes)].name);
    clock.advance(step);
    if (k % kPerMinute == 0) {
      engine->tick();
      engine->on_committed(sink.ticket());
    }
  }
  engine->tick();
  engine->on_committed(sink.ticket());
  const double elapsed = seconds_since(t0);
  const std::size_t after = heap_in_use();
  const double grown = static_cast<double>(after) - static_cast<double>(before);
  // What the figure rests on: every incident opened and resolved, none
  // reopened or closed.
  if (sink.resolved != total + kProbes || sink.opened != sink.resolved || sink.other != 0) {
    die(fmt::format("(c): {} incidents opened, {} resolved, {} reopened or closed; expected {}",
                    sink.opened, sink.resolved, sink.other, total + kProbes));
  }
  return json{{"minutes", minutes},        {"incidents", total},
              {"seconds", elapsed},        {"heap_before_bytes", before},
              {"heap_after_bytes", after}, {"bytes_per_incident", grown / total}};
}

/// What the disk allows at the moment, apart from storewatch's code: plain
/// SQLite (WAL, synchronous=FULL) inserting rows of about an event's size,
/// `per_tx` rows per transaction, for `seconds`.
json sqlite_baseline(const fs::path& dir, int per_tx, double seconds) {
  const fs::path file = dir / "baseline.db";
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(file.string() + suffix);
  sqlite3* db = nullptr;
  auto check = [&](int rc) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
      die(std::string("sqlite baseline: ") + sqlite3_errmsg(db));
    }
  };
  check(sqlite3_open(file.c_str(), &db));
  check(sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                     "CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
                     nullptr, nullptr, nullptr));
  sqlite3_stmt* insert = nullptr;
  check(sqlite3_prepare_v2(db, "INSERT INTO t (body) VALUES (?1)", -1, &insert, nullptr));
  const std::string body(700, 'x');
  std::size_t rows = 0;
  const auto t0 = Steady::now();
  while (seconds_since(t0) < seconds) {
    check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr));
    for (int i = 0; i < per_tx; ++i) {
      sqlite3_bind_text(insert, 1, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
      check(sqlite3_step(insert));
      sqlite3_reset(insert);
      ++rows;
    }
    check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr));
  }
  const double elapsed = seconds_since(t0);
  sqlite3_finalize(insert);
  sqlite3_close(db);
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(file.string() + suffix);
  return json{{"rows_per_transaction", per_tx},
              {"rows", rows},
              {"seconds", elapsed},
              {"per_second", static_cast<double>(rows) / elapsed}};
}

int main_(int argc, char** argv) {
  CLI::App app{"storewatch incident engine benchmark"};
  int probes = 1000;
  int rounds = 300;
  std::size_t events = 200'000;
  double single_seconds = 5;
  int reps = 3;
  int resolved_minutes = 13;
  fs::path dir = fs::temp_directory_path();
  app.add_option("--probes", probes, "probes in the engine's config")->check(CLI::Range(1, 100000));
  app.add_option("--rounds", rounds, "(a): results per probe measured")->check(CLI::PositiveNumber);
  app.add_option("--events", events, "(b): changes pushed through the writer")
      ->check(CLI::PositiveNumber);
  app.add_option("--single-seconds", single_seconds, "(b): seconds of one row per transaction")
      ->check(CLI::PositiveNumber);
  app.add_option("--resolved-minutes", resolved_minutes,
                 "(c): minutes of 1,000 incidents a minute, resolved and held")
      ->check(CLI::Range(1, 24 * 60));
  app.add_option("--reps", reps, "repetitions of each measure")->check(CLI::Range(1, 100));
  app.add_option("--dir", dir, "where the database files go (a real disk: fsync is measured)")
      ->check(CLI::ExistingDirectory);
  CLI11_PARSE(app, argc, argv);
  // The warm-up of the failing run opens an incident per probe: not news.
  log::set_level(log::Level::error);

  const fs::path work = dir / fmt::format("storewatch-engine-bench-{}", ::getpid());
  fs::create_directories(work);
  const config::Config config = make_config(probes);

  json out{{"probes", probes},
           {"rounds", rounds},
           {"events", events},
           {"single_seconds", single_seconds},
           {"resolved_minutes", resolved_minutes},
           {"dir", dir.string()}};
  for (int rep = 0; rep < reps; ++rep) {
    json ok = results_without_change(config, work, rounds, probes::ProbeStatus::ok);
    json failing = results_without_change(config, work, rounds, probes::ProbeStatus::fail);
    json group = group_commit(work, events, probes);
    json single = one_per_transaction(work, single_seconds, probes);
    json base100 = sqlite_baseline(work, 100, single_seconds);
    json base1 = sqlite_baseline(work, 1, single_seconds);
    json resolved = resolved_memory(resolved_minutes);
    std::fprintf(
        stderr,
        "rep %d: (a) %.0f ok results/s (%llu written), %.0f failing results/s (%llu "
        "written); (b) %.0f changes/s grouped (%llu batches, largest %llu), %.0f/s one "
        "per transaction; plain SQLite %.0f rows/s in 100-row transactions, %.0f/s one per "
        "transaction; (c) %.0f bytes held per resolved incident (%d incidents)\n",
        rep + 1, ok["per_second"].get<double>(), ok["changes_written"].get<unsigned long long>(),
        failing["per_second"].get<double>(), failing["changes_written"].get<unsigned long long>(),
        group["per_second"].get<double>(), group["writer"]["batches"].get<unsigned long long>(),
        group["writer"]["largest_batch"].get<unsigned long long>(),
        single["per_second"].get<double>(), base100["per_second"].get<double>(),
        base1["per_second"].get<double>(), resolved["bytes_per_incident"].get<double>(),
        resolved["incidents"].get<int>());
    // What the figures rest on: (a) wrote nothing, (b) wrote every event.
    for (const json* a : {&ok, &failing}) {
      if ((*a)["changes_written"] != 0) {
        die(fmt::format("results that change nothing wrote {} changes",
                        (*a)["changes_written"].dump()));
      }
    }
    for (const json* b : {&group, &single}) {
      if ((*b)["events_in_file"] != (*b)["changes"]) {
        die(fmt::format("{} changes submitted but {} events in the file", (*b)["changes"].dump(),
                        (*b)["events_in_file"].dump()));
      }
    }
    out["ok_results"].push_back(std::move(ok));
    out["failing_results"].push_back(std::move(failing));
    out["group_commit"].push_back(std::move(group));
    out["one_per_transaction"].push_back(std::move(single));
    out["sqlite_100_per_transaction"].push_back(std::move(base100));
    out["sqlite_1_per_transaction"].push_back(std::move(base1));
    out["resolved_memory"].push_back(std::move(resolved));
  }
  fs::remove_all(work);
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace
}  // namespace storewatch::bench

int main(int argc, char** argv) {
  return storewatch::bench::main_(argc, argv);
}
