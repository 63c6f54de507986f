#include "hq/hq_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <string_view>
#include <system_error>

#include "base/log.h"
#include "hq/store_common.h"

namespace storewatch::hq {
namespace {

using detail::dump;
using detail::kNotOpen;
using detail::to_ms;
using nlohmann::json;
namespace fs = std::filesystem;

// Times are stored as milliseconds since the Unix epoch (UTC).
constexpr std::array<db::Migration, 5> kMigrations{{
    {1, R"sql(
CREATE TABLE stores (
  store      TEXT PRIMARY KEY,
  acked_seq  INTEGER NOT NULL DEFAULT 0,
  online     INTEGER,
  session    INTEGER,
  version    TEXT,
  open_json  TEXT,
  queued     INTEGER,
  status_at  TEXT,
  last_seen  INTEGER
);
CREATE TABLE events (
  store         TEXT NOT NULL,
  seq           INTEGER NOT NULL,
  uid           TEXT NOT NULL,
  incident_uid  TEXT NOT NULL,
  type          TEXT NOT NULL,
  at            TEXT NOT NULL,
  actor         TEXT NOT NULL,
  body          TEXT NOT NULL,
  received      INTEGER NOT NULL,
  PRIMARY KEY (store, seq)
) WITHOUT ROWID;
CREATE TABLE incidents (
  store        TEXT NOT NULL,
  uid          TEXT NOT NULL,
  seq          INTEGER NOT NULL,
  state        TEXT,
  probe        TEXT,
  severity     TEXT,
  t_detect_ms  INTEGER,
  first_seen   INTEGER NOT NULL,
  snapshot     TEXT NOT NULL,
  PRIMARY KEY (store, uid)
) WITHOUT ROWID;
)sql"},
    // Gap tracking for resync requests, and which worker stored each event.
    {2, R"sql(
ALTER TABLE stores ADD COLUMN gap_from INTEGER;
ALTER TABLE stores ADD COLUMN gap_since INTEGER;
ALTER TABLE stores ADD COLUMN resync_at INTEGER;
ALTER TABLE stores ADD COLUMN resyncs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN worker TEXT;
CREATE INDEX incidents_detect ON incidents (t_detect_ms);
)sql"},
    // What HQ refused to believe of each store (docs/HQ.md, "Refused messages").
    {3, R"sql(
ALTER TABLE stores ADD COLUMN refused_seq_jump INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stores ADD COLUMN refused_conflict INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stores ADD COLUMN refused_session_jump INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stores ADD COLUMN refused_at INTEGER;
)sql"},
    // Retention (docs/HQ.md "Retention"): old events are found by when HQ
    // received them; and once they are gone, a re-send of one at or below the
    // store's acked_seq is still a duplicate (ignored like one), never stored
    // again.
    {4, R"sql(
CREATE INDEX events_received ON events (received);
CREATE TRIGGER events_acked_are_duplicates BEFORE INSERT ON events
WHEN NEW.seq <= (SELECT acked_seq FROM stores WHERE store = NEW.store)
BEGIN
  SELECT RAISE(IGNORE);
END;
)sql"},
    // Each ingest worker's own health (`hq workers`, `hq stores`).
    {5, R"sql(
CREATE TABLE workers (
  worker            TEXT PRIMARY KEY,
  host              TEXT NOT NULL,
  pid               INTEGER NOT NULL,
  started           INTEGER NOT NULL,
  heartbeat         INTEGER NOT NULL,
  last_commit       INTEGER,
  batches           INTEGER NOT NULL,
  inserted          INTEGER NOT NULL,
  broker_connected  INTEGER NOT NULL,
  last_error        TEXT,
  last_error_at     INTEGER
) WITHOUT ROWID;
)sql"},
}};

Status prepare_directory(const fs::path& path) {
  fs::path dir = path.parent_path();
  if (dir.empty()) return {};
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return Error{fmt::format("cannot create the directory {} for the HQ database: {}", dir.string(),
                             ec.message())};
  }
  return {};
}

}  // namespace

