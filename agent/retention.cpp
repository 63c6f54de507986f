#include "agent/retention.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace storewatch::agent {
namespace {

/// Rows one chunk removed.
struct Chunk {
  std::int64_t incidents = 0;
  std::int64_t events = 0;
  std::int64_t rows() const { return incidents + events; }
};

Result<std::int64_t> single_int(db::Database& db, const char* sql) {
  auto stmt = db.prepare(sql);
  if (!stmt) return stmt.error();
  auto row = stmt->step();
  if (!row) return row.error();
  return *row ? stmt->int64(0) : 0;
}

struct Pages {
  std::int64_t count = 0;
  std::int64_t free = 0;
  std::int64_t size = 0;
  std::int64_t used_bytes() const { return (count - free) * size; }
};

Result<Pages> pages(db::Database& db) {
  Pages p;
  auto count = single_int(db, "PRAGMA page_count");
  if (!count) return count.error();
  auto free = single_int(db, "PRAGMA freelist_count");
  if (!free) return free.error();
  auto size = single_int(db, "PRAGMA page_size");
  if (!size) return size.error();
  p.count = *count;
  p.free = *free;
  p.size = *size;
  return p;
}

std::int64_t file_bytes(const std::filesystem::path& path) {
  std::int64_t total = 0;
  for (const auto& p : {path, std::filesystem::path(path.string() + "-wal")}) {
    std::error_code ec;
    auto n = std::filesystem::file_size(p, ec);
    if (!ec) total += static_cast<std::int64_t>(n);
  }
  return total;
}

/// Deletes whole incidents, oldest closed first, that are closed (before
/// `closed_before`, when given) and whose events HQ has all acknowledged,
/// with their events, in one transaction: as many as fit in `target` rows,
/// and at least one. Never more than `limit` rows: an incident bigger than
/// that (a long flapping timeline) loses its oldest `limit` events now and
/// the rest in later chunks; its row goes with its last event.
/// hq_acked_seq is read inside the transaction, so the check and the
/// deletes see the same value.
Result<Chunk> delete_chunk(db::Database& db, const std::optional<std::string>& closed_before,
                           std::int64_t target, std::int64_t limit) {
  Chunk done;
  auto tx = db::Transaction::begin(db);
  if (!tx) return tx.error();

  auto acked_stmt = db.prepare("SELECT value FROM sync_state WHERE key = ?1");
  if (!acked_stmt) return acked_stmt.error();
  acked_stmt->bind(1, kHqAckedSeq);
  auto acked_row = acked_stmt->step();
  if (!acked_row) return acked_row.error();
  const std::int64_t acked = *acked_row ? acked_stmt->int64(0) : 0;
  acked_stmt->reset();

  // Each incident is at least one row, so `target` candidates are enough.
  auto pick = db.prepare(std::string(R"sql(
SELECT i.uid FROM incidents i
WHERE i.state = 'closed' AND i.t_closed IS NOT NULL)sql") +
                         (closed_before ? " AND i.t_closed < ?3" : "") + R"sql(
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.incident_uid = i.uid AND e.seq > ?1)
ORDER BY i.t_closed, i.id
LIMIT ?2)sql");
  if (!pick) return pick.error();
  pick->bind(1, acked).bind(2, target);
  if (closed_before) pick->bind(3, *closed_before);
  std::vector<std::string> uids;
  auto st = pick->each([&](const db::Statement& s) {
    uids.push_back(s.text(0));
    return true;
  });
  if (!st) return st.error();

  auto count_events =
      db.prepare("SELECT count(*) FROM events WHERE incident_uid = ?1 AND seq <= ?2");
  if (!count_events) return count_events.error();
  // `seq <= acked` again in the delete: whatever the pick said, an event HQ
  // has not acknowledged is never deleted.
  auto delete_events = db.prepare(
      "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE incident_uid = ?1 "
      "AND seq <= ?2 ORDER BY seq LIMIT ?3)");
  if (!delete_events) return delete_events.error();
  auto delete_incident = db.prepare(
      "DELETE FROM incidents WHERE uid = ?1 AND state = 'closed' "
      "AND NOT EXISTS (SELECT 1 FROM events WHERE incident_uid = ?1)");
  if (!delete_incident) return delete_incident.error();

