// `storewatch report` as a user runs it: the real binary, reading a real
// database (written through agent::Store, as the daemon writes it) with the
// daemon down.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/history.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class ReportCli : public ::testing::Test {
 protected:
  TempDir dir;
  std::filesystem::path config = dir / "storewatch.toml";
  std::filesystem::path data_dir = dir / "data";

  ReportCli() {
    auto c = DaemonConfig::in(dir, "store-report");
    c.data_dir = data_dir;
    c.body = tcp_probe_toml("lane-01", 1);
    c.write(config);
  }

  RunResult storewatch(std::vector<std::string> args) {
    return run_cli(config, std::move(args), {{"NO_COLOR", "1"}});
  }

  /// Three counted incidents in the last hours, one suppressed, one ten
  /// days old; all resolved, so no figure depends on when the binary runs.
  void write_history() {
    std::filesystem::create_directories(data_dir);
    auto store = agent::Store::open(data_dir / "storewatch.db", agent::Store::Mode::read_write);
    ASSERT_TRUE(store) << store.error().message;
    const WallTime now = SystemClock().wall_now();
    auto resolve = [&](Incident& i, WallTime restored, bool healed) {
      i.state = IncidentState::resolved;
      i.self_healed = healed;
      i.t_restored = i.t_resolved = restored;
      record(*store, i, "resolved", restored);
    };

    Incident a = incident("a", "lane-01", now - 3h, now - 3h + 30s);
    record(*store, a, "opened", *a.t_detect);
    a.state = IncidentState::acknowledged;
    a.t_ack = *a.t_detect + 90s;
    record(*store, a, "acknowledged", *a.t_ack, "cli:ann");
    resolve(a, now - 3h + 20min, false);

    Incident b = incident("b", "printer-01", now - 2h, now - 2h + 10s);
    record(*store, b, "opened", *b.t_detect);
    resolve(b, now - 2h + 60s, true);

    Incident c = incident("c", "lane-01", now - 1h, now - 1h + 20s);
    record(*store, c, "opened", *c.t_detect);
    resolve(c, now - 1h + 10min, false);
    c.state = IncidentState::closed;
    c.t_closed = now - 30min;
    record(*store, c, "closed", *c.t_closed);

    Incident s = incident("s", "lane-02", now - 1h, now - 1h + 5s);
    s.suppressed_by = "c";
    record(*store, s, "suppressed", *s.t_detect);

    Incident old = incident("old", "uplink", now - 240h, now - 240h + 10s);
    record(*store, old, "opened", *old.t_detect);
    resolve(old, now - 240h + 1h, false);
  }
};

TEST_F(ReportCli, JsonFiguresFromTheDatabase) {
  write_history();
  auto r = storewatch({"report", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["incidents"], 3);
  EXPECT_EQ(j["suppressed"], 1);
  EXPECT_EQ(j["in_maintenance"], 0);
  EXPECT_EQ(j["clock_anomalies"], 0);
  EXPECT_EQ(j["mttd"], (json{{"count", 3}, {"mean_s", 20.0}, {"median_s", 20.0}, {"p90_s", 30.0}}));
  EXPECT_EQ(j["mtta"], (json{{"count", 1}, {"mean_s", 90.0}, {"median_s", 90.0}, {"p90_s", 90.0}}));
  EXPECT_EQ(j["mttr"],
            (json{{"count", 2}, {"mean_s", 900.0}, {"median_s", 900.0}, {"p90_s", 1200.0}}));
  EXPECT_EQ(j["self_heal"]["rate"], 0.3333);
  EXPECT_EQ(j["self_heal"]["healed"], 1);
  EXPECT_EQ(j["self_heal"]["resolved"], 3);
  EXPECT_EQ(j["self_heal"]["median_s"], 60.0);
  EXPECT_EQ(j["top_by_count"], (json::parse(R"([{"probe":"lane-01","incidents":2},
                                                {"probe":"printer-01","incidents":1}])")));
  EXPECT_EQ(j["top_by_downtime"], (json::parse(R"([{"probe":"lane-01","downtime_s":1800.0},
                                                   {"probe":"printer-01","downtime_s":60.0}])")));
  auto since = parse_rfc3339(j["since"].get<std::string>());
  auto until = parse_rfc3339(j["until"].get<std::string>());
  ASSERT_TRUE(since && until);
  EXPECT_EQ(*until - *since, std::chrono::hours(24 * 7));

  // A wider window takes in the ten-day-old incident.
  r = storewatch({"report", "--since", "30d", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["incidents"], 4);
  EXPECT_EQ(j["mttr"]["count"], 3);
  EXPECT_EQ(j["top_by_downtime"][0], (json{{"probe", "uplink"}, {"downtime_s", 3600.0}}));
}

TEST_F(ReportCli, HumanOutputAndBadInput) {
  write_history();
  auto r = storewatch({"report"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("MTTR"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("15m 0s"), std::string::npos) << r.out;  // MTTR mean
  EXPECT_NE(r.out.find("33% (1 of 3"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\033["), std::string::npos);

  r = storewatch({"report", "--since", "a week"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--since a week is not a duration"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  EXPECT_EQ(storewatch({"report", "--since", "0s"}).exit_code, 2);
}

TEST_F(ReportCli, NoDatabaseYetIsAFailureThatSaysSo) {
  auto r = storewatch({"report", "--json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no database"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace storewatch::test
