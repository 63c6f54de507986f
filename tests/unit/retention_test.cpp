// Retention and the size cap on real SQLite files: only closed history HQ
// has acknowledged goes, oldest first, a bounded amount per run.

#include "agent/retention.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <set>

#include "tests/support/history.h"
#include "tests/support/support.h"

namespace storewatch::agent {
namespace {

using namespace std::chrono_literals;
using test::incident;
using test::record;
using test::set_acked;

const WallTime kRetentionNow = WallTime(std::chrono::milliseconds(1'764'195'483'000));

WallTime days_ago(int d) {
  return kRetentionNow - std::chrono::hours(24 * d);
}

class RetentionTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::filesystem::path path = dir / "storewatch.db";
  std::optional<Store> store_;

  Store& store() {
    if (!store_) {
      auto s = Store::open(path, Store::Mode::read_write);
      EXPECT_TRUE(s) << (s ? "" : s.error().message);
      store_.emplace(std::move(*s));
    }
    return *store_;
  }

  /// An incident opened, resolved and closed `closed_days_ago`: three events.
  /// `body_bytes` pads each event's body.
  Incident closed(const std::string& uid, WallTime t_closed, std::size_t body_bytes = 0) {
    nlohmann::json extra = nlohmann::json::object();
    if (body_bytes > 0) extra["message"] = std::string(body_bytes, 'x');
    Incident i = incident(uid, "lane-01", t_closed - 2h, t_closed - 2h + 10s);
    record(store(), i, "opened", *i.t_detect, "agent", extra);
    i.state = IncidentState::resolved;
    i.t_restored = t_closed - 1h;
    i.t_resolved = t_closed - 1h;
    record(store(), i, "resolved", *i.t_resolved, "agent", extra);
    i.state = IncidentState::closed;
    i.t_closed = t_closed;
    record(store(), i, "closed", t_closed, "agent", extra);
    return i;
  }

  std::vector<std::int64_t> seqs() {
    std::vector<std::int64_t> out;
    auto events = store().events_after(0, 1'000'000);
    EXPECT_TRUE(events);
    for (const auto& e : *events) out.push_back(e.seq);
    return out;
  }

  std::set<std::string> uids() {
    std::set<std::string> out;
    auto all = store().incidents(false);
    EXPECT_TRUE(all);
    for (const auto& i : *all) out.insert(i.uid);
    return out;
  }

  std::int64_t scalar(const std::string& sql) {
    auto stmt = store().database().prepare(sql);
    EXPECT_TRUE(stmt);
    auto row = stmt->step();
    EXPECT_TRUE(row && *row);
    return stmt->int64(0);
  }

  /// What must hold after any pruning: a sound file, no event without its
  /// incident, no incident without events.
  void expect_consistent() {
    auto stmt = store().database().prepare("PRAGMA integrity_check");
    ASSERT_TRUE(stmt);
    ASSERT_TRUE(*stmt->step());
    EXPECT_EQ(stmt->text(0), "ok");
    EXPECT_EQ(scalar("SELECT count(*) FROM events e WHERE NOT EXISTS "
                     "(SELECT 1 FROM incidents i WHERE i.uid = e.incident_uid)"),
              0);
    EXPECT_EQ(scalar("SELECT count(*) FROM incidents i WHERE NOT EXISTS "
                     "(SELECT 1 FROM events e WHERE e.incident_uid = i.uid)"),
              0);
  }