struct HqStore::Impl {
  explicit Impl(db::Database d) : db(std::move(d)) {}

  Status prepare_all();

  /// Each incident's event of the highest seq a commit stores, by (store,
  /// incident uid): its row is written once, at the end of the commit.
  using Latest = std::map<std::pair<std::string_view, std::string_view>, const wire::Event*>;
  /// Within the open write transaction: stores the events of one batch,
  /// refusing those too far above `acked_before`; creates the store's row
  /// before its first event stored when `out.known` is false; notes in
  /// `latest` the incidents' newest events.
  Status insert_batch(const wire::Batch& batch, std::int64_t now, std::int64_t acked_before,
                      Ingested& out, Latest& latest);
  /// Within the open write transaction: writes each incident's row from its
  /// newest event (kept only where newer than the row).
  Status upsert_incidents(const Latest& latest, std::int64_t now);
  /// Within the open write transaction: walks `acked_seq` up and updates the
  /// gap state of one store.
  Status settle(Ingested& out, std::int64_t acked_before, std::int64_t now);

  // The database first: statements are finalized before it closes.
  db::Database db;
  std::string worker;
  IngestLimits limits;
  db::Statement create_store;
  db::Statement see_store;
  db::Statement count_refused_events;
  db::Statement get_session;
  db::Statement count_refused_status;
  db::Statement get_acked;
  db::Statement set_acked;
  db::Statement insert_event;
  db::Statement event_uid;
  db::Statement upsert_incident;
  db::Statement seqs_after;
  db::Statement upsert_status;
  db::Statement list_stores;
  db::Statement list_incidents;
  db::Statement list_acked;
  db::Statement set_gap;
  db::Statement due_resyncs;
  db::Statement claim_resync;
  db::Statement report_rows;
};

