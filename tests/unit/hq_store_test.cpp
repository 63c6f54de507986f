#include "hq/hq_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "db/errors.h"
#include "db/sqlite.h"
#include "tests/support/hq_backend.h"
#include "tests/support/support.h"
#ifdef STOREWATCH_HAVE_POSTGRESQL
#include "db/postgres.h"
#include "hq/pg_store.h"
#endif

namespace storewatch::hq {
namespace {

using db::Database;
using nlohmann::json;
using testing::HasSubstr;
using testing::Not;
using namespace std::chrono_literals;

const WallTime kNow{std::chrono::milliseconds(1'764'195'483'123)};

json snapshot(const std::string& uid, const std::string& state, const std::string& t_detect) {
  return json{{"uid", uid},
              {"probe", "lane-01-pos"},
              {"state", state},
              {"severity", "high"},
              {"priority", "P2"},
              {"t_fault", "2025-11-26T22:00:00.000Z"},
              {"t_detect", t_detect},
              {"t_ack", nullptr},
              {"t_restored", nullptr},
              {"t_resolved", state == "resolved" ? json("2025-11-26T22:30:00.000Z") : json()},
              {"t_closed", nullptr},
              {"self_healed", false},
              {"suppressed_by", nullptr},
              {"flapping", false},
              {"in_maintenance", false},
              {"reopen_count", 0},
              {"summary", "lane 01 POS does not answer"}};
}

wire::Event event(std::int64_t seq, const std::string& incident, const std::string& state,
                  const std::string& t_detect = "2025-11-26T22:00:45.000Z") {
  wire::Event e;
  e.seq = seq;
  e.uid = "ev-" + std::to_string(seq);
  e.incident = incident;
  e.type = state == "open" ? "opened" : state;
  e.at = "2025-11-26T22:00:45.000Z";
  e.actor = "agent";
  e.body = json{{"incident_state", snapshot(incident, state, t_detect)}};
  return e;
}

wire::Batch batch(const std::string& store, std::vector<wire::Event> events) {
  return wire::Batch{store, std::move(events)};
}

class HqStoreTest : public testing::Test {
 protected:
  HqStore open_rw() {
    auto s = HqStore::open(path_, Database::Mode::read_write);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return std::move(s).value();
  }

  std::int64_t count(const std::string& sql) {
    auto db = Database::open(path_, Database::Mode::read_only);
    EXPECT_TRUE(db.ok());
    auto stmt = db->prepare(sql);
    EXPECT_TRUE(stmt.ok());
    auto row = stmt->step();
    EXPECT_TRUE(row.ok() && *row);
    return stmt->int64(0);
  }

  test::TempDir dir_;
  std::filesystem::path path_ = dir_ / "var/hq/hq.db";
};

/// The contract of hq/ingest_store.h and hq/hq_database.h, on each backend:
/// a SQLite file, and a fresh database of a throwaway PostgreSQL cluster.
class HqBackendTest : public testing::TestWithParam<test::Backend> {
 protected:
  void SetUp() override {
    db_ = std::make_unique<test::HqTestDatabase>(GetParam(), dir_ / "var/hq/hq.db");
    if (!db_->skip_reason().empty()) GTEST_SKIP() << db_->skip_reason();
    db_->configure(config_);
  }

  /// A new connection (a worker) to the test's database, kept open until
  /// the test ends.
  HqDatabase& open_rw() { return open(HqOpen::read_write); }

  HqDatabase& open(HqOpen mode) {
    auto s = open_hq_database(config_, mode, "hq-test");
    if (!s.ok()) {
      ADD_FAILURE() << s.error().message;
      throw std::runtime_error(s.error().message);
    }
    open_.push_back(std::move(*s));
    return *open_.back();
  }

  std::int64_t count(const std::string& sql) { return db_->count(sql); }

  test::TempDir dir_;
  config::HqConfig config_;
  std::unique_ptr<test::HqTestDatabase> db_;
  std::vector<std::unique_ptr<HqDatabase>> open_;
};

INSTANTIATE_TEST_SUITE_P(Backends, HqBackendTest, testing::ValuesIn(test::hq_backends()),
                         test::backend_name);

TEST_F(HqStoreTest, CreatesTheDirectoryAndUsesWal) {
  HqStore store = open_rw();
  EXPECT_TRUE(std::filesystem::exists(path_));
  auto db = Database::open(path_, Database::Mode::read_only);
  ASSERT_TRUE(db.ok());
  auto mode = db->prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->step());
  EXPECT_EQ(mode->text(0), "wal");
}

TEST_P(HqBackendTest, StoresABatchOnceAndCountsDuplicates) {
  HqDatabase& store = open_rw();
  auto b = batch("store-0042", {event(1, "inc-1", "open"), event(2, "inc-1", "remediating")});

  auto first = store.ingest(b, kNow);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->inserted, 2);
  EXPECT_EQ(first->duplicates, 0);
  EXPECT_EQ(first->acked_seq, 2);
  EXPECT_TRUE(first->acked_changed);

  auto again = store.ingest(b, kNow + 1s);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->inserted, 0);
  EXPECT_EQ(again->duplicates, 2);
  EXPECT_EQ(again->conflicts, 0);
  EXPECT_EQ(again->acked_seq, 2);
  EXPECT_FALSE(again->acked_changed);

  EXPECT_EQ(count("SELECT count(*) FROM events"), 2);
  EXPECT_EQ(count("SELECT count(*) FROM incidents"), 1);
}

TEST_F(HqStoreTest, KeepsTheFullEventJson) {
  HqStore store = open_rw();
  wire::Event e = event(1, "inc-1", "open");
  e.body["attempt"] = 2;
  ASSERT_TRUE(store.ingest(batch("s1", {e}), kNow).ok());

  auto db = Database::open(path_, Database::Mode::read_only);
  ASSERT_TRUE(db.ok());
  auto stmt = db->prepare("SELECT body FROM events WHERE store = 's1' AND seq = 1");
  ASSERT_TRUE(stmt.ok());
  ASSERT_TRUE(*stmt->step());
  EXPECT_EQ(json::parse(stmt->text(0)), e.to_json());
}

