#include "hq/migrate.h"

#include <fmt/format.h>

#include <chrono>
#include <functional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "db/postgres.h"
#include "db/sqlite.h"
#include "hq/hq_database.h"
#include "hq/hq_store.h"
#include "hq/pg_store.h"

namespace storewatch::hq {
namespace {

using db::pg::Params;

/// Events per COPY and transaction: big enough that a round trip is small
/// beside it, small enough that a chunk's memory stays a few megabytes.
constexpr int kChunk = 10'000;

/// The columns copied, in the order of both schemas.
constexpr std::string_view kEventColumns =
    "store, seq, uid, incident_uid, type, at, actor, body, received, worker";
constexpr std::string_view kIncidentColumns =
    "store, uid, seq, state, probe, severity, t_detect_ms, first_seen, snapshot";
constexpr std::string_view kStoreColumns =
    "store, acked_seq, max_seq, online, session, version, open_json, queued, status_at, "
    "last_seen, gap_from, gap_since, resync_at, resyncs, refused_seq_jump, refused_conflict, "
    "refused_session_jump, refused_at";

/// Appends the row `q` holds as one line of COPY text (every column as
/// SQLite writes it as text; NULL as \N).
void copy_row(std::string& out, const db::Statement& q, int columns) {
  for (int i = 0; i < columns; ++i) {
    if (i > 0) out += '\t';
    if (q.is_null(i)) {
      out += "\\N";
    } else {
      db::pg::copy_escape(out, q.text(i));
    }
  }
  out += '\n';
}

/// The SQLite file, checked to be an HQ database this build reads.
Result<db::Database> open_source(const std::filesystem::path& from) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(from, ec)) {
    return Error{
        fmt::format("{}: no such file (--from names HQ's SQLite database, e.g. "
                    "/var/lib/storewatch-hq/hq.db)",
                    from.string())};
  }
  auto db = db::Database::open(from, db::Database::Mode::read_only);
  if (!db) return db.error();
  auto tables = db->prepare(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
      "AND name IN ('stores', 'events', 'incidents')");
  if (!tables) return tables.error();
  auto row = tables->step();
  if (!row || !*row || tables->int64(0) != 3) {
    return Error{
        fmt::format("{} is not a storewatch HQ database (it has no stores, events and "
                    "incidents tables)",
                    from.string())};
  }
  tables->reset();
  // The schema version as `hq stores` wants it: older or newer is refused,
  // saying what to do.
  if (auto checked = HqStore::open(from, db::Database::Mode::read_only); !checked) {
    return checked.error();
  }
  return db;
}

std::int64_t count_of(db::Database& db, std::string_view sql) {
  auto q = db.prepare(sql);
  if (!q) return 0;
  auto row = q->step();
  return row && *row ? q->int64(0) : 0;
}

class Copier {
 public:
  Copier(db::Database& from, db::pg::Connection& to) : from_(from), to_(to) {}

  Status prepare();
  Status events(const MigrateProgress& progress, Migrated& out);
  Status incidents(Migrated& out);
  Status stores(Migrated& out);

 private:
  /// COPYs `rows` into the temporary `table` and runs `insert` (which moves
  /// them into the real one), in one transaction; the rows it changed.
  Result<std::int64_t> move(std::string_view table, std::string_view columns,
                            const std::string& rows, std::string_view insert);
  /// Creates the month partitions the events of this chunk go into.
  Status partitions_for(const std::vector<std::int64_t>& received);
  /// Reads every row of `q` (`columns` wide) into COPY text and hands it to
  /// `flush` kChunk rows at a time, with their number; `on_row` sees each
  /// row first. Stops at the first failure.
  Status chunks(db::Statement& q, int columns,
                const std::function<void(const db::Statement&)>& on_row,
                const std::function<Status(const std::string& rows, int n)>& flush);

  db::Database& from_;
  db::pg::Connection& to_;
  std::set<std::int64_t> months_;  // first ms of the months with a partition
};

Status Copier::prepare() {
  // Session-local staging tables, emptied by each commit.
  auto st = to_.exec(
      "CREATE TEMPORARY TABLE migrate_events (LIKE events) ON COMMIT DELETE ROWS; "
      "CREATE TEMPORARY TABLE migrate_incidents (LIKE incidents) ON COMMIT DELETE ROWS; "
      "CREATE TEMPORARY TABLE migrate_stores (LIKE stores) ON COMMIT DELETE ROWS");
  if (!st) return st.error();
  return {};
}

Result<std::int64_t> Copier::move(std::string_view table, std::string_view columns,
                                  const std::string& rows, std::string_view insert) {
  if (auto st = to_.exec("BEGIN"); !st) return st.error();
  auto fail = [this](Error e) -> Error {
    (void)to_.exec("ROLLBACK");
    return e;
  };
  if (auto st = to_.copy_in(fmt::format("COPY {} ({}) FROM STDIN", table, columns), rows); !st) {
    return fail(st.error());
  }
  // The planner knows nothing of a temporary table otherwise, and would
  // scan every partition of events for each chunk.
  if (auto st = to_.exec(fmt::format("ANALYZE {}", table)); !st) return fail(st.error());
  auto moved = to_.exec(insert);
  if (!moved) return fail(moved.error());
  if (auto st = to_.exec("COMMIT"); !st) return st.error();
  return moved->affected();
}

