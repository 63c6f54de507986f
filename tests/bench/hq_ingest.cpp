// HQ's storing of events without the broker (docs/BENCHMARKS.md, "HQ
// fleet"): the CPU an `hq run` worker spends per event in decoding a batch
// (wire::decode_batch_for_store) and committing it (HqDatabase::ingest),
// split into user and system time, for SQLite or PostgreSQL. It takes the
// MQTT client, the broker and the machine's other load out of the number
// tests/bench/fleet_load.py measures end to end, so a change to the storing
// path can be weighed in seconds.
//
// STORES stores each send EVENTS events in batches of BATCH (the events of
// tests/bench/fleet_sim.py: an incident opened, then resolved, about 600
// bytes each), one batch per store per round in a random order, committed
// in groups as hq/ingest.cpp groups them (hq::Ingest::kMaxGroup batches or
// kMaxGroupBytes).
// Prints one JSON object.
//
//   hq_ingest --database DIR/hq.db | --database postgresql://… [--stores 1000]
//             [--events 100] [--batch 96] [--first-store 0] [--group-bytes 2097152]
//             [--replace]

#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "hq/hq_database.h"
#include "hq/ingest.h"
#include "sync/wire.h"

namespace storewatch::bench {
namespace {

using nlohmann::json;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "hq_ingest: %s\n", what.c_str());
  std::exit(1);
}

struct Cpu {
  double user = 0, system = 0;
};

Cpu cpu_now() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  const auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6;
  };
  return {secs(u.ru_utime), secs(u.ru_stime)};
}

