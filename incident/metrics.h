#pragma once
/// \file
/// The incident metrics of DESIGN §4 "Metrics": MTTD, MTTA, MTTR, the
/// auto-heal rate and the probes that failed most, from incident rows. The
/// agent's `storewatch report` (agent/report.h) and HQ's `hq report`
/// (hq/report.h) both compute with this; docs/METRICS.md defines every
/// figure exactly as computed here.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/duration.h"
#include "incident/incident.h"

namespace storewatch {

/// Count, mean, median and p90 of a set of durations, in seconds.
struct DurationStats {
  std::int64_t count = 0;
  /// Unset when count is 0.
  std::optional<double> mean_s, median_s, p90_s;
};

/// Summarises durations (in milliseconds): the mean; the median (the middle
/// value, or the mean of the two middle values for an even count); p90 by
/// the nearest-rank method (the value at rank ceil(0.9 n) of the sorted list).
DurationStats summarise(std::vector<std::int64_t> durations_ms);

struct ProbeCount {
  std::string probe;
  std::int64_t incidents = 0;
};

struct ProbeDowntime {
  std::string probe;
  double downtime_s = 0;
};

struct Report {
  WallTime since;
  WallTime until;
  /// Incidents detected in the window that count: neither suppressed nor in
  /// maintenance.
  std::int64_t incidents = 0;
  /// Detected in the window with suppressed_by set.
  std::int64_t suppressed = 0;
  /// Detected in the window in maintenance and not suppressed.
  std::int64_t in_maintenance = 0;
  /// Counted incidents with at least one negative duration, clamped to 0.
  std::int64_t clock_anomalies = 0;
  DurationStats mttd, mtta, mttr;
  /// Counted incidents that are resolved or closed, and those of them
  /// self-healed; `heal` is t_restored − t_fault of the self-healed ones.
  std::int64_t resolved = 0;
  std::int64_t healed = 0;
  DurationStats heal;
  std::vector<ProbeCount> top_by_count;
  std::vector<ProbeDowntime> top_by_downtime;

  /// healed / resolved, unset when nothing resolved.
  std::optional<double> heal_rate() const;
  /// The JSON of docs/METRICS.md.
  nlohmann::json to_json() const;
  /// The human report: a few lines and aligned tables.
  std::string render(bool colour) const;
};

/// One incident as the report needs it (the agent's `incidents` row, or the
/// snapshot HQ keeps of it).
struct ReportRow {
  std::string probe;
  IncidentState state = IncidentState::open;
  bool suppressed = false;
  bool in_maintenance = false;
  bool self_healed = false;
  /// An `acknowledged` event with a `cli:` or `hq:` actor exists.
  bool human_ack = false;
  std::optional<WallTime> t_fault, t_detect, t_ack, t_restored, t_resolved, t_closed;
  /// The spans during which a reopened incident was up: from the restore
  /// that resolved it to the first failing result of the fault that
  /// reopened it (resolved_spans). MTTR, time to self-heal and downtime
  /// leave them out.
  std::vector<std::pair<WallTime, WallTime>> up_spans;
};

/// One `resolved` or `reopened` event of an incident, as stored: its type,
/// its time and its body (DESIGN §6, with `incident_state`).
struct TimelineEvent {
  std::string type;
  WallTime at;
  nlohmann::json body;
};

/// The spans a reopened incident was up, from its `resolved` and `reopened`
/// events in seq order: each `reopened` event ends one, from the restore
/// before it (its `restored_at`, else the `t_restored` of the last
/// `resolved` event's snapshot, else that event's time) to the fault that
/// reopened it (its `fault_at`, else its own time). Empty spans are dropped.
std::vector<std::pair<WallTime, WallTime>> resolved_spans(const std::vector<TimelineEvent>& events);

/// How many probes each "top" list shows.
inline constexpr std::size_t kReportTopProbes = 5;

/// The report of `rows`, the incidents detected in [now − since, now] (the
/// caller selects them by `t_detect`).
Report report_from_rows(const std::vector<ReportRow>& rows, WallTime now, Millis since,
                        std::size_t top = kReportTopProbes);

/// A duration for people: "0.4s", "45s", "2m 10s", "3h 5m", "2d 4h".
std::string format_span(double seconds);

}  // namespace storewatch
