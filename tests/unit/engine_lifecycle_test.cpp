// The incident lifecycle of DESIGN §4 driven by an injected clock: every
// transition, reopen and close, root cause by depends_on, flapping,
// silences, self-healing, priority and the clock's quirks. No sleeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <random>

#include "agent/engine.h"
#include "agent/reload.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/recording_sink.h"

namespace storewatch::agent {
namespace {

using namespace std::chrono_literals;
using probes::ProbeResult;
using probes::ProbeStatus;

// 2026-11-25 (a Wednesday) 12:00:00 UTC.
const WallTime kNoonWednesday{std::chrono::milliseconds(1'764'072'000'000)};

ProbeResult result(ProbeStatus s, std::string msg = "") {
  ProbeResult r;
  r.status = s;
  r.latency = 1ms;
  r.message = msg.empty() ? (s == ProbeStatus::ok ? "connected" : "refused") : std::move(msg);
  return r;
}

config::ProbeConfig probe(std::string name, std::vector<std::string> depends_on = {}) {
  config::ProbeConfig p;
  p.name = std::move(name);
  p.type = "tcp";
  p.fail_after = 3;
  p.recover_after = 2;
  p.timeout = 1s;
  p.severity = config::Severity::high;
  p.depends_on = std::move(depends_on);
  return p;
}

/// A remediation runner the test finishes by hand.
class ManualRunner final : public RemediationRunner {
 public:
  struct Run {
    std::string name;
    std::function<void(ActionOutcome)> done;
  };
  void run(const config::RemediationConfig& r, std::function<void(ActionOutcome)> done) override {
    runs.push_back(Run{r.name, std::move(done)});
  }
  void stop() override {}
  void finish(bool ok, int exit_code = 0, std::string output = "") {
    ASSERT_FALSE(runs.empty());
    Run run = std::move(runs.front());
    runs.erase(runs.begin());
    ActionOutcome o;
    o.ok = ok;
    o.exit_code = exit_code;
    o.detail = fmt::format("exit {}", exit_code);
    o.output = std::move(output);
    run.done(std::move(o));
  }
  std::vector<Run> runs;
};

class Lifecycle : public ::testing::Test {
 protected:
  Lifecycle() : clock(kNoonWednesday) { config.store.id = "s1"; }

  /// Builds the engine once the config is complete.
  Engine& start() {
    EngineHooks hooks;
    hooks.run_now = [this](const std::string& p) { rechecks.push_back(p); };
    hooks.runner = &runner;
    // The database, as far as the sink has committed (all it was handed,
    // unless a test says otherwise).
    hooks.stored = [this](const std::string& uid) { return sink.stored(uid, committed); };
    engine = std::make_unique<Engine>(std::make_shared<const config::Config>(config), clock, sink,
                                      hooks);
    return *engine;
  }

  void feed(const std::string& p, ProbeStatus s, int times = 1, std::string msg = "") {
    for (int i = 0; i < times; ++i) {
      engine->on_result(p, result(s, msg));
      clock.advance(1s);
    }
  }

  /// Answers every re-check the engine asked for with `status_of(probe)`,
  /// until it asks for no more (bounded).
  void answer_rechecks(const std::function<ProbeStatus(const std::string&)>& status_of) {
    for (int round = 0; round < 100 && !rechecks.empty(); ++round) {
      std::vector<std::string> asked;
      asked.swap(rechecks);
      std::sort(asked.begin(), asked.end());
      asked.erase(std::unique(asked.begin(), asked.end()), asked.end());
      for (const auto& p : asked) engine->on_result(p, result(status_of(p)));
    }
    ASSERT_TRUE(rechecks.empty()) << "re-checks never settled";
  }

  /// A [[silence]] of lane-* every day 12:00-12:30 UTC (the clock starts
  /// at noon).
  void silence_lanes_at_noon() {
    config::SilenceConfig s;
    s.match = config::ProbeMatch::parse("lane-*").value();
    s.schedule = config::WeeklySchedule::parse("daily 12:00-12:30").value();
    s.reason = "POS update";
    config.silences.push_back(s);
  }

  std::vector<IncidentChange> events(const std::string& type = "") const {
    std::vector<IncidentChange> out;
    for (const auto& c : sink.incident_changes()) {
      if (type.empty() || c.event.type == type) out.push_back(c);
    }
    return out;
  }
  std::vector<std::string> types_of(const std::string& probe_name) const {
    std::vector<std::string> out;
    for (const auto& c : sink.incident_changes()) {
      if (c.incident.probe == probe_name) out.push_back(c.event.type);
    }
    return out;
  }
  const Incident* open_of(const std::string& p) const {
    auto it = engine->unresolved().find("s1:" + p + ":down");
    return it == engine->unresolved().end() ? nullptr : &it->second;
  }

  config::Config config;
  test::FakeClock clock;
  test::RecordingSink sink;
  ManualRunner runner;
  std::vector<std::string> rechecks;
  std::unique_ptr<Engine> engine;
  /// How many of the sink's changes the database holds (hooks.stored).
  std::size_t committed = std::numeric_limits<std::size_t>::max();
};

using Types = std::vector<std::string>;

// --- the state machine ----------------------------------------------------------

TEST_F(Lifecycle, OpenAckResolveClose) {
  config.probes = {probe("pos")};
  config.incidents.close_after = 1h;
  start();
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("pos"), nullptr);
  const std::string uid = open_of("pos")->uid;

  auto acked = engine->act(Engine::Action::ack, uid, "cli:maria", "on my way", std::nullopt);
  ASSERT_TRUE(acked) << acked.error().message;
  EXPECT_EQ(acked->state, IncidentState::acknowledged);
  EXPECT_TRUE(acked->t_ack.has_value());
  EXPECT_EQ(events("acknowledged").at(0).event.actor, "cli:maria");
  EXPECT_EQ(events("acknowledged").at(0).event.extra["note"], "on my way");

  feed("pos", ProbeStatus::ok, 2);
  ASSERT_EQ(open_of("pos"), nullptr);
  auto resolved = events("resolved");
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].incident.state, IncidentState::resolved);
  EXPECT_FALSE(resolved[0].incident.self_healed);

  clock.advance(59min);
  engine->tick();
  EXPECT_TRUE(events("closed").empty());
  clock.advance(2min);
  engine->tick();
  auto closed = events("closed");
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].incident.uid, uid);
  EXPECT_EQ(closed[0].incident.state, IncidentState::closed);
  EXPECT_TRUE(closed[0].incident.t_closed.has_value());
  EXPECT_EQ(types_of("pos"), (Types{"opened", "acknowledged", "resolved", "closed"}));
}

TEST_F(Lifecycle, EveryEventCarriesTheRowAsItIsAfterTheChange) {
  config.probes = {probe("pos")};
  start();
  feed("pos", ProbeStatus::fail, 3);
  feed("pos", ProbeStatus::ok, 2);
  for (const auto& c : sink.incident_changes()) {
    if (c.event.type == "opened") {
      EXPECT_EQ(c.incident.state, IncidentState::open);
    }
    if (c.event.type == "resolved") {
      EXPECT_EQ(c.incident.state, IncidentState::resolved);
    }
    EXPECT_FALSE(c.event.uid.empty());
  }
}