std::string uid(std::mt19937_64& rng) {
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

// One event as fleet_sim writes it: the incident_state, then the header.
std::string event_text(const std::string& store, std::int64_t n, std::string& incident,
                       const std::string& at, std::mt19937_64& rng) {
  const bool opened = n % 2 == 1;
  if (opened) incident = uid(rng);
  const std::string probe = fmt::format("lane-{:02d}-pos", n % 24);
  json state{{"uid", incident},
             {"probe", probe},
             {"state", opened ? "open" : "resolved"},
             {"severity", "high"},
             {"priority", "P2"},
             {"t_fault", at},
             {"t_detect", at},
             {"t_ack", nullptr},
             {"t_restored", opened ? json(nullptr) : json(at)},
             {"t_resolved", opened ? json(nullptr) : json(at)},
             {"t_closed", nullptr},
             {"self_healed", false},
             {"suppressed_by", nullptr},
             {"flapping", false},
             {"in_maintenance", false},
             {"reopen_count", 0},
             {"summary", opened ? fmt::format("{}: connect to 10.20.1.{}:8080 failed: connection "
                                              "refused",
                                              probe, n % 250)
                                : probe + ": recovered"},
             {"dedup_key", store + "/" + probe},
             {"condition", "down"}};
  wire::Event e;
  e.seq = n;
  e.uid = uid(rng);
  e.incident = incident;
  e.type = opened ? "opened" : "resolved";
  e.at = at;
  e.actor = "agent";
  e.body = json{{"incident_state", std::move(state)}};
  return e.text();
}

int run(int argc, char** argv) {
  CLI::App app{"HQ's CPU per event stored, without the broker"};
  std::string database;
  int stores = 1000, events = 100, batch = 96;
  app.add_option("--database", database, "a SQLite file (created) or a postgresql:// URI")
      ->required();
  app.add_option("--stores", stores)->check(CLI::Range(1, 100'000));
  app.add_option("--events", events, "events per store")->check(CLI::Range(1, 1'000'000));
  app.add_option("--batch", batch, "events per batch")->check(CLI::Range(1, 100));
  int first_store = 0;
  app.add_option("--first-store", first_store, "the number of the first store (store-NNNNN)")
      ->check(CLI::Range(0, 10'000'000));
  std::size_t group_bytes = hq::Ingest::kMaxGroupBytes;
  app.add_option("--group-bytes", group_bytes,
                 "payload bytes a commit takes at most (default: as `hq run`)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  bool replace = false;
  app.add_flag("--replace", replace, "remove the SQLite file first (a database must be empty)");
  CLI11_PARSE(app, argc, argv);

  config::HqConfig config;
  if (database.starts_with("postgresql://") || database.starts_with("postgres://")) {
    config.postgresql = database;
  } else {
    config.database = database;
    if (replace) {
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(database + suffix);
    }
  }
  auto db = hq::open_hq_database(config, hq::HqOpen::read_write, "hq_ingest");
  if (!db) die(db.error().message);
  (*db)->set_worker("bench");

  // The payloads, built before the clock starts.
  std::mt19937_64 rng(42);
  const std::string at = format_rfc3339(SystemClock().wall_now());
  std::vector<std::vector<std::string>> per_store(static_cast<std::size_t>(stores));
  std::size_t payload_bytes = 0;
  for (int s = 0; s < stores; ++s) {
    const std::string store = fmt::format("store-{:05d}", first_store + s);
    std::string incident;
    std::vector<std::string> texts;
    for (int n = 1; n <= events; ++n) {
      texts.push_back(event_text(store, n, incident, at, rng));
      if (static_cast<int>(texts.size()) == batch || n == events) {
        per_store[static_cast<std::size_t>(s)].push_back(wire::batch_payload(store, texts));
        payload_bytes += per_store[static_cast<std::size_t>(s)].back().size();
        texts.clear();
      }
    }
  }
  std::vector<std::string> order;
  for (std::size_t round = 0;; ++round) {
    std::vector<std::string> this_round;
    for (auto& p : per_store) {
      if (round < p.size()) this_round.push_back(std::move(p[round]));
    }
    if (this_round.empty()) break;
    std::shuffle(this_round.begin(), this_round.end(), rng);
    for (auto& p : this_round) order.push_back(std::move(p));
  }

  // Grouped as hq/ingest.cpp groups them.
  constexpr std::size_t kMaxGroup = hq::Ingest::kMaxGroup;
  const Cpu c0 = cpu_now();
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t inserted = 0, commits = 0;
  double decode_cpu = 0;
  for (std::size_t at_batch = 0; at_batch < order.size();) {
    std::vector<wire::Batch> group;
    std::size_t bytes = 0;
    const Cpu d0 = cpu_now();
    while (at_batch < order.size() && group.size() < kMaxGroup && bytes < group_bytes) {
      const std::string& payload = order[at_batch++];
      bytes += payload.size();
      auto b = wire::decode_batch_for_store(payload);
      if (!b) die(b.error().message);
      group.push_back(std::move(*b));
    }
    const Cpu d1 = cpu_now();
    decode_cpu += (d1.user - d0.user) + (d1.system - d0.system);
    auto r = (*db)->ingest(std::span<const wire::Batch>(group), SystemClock().wall_now());
    if (!r) die(r.error().message);
    for (const auto& i : *r) inserted += i.inserted;
    ++commits;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Cpu c1 = cpu_now();
  const auto total = static_cast<double>(stores) * events;
  if (inserted != static_cast<std::int64_t>(total)) {
    die(fmt::format("stored {} events of {}", inserted, total));
  }
  const double user = c1.user - c0.user, system = c1.system - c0.system;
  json out{{"backend", config.postgresql.empty() ? "sqlite" : "postgresql"},
           {"events", inserted},
           {"commits", commits},
           {"payload_bytes_per_event", static_cast<double>(payload_bytes) / total},
           {"seconds", seconds},
           {"events_per_second", total / seconds},
           {"cpu_us_per_event", 1e6 * (user + system) / total},
           {"user_us_per_event", 1e6 * user / total},
           {"system_us_per_event", 1e6 * system / total},
           {"decode_us_per_event", 1e6 * decode_cpu / total}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace storewatch::bench

int main(int argc, char** argv) {
  return storewatch::bench::run(argc, argv);
}
