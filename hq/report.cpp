#include "hq/report.h"

#include <fmt/format.h>

#include <map>
#include <utility>

#include "base/table.h"
#include "incident/incident.h"

namespace storewatch::hq {
namespace {

using nlohmann::json;

std::optional<WallTime> time_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return parse_rfc3339(it->get<std::string>());
}

bool bool_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string or_dash(const std::optional<double>& s) {
  return s ? format_span(*s) : "-";
}

}  // namespace

ReportRow report_row(const json& snapshot, bool human_ack) {
  ReportRow r;
  if (auto it = snapshot.find("probe"); it != snapshot.end() && it->is_string()) {
    r.probe = it->get<std::string>();
  }
  if (auto it = snapshot.find("state"); it != snapshot.end() && it->is_string()) {
    r.state = parse_incident_state(it->get<std::string>()).value_or(IncidentState::open);
  }
  auto suppressed = snapshot.find("suppressed_by");
  r.suppressed = suppressed != snapshot.end() && !suppressed->is_null();
  r.in_maintenance = bool_field(snapshot, "in_maintenance");
  r.self_healed = bool_field(snapshot, "self_healed");
  r.human_ack = human_ack;
  r.t_fault = time_field(snapshot, "t_fault");
  r.t_detect = time_field(snapshot, "t_detect");
  r.t_ack = time_field(snapshot, "t_ack");
  r.t_restored = time_field(snapshot, "t_restored");
  r.t_resolved = time_field(snapshot, "t_resolved");
  r.t_closed = time_field(snapshot, "t_closed");
  return r;
}

Result<FleetReport> build_fleet_report(HqDatabase& store, WallTime now, Millis since,
                                       const std::optional<std::string>& only_store) {
  auto known = store.acked_seqs();
  if (!known) return known.error();
  std::map<std::string, std::vector<ReportRow>> by_store;
  for (const auto& [id, seq] : *known) {
    if (!only_store || id == *only_store) by_store[id];
  }
  if (only_store && by_store.empty()) {
    return Error{fmt::format("HQ knows no store \"{}\"", *only_store)};
  }

  auto incidents = store.report_incidents(now - since, now);
  if (!incidents) return incidents.error();
  std::vector<ReportRow> all;
  for (const ReportIncident& i : *incidents) {
    auto it = by_store.find(i.store);
    if (it == by_store.end()) continue;
    ReportRow row = report_row(i.snapshot, i.human_ack);
    if (!i.reopen_events.empty()) {
      std::vector<TimelineEvent> timeline;
      for (const json& e : i.reopen_events) {
        auto at = time_field(e, "at");
        if (!at) continue;
        timeline.push_back({e.value("type", std::string()), *at, e.value("body", json::object())});
      }
      row.up_spans = resolved_spans(timeline);
    }
    // Selected by HQ's t_detect column, which came from this same snapshot.
    if (!row.t_detect) continue;
    it->second.push_back(row);
    all.push_back(std::move(row));
  }

  FleetReport out;
  out.fleet = report_from_rows(all, now, since);
  for (auto& [id, rows] : by_store) {
    out.stores.push_back({id, report_from_rows(rows, now, since)});
  }
  return out;
}

json FleetReport::to_json() const {
  json stores_json = json::array();
  for (const StoreReport& s : stores) {
    json j = s.report.to_json();
    j["store"] = s.store;
    stores_json.push_back(std::move(j));
  }
  return json{{"since", format_rfc3339(fleet.since)},
              {"until", format_rfc3339(fleet.until)},
              {"fleet", fleet.to_json()},
              {"stores", std::move(stores_json)}};
}

std::string FleetReport::render(bool colour) const {
  std::string out = paint("Fleet", Colour::bold, colour) + " (" + std::to_string(stores.size()) +
                    (stores.size() == 1 ? " store" : " stores") + ")\n" + fleet.render(colour);
  Table t({"STORE", "INCIDENTS", "MTTD", "MTTA", "MTTR", "SELF-HEAL", "AUTO-HEAL"});
  for (const StoreReport& s : stores) {
    const Report& r = s.report;
    const auto rate = r.heal_rate();
    t.add({s.store, std::to_string(r.incidents), or_dash(r.mttd.mean_s), or_dash(r.mtta.mean_s),
           or_dash(r.mttr.mean_s), or_dash(r.heal.mean_s),
           rate ? fmt::format("{:.0f}%", *rate * 100.0) : "-"});
  }
  out += "\n" + paint("Per store (means)", Colour::bold, colour) + "\n" + t.render(colour);
  return out;
}

}  // namespace storewatch::hq