TEST_F(Lifecycle, ReopensWithinTheWindowAndOpensAnewAfterIt) {
  config.probes = {probe("pos")};
  config.incidents.reopen_window = 30min;
  start();
  feed("pos", ProbeStatus::fail, 3);
  const std::string first = open_of("pos")->uid;
  feed("pos", ProbeStatus::ok, 2);
  clock.advance(10min);
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("pos"), nullptr);
  EXPECT_EQ(open_of("pos")->uid, first);
  EXPECT_EQ(open_of("pos")->reopen_count, 1);
  EXPECT_EQ(open_of("pos")->state, IncidentState::open);
  EXPECT_FALSE(open_of("pos")->t_resolved.has_value());
  auto reopened = events("reopened");
  ASSERT_EQ(reopened.size(), 1u);
  EXPECT_EQ(reopened[0].event.extra["reopen_count"], 1);

  feed("pos", ProbeStatus::ok, 2);
  clock.advance(31min);
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("pos"), nullptr);
  EXPECT_NE(open_of("pos")->uid, first);
  EXPECT_EQ(open_of("pos")->reopen_count, 0);
  EXPECT_EQ(events("opened").size(), 2u);
}

TEST_F(Lifecycle, ReopensTheNewestResolvedIncidentOfItsOwnKey) {
  config.probes = {probe("pos"), probe("lane")};
  config.incidents.reopen_window = 30min;
  config.incidents.close_after = 2h;
  start();
  feed("lane", ProbeStatus::fail, 3);
  feed("lane", ProbeStatus::ok, 2);
  const std::string lane = events("resolved").back().incident.uid;
  feed("pos", ProbeStatus::fail, 3);
  const std::string a = open_of("pos")->uid;
  feed("pos", ProbeStatus::ok, 2);
  clock.advance(31min);  // a is out of the window, still resolved (not closed)
  feed("pos", ProbeStatus::fail, 3);
  const std::string b = open_of("pos")->uid;
  EXPECT_NE(b, a);
  feed("pos", ProbeStatus::ok, 2);
  clock.advance(10min);
  feed("pos", ProbeStatus::fail, 3);
  EXPECT_EQ(open_of("pos")->uid, b) << "the newest of its key, not a or lane's";
  EXPECT_EQ(open_of("pos")->reopen_count, 1);
  feed("pos", ProbeStatus::ok, 2);
  // b closes by hand; a closes by time; a failure then opens a new incident.
  ASSERT_TRUE(engine->act(Engine::Action::close, b, "cli:tech", "", std::nullopt));
  clock.advance(2h);
  engine->tick();
  EXPECT_EQ(events("closed").size(), 3u);  // b, a and lane
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("pos"), nullptr);
  EXPECT_NE(open_of("pos")->uid, a);
  EXPECT_NE(open_of("pos")->uid, b);
  EXPECT_NE(open_of("pos")->uid, lane);
  EXPECT_EQ(open_of("pos")->reopen_count, 0);
}

TEST_F(Lifecycle, ReopeningResetsTheCloseTimer) {
  config.probes = {probe("pos")};
  config.incidents.close_after = 1h;
  start();
  feed("pos", ProbeStatus::fail, 3);
  feed("pos", ProbeStatus::ok, 2);
  clock.advance(20min);
  feed("pos", ProbeStatus::fail, 3);  // reopened
  clock.advance(50min);
  engine->tick();
  EXPECT_TRUE(events("closed").empty()) << "an unresolved incident never closes by time";
  feed("pos", ProbeStatus::ok, 2);
  clock.advance(59min);
  engine->tick();
  EXPECT_TRUE(events("closed").empty());
  clock.advance(2min);
  engine->tick();
  EXPECT_EQ(events("closed").size(), 1u);
}

TEST_F(Lifecycle, HumanResolveCloseAndNoteAreRecordedWithTheActor) {
  config.probes = {probe("pos"), probe("printer")};
  start();
  feed("pos", ProbeStatus::fail, 3);
  feed("printer", ProbeStatus::fail, 3);
  const std::string pos = open_of("pos")->uid;
  const std::string printer = open_of("printer")->uid;

  auto note = engine->act(Engine::Action::note, pos, "cli:ahmed", "cable loose", std::nullopt);
  ASSERT_TRUE(note);
  EXPECT_EQ(events("note").at(0).event.actor, "cli:ahmed");
  EXPECT_EQ(events("note").at(0).event.extra["note"], "cable loose");

  auto resolved = engine->act(Engine::Action::resolve, pos, "cli:ahmed", "replaced", std::nullopt);
  ASSERT_TRUE(resolved) << resolved.error().message;
  EXPECT_EQ(resolved->state, IncidentState::resolved);
  EXPECT_EQ(events("resolved").at(0).event.actor, "cli:ahmed");
  EXPECT_TRUE(resolved->t_restored.has_value());

  auto closed = engine->act(Engine::Action::close, printer, "hq:ops", "", std::nullopt);
  ASSERT_TRUE(closed) << closed.error().message;
  EXPECT_EQ(closed->state, IncidentState::closed);
  EXPECT_EQ(events("closed").at(0).event.actor, "hq:ops");

  // Closing the resolved one, then errors for what cannot be done.
  ASSERT_TRUE(engine->act(Engine::Action::close, pos, "cli:ahmed", "", std::nullopt));
  Incident stored = closed.value();
  auto again = engine->act(Engine::Action::ack, printer, "cli:x", "", stored);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("closed"), std::string::npos);
  auto unknown = engine->act(Engine::Action::ack, "nope", "cli:x", "", std::nullopt);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("no incident"), std::string::npos);
  // A note on a closed incident is history, and allowed.
  EXPECT_TRUE(engine->act(Engine::Action::note, printer, "cli:x", "post-mortem", stored));
}

// --- actions on what the writer has not committed yet (issue 18) ---------------

TEST_F(Lifecycle, ANoteRightAfterACloseIsOnTheClosedIncidentNotTheStaleRow) {
  config.probes = {probe("pos")};
  start();
  feed("pos", ProbeStatus::fail, 3);
  const Incident as_stored = *open_of("pos");  // the database's row, the close not yet committed
  committed = sink.changes.size();
  ASSERT_TRUE(engine->act(Engine::Action::close, as_stored.uid, "hq:ops", "", std::nullopt));
  auto noted = engine->act(Engine::Action::note, as_stored.uid, "hq:ops", "why", as_stored);
  ASSERT_TRUE(noted) << noted.error().message;
  EXPECT_EQ(noted->state, IncidentState::closed);
  ASSERT_EQ(events("note").size(), 1u);
  EXPECT_EQ(events("note").at(0).incident.state, IncidentState::closed)
      << "the note must not write the row back as it was before the close";
  EXPECT_TRUE(events("note").at(0).incident.t_closed.has_value());
  auto again = engine->act(Engine::Action::resolve, as_stored.uid, "hq:ops", "", as_stored);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("closed"), std::string::npos);

  // Once committed, the database's copy is the incident.
  committed = sink.changes.size();
  engine->on_committed(sink.ticket());
  auto later = engine->act(Engine::Action::note, as_stored.uid, "cli:dana", "post-mortem",
                           sink.stored(as_stored.uid));
  ASSERT_TRUE(later);
  EXPECT_EQ(events("note").at(1).incident.state, IncidentState::closed);

  // The probe still fails: a new incident of its own after fail_after more
  // failures, never a second unresolved row of the closed one.
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("pos"), nullptr);
  EXPECT_NE(open_of("pos")->uid, as_stored.uid);
}

