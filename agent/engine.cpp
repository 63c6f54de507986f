#include "agent/engine.h"

#include <fmt/format.h>

#include "config/log.h"

namespace storewatch::agent {

namespace {
// The one condition the walking skeleton knows: the probe fails.
constexpr const char* kConditionDown = "down";
}  // namespace

Engine::Engine(const config::Config& config, const Clock& clock, ChangeSink& sink)
    : config_(config), clock_(clock), sink_(sink) {
  for (const auto& p : config_.probes) probes_[p.name].config = &p;
}

std::string Engine::dedup_key(const std::string& probe) const {
  return fmt::format("{}:{}:{}", config_.store.id, probe, kConditionDown);
}

void Engine::restore(const std::vector<ProbeStateRow>& states, std::vector<Incident> unresolved) {
  for (const auto& row : states) {
    auto it = probes_.find(row.probe);
    if (it == probes_.end()) continue;  // probe no longer configured
    Runtime& rt = it->second;
    rt.check = CheckState(row.level, row.failures, row.successes, row.t_fault, row.t_first_ok);
    rt.last_check = row.last_check;
    rt.last_status = row.last_status;
    rt.latency_ms = row.latency_ms;
    rt.message = row.message;
  }
  for (auto& inc : unresolved) {
    // An unresolved incident means its probe was hard-failing, whatever the
    // last periodic flush of probe_state said: it resolves only by recovering.
    if (auto it = probes_.find(inc.probe); it != probes_.end()) {
      it->second.check.assume_hard_fail(inc.t_fault);
    }
    std::string key = inc.dedup_key;
    unresolved_.emplace(std::move(key), std::move(inc));
  }
}

void Engine::on_result(const std::string& probe, const probes::ProbeResult& r) {
  auto it = probes_.find(probe);
  if (it == probes_.end()) return;
  Runtime& rt = it->second;
  const config::ProbeConfig& pc = *rt.config;
  const WallTime at = clock_.wall_now();
  const CheckLevel before = rt.check.level();
  const bool failed =
      r.status == probes::ProbeStatus::fail || r.status == probes::ProbeStatus::unknown;

  const auto transition = rt.check.apply(failed, at, pc.fail_after, pc.recover_after);
  rt.last_check = at;
  rt.last_status = std::string(probes::to_string(r.status));
  rt.latency_ms = static_cast<double>(r.latency.count()) / 1000.0;
  rt.message = r.message;
  rt.dirty = true;

  switch (transition) {
    case CheckState::Transition::hard_failed: open_incident(probe, rt, r, at); break;
    case CheckState::Transition::recovered: resolve_incident(probe, rt, at); break;
    case CheckState::Transition::none: break;
  }
  if (rt.check.level() != before) {
    log::debug("probe {}: {} -> {} ({})", probe, to_string(before), to_string(rt.check.level()),
               r.message);
    sink_.submit(row_of(probe, rt));
    rt.dirty = false;
  }
}

void Engine::open_incident(const std::string& probe, Runtime& rt, const probes::ProbeResult& r,
                           WallTime at) {
  const std::string key = dedup_key(probe);
  if (unresolved_.contains(key)) return;  // still open from before a restart
  const config::ProbeConfig& pc = *rt.config;
  Incident inc;
  inc.uid = new_uid(at);
  inc.dedup_key = key;
  inc.probe = probe;
  inc.condition = kConditionDown;
  inc.severity = pc.severity;
  inc.priority = priority_for(pc.severity);
  inc.state = IncidentState::open;
  inc.t_fault = rt.check.t_fault();
  inc.t_detect = at;
  inc.summary = fmt::format("{} is down: {}", probe, r.message);
  log::warn("incident {} opened: {} ({}, {})", inc.uid, inc.summary,
            config::to_string(inc.severity), inc.priority);
  IncidentEvent ev{new_uid(at), "opened", at, "agent", {{"message", r.message}}};
  sink_.submit(IncidentChange{inc, std::move(ev)});
  unresolved_.emplace(key, std::move(inc));
}

void Engine::resolve_incident(const std::string& probe, Runtime& rt, WallTime at) {
  auto it = unresolved_.find(dedup_key(probe));
  if (it == unresolved_.end()) return;
  Incident inc = std::move(it->second);
  unresolved_.erase(it);
  inc.state = IncidentState::resolved;
  inc.t_restored = rt.check.t_first_ok().value_or(at);
  inc.t_resolved = at;
  log::info("incident {} resolved: {} is back ({})", inc.uid, probe, rt.message);
  IncidentEvent ev{new_uid(at), "resolved", at, "agent", {{"message", rt.message}}};
  sink_.submit(IncidentChange{std::move(inc), std::move(ev)});
}

ProbeStateRow Engine::row_of(const std::string& name, const Runtime& rt) const {
  ProbeStateRow row;
  row.probe = name;
  row.level = rt.check.level();
  row.failures = rt.check.failures();
  row.successes = rt.check.successes();
  row.t_fault = rt.check.t_fault();
  row.t_first_ok = rt.check.t_first_ok();
  row.last_check = rt.last_check;
  row.last_status = rt.last_status;
  row.latency_ms = rt.latency_ms;
  row.message = rt.message;
  return row;
}

void Engine::flush_probe_states() {
  for (auto& [name, rt] : probes_) {
    if (!rt.dirty) continue;
    sink_.submit(row_of(name, rt));
    rt.dirty = false;
  }
}

std::vector<ProbeView> Engine::probes() const {
  std::vector<ProbeView> out;
  for (const auto& p : config_.probes) {
    const Runtime& rt = probes_.at(p.name);
    out.push_back(ProbeView{p.name, p.type, rt.check.level(), rt.last_check, rt.last_status,
                            rt.latency_ms, rt.message});
  }
  return out;
}

}  // namespace storewatch::agent