TEST_P(HqBackendTest, AcksOnlyTheContiguousSeqs) {
  HqDatabase& store = open_rw();
  auto r = store.ingest(
      batch("s1", {event(1, "a", "open"), event(2, "b", "open"), event(4, "c", "open")}), kNow);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->acked_seq, 2);
  EXPECT_TRUE(r->acked_changed);

  r = store.ingest(batch("s1", {event(6, "d", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acked_seq, 2);
  EXPECT_FALSE(r->acked_changed);

  r = store.ingest(batch("s1", {event(3, "e", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acked_seq, 4);
  EXPECT_TRUE(r->acked_changed);
}

TEST_P(HqBackendTest, AGapAtTheStartAcksNothing) {
  HqDatabase& store = open_rw();
  auto r = store.ingest(batch("s1", {event(2, "a", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acked_seq, 0);
  EXPECT_FALSE(r->acked_changed);
}

TEST_P(HqBackendTest, StoresAreIndependent) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "open"), event(2, "b", "open")}), kNow).ok());
  auto r = store.ingest(batch("s2", {event(1, "a", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inserted, 1);
  EXPECT_EQ(r->acked_seq, 1);

  auto acks = store.acked_seqs();
  ASSERT_TRUE(acks.ok());
  EXPECT_EQ(*acks, (std::vector<std::pair<std::string, std::int64_t>>{{"s1", 2}, {"s2", 1}}));
}

TEST_P(HqBackendTest, WorkersSharingTheFileComputeContiguityTogether) {
  // Two workers of one shared subscription each get half of a store's events.
  HqDatabase& a = open_rw();
  HqDatabase& b = open_rw();
  auto r = a.ingest(batch("s1", {event(2, "x", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acked_seq, 0);
  r = b.ingest(batch("s1", {event(1, "x", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acked_seq, 2);
  r = a.ingest(batch("s1", {event(2, "x", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->duplicates, 1);
  EXPECT_EQ(r->acked_seq, 2);
}

TEST_P(HqBackendTest, AGroupOfBatchesIsOneCommitWithOneResultPerStore) {
  HqDatabase& store = open_rw();
  const std::vector<wire::Batch> group{
      batch("s1", {event(3, "a", "open")}),
      batch("s2", {event(1, "b", "open")}),
      batch("s1", {event(1, "a", "open"), event(2, "a", "remediating")}),
      batch("s1", {event(2, "a", "remediating")}),
  };
  auto r = store.ingest(std::span<const wire::Batch>(group), kNow);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].store, "s1");
  EXPECT_EQ((*r)[0].acked_seq, 3);
  EXPECT_TRUE((*r)[0].acked_changed);
  EXPECT_EQ((*r)[0].inserted, 3);
  EXPECT_EQ((*r)[0].duplicates, 1);
  EXPECT_FALSE((*r)[0].gap);
  EXPECT_EQ((*r)[1].store, "s2");
  EXPECT_EQ((*r)[1].acked_seq, 1);
  EXPECT_EQ(count("SELECT count(*) FROM events"), 4);
}

TEST_P(HqBackendTest, AGroupThatFailsStoresNothingOfIt) {
  HqDatabase& store = open_rw();
  // Makes the insert of seq 99 fail, as a full disk or an I/O error would.
  if (GetParam() == test::Backend::sqlite) {
    db_->exec(
        "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.seq = 99 "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END");
  } else {
    db_->exec(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF NEW.seq = 99 "
        "THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END$$; "
        "CREATE TRIGGER boom BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION boom()");
  }
  const std::vector<wire::Batch> group{batch("s1", {event(1, "a", "open")}),
                                       batch("s2", {event(99, "b", "open")})};
  auto r = store.ingest(std::span<const wire::Batch>(group), kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("boom"));
  EXPECT_EQ(count("SELECT count(*) FROM events"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM stores"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM incidents"), 0);
  // The connection is usable afterwards.
  auto again = store.ingest(batch("s1", {event(1, "a", "open")}), kNow);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->acked_seq, 1);
}

TEST_P(HqBackendTest, TracksAGapAndItsAgeUntilItFills) {
  HqDatabase& store = open_rw();
  auto r = store.ingest(batch("s1", {event(1, "a", "open"), event(2, "a", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->gap);
  r = store.ingest(batch("s1", {event(5, "a", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->gap);
  EXPECT_EQ(r->acked_seq, 2);
  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["gap_from"], 3);
  EXPECT_EQ((*stores)[0]["resyncs"], 0);

  // Part of the gap arrives: the same first missing seq keeps its age.
  ASSERT_TRUE(store.ingest(batch("s1", {event(4, "a", "open")}), kNow + 10s).ok());
  auto due = store.claim_resyncs(kNow + 29s, 30s);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());
  due = store.claim_resyncs(kNow + 30s, 30s);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].store, "s1");
  EXPECT_EQ((*due)[0].from_seq, 3);

  // Once per interval, and a second worker does not claim it too.
  HqDatabase& other = open_rw();
  due = other.claim_resyncs(kNow + 31s, 30s);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());
  due = other.claim_resyncs(kNow + 60s, 30s);
  ASSERT_TRUE(due.ok());
  EXPECT_EQ(due->size(), 1u);
  due = store.claim_resyncs(kNow + 60s, 30s);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());

  r = store.ingest(batch("s1", {event(3, "a", "open")}), kNow + 61s);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->gap);
  EXPECT_EQ(r->acked_seq, 5);
  stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_TRUE((*stores)[0]["gap_from"].is_null());
  EXPECT_EQ((*stores)[0]["resyncs"], 2);
  due = store.claim_resyncs(kNow + 1h, 30s);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());
}

TEST_P(HqBackendTest, ANewGapStartsItsOwnClock) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "open"), event(3, "a", "open")}), kNow).ok());
  // 2 arrives, 4 is missing now: a different gap, 20 s younger.
  auto r = store.ingest(batch("s1", {event(2, "a", "open"), event(5, "a", "open")}), kNow + 20s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acked_seq, 3);
  EXPECT_TRUE(r->gap);
  auto due = store.claim_resyncs(kNow + 30s, 30s);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());
  due = store.claim_resyncs(kNow + 50s, 30s);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].from_seq, 4);
}

TEST_P(HqBackendTest, AckedSeqReadsWhatAnyWorkerCommitted) {
  HqDatabase& a = open_rw();
  HqDatabase& b = open_rw();
  ASSERT_TRUE(a.ingest(batch("s1", {event(1, "x", "open"), event(2, "x", "open")}), kNow).ok());
  auto seq = b.acked_seq("s1");
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 2);
  seq = b.acked_seq("nobody");
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 0);
}

