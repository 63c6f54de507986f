// The schema history of the agent's database (agent/migrations.h).
#include "agent/migrations.h"

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace storewatch::agent {
namespace {

// The incidents table as schema 1 made it and schema 3 rebuilt it: the
// same columns; the rebuild names it incidents_v3 until the old table is
// gone, and changes only the CHECK on state (see step 3). Both released
// steps use this text: a change to the table is a new step, never an edit
// here (`sqlite3 FILE .schema` of a new file must not change).
std::string incidents_table(std::string_view name, std::string_view state_check) {
  return fmt::format(R"sql(
CREATE TABLE {} (
  id             INTEGER PRIMARY KEY,
  uid            TEXT NOT NULL UNIQUE,
  dedup_key      TEXT NOT NULL,
  probe          TEXT NOT NULL,
  condition      TEXT NOT NULL,
  severity       TEXT NOT NULL,
  priority       TEXT NOT NULL,
  state          TEXT NOT NULL CHECK ({}),
  suppressed_by  TEXT,
  in_maintenance INTEGER NOT NULL DEFAULT 0,
  flapping       INTEGER NOT NULL DEFAULT 0,
  self_healed    INTEGER NOT NULL DEFAULT 0,
  t_fault        TEXT,
  t_detect       TEXT,
  t_ack          TEXT,
  t_restored     TEXT,
  t_resolved     TEXT,
  t_closed       TEXT,
  reopen_count   INTEGER NOT NULL DEFAULT 0,
  summary        TEXT NOT NULL DEFAULT '',
  updated_at     TEXT NOT NULL
);
)sql",
                     name, state_check);
}

// The incidents table's indexes, made by schema 1 and made again after
// schema 3's rebuild.
constexpr const char* kIncidentsIndexes = R"sql(-- At most one unresolved incident per dedup key.
CREATE UNIQUE INDEX incidents_unresolved_key ON incidents(dedup_key)
  WHERE state NOT IN ('resolved','closed');
CREATE INDEX incidents_detect ON incidents(t_detect);
)sql";

// Schema 1 checks the states as an IN list, schema 3 as comparisons.
constexpr std::string_view kStatesInList = R"sql(state IN
                   ('open','remediating','escalated','acknowledged','resolved','closed'))sql";
constexpr std::string_view kStatesCompared = R"sql(state = 'open' OR state = 'remediating'
                   OR state = 'escalated' OR state = 'acknowledged'
                   OR state = 'resolved' OR state = 'closed')sql";

}  // namespace