Status HqStore::Impl::prepare_all() {
  struct Sql {
    db::Statement* stmt;
    std::string_view sql;
  };
  const std::string list_incidents_sql = fmt::format(
      "SELECT store, uid, snapshot FROM incidents "
      "WHERE (?1 IS NULL OR store = ?1) AND (?2 = 0 OR {}) "
      "ORDER BY COALESCE(t_detect_ms, first_seen), uid, store",
      kNotOpen);
  const std::string list_stores_sql = fmt::format(
      "SELECT s.store, s.online, s.acked_seq, s.last_seen, s.session, s.version, s.queued, "
      "(SELECT count(*) FROM incidents i WHERE i.store = s.store AND {}), s.gap_from, s.resyncs, "
      "s.refused_seq_jump, s.refused_conflict, s.refused_session_jump, s.refused_at "
      "FROM stores s ORDER BY s.store",
      kNotOpen);
  const std::string report_sql =
      "SELECT i.store, i.snapshot, EXISTS (SELECT 1 FROM events e WHERE e.store = i.store "
      "AND e.incident_uid = i.uid AND e.type = 'acknowledged' "
      "AND (substr(e.actor, 1, 4) = 'cli:' OR substr(e.actor, 1, 3) = 'hq:')), i.uid "
      "FROM incidents i WHERE i.t_detect_ms >= ?1 AND i.t_detect_ms <= ?2 "
      "ORDER BY i.store, i.t_detect_ms, i.uid";
  const std::array<Sql, 19> all{{
      {&create_store, "INSERT OR IGNORE INTO stores (store) VALUES (?1)"},
      {&see_store,
       "UPDATE stores SET last_seen = max(COALESCE(last_seen, 0), ?2) WHERE store = ?1"},
      {&count_refused_events,
       "UPDATE stores SET refused_seq_jump = refused_seq_jump + ?2, "
       "refused_conflict = refused_conflict + ?3, refused_at = ?4 WHERE store = ?1"},
      {&get_session, "SELECT session FROM stores WHERE store = ?1"},
      {&count_refused_status,
       "UPDATE stores SET refused_session_jump = refused_session_jump + 1, refused_at = ?2 "
       "WHERE store = ?1"},
      {&get_acked, "SELECT acked_seq FROM stores WHERE store = ?1"},
      {&set_acked, "UPDATE stores SET acked_seq = ?2 WHERE store = ?1"},
      {&insert_event,
       "INSERT OR IGNORE INTO events (store, seq, uid, incident_uid, type, at, actor, body, "
       "received, worker) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"},
      {&event_uid, "SELECT uid FROM events WHERE store = ?1 AND seq = ?2"},
      {&upsert_incident,
       "INSERT INTO incidents (store, uid, seq, state, probe, severity, t_detect_ms, first_seen, "
       "snapshot) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (store, uid) DO UPDATE "
       "SET seq = excluded.seq, state = excluded.state, probe = excluded.probe, "
       "severity = excluded.severity, t_detect_ms = excluded.t_detect_ms, "
       "snapshot = excluded.snapshot "
       "WHERE excluded.seq > incidents.seq"},
      {&seqs_after, "SELECT seq FROM events WHERE store = ?1 AND seq > ?2 ORDER BY seq"},
      {&upsert_status,
       "INSERT INTO stores (store, online, session, version, open_json, queued, status_at, "
       "last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (store) DO UPDATE "
       "SET online = excluded.online, session = excluded.session, version = excluded.version, "
       "open_json = excluded.open_json, queued = excluded.queued, status_at = excluded.status_at, "
       "last_seen = max(COALESCE(stores.last_seen, 0), excluded.last_seen) "
       "WHERE stores.session IS NULL OR excluded.session > stores.session OR "
       "(excluded.session = stores.session AND (stores.online IS NOT 0 OR excluded.online = 0))"},
      {&list_stores, list_stores_sql},
      {&list_incidents, list_incidents_sql},
      {&list_acked, "SELECT store, acked_seq FROM stores ORDER BY store"},
      // A gap is known by its first missing seq: while that stays the same
      // the gap keeps its age; a new one starts afresh. RHS values are the
      // row's values before the update.
      {&set_gap,
       "UPDATE stores SET gap_from = CASE WHEN ?2 THEN ?3 END, "
       "gap_since = CASE WHEN NOT ?2 THEN NULL WHEN gap_from IS ?3 THEN gap_since ELSE ?4 END, "
       "resync_at = CASE WHEN ?2 AND gap_from IS ?3 THEN resync_at END "
       "WHERE store = ?1"},
      {&due_resyncs,
       "SELECT store, gap_from FROM stores WHERE gap_from IS NOT NULL AND gap_since <= ?1 "
       "AND (resync_at IS NULL OR resync_at <= ?1) ORDER BY store"},
      {&claim_resync, "UPDATE stores SET resync_at = ?2, resyncs = resyncs + 1 WHERE store = ?1"},
      {&report_rows, report_sql},
  }};
  for (const Sql& s : all) {
    auto stmt = db.prepare(s.sql);
    if (!stmt) return stmt.error();
    *s.stmt = std::move(*stmt);
  }
  return {};
}

HqStore::HqStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HqStore::HqStore(HqStore&&) noexcept = default;
HqStore& HqStore::operator=(HqStore&&) noexcept = default;
HqStore::~HqStore() = default;

const fs::path& HqStore::path() const {
  return impl_->db.path();
}

