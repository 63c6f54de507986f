// What a technician reads: `incidents` and `incident show`, tables and JSON,
// from a database prepared through the agent's own Store with known incidents
// and timelines (no daemon running). Times are relative to now so the
// "3h ago" columns are stable.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>

#include "agent/store.h"
#include "base/clock.h"
#include "incident/incident.h"
#include "tests/support/daemon.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// The line holding `needle`, or "".
std::string line_with(const std::string& text, const std::string& needle) {
  for (const auto& line : lines_of(text)) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return "";
}

class CliOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = DaemonConfig::in(dir_, "store-cli");
    config.body = tcp_probe_toml("lane-02-pos", 1) + "\n" + tcp_probe_toml("printer-01", 1);
    config.write(config_);
    prepare();
  }

  /// Two incidents: lane 2's POS, opened 3h ago, a failed restart with its
  /// output, acknowledged and noted by dana; printer 1's, two days old and
  /// resolved.
  void prepare() {
    using namespace agent;
    using namespace std::chrono_literals;
    std::filesystem::create_directories(dir_ / "data");
    auto db = Store::open(dir_ / "data" / "storewatch.db", Store::Mode::read_write);
    ASSERT_TRUE(db) << db.error().message;
    const WallTime now = SystemClock().wall_now();
    std::vector<Change> changes;
    auto change = [&](const Incident& inc, const std::string& type, WallTime at,
                      const std::string& actor, json extra) {
      changes.push_back(
          IncidentChange{inc, IncidentEvent{new_uid(at), type, at, actor, std::move(extra)}});
    };

    Incident printer;
    printer.uid = new_uid(now - 48h);
    printer.probe = "printer-01";
    printer.condition = "down";
    printer.dedup_key = "store-cli:printer-01:down";
    printer.severity = config::Severity::low;
    printer.priority = "P4";
    printer.t_fault = now - 48h - 20s;
    printer.t_detect = now - 48h;
    printer.summary = "printer-01 is down: paper out";
    change(printer, "opened", now - 48h, "agent", json::object());
    printer.state = IncidentState::resolved;
    printer.t_restored = now - 47h;
    printer.t_resolved = now - 47h;
    change(printer, "resolved", now - 47h, "agent", json::object());

    Incident lane;
    lane.uid = new_uid(now - 3h);
    lane.probe = "lane-02-pos";
    lane.condition = "down";
    lane.dedup_key = "store-cli:lane-02-pos:down";
    lane.severity = config::Severity::high;
    lane.priority = "P2";
    lane.t_fault = now - 3h - 30s;
    lane.t_detect = now - 3h;
    lane.summary = "lane-02-pos is down: HTTP 503, expected 200";
    change(lane, "opened", now - 3h, "agent", json::object());
    change(lane, "remediation_failed", now - 3h + 1min, "agent",
           json{{"remediation", "restart-pos"},
                {"type", "exec"},
                {"attempt", 1},
                {"max_attempts", 3},
                {"detail", "exited with status 1"},
                {"exit_code", 1},
                {"output", "stopping pos-app\nerror: lane busy, a basket is open\n"},
                {"output_truncated", false},
                {"took_ms", 812}});
    lane.state = IncidentState::acknowledged;
    lane.t_ack = now - 2h;
    change(lane, "acknowledged", now - 2h, "cli:dana", json{{"note", "on site"}});
    change(lane, "note", now - 1h, "cli:dana", json{{"note", "waiting for the POS vendor"}});

    auto committed = db->commit(changes);
    ASSERT_TRUE(committed) << committed.error().message;
    lane_uid_ = lane.uid;
    printer_uid_ = printer.uid;
  }

  RunResult sw(std::vector<std::string> args,
               std::map<std::string, std::string> env = {{"NO_COLOR", "1"}, {"COLUMNS", ""}}) {
    return run_cli(config_, std::move(args), std::move(env));
  }

  TempDir dir_;
  std::filesystem::path config_ = dir_ / "storewatch.toml";
  std::string lane_uid_, printer_uid_;
};

