#include "agent/store.h"

#include <fmt/format.h>

#include <chrono>
#include <system_error>

#include "agent/migrations.h"
#include "agent/store_internal.h"
#include "base/json_text.h"
#include "base/short_uid.h"

namespace storewatch::agent {

using store_internal::collect;

namespace {

// Parameters per row of the incident upsert and of the event insert.
constexpr int kIncidentParams = 20;
constexpr int kEventParams = 6;

constexpr const char* kIncidentColumns =
    "uid, dedup_key, probe, condition, severity, priority, state, suppressed_by, "
    "in_maintenance, flapping, self_healed, t_fault, t_detect, t_ack, t_restored, t_resolved, "
    "t_closed, reopen_count, summary";

std::optional<std::string> time_text(const std::optional<WallTime>& t) {
  if (!t) return std::nullopt;
  return format_rfc3339(*t);
}

/// An event's stored body: its type-specific fields plus `incident_state`,
/// the incident's snapshot at that moment (DESIGN §6).
std::string event_body(const IncidentEvent& e, const Incident& i) {
  std::string out;
  out.reserve(1024);
  if (e.extra.is_object() && !e.extra.empty()) {
    const auto dump = [](const nlohmann::json& j) {
      return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    };
    if (e.extra.contains("incident_state")) {
      nlohmann::json extra = e.extra;
      extra.erase("incident_state");
      out = dump(extra);
    } else {
      out = dump(e.extra);
    }
    out.pop_back();  // its closing brace
    if (out.size() > 1) out += ',';
  } else {
    out += '{';
  }
  json_text::append_key(out, "incident_state");
  i.append_json(out);
  out += '}';
  return out;
}

std::optional<WallTime> time_of(const db::Statement& s, int column) {
  auto text = s.optional_text(column);
  if (!text) return std::nullopt;
  return parse_rfc3339(*text);
}

Incident incident_from_row(const db::Statement& s) {
  Incident i;
  i.uid = s.text(0);
  i.dedup_key = s.text(1);
  i.probe = s.text(2);
  i.condition = s.text(3);
  i.severity = config::parse_severity(s.text(4)).value_or(config::Severity::medium);
  i.priority = s.text(5);
  i.state = parse_incident_state(s.text(6)).value_or(IncidentState::open);
  i.suppressed_by = s.optional_text(7);
  i.in_maintenance = s.int64(8) != 0;
  i.flapping = s.int64(9) != 0;
  i.self_healed = s.int64(10) != 0;
  i.t_fault = time_of(s, 11);
  i.t_detect = time_of(s, 12);
  i.t_ack = time_of(s, 13);
  i.t_restored = time_of(s, 14);
  i.t_resolved = time_of(s, 15);
  i.t_closed = time_of(s, 16);
  i.reopen_count = static_cast<int>(s.int64(17));
  i.summary = s.text(18);
  return i;
}

std::string times_json(const std::vector<WallTime>& times) {
  nlohmann::json out = nlohmann::json::array();
  for (WallTime t : times) out.push_back(format_rfc3339(t));
  return out.dump();
}

std::vector<WallTime> times_of_json(const std::string& text) {
  std::vector<WallTime> out;
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_string()) continue;
    if (auto t = parse_rfc3339(e.get<std::string>())) out.push_back(*t);
  }
  return out;
}

StoredEvent event_from_row(const db::Statement& s) {
  return StoredEvent{s.int64(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6)};
}

}  // namespace