Result<HqStore> HqStore::open(const fs::path& path, db::Database::Mode mode) {
  const bool read_only = mode == db::Database::Mode::read_only;
  if (read_only) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      return Error{
          fmt::format("no HQ database at {} — has `storewatch hq run` ever run?", path.string())};
    }
  } else if (auto st = prepare_directory(path); !st) {
    return st.error();
  }

  auto db = db::Database::open(path, mode);
  if (!db) return db.error();
  // Checked before anything writes to the file, WAL mode included.
  if (auto st = db::check_not_newer(*db, kMigrations); !st) return st.error();

  if (read_only) {
    auto version = db::schema_version(*db);
    if (!version) return version.error();
    if (*version < kMigrations.back().version) {
      return Error{fmt::format(
          "HQ database {} has schema version {}, older than this storewatch ({}): start "
          "`storewatch hq run` once to upgrade it",
          path.string(), *version, kMigrations.back().version)};
    }
  } else {
    // 16 KB pages (a new file only: an existing one keeps its size): an
    // event is about 1.4 KB stored, and WAL writes and checkpoints go a page
    // per system call, which at 4 KB was most of a draining worker's system
    // time. A cache of 16 MB holds a commit's pages (2 MB of batches), so
    // they are not spilled and read back before the commit ends.
    // docs/BENCHMARKS.md "HQ fleet" has what each saved.
    for (const char* pragma :
         {"PRAGMA page_size = 16384", "PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
          "PRAGMA busy_timeout = 5000", "PRAGMA cache_size = -16384"}) {
      if (auto st = db->exec(pragma); !st) return st.error();
    }
    if (auto st = db::migrate(*db, kMigrations); !st) return st.error();
  }

  auto impl = std::make_unique<Impl>(std::move(*db));
  if (auto st = impl->prepare_all(); !st) return st.error();
  return HqStore(std::move(impl));
}

void HqStore::set_worker(std::string worker) {
  impl_->worker = std::move(worker);
}

void HqStore::set_limits(const IngestLimits& limits) {
  impl_->limits = limits;
}

Status HqStore::Impl::insert_batch(const wire::Batch& batch, std::int64_t now,
                                   std::int64_t acked_before, Ingested& out, Latest& latest) {
  const std::optional<std::string> who =
      worker.empty() ? std::nullopt : std::optional<std::string>(worker);
  std::string event_text;  // what is re-encoded, bound in place
  for (const wire::Event& e : batch.events) {
    // seq >= 1 and acked_before >= 0: the difference cannot overflow.
    if (e.seq - acked_before > limits.max_seq_jump) {
      if (out.refused++ == 0) out.refused_seq = e.seq;
      continue;
    }
    if (!out.known) {
      if (auto st = create_store.bind(1, batch.store).run(); !st) return st;
      out.known = true;
      out.new_store = db.changes() > 0;
    }
    // The event as the store sent it; re-encoded only when that is not at hand.
    if (e.sent_text.empty()) event_text = e.text();
    // Bound in place: the event outlives the statement's run.
    insert_event.bind_ref(1, batch.store)
        .bind(2, e.seq)
        .bind_ref(3, e.uid)
        .bind_ref(4, e.incident)
        .bind_ref(5, e.type)
        .bind_ref(6, e.at)
        .bind_ref(7, e.actor)
        .bind_ref(
            8, e.sent_text.empty() ? std::string_view(event_text) : std::string_view(e.sent_text))
        .bind(9, now)
        .bind(10, who);
    if (auto st = insert_event.run(); !st) return st;

    if (db.changes() == 0) {
      ++out.duplicates;
      event_uid.bind(1, batch.store).bind(2, e.seq);
      auto row = event_uid.step();
      if (!row) {
        event_uid.reset();
        return row.error();
      }
      if (*row && event_uid.text(0) != e.uid) ++out.conflicts;
      event_uid.reset();
      continue;
    }
    ++out.inserted;
    const wire::Event*& newest = latest[{batch.store, e.incident}];
    if (newest == nullptr || e.seq > newest->seq) newest = &e;
  }
  return {};
}

Status HqStore::Impl::upsert_incidents(const Latest& latest, std::int64_t now) {
  std::string snapshot_text;  // what is re-encoded, bound in place
  for (const auto& [key, e] : latest) {
    const detail::IncidentColumns row = detail::incident_columns(*e, snapshot_text);
    upsert_incident.bind_ref(1, key.first)
        .bind_ref(2, e->incident)
        .bind(3, e->seq)
        .bind_ref(4, row.state)
        .bind_ref(5, row.probe)
        .bind_ref(6, row.severity)
        .bind(7, row.t_detect_ms)
        .bind(8, now)
        .bind_ref(9, row.snapshot);
    if (auto st = upsert_incident.run(); !st) return st;
  }
  return {};
}

