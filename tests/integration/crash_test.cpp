// The agent's database survives kill -9: `storewatch run` is killed many times
// at random moments while the store simulator's devices go down and come
// back, then started once more and stopped cleanly. Whatever moment a kill
// hit, the file must be whole and the incident timeline consistent (DESIGN §5
// and §6): integrity_check ok, every incident has its events starting with
// `opened` or `suppressed`, no event without its incident, no gap in
// events.seq, at most one unresolved incident per dedup key, and each
// incident's state is the one its newest event recorded.
//
// The random choices come from one seed, printed at the start; set
// STOREWATCH_CRASH_SEED to replay a run.

#include <gtest/gtest.h>

#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/store_lab.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr int kKills = 25;
// The kill loop stops early when it has used this much time (a slow asan
// build on a loaded machine), so the whole test stays well inside its timeout.
constexpr auto kKillLoopBudget = 60s;
// Incidents and events the run must at least have produced, or the test
// proved nothing: the faults below make many more.
constexpr int kMinIncidents = 5;
constexpr int kMinResolved = 3;

// --- the store ---------------------------------------------------------------

struct Device {
  std::string name;
  std::string kind;  ///< storelab kind: tcp | http
  int port = 0;
  std::vector<std::string> faults;  ///< faults this test switches it to
};

struct ProbeSpec {
  std::string name;
  std::string device;
  int interval_ms = 0;
  int fail_after = 1;
  int recover_after = 1;
  std::vector<std::string> depends_on;
};

// An uplink, a switch behind it, four POS lanes behind the switch, a PIN pad
// and a printer behind lane 1, and two devices that depend on nothing.
const std::vector<ProbeSpec> kProbes = {
    {"uplink", "uplink", 100, 1, 1, {}},
    {"lan-switch", "switch", 150, 1, 2, {"uplink"}},
    {"lane-01-pos", "lane-01", 200, 2, 1, {"lan-switch"}},
    {"lane-02-pos", "lane-02", 250, 2, 2, {"lan-switch"}},
    {"lane-03-pos", "lane-03", 300, 1, 2, {"lan-switch"}},
    {"lane-04-pos", "lane-04", 200, 2, 1, {"lan-switch"}},
    {"pinpad-01", "pinpad-01", 150, 1, 1, {"lane-01-pos"}},
    {"printer-01", "printer-01", 300, 2, 2, {"lane-01-pos"}},
    {"payment-gw", "payment-gw", 100, 2, 1, {}},
    {"backoffice", "backoffice", 250, 1, 2, {}},
};

std::vector<Device> make_devices() {
  const std::vector<std::string> tcp_faults = {"down", "down", "hang", "none"};
  const std::vector<std::string> http_faults = {"down", "http500", "hang", "none"};
  std::vector<Device> devices = {
      {"uplink", "tcp", 0, tcp_faults},     {"switch", "tcp", 0, tcp_faults},
      {"lane-01", "http", 0, http_faults},  {"lane-02", "http", 0, http_faults},
      {"lane-03", "http", 0, http_faults},  {"lane-04", "http", 0, http_faults},
      {"pinpad-01", "tcp", 0, tcp_faults},  {"printer-01", "tcp", 0, tcp_faults},
      {"payment-gw", "tcp", 0, tcp_faults}, {"backoffice", "http", 0, http_faults},
  };
  std::set<int> used;
  for (auto& d : devices) {
    do {
      d.port = free_port();
    } while (!used.insert(d.port).second);
  }
  return devices;
}

std::string lab_file(const std::vector<Device>& devices) {
  std::string text;
  for (const auto& d : devices) {
    text +=
        fmt::format("[[device]]\nname = \"{}\"\nkind = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\n\n",
                    d.name, d.kind, d.port);
  }
  return text;
}

std::string agent_config(const TempDir& dir, const std::string& broker,
                         const std::vector<Device>& devices) {
  std::map<std::string, const Device*> by_name;
  for (const auto& d : devices) by_name[d.name] = &d;
  std::string text = fmt::format(R"([store]
id = "store-crash"
name = "Crash Market"

[agent]
data_dir = "{0}/agent"
control_socket = "{0}/agent/control.sock"
log_level = "debug"

[sync]
broker = "{1}"
reconnect_max = "1s"
ack_timeout = "2s"
)",
                                 dir.path().string(), broker);
  for (const auto& p : kProbes) {
    const Device& d = *by_name.at(p.device);
    std::string target =
        d.kind == "http"
            ? fmt::format("type = \"http\"\nurl = \"http://127.0.0.1:{}/health\"\n", d.port)
            : fmt::format("type = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n", d.port);
    std::string deps;
    for (const auto& dep : p.depends_on) deps += (deps.empty() ? "" : ", ") + ("\"" + dep + "\"");
    text += fmt::format(
        "\n[[probe]]\nname = \"{}\"\n{}interval = \"{}ms\"\ntimeout = \"{}ms\"\n"
        "fail_after = {}\nrecover_after = {}\nseverity = \"high\"\n{}",
        p.name, target, p.interval_ms, p.interval_ms, p.fail_after, p.recover_after,
        deps.empty() ? "" : "depends_on = [" + deps + "]\n");
  }
  return text;
}