Result<Store> Store::open(const std::filesystem::path& path, Mode mode) {
  if (mode == Mode::read_only) {
    // Missing and out of reach are two things: say which.
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    if (ec == std::errc::permission_denied) {
      return Error{fmt::format("permission denied: cannot reach the database {}", path.string())};
    }
    if (!exists) {
      return Error{fmt::format("no database at {} (has the daemon run with this config yet?)",
                               path.string())};
    }
  }
  auto db = db::Database::open(path, mode == Mode::read_only ? db::Database::Mode::read_only
                                                             : db::Database::Mode::read_write);
  if (!db) return db.error();
  if (mode == Mode::read_only) {
    if (auto st = db::check_not_newer(*db, store_migrations()); !st) return st.error();
    return Store(std::move(*db));
  }
  // auto_vacuum only takes on a database with no tables yet: new files get
  // incremental vacuum, so retention can hand pages back (agent/retention.h).
  for (const char* pragma : {"PRAGMA auto_vacuum=INCREMENTAL", "PRAGMA journal_mode=WAL",
                             "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
                             // 8 MB of page cache (SQLite's default is 2 MB) and a
                             // checkpoint every 4,000 pages (16 MB of WAL, default 1,000):
                             // hot index pages are copied to the database once per
                             // checkpoint, not once per 4 MB (tests/bench/engine_bench).
                             "PRAGMA cache_size=-8192", "PRAGMA wal_autocheckpoint=4000"}) {
    if (auto st = db->exec(pragma); !st) return st.error();
  }
  if (auto st = db::migrate(*db, store_migrations()); !st) return st.error();
  return Store(std::move(*db));
}

Result<std::vector<std::int64_t>> Store::commit(const std::vector<Change>& changes) {
  auto tx = db::Transaction::begin(db_);
  if (!tx) return tx.error();
  std::vector<std::int64_t> seqs(changes.size(), 0);
  std::vector<std::size_t> run;
  for (std::size_t i = 0; i < changes.size();) {
    if (std::holds_alternative<IncidentRows>(changes[i])) {
      // A run of incident changes goes in multi-row statements. Probe states
      // within the run are written as they come: they are another table, and
      // the transaction makes the order between the two invisible.
      run.clear();
      for (; i < changes.size(); ++i) {
        if (std::holds_alternative<IncidentRows>(changes[i])) {
          run.push_back(i);
        } else if (const auto* ps = std::get_if<ProbeStateRow>(&changes[i])) {
          if (auto st = write(*ps); !st) return st.error();
        } else {
          break;
        }
      }
      if (auto st = write_run(changes, run, seqs); !st) return st.error();
      continue;
    }
    Status st = std::visit(
        [&](const auto& c) -> Status {
          using T = std::decay_t<decltype(c)>;
          if constexpr (std::is_same_v<T, IncidentChange> || std::is_same_v<T, AppliedCommand> ||
                        std::is_same_v<T, IncidentRows>) {
            return write(c, seqs[i]);
          } else {
            return write(c);
          }
        },
        changes[i]);
    if (!st) return st.error();
    ++i;
  }
  if (auto st = tx->commit(); !st) return st.error();
  return seqs;
}

Result<Store::Prepared*> Store::prepared() {
  if (prepared_) return prepared_.get();
  // `rows` placeholder groups of `per_row` numbered parameters: (?1,…),(?N+1,…)…
  const auto values = [](std::size_t rows, int per_row) {
    std::string out;
    for (std::size_t r = 0; r < rows; ++r) {
      out += r == 0 ? "(" : ",(";
      for (int k = 1; k <= per_row; ++k) {
        out += fmt::format("{}?{}", k == 1 ? "" : ",", static_cast<int>(r) * per_row + k);
      }
      out += ')';
    }
    return out;
  };
  // t_detect is set when an incident opens and never changes (a reopen keeps
  // it), so the update leaves it, and its index entry, alone: rewriting that
  // index on every change cost the writer about 7 % of its instructions.
  const auto upsert = [&](std::size_t rows) {
    return db_.prepare(fmt::format(
        "INSERT INTO incidents ({}, updated_at) VALUES {} "
        "ON CONFLICT(uid) DO UPDATE SET severity=excluded.severity, priority=excluded.priority, "
        "state=excluded.state, suppressed_by=excluded.suppressed_by, "
        "in_maintenance=excluded.in_maintenance, flapping=excluded.flapping, "
        "self_healed=excluded.self_healed, t_fault=excluded.t_fault, t_ack=excluded.t_ack, "
        "t_restored=excluded.t_restored, t_resolved=excluded.t_resolved, "
        "t_closed=excluded.t_closed, reopen_count=excluded.reopen_count, "
        "summary=excluded.summary, updated_at=excluded.updated_at",
        kIncidentColumns, values(rows, kIncidentParams)));
  };
  const auto insert = [&](std::size_t rows) {
    return db_.prepare(
        fmt::format("INSERT INTO events (uid, incident_uid, type, at, actor, body) VALUES {}",
                    values(rows, kEventParams)));
  };
  auto incident = upsert(1);
  if (!incident) return incident.error();
  auto event = insert(1);
  if (!event) return event.error();
  auto incidents = upsert(kRowsPerStatement);
  if (!incidents) return incidents.error();
  auto events = insert(kRowsPerStatement);
  if (!events) return events.error();
  auto probe_state = db_.prepare(
      "INSERT INTO probe_state (probe, level, failures, successes, t_fault, t_first_ok, "
      "last_check, last_status, latency_ms, message, flap_history, flapping, attempts, "
      "attempt_failures) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14) "
      "ON CONFLICT(probe) DO UPDATE SET level=?2, failures=?3, successes=?4, t_fault=?5, "
      "t_first_ok=?6, last_check=?7, last_status=?8, latency_ms=?9, message=?10, "
      "flap_history=?11, flapping=?12, attempts=?13, attempt_failures=?14");
  if (!probe_state) return probe_state.error();
  prepared_ = std::make_unique<Prepared>(Prepared{std::move(*incident), std::move(*event),
                                                  std::move(*incidents), std::move(*events),
                                                  std::move(*probe_state)});
  return prepared_.get();
}

