#include "hq/pg_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "base/find_bytes.h"
#include "base/log.h"
#include "config/postgres_uri.h"
#include "db/postgres.h"
#include "hq/store_common.h"

namespace storewatch::hq {
namespace {

using db::pg::Params;
using db::pg::Rows;
using detail::dump;
using detail::kNotOpen;
using detail::to_ms;
using nlohmann::json;

/// The advisory lock class of storewatch's HQ (pg_advisory_xact_lock(int,
/// int)): objid is hashtext(store) for a store's lock, and these for the rest.
constexpr int kLockClass = 0x5357;  // "SW"
constexpr int kMigrationLock = 1;
constexpr int kPartitionLock = 2;

/// What one version adds. Times are milliseconds since the Unix epoch (UTC),
/// as in the SQLite backend; `events.received` is the partition key.
struct PgMigration {
  int version;
  std::string_view sql;
};

constexpr std::array<PgMigration, 3> kMigrations{{
    {1, R"sql(
CREATE TABLE stores (
  store                text PRIMARY KEY,
  acked_seq            bigint NOT NULL DEFAULT 0,
  max_seq              bigint NOT NULL DEFAULT 0,
  online               boolean,
  session              bigint,
  version              text,
  open_json            text,
  queued               bigint,
  status_at            text,
  last_seen            bigint,
  gap_from             bigint,
  gap_since            bigint,
  resync_at            bigint,
  resyncs              bigint NOT NULL DEFAULT 0,
  refused_seq_jump     bigint NOT NULL DEFAULT 0,
  refused_conflict     bigint NOT NULL DEFAULT 0,
  refused_session_jump bigint NOT NULL DEFAULT 0,
  refused_at           bigint
);
CREATE TABLE events (
  store         text NOT NULL,
  seq           bigint NOT NULL,
  uid           text NOT NULL,
  incident_uid  text NOT NULL,
  type          text NOT NULL,
  at            text NOT NULL,
  actor         text NOT NULL,
  body          text NOT NULL,
  received      bigint NOT NULL,
  worker        text
) PARTITION BY RANGE (received);
CREATE INDEX events_incident ON events (store, incident_uid);
CREATE TABLE incidents (
  store        text NOT NULL,
  uid          text NOT NULL,
  seq          bigint NOT NULL,
  state        text,
  probe        text,
  severity     text,
  t_detect_ms  bigint,
  first_seen   bigint NOT NULL,
  snapshot     text NOT NULL,
  PRIMARY KEY (store, uid)
);
CREATE INDEX incidents_detect ON incidents (t_detect_ms);
)sql"},
    // Each ingest worker's own health (`hq workers`, `hq stores`).
    {2, R"sql(
CREATE TABLE workers (
  worker            text PRIMARY KEY,
  host              text NOT NULL,
  pid               bigint NOT NULL,
  started           bigint NOT NULL,
  heartbeat         bigint NOT NULL,
  last_commit       bigint,
  batches           bigint NOT NULL,
  inserted          bigint NOT NULL,
  broker_connected  boolean NOT NULL,
  last_error        text,
  last_error_at     bigint
);
)sql"},
    // A status in one round trip (a connect storm brings thousands at once):
    // the store's lock (kLockClass, hashtext), the session check and the
    // upsert of PgHqStore::record_status, committed without waiting for the
    // WAL flush. A status is the store's state now, not history: one lost to
    // a crash of PostgreSQL is replaced by the store's next one, and the
    // events (their own commits) are never asynchronous. Outcome: 0 recorded,
    // 1 stale, 2 session jump (StatusRecorded::Outcome).
    {3, R"sql(
CREATE FUNCTION storewatch_record_status(
    p_store text, p_online boolean, p_session bigint, p_version text, p_open text,
    p_queued bigint, p_status_at text, p_received bigint, p_max_jump bigint,
    OUT outcome integer, OUT new_store boolean, OUT session_before bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  known boolean := false;
  n bigint;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  PERFORM pg_advisory_xact_lock(21335, hashtext(p_store));
  SELECT true, GREATEST(COALESCE(session, 0), 0) INTO known, session_before
    FROM stores WHERE store = p_store;
  known := COALESCE(known, false);
  session_before := COALESCE(session_before, 0);
  new_store := NOT known;
  IF p_session > session_before AND p_session - session_before > p_max_jump THEN
    outcome := 2;
    new_store := false;
    IF known THEN
      UPDATE stores SET refused_session_jump = refused_session_jump + 1, refused_at = p_received
        WHERE store = p_store;
    END IF;
    RETURN;
  END IF;
  INSERT INTO stores (store, online, session, version, open_json, queued, status_at, last_seen)
    VALUES (p_store, p_online, p_session, p_version, p_open, p_queued, p_status_at, p_received)
    ON CONFLICT (store) DO UPDATE
    SET online = excluded.online, session = excluded.session, version = excluded.version,
        open_json = excluded.open_json, queued = excluded.queued, status_at = excluded.status_at,
        last_seen = greatest(COALESCE(stores.last_seen, 0), excluded.last_seen)
    WHERE stores.session IS NULL OR excluded.session > stores.session OR
          (excluded.session = stores.session AND
           (stores.online IS DISTINCT FROM false OR NOT excluded.online));
  GET DIAGNOSTICS n = ROW_COUNT;
  outcome := CASE WHEN n = 0 THEN 1 ELSE 0 END;
END
$fn$;
)sql"},
}};
static_assert(kLockClass == 21335, "storewatch_record_status (migration 3) takes this lock class");

/// The table that marks a database as storewatch HQ's, with its version.
constexpr std::string_view kSchemaTable = "storewatch_hq_schema";

/// A PostgreSQL array literal in text format, for unnest($n::T[]).
class ArrayText {
 public:
  ArrayText& add(std::string_view text) {
    sep();
    out_ += '"';
    std::size_t run = 0;  // appended a run at a time, as db::pg::copy_escape
    for (std::size_t i = find_any_of<'"', '\\'>(text, 0); i != std::string_view::npos;
         i = find_any_of<'"', '\\'>(text, i + 1)) {
      out_.append(text.data() + run, i - run);
      out_ += '\\';
      run = i;  // the character itself starts the next run
    }
    out_.append(text.data() + run, text.size() - run);
    out_ += '"';
    return *this;
  }
  ArrayText& add(std::int64_t n) {
    sep();
    out_ += std::to_string(n);
    return *this;
  }
  ArrayText& add(bool b) {
    sep();
    out_ += b ? "t" : "f";
    return *this;
  }
  ArrayText& add(const std::optional<std::string>& text) {
    if (text) return add(std::string_view(*text));
    sep();
    out_ += "NULL";
    return *this;
  }
  ArrayText& add(const std::optional<std::int64_t>& n) {
    if (n) return add(*n);
    sep();
    out_ += "NULL";
    return *this;
  }
  std::string text() const { return out_ + "}"; }

 private:
  void sep() {
    if (out_.size() > 1) out_ += ',';
  }
  std::string out_ = "{";
};

// A store of the commit (its index in the results) and a seq of it.
struct StoreSeq {
  std::size_t store = 0;
  std::int64_t seq = 0;
  bool operator==(const StoreSeq&) const = default;
};
struct StoreSeqHash {
  std::size_t operator()(const StoreSeq& k) const noexcept {
    return std::hash<std::int64_t>{}(k.seq) * 31 + k.store;
  }
};
struct StoreUidHash {
  std::size_t operator()(const std::pair<std::size_t, std::string_view>& k) const noexcept {
    return std::hash<std::string_view>{}(k.second) * 31 + k.first;
  }
};

/// The month (UTC) `ms` falls in, as [start, end) in ms and its name.
struct Month {
  std::int64_t start = 0;
  std::int64_t end = 0;
  std::string name;  ///< events_YYYYMM
};

Month month_of(std::int64_t ms) {
  using namespace std::chrono;
  const sys_days day = floor<days>(sys_time<milliseconds>(milliseconds(ms)));
  const year_month_day ymd(day);
  const year_month first = ymd.year() / ymd.month();
  const sys_days start = sys_days(first / 1);
  const sys_days end = sys_days((first + months(1)) / 1);
  return {duration_cast<milliseconds>(start.time_since_epoch()).count(),
          duration_cast<milliseconds>(end.time_since_epoch()).count(),
          fmt::format("events_{:04d}{:02d}", static_cast<int>(ymd.year()),
                      static_cast<unsigned>(ymd.month()))};
}

/// Reconnection backoff after a lost connection: doubles to this.
constexpr auto kMaxBackoff = std::chrono::seconds(30);
constexpr auto kConnectTimeout = std::chrono::seconds(10);

}  // namespace

struct PgHqStore::Impl {
  std::string uri;
  std::filesystem::path password_file;
  std::string application_name;
  /// The views' connections: PostgreSQL refuses every write on them.
  bool read_only = false;
  std::optional<db::pg::Connection> conn;
  std::string worker;
  IngestLimits limits;
  /// The received times the partitions known to exist cover: [lo, hi).
  std::int64_t partitions_lo = 0, partitions_hi = 0;
  std::chrono::steady_clock::time_point next_connect{};
  std::chrono::milliseconds backoff{0};
  /// The COPY text of the last commit, kept for its capacity: grown anew
  /// for each commit it cost a worker page faults at every one.
  std::string copy;

