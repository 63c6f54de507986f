#include "tests/integration/sync_lab.h"

#include <csignal>
#include <stdexcept>

#include "base/clock.h"
#include "incident/incident.h"
#include "tests/support/daemon.h"

namespace storewatch::test {

using nlohmann::json;

OwnBroker::OwnBroker(std::string listeners, int wait_port) : wait_port_(wait_port) {
  write_file(dir_ / "mosquitto.conf", listeners +
                                          "\nallow_anonymous true\n"
                                          "persistence false\n"
                                          "log_dest stderr\n"
                                          "log_type error\n"
                                          "log_type warning\n");
  start();
}

void OwnBroker::start() {
  for (int attempt = 0; attempt < 3; ++attempt) {
    child_ = std::make_unique<Child>(
        std::vector<std::string>{"mosquitto", "-c", (dir_ / "mosquitto.conf").string()},
        dir_.path());
    if (wait_until([this] { return port_open(wait_port_) || !child_->running(); }, 10s) &&
        child_->running()) {
      return;
    }
    std::string err = child_->err();
    child_.reset();
    if (attempt == 2) throw std::runtime_error("mosquitto did not start: " + err);
  }
}

void OwnBroker::stop() {
  if (child_) {
    child_->stop(SIGTERM);
    child_.reset();
  }
}

void SyncLab::configure(const std::string& agent_broker, const std::string& hq_broker,
                        const std::string& sync_extra) {
  DaemonConfig c;
  c.store_id = store;
  c.store_keys = "name = \"Sync Lab\"\n";
  c.data_dir = dir / "agent";
  c.control_socket = dir / "agent" / "control.sock";
  c.agent_keys = "log_level = \"debug\"\n";
  c.broker = agent_broker;
  c.sync_keys = "reconnect_max = \"1s\"\nack_timeout = \"3s\"\n" + sync_extra;
  c.body =
      "# The fault tests flap the device on purpose: no flap detection.\n"
      "[incidents]\nflap_high = 100\nflap_low = 90\n\n" +
      tcp_probe_toml("lane-01-pos", device.port(),
                     "interval = \"100ms\"\ntimeout = \"200ms\"\nfail_after = 1\n"
                     "recover_after = 1\nseverity = \"high\"\n");
  c.write(agent_config);
  write_file(hq_config, fmt::format(R"(
[hq]
broker = "{}"
database = "{}"
reconnect_max = "1s"
{}
)",
                                    hq_broker, hq_db.string(), hq_extra));
}

RunResult SyncLab::agent(std::vector<std::string> args) {
  return run_cli(agent_config, std::move(args));
}

RunResult SyncLab::hq(std::vector<std::string> args) {
  std::vector<std::string> full{"hq", "--config", hq_config.string()};
  full.insert(full.end(), args.begin(), args.end());
  return run(storewatch_command(full));
}

std::unique_ptr<Child> SyncLab::start_agent() {
  std::vector<std::string> argv = agent_prefix;
  for (auto& a : daemon_command(agent_config)) argv.push_back(a);
  return std::make_unique<Child>(argv, dir / "logs");
}

std::unique_ptr<Child> SyncLab::start_hq() {
  return std::make_unique<Child>(storewatch_command({"hq", "--config", hq_config.string(), "run"}),
                                 dir / "logs");
}

json SyncLab::sync_status() {
  auto r = agent({"sync", "status", "--json"});
  if (r.exit_code != 0) return nullptr;
  json j = json::parse(r.out, nullptr, false);
  return j.is_discarded() ? json(nullptr) : j;
}

void SyncLab::seed_backlog(int n) {
  using namespace agent;
  std::filesystem::create_directories(agent_db.parent_path());
  auto db = Store::open(agent_db, Store::Mode::read_write);
  if (!db) throw std::runtime_error(db.error().message);
  const WallTime now = SystemClock().wall_now();
  std::vector<Change> changes;
  auto flush = [&] {
    auto r = db->commit(changes);
    if (!r) throw std::runtime_error(r.error().message);
    changes.clear();
  };
  for (int i = 0; i < n / 2; ++i) {
    Incident inc;
    inc.uid = new_uid(now);
    inc.probe = fmt::format("seeded-{:05}", i);
    inc.condition = "down";
    inc.dedup_key = store + ":" + inc.probe + ":down";
    inc.severity = config::Severity::low;
    inc.priority = "P4";
    inc.state = IncidentState::open;
    inc.t_fault = now;
    inc.t_detect = now;
    inc.summary = "seeded backlog";
    changes.push_back(IncidentChange{inc, IncidentEvent{new_uid(now), "opened", now, "agent", {}}});
    inc.state = IncidentState::resolved;
    inc.t_restored = now;
    inc.t_resolved = now;
    changes.push_back(
        IncidentChange{inc, IncidentEvent{new_uid(now), "resolved", now, "agent", {}}});
    if (changes.size() >= 500) flush();
  }
  flush();
}