/// Whether a process listens on the unix socket at `path` (a stale socket
/// file left by a killed daemon refuses the connection).
bool socket_answers(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string stderr_tail(Child& c) {
  return "stderr (tail):\n" + c.err().substr(c.err().size() > 6000 ? c.err().size() - 6000 : 0);
}

// --- the checks on the file --------------------------------------------------

/// Access to the agent's database with the sqlite3 C API, apart from the
/// code under test. Opening it runs SQLite's own WAL recovery, as the next
/// daemon start would; read-only unless a test tampers with a copy.
class Db {
 public:
  explicit Db(const std::filesystem::path& path, int flags = SQLITE_OPEN_READONLY) {
    rc_ = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  std::string error() const { return db_ ? sqlite3_errmsg(db_) : "out of memory"; }

  /// Every row of `sql`, each column as text ("" for NULL); an SQL error is
  /// added to `errors`.
  std::vector<std::vector<std::string>> rows(const std::string& sql,
                                             std::vector<std::string>& errors) {
    std::vector<std::vector<std::string>> out;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      errors.push_back(sql + ": " + error());
      return out;
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        const auto* text = sqlite3_column_text(stmt, c);
        row.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
      }
      out.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) errors.push_back(sql + ": " + error());
    sqlite3_finalize(stmt);
    return out;
  }

  /// Runs `sql` (tampering with a copy); fails the test on an error.
  void exec(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (message ? message : "?");
    }
    sqlite3_free(message);
  }

 private:
  sqlite3* db_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

/// What a database holds, and what is wrong with it.
struct Audit {
  int incidents = 0;
  int unresolved = 0;
  int events = 0;
  std::map<std::string, int> events_by_type;
  std::vector<std::string> problems;  ///< each names the rows; empty = whole
};

std::string describe(const Audit& a) {
  std::string types;
  for (const auto& [type, n] : a.events_by_type) types += fmt::format(" {} {},", type, n);
  return fmt::format("{} incidents ({} unresolved), {} events:{}", a.incidents, a.unresolved,
                     a.events, types);
}

std::string problems_of(const Audit& a) {
  std::string out;
  for (const auto& p : a.problems) out += "  " + p + "\n";
  return out;
}