// Schema history. Never edit a released step: add one.
std::span<const db::Migration> store_migrations() {
  static const std::string v1 =
      fmt::format(R"sql({incidents}{indexes}
CREATE TABLE events (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  uid          TEXT NOT NULL UNIQUE,
  incident_uid TEXT NOT NULL,
  type         TEXT NOT NULL,
  at           TEXT NOT NULL,
  actor        TEXT NOT NULL,
  body         TEXT NOT NULL
);
CREATE INDEX events_incident ON events(incident_uid, seq);

CREATE TABLE sync_state (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE probe_state (
  probe        TEXT PRIMARY KEY,
  level        TEXT NOT NULL,
  failures     INTEGER NOT NULL,
  successes    INTEGER NOT NULL,
  t_fault      TEXT,
  t_first_ok   TEXT,
  last_check   TEXT,
  last_status  TEXT NOT NULL DEFAULT '',
  latency_ms   REAL NOT NULL DEFAULT 0,
  message      TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
)sql",
                  fmt::arg("incidents", incidents_table("incidents", kStatesInList)),
                  fmt::arg("indexes", kIncidentsIndexes));
  // The state CHECK of v1 was an IN list of six: SQLite builds a temporary
  // b-tree for it on every row written, which cost the store writer about
  // 40 % of its time per change. The same check as comparisons: rebuild the
  // table (SQLite cannot alter a CHECK) with its rows, ids and indexes.
  static const std::string v3 =
      fmt::format(R"sql({incidents}INSERT INTO incidents_v3
  SELECT id, uid, dedup_key, probe, condition, severity, priority, state,
  suppressed_by, in_maintenance, flapping, self_healed, t_fault, t_detect, t_ack, t_restored,
  t_resolved, t_closed, reopen_count, summary, updated_at FROM incidents;
DROP TABLE incidents;
ALTER TABLE incidents_v3 RENAME TO incidents;
{indexes}CREATE INDEX incidents_closed ON incidents(t_closed) WHERE state = 'closed';
)sql",
                  fmt::arg("incidents", incidents_table("incidents_v3", kStatesCompared)),
                  fmt::arg("indexes", kIncidentsIndexes));
  static const db::Migration steps[] = {
      {1, v1},
      {2, R"sql(
ALTER TABLE probe_state ADD COLUMN flap_history TEXT NOT NULL DEFAULT '';
ALTER TABLE probe_state ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
-- Remediation attempts within the window, as a JSON array of RFC 3339
-- times, and failed attempts in a row: counted across restarts.
ALTER TABLE probe_state ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE probe_state ADD COLUMN attempt_failures INTEGER NOT NULL DEFAULT 0;

CREATE TABLE silences (
  uid         TEXT PRIMARY KEY,
  match       TEXT NOT NULL,
  starts_at   TEXT NOT NULL,
  ends_at     TEXT NOT NULL,
  reason      TEXT NOT NULL,
  created_by  TEXT NOT NULL,
  removed_at  TEXT,
  removed_by  TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

CREATE INDEX incidents_closed ON incidents(t_closed) WHERE state = 'closed';
)sql"},
      {3, v3},
      {4, R"sql(
-- HQ commands applied, by id, with the answer given: a command delivered
-- again is answered alike and not applied twice. Pruned after retention.
CREATE TABLE commands (
  id          TEXT PRIMARY KEY,
  op          TEXT NOT NULL,
  applied_at  TEXT NOT NULL,
  result      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX commands_applied ON commands(applied_at);
)sql"},
      {5, R"sql(
-- The notifications outbox: one row per notice per channel, queued in the
-- transaction of the event that caused it, sent from the loop with retries.
-- Times in *_ms are wall-clock milliseconds since the epoch.
CREATE TABLE notifications (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  channel      TEXT NOT NULL,
  incident_uid TEXT NOT NULL,
  event_uid    TEXT NOT NULL,
  kind         TEXT NOT NULL,
  body         TEXT NOT NULL,
  state        TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued','sent','dropped')),
  created_at   TEXT NOT NULL,
  created_ms   INTEGER NOT NULL,
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_try_ms  INTEGER NOT NULL,
  last_error   TEXT NOT NULL DEFAULT '',
  done_ms      INTEGER
);
CREATE INDEX notifications_queued ON notifications(channel, id) WHERE state = 'queued';
CREATE INDEX notifications_incident ON notifications(incident_uid, channel);
)sql"},
      // events.uid lost its UNIQUE index: uids are UUIDv7 made here, nothing
      // looks an event up by uid, and HQ dedups by (store, seq). The index was
      // a sixth of the writer's work per change (35k of its instructions to
      // 29k without; callgrind). SQLite cannot drop a column constraint:
      // rebuild the table with its rows, and carry the
      // AUTOINCREMENT counter over, so a seq pruned at the top is never reused.
      {6, R"sql(
CREATE TABLE events_v6 (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  uid          TEXT NOT NULL,
  incident_uid TEXT NOT NULL,
  type         TEXT NOT NULL,
  at           TEXT NOT NULL,
  actor        TEXT NOT NULL,
  body         TEXT NOT NULL
);
INSERT INTO events_v6 (seq, uid, incident_uid, type, at, actor, body)
  SELECT seq, uid, incident_uid, type, at, actor, body FROM events ORDER BY seq;
DELETE FROM sqlite_sequence WHERE name = 'events_v6';
INSERT INTO sqlite_sequence (name, seq) SELECT 'events_v6', seq FROM sqlite_sequence
  WHERE name = 'events';
DROP TABLE events;
ALTER TABLE events_v6 RENAME TO events;
CREATE INDEX events_incident ON events(incident_uid, seq);
)sql"},
      {7, R"sql(
-- Changes the database refused for good (a constraint, a schema error):
-- the store writer isolates each one, keeps it here and goes on
-- (agent/store_writer.h). `change` is the change as JSON, for a person.
CREATE TABLE dead_letters (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  at      TEXT NOT NULL,
  what    TEXT NOT NULL,
  error   TEXT NOT NULL,
  change  TEXT NOT NULL
);
)sql"},
  };
  return steps;
}

}  // namespace storewatch::agent