  /// The connection, re-opened when it was lost (not before its backoff).
  Result<db::pg::Connection*> connection();
  /// Notes a failure: a lost connection is dropped, to be re-opened.
  Error failed(Error e);
  /// Creates the partitions of `ms`'s month and the next, unless known.
  Status ensure_partitions(std::int64_t ms);
  Status migrate();
  Result<int> version();
};

Result<db::pg::Connection*> PgHqStore::Impl::connection() {
  if (conn && !conn->broken()) return &*conn;
  conn.reset();
  const auto now = std::chrono::steady_clock::now();
  if (now < next_connect) {
    return Error{
        fmt::format(
            "PostgreSQL at {} is out of reach; trying again in {} ms",
            config::redact_postgresql_uri(uri),
            std::chrono::duration_cast<std::chrono::milliseconds>(next_connect - now).count()),
        db::pg::kConnectionLost};
  }
  auto c = db::pg::Connection::connect(uri, password_file, application_name, kConnectTimeout);
  if (!c) {
    backoff = std::clamp<std::chrono::milliseconds>(backoff * 2, std::chrono::milliseconds(500),
                                                    kMaxBackoff);
    next_connect = now + backoff;
    return c.error();
  }
  if (backoff.count() > 0) {
    // Debug only: the ingest says it once ("the database answers again",
    // hq/ingest.cpp), with how long it lasted and what it cost.
    log::debug("hq: connected to PostgreSQL again ({})", c->describe());
  }
  if (read_only) {
    if (auto st = c->exec("SET default_transaction_read_only = on"); !st) return st.error();
  }
  backoff = std::chrono::milliseconds(0);
  partitions_lo = partitions_hi = 0;
  conn = std::move(*c);
  return &*conn;
}

Error PgHqStore::Impl::failed(Error e) {
  if (conn && conn->broken()) {
    conn.reset();
    e.code = db::pg::kConnectionLost;
  }
  if (conn) {
    // A failed statement aborts the transaction; leave none open.
    (void)conn->exec("ROLLBACK");
  }
  return e;
}

Result<int> PgHqStore::Impl::version() {
  auto c = connection();
  if (!c) return c.error();
  auto marked = (*c)->exec("SELECT to_regclass('storewatch_hq_schema') IS NOT NULL");
  if (!marked) return failed(marked.error());
  if (marked->boolean(0, 0)) {
    auto v = (*c)->exec(fmt::format("SELECT max(version) FROM {}", kSchemaTable));
    if (!v) return failed(v.error());
    return static_cast<int>(v->optional_int64(0, 0).value_or(0));
  }
  // Not marked: empty (ours to create), or someone else's.
  auto tables = (*c)->exec(
      "SELECT string_agg(c.relname, ', ' ORDER BY c.relname), count(*) FROM pg_class c "
      "JOIN pg_namespace n ON n.oid = c.relnamespace "
      "WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname = current_schema()");
  if (!tables) return failed(tables.error());
  if (tables->int64(0, 1) > 0) {
    std::string names(tables->text(0, 0));
    if (names.size() > 80) names = names.substr(0, 77) + "...";
    return Error{fmt::format(
        "the PostgreSQL database {} is not storewatch HQ's: it holds other tables ({}) and no "
        "{}; give HQ a database of its own (createdb storewatch)",
        (*c)->describe(), names, kSchemaTable)};
  }
  return 0;
}

Status PgHqStore::Impl::migrate() {
  auto c = connection();
  if (!c) return c.error();
  db::pg::Connection& db = **c;
  // One worker migrates; the others wait for it and find nothing to do.
  if (auto st = db.exec("BEGIN"); !st) return failed(st.error());
  if (auto st =
          db.exec(fmt::format("SELECT pg_advisory_xact_lock({}, {})", kLockClass, kMigrationLock));
      !st) {
    return failed(st.error());
  }
  auto v = version();
  if (!v) return failed(v.error());
  if (*v > kMigrations.back().version) {
    (void)db.exec("ROLLBACK");
    return Error{fmt::format(
        "the PostgreSQL database {} has schema version {}, newer than this storewatch ({}): "
        "upgrade storewatch",
        db.describe(), *v, kMigrations.back().version)};
  }
  if (*v == 0) {
    if (auto st = db.exec(fmt::format("CREATE TABLE {} (version integer PRIMARY KEY, "
                                      "applied_at timestamptz NOT NULL DEFAULT now())",
                                      kSchemaTable));
        !st) {
      return failed(st.error());
    }
  }
  for (const PgMigration& m : kMigrations) {
    if (m.version <= *v) continue;
    if (auto st = db.exec(m.sql); !st) return failed(st.error());
    if (auto st =
            db.exec(fmt::format("INSERT INTO {} (version) VALUES ({})", kSchemaTable, m.version));
        !st) {
      return failed(st.error());
    }
    log::info("hq: PostgreSQL schema of {} migrated to version {}", db.describe(), m.version);
  }
  if (auto st = db.exec("COMMIT"); !st) return failed(st.error());
  return {};
}

Status PgHqStore::Impl::ensure_partitions(std::int64_t ms) {
  if (ms >= partitions_lo && ms < partitions_hi) return {};
  auto c = connection();
  if (!c) return c.error();
  db::pg::Connection& db = **c;
  const Month now = month_of(ms);
  const Month next = month_of(now.end);
  if (auto st = db.exec("BEGIN"); !st) return failed(st.error());
  if (auto st =
          db.exec(fmt::format("SELECT pg_advisory_xact_lock({}, {})", kLockClass, kPartitionLock));
      !st) {
    return failed(st.error());
  }
  for (const Month& m : {now, next}) {
    // The lock serialises creators; IF NOT EXISTS makes the others no-ops.
    const std::string sql = fmt::format(
        "CREATE TABLE IF NOT EXISTS {0} PARTITION OF events FOR VALUES FROM ({1}) TO ({2}); "
        "CREATE UNIQUE INDEX IF NOT EXISTS {0}_store_seq ON {0} (store, seq)",
        m.name, m.start, m.end);
    if (auto st = db.exec(sql); !st) return failed(st.error());
  }
  if (auto st = db.exec("COMMIT"); !st) return failed(st.error());
  partitions_lo = now.start;
  partitions_hi = next.end;
  return {};
}

PgHqStore::PgHqStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PgHqStore::~PgHqStore() = default;

int PgHqStore::schema_version() {
  return kMigrations.back().version;
}

std::string PgHqStore::name() const {
  return config::redact_postgresql_uri(impl_->uri);
}

Result<std::unique_ptr<PgHqStore>> PgHqStore::open(const config::HqConfig& config, HqOpen mode,
                                                   const std::string& application_name) {
  auto impl = std::make_unique<Impl>();
  impl->uri = config.postgresql;
  impl->password_file = config.database_password_file;
  impl->application_name = application_name;
  impl->read_only = mode == HqOpen::read_only;
  auto c = impl->connection();
  if (!c) return c.error();
  if (mode == HqOpen::read_write) {
    if (auto st = impl->migrate(); !st) return st.error();
  } else {
    auto v = impl->version();
    if (!v) return v.error();
    if (*v == 0) {
      return Error{fmt::format(
          "the PostgreSQL database {} holds no HQ data yet — has `storewatch hq run` ever run "
          "with it?",
          (*c)->describe())};
    }
    if (*v > kMigrations.back().version) {
      return Error{fmt::format(
          "the PostgreSQL database {} has schema version {}, newer than this storewatch ({}): "
          "upgrade storewatch",
          (*c)->describe(), *v, kMigrations.back().version)};
    }
    if (*v < kMigrations.back().version) {
      return Error{fmt::format(
          "the PostgreSQL database {} has schema version {}, older than this storewatch ({}): "
          "start `storewatch hq run` once to upgrade it",
          (*c)->describe(), *v, kMigrations.back().version)};
    }
  }
  return std::unique_ptr<PgHqStore>(new PgHqStore(std::move(impl)));
}

void PgHqStore::set_worker(std::string worker) {
  impl_->worker = std::move(worker);
}

void PgHqStore::set_limits(const IngestLimits& limits) {
  impl_->limits = limits;
}

Result<std::vector<Ingested>> PgHqStore::ingest(std::span<const wire::Batch> batches,
                                                WallTime received) {
  Impl& s = *impl_;
  const std::int64_t now = to_ms(received);
  if (auto st = s.ensure_partitions(now); !st) return st.error();
  auto c = s.connection();
  if (!c) return c.error();
  db::pg::Connection& db = **c;

  // The stores, in order of first appearance.
  std::vector<Ingested> out;
  std::map<std::string, std::size_t, std::less<>> index;
  for (const wire::Batch& b : batches) {
    if (index.emplace(b.store, out.size()).second) out.push_back(Ingested{b.store});
  }
  if (out.empty()) return out;
  ArrayText store_ids;
  for (const Ingested& i : out) store_ids.add(std::string_view(i.store));
  const std::string stores_text = store_ids.text();

  if (auto st = db.exec("BEGIN"); !st) return s.failed(st.error());
  // Each store's lock, in one order: two workers never wait on each other
  // in a circle.
  if (auto st = db.exec(fmt::format("SELECT pg_advisory_xact_lock({}, k) FROM (SELECT DISTINCT "
                                    "hashtext(s) AS k FROM unnest($1::text[]) s ORDER BY k) q",
                                    kLockClass),
                        Params().add(stores_text));
      !st) {
    return s.failed(st.error());
  }
  struct Before {
    std::int64_t acked = 0;
    std::int64_t max = 0;
  };
  std::vector<Before> before(out.size());
  for (Ingested& i : out) i.known = false;
  {
    auto rows = db.exec("SELECT store, acked_seq, max_seq FROM stores WHERE store = ANY($1)",
                        Params().add(stores_text));
    if (!rows) return s.failed(rows.error());
    for (int r = 0; r < rows->size(); ++r) {
      auto it = index.find(rows->text(r, 0));
      if (it == index.end()) continue;
      out[it->second].known = true;
      before[it->second] = {std::max<std::int64_t>(rows->int64(r, 1), 0),
                            std::max<std::int64_t>(rows->int64(r, 2), 0)};
    }
    for (std::size_t i = 0; i < out.size(); ++i) out[i].acked_seq = before[i].acked;
  }

  // What is already stored of the seqs that may be: at or below the highest
  // seq stored for the store. Above it nothing is. Keyed by (store index,
  // seq); the uids are the events' own or, for rows read, in `read_uids`.
  std::size_t events_total = 0;
  for (const wire::Batch& b : batches) events_total += b.events.size();
  std::unordered_map<StoreSeq, std::string_view, StoreSeqHash> stored;
  stored.reserve(events_total);
  std::vector<std::string> read_uids;
  {
    ArrayText lookup_stores, lookup_seqs;
    bool any = false;
    for (const wire::Batch& b : batches) {
      const std::size_t i = index.at(b.store);
      for (const wire::Event& e : b.events) {
        if (e.seq <= before[i].max) {
          lookup_stores.add(std::string_view(b.store));
          lookup_seqs.add(e.seq);
          any = true;
        }
      }
    }
    if (any) {
      auto rows = db.exec(
          "SELECT e.store, e.seq, e.uid FROM events e JOIN unnest($1::text[], $2::bigint[]) "
          "AS k(store, seq) ON e.store = k.store AND e.seq = k.seq",
          Params().add(lookup_stores.text()).add(lookup_seqs.text()));
      if (!rows) return s.failed(rows.error());
      read_uids.reserve(static_cast<std::size_t>(rows->size()));  // no move: views stay valid
      for (int r = 0; r < rows->size(); ++r) {
        const auto it = index.find(rows->text(r, 0));
        if (it == index.end()) continue;
        read_uids.emplace_back(rows->text(r, 2));
        stored[StoreSeq{it->second, rows->int64(r, 1)}] = read_uids.back();
      }
    }
  }

  // Decide each event; what is new goes into one COPY.
  std::string worker_column = "\\N";
  if (!s.worker.empty()) {
    worker_column.clear();
    db::pg::copy_escape(worker_column, s.worker);
  }
  const std::string now_text = std::to_string(now);
  std::string& copy = s.copy;
  copy.clear();
  std::vector<std::vector<std::int64_t>> inserted_seqs(out.size());
  // Each incident's event of the highest seq in this commit, found by
  // (store index, incident uid).
  struct IncidentRow {
    std::size_t store = 0;
    std::string_view uid;
    std::int64_t seq = 0;
    const wire::Event* event = nullptr;
  };
  std::vector<IncidentRow> incidents;
  std::unordered_map<std::pair<std::size_t, std::string_view>, std::size_t, StoreUidHash>
      incident_index;
  incident_index.reserve(events_total);
  std::string event_text;
  for (const wire::Batch& b : batches) {
    const std::size_t i = index.at(b.store);
    Ingested& in = out[i];
    std::string store_column;
    db::pg::copy_escape(store_column, b.store);
    for (const wire::Event& e : b.events) {
      if (e.seq - before[i].acked > s.limits.max_seq_jump) {
        if (in.refused++ == 0) in.refused_seq = e.seq;
        continue;
      }
      // Stored already (at or below acked_seq it was, even where retention
      // has dropped it since)?
      if (e.seq <= before[i].acked) {
        ++in.duplicates;
        const auto found = stored.find(StoreSeq{i, e.seq});
        if (found != stored.end() && found->second != e.uid) ++in.conflicts;
        continue;
      }
      if (auto [found, is_new] = stored.try_emplace(StoreSeq{i, e.seq}, e.uid); !is_new) {
        ++in.duplicates;
        if (found->second != e.uid) ++in.conflicts;
        continue;
      }
      ++in.inserted;
      inserted_seqs[i].push_back(e.seq);
      if (e.sent_text.empty()) event_text = e.text();
      const std::string_view body = e.sent_text.empty() ? event_text : e.sent_text;
      copy += store_column;
      copy += '\t';
      copy += std::to_string(e.seq);
      copy += '\t';
      db::pg::copy_escape(copy, e.uid);
      copy += '\t';
      db::pg::copy_escape(copy, e.incident);
      copy += '\t';
      db::pg::copy_escape(copy, e.type);
      copy += '\t';
      db::pg::copy_escape(copy, e.at);
      copy += '\t';
      db::pg::copy_escape(copy, e.actor);
      copy += '\t';
      db::pg::copy_escape(copy, body);
      copy += '\t';
      copy += now_text;
      copy += '\t';
      copy += worker_column;
      copy += '\n';
      auto [row, first] =
          incident_index.try_emplace(std::pair{i, std::string_view(e.incident)}, incidents.size());
      if (first) {
        incidents.push_back(IncidentRow{i, e.incident, e.seq, &e});
      } else if (e.seq > incidents[row->second].seq) {
        incidents[row->second].seq = e.seq;
        incidents[row->second].event = &e;
      }
    }
  }
  // In one order, whatever order the batches came in.
  std::sort(incidents.begin(), incidents.end(), [](const IncidentRow& a, const IncidentRow& b) {
    return std::tie(a.store, a.uid) < std::tie(b.store, b.uid);
  });

  // Stores first seen now, created by their first event stored.
  {
    ArrayText created;
    bool any = false;
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (!out[i].known && out[i].inserted > 0) {
        created.add(std::string_view(out[i].store));
        out[i].known = true;
        out[i].new_store = true;
        any = true;
      }
    }
    if (any) {
      auto st = db.exec(
          "INSERT INTO stores (store) SELECT unnest($1::text[]) ON CONFLICT (store) DO NOTHING",
          Params().add(created.text()));
      if (!st) return s.failed(st.error());
    }
  }
  if (!copy.empty()) {
    if (auto st = db.copy_in("COPY events (store, seq, uid, incident_uid, type, at, actor, body, "
                             "received, worker) FROM STDIN",
                             copy);
        !st) {
      return s.failed(st.error());
    }
  }