TEST_P(HqBackendTest, RecordsWhichWorkerStoredEachEvent) {
  HqDatabase& a = open_rw();
  HqDatabase& b = open_rw();
  a.set_worker("hq-1");
  b.set_worker("hq-2");
  ASSERT_TRUE(a.ingest(batch("s1", {event(1, "x", "open")}), kNow).ok());
  ASSERT_TRUE(b.ingest(batch("s1", {event(2, "x", "open"), event(1, "x", "open")}), kNow).ok());
  EXPECT_EQ(count("SELECT count(*) FROM events WHERE worker = 'hq-1'"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM events WHERE worker = 'hq-2'"), 1);
}

TEST_P(HqBackendTest, AReusedSeqIsAConflictNotAnUpdate) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "open")}), kNow).ok());
  wire::Event other = event(1, "b", "open");
  other.uid = "ev-from-a-new-database";
  auto r = store.ingest(batch("s1", {other}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->duplicates, 1);
  EXPECT_EQ(r->conflicts, 1);
  auto incidents = store.incidents_json(std::nullopt, false);
  ASSERT_TRUE(incidents.ok());
  ASSERT_EQ(incidents->size(), 1u);
  EXPECT_EQ((*incidents)[0]["uid"], "a");
}

TEST_P(HqBackendTest, AnOlderEventDoesNotOverwriteANewerState) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(store.ingest(batch("s1", {event(5, "inc-1", "resolved")}), kNow).ok());
  ASSERT_TRUE(store.ingest(batch("s1", {event(4, "inc-1", "open")}), kNow).ok());

  auto incidents = store.incidents_json(std::nullopt, false);
  ASSERT_TRUE(incidents.ok()) << incidents.error().message;
  ASSERT_EQ(incidents->size(), 1u);
  EXPECT_EQ((*incidents)[0]["state"], "resolved");

  ASSERT_TRUE(store.ingest(batch("s1", {event(6, "inc-1", "closed")}), kNow).ok());
  incidents = store.incidents_json(std::nullopt, false);
  ASSERT_TRUE(incidents.ok());
  EXPECT_EQ((*incidents)[0]["state"], "closed");
}

TEST_P(HqBackendTest, IncidentsAreTheSnapshotsWithTheStoreAdded) {
  HqDatabase& store = open_rw();
  wire::Event e = event(1, "inc-1", "escalated");
  ASSERT_TRUE(store.ingest(batch("s1", {e}), kNow).ok());

  auto incidents = store.incidents_json(std::nullopt, false);
  ASSERT_TRUE(incidents.ok());
  ASSERT_EQ(incidents->size(), 1u);
  json expected = e.body["incident_state"];
  expected["store"] = "s1";
  EXPECT_EQ((*incidents)[0], expected);
}

TEST_P(HqBackendTest, FiltersOpenIncidentsAndStores) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(
      store
          .ingest(batch("s1", {event(1, "a", "open", "2025-11-26T22:00:03.000Z"),
                               event(2, "b", "resolved", "2025-11-26T22:00:01.000Z"),
                               event(3, "c", "closed", "2025-11-26T22:00:02.000Z"),
                               event(4, "d", "acknowledged", "2025-11-26T23:00:00.000+01:00")}),
                  kNow)
          .ok());
  ASSERT_TRUE(store.ingest(batch("s2", {event(1, "e", "remediating")}), kNow).ok());

  auto uids = [](const json& incidents) {
    std::vector<std::string> out;
    for (const json& i : incidents)
      out.push_back(i["store"].get<std::string>() + "/" + i["uid"].get<std::string>());
    return out;
  };
  auto all = store.incidents_json(std::nullopt, false);
  ASSERT_TRUE(all.ok());
  // By t_detect: d is 22:00:00Z written with an offset.
  EXPECT_THAT(uids(*all), testing::ElementsAre("s1/d", "s1/b", "s1/c", "s1/a", "s2/e"));

  auto open = store.incidents_json(std::nullopt, true);
  ASSERT_TRUE(open.ok());
  EXPECT_THAT(uids(*open), testing::ElementsAre("s1/d", "s1/a", "s2/e"));

  auto s1_open = store.incidents_json("s1", true);
  ASSERT_TRUE(s1_open.ok());
  EXPECT_THAT(uids(*s1_open), testing::ElementsAre("s1/d", "s1/a"));

  auto s2 = store.incidents_json("s2", false);
  ASSERT_TRUE(s2.ok());
  EXPECT_THAT(uids(*s2), testing::ElementsAre("s2/e"));

  auto none = store.incidents_json("nowhere", false);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->is_array());
  EXPECT_TRUE(none->empty());
}

TEST_P(HqBackendTest, StoresJsonHasTheContractFields) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(
      store.ingest(batch("s2", {event(1, "a", "open"), event(2, "b", "resolved")}), kNow).ok());
  wire::StoreStatus st{"s1", true, 7, "0.1.0", {{"critical", 1}}, 3, "2025-11-26T22:18:00.000Z"};
  ASSERT_TRUE(store.record_status(st, kNow).ok());

  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok()) << stores.error().message;
  ASSERT_EQ(stores->size(), 2u);
  const json& s1 = (*stores)[0];
  const json& s2 = (*stores)[1];

  EXPECT_EQ(s1["store"], "s1");
  EXPECT_EQ(s1["online"], true);
  EXPECT_EQ(s1["acked_seq"], 0);
  EXPECT_EQ(s1["open_incidents"], 0);
  EXPECT_EQ(s1["last_seen"], "2025-11-26T22:18:03.123Z");
  EXPECT_EQ(s1["session"], 7);
  EXPECT_EQ(s1["version"], "0.1.0");
  EXPECT_EQ(s1["queued"], 3);

  EXPECT_EQ(s2["store"], "s2");
  EXPECT_EQ(s2["online"], false);
  EXPECT_EQ(s2["acked_seq"], 2);
  EXPECT_EQ(s2["open_incidents"], 1);
  EXPECT_EQ(s2["last_seen"], "2025-11-26T22:18:03.123Z");
  EXPECT_TRUE(s2["session"].is_null());
  EXPECT_TRUE(s2["version"].is_null());
}

TEST_P(HqBackendTest, AStatusFromAnOlderSessionIsIgnored) {
  HqDatabase& store = open_rw();
  wire::StoreStatus birth{"s1", true, 8, "0.1.0", {}, 0, "2025-11-26T22:18:00.000Z"};
  wire::StoreStatus old_will{"s1", false, 7, "0.1.0", {}, 0, "2025-11-26T21:00:00.000Z"};
  ASSERT_TRUE(store.record_status(birth, kNow).ok());
  ASSERT_TRUE(store.record_status(old_will, kNow + 1s).ok());

  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["online"], true);
  EXPECT_EQ((*stores)[0]["session"], 8);

  // The will of the same session is news: the store went offline.
  wire::StoreStatus will = birth;
  will.online = false;
  ASSERT_TRUE(store.record_status(will, kNow + 2s).ok());
  stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["online"], false);
  EXPECT_EQ((*stores)[0]["last_seen"], "2025-11-26T22:18:05.123Z");

  // A second worker records the same birth late: the will of its session
  // already came, so the store stays offline.
  ASSERT_TRUE(store.record_status(birth, kNow + 3s).ok());
  stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["online"], false);

  // Its next session's birth brings it back.
  wire::StoreStatus next = birth;
  next.session = 9;
  ASSERT_TRUE(store.record_status(next, kNow + 4s).ok());
  stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["online"], true);
  EXPECT_EQ((*stores)[0]["session"], 9);
}