IncidentRows IncidentRows::of(IncidentChange&& c) {
  Incident& i = c.incident;
  IncidentRows r;
  r.body = event_body(c.event, i);
  r.at = format_rfc3339(c.event.at);
  r.times[0] = time_text(i.t_fault);
  r.times[1] = time_text(i.t_detect);
  r.times[2] = time_text(i.t_ack);
  r.times[3] = time_text(i.t_restored);
  r.times[4] = time_text(i.t_resolved);
  r.times[5] = time_text(i.t_closed);
  r.uid = std::move(i.uid);
  r.dedup_key = std::move(i.dedup_key);
  r.probe = std::move(i.probe);
  r.condition = std::move(i.condition);
  r.severity = config::to_string(i.severity);
  r.state = to_string(i.state);
  r.priority = std::move(i.priority);
  r.suppressed_by = std::move(i.suppressed_by);
  r.in_maintenance = i.in_maintenance;
  r.flapping = i.flapping;
  r.self_healed = i.self_healed;
  r.reopen_count = i.reopen_count;
  r.summary = std::move(i.summary);
  r.event_uid = std::move(c.event.uid);
  r.event_type = std::move(c.event.type);
  r.event_actor = std::move(c.event.actor);
  r.notices = std::move(c.notices);
  return r;
}

Status Store::write(const IncidentChange& c, std::int64_t& seq) {
  return write(IncidentRows::of(IncidentChange(c)), seq);
}

namespace {

/// Binds an incident row's parameters, the row's first being `base` + 1.
void bind_incident(db::Statement& up, int base, const IncidentRows& r) {
  up.bind_ref(base + 1, r.uid)
      .bind_ref(base + 2, r.dedup_key)
      .bind_ref(base + 3, r.probe)
      .bind_ref(base + 4, r.condition)
      .bind_ref(base + 5, r.severity)
      .bind_ref(base + 6, r.priority)
      .bind_ref(base + 7, r.state)
      .bind_ref(base + 8, r.suppressed_by)
      .bind(base + 9, r.in_maintenance)
      .bind(base + 10, r.flapping)
      .bind(base + 11, r.self_healed)
      .bind(base + 18, r.reopen_count)
      .bind_ref(base + 19, r.summary)
      .bind_ref(base + 20, r.at);
  for (int k = 0; k < 6; ++k) up.bind_ref(base + 12 + k, r.times[k]);
}

void bind_event(db::Statement& ev, int base, const IncidentRows& r) {
  ev.bind_ref(base + 1, r.event_uid)
      .bind_ref(base + 2, r.uid)
      .bind_ref(base + 3, r.event_type)
      .bind_ref(base + 4, r.at)
      .bind_ref(base + 5, r.event_actor)
      .bind_ref(base + 6, r.body);
}

}  // namespace

