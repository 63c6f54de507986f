// The incident engine inside the real daemon: devices of the store
// simulator go down, a real remediation command brings them back, humans act
// through the CLI and the control socket, and an uplink takes its lanes down
// with it. Every check reads the real database through the CLI.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <memory>

#include "tests/support/daemon.h"
#include "tests/support/store_lab.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kLaneHost = "127.0.0.1";

class DaemonIncidents : public ::testing::Test {
 protected:
  /// A lab with `names` as tcp devices on free ports.
  void lab_with(const std::vector<std::string>& names) {
    std::string toml;
    for (const auto& n : names) {
      ports[n] = free_port();
      toml += fmt::format("[[device]]\nname = \"{}\"\nkind = \"tcp\"\nhost = \"{}\"\nport = {}\n\n",
                          n, kLaneHost, ports[n]);
    }
    lab = std::make_unique<StoreLab>(toml);
  }

  /// A tcp probe of a lab device, fast enough for a test.
  std::string probe(const std::string& name, const std::string& extra = "") {
    return tcp_probe_toml(name, ports.at(name),
                          "interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 2\n"
                          "recover_after = 2\n" +
                              extra + "\n");
  }

  void start(const std::string& body) {
    config = dir / "storewatch.toml";
    daemon_config = DaemonConfig::in(dir, "store-0042");
    daemon_config.broker = fmt::format("tcp://127.0.0.1:{}", free_port());
    daemon_config.body = body;
    daemon_config.write(config);
    auto check = cli({"config", "check"});
    ASSERT_EQ(check.exit_code, 0) << check.err;
    daemon = launch_daemon(config, dir / "logs");
    ASSERT_TRUE(wait_until([&] { return daemon_is_running(config); })) << daemon->err();
  }

  RunResult cli(std::vector<std::string> args) { return run_cli(config, std::move(args)); }

  json incidents() {
    auto r = cli({"incidents", "--all", "--json"});
    if (r.exit_code != 0) return json::array();
    return json::parse(r.out, nullptr, false);
  }

  json incident_of(const std::string& probe_name) {
    for (const auto& i : incidents()) {
      if (i.value("probe", "") == probe_name) return i;
    }
    return json();
  }

  std::vector<std::string> timeline(const std::string& uid) {
    auto r = cli({"incident", "show", uid, "--json"});
    std::vector<std::string> out;
    auto j = json::parse(r.out, nullptr, false);
    if (j.is_discarded()) return out;
    for (const auto& e : j["events"]) out.push_back(e.value("type", ""));
    return out;
  }

  json events_of(const std::string& uid, const std::string& type) {
    auto r = cli({"incident", "show", uid, "--json"});
    auto j = json::parse(r.out, nullptr, false);
    json out = json::array();
    if (j.is_discarded()) return out;
    for (const auto& e : j["events"]) {
      if (e.value("type", "") == type) out.push_back(e);
    }
    return out;
  }

  TempDir dir;
  std::filesystem::path config;
  DaemonConfig daemon_config;
  std::map<std::string, int> ports;
  std::unique_ptr<StoreLab> lab;
  std::unique_ptr<Child> daemon;
};

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST_F(DaemonIncidents, ARealRemediationHealsTheDeviceAndTheIncidentIsSelfHealed) {
  lab_with({"lane-01"});
  // The remediation brings the lab device back, as restarting a POS service
  // would: a real child process talking to the simulator.
  const std::string heal = fmt::format(
      "[[remediation]]\nname = \"restart-lane-01\"\ntype = \"exec\"\n"
      "command = [\"/usr/bin/python3\", \"{}\", \"ctl\", \"--control\", \"{}\", \"fault\", "
      "\"lane-01\", \"none\"]\ntimeout = \"10s\"\nverify_after = \"300ms\"\n",
      storelab_script().string(), (lab->dir() / "lab.sock").string());
  start(probe("lane-01", "remediation = \"restart-lane-01\"") + heal);
  lab->fault("lane-01", "down");

  json inc;
  ASSERT_TRUE(wait_until(
      [&] {
        inc = incident_of("lane-01");
        return inc.is_object() && inc.value("state", "") == "resolved";
      },
      30s))
      << daemon->err();
  EXPECT_TRUE(inc.value("self_healed", false));
  auto t = timeline(inc["uid"]);
  EXPECT_EQ(t.front(), "opened");
  EXPECT_TRUE(contains(t, "remediation_started"));
  EXPECT_TRUE(contains(t, "remediation_succeeded"));
  EXPECT_EQ(t.back(), "resolved");
  auto ok = events_of(inc["uid"], "remediation_succeeded");
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0]["body"].value("exit_code", -1), 0) << ok[0].dump();
}