TEST_F(Lifecycle, EveryPairOfActionsBackToBackLeavesEachRowAsItsNewestEvent) {
  using A = Engine::Action;
  const std::vector<A> actions = {A::ack, A::resolve, A::close, A::note};
  for (bool recovers : {false, true}) {
    for (A first : actions) {
      for (A second : actions) {
        const std::string name =
            fmt::format("p{}{}{}", static_cast<int>(first), static_cast<int>(second), recovers);
        config.probes.push_back(probe(name));
      }
    }
  }
  start();
  for (const auto& p : config.probes) engine->on_result(p.name, result(ProbeStatus::fail));
  for (const auto& p : config.probes) engine->on_result(p.name, result(ProbeStatus::fail));
  for (const auto& p : config.probes) engine->on_result(p.name, result(ProbeStatus::fail));
  std::map<std::string, std::string> uid_of;
  for (const auto& p : config.probes) {
    ASSERT_NE(open_of(p.name), nullptr) << p.name;
    uid_of[p.name] = open_of(p.name)->uid;
  }
  // Nothing is committed while the pairs run: every stale copy is the open row.
  committed = sink.changes.size();
  std::size_t i = 0;
  for (bool recovers : {false, true}) {
    for (A first : actions) {
      for (A second : actions) {
        const std::string& name = config.probes[i++].name;
        const std::string& uid = uid_of[name];
        const auto stale = sink.stored(uid, committed);
        (void)engine->act(first, uid, "cli:a", "one", stale);
        if (recovers) engine->on_result(name, result(ProbeStatus::ok));
        (void)engine->act(second, uid, "cli:b", "two", stale);
      }
    }
  }
  // The probes go on: failing ones reopen or open anew, recovering ones resolve.
  for (int round = 0; round < 4; ++round) {
    for (std::size_t k = 0; k < config.probes.size(); ++k) {
      const bool recovers = k >= config.probes.size() / 2;
      engine->on_result(config.probes[k].name,
                        result(recovers ? ProbeStatus::ok : ProbeStatus::fail));
    }
    clock.advance(1s);
    engine->tick();
  }
  // What the database would hold: every row is its newest event's snapshot
  // (the store writes them together), and never two unresolved rows of one key.
  std::map<std::string, IncidentState> row;
  std::map<std::string, std::string> key_of;
  for (const auto& c : sink.incident_changes()) {
    row[c.incident.uid] = c.incident.state;
    key_of[c.incident.uid] = c.incident.dedup_key;
  }
  std::map<std::string, int> unresolved_per_key;
  for (const auto& [uid, state] : row) unresolved_per_key[key_of[uid]] += is_unresolved(state);
  for (const auto& [key, n] : unresolved_per_key) EXPECT_LE(n, 1) << key;
  // A closed incident stays closed whatever came after it.
  for (const auto& [name, uid] : uid_of) {
    bool closed = false;
    for (const auto& c : sink.incident_changes()) {
      if (c.incident.uid != uid) continue;
      if (closed) {
        EXPECT_EQ(c.incident.state, IncidentState::closed)
            << name << ": " << c.event.type << " after the close";
      }
      closed = closed || c.incident.state == IncidentState::closed;
    }
  }
}

TEST_F(Lifecycle, AResolvedIncidentIsLetGoOnceItCannotReopenAndStillClosesOnTime) {
  config.probes = {probe("pos")};
  config.incidents.close_after = 2h;  // reopen_window: 30 min
  start();
  feed("pos", ProbeStatus::fail, 3);
  const std::string uid = open_of("pos")->uid;
  feed("pos", ProbeStatus::ok, 2);
  ASSERT_EQ(events("resolved").size(), 1u);
  EXPECT_EQ(engine->uids_with_prefix(uid), std::vector<std::string>{uid});
  engine->on_committed(sink.ticket());
  clock.advance(31min);
  engine->tick();
  EXPECT_TRUE(engine->uids_with_prefix(uid).empty())
      << "a resolved incident that can no longer reopen is not held in memory";
  clock.advance(88min);
  engine->tick();
  EXPECT_TRUE(events("closed").empty());
  clock.advance(2min);
  engine->tick();
  auto closed = events("closed");
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].incident.uid, uid);
  EXPECT_EQ(closed[0].incident.state, IncidentState::closed);
  EXPECT_TRUE(closed[0].incident.t_resolved.has_value());
  EXPECT_EQ(closed[0].incident.summary, events("resolved").at(0).incident.summary);
}

TEST_F(Lifecycle, AResolvedIncidentClosedByAPersonIsNotClosedAgainByTime) {
  config.probes = {probe("pos")};
  config.incidents.close_after = 1h;
  start();
  feed("pos", ProbeStatus::fail, 3);
  const std::string uid = open_of("pos")->uid;
  feed("pos", ProbeStatus::ok, 2);
  clock.advance(40min);
  engine->tick();
  engine->on_committed(sink.ticket());
  // Not held any more: closed from the database's copy.
  auto closed = engine->act(Engine::Action::close, uid, "cli:dana", "", std::nullopt);
  ASSERT_TRUE(closed) << closed.error().message;
  EXPECT_EQ(closed->state, IncidentState::closed);
  clock.advance(30min);
  engine->tick();
  EXPECT_EQ(events("closed").size(), 1u);
}

TEST_F(Lifecycle, AReopenedAndResolvedAgainIncidentClosesAfterItsLastResolution) {
  config.probes = {probe("pos")};
  config.incidents.close_after = 1h;
  start();
  feed("pos", ProbeStatus::fail, 3);
  const std::string uid = open_of("pos")->uid;
  feed("pos", ProbeStatus::ok, 2);
  clock.advance(20min);
  feed("pos", ProbeStatus::fail, 3);  // reopens
  ASSERT_EQ(open_of("pos")->uid, uid);
  feed("pos", ProbeStatus::ok, 2);
  clock.advance(45min);  // 65 min after the first resolution, 45 after the second
  engine->tick();
  EXPECT_TRUE(events("closed").empty()) << "closed by its first resolution's time";
  clock.advance(16min);
  engine->tick();
  EXPECT_EQ(events("closed").size(), 1u);
}

// Found by the soak: a reopened incident left a stale index entry behind,
// and a note after a person closed it took the daemon down (map::at).
TEST_F(Lifecycle, AReopenedIncidentClosedByAPersonTakesANote) {
  config.probes = {probe("pos")};
  start();
  feed("pos", ProbeStatus::fail, 3);
  const std::string uid = open_of("pos")->uid;
  feed("pos", ProbeStatus::ok, 2);
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_EQ(open_of("pos")->uid, uid);
  ASSERT_TRUE(engine->act(Engine::Action::close, uid, "cli:dana", "", std::nullopt));
  auto noted = engine->act(Engine::Action::note, uid, "cli:dana", "after", std::nullopt);
  ASSERT_TRUE(noted) << noted.error().message;
  EXPECT_EQ(noted->state, IncidentState::closed);
  EXPECT_TRUE(engine->uids_with_prefix(uid).size() <= 1u);
}

TEST_F(Lifecycle, DoubleAckAndDoubleResolveAreErrors) {
  config.probes = {probe("pos")};
  start();
  feed("pos", ProbeStatus::fail, 3);
  const std::string uid = open_of("pos")->uid;
  ASSERT_TRUE(engine->act(Engine::Action::ack, uid, "cli:a", "", std::nullopt));
  auto twice = engine->act(Engine::Action::ack, uid, "cli:b", "", std::nullopt);
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("already acknowledged"), std::string::npos);
  ASSERT_TRUE(engine->act(Engine::Action::resolve, uid, "cli:a", "", std::nullopt));
  auto again = engine->act(Engine::Action::resolve, uid, "cli:a", "", std::nullopt);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("already resolved"), std::string::npos);
  auto ack_resolved = engine->act(Engine::Action::ack, uid, "cli:a", "", std::nullopt);
  ASSERT_FALSE(ack_resolved);
}

TEST_F(Lifecycle, AHumanResolveOfAStillFailingProbeReopensAfterFailAfterMoreFailures) {
  config.probes = {probe("pos")};
  start();
  feed("pos", ProbeStatus::fail, 3);
  const std::string uid = open_of("pos")->uid;
  ASSERT_TRUE(engine->act(Engine::Action::resolve, uid, "cli:a", "", std::nullopt));
  feed("pos", ProbeStatus::fail, 2);
  EXPECT_EQ(open_of("pos"), nullptr);
  feed("pos", ProbeStatus::fail, 1);
  ASSERT_NE(open_of("pos"), nullptr);
  EXPECT_EQ(open_of("pos")->uid, uid);
  EXPECT_EQ(open_of("pos")->reopen_count, 1);
}