SeqUids SyncLab::agent_events() {
  auto store = agent::Store::open(agent_db, agent::Store::Mode::read_only);
  if (!store) throw std::runtime_error(store.error().message);
  auto rows = store->events_after(0, 1'000'000);
  if (!rows) throw std::runtime_error(rows.error().message);
  SeqUids out;
  for (const auto& r : *rows) out.emplace_back(r.seq, r.uid);
  return out;
}

namespace {

/// Runs `sql` on a read-only connection to `path`, calling `row` per row.
template <class F>
bool query(const std::filesystem::path& path, const std::string& sql, const std::string& bind,
           F row) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return false;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  bool ok = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK;
  if (ok) {
    sqlite3_bind_text(st, 1, bind.c_str(), -1, SQLITE_TRANSIENT);
    int rc = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) row(st);
    ok = rc == SQLITE_DONE;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return ok;
}

}  // namespace

SeqUids SyncLab::hq_events() {
  SeqUids out;
  if (!std::filesystem::exists(hq_db)) return out;
  query(hq_db, "SELECT seq, uid FROM events WHERE store = ?1 ORDER BY seq", store,
        [&](sqlite3_stmt* st) {
          out.emplace_back(sqlite3_column_int64(st, 0),
                           reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
        });
  return out;
}

std::int64_t SyncLab::hq_acked() {
  std::int64_t acked = 0;
  if (!std::filesystem::exists(hq_db)) return 0;
  query(hq_db, "SELECT acked_seq FROM stores WHERE store = ?1", store,
        [&](sqlite3_stmt* st) { acked = sqlite3_column_int64(st, 0); });
  return acked;
}

std::string SyncLab::hq_difference() {
  SeqUids local = agent_events();
  SeqUids remote = hq_events();
  for (std::size_t i = 0; i < local.size(); ++i) {
    if (local[i].first != static_cast<std::int64_t>(i) + 1) {
      return fmt::format("the agent's seqs are not contiguous at {}", local[i].first);
    }
  }
  if (local.empty()) return "the agent has no events";
  if (remote.size() != local.size()) {
    return fmt::format("HQ has {} events, the agent {}", remote.size(), local.size());
  }
  for (std::size_t i = 0; i < local.size(); ++i) {
    if (remote[i] != local[i]) {
      return fmt::format("event {}: HQ has ({}, {}), the agent ({}, {})", i, remote[i].first,
                         remote[i].second, local[i].first, local[i].second);
    }
  }
  return "";
}

std::string SyncLab::one_incident_reaches_hq(const OwnBroker& broker) {
  auto hq_child = start_hq();
  auto agent_child = start_agent();
  device.down();
  if (!wait_until([&] {
        nlohmann::json s = sync_status();
        return s.is_object() && s["connected"] == true && s["hq_acked_seq"] == 1;
      })) {
    return "the opening never reached HQ\n" + logs_of(*agent_child) + broker.log();
  }
  device.up();
  if (!wait_until([&] { return hq_acked() == 2; })) {
    return "the resolution never reached HQ\n" + logs_of(*agent_child);
  }
  return hq_difference();
}

// --- TestPki ------------------------------------------------------------------

TestPki::TestPki(const std::vector<std::string>& clients) {
  const auto d = dir_.path().string();
  must({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", d + "/ca.key", "-out", d + "/ca.pem", "-days", "3650", "-subj",
        "/CN=storewatch-sync-test-ca"});
  // A year: far outside the agent's expiry warning (cert_warn_days).
  issue("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\n", 365);
  for (const auto& c : clients) issue_client(c, c, 365);
}

void TestPki::issue_client(const std::string& name, const std::string& cn, int days) {
  issue(name, cn, "basicConstraints=CA:FALSE\n", days);
}

void TestPki::must(const std::vector<std::string>& argv) {
  auto r = run(argv);
  if (r.exit_code != 0) throw std::runtime_error(fmt::format("{}: {}", argv[0], r.err));
}

void TestPki::issue(const std::string& name, const std::string& cn, const std::string& ext,
                    int days) {
  const auto d = dir_.path().string();
  write_file(dir_ / (name + ".ext"), ext);
  must({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", d + "/" + name + ".key", "-out", d + "/" + name + ".csr", "-subj", "/CN=" + cn});
  must({"openssl", "x509", "-req", "-in", d + "/" + name + ".csr", "-CA", d + "/ca.pem", "-CAkey",
        d + "/ca.key", "-CAcreateserial", "-out", d + "/" + name + ".pem", "-days",
        std::to_string(days), "-extfile", d + "/" + name + ".ext"});
}

}  // namespace storewatch::test