TEST_F(DaemonIncidents, AFailingRemediationBacksOffEscalatesAndKeepsOnly4KBOfOutput) {
  lab_with({"lane-01"});
  // Prints 2 MB, then exits 3: a failed attempt whose event keeps 4 KB.
  const std::string heal =
      "[[remediation]]\nname = \"noisy\"\ntype = \"exec\"\n"
      "command = [\"/bin/sh\", \"-c\", \"head -c 2000000 /dev/zero | tr '\\\\0' x; exit 3\"]\n"
      "timeout = \"10s\"\nmax_attempts = 2\nbackoff = \"200ms\"\nverify_after = \"100ms\"\n"
      "escalate_severity = \"critical\"\n";
  start(probe("lane-01", "remediation = \"noisy\"\nseverity = \"medium\"") + heal);
  lab->fault("lane-01", "down");
  json inc;
  ASSERT_TRUE(wait_until(
      [&] {
        inc = incident_of("lane-01");
        return inc.is_object() && inc.value("state", "") == "escalated";
      },
      30s))
      << daemon->err();
  EXPECT_EQ(inc.value("severity", ""), "critical");
  auto failed = events_of(inc["uid"], "remediation_failed");
  ASSERT_EQ(failed.size(), 2u);
  for (const auto& f : failed) {
    EXPECT_LE(f["body"].value("output", "").size(), 4096u);
    EXPECT_TRUE(f["body"].value("output_truncated", false) ||
                f["body"].value("detail", "").find("1 MB") != std::string::npos)
        << f.dump();
  }
  // Escalated stays so: no third attempt.
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(events_of(inc["uid"], "remediation_started").size(), 2u);
}

