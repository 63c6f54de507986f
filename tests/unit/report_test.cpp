// `storewatch report`'s figures, from a real database written through
// Store::commit, checked exactly (docs/METRICS.md has the definitions).

#include "agent/report.h"

#include <gtest/gtest.h>

#include "tests/support/history.h"
#include "tests/support/support.h"

namespace storewatch::agent {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::incident;
using test::record;

const WallTime kReportNow = WallTime(std::chrono::milliseconds(1'764'195'483'000));

WallTime ago(Millis d) {
  return kReportNow - d;
}

class ReportTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  Store store = std::move(*Store::open(dir / "storewatch.db", Store::Mode::read_write));

  Report report(Millis since = 7 * 24h) {
    auto r = build_report(store, kReportNow, since);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : Report{};
  }

  /// Opens an incident detected `detect_after` after its fault.
  Incident open(const std::string& uid, const std::string& probe, WallTime fault,
                Millis detect_after) {
    Incident i = incident(uid, probe, fault, fault + detect_after);
    record(store, i, "opened", *i.t_detect);
    return i;
  }
  void ack(Incident& i, WallTime at, const std::string& actor) {
    i.state = IncidentState::acknowledged;
    i.t_ack = at;
    record(store, i, "acknowledged", at, actor);
  }
  void resolve(Incident& i, WallTime restored, bool self_healed = false) {
    i.state = IncidentState::resolved;
    i.self_healed = self_healed;
    i.t_restored = restored;
    i.t_resolved = restored + 1s;
    record(store, i, "resolved", restored + 1s);
  }
  void close(Incident& i, WallTime at) {
    i.state = IncidentState::closed;
    i.t_closed = at;
    record(store, i, "closed", at);
  }
};