Status HqStore::Impl::settle(Ingested& out, std::int64_t acked_before, std::int64_t now) {
  // Walk up from the current ack through the seqs stored; the first gap stops
  // it. Reading inside the write transaction sees what other workers committed.
  out.acked_seq = acked_before;
  out.gap = false;
  seqs_after.bind(1, out.store).bind(2, out.acked_seq);
  auto walked = seqs_after.each([&](const db::Statement& row) {
    if (row.int64(0) != out.acked_seq + 1) {
      out.gap = true;
      return false;
    }
    ++out.acked_seq;
    return true;
  });
  if (!walked) return walked;

  out.acked_changed = out.acked_seq != acked_before;
  if (out.acked_changed) {
    if (auto st = set_acked.bind(1, out.store).bind(2, out.acked_seq).run(); !st) return st;
  }
  return set_gap.bind(1, out.store).bind(2, out.gap).bind(3, out.acked_seq + 1).bind(4, now).run();
}

Result<std::vector<Ingested>> HqStore::ingest(std::span<const wire::Batch> batches,
                                              WallTime received) {
  Impl& s = *impl_;
  const std::int64_t now = to_ms(received);
  auto tx = db::Transaction::begin(s.db);
  if (!tx) return tx.error();

  std::vector<Ingested> out;
  std::vector<std::int64_t> acked_before;
  Impl::Latest latest;
  for (const wire::Batch& batch : batches) {
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const Ingested& i) { return i.store == batch.store; });
    if (it == out.end()) {
      s.get_acked.bind(1, batch.store);
      auto row = s.get_acked.step();
      if (!row) {
        s.get_acked.reset();
        return row.error();
      }
      out.push_back(Ingested{batch.store});
      out.back().known = *row;
      acked_before.push_back(*row ? std::max<std::int64_t>(s.get_acked.int64(0), 0) : 0);
      s.get_acked.reset();
      out.back().acked_seq = acked_before.back();
      it = out.end() - 1;
    }
    const auto i = static_cast<std::size_t>(it - out.begin());
    if (auto st = s.insert_batch(batch, now, acked_before[i], *it, latest); !st) {
      return st.error();
    }
  }
  if (auto st = s.upsert_incidents(latest, now); !st) return st.error();
  for (std::size_t i = 0; i < out.size(); ++i) {
    Ingested& in = out[i];
    // Unknown before and nothing stored: nothing is written for it (a store
    // is not created by what HQ refused).
    if (!in.known) continue;
    // Seen: something stored, or a true duplicate (a re-send of what HQ has).
    if (in.inserted > 0 || in.duplicates > in.conflicts) {
      if (auto st = s.see_store.bind(1, in.store).bind(2, now).run(); !st) return st.error();
    }
    if (in.refused > 0 || in.conflicts > 0) {
      if (auto st = s.count_refused_events.bind(1, in.store)
                        .bind(2, in.refused)
                        .bind(3, in.conflicts)
                        .bind(4, now)
                        .run();
          !st) {
        return st.error();
      }
    }
    if (auto st = s.settle(in, acked_before[i], now); !st) return st.error();
  }
  if (auto st = tx->commit(); !st) return st.error();
  return out;
}

