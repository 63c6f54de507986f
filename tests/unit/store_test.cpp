#include "agent/store.h"

#include <boost/asio/io_context.hpp>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "agent/store_writer.h"
#include "tests/support/support.h"

namespace storewatch::agent {
namespace {

using namespace std::chrono_literals;

WallTime at(int s) {
  return WallTime(std::chrono::milliseconds(1'764'195'483'000 + s * 1000));
}

Incident incident(const std::string& uid, const std::string& probe, IncidentState state) {
  Incident i;
  i.uid = uid;
  i.probe = probe;
  i.dedup_key = "s:" + probe + ":down";
  i.condition = "down";
  i.severity = config::Severity::high;
  i.priority = "P2";
  i.state = state;
  i.t_fault = at(0);
  i.t_detect = at(3);
  i.summary = probe + " is down";
  return i;
}

IncidentChange change(Incident i, const std::string& type, int s) {
  return IncidentChange{std::move(i), IncidentEvent{new_uid(at(s)), type, at(s), "agent", {}}};
}

ProbeStateRow probe_row(const std::string& probe) {
  ProbeStateRow r;
  r.probe = probe;
  return r;
}

class StoreTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::filesystem::path path = dir / "storewatch.db";
  Store store = std::move(*Store::open(path, Store::Mode::read_write));
};

TEST_F(StoreTest, CommitsIncidentAndEventTogetherWithRisingSeq) {
  auto seqs = store.commit({change(incident("u1", "lane-01", IncidentState::open), "opened", 3)});
  ASSERT_TRUE(seqs) << seqs.error().message;
  EXPECT_EQ(seqs->at(0), 1);
  Incident resolved = incident("u1", "lane-01", IncidentState::resolved);
  resolved.t_restored = at(10);
  resolved.t_resolved = at(11);
  seqs = store.commit({change(resolved, "resolved", 11), probe_row("lane-01")});
  ASSERT_TRUE(seqs);
  EXPECT_EQ(seqs->at(0), 2);
  EXPECT_EQ(seqs->at(1), 0);

  auto all = store.incidents(false);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->at(0).state, IncidentState::resolved);
  EXPECT_EQ(all->at(0).t_restored, at(10));
  EXPECT_TRUE(store.incidents(true)->empty());

  auto events = store.events_after(0, 10);
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ(events->at(0).type, "opened");
  EXPECT_EQ(events->at(1).type, "resolved");
  auto wire = to_wire(events->at(1));
  ASSERT_TRUE(wire);
  // The stored body travels as its text; what HQ reads of it:
  auto sent = nlohmann::json::parse(wire->text());
  EXPECT_EQ(sent["incident_state"]["state"], "resolved");
  EXPECT_EQ(sent["incident_state"]["uid"], "u1");
  EXPECT_EQ(sent["type"], "resolved");
  EXPECT_EQ(sent["seq"], events->at(1).seq);
  EXPECT_EQ(store.events_after(1, 10)->size(), 1u);
  EXPECT_EQ(*store.queued(), 2);
}

TEST_F(StoreTest, AFailedChangeRollsBackTheWholeBatch) {
  ASSERT_TRUE(store.commit({change(incident("u1", "lane-01", IncidentState::open), "opened", 1)}));
  // A second unresolved incident with the same dedup key breaks the
  // one-unresolved-per-key rule: neither it nor its neighbour lands.
  auto r = store.commit({change(incident("u2", "lane-02", IncidentState::open), "opened", 2),
                         change(incident("u3", "lane-01", IncidentState::open), "opened", 2)});
  EXPECT_FALSE(r);
  EXPECT_EQ(store.incidents(false)->size(), 1u);
  EXPECT_EQ(*store.max_seq(), 1);
}

TEST_F(StoreTest, SeqIsNeverReusedAfterARollback) {
  ASSERT_TRUE(store.commit({change(incident("u1", "a", IncidentState::open), "opened", 1)}));
  ASSERT_FALSE(store.commit({change(incident("u2", "b", IncidentState::open), "opened", 2),
                             change(incident("u3", "a", IncidentState::open), "opened", 2)}));
  auto seqs = store.commit({change(incident("u4", "c", IncidentState::open), "opened", 3)});
  ASSERT_TRUE(seqs);
  EXPECT_EQ(seqs->at(0), 2);  // contiguous for HQ: a rolled-back insert leaves no gap
}