TEST_F(DaemonIncidents, HumansActThroughTheCliAndEveryMistakeIsAClearError) {
  lab_with({"lane-01", "printer-01"});
  start(probe("lane-01", "labels = { kind = \"pos\" }") + probe("printer-01"));
  lab->fault("lane-01", "down");
  json inc;
  ASSERT_TRUE(wait_until([&] {
    inc = incident_of("lane-01");
    return inc.is_object();
  }));
  const std::string uid = inc["uid"];

  auto ack = cli({"ack", uid.substr(0, 20), "--by", "maria", "--note", "on my way"});
  ASSERT_EQ(ack.exit_code, 0) << ack.err;
  EXPECT_NE(ack.out.find("acknowledged"), std::string::npos);
  auto acked = events_of(uid, "acknowledged");
  ASSERT_EQ(acked.size(), 1u);
  EXPECT_EQ(acked[0].value("actor", ""), "cli:maria");

  auto twice = cli({"ack", uid, "--by", "maria"});
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.err.find("already acknowledged"), std::string::npos) << twice.err;
  auto unknown = cli({"ack", "ffffffff-0000", "--by", "maria"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no incident"), std::string::npos) << unknown.err;
  auto empty_note = cli({"note", uid});
  EXPECT_EQ(empty_note.exit_code, 1);
  EXPECT_NE(empty_note.err.find("--note"), std::string::npos) << empty_note.err;
  auto bad_by = cli({"note", uid, "--by", "two words", "--note", "x"});
  EXPECT_EQ(bad_by.exit_code, 1);

  auto note = cli({"note", uid, "--by", "maria", "--note", "cable was loose", "--json"});
  ASSERT_EQ(note.exit_code, 0) << note.err;
  EXPECT_EQ(json::parse(note.out).value("uid", ""), uid);

  lab->fault("lane-01", "none");
  auto closed = cli({"close", uid, "--by", "maria"});
  ASSERT_EQ(closed.exit_code, 0) << closed.err;
  auto ack_closed = cli({"ack", uid, "--by", "maria"});
  EXPECT_EQ(ack_closed.exit_code, 1);
  EXPECT_NE(ack_closed.err.find("closed"), std::string::npos) << ack_closed.err;

  // Silences: one that matches nothing is refused; a label works.
  auto nothing = cli({"silence", "add", "--match", "kiosk-*", "--for", "1h", "--reason", "x"});
  EXPECT_EQ(nothing.exit_code, 1);
  EXPECT_NE(nothing.err.find("matches none"), std::string::npos) << nothing.err;
  auto bad_for = cli({"silence", "add", "--match", "lane-*", "--for", "soon", "--reason", "x"});
  EXPECT_EQ(bad_for.exit_code, 2);
  auto added = cli({"silence", "add", "--match", "kind=pos", "--for", "1h", "--reason",
                    "swapping the lane PC", "--by", "maria", "--json"});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  const std::string silence = json::parse(added.out).value("uid", "");
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] {
    for (const auto& i : incidents()) {
      if (i.value("probe", "") == "lane-01" && i.value("state", "") == "open") {
        return i.value("in_maintenance", false);
      }
    }
    return false;
  })) << daemon->err();
  auto list = cli({"silence", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(json::parse(list.out)["silences"].size(), 1u);
  auto removed = cli({"silence", "remove", silence.substr(0, 13), "--by", "maria"});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  // The lane still fails when its silence ends: a normal incident now.
  ASSERT_TRUE(wait_until([&] {
    for (const auto& i : incidents()) {
      if (i.value("probe", "") == "lane-01" && i.value("state", "") == "open") {
        return !i.value("in_maintenance", true);
      }
    }
    return false;
  })) << daemon->err();
}

TEST_F(DaemonIncidents, AnUplinkDownGivesOneIncidentWithItsLanesSuppressed) {
  std::vector<std::string> names = {"uplink"};
  for (int i = 1; i <= 6; ++i) names.push_back(fmt::format("lane-{:02}", i));
  lab_with(names);
  // A slower uplink probe than its lanes: the lanes see the outage first.
  std::string body = tcp_probe_toml("uplink", ports.at("uplink"),
                                    "interval = \"700ms\"\ntimeout = \"150ms\"\nfail_after = 2\n"
                                    "recover_after = 2\nseverity = \"critical\"\n\n");
  for (int i = 1; i <= 6; ++i) {
    body += probe(fmt::format("lane-{:02}", i), "depends_on = [\"uplink\"]");
  }
  start(body);
  for (const auto& n : names) lab->fault(n, "down");
  json all;
  ASSERT_TRUE(wait_until(
      [&] {
        all = incidents();
        return all.size() == names.size();
      },
      30s))
      << daemon->err();
  std::string root;
  int suppressed = 0;
  for (const auto& i : all) {
    if (i.value("probe", "") == "uplink") {
      root = i.value("uid", "");
      EXPECT_TRUE(i["suppressed_by"].is_null());
    }
  }
  for (const auto& i : all) {
    if (i.value("probe", "") == "uplink") continue;
    EXPECT_EQ(i.value("suppressed_by", json()).get<std::string>(), root) << i.dump();
    auto t = timeline(i["uid"]);
    ASSERT_FALSE(t.empty());
    EXPECT_EQ(t.front(), "suppressed") << i.dump();
    suppressed += t.front() == "suppressed";
  }
  EXPECT_EQ(suppressed, 6);

  // The uplink comes back, lane-03 does not: it opens its own incident.
  for (const auto& n : names) {
    if (n != "lane-03") lab->fault(n, "none");
  }
  ASSERT_TRUE(wait_until(
      [&] {
        json lane = incident_of("lane-03");
        return lane.is_object() && lane["suppressed_by"].is_null() &&
               lane.value("state", "") == "open";
      },
      30s))
      << daemon->err();
  json lane = incident_of("lane-03");
  auto t = timeline(lane["uid"]);
  EXPECT_EQ(t, (std::vector<std::string>{"suppressed", "opened"}));
}

TEST_F(DaemonIncidents, OverTheSizeCapWithNothingSyncedRaisesACriticalStorageIncident) {
  lab_with({"lane-01"});
  start(probe("lane-01") + "\n");
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();
  // 3,000 unsynced events of ~1 KB each: well over a 1 MB cap, and none of
  // them may be dropped.
  const auto db = (dir / "data" / "storewatch.db").string();
  auto fill = run({"sqlite3", db,
                   "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) "
                   "INSERT INTO events (uid, incident_uid, type, at, actor, body) SELECT 'e' || x, "
                   "'i', 'note', '2026-11-27T00:00:00.000Z', 'agent', "
                   "json_object('pad', hex(zeroblob(500))) FROM c;"});
  ASSERT_EQ(fill.exit_code, 0) << fill.err;
  daemon_config.agent_keys = "max_db_size = \"1MB\"\n";
  daemon_config.write(config);
  daemon = launch_daemon(config, dir / "logs");
  json storage;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& i : incidents()) {
          if (i.value("probe", "") == "storewatch") storage = i;
        }
        return storage.is_object();
      },
      30s))
      << daemon->err();
  EXPECT_EQ(storage.value("severity", ""), "critical");
  EXPECT_EQ(storage.value("state", ""), "open");
  EXPECT_NE(storage.value("summary", "").find("cap"), std::string::npos) << storage.dump();
  auto status = json::parse(cli({"status", "--json"}).out);
  EXPECT_TRUE(status["agent"]["storage"].value("over_cap", false)) << status.dump();
  auto count = run({"sqlite3", db, "SELECT count(*) FROM events WHERE incident_uid = 'i'"});
  EXPECT_EQ(count.out, "3000\n") << "no unsynced event is dropped";
}

}  // namespace
}  // namespace storewatch::test
