// `hq report`: the agent's report definitions over the snapshots HQ stores.

#include "hq/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hq/hq_store.h"
#include "tests/support/support.h"

namespace storewatch::hq {
namespace {

using nlohmann::json;
using testing::HasSubstr;
using namespace std::chrono_literals;

// 2025-11-27T12:00:00.000Z
const WallTime kHqReportNow{std::chrono::milliseconds(1'764'244'800'000)};

std::string at(std::chrono::milliseconds before_now) {
  return format_rfc3339(kHqReportNow - before_now);
}

struct Spec {
  std::string uid;
  std::string probe;
  std::string state;
  std::chrono::milliseconds fault, detect;  // before now
  std::optional<std::chrono::milliseconds> restored;
  bool self_healed = false;
};

wire::Event event(std::int64_t seq, const Spec& s, const std::string& type = "opened",
                  const std::string& actor = "agent") {
  wire::Event e;
  e.seq = seq;
  e.uid = "ev-" + std::to_string(seq);
  e.incident = s.uid;
  e.type = type;
  e.at = at(s.detect);
  e.actor = actor;
  e.body = json{{"incident_state",
                 {{"uid", s.uid},
                  {"probe", s.probe},
                  {"state", s.state},
                  {"severity", "high"},
                  {"t_fault", at(s.fault)},
                  {"t_detect", at(s.detect)},
                  {"t_ack", nullptr},
                  {"t_restored", s.restored ? json(at(*s.restored)) : json()},
                  {"t_resolved", s.restored ? json(at(*s.restored)) : json()},
                  {"t_closed", nullptr},
                  {"self_healed", s.self_healed},
                  {"suppressed_by", nullptr},
                  {"in_maintenance", false}}}};
  return e;
}

class HqReportTest : public testing::Test {
 protected:
  void SetUp() override {
    auto s = HqStore::open(dir_ / "hq.db", db::Database::Mode::read_write);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_.emplace(std::move(*s));
  }
  void ingest(const std::string& store, std::vector<wire::Event> events) {
    auto r = store_->ingest(wire::Batch{store, std::move(events)}, kHqReportNow);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  test::TempDir dir_;
  std::optional<HqStore> store_;
};

TEST_F(HqReportTest, ReportsEachStoreAndTheFleet) {
  // s1: detected 20 s after the fault, repaired by hand after 10 min; its
  // snapshot at seq 2 supersedes the one at seq 1.
  Spec a{"a", "lane-01", "open", 1h, 1h - 20s, std::nullopt};
  Spec a_done = a;
  a_done.state = "resolved";
  a_done.restored = 1h - 10min;
  ingest("s1", {event(1, a), event(2, a_done, "resolved")});
  // s2: detected after 40 s, healed itself after 1 min; acknowledged at HQ.
  Spec b{"b", "printer-01", "resolved", 2h, 2h - 40s, 2h - 1min, true};
  ingest("s2", {event(1, b), event(2, b, "acknowledged", "hq:ops")});
  // s3 reported only an incident detected before the window.
  Spec old{"c", "lane-02", "open", 240h, 240h - 5s, std::nullopt};
  ingest("s3", {event(1, old)});

  auto r = build_fleet_report(*store_, kHqReportNow, 7 * 24h, std::nullopt);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const json j = r->to_json();
  EXPECT_EQ(j["since"], format_rfc3339(kHqReportNow - 7 * 24h));
  EXPECT_EQ(j["until"], format_rfc3339(kHqReportNow));
  EXPECT_EQ(j["fleet"]["incidents"], 2);
  EXPECT_EQ(j["fleet"]["mttd"]["count"], 2);
  EXPECT_EQ(j["fleet"]["mttd"]["mean_s"], 30.0);
  EXPECT_EQ(j["fleet"]["mttr"]["count"], 1);
  EXPECT_EQ(j["fleet"]["mttr"]["mean_s"], 600.0);
  EXPECT_EQ(j["fleet"]["self_heal"]["healed"], 1);
  EXPECT_EQ(j["fleet"]["self_heal"]["rate"], 0.5);
  EXPECT_EQ(j["fleet"]["self_heal"]["mean_s"], 60.0);

  ASSERT_EQ(j["stores"].size(), 3u);
  EXPECT_EQ(j["stores"][0]["store"], "s1");
  EXPECT_EQ(j["stores"][0]["incidents"], 1);
  EXPECT_EQ(j["stores"][0]["mttd"]["mean_s"], 20.0);
  EXPECT_EQ(j["stores"][0]["mttr"]["mean_s"], 600.0);
  EXPECT_EQ(j["stores"][0]["mtta"]["count"], 0);
  EXPECT_EQ(j["stores"][1]["store"], "s2");
  EXPECT_EQ(j["stores"][1]["mttd"]["mean_s"], 40.0);
  EXPECT_EQ(j["stores"][1]["mttr"]["count"], 0);
  EXPECT_EQ(j["stores"][2]["store"], "s3");
  EXPECT_EQ(j["stores"][2]["incidents"], 0);
  EXPECT_TRUE(j["stores"][2]["mttd"]["mean_s"].is_null());

  const std::string text = r->render(false);
  EXPECT_THAT(text, HasSubstr("s1"));
  EXPECT_THAT(text, HasSubstr("MTTR"));
}

TEST_F(HqReportTest, AReopenedIncidentsDowntimeLeavesOutTheTimeItWasUp) {
  // Down 10 min, resolved, up until 2 h ago, down 5 min more.
  Spec first{"r", "lane-01", "resolved", 5h, 5h - 10s, 5h - 10min};
  wire::Event resolved = event(1, first, "resolved");
  Spec again{"r", "lane-01", "open", 5h, 5h - 10s, std::nullopt};
  wire::Event reopened = event(2, again, "reopened");
  reopened.at = at(2h - 30s);
  reopened.body["restored_at"] = at(5h - 10min);
  reopened.body["fault_at"] = at(2h);
  reopened.body["incident_state"]["reopen_count"] = 1;
  Spec last{"r", "lane-01", "resolved", 5h, 5h - 10s, 2h - 5min};
  wire::Event done = event(3, last, "resolved");
  done.body["incident_state"]["reopen_count"] = 1;
  ingest("s1", {resolved, reopened, done});

  auto r = build_fleet_report(*store_, kHqReportNow, 24h, std::nullopt);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const json j = r->to_json();
  EXPECT_EQ(j["fleet"]["mttr"]["mean_s"], 900.0);
  ASSERT_EQ(j["fleet"]["top_by_downtime"].size(), 1u);
  EXPECT_EQ(j["fleet"]["top_by_downtime"][0]["downtime_s"], 900.0);
  EXPECT_EQ(j["stores"][0]["top_by_downtime"][0]["downtime_s"], 900.0);
}

TEST_F(HqReportTest, OneStoreOrAClearErrorForAnUnknownOne) {
  Spec a{"a", "lane-01", "open", 1h, 1h - 20s, std::nullopt};
  ingest("s1", {event(1, a)});
  ingest("s2", {event(1, a)});
  auto r = build_fleet_report(*store_, kHqReportNow, 24h, std::string("s2"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->stores.size(), 1u);
  EXPECT_EQ(r->stores[0].store, "s2");
  EXPECT_EQ(r->fleet.incidents, 1);

  auto unknown = build_fleet_report(*store_, kHqReportNow, 24h, std::string("s9"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("s9"));
}

}  // namespace
}  // namespace storewatch::hq