Result<StatusRecorded> HqStore::record_status(const wire::StoreStatus& status, WallTime received) {
  Impl& s = *impl_;
  StatusRecorded out;
  auto tx = db::Transaction::begin(s.db);
  if (!tx) return tx.error();
  s.get_session.bind(1, status.store);
  auto row = s.get_session.step();
  if (!row) {
    s.get_session.reset();
    return row.error();
  }
  out.new_store = !*row;
  std::optional<std::int64_t> stored = *row ? s.get_session.optional_int64(0) : std::nullopt;
  s.get_session.reset();
  out.session_before = std::max<std::int64_t>(stored.value_or(0), 0);
  // session_before >= 0: the difference cannot overflow.
  if (status.session > out.session_before &&
      status.session - out.session_before > s.limits.max_session_jump) {
    out.outcome = StatusRecorded::Outcome::session_jump;
    out.new_store = false;  // nothing was created
    if (*row) {
      if (auto st = s.count_refused_status.bind(1, status.store).bind(2, to_ms(received)).run();
          !st) {
        return st.error();
      }
      if (auto st = tx->commit(); !st) return st.error();
    }
    return out;
  }
  s.upsert_status.bind(1, status.store)
      .bind(2, status.online)
      .bind(3, status.session)
      .bind(4, status.version)
      .bind(5, dump(json(status.open)))
      .bind(6, status.queued)
      .bind(7, status.at)
      .bind(8, to_ms(received));
  if (auto st = s.upsert_status.run(); !st) return st.error();
  if (s.db.changes() == 0) {
    out.outcome = StatusRecorded::Outcome::stale;
    log::debug("hq: ignoring a status of store {} (session {}): older than the one recorded",
               status.store, status.session);
  }
  if (auto st = tx->commit(); !st) return st.error();
  return out;
}

Result<json> HqStore::stores_json() {
  json out = json::array();
  auto st = impl_->list_stores.each([&](const db::Statement& q) {
    json store{
        {"store", q.text(0)},      {"online", !q.is_null(1) && q.int64(1) != 0},
        {"acked_seq", q.int64(2)}, {"open_incidents", q.int64(7)},
        {"last_seen", nullptr},    {"session", nullptr},
        {"version", nullptr},      {"queued", nullptr},
    };
    if (auto t = q.optional_int64(3)) {
      store["last_seen"] = format_rfc3339(WallTime(std::chrono::milliseconds(*t)));
    }
    if (auto v = q.optional_int64(4)) store["session"] = *v;
    if (auto v = q.optional_text(5); v && !v->empty()) store["version"] = *v;
    if (auto v = q.optional_int64(6)) store["queued"] = *v;
    store["gap_from"] = nullptr;
    if (auto v = q.optional_int64(8)) store["gap_from"] = *v;
    store["resyncs"] = q.int64(9);
    store["refused"] =
        json{{"seq_jump", q.int64(10)}, {"conflict", q.int64(11)}, {"session_jump", q.int64(12)}};
    store["refused_at"] = nullptr;
    if (auto t = q.optional_int64(13)) {
      store["refused_at"] = format_rfc3339(WallTime(std::chrono::milliseconds(*t)));
    }
    out.push_back(std::move(store));
    return true;
  });
  if (!st) return st.error();
  return out;
}

Result<json> HqStore::incidents_json(const std::optional<std::string>& store, bool open_only) {
  json out = json::array();
  std::optional<Error> damaged;
  impl_->list_incidents.bind(1, store).bind(2, open_only);
  auto st = impl_->list_incidents.each([&](const db::Statement& q) {
    json incident = json::parse(q.text(2), nullptr, /*allow_exceptions=*/false);
    if (!incident.is_object()) {
      damaged =
          Error{fmt::format("HQ database {}: the snapshot of incident {} of store {} is damaged",
                            path().string(), q.text(1), q.text(0))};
      return false;
    }
    incident["store"] = q.text(0);
    out.push_back(std::move(incident));
    return true;
  });
  if (!st) return st.error();
  if (damaged) return *damaged;
  return out;
}

Result<std::vector<std::pair<std::string, std::int64_t>>> HqStore::acked_seqs() {
  std::vector<std::pair<std::string, std::int64_t>> out;
  auto st = impl_->list_acked.each([&](const db::Statement& q) {
    out.emplace_back(q.text(0), q.int64(1));
    return true;
  });
  if (!st) return st.error();
  return out;
}