  PruneResult prune(Pruner& pruner) {
    auto r = pruner.run(store(), kRetentionNow);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : PruneResult{};
  }
};

PrunePolicy policy(Millis retention, std::int64_t cap = std::int64_t{1} << 40) {
  PrunePolicy p;
  p.retention = retention;
  p.max_db_bytes = cap;
  return p;
}

TEST_F(RetentionTest, PrunesOldClosedHistoryOnlyOnceHqHasIt) {
  closed("a", days_ago(40));  // seq 1-3
  closed("b", days_ago(35));  // seq 4-6
  closed("c", days_ago(1));   // seq 7-9: young
  Incident d = incident("d", "lane-02", days_ago(50), days_ago(50));
  record(store(), d, "opened", days_ago(50));  // seq 10: open, however old
  set_acked(store(), 3);

  Pruner pruner(policy(30 * 24h));
  PruneResult r = prune(pruner);
  EXPECT_EQ(r.expired_incidents, 1);
  EXPECT_EQ(r.expired_events, 3);
  EXPECT_EQ(r.shed_incidents, 0);
  EXPECT_FALSE(r.more);
  EXPECT_FALSE(r.over_cap);
  EXPECT_EQ(uids(), (std::set<std::string>{"b", "c", "d"}));
  EXPECT_EQ(seqs(), (std::vector<std::int64_t>{4, 5, 6, 7, 8, 9, 10}));

  // b is old too, but seq 4-6 are above hq_acked_seq: unsynced, kept. Half
  // of it acknowledged is not enough either.
  set_acked(store(), 5);
  r = prune(pruner);
  EXPECT_EQ(r.expired_incidents, 0);
  EXPECT_EQ(r.expired_events, 0);
  EXPECT_EQ(uids(), (std::set<std::string>{"b", "c", "d"}));

  set_acked(store(), 10);
  r = prune(pruner);
  EXPECT_EQ(r.expired_incidents, 1);
  EXPECT_EQ(r.expired_events, 3);
  EXPECT_EQ(uids(), (std::set<std::string>{"c", "d"}));
  EXPECT_EQ(seqs(), (std::vector<std::int64_t>{7, 8, 9, 10}));
  expect_consistent();

  // Nothing left to do: a run changes nothing; seq keeps rising (AUTOINCREMENT).
  r = prune(pruner);
  EXPECT_EQ(r.expired_incidents + r.expired_events, 0);
  Incident e = incident("e", "lane-03", kRetentionNow, kRetentionNow);
  EXPECT_EQ(record(store(), e, "opened", kRetentionNow), 11);
}

TEST_F(RetentionTest, WholeIncidentsOnlyWhenTimelinesInterleave) {
  // Old closed "a" and still-open "b" write events turn about.
  Incident a = incident("a", "lane-01", days_ago(60), days_ago(60));
  Incident b = incident("b", "lane-02", days_ago(60), days_ago(60));
  record(store(), a, "opened", days_ago(60));  // 1
  record(store(), b, "opened", days_ago(60));  // 2
  a.state = IncidentState::resolved;
  a.t_restored = a.t_resolved = days_ago(59);
  record(store(), a, "resolved", days_ago(59));         // 3
  record(store(), b, "note", days_ago(58), "cli:ann");  // 4
  a.state = IncidentState::closed;
  a.t_closed = days_ago(58);
  record(store(), a, "closed", days_ago(58));           // 5
  record(store(), b, "note", days_ago(57), "cli:ann");  // 6
  record(store(), b, "note", days_ago(1), "cli:ann");   // 7: not yet at HQ
  set_acked(store(), 6);

  Pruner pruner(policy(30 * 24h));
  PruneResult r = prune(pruner);
  EXPECT_EQ(r.expired_incidents, 1);
  EXPECT_EQ(r.expired_events, 3);
  // Holes below hq_acked_seq where a's events were; above it, untouched.
  EXPECT_EQ(seqs(), (std::vector<std::int64_t>{2, 4, 6, 7}));
  EXPECT_EQ(uids(), (std::set<std::string>{"b"}));
  EXPECT_EQ(*store().queued(), 1);
  expect_consistent();
}

TEST_F(RetentionTest, OpenAndResolvedIncidentsAreNeverPruned) {
  Incident open = incident("open", "lane-01", days_ago(90), days_ago(90));
  record(store(), open, "opened", days_ago(90));
  Incident resolved = incident("resolved", "lane-02", days_ago(90), days_ago(90));
  record(store(), resolved, "opened", days_ago(90));
  resolved.state = IncidentState::resolved;
  resolved.t_restored = resolved.t_resolved = days_ago(89);
  record(store(), resolved, "resolved", days_ago(89));
  Incident acked = incident("acked", "lane-03", days_ago(90), days_ago(90));
  acked.state = IncidentState::acknowledged;
  acked.t_ack = days_ago(89);
  record(store(), acked, "acknowledged", days_ago(89), "hq:bob");
  set_acked(store(), 100);

  // No retention at all and a cap of one byte: still nothing goes.
  Pruner pruner(policy(0ms, 1));
  PruneResult r = prune(pruner);
  EXPECT_EQ(r.expired_incidents + r.shed_incidents, 0);
  EXPECT_EQ(uids(), (std::set<std::string>{"open", "resolved", "acked"}));
  EXPECT_EQ(seqs().size(), 4u);
  EXPECT_TRUE(r.over_cap);
  EXPECT_TRUE(r.stuck_over_cap());
}

TEST_F(RetentionTest, StillOverTheCapWhenEverythingIsUnsynced) {
  for (int n = 0; n < 20; ++n) closed("u" + std::to_string(n), days_ago(40 + n), 1000);
  set_acked(store(), 0);
  const auto before = seqs();

  Pruner pruner(policy(30 * 24h, 4096));
  PruneResult r = prune(pruner);
  EXPECT_EQ(r.expired_events + r.shed_events, 0);
  EXPECT_EQ(seqs(), before);
  EXPECT_EQ(r.cap_bytes, 4096);
  EXPECT_GT(r.used_bytes, 4096);
  EXPECT_GE(r.file_bytes, r.used_bytes);
  EXPECT_TRUE(r.over_cap);
  EXPECT_FALSE(r.more);
  EXPECT_TRUE(r.stuck_over_cap());
  EXPECT_TRUE(pruner.shedding());

  // The daemon keeps writing past the cap.
  Incident e = incident("e", "lane-03", kRetentionNow, kRetentionNow);
  EXPECT_EQ(record(store(), e, "opened", kRetentionNow), 61);
}

TEST_F(RetentionTest, CapShedsTheOldestSyncedHistoryFirst) {
  // 120 closed incidents, young (retention does not apply), 3 events of
  // ~2 KB each; closed one hour apart, "i000" the oldest.
  std::vector<std::string> order;
  for (int n = 0; n < 120; ++n) {
    std::string uid = fmt::format("i{:03}", n);
    closed(uid, kRetentionNow - std::chrono::hours(200 - n), 2000);
    order.push_back(uid);
  }
  // The oldest closed incident got one more event after its closing that
  // HQ has not acknowledged: it must stay whatever its age.
  Incident late = **store().incident("i000");
  record(store(), late, "note", kRetentionNow - 1h, "cli:ann");
  const std::int64_t last_acked = scalar("SELECT max(seq) FROM events") - 1;
  set_acked(store(), last_acked);

  const std::int64_t used = scalar("PRAGMA page_count") * scalar("PRAGMA page_size") -
                            scalar("PRAGMA freelist_count") * scalar("PRAGMA page_size");
  const std::int64_t cap = used / 2;
  Pruner pruner(policy(30 * 24h, cap));
  PruneResult r = prune(pruner);
  EXPECT_EQ(r.expired_incidents, 0);
  EXPECT_GT(r.shed_incidents, 40);
  EXPECT_LT(r.shed_incidents, 119);
  EXPECT_EQ(r.shed_events, r.shed_incidents * 3);
  EXPECT_LE(r.used_bytes, static_cast<std::int64_t>(cap * 0.9));
  EXPECT_FALSE(r.over_cap);
  EXPECT_FALSE(r.more);
  EXPECT_FALSE(pruner.shedding());

  // What is left: i000 (unsynced) and the newest ones, a suffix in t_closed order.
  std::set<std::string> expected{"i000"};
  for (std::size_t n = 1 + static_cast<std::size_t>(r.shed_incidents); n < order.size(); ++n) {
    expected.insert(order[n]);
  }
  EXPECT_EQ(uids(), expected);
  EXPECT_EQ(seqs().back(), last_acked + 1);
  expect_consistent();

  // Under the low-water mark now: the next run sheds nothing.
  r = prune(pruner);
  EXPECT_EQ(r.shed_incidents, 0);
}

TEST_F(RetentionTest, EveryRunIsBounded) {
  for (int n = 0; n < 50; ++n) closed(fmt::format("i{:02}", n), days_ago(100 - n));
  set_acked(store(), 150);
  PrunePolicy p = policy(30 * 24h);
  p.chunk_rows = 7;
  p.max_rows_per_run = 20;
  Pruner pruner(p);

  // 50 incidents × (3 events + 1 row) = 200 rows: 10 runs of 20.
  int runs = 0;
  std::int64_t incidents = 0, events = 0;
  for (; runs < 30; ++runs) {
    PruneResult r = prune(pruner);
    EXPECT_LE(r.expired_incidents + r.expired_events, 20);
    incidents += r.expired_incidents;
    events += r.expired_events;
    if (runs == 0) {
      // Oldest first: exactly i00…i04, nothing half-deleted left behind.
      EXPECT_EQ(r.expired_incidents, 5);
      EXPECT_EQ(r.expired_events, 15);
      EXPECT_TRUE(r.more);
      EXPECT_EQ(uids().count("i04"), 0u);
      EXPECT_EQ(uids().count("i05"), 1u);
      expect_consistent();
    }
    if (!r.more) break;
  }
  EXPECT_EQ(incidents, 50);
  EXPECT_EQ(events, 150);
  EXPECT_LE(runs, 11);
  EXPECT_TRUE(uids().empty());
}

TEST_F(RetentionTest, AnIncidentBiggerThanAChunkGoesOverSeveralRuns) {
  // A long flapping timeline: 30 events.
  Incident big = incident("big", "lane-01", days_ago(90), days_ago(90));
  record(store(), big, "opened", days_ago(90));
  for (int n = 0; n < 28; ++n) record(store(), big, "flapping_started", days_ago(89));
  big.state = IncidentState::closed;
  big.t_closed = days_ago(88);
  record(store(), big, "closed", days_ago(88));
  Incident open = incident("open", "lane-02", days_ago(1), days_ago(1));
  record(store(), open, "opened", days_ago(1));
  set_acked(store(), 31);
  PrunePolicy p = policy(30 * 24h);
  p.chunk_rows = 7;
  p.max_rows_per_run = 10;
  Pruner pruner(p);

  // Its oldest events first, 10 a run; its row goes with its last event.
  for (int run = 0; run < 3; ++run) {
    PruneResult r = prune(pruner);
    EXPECT_EQ(r.expired_events, 10) << run;
    EXPECT_EQ(r.expired_incidents, 0) << run;
    EXPECT_TRUE(r.more);
    EXPECT_EQ(uids().count("big"), 1u);
  }
  EXPECT_EQ(seqs(), (std::vector<std::int64_t>{31}));
  PruneResult r = prune(pruner);
  EXPECT_EQ(r.expired_incidents, 1);
  EXPECT_EQ(r.expired_events, 0);
  EXPECT_FALSE(r.more);
  EXPECT_EQ(uids(), (std::set<std::string>{"open"}));
  expect_consistent();
}

TEST_F(RetentionTest, IncrementalVacuumGivesPagesBackWhenTheFileIsOverTheCap) {
  {
    // What the store's migration is asked to do: auto_vacuum=INCREMENTAL
    // before the first table (and before journal_mode=WAL) of a new file.
    auto db = db::Database::open(path, db::Database::Mode::read_write);
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->exec("PRAGMA auto_vacuum=INCREMENTAL; CREATE TABLE x(a); DROP TABLE x;"));
  }
  for (int n = 0; n < 60; ++n) closed(fmt::format("i{:02}", n), days_ago(100 - n), 3000);
  set_acked(store(), 1000);
  ASSERT_EQ(scalar("PRAGMA auto_vacuum"), 2);
  const std::int64_t pages_before = scalar("PRAGMA page_count");
  const std::int64_t page_size = scalar("PRAGMA page_size");