TEST_P(HqBackendTest, LastSeenNeverGoesBackwards) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "open")}), kNow).ok());
  wire::StoreStatus retained{"s1", true, 1, "0.1.0", {}, 0, "2025-11-20T00:00:00.000Z"};
  ASSERT_TRUE(store.record_status(retained, kNow - 24h).ok());
  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["last_seen"], "2025-11-26T22:18:03.123Z");
  EXPECT_EQ((*stores)[0]["online"], true);
}

// --- what HQ refuses to believe (docs/HQ.md, "Refused messages") ---------------

TEST_P(HqBackendTest, AnEventFarAboveTheAckedSeqIsRefusedAndCountedNotStored) {
  HqDatabase& store = open_rw();
  store.set_limits(IngestLimits{.max_seq_jump = 100, .max_session_jump = 1000});
  ASSERT_TRUE(
      store.ingest(batch("s1", {event(1, "a", "open"), event(2, "a", "resolved")}), kNow).ok());

  // 2 + 100 is the furthest an event may be; 2^63-1 is far beyond.
  auto r = store.ingest(batch("s1", {event(std::numeric_limits<std::int64_t>::max(), "x", "open"),
                                     event(103, "y", "open"), event(102, "z", "open")}),
                        kNow + 1s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->refused, 2);
  EXPECT_EQ(r->refused_seq, std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(r->inserted, 1);
  EXPECT_EQ(r->acked_seq, 2);
  EXPECT_TRUE(r->gap) << "102 is within reach: stored, with 3..101 missing";
  EXPECT_EQ(count("SELECT count(*) FROM events WHERE store = 's1' AND seq > 102"), 0);

  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["refused"], (json{{"seq_jump", 2}, {"conflict", 0}, {"session_jump", 0}}));
  EXPECT_EQ((*stores)[0]["refused_at"], "2025-11-26T22:18:04.123Z");

  // The store's own events go on: 3..102 close the gap.
  std::vector<wire::Event> rest;
  for (std::int64_t seq = 3; seq <= 101; ++seq) rest.push_back(event(seq, "b", "open"));
  r = store.ingest(batch("s1", rest), kNow + 2s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acked_seq, 102);
  EXPECT_FALSE(r->gap);
  EXPECT_EQ(r->refused, 0);
}

TEST_P(HqBackendTest, AStoreIsNotCreatedByWhatWasRefused) {
  HqDatabase& store = open_rw();
  auto r = store.ingest(batch("ghost", {event(std::int64_t{1} << 62, "a", "open")}), kNow);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->refused, 1);
  EXPECT_FALSE(r->known);
  EXPECT_FALSE(r->new_store);
  EXPECT_EQ(count("SELECT count(*) FROM stores"), 0);

  // The first event stored creates it, once.
  r = store.ingest(batch("s1", {event(1, "a", "open")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->new_store);
  r = store.ingest(batch("s1", {event(2, "a", "resolved")}), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->new_store);
}

TEST_P(HqBackendTest, OnlyWhatWasStoredOrResentMovesLastSeen) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "open")}), kNow).ok());
  // Refused, and a seq HQ holds for another event: not news of the store.
  ASSERT_TRUE(store.ingest(batch("s1", {event(500'000, "a", "open")}), kNow + 1h).ok());
  wire::Event forged = event(1, "a", "open");
  forged.uid = "forged";
  auto r = store.ingest(batch("s1", {forged}), kNow + 2h);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->conflicts, 1);
  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["last_seen"], "2025-11-26T22:18:03.123Z");
  EXPECT_EQ((*stores)[0]["refused"]["conflict"], 1);
  EXPECT_EQ((*stores)[0]["refused"]["seq_jump"], 1);
  // A true re-send is: the store is there.
  ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "open")}), kNow + 3h).ok());
  stores = store.stores_json();
  EXPECT_EQ((*stores)[0]["last_seen"], "2025-11-27T01:18:03.123Z");
}

TEST_P(HqBackendTest, ASessionThatJumpsIsRefusedAndTheStoresOwnStatusGoesOn) {
  HqDatabase& store = open_rw();
  store.set_limits(IngestLimits{.max_seq_jump = 100, .max_session_jump = 1000});
  wire::StoreStatus birth{"s1", true, 7, "0.1.0", {}, 0, "2025-11-26T22:18:00.000Z"};
  auto r = store.record_status(birth, kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, StatusRecorded::Outcome::recorded);
  EXPECT_TRUE(r->new_store);

  // A will with a session far ahead would pin the store offline for good.
  wire::StoreStatus forged = birth;
  forged.online = false;
  forged.session = std::numeric_limits<std::int64_t>::max();
  r = store.record_status(forged, kNow + 1s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, StatusRecorded::Outcome::session_jump);
  EXPECT_EQ(r->session_before, 7);
  forged.session = 7 + 1001;
  EXPECT_EQ(store.record_status(forged, kNow + 2s)->outcome, StatusRecorded::Outcome::session_jump);

  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[0]["online"], true);
  EXPECT_EQ((*stores)[0]["session"], 7);
  EXPECT_EQ((*stores)[0]["refused"]["session_jump"], 2);
  EXPECT_EQ((*stores)[0]["last_seen"], "2025-11-26T22:18:03.123Z");

  // Within the limit it is taken: the store reconnected 1000 times.
  wire::StoreStatus next = birth;
  next.session = 7 + 1000;
  r = store.record_status(next, kNow + 3s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, StatusRecorded::Outcome::recorded);
  EXPECT_FALSE(r->new_store);
  wire::StoreStatus will = next;
  will.online = false;
  ASSERT_TRUE(store.record_status(will, kNow + 4s).ok());
  stores = store.stores_json();
  EXPECT_EQ((*stores)[0]["online"], false);
  EXPECT_EQ((*stores)[0]["session"], 1007);
}