/// Checks the invariants of DESIGN §5/§6 on the file and counts what is in it.
Audit audit_database(const std::filesystem::path& path) {
  Audit a;
  auto& problems = a.problems;
  Db db(path);
  if (!db.ok()) {
    problems.push_back(fmt::format("cannot open {}: {}", path.string(), db.error()));
    return a;
  }

  auto integrity = db.rows("PRAGMA integrity_check", problems);
  if (integrity.size() != 1 || integrity[0][0] != "ok") {
    std::string all;
    for (const auto& r : integrity) all += r[0] + "; ";
    problems.push_back("integrity_check: " + all);
  }

  struct Row {
    std::string dedup_key, state;
  };
  std::map<std::string, Row> incidents;  // by uid
  for (auto& r : db.rows("SELECT uid, dedup_key, state FROM incidents", problems)) {
    incidents[r[0]] = Row{r[1], r[2]};
  }
  a.incidents = static_cast<int>(incidents.size());

  // The timeline in seq order: the first and the newest event per incident.
  struct Event {
    std::string seq, type, body;
  };
  std::map<std::string, Event> first, last;  // by incident uid
  long long min_seq = 0, max_seq = 0;
  for (auto& r :
       db.rows("SELECT seq, incident_uid, type, body FROM events ORDER BY seq", problems)) {
    const long long seq = std::stoll(r[0]);
    if (a.events == 0) min_seq = seq;
    max_seq = seq;
    ++a.events;
    ++a.events_by_type[r[2]];
    if (!incidents.contains(r[1])) {
      problems.push_back(fmt::format(
          "event seq {} ({}) names incident {}, which is not in incidents", seq, r[2], r[1]));
    }
    first.try_emplace(r[1], Event{r[0], r[2], r[3]});
    last[r[1]] = Event{r[0], r[2], r[3]};
  }

  // No gap in seq, and AUTOINCREMENT's high-water mark never below it (a seq
  // is never reused).
  if (a.events > 0) {
    if (max_seq - min_seq + 1 != a.events) {
      problems.push_back(fmt::format("events.seq has gaps: {} events from seq {} to {}", a.events,
                                     min_seq, max_seq));
    }
    auto hw = db.rows("SELECT seq FROM sqlite_sequence WHERE name = 'events'", problems);
    if (hw.size() != 1) {
      problems.push_back("events has rows but no sqlite_sequence entry");
    } else if (std::stoll(hw[0][0]) < max_seq) {
      problems.push_back(fmt::format("sqlite_sequence says {}, below seq {}", hw[0][0], max_seq));
    }
  }

  std::map<std::string, int> unresolved_per_key;
  for (const auto& [uid, inc] : incidents) {
    if (inc.state != "resolved" && inc.state != "closed") {
      ++a.unresolved;
      ++unresolved_per_key[inc.dedup_key];
    }
    auto f = first.find(uid);
    if (f == first.end()) {
      problems.push_back(
          fmt::format("incident {} ({}, {}) has no event", uid, inc.dedup_key, inc.state));
      continue;
    }
    if (f->second.type != "opened" && f->second.type != "suppressed") {
      problems.push_back(fmt::format("incident {} starts with event seq {} of type {}", uid,
                                     f->second.seq, f->second.type));
    }
    const Event& newest = last.at(uid);
    json body = json::parse(newest.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("incident_state") ||
        !body["incident_state"].is_object()) {
      problems.push_back(
          fmt::format("event seq {} has no incident_state object: {}", newest.seq, newest.body));
      continue;
    }
    const json& snapshot = body["incident_state"];
    if (snapshot.value("uid", "") != uid || snapshot.value("state", "") != inc.state) {
      problems.push_back(fmt::format("incident {} is {}, but its newest event (seq {}, {}) says {}",
                                     uid, inc.state, newest.seq, newest.type, snapshot.dump()));
    }
  }
  for (const auto& [key, n] : unresolved_per_key) {
    if (n > 1) problems.push_back(fmt::format("{} unresolved incidents share the key {}", n, key));
  }
  return a;
}

/// A copy of the database (after a clean stop: no WAL) to tamper with.
std::filesystem::path copy_of(const std::filesystem::path& db, const std::string& name) {
  auto copy = db.parent_path() / name;
  std::filesystem::copy_file(db, copy, std::filesystem::copy_options::overwrite_existing);
  return copy;
}

/// The audit must catch each kind of damage, or the crash test proves nothing.
void expect_audit_catches_damage(const std::filesystem::path& whole) {
  std::vector<std::vector<std::string>> rows;
  {
    Db db(whole);
    std::vector<std::string> errors;
    rows = db.rows(
        "SELECT i.uid, (SELECT min(seq) FROM events WHERE incident_uid = i.uid) "
        "FROM incidents i WHERE i.state = 'resolved' ORDER BY 2",
        errors);
    ASSERT_TRUE(errors.empty()) << errors[0];
  }
  ASSERT_GE(rows.size(), 2u);
  const std::string uid = rows[0][0], first = rows[0][1];
  const std::string other = rows[1][0];
  const struct {
    std::string damage, sql, expected;
  } cases[] = {
      {"an incident's events lost", "DELETE FROM events WHERE incident_uid = '" + uid + "'",
       "has no event"},
      // The second seq, not an incident's newest: that one may be the very
      // last seq, and losing it leaves no gap.
      {"a seq in the middle lost",
       "DELETE FROM events WHERE seq = (SELECT min(seq) + 1 FROM events)", "gaps"},
      {"an incident row lost", "DELETE FROM incidents WHERE uid = '" + uid + "'",
       "not in incidents"},
      {"the first event is not an opening", "UPDATE events SET type = 'note' WHERE seq = " + first,
       "starts with event"},
      {"the row disagrees with its newest event",
       "UPDATE incidents SET state = 'acknowledged' WHERE uid = '" + uid + "'",
       "but its newest event"},
      {"two unresolved incidents on one key",
       "DROP INDEX incidents_unresolved_key; UPDATE incidents SET state = 'open', dedup_key = "
       "'dup' WHERE uid IN ('" +
           uid + "', '" + other + "')",
       "share the key dup"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.damage);
    auto copy = copy_of(whole, "damaged.db");
    {
      Db db(copy, SQLITE_OPEN_READWRITE);
      db.exec(c.sql);
    }
    Audit a = audit_database(copy);
    bool caught = false;
    for (const auto& p : a.problems) caught |= p.find(c.expected) != std::string::npos;
    EXPECT_TRUE(caught) << "expected a problem saying \"" << c.expected << "\", got:\n"
                        << problems_of(a);
  }
}