Result<std::int64_t> HqStore::acked_seq(const std::string& store) {
  db::Statement& q = impl_->get_acked;
  q.bind(1, store);
  auto row = q.step();
  std::int64_t seq = row.ok() && *row ? q.int64(0) : 0;
  q.reset();
  if (!row) return row.error();
  return seq;
}

Result<std::vector<ResyncDue>> HqStore::claim_resyncs(WallTime now, Millis after) {
  Impl& s = *impl_;
  const std::int64_t now_ms = to_ms(now);
  const std::int64_t due_before = now_ms - after.count();
  // Cheap check first, outside any write transaction: most of the time no
  // store has a gap, and the workers should not queue for the write lock.
  bool any = false;
  s.due_resyncs.bind(1, due_before);
  auto peek = s.due_resyncs.each([&](const db::Statement&) {
    any = true;
    return false;
  });
  if (!peek) return peek.error();
  if (!any) return std::vector<ResyncDue>{};

  auto tx = db::Transaction::begin(s.db);
  if (!tx) return tx.error();
  std::vector<ResyncDue> due;
  s.due_resyncs.bind(1, due_before);
  auto st = s.due_resyncs.each([&](const db::Statement& q) {
    due.push_back({q.text(0), q.int64(1)});
    return true;
  });
  if (!st) return st.error();
  for (const ResyncDue& d : due) {
    if (auto claimed = s.claim_resync.bind(1, d.store).bind(2, now_ms).run(); !claimed) {
      return claimed.error();
    }
  }
  if (auto done = tx->commit(); !done) return done.error();
  return due;
}

Result<std::vector<ReportIncident>> HqStore::report_incidents(WallTime since, WallTime until) {
  std::vector<ReportIncident> out;
  std::vector<std::string> uids;
  std::optional<Error> damaged;
  impl_->report_rows.bind(1, to_ms(since)).bind(2, to_ms(until));
  auto st = impl_->report_rows.each([&](const db::Statement& q) {
    json snapshot = json::parse(q.text(1), nullptr, /*allow_exceptions=*/false);
    if (!snapshot.is_object()) {
      damaged = Error{fmt::format("HQ database {}: an incident snapshot of store {} is damaged",
                                  path().string(), q.text(0))};
      return false;
    }
    out.push_back({q.text(0), std::move(snapshot), q.int64(2) != 0, {}});
    uids.push_back(q.text(3));
    return true;
  });
  if (!st) return st.error();
  if (damaged) return *damaged;
  // The resolved and reopened events of the reopened ones (few): the spans
  // they were up in between do not count as downtime.
  auto events = impl_->db.prepare(
      "SELECT type, at, body FROM events WHERE store = ?1 AND incident_uid = ?2 "
      "AND type IN ('resolved', 'reopened') ORDER BY seq");
  if (!events) return events.error();
  for (std::size_t k = 0; k < out.size(); ++k) {
    const auto reopens = out[k].snapshot.find("reopen_count");
    if (reopens == out[k].snapshot.end() || !reopens->is_number_integer() ||
        reopens->get<std::int64_t>() <= 0) {
      continue;
    }
    events->reset();
    events->bind(1, out[k].store).bind(2, uids[k]);
    auto each = events->each([&](const db::Statement& q) {
      out[k].reopen_events.push_back(
          json{{"type", q.text(0)},
               {"at", q.text(1)},
               {"body", json::parse(q.text(2), nullptr, /*allow_exceptions=*/false)}});
      return true;
    });
    if (!each) return each.error();
  }
  return out;
}

