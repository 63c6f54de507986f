// Issue 18, defect 1: two actions on one incident back to back — a close
// and then a note, over HQ's MQTT commands or two requests on one control
// connection — wedged the store writer for good. Every pair of ack, resolve,
// close and note, on both paths, with the probe still failing (the engine
// then reopens or opens anew) and with the probe recovering; afterwards the
// daemon still commits, and the database is whole: every row is its newest
// event's snapshot, one unresolved row per key, no dead letters.

#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstring>
#include <map>
#include <memory>

#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {
namespace {

using nlohmann::json;

const std::vector<std::string> kPairActions = {"ack", "resolve", "close", "note"};
constexpr const char* kPairsStore = "store-pairs";

struct Pair {
  std::string probe;
  std::string first, second;
  bool recovers = false;
  std::unique_ptr<TcpDevice> device;
  std::string uid;
};

/// Sends each line on one connection to the control socket, all in one
/// write, and reads as many answers.
std::vector<json> control_lines(const std::filesystem::path& socket_path,
                                const std::vector<json>& requests) {
  std::vector<json> out;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return out;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return out;
  }
  std::string text;
  for (const auto& r : requests) text += r.dump() + "\n";
  for (std::size_t sent = 0; sent < text.size();) {
    ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string in;
  char buf[4096];
  while (out.size() < requests.size()) {
    auto nl = in.find('\n');
    if (nl != std::string::npos) {
      out.push_back(json::parse(in.substr(0, nl), nullptr, false));
      in.erase(0, nl + 1);
      continue;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

/// Rows of a query on the agent's database, each column as text.
std::vector<std::vector<std::string>> pair_rows(const std::filesystem::path& db,
                                                const std::string& sql) {
  std::vector<std::vector<std::string>> out;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(h);
    ADD_FAILURE() << "cannot open " << db;
    return out;
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(h);
  } else {
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const auto* t = sqlite3_column_text(st, i);
        row.emplace_back(t != nullptr ? reinterpret_cast<const char*>(t) : "");
      }
      out.push_back(std::move(row));
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  return out;
}

class ActionPairs : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string probes;
    for (bool recovers : {false, true}) {
      for (const auto& a : kPairActions) {
        for (const auto& b : kPairActions) {
          Pair p;
          p.probe = fmt::format("{}-{}-{}", a, b, recovers ? "recovers" : "fails");
          p.first = a;
          p.second = b;
          p.recovers = recovers;
          p.device = std::make_unique<TcpDevice>();
          p.device->down();
          probes += fmt::format(
              "[[probe]]\nname = \"{}\"\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n"
              "interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 1\nrecover_after = 1\n\n",
              p.probe, p.device->port());
          pairs.push_back(std::move(p));
        }
      }
    }
    config = dir / "storewatch.toml";
    write_file(config, fmt::format(R"([store]
id = "{}"

[agent]
data_dir = "{}"
control_socket = "{}"

[sync]
broker = "{}"
reconnect_max = "1s"

{})",
                                   kPairsStore, (dir / "data").string(),
                                   (dir / "control.sock").string(), broker.uri(), probes));
    daemon = std::make_unique<Child>(storewatch_command({"--config", config.string(), "run"}),
                                     dir / "logs");
    // Every probe fails at once: one open incident each.
    ASSERT_TRUE(wait_until(
        [&] {
          auto r = cli({"incidents", "--json"});
          auto j = json::parse(r.out, nullptr, false);
          if (!j.is_array()) return false;
          std::map<std::string, std::string> uid_of;
          for (const auto& i : j) uid_of[i.value("probe", "")] = i.value("uid", "");
          for (auto& p : pairs) {
            if (!uid_of.contains(p.probe)) return false;
            p.uid = uid_of[p.probe];
          }
          return true;
        },
        30s))
        << logs_of(*daemon);
  }

  RunResult cli(std::vector<std::string> args) {
    std::vector<std::string> full = {"--config", config.string()};
    full.insert(full.end(), args.begin(), args.end());
    return run(storewatch_command(full));
  }

  /// Probes that recover come back up just before their pair.
  void bring_up_recovering() {
    for (auto& p : pairs) {
      if (p.recovers) p.device->up();
    }
  }

  /// The daemon still commits: a note on every pair's incident, through the
  /// CLI, then nothing waits in the writer and nothing was dead-lettered.
  void expect_writer_goes_on() {
    for (const auto& p : pairs) {
      auto r = cli({"note", p.uid, "--by", "checker", "--note", "still writing?"});
      EXPECT_EQ(r.exit_code, 0) << p.probe << ": " << r.err;
    }
    json writer;
    EXPECT_TRUE(wait_until(
        [&] {
          auto r = cli({"status", "--json"});
          auto j = json::parse(r.out, nullptr, false);
          if (!j.is_object()) return false;
          writer = j["agent"]["store_writer"];
          return writer.is_object() && writer.value("backlog", -1) == 0;
        },
        20s))
        << "the store writer is wedged: " << writer.dump() << "\n"
        << logs_of(*daemon);
    EXPECT_EQ(writer.value("dead_letters", -1), 0) << writer.dump();
  }