TEST_F(Lifecycle, UnsyncedClockIsSaidInTheEvent) {
  config.probes = {probe("pos")};
  start();
  clock.set_synced(false);
  feed("pos", ProbeStatus::fail, 3);
  clock.set_synced(true);
  feed("pos", ProbeStatus::ok, 2);
  EXPECT_EQ(events("opened").at(0).event.extra["clock_synced"], false);
  EXPECT_FALSE(events("resolved").at(0).event.extra.contains("clock_synced"));
}

TEST_F(Lifecycle, WallClockJumpingBackDoesNotStallClosing) {
  config.probes = {probe("pos")};
  config.incidents.close_after = 1h;
  start();
  feed("pos", ProbeStatus::fail, 3);
  feed("pos", ProbeStatus::ok, 2);
  clock.jump_wall(-3h);  // NTP steps the clock back
  clock.advance(61min);
  engine->tick();
  ASSERT_EQ(events("closed").size(), 1u) << "close_after runs on the monotonic clock";
}

TEST_F(Lifecycle, RestoredResolvedIncidentClosesOnTimeAndCanReopen) {
  config.probes = {probe("pos")};
  config.incidents.close_after = 1h;
  start();
  Incident inc;
  inc.uid = "0193aaaa-0000-7000-8000-000000000001";
  inc.dedup_key = "s1:pos:down";
  inc.probe = "pos";
  inc.condition = "down";
  inc.state = IncidentState::resolved;
  inc.t_resolved = clock.wall_now() - 10min;
  EngineSnapshot snap;
  snap.resolved = {inc};
  engine->restore(std::move(snap));
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("pos"), nullptr);
  EXPECT_EQ(open_of("pos")->uid, inc.uid);
  EXPECT_EQ(types_of("pos"), (Types{"reopened"}));
}

// --- priority ---------------------------------------------------------------------

TEST(Priority, ImpactTimesUrgency) {
  EXPECT_EQ(priority_for(config::Severity::critical, true), "P1");
  EXPECT_EQ(priority_for(config::Severity::critical, false), "P2");
  EXPECT_EQ(priority_for(config::Severity::high, true), "P2");
  EXPECT_EQ(priority_for(config::Severity::medium, false), "P4");
  EXPECT_EQ(priority_for(config::Severity::low, false), "P5");
  EXPECT_EQ(priority_for(config::Severity::info, true), "P5");
  EXPECT_EQ(priority_for(config::Severity::info, false), "P5");
}

TEST_F(Lifecycle, PriorityFollowsTradingHours) {
  config.probes = {probe("pos")};
  config.store.trading_hours = "Mon-Sat 07:00-22:00";
  config.store.trading = config::WeeklySchedule::parse(config.store.trading_hours).value();
  start();
  engine->tick();
  feed("pos", ProbeStatus::fail, 3);  // Wednesday noon: trading
  EXPECT_EQ(open_of("pos")->priority, "P2");
  clock.advance(10h);  // 22:00+
  engine->tick();
  EXPECT_EQ(open_of("pos")->priority, "P3");
  auto updated = events("updated");
  ASSERT_EQ(updated.size(), 1u);
  EXPECT_EQ(updated[0].event.extra["reason"], "trading hours ended");
}

// --- flapping ---------------------------------------------------------------------

TEST(Flap, WeightedPercentOnFixedSequences) {
  FlapHistory steady;
  for (int i = 0; i < 21; ++i) steady.push(false);
  EXPECT_DOUBLE_EQ(steady.percent(), 0.0);

  FlapHistory alternating;
  for (int i = 0; i < 21; ++i) alternating.push(i % 2 == 0);
  EXPECT_NEAR(alternating.percent(), 100.0, 1e-9);

  FlapHistory newest;  // one change, between the two newest results
  for (int i = 0; i < 20; ++i) newest.push(false);
  newest.push(true);
  EXPECT_NEAR(newest.percent(), 1.25 / 20 * 100, 1e-9);

  FlapHistory oldest;  // one change, between the two oldest results
  oldest.push(true);
  for (int i = 0; i < 20; ++i) oldest.push(false);
  EXPECT_NEAR(oldest.percent(), 0.75 / 20 * 100, 1e-9);

  // 22 results: the oldest falls out of the window.
  oldest.push(false);
  EXPECT_DOUBLE_EQ(oldest.percent(), 0.0);

  // A short history reads low, not jumpy: one change in two results.
  FlapHistory two;
  two.push(false);
  two.push(true);
  EXPECT_NEAR(two.percent(), 6.25, 1e-9);

  EXPECT_EQ(FlapHistory::parse(alternating.to_string()).to_string(), alternating.to_string());
  EXPECT_EQ(FlapHistory::parse("01x").size(), 0);
}

TEST(Flap, Hysteresis) {
  EXPECT_TRUE(next_flapping(false, 30.0, 30, 20));
  EXPECT_FALSE(next_flapping(false, 29.9, 30, 20));
  EXPECT_TRUE(next_flapping(true, 20.1, 30, 20));
  EXPECT_FALSE(next_flapping(true, 20.0, 30, 20));
}

class Flapping : public Lifecycle {
 protected:
  /// A link that fails and recovers on a single result.
  void jumpy_link() {
    config.probes = {probe("link")};
    config.probes[0].fail_after = 1;
    config.probes[0].recover_after = 1;
  }
  /// fail, ok, fail, ok, … `n` results.
  void alternate(int n) {
    for (int i = 0; i < n; ++i) feed("link", i % 2 == 0 ? ProbeStatus::fail : ProbeStatus::ok);
  }
};

TEST_F(Flapping, AFlappingProbeHoldsOneIncidentAndDoesNotChurn) {
  jumpy_link();
  start();
  // Each failure would open (or reopen) and each success resolve, were it
  // not for flap detection.
  alternate(30);
  ASSERT_EQ(events("flapping_started").size(), 1u);
  ASSERT_NE(open_of("link"), nullptr);
  EXPECT_TRUE(open_of("link")->flapping);
  const std::string uid = open_of("link")->uid;
  const int reopens = open_of("link")->reopen_count;
  const auto churn_before = events().size();
  alternate(4);
  EXPECT_EQ(events().size(), churn_before) << "no resolve/reopen per change while flapping";

  // Steady ok long enough: flapping stops and that same incident resolves.
  feed("link", ProbeStatus::ok, 21);
  EXPECT_EQ(events("flapping_stopped").size(), 1u);
  EXPECT_EQ(open_of("link"), nullptr);
  ASSERT_EQ(types_of("link").back(), "resolved");
  EXPECT_EQ(events("resolved").back().incident.uid, uid);
  EXPECT_EQ(events("resolved").back().incident.reopen_count, reopens);
}

TEST_F(Flapping, FlappingWithoutEverHardFailingStillRaisesOneIncident) {
  config.probes = {probe("link")};  // fail_after 3: alternating never reaches it
  start();
  alternate(21);
  EXPECT_EQ(types_of("link"), (Types{"opened", "flapping_started"}));
  EXPECT_TRUE(open_of("link")->flapping);
}

TEST_F(Flapping, FlappingThatStopsWhileFailingLeavesANormalIncident) {
  jumpy_link();
  start();
  alternate(21);
  feed("link", ProbeStatus::fail, 21);
  ASSERT_NE(open_of("link"), nullptr);
  EXPECT_FALSE(open_of("link")->flapping);
  EXPECT_EQ(types_of("link").back(), "flapping_stopped");
}

// --- root cause by depends_on ---------------------------------------------------------