TEST_F(StoreTest, AckOnlyRises) {
  ASSERT_TRUE(store.commit({SyncValue{kHqAckedSeq, 5, true}}));
  ASSERT_TRUE(store.commit({SyncValue{kHqAckedSeq, 3, true}}));
  EXPECT_EQ(*store.sync_value(kHqAckedSeq), 5);
  EXPECT_EQ(*store.sync_value("never-set"), 0);
}

TEST_F(StoreTest, ProbeStateRoundTrips) {
  ProbeStateRow row;
  row.probe = "printer-01";
  row.level = CheckLevel::soft_fail;
  row.failures = 2;
  row.t_fault = at(4);
  row.last_check = at(5);
  row.last_status = "fail";
  row.latency_ms = 12.5;
  row.message = "refused";
  ASSERT_TRUE(store.commit({row}));
  auto rows = store.probe_states();
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ(rows->at(0).level, CheckLevel::soft_fail);
  EXPECT_EQ(rows->at(0).failures, 2);
  EXPECT_EQ(rows->at(0).t_fault, at(4));
  EXPECT_EQ(rows->at(0).latency_ms, 12.5);
}

// Incident events are durable when committed (DESIGN §5): the writer's
// connection runs WAL with synchronous=FULL.
TEST_F(StoreTest, TheWritersConnectionIsWalWithSynchronousFull) {
  auto sync = store.database().prepare("PRAGMA synchronous");
  ASSERT_TRUE(sync) << sync.error().message;
  ASSERT_TRUE(*sync->step());
  EXPECT_EQ(sync->int64(0), 2);  // FULL
  auto mode = store.database().prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode) << mode.error().message;
  ASSERT_TRUE(*mode->step());
  EXPECT_EQ(mode->text(0), "wal");
}

// What a restart of the daemon resumes from: every field of probe_state and
// the ad-hoc silences, read back by a new connection to the file.
TEST_F(StoreTest, ProbeStateAndSilencesSurviveReopeningTheFile) {
  ProbeStateRow row;
  row.probe = "lane-03-pos";
  row.level = CheckLevel::hard_fail;
  row.failures = 7;
  row.successes = 1;
  row.t_fault = at(4);
  row.t_first_ok = at(9);
  row.last_check = at(10);
  row.last_status = "ok";
  row.latency_ms = 3.25;
  row.message = "connected";
  row.flap_history = "01101101010";
  row.flapping = true;
  row.attempts = {at(5), at(7)};
  row.attempt_failures = 2;
  SilenceRow silence;
  silence.uid = "sil-1";
  silence.match = "lane-*";
  silence.starts_at = at(0);
  silence.ends_at = at(7200);
  silence.reason = "lane refit";
  silence.created_by = "cli:tech";
  ASSERT_TRUE(store.commit({row, silence}));
  store = std::move(*Store::open(path, Store::Mode::read_write));

  auto rows = store.probe_states();
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows->size(), 1u);
  const ProbeStateRow& r = rows->at(0);
  EXPECT_EQ(r.probe, "lane-03-pos");
  EXPECT_EQ(r.level, CheckLevel::hard_fail);
  EXPECT_EQ(r.failures, 7);
  EXPECT_EQ(r.successes, 1);
  EXPECT_EQ(r.t_fault, at(4));
  EXPECT_EQ(r.t_first_ok, at(9));
  EXPECT_EQ(r.last_check, at(10));
  EXPECT_EQ(r.last_status, "ok");
  EXPECT_EQ(r.latency_ms, 3.25);
  EXPECT_EQ(r.message, "connected");
  EXPECT_EQ(r.flap_history, "01101101010");
  EXPECT_TRUE(r.flapping);
  EXPECT_EQ(r.attempts, (std::vector<WallTime>{at(5), at(7)}));
  EXPECT_EQ(r.attempt_failures, 2);

  auto active = store.silences(at(60));
  ASSERT_TRUE(active) << active.error().message;
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ(active->at(0).uid, "sil-1");
  EXPECT_EQ(active->at(0).match, "lane-*");
  EXPECT_EQ(active->at(0).ends_at, at(7200));
  EXPECT_EQ(active->at(0).reason, "lane refit");
  EXPECT_EQ(active->at(0).created_by, "cli:tech");
  EXPECT_TRUE(store.silences(at(7201))->empty());
}