  /// Stops the daemon and checks the database as a whole.
  void audit() {
    ASSERT_EQ(daemon->stop(SIGTERM, 15s), 0) << logs_of(*daemon);
    const auto db = dir / "data" / "storewatch.db";
    EXPECT_EQ(pair_rows(db, "PRAGMA integrity_check").at(0).at(0), "ok");
    EXPECT_EQ(pair_rows(db, "SELECT count(*) FROM dead_letters").at(0).at(0), "0");
    // Each row is its newest event's snapshot: the writer commits them together.
    for (const auto& r : pair_rows(db,
                                   "SELECT i.uid, i.probe, i.state, (SELECT json_extract(e.body, "
                                   "'$.incident_state.state') FROM events e WHERE e.incident_uid "
                                   "= i.uid ORDER BY e.seq DESC LIMIT 1) FROM incidents i")) {
      EXPECT_EQ(r[2], r[3]) << r[1] << " " << r[0] << ": the row and its newest event differ";
    }
    for (const auto& r :
         pair_rows(db,
                   "SELECT dedup_key, count(*) FROM incidents WHERE state NOT IN "
                   "('resolved','closed') GROUP BY dedup_key HAVING count(*) > 1")) {
      ADD_FAILURE() << r[0] << " has " << r[1] << " unresolved incidents";
    }
    // Seqs have no gaps.
    auto seqs = pair_rows(db, "SELECT count(*), min(seq), max(seq) FROM events");
    EXPECT_EQ(std::stoll(seqs[0][0]), std::stoll(seqs[0][2]) - std::stoll(seqs[0][1]) + 1);
    for (const auto& p : pairs) {
      // Once closed, an incident stays closed: a later note or action must
      // not write the row back as it was before the close.
      auto events = pair_rows(
          db, fmt::format("SELECT type, json_extract(body, '$.incident_state.state') FROM events "
                          "WHERE incident_uid = '{}' ORDER BY seq",
                          p.uid));
      bool closed = false;
      std::string timeline;
      for (const auto& e : events) timeline += e[0] + "(" + e[1] + ") ";
      for (const auto& e : events) {
        if (closed) {
          EXPECT_EQ(e[1], "closed") << p.probe << ": " << timeline;
        }
        closed = closed || e[1] == "closed";
      }
      EXPECT_EQ(pair_rows(db, fmt::format("SELECT count(*) FROM events WHERE incident_uid = '{}' "
                                          "AND type = 'note' AND actor = 'cli:checker'",
                                          p.uid))
                    .at(0)
                    .at(0),
                "1")
          << p.probe << ": the last note is missing: " << timeline;
    }
  }

  TempDir dir;
  Broker broker;
  std::filesystem::path config;
  std::vector<Pair> pairs;
  std::unique_ptr<Child> daemon;
};

TEST_F(ActionPairs, TwoRequestsOnOneControlConnectionNeverWedgeTheWriter) {
  bring_up_recovering();
  for (const auto& p : pairs) {
    auto request = [&](const std::string& action, const std::string& note) {
      return json{{"v", 1},       {"op", "incident"}, {"action", action}, {"incident", p.uid},
                  {"by", "dana"}, {"note", note}};
    };
    auto answers = control_lines(dir / "control.sock",
                                 {request(p.first, "first"), request(p.second, "second")});
    ASSERT_EQ(answers.size(), 2u) << p.probe;
  }
  expect_writer_goes_on();
  audit();
}

TEST_F(ActionPairs, TwoHqCommandsBackToBackNeverWedgeTheWriter) {
  bring_up_recovering();
  // Every pair's two commands in one publishing session, one message a line.
  std::string lines;
  int id = 0;
  for (const auto& p : pairs) {
    for (const auto& [op, note] : {std::pair{p.first, "first"}, std::pair{p.second, "second"}}) {
      lines += json{{"v", 1},      {"id", fmt::format("00000000-0000-7000-8000-{:012d}", ++id)},
                    {"op", op},    {"incident", p.uid},
                    {"by", "ops"}, {"note", note}}
                   .dump() +
               "\n";
    }
  }
  write_file(dir / "commands", lines);
  auto sent = run({"sh", "-c",
                   fmt::format("mosquitto_pub -h 127.0.0.1 -p {} -q 1 -t "
                               "storewatch/v1/stores/{}/cmd -l < {}",
                               broker.port(), kPairsStore, (dir / "commands").string())});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  // Every command is answered, applied or refused, once committed.
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = cli({"status", "--json"});
        auto j = json::parse(r.out, nullptr, false);
        return j.is_object() &&
               j["sync"]["commands"].value("received", 0) == static_cast<int>(pairs.size() * 2);
      },
      30s))
      << logs_of(*daemon);
  expect_writer_goes_on();
  audit();
}

}  // namespace
}  // namespace storewatch::test