Status Copier::chunks(db::Statement& q, int columns,
                      const std::function<void(const db::Statement&)>& on_row,
                      const std::function<Status(const std::string& rows, int n)>& flush) {
  std::string rows;
  int in_chunk = 0;
  auto send = [&]() -> Status {
    if (in_chunk == 0) return {};
    auto st = flush(rows, in_chunk);
    rows.clear();
    in_chunk = 0;
    return st;
  };
  Status failed;
  auto st = q.each([&](const db::Statement& row) {
    copy_row(rows, row, columns);
    on_row(row);
    if (++in_chunk == kChunk) {
      failed = send();
      if (!failed) return false;
    }
    return true;
  });
  if (!st) return st;
  if (!failed) return failed;
  return send();
}

Status Copier::partitions_for(const std::vector<std::int64_t>& received) {
  using namespace std::chrono;
  for (std::int64_t ms : received) {
    const year_month_day ymd(floor<days>(sys_time<milliseconds>(milliseconds(ms))));
    const std::int64_t first =
        duration_cast<milliseconds>(sys_days(ymd.year() / ymd.month() / 1).time_since_epoch())
            .count();
    if (months_.insert(first).second) {
      if (auto st = ensure_event_partitions(to_, first, first); !st) return st;
    }
  }
  return {};
}

Status Copier::events(const MigrateProgress& progress, Migrated& out) {
  out.events = count_of(from_, "SELECT count(*) FROM events");
  if (progress) progress(0, out.events);
  auto q = from_.prepare(fmt::format("SELECT {} FROM events ORDER BY store, seq", kEventColumns));
  if (!q) return q.error();
  // Not already there by (store, seq) in any month: a re-run copies nothing
  // twice, and neither does a run after HQ stored some of them itself.
  const std::string insert = fmt::format(
      "INSERT INTO events ({0}) SELECT {0} FROM migrate_events m WHERE NOT EXISTS "
      "(SELECT 1 FROM events e WHERE e.store = m.store AND e.seq = m.seq) "
      "ON CONFLICT DO NOTHING",
      kEventColumns);
  std::vector<std::int64_t> received;
  std::int64_t done = 0;
  return chunks(
      *q, 10, [&](const db::Statement& row) { received.push_back(row.int64(8)); },
      [&](const std::string& rows, int n) -> Status {
        if (auto st = partitions_for(received); !st) return st;
        received.clear();
        auto moved = move("migrate_events", kEventColumns, rows, insert);
        if (!moved) return moved.error();
        out.events_copied += *moved;
        done += n;
        if (progress) progress(done, std::max(out.events, done));
        return {};
      });
}

Status Copier::incidents(Migrated& out) {
  auto q =
      from_.prepare(fmt::format("SELECT {} FROM incidents ORDER BY store, uid", kIncidentColumns));
  if (!q) return q.error();
  // The higher seq's state wins; the earliest first_seen stays.
  const std::string insert = fmt::format(
      "INSERT INTO incidents AS i ({0}) SELECT {0} FROM migrate_incidents "
      "ON CONFLICT (store, uid) DO UPDATE SET seq = excluded.seq, state = excluded.state, "
      "probe = excluded.probe, severity = excluded.severity, "
      "t_detect_ms = excluded.t_detect_ms, snapshot = excluded.snapshot, "
      "first_seen = least(i.first_seen, excluded.first_seen) "
      "WHERE excluded.seq > i.seq",
      kIncidentColumns);
  return chunks(
      *q, 9, [&](const db::Statement&) { ++out.incidents; },
      [&](const std::string& rows, int) -> Status {
        auto moved = move("migrate_incidents", kIncidentColumns, rows, insert);
        if (!moved) return moved.error();
        out.incidents_copied += *moved;
        return {};
      });
}