TEST_P(HqBackendTest, AFirstStatusWithAHugeSessionCreatesNothing) {
  HqDatabase& store = open_rw();
  wire::StoreStatus forged{"ghost", false, std::int64_t{1} << 62, "0.1.0", {}, 0, "x"};
  auto r = store.record_status(forged, kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, StatusRecorded::Outcome::session_jump);
  EXPECT_FALSE(r->new_store);
  EXPECT_EQ(count("SELECT count(*) FROM stores"), 0);
  // The real store's first status, whatever came before.
  wire::StoreStatus birth{"ghost", true, 3, "0.1.0", {}, 0, "2025-11-26T22:18:00.000Z"};
  EXPECT_EQ(store.record_status(birth, kNow)->outcome, StatusRecorded::Outcome::recorded);
}

TEST_P(HqBackendTest, ReadOnlyReadsWhatWasWritten) {
  {
    HqDatabase& store = open_rw();
    ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "open")}), kNow).ok());
  }
  HqDatabase& ro = open(HqOpen::read_only);
  auto stores = ro.stores_json();
  ASSERT_TRUE(stores.ok()) << stores.error().message;
  EXPECT_EQ(stores->size(), 1u);
  auto incidents = ro.incidents_json(std::nullopt, true);
  ASSERT_TRUE(incidents.ok());
  EXPECT_EQ(incidents->size(), 1u);
  EXPECT_FALSE(ro.ingest(batch("s1", {event(2, "a", "resolved")}), kNow).ok());
  EXPECT_EQ(count("SELECT count(*) FROM events"), 1);
}

TEST_P(HqBackendTest, TwoWorkersRacingOnOneStoreStoreEachEventOnceAndAcksNeverGoBack) {
  // A shared subscription hands a store's consecutive batches to either
  // worker: here each has its own connection and thread, and they race.
  constexpr std::int64_t kEvents = 300;
  HqDatabase& a = open_rw();
  HqDatabase& b = open_rw();
  a.set_worker("hq-a");
  b.set_worker("hq-b");
  auto work = [](HqDatabase& db, std::int64_t first, std::vector<std::int64_t>& acks,
                 std::string& error) {
    // Odd or even seqs, in pairs sent out of order, each pair twice.
    for (std::int64_t seq = first; seq + 2 <= 300; seq += 4) {
      std::vector<wire::Event> pair{event(seq + 2, "x", "open"), event(seq, "x", "open")};
      for (int again = 0; again < 2; ++again) {
        auto r = db.ingest(batch("s1", pair), kNow);
        if (!r) {
          error = r.error().message;
          return;
        }
        acks.push_back(r->acked_seq);
      }
    }
  };
  std::vector<std::int64_t> acks_a, acks_b;
  std::string error_a, error_b;
  std::thread ta(work, std::ref(a), 1, std::ref(acks_a), std::ref(error_a));
  std::thread tb(work, std::ref(b), 2, std::ref(acks_b), std::ref(error_b));
  ta.join();
  tb.join();
  ASSERT_EQ(error_a, "");
  ASSERT_EQ(error_b, "");
  EXPECT_EQ(count("SELECT count(*) FROM events"), kEvents);
  EXPECT_EQ(count("SELECT count(DISTINCT seq) FROM events"), kEvents);
  EXPECT_EQ(*a.acked_seq("s1"), kEvents);
  EXPECT_EQ(*b.acked_seq("s1"), kEvents);
  EXPECT_TRUE(std::is_sorted(acks_a.begin(), acks_a.end()));
  EXPECT_TRUE(std::is_sorted(acks_b.begin(), acks_b.end()));
  auto stores = a.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_TRUE((*stores)[0]["gap_from"].is_null());
  EXPECT_EQ((*stores)[0]["refused"]["conflict"], 0);
}

TEST_P(HqBackendTest, BothBackendsGiveTheSameViews) {
  // The same traffic as every other test here would send, in one go; the
  // views must not tell the backends apart (compared with the SQLite
  // answers written out below).
  HqDatabase& store = open_rw();
  ASSERT_TRUE(store
                  .ingest(batch("s-b", {event(1, "inc-z", "open", "2025-11-26T22:00:01.000Z"),
                                        event(2, "inc-a", "open", "2025-11-26T22:00:01.000Z"),
                                        event(4, "inc-z", "resolved", "2025-11-26T22:00:01.000Z")}),
                          kNow)
                  .ok());
  ASSERT_TRUE(store.ingest(batch("S-a", {event(1, "inc-B", "acknowledged")}), kNow + 1s).ok());
  ASSERT_TRUE(store
                  .record_status(
                      wire::StoreStatus{
                          "s-b", true, 3, "0.2.0", {{"high", 1}}, 2, "2025-11-26T22:18:00.000Z"},
                      kNow + 2s)
                  .ok());
  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ(stores->dump(),
            R"([{"acked_seq":1,"gap_from":null,"last_seen":"2025-11-26T22:18:04.123Z",)"
            R"("online":false,"open_incidents":1,"queued":null,"refused":{"conflict":0,)"
            R"("seq_jump":0,"session_jump":0},"refused_at":null,"resyncs":0,"session":null,)"
            R"("store":"S-a","version":null},{"acked_seq":2,"gap_from":3,)"
            R"("last_seen":"2025-11-26T22:18:05.123Z","online":true,"open_incidents":1,)"
            R"("queued":2,"refused":{"conflict":0,"seq_jump":0,"session_jump":0},)"
            R"("refused_at":null,"resyncs":0,"session":3,"store":"s-b","version":"0.2.0"}])");
  auto incidents = store.incidents_json(std::nullopt, false);
  ASSERT_TRUE(incidents.ok());
  std::vector<std::string> order;
  for (const json& i : *incidents) {
    order.push_back(i["store"].get<std::string>() + "/" + i["uid"].get<std::string>() + "/" +
                    i["state"].get<std::string>());
  }
  EXPECT_THAT(order, testing::ElementsAre("s-b/inc-a/open", "s-b/inc-z/resolved",
                                          "S-a/inc-B/acknowledged"));
  auto report = store.report_incidents(kNow - 48h, kNow + 1h);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->size(), 3u);
  EXPECT_EQ((*report)[0].store, "S-a");
}

TEST_F(HqStoreTest, ReadOnlyNeedsAnExistingDatabase) {
  auto ro = HqStore::open(path_, Database::Mode::read_only);
  ASSERT_FALSE(ro.ok());
  EXPECT_THAT(ro.error().message, HasSubstr("no HQ database at " + path_.string()));
  EXPECT_THAT(ro.error().message, HasSubstr("storewatch hq run"));
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(HqStoreTest, RefusesANewerSchema) {
  {
    auto db = Database::open(dir_ / "hq.db", Database::Mode::read_write);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->exec("PRAGMA user_version = 99").ok());
  }
  for (auto mode : {Database::Mode::read_write, Database::Mode::read_only}) {
    auto s = HqStore::open(dir_ / "hq.db", mode);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.error().message, HasSubstr("schema version 99"));
    EXPECT_THAT(s.error().message, HasSubstr("newer"));
  }
}