Status HqStore::record_worker(const WorkerHealth& w) {
  auto stmt = impl_->db.prepare(
      "INSERT OR REPLACE INTO workers (worker, host, pid, started, heartbeat, last_commit, "
      "batches, inserted, broker_connected, last_error, last_error_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  if (!stmt) return stmt.error();
  auto optional_ms = [](WallTime t) {
    return t == WallTime{} ? std::nullopt : std::optional<std::int64_t>(to_ms(t));
  };
  stmt->bind(1, w.worker)
      .bind(2, w.host)
      .bind(3, w.pid)
      .bind(4, to_ms(w.started))
      .bind(5, to_ms(w.heartbeat))
      .bind(6, optional_ms(w.last_commit))
      .bind(7, w.batches)
      .bind(8, w.inserted)
      .bind(9, w.broker_connected)
      .bind(10, w.last_error.empty() ? std::nullopt : std::optional<std::string>(w.last_error))
      .bind(11, optional_ms(w.last_error_at));
  return stmt->run();
}

Result<std::vector<WorkerHealth>> HqStore::workers() {
  auto stmt = impl_->db.prepare(
      "SELECT worker, host, pid, started, heartbeat, last_commit, batches, inserted, "
      "broker_connected, last_error, last_error_at FROM workers ORDER BY worker");
  if (!stmt) return stmt.error();
  std::vector<WorkerHealth> out;
  auto at = [](std::optional<std::int64_t> ms) {
    return ms ? WallTime(std::chrono::milliseconds(*ms)) : WallTime{};
  };
  auto st = stmt->each([&](const db::Statement& q) {
    out.push_back(WorkerHealth{q.text(0), q.text(1), q.int64(2), at(q.int64(3)), at(q.int64(4)),
                               at(q.optional_int64(5)), q.int64(6), q.int64(7), q.int64(8) != 0,
                               q.optional_text(9).value_or(""), at(q.optional_int64(10))});
    return true;
  });
  if (!st) return st.error();
  return out;
}

namespace {

/// Events per prune transaction, and transactions per prune() call: the
/// ingest workers wait for one chunk at most, the loop for one call.
constexpr int kPruneChunk = 5000;
constexpr int kPruneChunksPerCall = 4;

}  // namespace

Result<Pruned> HqStore::prune(WallTime now, Millis retention) {
  db::Database& db = impl_->db;
  const std::int64_t cutoff = to_ms(now) - retention.count();
  // Oldest first, by the index on received; each event's incident is
  // deleted with it when closed and this was its newest event (the seq the
  // incident row holds is its newest event's).
  auto oldest = db.prepare(
      "SELECT store, seq, incident_uid FROM events WHERE received < ?1 ORDER BY received "
      "LIMIT ?2");
  if (!oldest) return oldest.error();
  auto drop_incident = db.prepare(
      "DELETE FROM incidents WHERE store = ?1 AND uid = ?2 AND seq = ?3 AND state = 'closed'");
  if (!drop_incident) return drop_incident.error();
  auto drop_event = db.prepare("DELETE FROM events WHERE store = ?1 AND seq = ?2");
  if (!drop_event) return drop_event.error();

  Pruned out;
  struct Row {
    std::string store;
    std::int64_t seq;
    std::string incident;
  };
  std::vector<Row> rows;
  for (int chunk = 0; chunk < kPruneChunksPerCall; ++chunk) {
    auto tx = db::Transaction::begin(db);
    if (!tx) return tx.error();
    rows.clear();
    oldest->bind(1, cutoff).bind(2, kPruneChunk);
    auto read = oldest->each([&](const db::Statement& q) {
      rows.push_back({q.text(0), q.int64(1), q.text(2)});
      return true;
    });
    if (!read) return read.error();
    for (const Row& r : rows) {
      if (auto st = drop_incident->bind(1, r.store).bind(2, r.incident).bind(3, r.seq).run(); !st) {
        return st.error();
      }
      out.incidents += db.changes();
      if (auto st = drop_event->bind(1, r.store).bind(2, r.seq).run(); !st) return st.error();
      out.events += db.changes();
    }
    if (auto st = tx->commit(); !st) return st.error();
    if (static_cast<int>(rows.size()) < kPruneChunk) return out;
  }
  out.more = true;
  return out;
}

}  // namespace storewatch::hq