TEST(Summarise, OddAndEvenCountsNearestRankP90) {
  auto none = summarise({});
  EXPECT_EQ(none.count, 0);
  EXPECT_FALSE(none.mean_s || none.median_s || none.p90_s);

  auto one = summarise({7000});
  EXPECT_EQ(one.count, 1);
  EXPECT_DOUBLE_EQ(*one.mean_s, 7.0);
  EXPECT_DOUBLE_EQ(*one.median_s, 7.0);
  EXPECT_DOUBLE_EQ(*one.p90_s, 7.0);

  // Odd: median is the middle one; p90 rank ceil(2.7) = 3.
  auto odd = summarise({10'000, 1000, 2000});
  EXPECT_DOUBLE_EQ(*odd.mean_s, 4.333);
  EXPECT_DOUBLE_EQ(*odd.median_s, 2.0);
  EXPECT_DOUBLE_EQ(*odd.p90_s, 10.0);

  // Even: median is the mean of the two middle ones; p90 rank ceil(9) = 9.
  std::vector<std::int64_t> ten;
  for (int s = 10; s >= 1; --s) ten.push_back(s * 1000);
  auto even = summarise(ten);
  EXPECT_EQ(even.count, 10);
  EXPECT_DOUBLE_EQ(*even.mean_s, 5.5);
  EXPECT_DOUBLE_EQ(*even.median_s, 5.5);
  EXPECT_DOUBLE_EQ(*even.p90_s, 9.0);

  // Eleven values: p90 rank ceil(9.9) = 10; twenty: rank 18.
  ten.push_back(11'000);
  EXPECT_DOUBLE_EQ(*summarise(ten).p90_s, 10.0);
  EXPECT_DOUBLE_EQ(*summarise(ten).median_s, 6.0);
  std::vector<std::int64_t> twenty;
  for (int s = 1; s <= 20; ++s) twenty.push_back(s * 1000);
  EXPECT_DOUBLE_EQ(*summarise(twenty).p90_s, 18.0);

  // Half a millisecond rounds away from zero.
  EXPECT_DOUBLE_EQ(*summarise({1, 2}).median_s, 0.002);
}

TEST(FormatSpan, ReadsLikeAPersonWouldSayIt) {
  EXPECT_EQ(format_span(0), "0s");
  EXPECT_EQ(format_span(0.4), "0.4s");
  EXPECT_EQ(format_span(4), "4s");
  EXPECT_EQ(format_span(45.4), "45s");
  EXPECT_EQ(format_span(130), "2m 10s");
  EXPECT_EQ(format_span(3 * 3600 + 5 * 60 + 9), "3h 5m");
  EXPECT_EQ(format_span(2 * 86400 + 4 * 3600), "2d 4h");
  EXPECT_EQ(format_span(-3), "0s");
}

TEST_F(ReportTest, EmptyWindowHasNullStatistics) {
  json j = report().to_json();
  EXPECT_EQ(j["incidents"], 0);
  EXPECT_EQ(j["since"], format_rfc3339(ago(7 * 24h)));
  EXPECT_EQ(j["until"], format_rfc3339(kReportNow));
  for (const char* k : {"mttd", "mtta", "mttr"}) {
    EXPECT_EQ(j[k],
              (json{{"count", 0}, {"mean_s", nullptr}, {"median_s", nullptr}, {"p90_s", nullptr}}))
        << k;
  }
  EXPECT_TRUE(j["self_heal"]["rate"].is_null());
  EXPECT_EQ(j["self_heal"]["resolved"], 0);
  EXPECT_TRUE(j["self_heal"]["median_s"].is_null());
  EXPECT_EQ(j["top_by_count"], json::array());
  EXPECT_EQ(j["top_by_downtime"], json::array());
}

TEST_F(ReportTest, MttdOverEveryCountedIncident) {
  open("a", "lane-01", ago(5h), 10s);
  open("b", "lane-02", ago(4h), 20s);
  open("c", "lane-03", ago(3h), 30s);
  open("d", "lane-04", ago(2h), 100s);
  Report r = report();
  EXPECT_EQ(r.incidents, 4);
  EXPECT_EQ(r.mttd.count, 4);
  EXPECT_DOUBLE_EQ(*r.mttd.mean_s, 40.0);
  EXPECT_DOUBLE_EQ(*r.mttd.median_s, 25.0);
  EXPECT_DOUBLE_EQ(*r.mttd.p90_s, 100.0);
  EXPECT_EQ(r.mtta.count, 0);
  EXPECT_EQ(r.mttr.count, 0);
}

TEST_F(ReportTest, MttaCountsOnlyHumanAcknowledgements) {
  Incident a = open("a", "lane-01", ago(5h), 10s);
  ack(a, *a.t_detect + 60s, "cli:ann");
  Incident b = open("b", "lane-02", ago(4h), 10s);
  ack(b, *b.t_detect + 180s, "hq:bob");
  Incident c = open("c", "lane-03", ago(3h), 10s);
  ack(c, *c.t_detect + 120s, "cli:carl");
  // t_ack written, but the acknowledgement is the agent's: not a human's.
  Incident d = open("d", "lane-04", ago(2h), 10s);
  ack(d, *d.t_detect + 5s, "agent");
  // t_ack written with no acknowledged event at all.
  Incident e = incident("e", "lane-05", ago(1h), ago(1h) + 10s);
  e.t_ack = *e.t_detect + 1s;
  record(store, e, "opened", *e.t_detect);
  // A human's note is not an acknowledgement.
  Incident f = open("f", "lane-06", ago(1h), 10s);
  record(store, f, "note", *f.t_detect + 2s, "cli:ann");

  Report r = report();
  EXPECT_EQ(r.incidents, 6);
  EXPECT_EQ(r.mtta.count, 3);
  EXPECT_DOUBLE_EQ(*r.mtta.mean_s, 120.0);
  EXPECT_DOUBLE_EQ(*r.mtta.median_s, 120.0);
  EXPECT_DOUBLE_EQ(*r.mtta.p90_s, 180.0);
}

TEST_F(ReportTest, SelfHealedIncidentsAreReportedApartFromMttr) {
  // Restored by people (or by the device itself with no remediation).
  Incident a = open("a", "lane-01", ago(6h), 10s);
  resolve(a, ago(6h) + 600s);
  Incident b = open("b", "lane-02", ago(6h), 10s);
  resolve(b, ago(6h) + 1200s);
  Incident c = open("c", "lane-03", ago(6h), 10s);
  resolve(c, ago(6h) + 300s);
  close(c, ago(1h));
  // Healed by a remediation.
  for (auto [uid, secs] : {std::pair{"h1", 30}, {"h2", 90}, {"h3", 60}, {"h4", 45}}) {
    Incident h = open(uid, "printer-01", ago(5h), 5s);
    resolve(h, ago(5h) + std::chrono::seconds(secs), /*self_healed=*/true);
  }
  // Closed by a person while still failing: resolved, never restored.
  Incident m = open("m", "lane-04", ago(4h), 10s);
  m.state = IncidentState::closed;
  m.t_closed = ago(3h);
  record(store, m, "closed", ago(3h), "cli:ann");
  // Still open: neither resolved nor restored.
  open("o", "lane-05", ago(2h), 10s);
  // Restored earlier but reopened: unresolved again, so not in MTTR.
  Incident re = open("re", "lane-06", ago(2h), 10s);
  resolve(re, ago(2h) + 100s);
  re.state = IncidentState::open;
  re.reopen_count = 1;
  record(store, re, "reopened", ago(1h));

  Report r = report();
  EXPECT_EQ(r.incidents, 10);
  EXPECT_EQ(r.resolved, 8);
  EXPECT_EQ(r.healed, 4);
  EXPECT_DOUBLE_EQ(*r.heal_rate(), 0.5);
  EXPECT_EQ(r.mttr.count, 3);
  EXPECT_DOUBLE_EQ(*r.mttr.mean_s, 700.0);
  EXPECT_DOUBLE_EQ(*r.mttr.median_s, 600.0);
  EXPECT_DOUBLE_EQ(*r.mttr.p90_s, 1200.0);
  EXPECT_EQ(r.heal.count, 4);
  EXPECT_DOUBLE_EQ(*r.heal.mean_s, 56.25);
  EXPECT_DOUBLE_EQ(*r.heal.median_s, 52.5);
  EXPECT_DOUBLE_EQ(*r.heal.p90_s, 90.0);
  EXPECT_EQ(r.mttd.count, 10);

  json j = r.to_json()["self_heal"];
  EXPECT_EQ(j["rate"], 0.5);
  EXPECT_EQ(j["healed"], 4);
  EXPECT_EQ(j["resolved"], 8);
  EXPECT_EQ(j["count"], 4);
  EXPECT_EQ(j["median_s"], 52.5);
  EXPECT_EQ(j["mean_s"], 56.25);
  EXPECT_EQ(j["p90_s"], 90.0);
}

TEST_F(ReportTest, HealRateIsRoundedToFourPlaces) {
  for (const char* uid : {"a", "b", "c"}) {
    Incident i = open(uid, "lane-01", ago(5h), 10s);
    resolve(i, ago(5h) + 60s, std::string(uid) == "a");
  }
  EXPECT_DOUBLE_EQ(*report().heal_rate(), 0.3333);
}

TEST_F(ReportTest, SuppressedAndMaintenanceIncidentsAreCountedApart) {
  Incident up = open("up", "uplink", ago(3h), 20s);
  resolve(up, ago(3h) + 400s);
  for (const char* uid : {"s1", "s2"}) {
    Incident s = incident(uid, "lane-01", ago(3h) - 1h, ago(3h) + 30s);
    s.suppressed_by = "up";
    record(store, s, "suppressed", *s.t_detect);
    s.state = IncidentState::resolved;
    s.t_restored = ago(3h) + 2h;
    record(store, s, "resolved", ago(1h));
  }
  Incident m = incident("m", "printer-01", ago(2h) - 10min, ago(2h));
  m.in_maintenance = true;
  record(store, m, "opened", ago(2h));
  ack(m, ago(2h) + 1s, "cli:ann");
  // Both: counted once, as suppressed.
  Incident both = incident("both", "lane-02", ago(2h) - 1h, ago(2h));
  both.in_maintenance = true;
  both.suppressed_by = "up";
  record(store, both, "opened", ago(2h));

  Report r = report();
  EXPECT_EQ(r.incidents, 1);
  EXPECT_EQ(r.suppressed, 3);
  EXPECT_EQ(r.in_maintenance, 1);
  EXPECT_EQ(r.mttd.count, 1);
  EXPECT_DOUBLE_EQ(*r.mttd.mean_s, 20.0);
  EXPECT_EQ(r.mtta.count, 0);
  EXPECT_EQ(r.mttr.count, 1);
  EXPECT_DOUBLE_EQ(*r.mttr.median_s, 400.0);
  EXPECT_EQ(r.resolved, 1);
  ASSERT_EQ(r.top_by_count.size(), 1u);
  EXPECT_EQ(r.top_by_count[0].probe, "uplink");
  ASSERT_EQ(r.top_by_downtime.size(), 1u);
  EXPECT_EQ(r.top_by_downtime[0].probe, "uplink");
  EXPECT_DOUBLE_EQ(r.top_by_downtime[0].downtime_s, 400.0);
  json j = r.to_json();
  EXPECT_EQ(j["suppressed"], 3);
  EXPECT_EQ(j["in_maintenance"], 1);
}

TEST_F(ReportTest, WindowSelectsByDetectionAndClipsDowntime) {
  // Detected before the window: not in the report at all.
  Incident old = open("old", "lane-09", ago(3h), 10s);
  resolve(old, ago(30min));
  // Fault before the window, detected inside it: MTTD whole, downtime from
  // the window's start to the restore.
  Incident b = open("b", "lane-02", ago(90min), 40min);
  resolve(b, ago(30min));
  // Detected exactly at the window's start: in.
  Incident edge = incident("edge", "lane-03", ago(1h) - 5s, ago(1h));
  record(store, edge, "opened", ago(1h));
  resolve(edge, ago(1h) + 5s);
  // Unresolved: down until now.
  open("c", "lane-04", ago(10min), 10s);
  // Detected in the future (a clock that jumped): not in [since, now].
  open("future", "lane-05", kReportNow + 1min, 10s);

  Report r = report(1h);
  EXPECT_EQ(r.incidents, 3);
  EXPECT_EQ(r.mttd.count, 3);
  EXPECT_DOUBLE_EQ(*r.mttd.p90_s, 2400.0);
  EXPECT_EQ(r.mttr.count, 2);
  EXPECT_DOUBLE_EQ(*r.mttr.mean_s, (3600.0 + 10.0) / 2);
  ASSERT_EQ(r.top_by_downtime.size(), 3u);
  EXPECT_EQ(r.top_by_downtime[0].probe, "lane-02");
  EXPECT_DOUBLE_EQ(r.top_by_downtime[0].downtime_s, 1800.0);
  EXPECT_EQ(r.top_by_downtime[1].probe, "lane-04");
  EXPECT_DOUBLE_EQ(r.top_by_downtime[1].downtime_s, 600.0);
  EXPECT_EQ(r.top_by_downtime[2].probe, "lane-03");
  EXPECT_DOUBLE_EQ(r.top_by_downtime[2].downtime_s, 5.0);

  // The wider window takes the old one in, whole.
  Report wide = report(4h);
  EXPECT_EQ(wide.incidents, 4);
  EXPECT_EQ(wide.top_by_downtime[0].probe, "lane-09");
  EXPECT_DOUBLE_EQ(wide.top_by_downtime[0].downtime_s, 3 * 3600.0 - 1800.0);
}

TEST_F(ReportTest, ReopenedIncidentLeavesOutTheTimeItWasUp) {
  // Down 10 min, resolved, up for nearly 2 h, failing again (the engine's
  // reopened event says since when, and when the restore before was), down
  // 5 min more: 15 min down in all, the 2 h between left out.
  Incident i = open("re", "lane-01", ago(5h), 10s);
  resolve(i, ago(5h) + 600s);
  i.state = IncidentState::open;
  i.reopen_count = 1;
  i.t_restored.reset();
  i.t_resolved.reset();
  record(
      store, i, "reopened", ago(3h) + 30s, "agent",
      json{{"restored_at", format_rfc3339(ago(5h) + 600s)}, {"fault_at", format_rfc3339(ago(3h))}});
  resolve(i, ago(3h) + 300s);

  Report r = report();
  EXPECT_EQ(r.incidents, 1);
  EXPECT_EQ(r.mttr.count, 1);
  EXPECT_DOUBLE_EQ(*r.mttr.mean_s, 900.0);
  ASSERT_EQ(r.top_by_downtime.size(), 1u);
  EXPECT_DOUBLE_EQ(r.top_by_downtime[0].downtime_s, 900.0);

  // Still down after reopening: from the new fault until now.
  Incident o = open("ro", "lane-02", ago(6h), 10s);
  resolve(o, ago(6h) + 60s);
  o.state = IncidentState::open;
  o.reopen_count = 1;
  o.t_restored.reset();
  o.t_resolved.reset();
  record(
      store, o, "reopened", ago(1h) + 30s, "agent",
      json{{"restored_at", format_rfc3339(ago(6h) + 60s)}, {"fault_at", format_rfc3339(ago(1h))}});
  Report both = report();
  ASSERT_EQ(both.top_by_downtime.size(), 2u);
  EXPECT_EQ(both.top_by_downtime[0].probe, "lane-02");
  EXPECT_DOUBLE_EQ(both.top_by_downtime[0].downtime_s, 3600.0 + 60.0);
}

TEST_F(ReportTest, ReopenedEventsOfAnOlderAgentStillLeaveOutTheResolvedSpan) {
  // No restored_at or fault_at in the event: the resolved event's restore
  // to the reopened event's time is left out. Reopened twice.
  Incident i = open("old", "printer-01", ago(4h), 10s);
  resolve(i, ago(4h) + 100s);
  for (Millis reopen : {Millis(3h), Millis(2h)}) {
    i.state = IncidentState::open;
    ++i.reopen_count;
    i.t_restored.reset();
    i.t_resolved.reset();
    record(store, i, "reopened", ago(reopen));
    resolve(i, ago(reopen) + 100s);
  }
  Report r = report();
  ASSERT_EQ(r.top_by_downtime.size(), 1u);
  EXPECT_DOUBLE_EQ(r.top_by_downtime[0].downtime_s, 300.0);
  EXPECT_DOUBLE_EQ(*r.mttr.mean_s, 300.0);
}

TEST(ResolvedSpans, FromTheReopenedEventsOrTheResolvedBeforeThem) {
  const WallTime t0 = kReportNow - 10h;
  auto state = [](WallTime restored) {
    return json{{"incident_state", {{"t_restored", format_rfc3339(restored)}}}};
  };
  std::vector<TimelineEvent> events{
      {"resolved", t0 + 2min, state(t0 + 1min)},
      {"reopened", t0 + 10min, json::object()},
      {"resolved", t0 + 20min, state(t0 + 19min)},
      {"reopened",
       t0 + 40min,
       {{"restored_at", format_rfc3339(t0 + 19min)}, {"fault_at", format_rfc3339(t0 + 39min)}}},
      // A reopened event with no resolved before it (pruned): nothing to leave out.
      {"reopened", t0 + 50min, json::object()},
  };
  auto spans = resolved_spans(events);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0], std::make_pair(t0 + 1min, t0 + 10min));
  EXPECT_EQ(spans[1], std::make_pair(t0 + 19min, t0 + 39min));
}

TEST_F(ReportTest, BackwardsClockSpansCountAsZeroAndAreCounted) {
  // Detected 5 s "before" the fault, restored "before" the fault.
  Incident a = incident("a", "lane-01", ago(2h), ago(2h) - 5s);
  record(store, a, "opened", *a.t_detect);
  resolve(a, ago(2h) - 1min);
  // Acknowledged by a human "before" detection.
  Incident b = open("b", "lane-02", ago(1h), 10s);
  ack(b, *b.t_detect - 30s, "cli:ann");
  // A normal one.
  Incident c = open("c", "lane-03", ago(1h), 20s);
  resolve(c, ago(1h) + 100s);

  Report r = report();
  EXPECT_EQ(r.clock_anomalies, 2);
  EXPECT_EQ(r.mttd.count, 3);
  EXPECT_DOUBLE_EQ(*r.mttd.mean_s, 10.0);  // (0 + 10 + 20) / 3
  EXPECT_EQ(r.mtta.count, 1);
  EXPECT_DOUBLE_EQ(*r.mtta.mean_s, 0.0);
  EXPECT_EQ(r.mttr.count, 2);
  EXPECT_DOUBLE_EQ(*r.mttr.mean_s, 50.0);  // (0 + 100) / 2
  // lane-01 was never down for a measurable time.
  for (const auto& p : r.top_by_downtime) EXPECT_NE(p.probe, "lane-01");
  EXPECT_EQ(r.to_json()["clock_anomalies"], 2);
}

TEST_F(ReportTest, TopProbesByCountAndDowntime) {
  // lane-01: 3 short incidents; printer-01: 1 long; uplink: 2 medium; a..d: 1 each, 1 s.
  for (int n = 0; n < 3; ++n) {
    Incident i = open("l" + std::to_string(n), "lane-01", ago(10h - n * 1h), 10s);
    resolve(i, *i.t_fault + 60s);
  }
  Incident p = open("p", "printer-01", ago(9h), 10s);
  resolve(p, ago(9h) + 2h);
  for (int n = 0; n < 2; ++n) {
    Incident i = open("u" + std::to_string(n), "uplink", ago(6h - n * 1h), 10s);
    resolve(i, *i.t_fault + 10min);
  }
  for (const char* probe : {"a", "b", "c", "d"}) {
    Incident i = open(std::string("x") + probe, probe, ago(2h), 100ms);
    resolve(i, ago(2h) + 1s);
  }

  Report r = report();
  ASSERT_EQ(r.top_by_count.size(), kReportTopProbes);
  EXPECT_EQ(r.top_by_count[0].probe, "lane-01");
  EXPECT_EQ(r.top_by_count[0].incidents, 3);
  EXPECT_EQ(r.top_by_count[1].probe, "uplink");
  EXPECT_EQ(r.top_by_count[1].incidents, 2);
  // Ties by name.
  EXPECT_EQ(r.top_by_count[2].probe, "a");
  EXPECT_EQ(r.top_by_count[3].probe, "b");
  EXPECT_EQ(r.top_by_count[4].probe, "c");

  ASSERT_EQ(r.top_by_downtime.size(), kReportTopProbes);
  EXPECT_EQ(r.top_by_downtime[0].probe, "printer-01");
  EXPECT_DOUBLE_EQ(r.top_by_downtime[0].downtime_s, 7200.0);
  EXPECT_EQ(r.top_by_downtime[1].probe, "uplink");
  EXPECT_DOUBLE_EQ(r.top_by_downtime[1].downtime_s, 1200.0);
  EXPECT_EQ(r.top_by_downtime[2].probe, "lane-01");
  EXPECT_DOUBLE_EQ(r.top_by_downtime[2].downtime_s, 180.0);
  EXPECT_EQ(r.top_by_downtime[3].probe, "a");
  EXPECT_DOUBLE_EQ(r.top_by_downtime[3].downtime_s, 1.0);

  json j = r.to_json();
  EXPECT_EQ(j["top_by_count"][0], (json{{"probe", "lane-01"}, {"incidents", 3}}));
  EXPECT_EQ(j["top_by_downtime"][0], (json{{"probe", "printer-01"}, {"downtime_s", 7200.0}}));
}

TEST_F(ReportTest, HumanOutputShowsTheFiguresAsDurations) {
  Incident a = open("a", "lane-01", ago(5h), 130s);
  ack(a, *a.t_detect + 45s, "cli:ann");
  resolve(a, ago(5h) + 3h + 5min);
  Incident h = open("h", "printer-01", ago(4h), 5s);
  resolve(h, ago(4h) + 90s, true);

  std::string out = report().render(false);
  EXPECT_NE(out.find("2 counted"), std::string::npos) << out;
  EXPECT_NE(out.find("MTTD"), std::string::npos) << out;
  EXPECT_NE(out.find("1m 8s"), std::string::npos) << out;   // MTTD mean (130 + 5) / 2
  EXPECT_NE(out.find("45s"), std::string::npos) << out;     // MTTA
  EXPECT_NE(out.find("3h 5m"), std::string::npos) << out;   // MTTR and lane-01's downtime
  EXPECT_NE(out.find("1m 30s"), std::string::npos) << out;  // self-heal
  EXPECT_NE(out.find("50% (1 of 2"), std::string::npos) << out;
  EXPECT_EQ(out.find("\033["), std::string::npos) << "no colour asked for";
}

}  // namespace
}  // namespace storewatch::agent