TEST_F(HqStoreTest, RefusesACorruptFile) {
  std::string garbage(8192, '\0');
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 131 + 7);
  test::write_file(path_, garbage);
  for (auto mode : {Database::Mode::read_write, Database::Mode::read_only}) {
    auto s = HqStore::open(path_, mode);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.error().message, HasSubstr(path_.string()));
    EXPECT_THAT(s.error().message, HasSubstr("corrupt"));
  }
  EXPECT_EQ(test::read_file(path_), garbage);
}

TEST_F(HqStoreTest, SaysWhenTheDirectoryCannotBeCreated) {
  test::write_file(dir_ / "file", "not a directory");
  auto s = HqStore::open(dir_ / "file/hq.db", Database::Mode::read_write);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.error().message, HasSubstr("cannot create the directory"));
  EXPECT_THAT(s.error().message, HasSubstr((dir_ / "file").string()));
}

#ifdef STOREWATCH_HAVE_POSTGRESQL

// --- PostgreSQL only: what a server that is not a file brings -------------------

class PgHqStoreTest : public testing::Test {
 protected:
  void SetUp() override {
    if (auto why = test::PgCluster::unavailable(); !why.empty()) GTEST_SKIP() << why;
    cluster_ = std::make_unique<test::PgCluster>();
    config_.postgresql = cluster_->create_database("hq");
  }

  Result<std::unique_ptr<HqDatabase>> open(HqOpen mode = HqOpen::read_write) {
    return open_hq_database(config_, mode, "hq-test");
  }

  std::unique_ptr<test::PgCluster> cluster_;
  config::HqConfig config_;
  test::TempDir dir_;
};

TEST_F(PgHqStoreTest, RefusesADatabaseThatIsNotHqs) {
  cluster_->sql("hq", "CREATE TABLE customers (id int)");
  for (HqOpen mode : {HqOpen::read_write, HqOpen::read_only}) {
    auto s = open(mode);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.error().message, HasSubstr("is not storewatch HQ's"));
    EXPECT_THAT(s.error().message, HasSubstr("customers"));
    EXPECT_EQ(s.error().message.find('\n'), std::string::npos);
  }
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "1");
}

TEST_F(PgHqStoreTest, RefusesANewerSchemaAndAViewOfAnEmptyOne) {
  auto ro = open(HqOpen::read_only);
  ASSERT_FALSE(ro.ok());
  EXPECT_THAT(ro.error().message, HasSubstr("has `storewatch hq run` ever run"));
  ASSERT_TRUE(open().ok());
  cluster_->sql("hq", "INSERT INTO storewatch_hq_schema (version) VALUES (99)");
  for (HqOpen mode : {HqOpen::read_write, HqOpen::read_only}) {
    auto s = open(mode);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.error().message, HasSubstr("schema version 99, newer than this storewatch"));
  }
}

TEST_F(PgHqStoreTest, MigratesOnceWhenWorkersStartTogether) {
  std::vector<std::string> errors(4);
  std::vector<std::thread> workers;
  for (std::size_t i = 0; i < errors.size(); ++i) {
    workers.emplace_back([this, i, &errors] {
      auto s = open();
      if (!s) errors[i] = s.error().message;
    });
  }
  for (auto& w : workers) w.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  // Each version once, in order.
  std::string versions;
  for (int v = 1; v <= PgHqStore::schema_version(); ++v) {
    versions += (v > 1 ? "," : "") + std::to_string(v);
  }
  EXPECT_EQ(cluster_->sql("hq",
                          "SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                          "storewatch_hq_schema"),
            versions);
}

TEST_F(PgHqStoreTest, ACommitCutByARestartAcknowledgesNothingAndTheNextReconnects) {
  auto s = open();
  ASSERT_TRUE(s.ok()) << s.error().message;
  HqDatabase& store = **s;
  ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "open")}), kNow).ok());

  cluster_->restart();
  auto cut = store.ingest(batch("s1", {event(2, "a", "resolved")}), kNow);
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.error().code, db::kUnreachable) << cut.error().message;
  // Nothing of it was stored: the store sends it again, and it is taken.
  auto again = store.ingest(batch("s1", {event(2, "a", "resolved")}), kNow);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->inserted, 1);
  EXPECT_EQ(again->acked_seq, 2);

  // Down for a while: each call says so at once, none waits; once the
  // server is back a call gets through within the backoff.
  cluster_->stop("fast");
  auto down = store.ingest(batch("s1", {event(3, "a", "open")}), kNow);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().code, db::kUnreachable);
  auto first = store.acked_seq("s1");
  ASSERT_FALSE(first.ok());
  EXPECT_THAT(first.error().message, HasSubstr("cannot connect to PostgreSQL"));
  EXPECT_EQ(first.error().message.find('\n'), std::string::npos) << first.error().message;
  auto soon = store.acked_seq("s1");
  ASSERT_FALSE(soon.ok());
  EXPECT_THAT(soon.error().message, HasSubstr("out of reach; trying again in"));
  cluster_->start();
  std::optional<Ingested> back;
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto r = store.ingest(batch("s1", {event(3, "a", "open")}), kNow);
        if (r) back = *r;
        return r.ok();
      },
      20s));
  EXPECT_EQ(back->acked_seq, 3);
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events"), "3");
}

TEST_F(PgHqStoreTest, ARefusedPasswordIsOneLineAndNotRetried) {
  cluster_->sql("hq", "ALTER ROLE storewatch PASSWORD 'right-password'");
  config_.postgresql = cluster_->tcp_uri("hq");
  test::write_file(dir_ / "wrong", "wrong-password\n");
  config_.database_password_file = dir_ / "wrong";
  auto s = open();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.error().message, HasSubstr("password authentication failed"));
  EXPECT_NE(s.error().code, db::kUnreachable) << "waiting would not help";
  EXPECT_EQ(s.error().message.find('\n'), std::string::npos) << s.error().message;
  EXPECT_THAT(s.error().message, Not(HasSubstr("wrong-password")));

  config_.database_password_file.clear();
  s = open();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.error().message, HasSubstr("database_password_file"));

  test::write_file(dir_ / "right", "right-password\n");
  config_.database_password_file = dir_ / "right";
  s = open();
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_THAT((*s)->name(), Not(HasSubstr("right-password")));
}