class Uplink : public Lifecycle {
 protected:
  void SetUp() override {
    config.probes.push_back(probe("uplink"));
    config.probes[0].severity = config::Severity::critical;
    for (int i = 1; i <= 20; ++i) {
      config.probes.push_back(probe(fmt::format("lane-{:02}", i), {"uplink"}));
    }
    start();
  }
  int count(const std::string& type, const std::string& prefix) const {
    int n = 0;
    for (const auto& c : events(type)) n += c.incident.probe.starts_with(prefix) ? 1 : 0;
    return n;
  }
};

TEST_F(Uplink, UplinkAndTwentyLanesFailingTogetherGiveOneIncidentWhateverTheJitter) {
  for (unsigned seed = 1; seed <= 25; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    sink.changes.clear();
    rechecks.clear();
    engine = nullptr;
    start();
    std::mt19937 rng(seed);
    // Every probe sees the outage at its own pace: a random order of
    // results, the uplink's as likely to come last as first.
    std::vector<std::string> order;
    for (const auto& p : config.probes) {
      for (int k = 0; k < 4; ++k) order.push_back(p.name);
    }
    std::shuffle(order.begin(), order.end(), rng);
    for (const auto& name : order) {
      engine->on_result(name, result(ProbeStatus::fail));
      clock.advance(std::chrono::milliseconds(rng() % 700));
      if (rng() % 3 == 0) answer_rechecks([](const std::string&) { return ProbeStatus::fail; });
    }
    answer_rechecks([](const std::string&) { return ProbeStatus::fail; });

    EXPECT_EQ(count("opened", ""), 1);
    EXPECT_EQ(count("opened", "uplink"), 1);
    EXPECT_EQ(count("suppressed", "lane-"), 20);
    const Incident* up = open_of("uplink");
    ASSERT_NE(up, nullptr);
    for (int i = 1; i <= 20; ++i) {
      const Incident* lane = open_of(fmt::format("lane-{:02}", i));
      ASSERT_NE(lane, nullptr);
      EXPECT_EQ(lane->suppressed_by, up->uid);
    }
    // No event of a lane before its suppressed one: never a burst of
    // lane incidents suppressed later.
    for (const auto& c : sink.incident_changes()) {
      if (c.incident.probe != "uplink") {
        EXPECT_TRUE(c.incident.suppressed_by.has_value());
      }
    }
  }
}

TEST_F(Uplink, AChildFailingAloneIsReCheckedAgainstItsParentThenOpens) {
  feed("lane-07", ProbeStatus::fail, 3);
  EXPECT_EQ(open_of("lane-07"), nullptr) << "held until the uplink answers";
  ASSERT_EQ(rechecks, (std::vector<std::string>{"uplink"}));
  answer_rechecks([](const std::string&) { return ProbeStatus::ok; });
  ASSERT_NE(open_of("lane-07"), nullptr);
  EXPECT_FALSE(open_of("lane-07")->suppressed_by.has_value());
  EXPECT_EQ(types_of("lane-07"), (Types{"opened"}));
}

TEST_F(Uplink, ReChecksCountTowardTheParentsFailAfter) {
  feed("lane-01", ProbeStatus::fail, 3);
  // Re-checks of the uplink: 3 failures in a row take it to hard_fail.
  answer_rechecks([](const std::string&) { return ProbeStatus::fail; });
  ASSERT_NE(open_of("uplink"), nullptr);
  EXPECT_EQ(types_of("uplink"), (Types{"opened"}));
  EXPECT_EQ(types_of("lane-01"), (Types{"suppressed"}));
}

TEST_F(Uplink, WhenTheParentRecoversChildrenThatStillFailOpenTheirOwn) {
  feed("uplink", ProbeStatus::fail, 3);
  for (int i = 1; i <= 3; ++i) feed(fmt::format("lane-{:02}", i), ProbeStatus::fail, 3);
  EXPECT_EQ(count("suppressed", "lane-"), 3);
  feed("lane-01", ProbeStatus::ok, 2);  // recovers with the uplink still down
  feed("lane-02", ProbeStatus::ok, 2);
  feed("uplink", ProbeStatus::ok, 2);
  EXPECT_EQ(open_of("uplink"), nullptr);
  EXPECT_EQ(open_of("lane-01"), nullptr);
  ASSERT_NE(open_of("lane-03"), nullptr);
  EXPECT_FALSE(open_of("lane-03")->suppressed_by.has_value());
  EXPECT_EQ(types_of("lane-03"), (Types{"suppressed", "opened"}));
  EXPECT_EQ(types_of("lane-01"), (Types{"suppressed", "resolved"}));
}

TEST_F(Lifecycle, AChainAttachesToTheRootAndMovesWhenTheRootRecovers) {
  config.probes = {probe("uplink"), probe("switch", {"uplink"}), probe("lane", {"switch"})};
  start();
  feed("uplink", ProbeStatus::fail, 3);
  feed("switch", ProbeStatus::fail, 3);
  feed("lane", ProbeStatus::fail, 3);
  const std::string root = open_of("uplink")->uid;
  EXPECT_EQ(open_of("switch")->suppressed_by, root);
  EXPECT_EQ(open_of("lane")->suppressed_by, root);
  // The uplink comes back, the switch does not: the switch is the root now.
  feed("uplink", ProbeStatus::ok, 2);
  ASSERT_NE(open_of("switch"), nullptr);
  EXPECT_FALSE(open_of("switch")->suppressed_by.has_value());
  EXPECT_EQ(open_of("lane")->suppressed_by, open_of("switch")->uid);
  EXPECT_EQ(types_of("lane"), (Types{"suppressed", "updated"}));
}

TEST_F(Lifecycle, AHoldEndsWhenTheAncestorsNeverAnswer) {
  config.probes = {probe("uplink"), probe("lane", {"uplink"})};
  start();
  feed("lane", ProbeStatus::fail, 3);
  EXPECT_EQ(open_of("lane"), nullptr);
  clock.advance(5min);
  engine->tick();
  ASSERT_NE(open_of("lane"), nullptr);
}

// --- silences -----------------------------------------------------------------------

TEST_F(Lifecycle, AFailureInsideASilenceIsMaintenanceAndBecomesNormalWhenItEnds) {
  config.probes = {probe("lane-01"), probe("printer")};
  silence_lanes_at_noon();
  start();
  feed("lane-01", ProbeStatus::fail, 3);
  feed("printer", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("lane-01"), nullptr);
  EXPECT_TRUE(open_of("lane-01")->in_maintenance);
  EXPECT_FALSE(open_of("printer")->in_maintenance);
  EXPECT_NE(events("opened").at(0).event.extra.value("silence", "").find("POS update"),
            std::string::npos);

  clock.advance(20min);  // 12:20
  engine->tick();
  EXPECT_TRUE(open_of("lane-01")->in_maintenance);
  clock.advance(11min);  // 12:31: the window is over and the lane still fails
  engine->tick();
  EXPECT_FALSE(open_of("lane-01")->in_maintenance);
  EXPECT_EQ(types_of("lane-01"), (Types{"opened", "updated"}));
  EXPECT_EQ(events("updated").at(0).event.extra["reason"], "maintenance ended; still failing");
}

TEST_F(Lifecycle, AFailureThatRecoversInsideTheSilenceNeverBecomesNormal) {
  config.probes = {probe("lane-01")};
  silence_lanes_at_noon();
  start();
  feed("lane-01", ProbeStatus::fail, 3);
  feed("lane-01", ProbeStatus::ok, 2);
  clock.advance(40min);
  engine->tick();
  EXPECT_EQ(types_of("lane-01"), (Types{"opened", "resolved"}));
  EXPECT_TRUE(events("resolved").at(0).incident.in_maintenance);
}