Status Store::write(const IncidentRows& r, std::int64_t& seq) {
  auto p = prepared();
  if (!p) return p.error();
  bind_incident((*p)->upsert_incident, 0, r);
  if (auto st = (*p)->upsert_incident.run(); !st) return st;
  bind_event((*p)->insert_event, 0, r);
  if (auto st = (*p)->insert_event.run(); !st) return st;
  seq = db_.last_insert_rowid();
  if (!r.notices.empty()) return write_notices(r);
  return {};
}

Status Store::write_run(const std::vector<Change>& changes, const std::vector<std::size_t>& run,
                        std::vector<std::int64_t>& seqs) {
  auto p = prepared();
  if (!p) return p.error();
  const auto rows = [&](std::size_t k) -> const IncidentRows& {
    return std::get<IncidentRows>(changes[run[k]]);
  };
  std::size_t k = 0;
  // Whole groups of kRowsPerStatement in one statement per table: SQLite's
  // cost per statement (cursors opened and closed, the statement's end) is
  // then paid once per group. Rows of one statement are written in order,
  // as if one statement each, so an incident changed twice ends as its last.
  for (; run.size() - k >= kRowsPerStatement; k += kRowsPerStatement) {
    db::Statement& up = (*p)->upsert_incidents;
    db::Statement& ev = (*p)->insert_events;
    for (std::size_t j = 0; j < kRowsPerStatement; ++j) {
      bind_incident(up, static_cast<int>(j) * kIncidentParams, rows(k + j));
      bind_event(ev, static_cast<int>(j) * kEventParams, rows(k + j));
    }
    if (auto st = up.run(); !st) return st;
    if (auto st = ev.run(); !st) return st;
    // AUTOINCREMENT numbers a statement's rows one after another.
    const std::int64_t last = db_.last_insert_rowid();
    for (std::size_t j = 0; j < kRowsPerStatement; ++j) {
      seqs[run[k + j]] = last - static_cast<std::int64_t>(kRowsPerStatement - 1 - j);
      if (!rows(k + j).notices.empty()) {
        if (auto st = write_notices(rows(k + j)); !st) return st;
      }
    }
  }
  for (; k < run.size(); ++k) {
    if (auto st = write(rows(k), seqs[run[k]]); !st) return st;
  }
  return {};
}

Status Store::write(const ProbeStateRow& r) {
  auto p = prepared();
  if (!p) return p.error();
  db::Statement* st = &(*p)->upsert_probe_state;
  st->bind(1, r.probe)
      .bind(2, to_string(r.level))
      .bind(3, r.failures)
      .bind(4, r.successes)
      .bind(5, time_text(r.t_fault))
      .bind(6, time_text(r.t_first_ok))
      .bind(7, time_text(r.last_check))
      .bind(8, r.last_status)
      .bind(9, r.latency_ms)
      .bind(10, r.message)
      .bind(11, r.flap_history)
      .bind(12, r.flapping)
      .bind(13, times_json(r.attempts))
      .bind(14, r.attempt_failures);
  return st->run();
}

Status Store::write(const SilenceRow& v) {
  auto st = db_.prepare(
      "INSERT INTO silences (uid, match, starts_at, ends_at, reason, created_by, removed_at, "
      "removed_by) VALUES (?1,?2,?3,?4,?5,?6,?7,?8) "
      "ON CONFLICT(uid) DO UPDATE SET ends_at=?4, removed_at=?7, removed_by=?8");
  if (!st) return st.error();
  st->bind(1, v.uid)
      .bind(2, v.match)
      .bind(3, format_rfc3339(v.starts_at))
      .bind(4, format_rfc3339(v.ends_at))
      .bind(5, v.reason)
      .bind(6, v.created_by)
      .bind(7, time_text(v.removed_at))
      .bind(8, v.removed_by);
  return st->run();
}

