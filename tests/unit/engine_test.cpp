#include "agent/engine.h"

#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/recording_sink.h"

namespace storewatch::agent {
namespace {

using namespace std::chrono_literals;
using probes::ProbeResult;
using probes::ProbeStatus;

config::Config make_config() {
  config::Config c;
  c.store.id = "store-1";
  config::ProbeConfig p;
  p.name = "lane-01-pos";
  p.type = "tcp";
  p.fail_after = 3;
  p.recover_after = 2;
  p.severity = config::Severity::high;
  c.probes.push_back(p);
  p.name = "printer-01";
  p.severity = config::Severity::medium;
  c.probes.push_back(p);
  return c;
}

ProbeResult result(ProbeStatus s, std::string msg = "") {
  ProbeResult r;
  r.status = s;
  r.latency = 1500us;
  r.message = std::move(msg);
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  config::Config config = make_config();
  test::FakeClock clock;
  test::RecordingSink sink;
  Engine engine{std::make_shared<const config::Config>(config), clock, sink};

  void feed(const std::string& probe, ProbeStatus s, int times = 1) {
    for (int i = 0; i < times; ++i) {
      engine.on_result(probe, result(s, s == ProbeStatus::ok ? "connected" : "refused"));
      clock.advance(1s);
    }
  }
};

TEST_F(EngineTest, OpensOneIncidentAtTheHardTransition) {
  feed("lane-01-pos", ProbeStatus::ok);
  const WallTime first_failure = clock.wall_now();
  feed("lane-01-pos", ProbeStatus::fail, 2);
  EXPECT_TRUE(sink.incident_changes().empty());
  const WallTime detect = clock.wall_now();
  feed("lane-01-pos", ProbeStatus::fail, 5);

  auto changes = sink.incident_changes();
  ASSERT_EQ(changes.size(), 1u);
  const Incident& inc = changes[0].incident;
  EXPECT_EQ(changes[0].event.type, "opened");
  EXPECT_EQ(changes[0].event.actor, "agent");
  EXPECT_EQ(inc.state, IncidentState::open);
  EXPECT_EQ(inc.probe, "lane-01-pos");
  EXPECT_EQ(inc.dedup_key, "store-1:lane-01-pos:down");
  EXPECT_EQ(inc.severity, config::Severity::high);
  EXPECT_EQ(inc.priority, "P2");
  EXPECT_EQ(inc.t_fault, first_failure);
  EXPECT_EQ(inc.t_detect, detect);
  EXPECT_EQ(engine.unresolved().size(), 1u);
}

TEST_F(EngineTest, ResolvesAfterRecoverAfterSuccesses) {
  feed("lane-01-pos", ProbeStatus::fail, 3);
  const WallTime restored = clock.wall_now();
  feed("lane-01-pos", ProbeStatus::ok);
  EXPECT_EQ(sink.incident_changes().size(), 1u);
  const WallTime resolved = clock.wall_now();
  feed("lane-01-pos", ProbeStatus::ok);

  auto changes = sink.incident_changes();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[1].event.type, "resolved");
  EXPECT_EQ(changes[1].incident.uid, changes[0].incident.uid);
  EXPECT_EQ(changes[1].incident.state, IncidentState::resolved);
  EXPECT_EQ(changes[1].incident.t_restored, restored);
  EXPECT_EQ(changes[1].incident.t_resolved, resolved);
  EXPECT_TRUE(engine.unresolved().empty());
}

TEST_F(EngineTest, ProbesAreIndependent) {
  feed("lane-01-pos", ProbeStatus::fail, 3);
  feed("printer-01", ProbeStatus::fail, 2);
  ASSERT_EQ(sink.incident_changes().size(), 1u);
  feed("printer-01", ProbeStatus::fail);
  ASSERT_EQ(sink.incident_changes().size(), 2u);
  EXPECT_EQ(sink.incident_changes()[1].incident.priority, "P3");
}

TEST_F(EngineTest, WarnIsNotAFailureButUnknownIs) {
  feed("lane-01-pos", ProbeStatus::warn, 5);
  EXPECT_TRUE(sink.incident_changes().empty());
  feed("lane-01-pos", ProbeStatus::unknown, 3);
  EXPECT_EQ(sink.incident_changes().size(), 1u);
}

TEST_F(EngineTest, PersistsProbeStateOnLevelChangeAndOnFlush) {
  feed("lane-01-pos", ProbeStatus::ok);  // unknown -> ok
  auto count_rows = [&] {
    return std::count_if(sink.changes.begin(), sink.changes.end(),
                         [](const Change& c) { return std::holds_alternative<ProbeStateRow>(c); });
  };
  EXPECT_EQ(count_rows(), 1);
  feed("lane-01-pos", ProbeStatus::ok, 3);  // no change of level: nothing written
  EXPECT_EQ(count_rows(), 1);
  engine.flush_probe_states();  // but the periodic flush writes the latest result
  EXPECT_EQ(count_rows(), 2);
  engine.flush_probe_states();  // and nothing when nothing changed
  EXPECT_EQ(count_rows(), 2);
}

TEST_F(EngineTest, RestoredIncidentResolvesInsteadOfOpeningASecond) {
  Incident inc;
  inc.uid = "0193aaaa-0000-7000-8000-000000000001";
  inc.dedup_key = "store-1:lane-01-pos:down";
  inc.probe = "lane-01-pos";
  inc.state = IncidentState::open;
  ProbeStateRow row;
  row.probe = "lane-01-pos";
  row.level = CheckLevel::ok;  // a stale flush: the incident says otherwise
  EngineSnapshot snap;
  snap.probe_states = {row};
  snap.unresolved = {inc};
  engine.restore(std::move(snap));
  feed("lane-01-pos", ProbeStatus::fail, 4);
  EXPECT_TRUE(sink.incident_changes().empty());
  feed("lane-01-pos", ProbeStatus::ok, 2);
  auto changes = sink.incident_changes();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].event.type, "resolved");
  EXPECT_EQ(changes[0].incident.uid, inc.uid);
}

TEST(Uid, IsAVersion7UuidThatSortsByTime) {
  WallTime t0(std::chrono::milliseconds(1'764'195'483'000));
  std::string a = new_uid(t0);
  std::string b = new_uid(t0 + 1ms);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '7');
  EXPECT_TRUE(a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b');
  EXPECT_LT(a, b);
  EXPECT_NE(new_uid(t0), new_uid(t0));
}

}  // namespace
}  // namespace storewatch::agent