// --- the test ----------------------------------------------------------------

TEST(CrashTest, KillNineWhileDevicesChangeLeavesAWholeTimeline) {
  std::uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("STOREWATCH_CRASH_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::cout << "seed " << seed << " (replay with STOREWATCH_CRASH_SEED=" << seed << ")\n";
  SCOPED_TRACE(fmt::format("STOREWATCH_CRASH_SEED={}", seed));
  std::mt19937_64 rng(seed);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  TempDir dir;
  std::vector<Device> devices = make_devices();
  StoreLab lab(lab_file(devices));
  Broker broker;  // no HQ: nothing is acked, the publisher keeps reading the outbox
  const auto config = dir / "storewatch.toml";
  write_file(config, agent_config(dir, broker.uri(), devices));
  const auto socket = dir / "agent" / "control.sock";
  const auto database = dir / "agent" / "storewatch.db";
  auto start = [&] {
    return std::make_unique<Child>(storewatch_command({"--config", config.string(), "run"}),
                                   dir / "logs");
  };
  auto flip_faults = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const Device& d = devices[static_cast<std::size_t>(uniform(0, int(devices.size()) - 1))];
      lab.fault(d.name, d.faults[static_cast<std::size_t>(uniform(0, int(d.faults.size()) - 1))]);
    }
  };

  const auto loop_start = SteadyClock::now();
  int kills = 0;
  int during_start = 0;
  for (; kills < kKills && SteadyClock::now() - loop_start < kKillLoopBudget; ++kills) {
    auto daemon = start();
    // One kill in five lands while the daemon starts (opening, migrating,
    // restoring); the others once it runs its loop.
    const bool at_start = uniform(0, 4) == 0;
    if (!at_start) {
      ASSERT_TRUE(wait_until([&] { return socket_answers(socket) || !daemon->running(); }))
          << "run " << kills << ": the daemon did not come up\n"
          << stderr_tail(*daemon);
    } else {
      ++during_start;
    }
    flip_faults(uniform(1, 3));
    // The crash point itself is what is random here, not a wait for
    // something: sleep, switching more faults half-way.
    const int ms = uniform(50, 700);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms / 2));
    flip_faults(uniform(0, 2));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms - ms / 2));
    ASSERT_TRUE(daemon->running()) << "run " << kills << ": the daemon exited by itself\n"
                                   << stderr_tail(*daemon);
    EXPECT_EQ(daemon->stop(SIGKILL), 128 + SIGKILL);
  }
  const double loop_s = std::chrono::duration<double>(SteadyClock::now() - loop_start).count();
  std::cout << fmt::format("{} kill -9 ({} while starting) in {:.1f} s\n", kills, during_start,
                           loop_s);
  EXPECT_GE(kills, kKills / 2) << "the kill loop ran out of time early";

  ASSERT_TRUE(std::filesystem::exists(database));
  {
    Audit a = audit_database(database);
    std::cout << "after the kills: " << describe(a) << "\n";
    EXPECT_TRUE(a.problems.empty()) << "after the last kill -9:\n" << problems_of(a);
  }

  // Every device up again: a clean run must resume from the file, resolve
  // whatever was left unresolved, and stop cleanly.
  for (const auto& d : devices) lab.fault(d.name, "none");
  auto daemon = start();
  auto settled = [&] {
    auto r = run(storewatch_command({"--config", config.string(), "status", "--json"}));
    json s = json::parse(r.out, nullptr, false);
    if (r.exit_code != 0 || !s.is_object() || !s["probes"].is_array()) return false;
    for (const auto& p : s["probes"]) {
      if (p.value("state", "") != "ok") return false;
    }
    Db db(database);
    std::vector<std::string> errors;
    auto open =
        db.rows("SELECT count(*) FROM incidents WHERE state NOT IN ('resolved', 'closed')", errors);
    return open.size() == 1 && open[0][0] == "0";
  };
  EXPECT_TRUE(wait_until(settled, 30s))
      << "with every device up, probes must all be ok and every incident resolved\n"
      << stderr_tail(*daemon);
  EXPECT_EQ(daemon->stop(SIGTERM), 0) << stderr_tail(*daemon);

  Audit a = audit_database(database);
  std::cout << "after the clean run: " << describe(a) << "\n";
  EXPECT_TRUE(a.problems.empty()) << "after a clean run:\n" << problems_of(a);
  EXPECT_EQ(a.unresolved, 0);
  EXPECT_GE(a.incidents, kMinIncidents) << describe(a);
  EXPECT_GE(a.events_by_type["resolved"], kMinResolved) << describe(a);

  expect_audit_catches_damage(database);
}

}  // namespace
}  // namespace storewatch::test
