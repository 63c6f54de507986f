#include "incident/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "base/table.h"

namespace storewatch {
namespace {

using nlohmann::json;

using Row = ReportRow;

/// Seconds, rounded to the millisecond.
double seconds(double ms) {
  return std::round(ms) / 1000.0;
}

json stat_json(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

json stats_json(const DurationStats& s) {
  return json{{"count", s.count},
              {"mean_s", stat_json(s.mean_s)},
              {"median_s", stat_json(s.median_s)},
              {"p90_s", stat_json(s.p90_s)}};
}

std::string span_or_dash(const std::optional<double>& s) {
  return s ? format_span(*s) : "-";
}

/// "2026-11-26 22:18Z".
std::string short_time(WallTime t) {
  std::string s = format_rfc3339(t);
  return s.substr(0, 10) + " " + s.substr(11, 5) + "Z";
}

/// How much of [from, to] the spans cover, in milliseconds (the spans do
/// not overlap one another).
std::int64_t covered_ms(WallTime from, WallTime to,
                        const std::vector<std::pair<WallTime, WallTime>>& spans) {
  std::int64_t out = 0;
  for (const auto& [a, b] : spans) {
    const WallTime lo = std::max(a, from), hi = std::min(b, to);
    if (hi > lo) out += (hi - lo).count();
  }
  return out;
}

std::optional<WallTime> time_in(const json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return parse_rfc3339(it->get<std::string>());
}

}  // namespace

std::vector<std::pair<WallTime, WallTime>> resolved_spans(
    const std::vector<TimelineEvent>& events) {
  std::vector<std::pair<WallTime, WallTime>> out;
  std::optional<WallTime> restored;
  for (const TimelineEvent& e : events) {
    if (e.type == "resolved") {
      auto state = e.body.is_object() ? e.body.find("incident_state") : e.body.end();
      restored = e.body.is_object() && state != e.body.end() ? time_in(*state, "t_restored")
                                                             : std::nullopt;
      if (!restored) restored = e.at;
    } else if (e.type == "reopened") {
      std::optional<WallTime> from = time_in(e.body, "restored_at");
      if (!from) from = restored;
      const WallTime to = time_in(e.body, "fault_at").value_or(e.at);
      if (from && to > *from) out.emplace_back(*from, to);
      restored.reset();
    }
  }
  return out;
}

DurationStats summarise(std::vector<std::int64_t> ms) {
  DurationStats s;
  s.count = static_cast<std::int64_t>(ms.size());
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  const std::size_t n = ms.size();
  double sum = 0;
  for (auto v : ms) sum += static_cast<double>(v);
  s.mean_s = seconds(sum / static_cast<double>(n));
  s.median_s =
      n % 2 == 1
          ? seconds(static_cast<double>(ms[n / 2]))
          : seconds((static_cast<double>(ms[n / 2 - 1]) + static_cast<double>(ms[n / 2])) / 2.0);
  // Nearest rank: the smallest value with at least 90 % of the values at or
  // below it. Integer arithmetic, so 0.9 * n never rounds the wrong way.
  const std::size_t rank = (9 * n + 9) / 10;  // ceil(0.9 n), 1-based
  s.p90_s = seconds(static_cast<double>(ms[rank - 1]));
  return s;
}

std::string format_span(double s) {
  if (s < 0) s = 0;
  if (s < 10) {
    std::string t = fmt::format("{:.1f}", s);
    if (t.ends_with(".0")) t.resize(t.size() - 2);
    return t + "s";
  }
  const auto total = static_cast<std::int64_t>(std::llround(s));
  const std::int64_t d = total / 86400, h = total % 86400 / 3600, m = total % 3600 / 60,
                     sec = total % 60;
  if (d > 0) return fmt::format("{}d {}h", d, h);
  if (h > 0) return fmt::format("{}h {}m", h, m);
  if (m > 0) return fmt::format("{}m {}s", m, sec);
  return fmt::format("{}s", sec);
}

std::optional<double> Report::heal_rate() const {
  if (resolved == 0) return std::nullopt;
  return std::round(static_cast<double>(healed) / static_cast<double>(resolved) * 10000.0) /
         10000.0;
}

Report report_from_rows(const std::vector<ReportRow>& rows, WallTime now, Millis since,
                        std::size_t top) {
  Report r;
  r.until = now;
  r.since = now - since;

  std::vector<std::int64_t> mttd, mtta, mttr, heal;
  std::map<std::string, std::int64_t> count_by_probe;
  std::map<std::string, std::int64_t> downtime_ms_by_probe;
  for (const Row& row : rows) {
    if (row.suppressed) {
      ++r.suppressed;
      continue;
    }
    if (row.in_maintenance) {
      ++r.in_maintenance;
      continue;
    }
    ++r.incidents;
    ++count_by_probe[row.probe];

    bool anomaly = false;
    // b − a in milliseconds, clamped to 0 when the wall clock went backwards.
    auto span = [&](WallTime a, WallTime b) -> std::int64_t {
      const std::int64_t d = (b - a).count();
      if (d < 0) anomaly = true;
      return std::max<std::int64_t>(d, 0);
    };
    const bool resolved = !is_unresolved(row.state);
    if (row.t_fault && row.t_detect) mttd.push_back(span(*row.t_fault, *row.t_detect));
    if (row.human_ack && row.t_ack && row.t_detect) {
      mtta.push_back(span(*row.t_detect, *row.t_ack));
    }
    if (resolved) {
      ++r.resolved;
      if (row.self_healed) ++r.healed;
      if (row.t_restored && row.t_fault) {
        // The time a reopened incident was up in between does not count.
        const std::int64_t up = covered_ms(*row.t_fault, *row.t_restored, row.up_spans);
        (row.self_healed ? heal : mttr)
            .push_back(std::max<std::int64_t>(span(*row.t_fault, *row.t_restored) - up, 0));
      }
    }

    // Downtime: from the fault (or the detection, if the fault time is
    // unknown) to the restore — or now while unresolved; an incident someone
    // resolved or closed without a restore ends then — clipped to the window,
    // less the spans a reopened incident was up in between.
    const std::optional<WallTime> start = row.t_fault ? row.t_fault : row.t_detect;
    std::optional<WallTime> end;
    if (!resolved) {
      end = now;
    } else if (row.t_restored) {
      end = row.t_restored;
    } else {
      end = row.t_resolved ? row.t_resolved : row.t_closed;
    }
    if (start && end) {
      span(*start, *end);  // flags a backwards clock, the clipped span below may hide it
      const WallTime from = std::max(*start, r.since);
      const WallTime to = std::min(*end, r.until);
      if (to > from) {
        downtime_ms_by_probe[row.probe] +=
            std::max<std::int64_t>((to - from).count() - covered_ms(from, to, row.up_spans), 0);
      }
    }
    if (anomaly) ++r.clock_anomalies;
  }
  r.mttd = summarise(std::move(mttd));
  r.mtta = summarise(std::move(mtta));
  r.mttr = summarise(std::move(mttr));
  r.heal = summarise(std::move(heal));

  for (const auto& [probe, n] : count_by_probe) r.top_by_count.push_back({probe, n});
  // Most first; ties by name, so the order is stable (std::map gave names in order).
  std::stable_sort(r.top_by_count.begin(), r.top_by_count.end(),
                   [](const auto& a, const auto& b) { return a.incidents > b.incidents; });
  if (r.top_by_count.size() > top) r.top_by_count.resize(top);

  std::vector<std::pair<std::string, std::int64_t>> downtime(downtime_ms_by_probe.begin(),
                                                             downtime_ms_by_probe.end());
  std::stable_sort(downtime.begin(), downtime.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [probe, ms] : downtime) {
    if (ms <= 0 || r.top_by_downtime.size() >= top) break;
    r.top_by_downtime.push_back({probe, seconds(static_cast<double>(ms))});
  }
  return r;
}

json Report::to_json() const {
  json by_count = json::array();
  for (const auto& p : top_by_count) {
    by_count.push_back(json{{"probe", p.probe}, {"incidents", p.incidents}});
  }
  json by_downtime = json::array();
  for (const auto& p : top_by_downtime) {
    by_downtime.push_back(json{{"probe", p.probe}, {"downtime_s", p.downtime_s}});
  }
  const auto rate = heal_rate();
  return json{{"since", format_rfc3339(since)},
              {"until", format_rfc3339(until)},
              {"incidents", incidents},
              {"suppressed", suppressed},
              {"in_maintenance", in_maintenance},
              {"clock_anomalies", clock_anomalies},
              {"mttd", stats_json(mttd)},
              {"mtta", stats_json(mtta)},
              {"mttr", stats_json(mttr)},
              {"self_heal",
               {{"rate", rate ? json(*rate) : json(nullptr)},
                {"healed", healed},
                {"resolved", resolved},
                {"count", heal.count},
                {"mean_s", stat_json(heal.mean_s)},
                {"median_s", stat_json(heal.median_s)},
                {"p90_s", stat_json(heal.p90_s)}}},
              {"top_by_count", std::move(by_count)},
              {"top_by_downtime", std::move(by_downtime)}};
}

std::string Report::render(bool colour) const {
  std::string out = paint(fmt::format("Incidents detected {} – {} ({})", short_time(since),
                                      short_time(until), format_duration(until - since)),
                          Colour::bold, colour) +
                    "\n";
  out += fmt::format(
      "{} counted; not counted: {} suppressed by a parent's incident, {} in maintenance\n",
      incidents, suppressed, in_maintenance);
  if (incidents == 0) return out;

  Table t({"METRIC", "COUNT", "MEAN", "MEDIAN", "P90", "MEASURED"});
  auto add = [&](const char* name, const DurationStats& s, const char* what) {
    t.add({name, std::to_string(s.count), span_or_dash(s.mean_s), span_or_dash(s.median_s),
           span_or_dash(s.p90_s), what});
  };
  add("MTTD", mttd, "fault to detection");
  add("MTTA", mtta, "detection to a human's ack");
  add("MTTR", mttr, "fault to restore, not self-healed");
  add("self-heal", heal, "fault to restore, self-healed");
  out += "\n" + t.render(colour);

  if (const auto rate = heal_rate()) {
    out +=
        fmt::format("\nAuto-heal rate: {:.0f}% ({} of {} resolved incidents healed themselves)\n",
                    *rate * 100.0, healed, resolved);
  } else {
    out += "\nAuto-heal rate: - (nothing resolved yet)\n";
  }
  if (clock_anomalies > 0) {
    out +=
        paint(fmt::format("{} incident{} had the wall clock go backwards; those spans count as 0\n",
                          clock_anomalies, clock_anomalies == 1 ? "" : "s"),
              Colour::yellow, colour);
  }

  Table counts({"PROBE", "INCIDENTS"});
  for (const auto& p : top_by_count) counts.add({p.probe, std::to_string(p.incidents)});
  out += "\nMost incidents\n" + counts.render(colour);
  if (!top_by_downtime.empty()) {
    Table down({"PROBE", "DOWNTIME"});
    for (const auto& p : top_by_downtime) down.add({p.probe, format_span(p.downtime_s)});
    out += "\nMost downtime\n" + down.render(colour);
  }
  return out;
}

}  // namespace storewatch