  for (const auto& uid : uids) {
    count_events->bind(1, uid).bind(2, acked);
    auto row = count_events->step();
    if (!row) return row.error();
    const std::int64_t events = *row ? count_events->int64(0) : 0;
    count_events->reset();
    const bool first = done.rows() == 0;
    if (!first && done.rows() + events + 1 > target) break;
    const std::int64_t take = std::min(events, limit - done.rows());
    delete_events->bind(1, uid).bind(2, acked).bind(3, take);
    if (auto r = delete_events->run(); !r) return r.error();
    done.events += db.changes();
    if (done.rows() >= limit) break;  // part of a big one; the rest next chunk
    delete_incident->bind(1, uid);
    if (auto r = delete_incident->run(); !r) return r.error();
    done.incidents += db.changes();
    if (done.rows() >= target) break;
  }
  if (auto c = tx->commit(); !c) return c.error();
  return done;
}

}  // namespace

Result<PruneResult> Pruner::run(Store& store, WallTime now) {
  db::Database& db = store.database();
  PruneResult out;
  out.cap_bytes = policy_.max_db_bytes;
  std::int64_t budget = std::max<std::int64_t>(policy_.max_rows_per_run, 0);
  const std::int64_t chunk_rows = std::max<std::int64_t>(policy_.chunk_rows, 1);
  bool exhausted = false;  // stopped by the budget, not for lack of rows

  // (a) Retention: closed longer ago than `retention`, synced.
  const std::string cutoff = format_rfc3339(now - policy_.retention);
  while (true) {
    if (budget == 0) {
      exhausted = true;
      break;
    }
    const std::int64_t limit = std::min(chunk_rows, budget);
    auto chunk = delete_chunk(db, cutoff, limit, limit);
    if (!chunk) return chunk.error();
    out.expired_incidents += chunk->incidents;
    out.expired_events += chunk->events;
    budget -= chunk->rows();
    if (chunk->rows() == 0) break;
  }

  // (b) The cap: start above it, shed the oldest synced closed history
  // until below low_water × cap or nothing of it is left.
  auto p = pages(db);
  if (!p) return p.error();
  if (p->used_bytes() > policy_.max_db_bytes) shedding_ = true;
  const auto low_water =
      static_cast<std::int64_t>(static_cast<double>(policy_.max_db_bytes) * policy_.low_water);
  std::int64_t events_left = 0;
  if (shedding_ && p->used_bytes() > low_water) {
    auto n = single_int(db, "SELECT count(*) FROM events");
    if (!n) return n.error();
    events_left = *n;
  }
  while (shedding_ && p->used_bytes() > low_water) {
    if (budget == 0) {
      exhausted = true;
      break;
    }
    // Aim the chunk at the bytes still to free, taking every used byte as an
    // event's: that underestimates the rows needed, so shedding stops near
    // low water rather than a whole chunk below it.
    const std::int64_t per_event =
        std::max<std::int64_t>(p->used_bytes() / std::max<std::int64_t>(events_left, 1), 1);
    const std::int64_t needed = (p->used_bytes() - low_water + per_event - 1) / per_event;
    const std::int64_t limit = std::min(chunk_rows, budget);
    auto chunk = delete_chunk(db, std::nullopt, std::clamp<std::int64_t>(needed, 1, limit), limit);
    if (!chunk) return chunk.error();
    out.shed_incidents += chunk->incidents;
    out.shed_events += chunk->events;
    events_left -= chunk->events;
    budget -= chunk->rows();
    p = pages(db);
    if (!p) return p.error();
    if (chunk->rows() == 0) break;  // nothing synced and closed is left
  }
  if (p->used_bytes() <= low_water) shedding_ = false;

  // (c) Give free pages back to the filesystem, only while the database
  // file (page_count pages once the WAL is checkpointed) is over the cap:
  // below it, SQLite reuses free pages before growing the file, and moving
  // pages about costs flash writes for nothing. Needs auto_vacuum=INCREMENTAL,
  // fixed when the file was created; without it the free pages stay in the
  // file and are reused.
  auto mode = single_int(db, "PRAGMA auto_vacuum");
  if (!mode) return mode.error();
  if (*mode == 2 && p->free > 0 && p->count * p->size > policy_.max_db_bytes &&
      policy_.max_vacuum_pages > 0) {
    const std::int64_t n = std::min(p->free, policy_.max_vacuum_pages);
    if (auto st = db.exec("PRAGMA incremental_vacuum(" + std::to_string(n) + ")"); !st) {
      return st.error();
    }
    auto after = pages(db);
    if (!after) return after.error();
    out.pages_vacuumed = p->count - after->count;
    p = after;
  }

  out.used_bytes = p->used_bytes();
  out.file_bytes = file_bytes(db.path());
  out.over_cap = out.used_bytes > policy_.max_db_bytes;
  out.more = exhausted;
  return out;
}

}  // namespace storewatch::agent