TEST_F(StoreTest, FindsAnIncidentByUniquePrefix) {
  ASSERT_TRUE(store.commit({change(incident("abc-1", "a", IncidentState::open), "opened", 1),
                            change(incident("abd-2", "b", IncidentState::open), "opened", 1)}));
  EXPECT_EQ((*store.incident("abc"))->uid, "abc-1");
  EXPECT_FALSE(store.incident("ab"));  // ambiguous
  EXPECT_FALSE(store.incident("zzz")->has_value());
  // A whole uid that is also the start of another one is that incident.
  ASSERT_TRUE(store.commit({change(incident("abc-10", "c", IncidentState::open), "opened", 1)}));
  EXPECT_EQ((*store.incident("abc-1"))->uid, "abc-1");
  EXPECT_FALSE(store.incident("abc"));  // now ambiguous
  EXPECT_EQ((*store.incident("abc-10"))->uid, "abc-10");
}

TEST_F(StoreTest, OpenBySeverityCountsUnresolvedOnly) {
  ASSERT_TRUE(store.commit({change(incident("u1", "a", IncidentState::open), "opened", 1),
                            change(incident("u2", "b", IncidentState::resolved), "resolved", 1)}));
  auto open = store.open_by_severity();
  ASSERT_TRUE(open);
  EXPECT_EQ(open->at("high"), 1);
  EXPECT_EQ(open->at("critical"), 0);
}

TEST(StoreOpen, RefusesACorruptFile) {
  test::TempDir dir;
  test::write_file(dir / "storewatch.db", std::string(8192, 'x'));
  auto s = Store::open(dir / "storewatch.db", Store::Mode::read_write);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("corrupt or not a storewatch database"), std::string::npos)
      << s.error().message;
}

TEST(StoreOpen, RefusesADatabaseFromANewerRelease) {
  test::TempDir dir;
  {
    auto s = Store::open(dir / "storewatch.db", Store::Mode::read_write);
    ASSERT_TRUE(s);
  }
  {
    auto db = db::Database::open(dir / "storewatch.db", db::Database::Mode::read_write);
    ASSERT_TRUE(db->exec("PRAGMA user_version = 99"));
  }
  for (auto mode : {Store::Mode::read_write, Store::Mode::read_only}) {
    auto s = Store::open(dir / "storewatch.db", mode);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find("newer"), std::string::npos) << s.error().message;
  }
}

TEST_F(StoreTest, EventBodyCarriesItsFieldsAndTheIncidentSnapshot) {
  Incident i = incident("u1", "lane-01", IncidentState::open);
  i.summary = "bad bytes \xff\xfe and \"quotes\"\n";
  i.suppressed_by = "u0";
  IncidentEvent ev{new_uid(at(3)), "opened", at(3), "agent",
                   nlohmann::json{{"message", "refused"}, {"incident_state", "stale"}}};
  ASSERT_TRUE(store.commit({IncidentChange{i, ev}}));
  auto body_of = [&](std::int64_t seq) {
    auto st = store.database().prepare("SELECT body FROM events WHERE seq = ?1");
    st->bind(1, seq);
    EXPECT_TRUE(st->step().value_or(false));
    return nlohmann::json::parse(st->text(0));
  };
  const nlohmann::json body = body_of(1);
  EXPECT_EQ(body["message"], "refused");
  // The snapshot replaces whatever the extra fields called incident_state.
  EXPECT_EQ(body["incident_state"], i.to_json());
  EXPECT_EQ(body["incident_state"]["summary"],
            "bad bytes \xEF\xBF\xBD\xEF\xBF\xBD and \"quotes\"\n");
}

