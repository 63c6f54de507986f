// Issue 18's soak: 50 flapping probes, HQ commands and CLI actions at random
// for ten minutes (STOREWATCH_SOAK_SECONDS overrides it for a quick local
// run), against the real agent, mosquitto and `storewatch hq run`. At the
// end: every event of the store is at HQ exactly once, with the same uid at
// the same seq; the store writer never stalled more than a few seconds; the
// agent's memory stayed flat; nothing was dead-lettered; the database is whole.
// The random choices come from one seed, printed at the start
// (STOREWATCH_SOAK_SEED=N replays them, not the daemon's own timing).

#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using SoakClock = std::chrono::steady_clock;

constexpr int kSoakProbes = 50;
constexpr const char* kSoakStore = "store-soak";

/// Resident memory of a process, in KB (VmRSS).
long rss_kb(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

std::vector<std::vector<std::string>> soak_rows(const std::filesystem::path& db,
                                                const std::string& sql) {
  std::vector<std::vector<std::string>> out;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        std::vector<std::string> row;
        for (int i = 0; i < sqlite3_column_count(st); ++i) {
          const auto* t = sqlite3_column_text(st, i);
          row.emplace_back(t != nullptr ? reinterpret_cast<const char*>(t) : "");
        }
        out.push_back(std::move(row));
      }
    } else {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(h);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return out;
}

/// One request on its own control connection; the answer, or null.
json soak_control(const std::filesystem::path& socket_path, const json& request) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  json out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string line = request.dump() + "\n";
    (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string in;
    char buf[4096];
    while (in.find('\n') == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<std::size_t>(n));
    }
    if (in.find('\n') != std::string::npos)
      out = json::parse(in.substr(0, in.find('\n')), nullptr, false);
  }
  ::close(fd);
  return out;
}