Status Store::write(const AppliedCommand& c, std::int64_t& seq) {
  for (const EngineChange& change : c.changes) {
    Status st = std::visit(
        [&](const auto& x) -> Status {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, IncidentChange>) {
            return write(x, seq);
          } else {
            return write(x);
          }
        },
        change);
    if (!st) return st;
  }
  // An id already there was applied before: keep its first answer.
  auto st = db_.prepare(
      "INSERT INTO commands (id, op, applied_at, result) VALUES (?1,?2,?3,?4) "
      "ON CONFLICT(id) DO NOTHING");
  if (!st) return st.error();
  st->bind(1, c.command.id)
      .bind(2, c.command.op)
      .bind(3, format_rfc3339(c.command.applied_at))
      .bind(4, c.command.result);
  return st->run();
}

Status Store::write(const SyncValue& v) {
  auto st = db_.prepare(v.only_if_higher ? "INSERT INTO sync_state (key, value) VALUES (?1, ?2) "
                                           "ON CONFLICT(key) DO UPDATE SET value = max(value, ?2)"
                                         : "INSERT INTO sync_state (key, value) VALUES (?1, ?2) "
                                           "ON CONFLICT(key) DO UPDATE SET value = ?2");
  if (!st) return st.error();
  st->bind(1, v.key).bind(2, v.value);
  return st->run();
}

Result<std::vector<Incident>> Store::incidents(bool unresolved_only,
                                               std::optional<WallTime> detected_since) {
  std::string sql = fmt::format("SELECT {} FROM incidents WHERE 1=1", kIncidentColumns);
  if (unresolved_only) sql += " AND state NOT IN ('resolved','closed')";
  if (detected_since) sql += " AND t_detect >= ?1";
  sql += " ORDER BY t_detect DESC, uid DESC";
  auto stmt = db_.prepare(sql);
  if (!stmt) return stmt.error();
  if (detected_since) stmt->bind(1, format_rfc3339(*detected_since));
  return collect<Incident>(*stmt, incident_from_row);
}

Result<std::optional<Incident>> Store::incident(const std::string& uid_or_prefix) {
  // A prefix as a range of the uid's index (uids are ASCII; DEL sorts after
  // every character they use). A whole uid sorts before every longer one it
  // starts, so an exact match is the first row. The engine looks up every
  // incident it closes by time here.
  auto stmt = db_.prepare(
      fmt::format("SELECT {} FROM incidents WHERE uid >= ?1 AND uid < ?2 ORDER BY uid LIMIT 2",
                  kIncidentColumns));
  if (!stmt) return stmt.error();
  stmt->bind(1, uid_or_prefix).bind(2, uid_or_prefix + "\x7f");
  auto rows = collect<Incident>(*stmt, incident_from_row);
  if (!rows) return rows.error();
  if (!rows->empty() && rows->front().uid == uid_or_prefix) {
    return std::optional<Incident>(std::move(rows->front()));
  }
  if (rows->size() > 1) {
    auto candidates = incidents_with_prefix(uid_or_prefix, kMaxCandidates);
    if (!candidates) return candidates.error();
    auto count = count_with_prefix(uid_or_prefix);
    if (!count) return count.error();
    const auto listed = static_cast<std::int64_t>(candidates->size());
    return Error{ambiguous_incident_message(
        uid_or_prefix, *candidates,
        static_cast<std::size_t>(std::max<std::int64_t>(*count - listed, 0)))};
  }
  if (rows->empty()) return std::optional<Incident>();
  return std::optional<Incident>(std::move(rows->front()));
}

Result<std::vector<Incident>> Store::incidents_with_prefix(const std::string& prefix, int limit) {
  auto stmt = db_.prepare(
      fmt::format("SELECT {} FROM incidents WHERE uid >= ?1 AND uid < ?2 ORDER BY uid LIMIT ?3",
                  kIncidentColumns));
  if (!stmt) return stmt.error();
  stmt->bind(1, prefix).bind(2, prefix + "\x7f").bind(3, limit);
  return collect<Incident>(*stmt, incident_from_row);
}