  // Each incident's state from its highest seq of this commit, kept only
  // when higher than the one stored.
  if (!incidents.empty()) {
    ArrayText st_store, st_uid, st_seq, st_state, st_probe, st_severity, st_detect, st_snapshot;
    std::string snapshot_text;
    for (const IncidentRow& row : incidents) {
      const wire::Event& e = *row.event;
      const detail::IncidentColumns columns = detail::incident_columns(e, snapshot_text);
      st_store.add(std::string_view(out[row.store].store));
      st_uid.add(std::string_view(e.incident));
      st_seq.add(e.seq);
      st_state.add(columns.state);
      st_probe.add(columns.probe);
      st_severity.add(columns.severity);
      st_detect.add(columns.t_detect_ms);
      st_snapshot.add(columns.snapshot);
    }
    auto st = db.exec(
        "INSERT INTO incidents (store, uid, seq, state, probe, severity, t_detect_ms, "
        "first_seen, snapshot) SELECT k.store, k.uid, k.seq, k.state, k.probe, k.severity, "
        "k.t_detect, $9, k.snapshot FROM unnest($1::text[], $2::text[], $3::bigint[], "
        "$4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[]) "
        "AS k(store, uid, seq, state, probe, severity, t_detect, snapshot) "
        "ON CONFLICT (store, uid) DO UPDATE SET seq = excluded.seq, state = excluded.state, "
        "probe = excluded.probe, severity = excluded.severity, "
        "t_detect_ms = excluded.t_detect_ms, snapshot = excluded.snapshot "
        "WHERE excluded.seq > incidents.seq",
        Params()
            .add(st_store.text())
            .add(st_uid.text())
            .add(st_seq.text())
            .add(st_state.text())
            .add(st_probe.text())
            .add(st_severity.text())
            .add(st_detect.text())
            .add(st_snapshot.text())
            .add(now));
    if (!st) return s.failed(st.error());
  }