TEST_F(CliOutput, IncidentsIsAnAlignedTableOfTheOpenOnesNewestFirst) {
  auto r = sw({"incidents"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rows = lines_of(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;  // the header and lane 2; the printer's is resolved
  const std::string& header = rows[0];
  const std::string& lane = rows[1];
  EXPECT_THAT(header, HasSubstr("UID"));
  for (const auto& [column, cell] : std::vector<std::pair<std::string, std::string>>{
           {"PROBE", "lane-02-pos"},
           {"STATE", "acknowledged"},
           {"SEVERITY", "high"},
           {"PRIO", "P2"},
           {"SUMMARY", "lane-02-pos is down: HTTP 503"}}) {
    ASSERT_NE(header.find(column), std::string::npos) << column;
    EXPECT_EQ(lane.find(cell), header.find(column)) << column << " is not aligned:\n" << r.out;
  }
  // The uid by its shortest start that no other row shares, 8 characters at least.
  EXPECT_EQ(lane.rfind(lane_uid_.substr(0, 8) + "  ", 0), 0u) << lane;
  // DETECTED: "2026-11-27 09:00:31Z (3h ago)", the absolute time and how long ago.
  const auto ago = lane.find("Z (3h ago)");
  ASSERT_NE(ago, std::string::npos) << lane;
  EXPECT_EQ(ago - 19, header.find("DETECTED")) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("\033[")));

  auto all = sw({"incidents", "--all"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  rows = lines_of(all.out);
  ASSERT_EQ(rows.size(), 3u) << all.out;
  EXPECT_THAT(rows[1], HasSubstr("lane-02-pos"));
  EXPECT_THAT(rows[2], HasSubstr("printer-01"));
  EXPECT_THAT(rows[2], HasSubstr("resolved"));
  EXPECT_THAT(rows[2], HasSubstr("(2d ago)"));

  // --since looks back from now: the printer's incident is older than a day.
  auto recent = sw({"incidents", "--all", "--since", "1d"});
  EXPECT_EQ(lines_of(recent.out).size(), 2u) << recent.out;
}

TEST_F(CliOutput, IncidentsJsonHasTheDesignShape) {
  auto r = sw({"incidents", "--all", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json list = json::parse(r.out);
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u);
  for (const auto& i : list) {
    for (const char* key :
         {"uid", "probe", "state", "severity", "priority", "t_fault", "t_detect", "t_ack",
          "t_restored", "t_resolved", "t_closed", "self_healed", "suppressed_by", "flapping",
          "in_maintenance", "reopen_count", "summary"}) {
      EXPECT_TRUE(i.contains(key)) << key << " missing from " << i.dump();
    }
  }
  const json& lane = list[0];
  EXPECT_EQ(lane["uid"], lane_uid_);
  EXPECT_EQ(lane["state"], "acknowledged");
  EXPECT_EQ(lane["severity"], "high");
  EXPECT_EQ(lane["priority"], "P2");
  EXPECT_TRUE(lane["t_ack"].is_string());
  EXPECT_TRUE(parse_rfc3339(lane["t_detect"].get<std::string>()).has_value()) << lane.dump();
  EXPECT_TRUE(lane["t_resolved"].is_null());
  EXPECT_TRUE(lane["suppressed_by"].is_null());
  EXPECT_EQ(lane["reopen_count"], 0);
  const json& printer = list[1];
  EXPECT_EQ(printer["uid"], printer_uid_);
  EXPECT_EQ(printer["state"], "resolved");
  EXPECT_TRUE(printer["t_resolved"].is_string());

  auto open = sw({"incidents", "--json"});
  EXPECT_EQ(json::parse(open.out).size(), 1u) << open.out;
}

TEST_F(CliOutput, IncidentShowIsATimelineOfWhoDidWhatWithTheRemediationOutput) {
  // A unique start of the uid is enough.
  auto r = sw({"incident", "show", lane_uid_.substr(0, 13)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("incident " + lane_uid_ + "\n"));
  EXPECT_THAT(r.out, HasSubstr("  probe     lane-02-pos\n"));
  EXPECT_THAT(r.out, HasSubstr("  state     acknowledged\n"));
  EXPECT_THAT(r.out, HasSubstr("  severity  high (P2)\n"));
  EXPECT_THAT(r.out, HasSubstr("  summary   lane-02-pos is down: HTTP 503, expected 200\n"));
  EXPECT_THAT(line_with(r.out, "  detected  "), HasSubstr("(3h ago)"));

  const std::string header = line_with(r.out, "SEQ");
  ASSERT_NE(header, "") << r.out;
  const auto event_column = header.find("EVENT"), by_column = header.find("BY"),
             detail_column = header.find("DETAIL");
  const struct {
    std::string type, by, detail, ago;
  } expected[] = {
      {"opened", "agent", "", "(3h ago)"},
      {"remediation_failed", "agent", "restart-pos attempt 1/3; exit 1; exited with status 1",
       "(2h ago)"},  // 2h59m
      {"acknowledged", "cli:dana", "on site", "(2h ago)"},
      {"note", "cli:dana", "waiting for the POS vendor", "(1h ago)"},
  };
  auto rows = lines_of(r.out);
  auto at = std::find(rows.begin(), rows.end(), header);
  ASSERT_NE(at, rows.end());
  for (const auto& e : expected) {
    ++at;
    ASSERT_NE(at, rows.end()) << r.out;
    SCOPED_TRACE(*at);
    EXPECT_EQ(at->find(e.type), event_column);
    EXPECT_EQ(at->find(e.by), by_column);
    if (!e.detail.empty()) {
      EXPECT_EQ(at->find(e.detail), detail_column);
    }
    EXPECT_THAT(*at, HasSubstr(e.ago));
  }
  // The restart's output, line by line, after the table.
  EXPECT_THAT(r.out, HasSubstr("output of restart-pos (seq 4, remediation_failed):\n"
                               "  | stopping pos-app\n"
                               "  | error: lane busy, a basket is open\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("\033[")));
}

TEST_F(CliOutput, IncidentShowJsonCarriesTheEventsWithTheirOwnFields) {
  auto r = sw({"incident", "show", lane_uid_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["uid"], lane_uid_);
  ASSERT_EQ(j["events"].size(), 4u) << j.dump(2);
  std::vector<std::string> types;
  for (const auto& e : j["events"]) {
    types.push_back(e["type"]);
    EXPECT_FALSE(e["body"].contains("incident_state")) << "the snapshot is the incident itself";
    for (const char* key : {"seq", "type", "at", "actor", "body"}) {
      EXPECT_TRUE(e.contains(key)) << key;
    }
  }
  EXPECT_THAT(types,
              ::testing::ElementsAre("opened", "remediation_failed", "acknowledged", "note"));
  EXPECT_EQ(j["events"][1]["body"]["exit_code"], 1);
  EXPECT_EQ(j["events"][1]["body"]["output"],
            "stopping pos-app\nerror: lane busy, a basket is open\n");
  EXPECT_EQ(j["events"][2]["actor"], "cli:dana");

  auto unknown = sw({"incident", "show", "ffffffff"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no incident ffffffff"));
}

TEST_F(CliOutput, ColourOnlyOnATerminalAndNeverWithNoColor) {
  // `script` gives the command a pseudo-terminal for its stdout.
  std::string command;
  for (const auto& arg : storewatch_command({"--config", config_.string(), "incidents", "--all"})) {
    command += "'" + arg + "' ";
  }
  auto tty = run({"script", "-qec", command, "/dev/null"}, {{"TERM", "xterm"}});
  ASSERT_EQ(tty.exit_code, 0) << tty.err;
  EXPECT_THAT(tty.out, HasSubstr("\033[")) << tty.out;
  EXPECT_THAT(tty.out, HasSubstr("printer-01"));

  auto no_color =
      run({"script", "-qec", command, "/dev/null"}, {{"TERM", "xterm"}, {"NO_COLOR", "1"}});
  ASSERT_EQ(no_color.exit_code, 0) << no_color.err;
  EXPECT_THAT(no_color.out, HasSubstr("printer-01"));
  EXPECT_THAT(no_color.out, Not(HasSubstr("\033[")));

  auto piped = sw({"incidents", "--all"}, {{"TERM", "xterm"}});
  EXPECT_THAT(piped.out, Not(HasSubstr("\033[")));
}

}  // namespace
}  // namespace storewatch::test
