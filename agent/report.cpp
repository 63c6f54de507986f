#include "agent/report.h"

#include <map>

namespace storewatch::agent {
namespace {

using Row = ReportRow;

std::optional<WallTime> time_of(const db::Statement& s, int column) {
  auto text = s.optional_text(column);
  if (!text) return std::nullopt;
  return parse_rfc3339(*text);
}

// t_detect is always written by format_rfc3339 (fixed width, UTC, "Z"), so
// comparing the text compares the instants and the incidents_detect index
// serves the window. An acknowledgement counts as a human's when an
// `acknowledged` event of the incident has a cli: or hq: actor; t_ack alone
// is not trusted to say who acknowledged.
constexpr const char* kWindowSql = R"sql(
SELECT i.probe, i.state, i.suppressed_by IS NOT NULL, i.in_maintenance, i.self_healed,
       i.t_fault, i.t_detect, i.t_ack, i.t_restored, i.t_resolved, i.t_closed,
       EXISTS (SELECT 1 FROM events e
               WHERE e.incident_uid = i.uid AND e.type = 'acknowledged'
                 AND (substr(e.actor, 1, 4) = 'cli:' OR substr(e.actor, 1, 3) = 'hq:')),
       i.uid
FROM incidents i
WHERE i.t_detect >= ?1 AND i.t_detect <= ?2
)sql";

// The resolved and reopened events of the reopened incidents of the window,
// for the spans they were up in between (resolved_spans).
constexpr const char* kReopenedSql = R"sql(
SELECT e.incident_uid, e.type, e.at, e.body
FROM incidents i JOIN events e ON e.incident_uid = i.uid
WHERE i.t_detect >= ?1 AND i.t_detect <= ?2 AND i.reopen_count > 0
  AND e.type IN ('resolved', 'reopened')
ORDER BY e.incident_uid, e.seq
)sql";

Result<std::map<std::string, std::vector<TimelineEvent>>> reopened_in(Store& store, WallTime since,
                                                                      WallTime until) {
  auto stmt = store.database().prepare(kReopenedSql);
  if (!stmt) return stmt.error();
  stmt->bind(1, format_rfc3339(since)).bind(2, format_rfc3339(until));
  std::map<std::string, std::vector<TimelineEvent>> out;
  auto st = stmt->each([&](const db::Statement& s) {
    auto at = parse_rfc3339(s.text(2));
    if (!at) return true;
    out[s.text(0)].push_back(
        {s.text(1), *at, nlohmann::json::parse(s.text(3), nullptr, /*allow_exceptions=*/false)});
    return true;
  });
  if (!st) return st.error();
  return out;
}

Result<std::vector<Row>> rows_in(Store& store, WallTime since, WallTime until) {
  auto reopened = reopened_in(store, since, until);
  if (!reopened) return reopened.error();
  auto stmt = store.database().prepare(kWindowSql);
  if (!stmt) return stmt.error();
  stmt->bind(1, format_rfc3339(since)).bind(2, format_rfc3339(until));
  std::vector<Row> rows;
  auto st = stmt->each([&](const db::Statement& s) {
    Row r;
    r.probe = s.text(0);
    r.state = parse_incident_state(s.text(1)).value_or(IncidentState::open);
    r.suppressed = s.int64(2) != 0;
    r.in_maintenance = s.int64(3) != 0;
    r.self_healed = s.int64(4) != 0;
    r.t_fault = time_of(s, 5);
    r.t_detect = time_of(s, 6);
    r.t_ack = time_of(s, 7);
    r.t_restored = time_of(s, 8);
    r.t_resolved = time_of(s, 9);
    r.t_closed = time_of(s, 10);
    r.human_ack = s.int64(11) != 0;
    if (auto it = reopened->find(s.text(12)); it != reopened->end()) {
      r.up_spans = resolved_spans(it->second);
    }
    rows.push_back(std::move(r));
    return true;
  });
  if (!st) return st.error();
  return rows;
}

}  // namespace

Result<Report> build_report(Store& store, WallTime now, Millis since, std::size_t top) {
  auto rows = rows_in(store, now - since, now);
  if (!rows) return rows.error();
  return report_from_rows(*rows, now, since, top);
}

}  // namespace storewatch::agent