  // Walk each store's acked_seq up through what is stored above it.
  ArrayText u_store, u_acked, u_max, u_seen, u_refused, u_conflicts, u_gap;
  bool any_update = false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    Ingested& in = out[i];
    if (!in.known) continue;
    std::vector<std::int64_t>& above = inserted_seqs[i];
    if (before[i].max > before[i].acked) {
      // A gap before this commit: what it had stored above acked_seq counts.
      auto rows = db.exec("SELECT seq FROM events WHERE store = $1 AND seq > $2",
                          Params().add(std::string_view(in.store)).add(before[i].acked));
      if (!rows) return s.failed(rows.error());
      for (int r = 0; r < rows->size(); ++r) above.push_back(rows->int64(r, 0));
    }
    std::sort(above.begin(), above.end());
    above.erase(std::unique(above.begin(), above.end()), above.end());
    in.acked_seq = before[i].acked;
    for (std::int64_t seq : above) {
      if (seq <= in.acked_seq) continue;
      if (seq != in.acked_seq + 1) break;
      ++in.acked_seq;
    }
    const std::int64_t max_after =
        std::max(before[i].max, above.empty() ? std::int64_t{0} : above.back());
    in.gap = max_after > in.acked_seq;
    in.acked_changed = in.acked_seq != before[i].acked;
    const bool seen = in.inserted > 0 || in.duplicates > in.conflicts;
    u_store.add(std::string_view(in.store));
    u_acked.add(in.acked_seq);
    u_max.add(max_after);
    u_seen.add(seen);
    u_refused.add(static_cast<std::int64_t>(in.refused));
    u_conflicts.add(static_cast<std::int64_t>(in.conflicts));
    u_gap.add(in.gap);
    any_update = true;
  }
  if (any_update) {
    // A gap is known by its first missing seq: while that stays the same it
    // keeps its age; a new one starts afresh. Right-hand sides read the row
    // as it was.
    auto st = db.exec(
        "UPDATE stores s SET acked_seq = v.acked, max_seq = v.max, "
        "last_seen = CASE WHEN v.seen THEN greatest(COALESCE(s.last_seen, 0), $8) "
        "ELSE s.last_seen END, "
        "refused_seq_jump = s.refused_seq_jump + v.refused, "
        "refused_conflict = s.refused_conflict + v.conflicts, "
        "refused_at = CASE WHEN v.refused + v.conflicts > 0 THEN $8 ELSE s.refused_at END, "
        "gap_from = CASE WHEN v.gap THEN v.acked + 1 END, "
        "gap_since = CASE WHEN NOT v.gap THEN NULL "
        "WHEN s.gap_from IS NOT DISTINCT FROM v.acked + 1 THEN s.gap_since ELSE $8 END, "
        "resync_at = CASE WHEN v.gap AND s.gap_from IS NOT DISTINCT FROM v.acked + 1 "
        "THEN s.resync_at END "
        "FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::boolean[], $5::bigint[], "
        "$6::bigint[], $7::boolean[]) AS v(store, acked, max, seen, refused, conflicts, gap) "
        "WHERE s.store = v.store",
        Params()
            .add(u_store.text())
            .add(u_acked.text())
            .add(u_max.text())
            .add(u_seen.text())
            .add(u_refused.text())
            .add(u_conflicts.text())
            .add(u_gap.text())
            .add(now));
    if (!st) return s.failed(st.error());
  }
  if (auto st = db.exec("COMMIT"); !st) return s.failed(st.error());
  return out;
}