TEST_F(StoreTest, PreRenderedRowsStoreWhatTheChangeWould) {
  // StoreWriter::submit renders on the caller's thread (IncidentRows); a
  // change committed directly renders in Store::commit. Both must agree.
  Incident a = incident("ua", "lane-01", IncidentState::escalated);
  a.suppressed_by = "u0";
  a.t_ack = at(5);
  a.reopen_count = 2;
  a.flapping = true;
  Incident b = a;
  b.uid = "ub";
  b.dedup_key = "s:lane-02:down";
  const nlohmann::json extra{{"message", "refused"}, {"attempt", 3}};
  ASSERT_TRUE(
      store.commit({IncidentChange{a, IncidentEvent{"ea", "escalated", at(6), "ops", extra}}}));
  ASSERT_TRUE(store.commit({IncidentRows::of(
      IncidentChange{b, IncidentEvent{"eb", "escalated", at(6), "ops", extra}})}));
  auto stored_a = store.incident("ua");
  auto stored_b = store.incident("ub");
  ASSERT_TRUE(stored_a && *stored_a && stored_b && *stored_b);
  nlohmann::json ja = (*stored_a)->to_json();
  nlohmann::json jb = (*stored_b)->to_json();
  EXPECT_EQ(ja, a.to_json());
  ja.erase("uid");
  ja.erase("dedup_key");
  jb.erase("uid");
  jb.erase("dedup_key");
  EXPECT_EQ(ja, jb);
  auto st = store.database().prepare(
      "SELECT type, at, actor, json_remove(body, '$.incident_state.uid', "
      "'$.incident_state.dedup_key') FROM events ORDER BY seq");
  ASSERT_TRUE(st);
  std::vector<std::string> rows;
  while (st->step().value_or(false)) {
    rows.push_back(st->text(0) + "|" + st->text(1) + "|" + st->text(2) + "|" + st->text(3));
  }
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], rows[1]);
  EXPECT_NE(rows[0].find("\"attempt\":3"), std::string::npos) << rows[0];
}

/// Every row `sql` returns, as text.
std::vector<std::string> rows_of(Store& store, const std::string& sql) {
  auto st = store.database().prepare(sql);
  EXPECT_TRUE(st);
  std::vector<std::string> out;
  if (!st) return out;
  while (st->step().value_or(false)) {
    std::string row;
    for (int c = 0; c < st->column_count(); ++c) {
      row += (st->is_null(c) ? std::string("NULL") : st->text(c)) + "|";
    }
    out.push_back(std::move(row));
  }
  return out;
}

TEST_F(StoreTest, ARunOfRenderedRowsStoresWhatOneChangeAtATimeWould) {
  // The writer commits runs of incident changes in multi-row statements
  // (Store::kRowsPerStatement rows each). Whatever the grouping, the file
  // must hold what committing the changes one by one holds: same incidents
  // (an incident changed twice within one statement ends as its last
  // change), same events with the same seqs in order, same notices, and the
  // probe states written among them.
  std::vector<IncidentChange> changes;
  const auto notice = [](int k, const std::string& kind, bool only_if_opening_notified) {
    return sync::NoticeRow{"ops", kind, fmt::format("{{\"k\":{}}}", k), only_if_opening_notified};
  };
  for (int k = 0; k < 45; ++k) {
    // The first 25 open and resolve at once; the next 20 open again on their
    // keys. Every 4th opening notifies; every 2nd resolution notifies if its
    // opening did.
    Incident i =
        incident(fmt::format("u{:03}", k), fmt::format("lane-{:02}", k % 25), IncidentState::open);
    changes.push_back(change(i, "opened", k));
    if (k % 4 == 0) changes.back().notices.push_back(notice(k, "opened", false));
    if (k < 25) {
      i.state = IncidentState::resolved;
      i.t_resolved = at(k);
      changes.push_back(change(i, "resolved", k));
      if (k % 2 == 0) changes.back().notices.push_back(notice(k, "resolved", true));
    }
  }
  ASSERT_GT(changes.size(), 2 * Store::kRowsPerStatement + 1);
  std::vector<Change> run;
  for (std::size_t n = 0; n < changes.size(); ++n) {
    run.push_back(IncidentRows::of(IncidentChange(changes[n])));
    if (n % 7 == 3) run.push_back(probe_row(fmt::format("lane-{:02}", n % 5)));
  }
  auto seqs = store.commit(run);
  ASSERT_TRUE(seqs) << seqs.error().message;

  test::TempDir other_dir;
  Store one_by_one = std::move(*Store::open(other_dir / "b.db", Store::Mode::read_write));
  std::vector<std::int64_t> expected;
  for (const Change& c : run) {
    auto s = one_by_one.commit(
        {std::holds_alternative<IncidentRows>(c) ? Change(std::get<IncidentRows>(c)) : c});
    ASSERT_TRUE(s) << s.error().message;
    expected.push_back(s->at(0));
  }
  EXPECT_EQ(*seqs, expected);
  for (const char* sql :
       {"SELECT * FROM incidents ORDER BY id", "SELECT * FROM events ORDER BY seq",
        "SELECT * FROM probe_state ORDER BY probe",
        // Not the *_ms columns: they are the time of queueing.
        "SELECT id, channel, incident_uid, event_uid, kind, body, state, created_at "
        "FROM notifications ORDER BY id"}) {
    EXPECT_EQ(rows_of(store, sql), rows_of(one_by_one, sql)) << sql;
  }
  EXPECT_EQ(rows_of(store, "SELECT id FROM notifications").size(), 7u + 7u + 5u);
  EXPECT_EQ(store.incidents(true)->size(), 20u);
  EXPECT_EQ(*store.max_seq(), static_cast<std::int64_t>(changes.size()));
}