TEST_F(Lifecycle, AdHocSilenceByLabelAndItsErrors) {
  config.probes = {probe("lane-01"), probe("printer")};
  config.probes[0].labels = {{"kind", "pos"}};
  start();
  auto none = engine->add_silence("kiosk-*", 2h, "x", "cli:a");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("matches none"), std::string::npos);
  EXPECT_FALSE(engine->add_silence("kind=pos", 2h, "", "cli:a")) << "a reason is required";

  auto added = engine->add_silence("kind=pos", 2h, "swapping the lane PC", "cli:a");
  ASSERT_TRUE(added) << added.error().message;
  ASSERT_TRUE(std::holds_alternative<SilenceRow>(sink.changes.back()));
  feed("lane-01", ProbeStatus::fail, 3);
  EXPECT_TRUE(open_of("lane-01")->in_maintenance);
  ASSERT_TRUE(engine->remove_silence(added->uid.substr(0, 13), "cli:a"));
  EXPECT_FALSE(open_of("lane-01")->in_maintenance) << "removing the silence ends maintenance";
  EXPECT_FALSE(engine->remove_silence(added->uid, "cli:a"));
}

// --- self-healing ---------------------------------------------------------------------

class Healing : public Lifecycle {
 protected:
  void configure(int max_attempts = 3) {
    config::RemediationConfig r;
    r.name = "restart-pos";
    r.type = config::RemediationType::exec;
    r.command = {"/bin/true"};
    r.max_attempts = max_attempts;
    r.window = 1h;
    r.backoff = 10s;
    r.backoff_max = 10min;
    r.verify_after = 20s;
    r.escalate_severity = config::Severity::critical;
    config.remediations.push_back(r);
    config.probes = {probe("pos"), probe("basket")};
    config.probes[0].remediation = "restart-pos";
  }
  /// Moves time on and ticks until the engine asks to re-run `p`.
  void until_recheck(const std::string& p, Millis limit = 30min) {
    for (Millis waited{0}; waited < limit; waited += 1s) {
      if (std::find(rechecks.begin(), rechecks.end(), p) != rechecks.end()) {
        rechecks.clear();
        return;
      }
      clock.advance(1s);
      engine->tick();
    }
    FAIL() << "no re-check of " << p;
  }
};

TEST_F(Healing, ARemediationThatWorksIsVerifiedAndTheIncidentSelfHeals) {
  configure();
  start();
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_EQ(runner.runs.size(), 1u);
  EXPECT_EQ(open_of("pos")->state, IncidentState::remediating);
  runner.finish(true, 0, "restarted");
  EXPECT_TRUE(events("remediation_succeeded").empty()) << "not before the verify";
  clock.advance(19s);
  engine->tick();
  EXPECT_TRUE(rechecks.empty());
  until_recheck("pos");
  feed("pos", ProbeStatus::ok);  // the verify
  auto ok = events("remediation_succeeded");
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].event.extra["output"], "restarted");
  EXPECT_EQ(ok[0].event.extra["exit_code"], 0);
  feed("pos", ProbeStatus::ok);  // recover_after = 2
  auto resolved = events("resolved");
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_TRUE(resolved[0].incident.self_healed);
  EXPECT_EQ(types_of("pos"),
            (Types{"opened", "remediation_started", "remediation_succeeded", "resolved"}));
}

TEST_F(Healing, FailuresBackOffThenEscalateWithTheSeverityRaised) {
  configure(3);
  start();
  feed("pos", ProbeStatus::fail, 3);
  runner.finish(false, 1, "no such service");
  auto failed = events("remediation_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].event.extra["exit_code"], 1);
  EXPECT_EQ(failed[0].event.extra["retry_in"], "10s");

  // Attempt 2 after 10 s (not before), attempt 3 after 20 s more.
  clock.advance(9s);
  engine->tick();
  EXPECT_TRUE(runner.runs.empty());
  clock.advance(1s);
  engine->tick();
  ASSERT_EQ(runner.runs.size(), 1u);
  runner.finish(true);
  until_recheck("pos");
  feed("pos", ProbeStatus::fail);  // the verify fails: a failed attempt
  EXPECT_EQ(events("remediation_failed").size(), 2u);
  EXPECT_EQ(events("remediation_failed").back().event.extra["retry_in"], "20s");
  clock.advance(18s);  // feed() moved the clock 1 s past the verify
  engine->tick();
  EXPECT_TRUE(runner.runs.empty());
  clock.advance(1s);
  engine->tick();
  ASSERT_EQ(runner.runs.size(), 1u);
  runner.finish(false, 2);

  auto esc = events("escalated");
  ASSERT_EQ(esc.size(), 1u);
  EXPECT_EQ(esc[0].incident.state, IncidentState::escalated);
  EXPECT_EQ(esc[0].incident.severity, config::Severity::critical);
  EXPECT_EQ(esc[0].event.extra["severity_from"], "high");
  // Escalated stays so: no more attempts, until a human acts.
  clock.advance(1h);
  engine->tick();
  feed("pos", ProbeStatus::fail, 3);
  EXPECT_TRUE(runner.runs.empty());
  EXPECT_EQ(open_of("pos")->state, IncidentState::escalated);
  ASSERT_TRUE(engine->act(Engine::Action::ack, open_of("pos")->uid, "cli:a", "", std::nullopt));
  EXPECT_EQ(open_of("pos")->state, IncidentState::acknowledged);
}

TEST_F(Healing, AnEscalatedIncidentThatRecoversWaitsForAHumanAndAnAckResolvesIt) {
  configure(1);
  start();
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_EQ(runner.runs.size(), 1u);
  runner.finish(false, 1, "no such service");
  for (int i = 0; i < 60 && events("escalated").empty(); ++i) {
    clock.advance(1s);
    engine->tick();
  }
  ASSERT_EQ(events("escalated").size(), 1u);

  // It recovers: the recovery is recorded, the incident stays escalated.
  feed("pos", ProbeStatus::ok, 2);
  ASSERT_NE(open_of("pos"), nullptr);
  EXPECT_EQ(open_of("pos")->state, IncidentState::escalated);
  ASSERT_TRUE(open_of("pos")->t_restored);
  EXPECT_TRUE(events("resolved").empty());
  ASSERT_EQ(events("updated").size(), 1u);
  EXPECT_EQ(events("updated")[0].event.extra["reason"],
            "recovered; stays escalated until a human or HQ acts");

  // It fails again: no longer restored; and recovers once more.
  feed("pos", ProbeStatus::fail, 3);
  EXPECT_FALSE(open_of("pos")->t_restored);
  EXPECT_EQ(events("updated").back().event.extra["reason"], "failing again");
  feed("pos", ProbeStatus::ok, 2);
  const auto restored = open_of("pos")->t_restored;
  ASSERT_TRUE(restored);
  EXPECT_TRUE(runner.runs.empty()) << "no attempt while escalated";

  // The ack is what it waited for: acknowledged, then resolved at once,
  // with the recovery's time (MTTR) and not self-healed.
  auto acked = engine->act(Engine::Action::ack, open_of("pos")->uid, "cli:maria", "", std::nullopt);
  ASSERT_TRUE(acked) << acked.error().message;
  EXPECT_EQ(acked->state, IncidentState::resolved);
  EXPECT_EQ(open_of("pos"), nullptr);
  const auto resolved = events("resolved");
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].incident.t_restored, restored);
  EXPECT_FALSE(resolved[0].incident.self_healed);
  EXPECT_TRUE(resolved[0].incident.t_ack);
  EXPECT_EQ(types_of("pos"),
            (Types{"opened", "remediation_started", "remediation_failed", "escalated", "updated",
                   "updated", "updated", "acknowledged", "resolved"}));
}