Result<std::int64_t> Store::count_with_prefix(const std::string& prefix) {
  auto stmt = db_.prepare("SELECT count(*) FROM incidents WHERE uid >= ?1 AND uid < ?2");
  if (!stmt) return stmt.error();
  stmt->bind(1, prefix).bind(2, prefix + "\x7f");
  auto row = stmt->step();
  if (!row) return row.error();
  return stmt->int64(0);
}

std::string ambiguous_incident_message(const std::string& prefix,
                                       const std::vector<Incident>& candidates, std::size_t more) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : candidates) {
    std::string detected = "-";
    if (i.t_detect) {
      const std::string t = format_rfc3339(*i.t_detect);
      detected = t.substr(0, 10) + " " + t.substr(11, 8) + "Z";
    }
    rows.push_back({i.uid, i.probe, std::string(to_string(i.state)), detected});
  }
  return ambiguous_uid_message(prefix, "incidents", {"UID", "PROBE", "STATE", "DETECTED"},
                               std::move(rows), more);
}

Result<std::vector<StoredEvent>> Store::events_of(const std::string& incident_uid) {
  auto stmt = db_.prepare(
      "SELECT seq, uid, incident_uid, type, at, actor, body FROM events "
      "WHERE incident_uid = ?1 ORDER BY seq");
  if (!stmt) return stmt.error();
  stmt->bind(1, incident_uid);
  return collect<StoredEvent>(*stmt, event_from_row);
}

Result<std::vector<StoredEvent>> Store::events_after(std::int64_t after, int limit) {
  auto stmt = db_.prepare(
      "SELECT seq, uid, incident_uid, type, at, actor, body FROM events "
      "WHERE seq > ?1 ORDER BY seq LIMIT ?2");
  if (!stmt) return stmt.error();
  stmt->bind(1, after).bind(2, limit);
  return collect<StoredEvent>(*stmt, event_from_row);
}

Result<std::vector<ProbeStateRow>> Store::probe_states() {
  auto stmt = db_.prepare(
      "SELECT probe, level, failures, successes, t_fault, t_first_ok, last_check, last_status, "
      "latency_ms, message, flap_history, flapping, attempts, attempt_failures FROM probe_state "
      "ORDER BY probe");
  if (!stmt) return stmt.error();
  return collect<ProbeStateRow>(*stmt, [](const db::Statement& s) {
    ProbeStateRow r;
    r.probe = s.text(0);
    r.level = parse_check_level(s.text(1)).value_or(CheckLevel::unknown);
    r.failures = static_cast<int>(s.int64(2));
    r.successes = static_cast<int>(s.int64(3));
    r.t_fault = time_of(s, 4);
    r.t_first_ok = time_of(s, 5);
    r.last_check = time_of(s, 6);
    r.last_status = s.text(7);
    r.latency_ms = s.real(8);
    r.message = s.text(9);
    r.flap_history = s.text(10);
    r.flapping = s.int64(11) != 0;
    r.attempts = times_of_json(s.text(12));
    r.attempt_failures = static_cast<int>(s.int64(13));
    return r;
  });
}

Result<std::vector<Incident>> Store::resolved_incidents() {
  auto stmt = db_.prepare(fmt::format(
      "SELECT {} FROM incidents WHERE state = 'resolved' ORDER BY t_resolved", kIncidentColumns));
  if (!stmt) return stmt.error();
  return collect<Incident>(*stmt, incident_from_row);
}

Result<std::vector<SilenceRow>> Store::silences(std::optional<WallTime> active_at) {
  std::string sql =
      "SELECT uid, match, starts_at, ends_at, reason, created_by, removed_at, removed_by "
      "FROM silences";
  if (active_at) sql += " WHERE removed_at IS NULL AND ends_at > ?1";
  sql += " ORDER BY starts_at, uid";
  auto stmt = db_.prepare(sql);
  if (!stmt) return stmt.error();
  if (active_at) stmt->bind(1, format_rfc3339(*active_at));
  return collect<SilenceRow>(*stmt, [](const db::Statement& s) {
    SilenceRow r;
    r.uid = s.text(0);
    r.match = s.text(1);
    r.starts_at = time_of(s, 2).value_or(WallTime{});
    r.ends_at = time_of(s, 3).value_or(WallTime{});
    r.reason = s.text(4);
    r.created_by = s.text(5);
    r.removed_at = time_of(s, 6);
    r.removed_by = s.text(7);
    return r;
  });
}