Result<StatusRecorded> PgHqStore::record_status(const wire::StoreStatus& status,
                                                WallTime received) {
  Impl& s = *impl_;
  auto c = s.connection();
  if (!c) return c.error();
  // One statement, so its own transaction: migration 3's function.
  auto row = (*c)->exec(
      "SELECT outcome, new_store, session_before FROM storewatch_record_status($1, $2, $3, $4, "
      "$5, $6, $7, $8, $9)",
      Params()
          .add(std::string_view(status.store))
          .add(status.online)
          .add(status.session)
          .add(std::string_view(status.version))
          .add(std::string_view(dump(json(status.open))))
          .add(status.queued)
          .add(std::string_view(status.at))
          .add(to_ms(received))
          .add(s.limits.max_session_jump));
  if (!row) return s.failed(row.error());
  if (row->size() != 1) return Error{"storewatch_record_status returned no row"};
  StatusRecorded out;
  const std::int64_t outcome = row->int64(0, 0);
  out.new_store = row->text(0, 1) == "t";
  out.session_before = row->int64(0, 2);
  if (outcome == 2) {
    out.outcome = StatusRecorded::Outcome::session_jump;
  } else if (outcome == 1) {
    out.outcome = StatusRecorded::Outcome::stale;
    log::debug("hq: ignoring a status of store {} (session {}): older than the one recorded",
               status.store, status.session);
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::int64_t>>> PgHqStore::acked_seqs() {
  auto c = impl_->connection();
  if (!c) return c.error();
  auto rows = (*c)->exec("SELECT store, acked_seq FROM stores ORDER BY store COLLATE \"C\"");
  if (!rows) return impl_->failed(rows.error());
  std::vector<std::pair<std::string, std::int64_t>> out;
  out.reserve(static_cast<std::size_t>(rows->size()));
  for (int r = 0; r < rows->size(); ++r) out.emplace_back(rows->text(r, 0), rows->int64(r, 1));
  return out;
}

Result<std::int64_t> PgHqStore::acked_seq(const std::string& store) {
  auto c = impl_->connection();
  if (!c) return c.error();
  auto rows = (*c)->exec("SELECT acked_seq FROM stores WHERE store = $1",
                         Params().add(std::string_view(store)));
  if (!rows) return impl_->failed(rows.error());
  return rows->empty() ? std::int64_t{0} : rows->int64(0, 0);
}

Result<std::vector<ResyncDue>> PgHqStore::claim_resyncs(WallTime now, Millis after) {
  auto c = impl_->connection();
  if (!c) return c.error();
  const std::int64_t now_ms = to_ms(now);
  const std::int64_t due_before = now_ms - after.count();
  // One statement: of workers claiming at once, the row lock gives each
  // store to one, and the others see its resync_at and pass.
  auto rows = (*c)->exec(
      "UPDATE stores SET resync_at = $2, resyncs = resyncs + 1 WHERE gap_from IS NOT NULL "
      "AND gap_since <= $1 AND (resync_at IS NULL OR resync_at <= $1) "
      "RETURNING store, gap_from",
      Params().add(due_before).add(now_ms));
  if (!rows) return impl_->failed(rows.error());
  std::vector<ResyncDue> due;
  for (int r = 0; r < rows->size(); ++r)
    due.push_back({std::string(rows->text(r, 0)), rows->int64(r, 1)});
  std::sort(due.begin(), due.end(),
            [](const ResyncDue& a, const ResyncDue& b) { return a.store < b.store; });
  return due;
}

Result<json> PgHqStore::stores_json() {
  auto c = impl_->connection();
  if (!c) return c.error();
  auto rows = (*c)->exec(fmt::format(
      "SELECT s.store, s.online, s.acked_seq, s.last_seen, s.session, s.version, s.queued, "
      "(SELECT count(*) FROM incidents i WHERE i.store = s.store AND {}), s.gap_from, "
      "s.resyncs, s.refused_seq_jump, s.refused_conflict, s.refused_session_jump, s.refused_at "
      "FROM stores s ORDER BY s.store COLLATE \"C\"",
      kNotOpen));
  if (!rows) return impl_->failed(rows.error());
  json out = json::array();
  for (int r = 0; r < rows->size(); ++r) {
    const Rows& q = *rows;
    json store{
        {"store", std::string(q.text(r, 0))},
        {"online", q.boolean(r, 1)},
        {"acked_seq", q.int64(r, 2)},
        {"open_incidents", q.int64(r, 7)},
        {"last_seen", nullptr},
        {"session", nullptr},
        {"version", nullptr},
        {"queued", nullptr},
    };
    if (auto t = q.optional_int64(r, 3)) {
      store["last_seen"] = format_rfc3339(WallTime(std::chrono::milliseconds(*t)));
    }
    if (auto v = q.optional_int64(r, 4)) store["session"] = *v;
    if (auto v = q.optional_text(r, 5); v && !v->empty()) store["version"] = *v;
    if (auto v = q.optional_int64(r, 6)) store["queued"] = *v;
    store["gap_from"] = nullptr;
    if (auto v = q.optional_int64(r, 8)) store["gap_from"] = *v;
    store["resyncs"] = q.int64(r, 9);
    store["refused"] = json{{"seq_jump", q.int64(r, 10)},
                            {"conflict", q.int64(r, 11)},
                            {"session_jump", q.int64(r, 12)}};
    store["refused_at"] = nullptr;
    if (auto t = q.optional_int64(r, 13)) {
      store["refused_at"] = format_rfc3339(WallTime(std::chrono::milliseconds(*t)));
    }
    out.push_back(std::move(store));
  }
  return out;
}

Result<json> PgHqStore::incidents_json(const std::optional<std::string>& store, bool open_only) {
  auto c = impl_->connection();
  if (!c) return c.error();
  // Ordered as the SQLite backend orders (byte order of the uids: "C").
  auto rows =
      (*c)->exec(fmt::format("SELECT store, uid, snapshot FROM incidents "
                             "WHERE ($1::text IS NULL OR store = $1) AND (NOT $2::boolean OR {}) "
                             "ORDER BY COALESCE(t_detect_ms, first_seen), uid COLLATE \"C\", "
                             "store COLLATE \"C\"",
                             kNotOpen),
                 Params().add(store).add(open_only));
  if (!rows) return impl_->failed(rows.error());
  json out = json::array();
  for (int r = 0; r < rows->size(); ++r) {
    json incident = json::parse(rows->text(r, 2), nullptr, /*allow_exceptions=*/false);
    if (!incident.is_object()) {
      return Error{fmt::format("HQ database {}: the snapshot of incident {} of store {} is damaged",
                               name(), rows->text(r, 1), rows->text(r, 0))};
    }
    incident["store"] = std::string(rows->text(r, 0));
    out.push_back(std::move(incident));
  }
  return out;
}

Result<std::vector<ReportIncident>> PgHqStore::report_incidents(WallTime since, WallTime until) {
  auto c = impl_->connection();
  if (!c) return c.error();
  db::pg::Connection& db = **c;
  auto rows = db.exec(
      "SELECT i.store, i.snapshot, EXISTS (SELECT 1 FROM events e WHERE e.store = i.store "
      "AND e.incident_uid = i.uid AND e.type = 'acknowledged' "
      "AND (left(e.actor, 4) = 'cli:' OR left(e.actor, 3) = 'hq:')), i.uid "
      "FROM incidents i WHERE i.t_detect_ms >= $1 AND i.t_detect_ms <= $2 "
      "ORDER BY i.store COLLATE \"C\", i.t_detect_ms, i.uid COLLATE \"C\"",
      Params().add(to_ms(since)).add(to_ms(until)));
  if (!rows) return impl_->failed(rows.error());
  std::vector<ReportIncident> out;
  for (int r = 0; r < rows->size(); ++r) {
    json snapshot = json::parse(rows->text(r, 1), nullptr, /*allow_exceptions=*/false);
    if (!snapshot.is_object()) {
      return Error{fmt::format("HQ database {}: an incident snapshot of store {} is damaged",
                               name(), rows->text(r, 0))};
    }
    out.push_back({std::string(rows->text(r, 0)), std::move(snapshot), rows->boolean(r, 2), {}});
    // The resolved and reopened events of a reopened one (few): the spans it
    // was up in between do not count as downtime.
    const auto reopens = out.back().snapshot.find("reopen_count");
    if (reopens == out.back().snapshot.end() || !reopens->is_number_integer() ||
        reopens->get<std::int64_t>() <= 0) {
      continue;
    }
    auto events = db.exec(
        "SELECT type, at, body FROM events WHERE store = $1 AND incident_uid = $2 "
        "AND type IN ('resolved', 'reopened') ORDER BY seq",
        Params().add(rows->text(r, 0)).add(rows->text(r, 3)));
    if (!events) return impl_->failed(events.error());
    for (int k = 0; k < events->size(); ++k) {
      out.back().reopen_events.push_back(
          json{{"type", std::string(events->text(k, 0))},
               {"at", std::string(events->text(k, 1))},
               {"body", json::parse(events->text(k, 2), nullptr, /*allow_exceptions=*/false)}});
    }
  }
  return out;
}

Status PgHqStore::record_worker(const WorkerHealth& w) {
  auto c = impl_->connection();
  if (!c) return c.error();
  auto optional_ms = [](WallTime t) {
    return t == WallTime{} ? std::nullopt : std::optional<std::int64_t>(to_ms(t));
  };
  auto st = (*c)->exec(
      "INSERT INTO workers (worker, host, pid, started, heartbeat, last_commit, batches, "
      "inserted, broker_connected, last_error, last_error_at) VALUES ($1, $2, $3, $4, $5, $6, "
      "$7, $8, $9, $10, $11) ON CONFLICT (worker) DO UPDATE SET host = excluded.host, "
      "pid = excluded.pid, started = excluded.started, heartbeat = excluded.heartbeat, "
      "last_commit = excluded.last_commit, batches = excluded.batches, "
      "inserted = excluded.inserted, broker_connected = excluded.broker_connected, "
      "last_error = excluded.last_error, last_error_at = excluded.last_error_at",
      Params()
          .add(std::string_view(w.worker))
          .add(std::string_view(w.host))
          .add(w.pid)
          .add(to_ms(w.started))
          .add(to_ms(w.heartbeat))
          .add(optional_ms(w.last_commit))
          .add(w.batches)
          .add(w.inserted)
          .add(w.broker_connected)
          .add(w.last_error.empty() ? std::nullopt : std::optional<std::string>(w.last_error))
          .add(optional_ms(w.last_error_at)));
  if (!st) return impl_->failed(st.error());
  return {};
}

Result<std::vector<WorkerHealth>> PgHqStore::workers() {
  auto c = impl_->connection();
  if (!c) return c.error();
  auto rows = (*c)->exec(
      "SELECT worker, host, pid, started, heartbeat, last_commit, batches, inserted, "
      "broker_connected, last_error, last_error_at FROM workers ORDER BY worker COLLATE \"C\"");
  if (!rows) return impl_->failed(rows.error());
  auto at = [](std::optional<std::int64_t> ms) {
    return ms ? WallTime(std::chrono::milliseconds(*ms)) : WallTime{};
  };
  std::vector<WorkerHealth> out;
  for (int r = 0; r < rows->size(); ++r) {
    const Rows& q = *rows;
    out.push_back(WorkerHealth{std::string(q.text(r, 0)), std::string(q.text(r, 1)), q.int64(r, 2),
                               at(q.int64(r, 3)), at(q.int64(r, 4)), at(q.optional_int64(r, 5)),
                               q.int64(r, 6), q.int64(r, 7), q.boolean(r, 8),
                               q.optional_text(r, 9).value_or(""), at(q.optional_int64(r, 10))});
  }
  return out;
}

namespace {

constexpr int kPruneLock = 3;

/// The end of the month a partition named events_YYYYMM holds, in ms; none
/// for a name not of that shape (a table someone attached by hand).
std::optional<std::int64_t> partition_end(std::string_view name) {
  constexpr std::string_view kPrefix = "events_";
  if (name.size() != kPrefix.size() + 6 || name.substr(0, kPrefix.size()) != kPrefix) {
    return std::nullopt;
  }
  int yyyymm = 0;
  for (char c : name.substr(kPrefix.size())) {
    if (c < '0' || c > '9') return std::nullopt;
    yyyymm = yyyymm * 10 + (c - '0');
  }
  const int mm = yyyymm % 100;
  if (mm < 1 || mm > 12) return std::nullopt;
  using namespace std::chrono;
  const year_month first = year(yyyymm / 100) / mm;
  const sys_days end = sys_days((first + months(1)) / 1);
  return duration_cast<milliseconds>(end.time_since_epoch()).count();
}

}  // namespace

Result<Pruned> PgHqStore::prune(WallTime now, Millis retention) {
  Impl& s = *impl_;
  auto c = s.connection();
  if (!c) return c.error();
  db::pg::Connection& db = **c;
  const std::int64_t cutoff = to_ms(now) - retention.count();
  Pruned out;
  auto parts = db.exec(
      "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
      "WHERE i.inhparent = 'events'::regclass ORDER BY c.relname");
  if (!parts) return s.failed(parts.error());
  std::vector<std::string> due;
  for (int r = 0; r < parts->size(); ++r) {
    const auto end = partition_end(parts->text(r, 0));
    if (end && *end <= cutoff) due.emplace_back(parts->text(r, 0));
  }
  if (due.empty()) return out;
  // One month per call: a month of a large fleet is tens of millions of rows
  // to count and to match against the incidents.
  const std::string& name = due.front();
  out.more = due.size() > 1;
  if (auto st = db.exec("BEGIN"); !st) return s.failed(st.error());
  // DROP takes the whole table's lock: wait for the commits in flight, not
  // for long (the next call tries again), and let one worker prune at a time.
  if (auto st = db.exec("SET LOCAL lock_timeout = '5s'"); !st) return s.failed(st.error());
  auto mine =
      db.exec(fmt::format("SELECT pg_try_advisory_xact_lock({}, {})", kLockClass, kPruneLock));
  if (!mine) return s.failed(mine.error());
  if (!mine->boolean(0, 0)) {
    (void)db.exec("ROLLBACK");
    out.more = false;
    return out;  // another worker is at it
  }
  // The partition may be gone since it was listed (another worker).
  auto still = db.exec("SELECT to_regclass($1) IS NOT NULL", Params().add(std::string_view(name)));
  if (!still) return s.failed(still.error());
  if (!still->boolean(0, 0)) {
    (void)db.exec("ROLLBACK");
    return out;
  }
  const std::string table = db::pg::quote_identifier(name);
  auto counted = db.exec(fmt::format("SELECT count(*) FROM {}", table));
  if (!counted) return s.failed(counted.error());
  // A closed incident whose newest event (the seq its row holds) goes.
  auto closed = db.exec(
      fmt::format("DELETE FROM incidents i USING {} e WHERE e.store = i.store AND e.seq = i.seq "
                  "AND e.incident_uid = i.uid AND i.state = 'closed'",
                  table));
  if (!closed) return s.failed(closed.error());
  if (auto st = db.exec(fmt::format("DROP TABLE {}", table)); !st) return s.failed(st.error());
  if (auto st = db.exec("COMMIT"); !st) return s.failed(st.error());
  // The partitions ingest knows of may be among those gone.
  s.partitions_lo = s.partitions_hi = 0;
  out.events = counted->int64(0, 0);
  out.incidents = closed->affected();
  out.partitions.push_back(name);
  return out;
}

Status ensure_event_partitions(db::pg::Connection& db, std::int64_t from_ms, std::int64_t to_ms) {
  if (auto st = db.exec("BEGIN"); !st) return st.error();
  if (auto st =
          db.exec(fmt::format("SELECT pg_advisory_xact_lock({}, {})", kLockClass, kPartitionLock));
      !st) {
    (void)db.exec("ROLLBACK");
    return st.error();
  }
  for (Month m = month_of(from_ms);; m = month_of(m.end)) {
    const std::string sql = fmt::format(
        "CREATE TABLE IF NOT EXISTS {0} PARTITION OF events FOR VALUES FROM ({1}) TO ({2}); "
        "CREATE UNIQUE INDEX IF NOT EXISTS {0}_store_seq ON {0} (store, seq)",
        m.name, m.start, m.end);
    if (auto st = db.exec(sql); !st) {
      (void)db.exec("ROLLBACK");
      return st.error();
    }
    if (m.end > to_ms) break;
  }
  if (auto st = db.exec("COMMIT"); !st) return st.error();
  return {};
}

}  // namespace storewatch::hq