  // Retention takes 40 of them; the file is still as big as before, over
  // the cap set just below it, so free pages go back.
  PrunePolicy p = policy(60 * 24h, (pages_before - 2) * page_size);
  Pruner pruner(p);
  PruneResult r = prune(pruner);
  EXPECT_EQ(r.expired_incidents, 40);
  EXPECT_GT(r.pages_vacuumed, 0);
  EXPECT_LT(scalar("PRAGMA page_count"), pages_before);
  EXPECT_EQ(scalar("PRAGMA freelist_count"), 0);
  EXPECT_FALSE(r.over_cap);
  expect_consistent();
}

TEST_F(RetentionTest, NoVacuumWithoutIncrementalAutoVacuum) {
  // A database made before new files got auto_vacuum=INCREMENTAL.
  ASSERT_TRUE(static_cast<bool>(store().database().exec("PRAGMA auto_vacuum=NONE")));
  ASSERT_TRUE(static_cast<bool>(store().database().exec("VACUUM")));
  for (int n = 0; n < 30; ++n) closed(fmt::format("i{:02}", n), days_ago(100 - n), 3000);
  set_acked(store(), 1000);
  ASSERT_EQ(scalar("PRAGMA auto_vacuum"), 0);
  const std::int64_t pages_before = scalar("PRAGMA page_count");
  Pruner pruner(policy(30 * 24h, 4096));
  PruneResult r = prune(pruner);
  EXPECT_EQ(r.expired_incidents, 30);
  EXPECT_EQ(r.pages_vacuumed, 0);
  // The pages stay in the file, free for the next events.
  EXPECT_EQ(scalar("PRAGMA page_count"), pages_before);
  EXPECT_GT(scalar("PRAGMA freelist_count"), 0);
  // The empty tables alone are over a 4 KB cap.
  EXPECT_TRUE(r.stuck_over_cap());
  expect_consistent();
}

}  // namespace
}  // namespace storewatch::agent
