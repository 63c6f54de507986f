#include "agent/status.h"

#include <cmath>

#include <map>

namespace storewatch::agent {

using nlohmann::json;

json probe_json(const ProbeView& p) {
  return json{
      {"name", p.name},
      {"type", p.type},
      {"state", to_string(p.level)},
      {"last_check", p.last_check ? json(format_rfc3339(*p.last_check)) : json(nullptr)},
      {"latency_ms", p.last_check ? json(p.latency_ms) : json(nullptr)},
      {"message", p.message},
      {"last_status", p.last_status},
      {"flapping", p.flapping},
      {"flap_percent", std::round(p.flap_percent * 10) / 10},
      {"held", p.held},
  };
}

json schedule_json(const ScheduleStats& s) {
  auto ms = [](std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; };
  return json{
      {"checks", s.checks},       {"skipped", s.skipped},     {"queued", s.queued},
      {"window", s.window},       {"late_p50_ms", ms(s.p50)}, {"late_p99_ms", ms(s.p99)},
      {"late_max_ms", ms(s.max)},
  };
}

Result<json> status_from_store(const config::Config& config, Store& store) {
  auto rows = store.probe_states();
  if (!rows) return rows.error();
  std::map<std::string, const ProbeStateRow*> by_name;
  for (const auto& r : *rows) by_name[r.probe] = &r;
  json probes = json::array();
  for (const auto& p : config.probes) {
    ProbeView v;
    v.name = p.name;
    v.type = p.type;
    if (auto it = by_name.find(p.name); it != by_name.end()) {
      const ProbeStateRow& r = *it->second;
      v.level = r.level;
      v.last_check = r.last_check;
      v.last_status = r.last_status;
      v.latency_ms = r.latency_ms;
      v.message = r.message;
    }
    probes.push_back(probe_json(v));
  }
  auto queued = store.queued();
  if (!queued) return queued.error();
  auto acked = store.sync_value(kHqAckedSeq);
  if (!acked) return acked.error();
  auto open = store.open_by_severity();
  if (!open) return open.error();
  return json{
      {"store", config.store.id},
      {"probes", std::move(probes)},
      {"sync",
       {{"connected", false},
        {"queued", *queued},
        {"hq_acked_seq", *acked},
        {"broker", config.sync.broker}}},
      {"incidents", {{"open", *open}}},
      {"agent", {{"running", false}, {"version", STOREWATCH_VERSION}}},
  };
}

}  // namespace storewatch::agent