nlohmann::json SilenceRow::to_json() const {
  return nlohmann::json{
      {"uid", uid},
      {"match", match},
      {"starts_at", format_rfc3339(starts_at)},
      {"ends_at", format_rfc3339(ends_at)},
      {"reason", reason},
      {"created_by", created_by},
      {"removed_at", removed_at ? nlohmann::json(format_rfc3339(*removed_at)) : nlohmann::json()},
      {"removed_by", removed_by},
  };
}

Result<std::int64_t> Store::sync_value(const std::string& key) {
  auto stmt = db_.prepare("SELECT value FROM sync_state WHERE key = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, key);
  auto row = stmt->step();
  if (!row) return row.error();
  return *row ? stmt->int64(0) : 0;
}

Result<std::int64_t> Store::max_seq() {
  auto stmt = db_.prepare("SELECT coalesce(max(seq), 0) FROM events");
  if (!stmt) return stmt.error();
  auto row = stmt->step();
  if (!row) return row.error();
  return stmt->int64(0);
}

Result<std::int64_t> Store::queued() {
  auto stmt = db_.prepare(
      "SELECT count(*) FROM events WHERE seq > "
      "coalesce((SELECT value FROM sync_state WHERE key = 'hq_acked_seq'), 0)");
  if (!stmt) return stmt.error();
  auto row = stmt->step();
  if (!row) return row.error();
  return stmt->int64(0);
}

Result<std::map<std::string, std::int64_t>> Store::open_by_severity() {
  std::map<std::string, std::int64_t> out;
  for (auto s : {config::Severity::critical, config::Severity::high, config::Severity::medium,
                 config::Severity::low, config::Severity::info}) {
    out[std::string(config::to_string(s))] = 0;
  }
  auto stmt = db_.prepare(
      "SELECT severity, count(*) FROM incidents WHERE state NOT IN ('resolved','closed') "
      "GROUP BY severity");
  if (!stmt) return stmt.error();
  auto st = stmt->each([&](const db::Statement& s) {
    out[s.text(0)] = s.int64(1);
    return true;
  });
  if (!st) return st.error();
  return out;
}

Result<std::optional<CommandRow>> Store::command(const std::string& id) {
  auto stmt = db_.prepare("SELECT id, op, applied_at, result FROM commands WHERE id = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, id);
  auto row = stmt->step();
  if (!row) return row.error();
  if (!*row) return std::optional<CommandRow>();
  return std::optional<CommandRow>(CommandRow{
      stmt->text(0), stmt->text(1), time_of(*stmt, 2).value_or(WallTime{}), stmt->text(3)});
}

Result<std::int64_t> Store::prune_commands(WallTime before, std::int64_t limit) {
  auto stmt = db_.prepare(
      "DELETE FROM commands WHERE id IN "
      "(SELECT id FROM commands WHERE applied_at < ?1 ORDER BY applied_at LIMIT ?2)");
  if (!stmt) return stmt.error();
  stmt->bind(1, format_rfc3339(before)).bind(2, limit);
  if (auto st = stmt->run(); !st) return st.error();
  return db_.changes();
}

namespace {

nlohmann::json rows_json(const IncidentRows& r) {
  nlohmann::json times = nlohmann::json::array();
  for (const auto& t : r.times) times.push_back(t ? nlohmann::json(*t) : nlohmann::json());
  return nlohmann::json{
      {"kind", "incident_change"},
      {"incident",
       {{"uid", r.uid},
        {"dedup_key", r.dedup_key},
        {"probe", r.probe},
        {"condition", r.condition},
        {"severity", r.severity},
        {"priority", r.priority},
        {"state", r.state},
        {"suppressed_by", r.suppressed_by ? nlohmann::json(*r.suppressed_by) : nlohmann::json()},
        {"in_maintenance", r.in_maintenance},
        {"flapping", r.flapping},
        {"self_healed", r.self_healed},
        {"times", std::move(times)},
        {"reopen_count", r.reopen_count},
        {"summary", r.summary}}},
      {"event",
       {{"uid", r.event_uid},
        {"type", r.event_type},
        {"actor", r.event_actor},
        {"at", r.at},
        {"body", r.body}}},
      {"notices", r.notices.size()},
  };
}

}  // namespace

nlohmann::json change_json(const Change& change) {
  return std::visit(
      [](const auto& c) -> nlohmann::json {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, IncidentRows>) {
          return rows_json(c);
        } else if constexpr (std::is_same_v<T, IncidentChange>) {
          return rows_json(IncidentRows::of(IncidentChange(c)));
        } else if constexpr (std::is_same_v<T, ProbeStateRow>) {
          return nlohmann::json{{"kind", "probe_state"},       {"probe", c.probe},
                                {"level", to_string(c.level)}, {"failures", c.failures},
                                {"successes", c.successes},    {"message", c.message}};
        } else if constexpr (std::is_same_v<T, SyncValue>) {
          return nlohmann::json{{"kind", "sync_value"}, {"key", c.key}, {"value", c.value}};
        } else if constexpr (std::is_same_v<T, SilenceRow>) {
          return nlohmann::json{{"kind", "silence"}, {"silence", c.to_json()}};
        } else if constexpr (std::is_same_v<T, AppliedCommand>) {
          nlohmann::json changes = nlohmann::json::array();
          for (const EngineChange& e : c.changes) {
            changes.push_back(std::visit([](const auto& x) { return change_json(Change(x)); }, e));
          }
          return nlohmann::json{{"kind", "command"},
                                {"id", c.command.id},
                                {"op", c.command.op},
                                {"result", c.command.result},
                                {"changes", std::move(changes)}};
        } else {
          return nlohmann::json{{"kind", "notice_update"}, {"id", c.id}, {"attempts", c.attempts}};
        }
      },
      change);
}

Status Store::dead_letter(const Change& change, const std::string& what, const std::string& error) {
  auto tx = db::Transaction::begin(db_);
  if (!tx) return tx.error();
  auto st = db_.prepare("INSERT INTO dead_letters (at, what, error, change) VALUES (?1,?2,?3,?4)");
  if (!st) return st.error();
  st->bind(1, format_rfc3339(SystemClock().wall_now()))
      .bind(2, what)
      .bind(3, error)
      .bind(4, change_json(change).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (auto r = st->run(); !r) return r;
  return tx->commit();
}

Result<DeadLetterSummary> Store::dead_letters(int limit) {
  DeadLetterSummary out;
  auto count = db_.prepare("SELECT count(*), max(at) FROM dead_letters");
  if (!count) return count.error();
  auto row = count->step();
  if (!row) return row.error();
  out.count = count->int64(0);
  out.newest_at = count->optional_text(1).value_or("");
  count->reset();
  auto stmt = db_.prepare("SELECT id, at, what, error FROM dead_letters ORDER BY id DESC LIMIT ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, limit);
  auto rows = collect<DeadLetterRow>(*stmt, [](const db::Statement& s) {
    return DeadLetterRow{s.int64(0), s.text(1), s.text(2), s.text(3)};
  });
  if (!rows) return rows.error();
  out.newest = std::move(*rows);
  return out;
}

Result<wire::Event> to_wire(const StoredEvent& e) {
  wire::Event w;
  w.seq = e.seq;
  w.uid = e.uid;
  w.incident = e.incident_uid;
  w.type = e.type;
  w.at = e.at;
  w.actor = e.actor;
  // The writer made this text (json_text): spliced as it is, not parsed and
  // dumped again for every event sent. What HQ cannot parse it refuses.
  if (e.body.size() < 2 || e.body.front() != '{' || e.body.back() != '}') {
    return Error{fmt::format("event {} has a body that is not a JSON object", e.seq)};
  }
  w.body = nlohmann::json();
  w.body_text = e.body;
  return w;
}

}  // namespace storewatch::agent
