#include "hq/hq_store.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <string_view>
#include <system_error>

#include "config/log.h"

namespace storewatch::hq {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Times are stored as milliseconds since the Unix epoch (UTC).
constexpr std::array<db::Migration, 1> kMigrations{{
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
}};

constexpr std::string_view kNotOpen = "COALESCE(state, '') NOT IN ('resolved', 'closed')";

std::int64_t to_ms(WallTime t) {
  return t.time_since_epoch().count();
}

std::optional<std::string> string_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// Never throws: the wire decoder already rejected invalid UTF-8, and anything
// left is replaced rather than allowed to escape as an exception.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

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

  // The database first: statements are finalized before it closes.
  db::Database db;
  db::Statement touch_store;
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
      "(SELECT count(*) FROM incidents i WHERE i.store = s.store AND {}) "
      "FROM stores s ORDER BY s.store",
      kNotOpen);
  const std::array<Sql, 11> all{{
      {&touch_store,
       "INSERT INTO stores (store, last_seen) VALUES (?1, ?2) ON CONFLICT (store) DO UPDATE "
       "SET last_seen = max(COALESCE(last_seen, 0), excluded.last_seen)"},
      {&get_acked, "SELECT acked_seq FROM stores WHERE store = ?1"},
      {&set_acked, "UPDATE stores SET acked_seq = ?2 WHERE store = ?1"},
      {&insert_event,
       "INSERT OR IGNORE INTO events (store, seq, uid, incident_uid, type, at, actor, body, "
       "received) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
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
       "WHERE stores.session IS NULL OR excluded.session >= stores.session"},
      {&list_stores, list_stores_sql},
      {&list_incidents, list_incidents_sql},
      {&list_acked, "SELECT store, acked_seq FROM stores ORDER BY store"},
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
    for (const char* pragma :
         {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA busy_timeout = 5000"}) {
      if (auto st = db->exec(pragma); !st) return st.error();
    }
    if (auto st = db::migrate(*db, kMigrations); !st) return st.error();
  }

  auto impl = std::make_unique<Impl>(std::move(*db));
  if (auto st = impl->prepare_all(); !st) return st.error();
  return HqStore(std::move(impl));
}

Result<Ingested> HqStore::ingest(const wire::Batch& batch, WallTime received) {
  Impl& s = *impl_;
  const std::int64_t now = to_ms(received);
  auto tx = db::Transaction::begin(s.db);
  if (!tx) return tx.error();

  if (auto st = s.touch_store.bind(1, batch.store).bind(2, now).run(); !st) return st.error();

  Ingested out;
  {
    s.get_acked.bind(1, batch.store);
    auto row = s.get_acked.step();
    if (!row) {
      s.get_acked.reset();
      return row.error();
    }
    out.acked_seq = *row ? s.get_acked.int64(0) : 0;
    s.get_acked.reset();
  }
  const std::int64_t acked_before = out.acked_seq;

  for (const wire::Event& e : batch.events) {
    s.insert_event.bind(1, batch.store)
        .bind(2, e.seq)
        .bind(3, e.uid)
        .bind(4, e.incident)
        .bind(5, e.type)
        .bind(6, e.at)
        .bind(7, e.actor)
        .bind(8, dump(e.to_json()))
        .bind(9, now);
    if (auto st = s.insert_event.run(); !st) return st.error();

    if (s.db.changes() == 0) {
      ++out.duplicates;
      s.event_uid.bind(1, batch.store).bind(2, e.seq);
      auto row = s.event_uid.step();
      if (!row) {
        s.event_uid.reset();
        return row.error();
      }
      if (*row && s.event_uid.text(0) != e.uid) ++out.conflicts;
      s.event_uid.reset();
      continue;
    }
    ++out.inserted;

    // The wire decoder guarantees an object; a hand-made Event may lack it.
    static const json kNoState = json::object();
    auto found = e.body.find("incident_state");
    const json& state = found != e.body.end() && found->is_object() ? *found : kNoState;
    std::optional<std::int64_t> t_detect;
    if (auto text = string_field(state, "t_detect")) {
      if (auto t = parse_rfc3339(*text)) t_detect = to_ms(*t);
    }
    json snapshot = state;
    if (!snapshot.contains("uid")) snapshot["uid"] = e.incident;
    s.upsert_incident.bind(1, batch.store)
        .bind(2, e.incident)
        .bind(3, e.seq)
        .bind(4, string_field(state, "state"))
        .bind(5, string_field(state, "probe"))
        .bind(6, string_field(state, "severity"))
        .bind(7, t_detect)
        .bind(8, now)
        .bind(9, dump(snapshot));
    if (auto st = s.upsert_incident.run(); !st) return st.error();
  }

  // Walk up from the current ack through the seqs stored; the first gap stops
  // it. Reading inside the write transaction sees what other workers committed.
  s.seqs_after.bind(1, batch.store).bind(2, out.acked_seq);
  auto walked = s.seqs_after.each([&](const db::Statement& row) {
    if (row.int64(0) != out.acked_seq + 1) return false;
    ++out.acked_seq;
    return true;
  });
  if (!walked) return walked.error();

  out.acked_changed = out.acked_seq != acked_before;
  if (out.acked_changed) {
    if (auto st = s.set_acked.bind(1, batch.store).bind(2, out.acked_seq).run(); !st) {
      return st.error();
    }
  }
  if (auto st = tx->commit(); !st) return st.error();
  return out;
}

Status HqStore::record_status(const wire::StoreStatus& status, WallTime received) {
  Impl& s = *impl_;
  s.upsert_status.bind(1, status.store)
      .bind(2, status.online)
      .bind(3, status.session)
      .bind(4, status.version)
      .bind(5, dump(json(status.open)))
      .bind(6, status.queued)
      .bind(7, status.at)
      .bind(8, to_ms(received));
  if (auto st = s.upsert_status.run(); !st) return st;
  if (s.db.changes() == 0) {
    log::debug("hq: ignoring a status of store {} from the older session {}", status.store,
               status.session);
  }
  return {};
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

}  // namespace storewatch::hq