Status Copier::stores(Migrated& out) {
  // max_seq: the highest seq stored (never below acked_seq, whose events
  // retention may have pruned).
  auto q = from_.prepare(
      "SELECT s.store, s.acked_seq, max(s.acked_seq, COALESCE((SELECT max(e.seq) FROM events e "
      "WHERE e.store = s.store), 0)), s.online, s.session, s.version, s.open_json, s.queued, "
      "s.status_at, s.last_seen, s.gap_from, s.gap_since, s.resync_at, s.resyncs, "
      "s.refused_seq_jump, s.refused_conflict, s.refused_session_jump, s.refused_at "
      "FROM stores s ORDER BY s.store");
  if (!q) return q.error();
  std::string rows;
  auto st = q->each([&](const db::Statement& row) {
    copy_row(rows, row, 18);
    ++out.stores;
    return true;
  });
  if (!st) return st;
  if (rows.empty()) return {};
  // Each column's value after the copy, from the row there (s) and the
  // copied one (x). The status is the newer session's, as record_status
  // decides; the gap state goes with the higher acked_seq.
  struct Column {
    std::string_view name;
    std::string expr;
  };
  const std::string x_status =
      "(s.session IS NULL OR x.session > s.session OR (x.session = s.session AND "
      "(s.online IS DISTINCT FROM false OR NOT x.online)))";
  const std::string x_gap = "(x.acked_seq > s.acked_seq)";
  std::vector<Column> columns{
      {"acked_seq", "greatest(s.acked_seq, x.acked_seq)"},
      {"max_seq", "greatest(s.max_seq, x.max_seq)"},
      {"last_seen", "greatest(s.last_seen, x.last_seen)"},
      {"resyncs", "greatest(s.resyncs, x.resyncs)"},
      {"refused_seq_jump", "greatest(s.refused_seq_jump, x.refused_seq_jump)"},
      {"refused_conflict", "greatest(s.refused_conflict, x.refused_conflict)"},
      {"refused_session_jump", "greatest(s.refused_session_jump, x.refused_session_jump)"},
      {"refused_at", "greatest(s.refused_at, x.refused_at)"},
  };
  for (std::string_view name :
       {"online", "session", "version", "open_json", "queued", "status_at"}) {
    columns.push_back({name, fmt::format("CASE WHEN x.session IS NOT NULL AND {} THEN x.{} "
                                         "ELSE s.{} END",
                                         x_status, name, name)});
  }
  for (std::string_view name : {"gap_from", "gap_since", "resync_at"}) {
    columns.push_back(
        {name, fmt::format("CASE WHEN {} THEN x.{} ELSE s.{} END", x_gap, name, name)});
  }
  std::string names, values, old_values;
  for (const Column& c : columns) {
    if (!names.empty()) {
      names += ", ";
      values += ", ";
      old_values += ", ";
    }
    names += c.name;
    values += c.expr;
    old_values += fmt::format("s.{}", c.name);
  }
  // An UPDATE that changes nothing is not made (nor counted): a second run
  // writes nothing.
  const std::string insert = fmt::format(
      "WITH x AS (SELECT * FROM migrate_stores), "
      "created AS (INSERT INTO stores ({0}) SELECT {0} FROM x ON CONFLICT (store) DO NOTHING "
      "RETURNING store), "
      "changed AS (UPDATE stores s SET ({1}) = ROW({2}) FROM x WHERE s.store = x.store "
      "AND x.store NOT IN (SELECT store FROM created) "
      "AND ROW({2}) IS DISTINCT FROM ROW({3}) RETURNING s.store) "
      "SELECT (SELECT count(*) FROM created) + (SELECT count(*) FROM changed)",
      kStoreColumns, names, values, old_values);
  if (auto b = to_.exec("BEGIN"); !b) return b.error();
  auto fail = [this](Error e) -> Status {
    (void)to_.exec("ROLLBACK");
    return e;
  };
  if (auto c = to_.copy_in(fmt::format("COPY migrate_stores ({}) FROM STDIN", kStoreColumns), rows);
      !c) {
    return fail(c.error());
  }
  auto moved = to_.exec(insert);
  if (!moved) return fail(moved.error());
  if (auto c = to_.exec("COMMIT"); !c) return c.error();
  out.stores_copied = moved->int64(0, 0);
  return {};
}

}  // namespace

Result<Migrated> migrate_to_postgresql(const std::filesystem::path& from,
                                       const config::HqConfig& to,
                                       const MigrateProgress& progress) {
  const auto started = std::chrono::steady_clock::now();
  auto source = open_source(from);
  if (!source) return source.error();
  // Creates or migrates the schema (refusing a database that is not HQ's,
  // or newer than this build), as `hq run` would.
  {
    auto target = open_hq_database(to, HqOpen::read_write, "storewatch hq migrate");
    if (!target) return target.error();
  }
  auto conn = db::pg::Connection::connect(to.postgresql, to.database_password_file,
                                          "storewatch hq migrate", std::chrono::seconds(10));
  if (!conn) return conn.error();

  // One snapshot of the file: a consistent copy even if something writes it.
  if (auto st = source->exec("BEGIN"); !st) return st.error();
  Copier copier(*source, *conn);
  Migrated out;
  if (auto st = copier.prepare(); !st) return st.error();
  // Events first, then incidents, stores last: a run cut short leaves no
  // acked_seq in PostgreSQL above events that are not there.
  if (auto st = copier.events(progress, out); !st) return st.error();
  if (auto st = copier.incidents(out); !st) return st.error();
  if (auto st = copier.stores(out); !st) return st.error();
  (void)source->exec("COMMIT");
  out.took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  return out;
}

std::string describe(const Migrated& m) {
  return fmt::format(
      "copied {} of {} events, {} of {} incidents and {} of {} stores ({} events, {} incidents "
      "and {} stores were there already) in {:.1f} s",
      grouped(m.events_copied), grouped(m.events), grouped(m.incidents_copied),
      grouped(m.incidents), grouped(m.stores_copied), grouped(m.stores),
      grouped(m.events - m.events_copied), grouped(m.incidents - m.incidents_copied),
      grouped(m.stores - m.stores_copied), static_cast<double>(m.took.count()) / 1000.0);
}

}  // namespace storewatch::hq