TEST_F(Healing, BackoffDoublesAndIsCapped) {
  configure(100);
  config.remediations[0].backoff_max = 30s;
  start();
  feed("pos", ProbeStatus::fail, 3);
  std::vector<std::string> waits;
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(runner.runs.size(), 1u);
    runner.finish(false, 1);
    waits.push_back(events("remediation_failed").back().event.extra["retry_in"]);
    for (int s = 0; s < 60 && runner.runs.empty(); ++s) {
      clock.advance(1s);
      engine->tick();
    }
  }
  EXPECT_EQ(waits, (std::vector<std::string>{"10s", "20s", "30s", "30s"}));
}

TEST_F(Healing, AttemptsInTheWindowAreCountedAcrossRestarts) {
  configure(3);
  start();
  ProbeStateRow row;
  row.probe = "pos";
  row.attempts = {clock.wall_now() - 50min, clock.wall_now() - 40min, clock.wall_now() - 5min};
  row.attempt_failures = 0;
  EngineSnapshot snap;
  snap.probe_states = {row};
  engine->restore(std::move(snap));
  feed("pos", ProbeStatus::fail, 3);
  EXPECT_TRUE(runner.runs.empty());
  ASSERT_EQ(events("escalated").size(), 1u);

  // The same history, but the oldest attempt has left the window.
  sink.changes.clear();
  engine = nullptr;
  start();
  row.attempts[0] = clock.wall_now() - 61min;
  snap.probe_states = {row};
  engine->restore(std::move(snap));
  feed("pos", ProbeStatus::fail, 3);
  EXPECT_EQ(runner.runs.size(), 1u);
}

TEST_F(Healing, TheAttemptIsPersistedBeforeItsEvent) {
  configure();
  start();
  feed("pos", ProbeStatus::fail, 3);
  // The last probe_state row for pos before remediation_started holds it.
  std::optional<std::size_t> state_at, event_at;
  for (std::size_t i = 0; i < sink.changes.size(); ++i) {
    if (auto* r = std::get_if<ProbeStateRow>(&sink.changes[i]);
        r && r->probe == "pos" && r->attempts.size() == 1) {
      if (!state_at) state_at = i;
    }
    if (auto* c = std::get_if<IncidentChange>(&sink.changes[i]);
        c && c->event.type == "remediation_started") {
      event_at = i;
    }
  }
  ASSERT_TRUE(state_at && event_at);
  EXPECT_LT(*state_at, *event_at);
}

TEST_F(Healing, APreconditionThatIsNotOkSkipsTheAttemptWithoutCountingIt) {
  configure(1);
  config.remediations[0].precondition = "basket";
  start();
  feed("pos", ProbeStatus::fail, 3);
  EXPECT_TRUE(runner.runs.empty());
  ASSERT_EQ(rechecks, (std::vector<std::string>{"basket"}));
  rechecks.clear();
  engine->on_result("basket", result(ProbeStatus::fail, "basket open on lane 1"));
  auto skipped = events("remediation_skipped");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].event.extra["reason"].get<std::string>().find("basket open"),
            std::string::npos);
  EXPECT_TRUE(events("escalated").empty()) << "a skip is not an attempt";
  until_recheck("basket");
  engine->on_result("basket", result(ProbeStatus::ok, "no basket"));
  ASSERT_EQ(runner.runs.size(), 1u);
}

TEST_F(Healing, OnlyOutsideTradingHoursWaitsForThemToEnd) {
  configure();
  config.remediations[0].only_outside_trading_hours = true;
  config.store.trading = config::WeeklySchedule::parse("daily 07:00-13:00").value();
  start();
  feed("pos", ProbeStatus::fail, 3);  // 12:00:03
  EXPECT_TRUE(runner.runs.empty());
  ASSERT_EQ(events("remediation_skipped").size(), 1u);
  feed("pos", ProbeStatus::fail, 5);
  EXPECT_EQ(events("remediation_skipped").size(), 1u) << "said once";
  clock.advance(59min);  // 12:59:08
  engine->tick();
  EXPECT_TRUE(runner.runs.empty());
  clock.advance(1min);
  engine->tick();
  EXPECT_EQ(runner.runs.size(), 1u);
}

TEST_F(Healing, NeverTwoAtOnceAndNoneWhileSuppressedOrAcknowledged) {
  configure();
  start();
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_EQ(runner.runs.size(), 1u);
  feed("pos", ProbeStatus::fail, 5);
  clock.advance(5min);
  engine->tick();
  EXPECT_EQ(runner.runs.size(), 1u) << "one attempt at a time";
  ASSERT_TRUE(engine->act(Engine::Action::ack, open_of("pos")->uid, "cli:a", "", std::nullopt));
  runner.finish(false, 1);
  clock.advance(5min);
  engine->tick();
  EXPECT_TRUE(runner.runs.empty()) << "acknowledged: a human has it";
  EXPECT_EQ(events("remediation_failed").size(), 1u) << "the running attempt is still recorded";
}

TEST_F(Healing, ARecoveryBeforeTheVerifyIsDueCountsAsTheVerify) {
  configure();
  start();
  feed("pos", ProbeStatus::fail, 3);
  runner.finish(true, 0);
  feed("pos", ProbeStatus::ok, 2);  // scheduled results, before verify_after
  EXPECT_EQ(types_of("pos"),
            (Types{"opened", "remediation_started", "remediation_succeeded", "resolved"}));
  EXPECT_TRUE(events("resolved").at(0).incident.self_healed);
}

TEST_F(Healing, AnActionEndingAfterTheIncidentResolvedIsRecordedNotVerified) {
  configure();
  start();
  feed("pos", ProbeStatus::fail, 3);
  feed("pos", ProbeStatus::ok, 2);  // recovers while the action runs
  runner.finish(true, 0, "done");
  EXPECT_EQ(types_of("pos"),
            (Types{"opened", "remediation_started", "resolved", "remediation_succeeded"}));
  EXPECT_FALSE(events("resolved").at(0).incident.self_healed);
  clock.advance(1min);
  engine->tick();
  EXPECT_TRUE(rechecks.empty()) << "nothing to verify";
}

TEST_F(Healing, TheLastAttemptFailingAfterAHumanAckDoesNotEscalate) {
  configure(1);
  start();
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_TRUE(engine->act(Engine::Action::ack, open_of("pos")->uid, "cli:a", "", std::nullopt));
  runner.finish(false, 1);
  EXPECT_EQ(open_of("pos")->state, IncidentState::acknowledged);
  EXPECT_TRUE(events("escalated").empty());
}

TEST_F(Healing, ARecoveryDuringBackoffIsNotASelfHeal) {
  configure();
  start();
  feed("pos", ProbeStatus::fail, 3);
  runner.finish(false, 1);
  feed("pos", ProbeStatus::ok, 2);
  auto resolved = events("resolved");
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_FALSE(resolved[0].incident.self_healed);
}

// --- the agent's own storage --------------------------------------------------------

TEST_F(Lifecycle, StorageProblemIsOneCriticalIncident) {
  config.probes = {probe("pos")};
  start();
  engine->set_storage_problem("database 300 MB over the 256 MB cap, all of it unsynced");
  engine->set_storage_problem("still over");
  ASSERT_EQ(events("opened").size(), 1u);
  EXPECT_EQ(events("opened")[0].incident.severity, config::Severity::critical);
  EXPECT_EQ(events("opened")[0].incident.probe, kAgentProbe);
  engine->set_storage_problem(std::nullopt);
  EXPECT_EQ(events("resolved").size(), 1u);
}