TEST_F(PgHqStoreTest, AServerThatIsNotThereIsUnreachable) {
  cluster_->stop("fast");
  auto s = open();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, db::kUnreachable);
  EXPECT_THAT(s.error().message, HasSubstr("cannot connect to PostgreSQL"));
}

TEST_F(PgHqStoreTest, EventsGoIntoTheMonthTheyWereReceived) {
  auto s = open();
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_TRUE((*s)->ingest(batch("s1", {event(1, "a", "open")}), kNow).ok());
  ASSERT_TRUE((*s)->ingest(batch("s1", {event(2, "a", "resolved")}), kNow + 24h * 40).ok());
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events_202511"), "1");
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events_202601"), "1");
  // A re-send a month later is still a duplicate, though its month is another.
  auto r = (*s)->ingest(batch("s1", {event(1, "a", "open")}), kNow + 24h * 40);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->duplicates, 1);
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events"), "2");
}

#endif  // STOREWATCH_HAVE_POSTGRESQL

// --- Retention (docs/HQ.md "Retention"), on each backend -----------------------

constexpr Millis kHqRetention = 24h * 400;

/// Prunes until nothing more is due; the sum of what the calls removed.
Pruned prune_everything(HqDatabase& store, WallTime now, Millis retention = kHqRetention) {
  Pruned all;
  for (int calls = 0; calls < 100; ++calls) {
    auto r = store.prune(now, retention);
    if (!r.ok()) {
      ADD_FAILURE() << r.error().message;
      return all;
    }
    all.events += r->events;
    all.incidents += r->incidents;
    all.partitions.insert(all.partitions.end(), r->partitions.begin(), r->partitions.end());
    if (!r->more) return all;
  }
  ADD_FAILURE() << "prune() never ran out of work";
  return all;
}

TEST_P(HqBackendTest, PrunesOldEventsAndTheClosedIncidentsTheyEnded) {
  HqDatabase& store = open_rw();
  const WallTime old = kNow - 24h * 500;
  // Received long ago: a, opened and closed; b, opened and never closed;
  // d, closed long ago but then reopened (its newest event is recent).
  ASSERT_TRUE(store
                  .ingest(batch("s1", {event(1, "a", "open"), event(2, "a", "closed"),
                                       event(3, "b", "open"), event(4, "d", "open"),
                                       event(5, "d", "closed")}),
                          old)
                  .ok());
  ASSERT_TRUE(
      store.ingest(batch("s2", {event(1, "e", "open"), event(2, "e", "closed")}), old).ok());
  // Received now: c, closed; d reopened.
  ASSERT_TRUE(store
                  .ingest(batch("s1", {event(6, "c", "open"), event(7, "c", "closed"),
                                       event(8, "d", "reopened")}),
                          kNow)
                  .ok());

  const Pruned pruned = prune_everything(store, kNow);
  EXPECT_EQ(pruned.events, 7);
  EXPECT_EQ(pruned.incidents, 2);  // a and e
  if (GetParam() == test::Backend::postgresql) {
    // Its month, and the next one ingest made ready at the time.
    EXPECT_THAT(pruned.partitions, testing::ElementsAre("events_202407", "events_202408"));
  }
  EXPECT_EQ(count("SELECT count(*) FROM events"), 3);
  EXPECT_EQ(count("SELECT count(*) FROM events WHERE store = 's1' AND seq >= 6"), 3);
  auto incidents = store.incidents_json(std::nullopt, false);
  ASSERT_TRUE(incidents.ok());
  std::vector<std::string> left;
  for (const json& i : *incidents) left.push_back(i["uid"].get<std::string>());
  EXPECT_THAT(left, testing::UnorderedElementsAre("b", "c", "d"));
  // The stores stay, with their acks.
  EXPECT_EQ(*store.acked_seq("s1"), 8);
  EXPECT_EQ(*store.acked_seq("s2"), 2);
  auto stores = store.stores_json();
  ASSERT_TRUE(stores.ok());
  ASSERT_EQ(stores->size(), 2u);
  EXPECT_TRUE((*stores)[1]["gap_from"].is_null());

  // Nothing more is due: a second prune removes nothing.
  EXPECT_TRUE(prune_everything(store, kNow).empty());
}

TEST_P(HqBackendTest, ARePrunedEventSentAgainIsADuplicateNotStoredAgain) {
  HqDatabase& store = open_rw();
  const WallTime old = kNow - 24h * 500;
  ASSERT_TRUE(store
                  .ingest(batch("s1", {event(1, "a", "open"), event(2, "a", "closed"),
                                       event(3, "b", "open")}),
                          old)
                  .ok());
  ASSERT_EQ(prune_everything(store, kNow).events, 3);
  ASSERT_EQ(count("SELECT count(*) FROM events"), 0);

  // The store lost its ack and sends everything again, with one new event.
  auto r = store.ingest(batch("s1", {event(1, "a", "open"), event(2, "a", "closed"),
                                     event(3, "b", "open"), event(4, "b", "resolved")}),
                        kNow);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->inserted, 1);
  EXPECT_EQ(r->duplicates, 3);
  EXPECT_EQ(r->conflicts, 0);
  EXPECT_EQ(r->acked_seq, 4);
  EXPECT_EQ(count("SELECT count(*) FROM events"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM events WHERE seq = 4"), 1);
  // Incident a, pruned, is not brought back by its own old events.
  auto incidents = store.incidents_json(std::nullopt, false);
  ASSERT_TRUE(incidents.ok());
  ASSERT_EQ(incidents->size(), 1u);
  EXPECT_EQ((*incidents)[0]["uid"], "b");
  EXPECT_EQ((*incidents)[0]["state"], "resolved");

  // And another worker that starts now sees them as duplicates too.
  HqDatabase& other = open_rw();
  r = other.ingest(batch("s1", {event(2, "a", "closed")}), kNow + 1s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inserted, 0);
  EXPECT_EQ(r->duplicates, 1);
  EXPECT_EQ(count("SELECT count(*) FROM events"), 1);
}

TEST_P(HqBackendTest, PruningKeepsWhatIsYoungerThanTheRetention) {
  HqDatabase& store = open_rw();
  ASSERT_TRUE(
      store.ingest(batch("s1", {event(1, "a", "open"), event(2, "a", "closed")}), kNow - 24h * 30)
          .ok());
  EXPECT_TRUE(prune_everything(store, kNow).empty());
  EXPECT_EQ(count("SELECT count(*) FROM events"), 2);
  EXPECT_EQ(count("SELECT count(*) FROM incidents"), 1);
  // With a retention of a week they go (on PostgreSQL, once their month is
  // over by a week).
  const Pruned pruned = prune_everything(store, kNow + 24h * 7, 24h * 7);
  EXPECT_EQ(pruned.events, 2);
  EXPECT_EQ(pruned.incidents, 1);
  EXPECT_EQ(count("SELECT count(*) FROM incidents"), 0);
}

TEST_P(HqBackendTest, APruneOfManyMonthsComesBackForMore) {
  HqDatabase& store = open_rw();
  for (int m = 0; m < 3; ++m) {
    ASSERT_TRUE(store
                    .ingest(batch("s1", {event(m + 1, "a" + std::to_string(m), "closed")}),
                            kNow - 24h * (450 + 31 * m))
                    .ok());
  }
  const Pruned pruned = prune_everything(store, kNow);
  EXPECT_EQ(pruned.events, 3);
  EXPECT_EQ(pruned.incidents, 3);
  if (GetParam() == test::Backend::postgresql) {
    // A month per call, oldest first.
    EXPECT_EQ(pruned.partitions.size(), 3u);
    EXPECT_TRUE(std::is_sorted(pruned.partitions.begin(), pruned.partitions.end()));
  }
  EXPECT_EQ(count("SELECT count(*) FROM events"), 0);
  EXPECT_EQ(describe(pruned).find("removed 3 events and 3 closed incidents"), 0u)
      << describe(pruned);
}

TEST_F(HqStoreTest, PrunesInBoundedChunks) {
  HqStore store = open_rw();
  store.set_limits(IngestLimits{1'000'000, 1'000'000});
  // More than one call's worth (4 chunks of 5,000): the first call says
  // there is more.
  constexpr int kEvents = 20'123;
  std::vector<wire::Event> events;
  events.reserve(kEvents);
  for (int i = 1; i <= kEvents; ++i) events.push_back(event(i, "a", "open"));
  ASSERT_TRUE(store.ingest(batch("s1", std::move(events)), kNow - 24h * 500).ok());
  auto first = store.prune(kNow, kHqRetention);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->events, 20'000);
  EXPECT_TRUE(first->more);
  auto second = store.prune(kNow, kHqRetention);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->events, 123);
  EXPECT_FALSE(second->more);
  EXPECT_EQ(count("SELECT count(*) FROM events"), 0);
}