TEST_F(StoreTest, AnUpdateKeepsTheDetectionTime) {
  // t_detect is written when the incident opens; later changes leave it.
  ASSERT_TRUE(store.commit({change(incident("u1", "lane-01", IncidentState::open), "opened", 3)}));
  Incident later = incident("u1", "lane-01", IncidentState::resolved);
  later.t_detect = at(99);
  later.t_resolved = at(20);
  ASSERT_TRUE(store.commit({change(later, "resolved", 20)}));
  auto stored = store.incident("u1");
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->t_detect, at(3));
  EXPECT_EQ((*stored)->t_resolved, at(20));
  EXPECT_EQ((*stored)->state, IncidentState::resolved);
}

TEST(StoreOpen, MigratesSchema2IncidentsWithTheirRowsAndIndexes) {
  test::TempDir dir;
  const auto path = dir / "storewatch.db";
  {
    auto s = Store::open(path, Store::Mode::read_write);
    ASSERT_TRUE(s);
    ASSERT_TRUE(
        s->commit({change(incident("u1", "lane-01", IncidentState::open), "opened", 3),
                   change(incident("u2", "lane-02", IncidentState::resolved), "opened", 4)}));
    // Back to schema 2: the next open runs migrations 3 to 5 over these rows.
    ASSERT_TRUE(s->database().exec(
        "DROP TABLE commands; DROP TABLE notifications; DROP TABLE dead_letters; "
        "PRAGMA user_version = 2"));
  }
  auto s = Store::open(path, Store::Mode::read_write);
  ASSERT_TRUE(s) << s.error().message;
  auto all = s->incidents(false, std::nullopt);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  auto open = s->incidents(true, std::nullopt);
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ(open->at(0).uid, "u1");
  EXPECT_EQ(open->at(0).t_detect, at(3));
  // The state check and the one-unresolved-per-key index hold after it.
  EXPECT_FALSE(s->database().exec("UPDATE incidents SET state = 'nonsense' WHERE uid = 'u2'"));
  EXPECT_FALSE(s->commit({change(incident("u3", "lane-01", IncidentState::open), "opened", 5)}));
  auto sql = s->database().prepare(
      "SELECT group_concat(name) FROM sqlite_master WHERE tbl_name = 'incidents' AND "
      "type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name");
  ASSERT_TRUE(sql && sql->step().value_or(false));
  const std::string names = sql->text(0);
  for (const char* index : {"incidents_unresolved_key", "incidents_detect", "incidents_closed"}) {
    EXPECT_NE(names.find(index), std::string::npos) << names;
  }
}