TEST(Soak, FlappingProbesCommandsAndActionsForTenMinutesKeepEveryInvariant) {
  const char* seconds_env = std::getenv("STOREWATCH_SOAK_SECONDS");
  const auto length = std::chrono::seconds(seconds_env != nullptr ? std::atoi(seconds_env) : 600);
  const char* seed_env = std::getenv("STOREWATCH_SOAK_SEED");
  const unsigned seed = seed_env != nullptr
                            ? static_cast<unsigned>(std::strtoul(seed_env, nullptr, 10))
                            : std::random_device{}();
  std::cout << "soak: " << length.count() << " s, seed " << seed
            << " (STOREWATCH_SOAK_SEED=" << seed << " replays the choices)\n";
  std::mt19937 rng(seed);

  TempDir dir;
  Broker broker;
  std::vector<std::unique_ptr<TcpDevice>> devices;
  std::string probes;
  for (int i = 0; i < kSoakProbes; ++i) {
    devices.push_back(std::make_unique<TcpDevice>());
    probes += fmt::format(
        "[[probe]]\nname = \"lane-{:02d}\"\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n"
        "interval = \"500ms\"\ntimeout = \"300ms\"\nfail_after = 2\nrecover_after = 2\n"
        "severity = \"{}\"\n\n",
        i, devices.back()->port(), i % 5 == 0 ? "critical" : "high");
  }
  const auto agent_config = dir / "storewatch.toml";
  const auto hq_config = dir / "hq.toml";
  write_file(agent_config, fmt::format(R"([store]
id = "{}"

[agent]
data_dir = "{}"
control_socket = "{}"

[sync]
broker = "{}"
reconnect_max = "1s"
ack_timeout = "5s"

[incidents]
close_after = "2m"
reopen_window = "20s"

{})",
                                       kSoakStore, (dir / "agent").string(),
                                       (dir / "control.sock").string(), broker.uri(), probes));
  write_file(hq_config,
             fmt::format("[hq]\nbroker = \"{}\"\ndatabase = \"{}\"\nreconnect_max = \"1s\"\n",
                         broker.uri(), (dir / "hq.db").string()));
  Child hq(storewatch_command({"hq", "--config", hq_config.string(), "run"}), dir / "hq-logs");
  Child agent(storewatch_command({"--config", agent_config.string(), "run"}), dir / "agent-logs");
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> full = {"--config", agent_config.string()};
    full.insert(full.end(), args.begin(), args.end());
    return run(storewatch_command(full));
  };
  auto status = [&] { return json::parse(cli({"status", "--json"}).out, nullptr, false); };
  ASSERT_TRUE(wait_until([&] { return status().is_object(); })) << logs_of(agent);

  const auto agent_db = dir / "agent" / "storewatch.db";
  std::vector<std::string> open_uids;
  auto refresh_uids = [&] {
    open_uids.clear();
    for (const auto& r :
         soak_rows(agent_db, "SELECT uid FROM incidents ORDER BY uid DESC LIMIT 200")) {
      open_uids.push_back(r[0]);
    }
  };
  auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  const std::vector<std::string> ops = {"ack", "resolve", "close", "note"};

  long rss_early = -1, rss_peak_late = 0;
  double stalled_longest = 0;
  int hq_commands = 0, cli_actions = 0, flips = 0;
  const auto start = SoakClock::now();
  auto next_sample = start;
  int command_id = 0;
  while (SoakClock::now() - start < length) {
    // Flapping: a few devices change every round, some many times a minute.
    for (int k = 0; k < 3; ++k) {
      auto& d = *devices[pick(devices.size())];
      if (std::bernoulli_distribution(0.5)(rng))
        d.down();
      else
        d.up();
      ++flips;
    }
    refresh_uids();
    if (!open_uids.empty()) {
      // A technician's action through the control socket.
      const std::string uid = open_uids[pick(open_uids.size())];
      (void)soak_control(dir / "control.sock", json{{"v", 1},
                                                    {"op", "incident"},
                                                    {"action", ops[pick(ops.size())]},
                                                    {"incident", uid},
                                                    {"by", "tech"},
                                                    {"note", "soak"}});
      ++cli_actions;
      // HQ's commands, two back to back now and then.
      std::string lines;
      const int n = std::bernoulli_distribution(0.3)(rng) ? 2 : 1;
      for (int c = 0; c < n; ++c) {
        lines += json{{"v", 1},
                      {"id", fmt::format("00000000-0000-7000-8000-{:012d}", ++command_id)},
                      {"op", ops[pick(ops.size())]},
                      {"incident", open_uids[pick(open_uids.size())]},
                      {"by", "ops"},
                      {"note", "from hq"}}
                     .dump() +
                 "\n";
      }
      write_file(dir / "cmds", lines);
      (void)run({"sh", "-c",
                 fmt::format(
                     "mosquitto_pub -h 127.0.0.1 -p {} -q 1 -t storewatch/v1/stores/{}/cmd -l < {}",
                     broker.port(), kSoakStore, (dir / "cmds").string())});
      hq_commands += n;
    }
    if (SoakClock::now() >= next_sample) {
      next_sample += std::chrono::seconds(5);
      auto s = status();
      ASSERT_TRUE(s.is_object() && s.value("agent", json::object()).value("running", false))
          << "the agent does not answer: " << s.dump() << "\n"
          << logs_of(agent);
      const json w = s["agent"].value("store_writer", json::object());
      stalled_longest = std::max(stalled_longest, w.value("waiting_for_s", 0.0));
      EXPECT_EQ(w.value("dead_letters", 0), 0) << w.dump();
      const long rss = rss_kb(agent.pid());
      // Memory after the first two minutes (caches warm) against the rest.
      if (SoakClock::now() - start >=
              std::min<std::chrono::seconds>(length / 5, std::chrono::seconds(120)) &&
          rss_early < 0) {
        rss_early = rss;
      } else if (rss_early >= 0) {
        rss_peak_late = std::max(rss_peak_late, rss);
      }
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(100, 400)(rng)));
  }
  std::cout << "soak: " << flips << " device changes, " << cli_actions << " CLI actions, "
            << hq_commands << " HQ commands; RSS " << rss_early << " KB early, " << rss_peak_late
            << " KB peak later; writer waited " << stalled_longest << " s at most\n";

  // Calm: devices up, the store drains to HQ.
  for (auto& d : devices) d->up();
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s.is_object() && s.value("sync", json::object()).value("queued", -1) == 0 &&
               s.value("agent", json::object())
                       .value("store_writer", json::object())
                       .value("backlog", -1) == 0;
      },
      120s))
      << status().dump() << logs_of(agent);
  EXPECT_LT(stalled_longest, 5.0) << "the store writer stalled";
  if (rss_early > 0) {
    EXPECT_LT(rss_peak_late, rss_early + std::max(4096L, rss_early / 5))
        << "RSS grew from " << rss_early << " KB to " << rss_peak_late << " KB";
  }
  ASSERT_EQ(agent.stop(SIGTERM, 15s), 0) << logs_of(agent);
  ASSERT_EQ(hq.stop(SIGTERM, 15s), 0) << logs_of(hq);

  // Every event at HQ exactly once: the same uid at every seq.
  auto local = soak_rows(agent_db, "SELECT seq, uid FROM events ORDER BY seq");
  auto at_hq = soak_rows(
      dir / "hq.db",
      fmt::format("SELECT seq, uid FROM events WHERE store = '{}' ORDER BY seq", kSoakStore));
  ASSERT_FALSE(local.empty());
  EXPECT_EQ(local.size(), at_hq.size());
  std::size_t differ = 0;
  for (std::size_t i = 0; i < std::min(local.size(), at_hq.size()); ++i)
    differ += local[i] != at_hq[i];
  EXPECT_EQ(differ, 0u) << "events differ between the store and HQ";
  EXPECT_EQ(std::stoll(local.front()[0]), 1);
  EXPECT_EQ(std::stoll(local.back()[0]), static_cast<long long>(local.size()))
      << "a gap in the store's seqs";
  EXPECT_EQ(soak_rows(agent_db, "PRAGMA integrity_check").at(0).at(0), "ok");
  EXPECT_EQ(soak_rows(agent_db, "SELECT count(*) FROM dead_letters").at(0).at(0), "0");
  for (const auto& r :
       soak_rows(agent_db,
                 "SELECT i.uid, i.state, (SELECT json_extract(e.body, '$.incident_state.state') "
                 "FROM events e WHERE e.incident_uid = i.uid ORDER BY e.seq DESC LIMIT 1) "
                 "FROM incidents i")) {
    EXPECT_EQ(r[1], r[2]) << r[0] << ": the row and its newest event differ";
  }
}

}  // namespace
}  // namespace storewatch::test
