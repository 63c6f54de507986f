// Builds an honest outbox backlog for the sync benchmark (docs/BENCHMARKS.md,
// "Sync to HQ", tests/bench/sync_load.py): the real incident engine, fed
// failing and ok results for PROBES tcp probes in turn, writes its incidents
// and their events through the real StoreWriter into a real agent database,
// the same code path as `storewatch run` with flapping devices and no broker.
//
// Each probe fails twice, then is ok twice (fail_after = recover_after = 1,
// flapping off), so every cycle of four rounds opens (then reopens, within
// the default reopen_window) one incident per probe and resolves it: two
// events per probe. (With reopen_window = 0s every failure would open a new
// incident, and the engine looks for one to reopen among all the resolved
// ones, so the run would be quadratic in the resolved incidents.) It stops at the
// end of the first cycle that brings the events to at least EVENTS, so no
// incident is left open (a daemon started on the file without these probes
// would otherwise resolve them, adding events). Prints one JSON object:
// {"events": N, "incidents": M, "max_seq": S, "seconds": T, "store": ID}.
//
//   sync_backlog --db DIR/storewatch.db --store S [--events 100000] [--probes 1000]

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <fmt/format.h>

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
#include "probes/registry.h"
#include "tests/bench/bench_config.h"

namespace storewatch::bench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "sync_backlog: %s\n", what.c_str());
  std::exit(1);
}

/// Counts the incident events on their way to the writer.
class CountingSink final : public agent::ChangeSink {
 public:
  explicit CountingSink(agent::ChangeSink& next) : next_(next) {}
  void submit(agent::Change change) override {
    if (std::holds_alternative<agent::IncidentChange>(change)) ++events;
    next_.submit(std::move(change));
  }
  std::uint64_t events = 0;

 private:
  agent::ChangeSink& next_;
};

config::Config make_config(const std::string& store, int n) {
  return tcp_probes_config(
      fmt::format("[store]\nid = \"{}\"\n[incidents]\nflap_high = 100\nflap_low = 100\n", store), n,
      1, 1);
}

int run(const fs::path& db, const std::string& store_id, std::uint64_t want, int probes) {
  if (fs::exists(db)) die(db.string() + " exists; give a fresh path");
  fs::create_directories(db.parent_path());
  auto store = agent::Store::open(db, agent::Store::Mode::read_write);
  if (!store) die(store.error().message);

  const config::Config config = make_config(store_id, probes);
  std::vector<std::string> names;
  for (const auto& p : config.probes) names.push_back(p.name);

  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread io_thread([&] { io.run(); });
  std::mutex mutex;
  std::condition_variable committed;
  auto writer = std::make_unique<agent::StoreWriter>(std::move(*store), io, [&] {
    std::lock_guard lock(mutex);
    committed.notify_all();
  });
  CountingSink sink(*writer);
  SystemClock clock;
  agent::Engine engine(std::make_shared<const config::Config>(config), clock, sink);

  const auto t0 = std::chrono::steady_clock::now();
  const probes::ProbeResult fail = result_of(probes::ProbeStatus::fail);
  const probes::ProbeResult ok = result_of(probes::ProbeStatus::ok);
  // Bounded: each cycle must add events, at most `want` cycles.
  for (std::uint64_t cycle = 0; sink.events < want; ++cycle) {
    if (cycle >= want) die("the engine writes no events for these results");
    const std::uint64_t before = sink.events;
    for (const auto* r : {&fail, &fail, &ok, &ok}) {
      for (const auto& n : names) engine.on_result(n, *r);
    }
    if (sink.events == before) die("a cycle of results wrote no event");
    // Keep the writer's queue bounded, as the daemon's results would.
    std::unique_lock lock(mutex);
    committed.wait(lock, [&] { return writer->backlog() < 4 * names.size(); });
  }
  if (!engine.unresolved().empty()) {
    die(fmt::format("{} incidents left open", engine.unresolved().size()));
  }
  writer->stop();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  writer.reset();
  work.reset();
  io_thread.join();

  auto check = agent::Store::open(db, agent::Store::Mode::read_only);
  if (!check) die(check.error().message);
  const auto max_seq = check->max_seq();
  if (!max_seq) die(max_seq.error().message);
  if (static_cast<std::uint64_t>(*max_seq) != sink.events) {
    die(fmt::format("{} events submitted but the last seq is {}", sink.events, *max_seq));
  }
  std::printf("%s\n", json{{"events", sink.events},
                           {"max_seq", *max_seq},
                           {"probes", probes},
                           {"seconds", seconds},
                           {"store", store_id}}
                          .dump()
                          .c_str());
  return 0;
}

}  // namespace
}  // namespace storewatch::bench

int main(int argc, char** argv) {
  CLI::App app{"Writes an outbox backlog of real incident events into a fresh agent database"};
  std::string db;
  std::string store = "bench-store";
  std::uint64_t events = 100000;
  int probes = 1000;
  app.add_option("--db", db, "the agent database to create (DATA_DIR/storewatch.db)")->required();
  app.add_option("--store", store, "the store id");
  app.add_option("--events", events, "at least this many events")->check(CLI::Range(1, 100000000));
  app.add_option("--probes", probes, "flapping probes")->check(CLI::Range(1, 10000));
  CLI11_PARSE(app, argc, argv);
  storewatch::log::set_level(storewatch::log::Level::error);  // a line per incident otherwise
  return storewatch::bench::run(db, store, events, probes);
}