#ifdef STOREWATCH_HAVE_POSTGRESQL

TEST_F(PgHqStoreTest, PruningDropsWholeMonthPartitionsAndNeverDeletesRows) {
  auto s = open();
  ASSERT_TRUE(s.ok()) << s.error().message;
  HqDatabase& store = **s;
  // 2024-07 and 2024-10 (the cutoff, 400 days before kNow, is 2024-10-22).
  const WallTime july = WallTime(std::chrono::milliseconds(1'720'000'000'000));
  const WallTime october = WallTime(std::chrono::milliseconds(1'728'000'000'000));
  ASSERT_TRUE(store.ingest(batch("s1", {event(1, "a", "closed")}), july).ok());
  ASSERT_TRUE(store.ingest(batch("s1", {event(2, "b", "closed")}), october).ok());
  cluster_->sql("hq", "CREATE TABLE deletes (n int); INSERT INTO deletes VALUES (0)");
  cluster_->sql("hq",
                "CREATE FUNCTION count_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "UPDATE deletes SET n = n + 1; RETURN OLD; END $$");
  cluster_->sql("hq",
                "CREATE TRIGGER count_delete BEFORE DELETE ON events_202410 FOR EACH ROW "
                "EXECUTE FUNCTION count_delete()");
  // A month per call: July's (its one event), then August's (empty; made
  // ready by the ingest in July).
  auto pruned = store.prune(kNow, kHqRetention);
  ASSERT_TRUE(pruned.ok()) << pruned.error().message;
  EXPECT_THAT(pruned->partitions, testing::ElementsAre("events_202407"));
  EXPECT_EQ(pruned->events, 1);
  EXPECT_EQ(pruned->incidents, 1);
  EXPECT_TRUE(pruned->more);
  pruned = store.prune(kNow, kHqRetention);
  ASSERT_TRUE(pruned.ok()) << pruned.error().message;
  EXPECT_THAT(pruned->partitions, testing::ElementsAre("events_202408"));
  EXPECT_EQ(pruned->events, 0);
  EXPECT_FALSE(pruned->more);
  // October ends after the cutoff: it stays whole, its event older than the
  // retention included, until its month is over.
  EXPECT_EQ(cluster_->sql("hq", "SELECT to_regclass('events_202407') IS NULL"), "t");
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events_202410"), "1");
  EXPECT_EQ(cluster_->sql("hq", "SELECT n FROM deletes"), "0");
  pruned = store.prune(kNow + 24h * 15, kHqRetention);
  ASSERT_TRUE(pruned.ok());
  EXPECT_THAT(pruned->partitions, testing::ElementsAre("events_202410"));
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events"), "0");
  // This month's partition is never due, whatever the retention.
  ASSERT_TRUE(store.ingest(batch("s1", {event(3, "c", "closed")}), kNow).ok());
  const Pruned rest = prune_everything(store, kNow, 1h);
  EXPECT_THAT(rest.partitions, testing::ElementsAre("events_202411"));
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events_202511"), "1");
  EXPECT_EQ(cluster_->sql("hq", "SELECT to_regclass('events_202512') IS NOT NULL"), "t");
}

// COPY's text format: backslash, tab, newline and carriage return escaped,
// every other byte as it is — checked against the rule a character at a
// time, on texts where the escapes come first, last, doubled and alone.
TEST(PgCopyEscape, EscapesExactlyBackslashTabNewlineAndReturn) {
  auto by_rule = [](std::string_view text) {
    std::string out;
    for (char c : text) {
      if (c == '\\')
        out += "\\\\";
      else if (c == '\t')
        out += "\\t";
      else if (c == '\n')
        out += "\\n";
      else if (c == '\r')
        out += "\\r";
      else
        out += c;
    }
    return out;
  };
  const std::vector<std::string> texts = {"",
                                          "plain",
                                          "\\",
                                          "\t\n\r",
                                          "a\\b",
                                          "\\start",
                                          "end\\",
                                          "two\t\tin a row",
                                          "{\"summary\":\"C:\\\\POS \\\"lane\\\"\\n\"}",
                                          std::string("nul\0byte", 8),
                                          "caf\xc3\xa9\r\n"};
  for (const auto& t : texts) {
    std::string out = "prefix|";
    db::pg::copy_escape(out, t);
    EXPECT_EQ(out, "prefix|" + by_rule(t)) << t;
  }
}

#endif  // STOREWATCH_HAVE_POSTGRESQL

}  // namespace
}  // namespace storewatch::hq