TEST_F(Lifecycle, AnExpiringClientCertificateIsOneIncidentUntilAFreshOneIsLoaded) {
  config.probes = {probe("pos")};
  start();
  engine->set_client_cert_problem("expires in 5 days", config::Severity::high);
  engine->set_client_cert_problem("expires in 4 days", config::Severity::high);
  // The storage condition is another incident of the same agent probe.
  engine->set_storage_problem(std::nullopt);
  ASSERT_EQ(events("opened").size(), 1u);
  EXPECT_EQ(events("opened")[0].incident.probe, kAgentProbe);
  EXPECT_EQ(events("opened")[0].incident.condition, "client_cert");
  EXPECT_EQ(events("opened")[0].incident.severity, config::Severity::high);
  EXPECT_TRUE(events("resolved").empty());
  engine->set_client_cert_problem(std::nullopt, config::Severity::high);
  EXPECT_EQ(events("resolved").size(), 1u);
  EXPECT_TRUE(engine->unresolved().empty());
}

// --- config reload (agent/reload.h) ---------------------------------------------------

/// Makes `next` the engine's config as the daemon's SIGHUP does; `running`
/// is the config the engine holds, and becomes `next`.
ConfigChange reload(config::Config& running, config::Config next, Engine& engine) {
  ConfigChange change = diff_config(running, next);
  EXPECT_TRUE(change.needs_restart.empty());
  running = next;
  engine.reconfigure(std::make_shared<const config::Config>(std::move(next)), change);
  return change;
}

TEST_F(Healing, AReloadKeepsCheckLevelsFlapHistoryAttemptsAndIncidents) {
  configure(3);
  start();
  feed("pos", ProbeStatus::ok, 2);
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_EQ(runner.runs.size(), 1u);
  runner.finish(false, 1);  // attempt 1 of 3 failed
  const std::string uid = open_of("pos")->uid;
  auto view = [&](const std::string& name) {
    for (const auto& p : engine->probes()) {
      if (p.name == name) return p;
    }
    return ProbeView{};
  };
  const ProbeView before = view("pos");
  ASSERT_EQ(before.level, CheckLevel::hard_fail);
  ASSERT_GT(before.flap_percent, 0);

  config::Config next = config;
  next.probes.push_back(probe("printer"));
  next.probes[0].severity = config::Severity::critical;  // the engine's key, not the check
  next.incidents.close_after = 1h;
  const auto change = reload(config, next, *engine);
  EXPECT_EQ(change.added, (Types{"printer"}));
  EXPECT_EQ(change.changed, (Types{"pos"}));
  EXPECT_TRUE(change.rescheduled.empty());
  EXPECT_TRUE(change.remediation_changed.empty());

  const ProbeView after = view("pos");
  EXPECT_EQ(after.level, CheckLevel::hard_fail);
  EXPECT_EQ(after.flap_percent, before.flap_percent);
  EXPECT_EQ(view("printer").level, CheckLevel::unknown);
  EXPECT_EQ(engine->probes().size(), 3u);
  ASSERT_NE(open_of("pos"), nullptr);
  EXPECT_EQ(open_of("pos")->uid, uid);
  EXPECT_TRUE(events("resolved").empty());
  // The policy goes on where it was: the next attempt is number 2, after the backoff.
  for (int i = 0; i < 30 && runner.runs.empty(); ++i) {
    clock.advance(1s);
    engine->tick();
  }
  ASSERT_EQ(runner.runs.size(), 1u);
  EXPECT_EQ(events("remediation_started").back().event.extra["attempt"], 2);
  // The new probe takes results like any other.
  feed("printer", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("printer"), nullptr);
}

TEST_F(Lifecycle, AProbeRemovedByAReloadHasItsIncidentResolvedSayingWhy) {
  config.probes = {probe("lane-01"), probe("lane-02")};
  start();
  feed("lane-02", ProbeStatus::fail, 3);
  ASSERT_NE(open_of("lane-02"), nullptr);
  config::Config next = config;
  next.probes.erase(next.probes.begin() + 1);
  const auto change = reload(config, next, *engine);
  EXPECT_EQ(change.removed, (Types{"lane-02"}));
  EXPECT_EQ(open_of("lane-02"), nullptr);
  auto resolved = events("resolved");
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].event.extra["note"], "the probe was removed from the config");
  EXPECT_EQ(resolved[0].event.actor, "agent");
  EXPECT_EQ(engine->probes().size(), 1u);
  // A late result of the removed probe is ignored.
  feed("lane-02", ProbeStatus::fail, 5);
  EXPECT_EQ(events().size(), 2u);
}

TEST_F(Lifecycle, AProbeGoneAtARestartHasItsIncidentResolvedToo) {
  config.probes = {probe("lane-01")};
  start();
  Incident stale;
  stale.uid = new_uid(clock.wall_now());
  stale.dedup_key = "s1:lane-09:down";
  stale.probe = "lane-09";
  stale.condition = "down";
  stale.state = IncidentState::open;
  stale.t_fault = stale.t_detect = clock.wall_now();
  EngineSnapshot snap;
  snap.unresolved.push_back(stale);
  engine->restore(std::move(snap));
  EXPECT_TRUE(engine->unresolved().empty());
  ASSERT_EQ(events("resolved").size(), 1u);
  EXPECT_EQ(events("resolved")[0].incident.uid, stale.uid);
}

TEST_F(Healing, AReloadThatChangesTheRemediationAbandonsTheAttemptInFlight) {
  configure(3);
  start();
  feed("pos", ProbeStatus::fail, 3);
  ASSERT_EQ(runner.runs.size(), 1u);
  config::Config next = config;
  next.remediations[0].command = {"/bin/echo", "restart"};
  const auto change = reload(config, next, *engine);
  EXPECT_EQ(change.remediation_changed, (std::set<std::string>{"pos"}));
  auto failed = events("remediation_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_NE(failed[0].event.extra["detail"].get<std::string>().find("config reload"),
            std::string::npos);
  // The old action's outcome comes in later: ignored.
  const auto n = events().size();
  runner.finish(true);
  EXPECT_EQ(events().size(), n);
  // The next attempt runs the new action, and counts as the second.
  for (int i = 0; i < 30 && runner.runs.empty(); ++i) {
    clock.advance(1s);
    engine->tick();
  }
  ASSERT_EQ(runner.runs.size(), 1u);
  EXPECT_EQ(events("remediation_started").back().event.extra["attempt"], 2);
}

TEST(ConfigDiff, SaysWhatChangedAndWhatNeedsARestart) {
  config::Config a;
  a.store.id = "s1";
  a.probes = {probe("one"), probe("two"), probe("three")};
  config::Config b = a;
  b.probes[0].interval = 1s;             // rescheduled
  b.probes[1].fail_after = 5;            // changed, same check
  b.probes.erase(b.probes.begin() + 2);  // removed
  b.probes.push_back(probe("four"));     // added
  b.probes[0].where.line = 99;           // where it is written is no change
  b.incidents.flap_high = 40;
  auto c = diff_config(a, b);
  EXPECT_TRUE(c.needs_restart.empty());
  EXPECT_EQ(c.added, (Types{"four"}));
  EXPECT_EQ(c.removed, (Types{"three"}));
  EXPECT_EQ(c.changed, (Types{"one", "two"}));
  EXPECT_EQ(c.rescheduled, (std::set<std::string>{"one"}));
  EXPECT_EQ(c.other, (Types{"incidents"}));
  EXPECT_EQ(c.summary(),
            "probes: 1 added (four), 1 removed (three), 2 changed (one, two); also incidents");
  EXPECT_FALSE(diff_config(a, a).any());

  b = a;
  b.store.id = "s2";
  b.sync.broker = "tcp://hq:1883";
  b.agent.control_socket = "/tmp/x.sock";
  b.notify.push_back(config::NotifyConfig{});
  EXPECT_EQ(diff_config(a, b).needs_restart,
            (Types{"store.id", "agent.control_socket", "[sync]", "[[notify]]"}));
}

}  // namespace
}  // namespace storewatch::agent