TEST(StoreOpen, MigratesSchema5EventsWithTheirSeqsAndCounter) {
  // Schema 6 rebuilt events without the UNIQUE index on uid. A schema 5 file
  // whose newest events were pruned (the counter is above the highest seq
  // left) keeps its rows, and a seq is never handed out twice.
  test::TempDir dir;
  const auto path = dir / "storewatch.db";
  {
    auto s = Store::open(path, Store::Mode::read_write);
    ASSERT_TRUE(s) << s.error().message;
    for (int k = 1; k <= 7; ++k) {
      ASSERT_TRUE(s->commit(
          {change(incident(fmt::format("u{}", k), fmt::format("p{}", k), IncidentState::open),
                  "opened", k)}));
    }
    // Back to schema 5: events as they were, with seqs 1-5 and the counter at 7.
    ASSERT_TRUE(s->database().exec(R"sql(
CREATE TABLE events_old (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL UNIQUE, incident_uid TEXT NOT NULL,
  type TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL, body TEXT NOT NULL);
INSERT INTO events_old SELECT * FROM events WHERE seq <= 5;
DROP TABLE events;
ALTER TABLE events_old RENAME TO events;
UPDATE sqlite_sequence SET seq = 7 WHERE name = 'events';
CREATE INDEX events_incident ON events(incident_uid, seq);
DROP TABLE dead_letters;
PRAGMA user_version = 5;
)sql"));
  }
  auto before = [&] {
    auto s = Store::open(path, Store::Mode::read_only);
    EXPECT_TRUE(s);
    return s ? rows_of(*s, "SELECT * FROM events ORDER BY seq") : std::vector<std::string>{};
  };
  // read_only refuses nothing older; it reads schema 5 as it is.
  const std::vector<std::string> old_rows = before();
  ASSERT_EQ(old_rows.size(), 5u);

  auto s = Store::open(path, Store::Mode::read_write);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(rows_of(*s, "SELECT * FROM events ORDER BY seq"), old_rows);
  EXPECT_EQ(rows_of(*s, "SELECT seq FROM sqlite_sequence WHERE name = 'events'"),
            std::vector<std::string>{"7|"});
  EXPECT_EQ(rows_of(*s, "SELECT count(*) FROM sqlite_sequence"),
            rows_of(*s, "SELECT count(DISTINCT name) FROM sqlite_sequence"));
  EXPECT_EQ(rows_of(*s,
                    "SELECT name FROM sqlite_master WHERE tbl_name = 'events' AND "
                    "type = 'index' ORDER BY name"),
            std::vector<std::string>{"events_incident|"});
  auto seqs = s->commit({change(incident("u8", "p8", IncidentState::open), "opened", 8)});
  ASSERT_TRUE(seqs) << seqs.error().message;
  EXPECT_EQ(seqs->at(0), 8);
  EXPECT_EQ(s->events_of("u3")->size(), 1u);
}

TEST(StoreOpen, ReadOnlyNeedsAnExistingFileAndCreatesNothing) {
  test::TempDir dir;
  auto s = Store::open(dir / "storewatch.db", Store::Mode::read_only);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("no database at"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "storewatch.db"));
}

TEST(StoreWriterTest, CommitsInTheBackgroundAndReportsOnTheLoop) {
  test::TempDir dir;
  auto path = dir / "storewatch.db";
  boost::asio::io_context io;
  int commits = 0;
  {
    StoreWriter writer(*Store::open(path, Store::Mode::read_write), io, [&] { ++commits; });
    for (int i = 0; i < 50; ++i) {
      writer.submit(
          change(incident("u" + std::to_string(i), "p" + std::to_string(i), IncidentState::open),
                 "opened", i));
    }
    writer.stop();  // commits everything queued first
    EXPECT_EQ(writer.backlog(), 0u);
  }
  io.run();
  EXPECT_GE(commits, 1);
  auto reader = Store::open(path, Store::Mode::read_only);
  ASSERT_TRUE(reader);
  EXPECT_EQ(*reader->max_seq(), 50);
  EXPECT_EQ(reader->incidents(true)->size(), 50u);
}

}  // namespace
}  // namespace storewatch::agent
