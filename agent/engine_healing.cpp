// Engine: self-healing — remediation attempts, their backoff, verify and escalation.
#include "agent/engine.h"

#include <fmt/format.h>

#include <algorithm>

#include "agent/engine_internal.h"
#include "base/log.h"

namespace storewatch::agent {

using engine_internal::describe;
using engine_internal::kAnswerSlack;
using nlohmann::json;

namespace {

int severity_rank(config::Severity s) {
  return static_cast<int>(s);  // critical = 0 … info = 4
}

}  // namespace

json Engine::attempt_json(const std::string& probe) const {
  const Runtime& r = probes_.at(probe);
  json out{{"remediation", r.remediation->name},
           {"type", config::to_string(r.remediation->type)},
           {"attempt", r.heal.attempt},
           {"max_attempts", r.remediation->max_attempts},
           {"window", describe(r.remediation->window)}};
  return out;
}

json Engine::outcome_json(const std::string& probe, const std::string& detail) const {
  const ActionOutcome& o = probes_.at(probe).heal.outcome;
  json out = attempt_json(probe);
  out["detail"] = detail;
  if (o.exit_code) out["exit_code"] = *o.exit_code;
  out["output"] = o.output;
  out["output_truncated"] = o.output_truncated;
  out["took_ms"] = o.took.count();
  return out;
}

void Engine::maybe_remediate(const std::string& probe) {
  Runtime& r = rt(probe);
  if (r.remediation == nullptr) return;
  Incident* inc = unresolved_of(probe);
  if (inc == nullptr) return;
  // Humans have it once it is escalated or acknowledged.
  if (inc->state != IncidentState::open && inc->state != IncidentState::remediating) return;
  if (inc->suppressed_by || inc->in_maintenance || inc->flapping) return;
  Healing& h = r.heal;
  if (h.phase != Healing::Phase::idle || h.healed) return;
  const SteadyTime now = clock_.steady_now();
  if (h.next_try && now < *h.next_try) return;
  const config::RemediationConfig& rem = *r.remediation;

  const WallTime wall = clock_.wall_now();
  std::erase_if(h.attempts, [&](WallTime t) { return t + rem.window <= wall; });
  if (static_cast<int>(h.attempts.size()) >= rem.max_attempts) {
    escalate(*inc, fmt::format("{} ran {} times within {} without healing {}", rem.name,
                               h.attempts.size(), describe(rem.window), probe));
    return;
  }
  // With no trading_hours configured the store is never "in trading hours"
  // for this rule (config check warns that the flag has no effect).
  if (rem.only_outside_trading_hours && !config_->store.trading.empty() && trading_now()) {
    auto ends = config_->store.trading.next_change(wall, tz_);
    h.next_try = ends ? steady_of(wall) + (*ends - wall) : now + std::chrono::minutes(1);
    if (!h.trading_skip_reported) {
      h.trading_skip_reported = true;
      json extra = attempt_json(probe);
      extra["reason"] =
          ends ? fmt::format("inside trading hours; waits until {}", format_rfc3339(*ends))
               : std::string("inside trading hours");
      emit(*inc, "remediation_skipped", std::move(extra));
    }
    return;
  }
  if (!rem.precondition.empty()) {
    h.phase = Healing::Phase::precondition;
    const config::ProbeConfig* pre = config_->find_probe(rem.precondition);
    h.deadline = now + (pre != nullptr ? pre->timeout : Millis(0)) + kAnswerSlack;
    run_now(rem.precondition);
    return;
  }
  start_action(probe);
}

void Engine::on_precondition(const std::string& probe, const std::string& precondition,
                             const probes::ProbeResult& res) {
  Runtime& r = rt(probe);
  Healing& h = r.heal;
  h.phase = Healing::Phase::idle;
  if (res.status == probes::ProbeStatus::ok) {
    start_action(probe);
    return;
  }
  Incident* inc = unresolved_of(probe);
  ++h.skips_in_row;
  const auto wait = std::min(r.remediation->backoff * (1 << std::min(h.skips_in_row - 1, 20)),
                             r.remediation->backoff_max);
  h.next_try = clock_.steady_now() + wait;
  if (inc == nullptr) return;
  json extra = attempt_json(probe);
  extra["reason"] = fmt::format("precondition {} is {}: {}", precondition,
                                probes::to_string(res.status), res.message);
  extra["retry_in"] = describe(wait);
  log::info("remediation {} for {} skipped: {}", r.remediation->name, probe,
            extra["reason"].get<std::string>());
  emit(*inc, "remediation_skipped", std::move(extra));
}

void Engine::start_action(const std::string& probe) {
  Runtime& r = rt(probe);
  Healing& h = r.heal;
  Incident* inc = unresolved_of(probe);
  if (inc == nullptr ||
      (inc->state != IncidentState::open && inc->state != IncidentState::remediating)) {
    h.phase = Healing::Phase::idle;
    return;
  }
  h.skips_in_row = 0;
  h.attempts.push_back(clock_.wall_now());
  h.attempt = static_cast<int>(h.attempts.size());
  h.incident_uid = inc->uid;
  h.phase = Healing::Phase::running;
  const std::uint64_t generation = ++h.generation;
  // The attempt counts before it starts: a crash mid-action must not give
  // the policy a free attempt.
  persist(probe, r);
  inc->state = IncidentState::remediating;
  log::info("remediation {} for {}: attempt {} of {}", r.remediation->name, probe, h.attempt,
            r.remediation->max_attempts);
  emit(*inc, "remediation_started", attempt_json(probe));
  if (hooks_.runner == nullptr) {
    ActionOutcome o;
    o.detail = "no remediation runner in this process";
    on_action_done(probe, generation, std::move(o));
    return;
  }
  hooks_.runner->run(*r.remediation, [this, probe, generation](ActionOutcome o) {
    on_action_done(probe, generation, std::move(o));
  });
}

void Engine::on_action_done(const std::string& probe, std::uint64_t generation,
                            ActionOutcome outcome) {
  auto it = probes_.find(probe);
  if (it == probes_.end() || stopping_) return;
  Healing& h = it->second.heal;
  if (h.generation != generation || h.phase != Healing::Phase::running) return;
  h.outcome = std::move(outcome);
  const Incident* inc = unresolved_of(probe);
  if (inc == nullptr || inc->uid != h.incident_uid) {
    // The incident resolved (or a human closed it) while the action ran:
    // record how the action went, nothing to verify.
    h.phase = Healing::Phase::idle;
    if (Incident* done = find_incident(h.incident_uid)) {
      json extra = outcome_json(probe, h.outcome.detail);
      extra["reason"] = "the incident was no longer open when the action ended";
      emit(*done, h.outcome.ok ? "remediation_succeeded" : "remediation_failed", std::move(extra));
    }
    h.outcome = ActionOutcome{};
    return;
  }
  if (!h.outcome.ok) {
    attempt_failed(probe, h.outcome.detail);
    return;
  }
  h.phase = Healing::Phase::verify_wait;
  h.deadline = clock_.steady_now() + it->second.remediation->verify_after;
  if (it->second.remediation->verify_after <= Millis(0)) tick_healing(clock_.steady_now());
}

void Engine::attempt_failed(const std::string& probe, const std::string& why) {
  Runtime& r = rt(probe);
  Healing& h = r.heal;
  h.phase = Healing::Phase::idle;
  h.healed = false;
  ++h.failures_in_row;
  const config::RemediationConfig& rem = *r.remediation;
  const auto wait =
      std::min(rem.backoff * (1 << std::min(h.failures_in_row - 1, 20)), rem.backoff_max);
  h.next_try = clock_.steady_now() + wait;
  persist(probe, r);
  json extra = outcome_json(probe, why);
  log::warn("remediation {} for {} failed (attempt {}): {}", rem.name, probe, h.attempt, why);
  Incident* inc = find_incident(h.incident_uid);
  if (inc == nullptr) return;
  const bool exhausted = static_cast<int>(h.attempts.size()) >= rem.max_attempts;
  if (!exhausted) extra["retry_in"] = describe(wait);
  emit(*inc, "remediation_failed", std::move(extra));
  h.outcome = ActionOutcome{};
  // Only the agent's own states escalate: a human who acknowledged the
  // incident while the attempt ran keeps it.
  const bool agents = inc->state == IncidentState::open || inc->state == IncidentState::remediating;
  if (exhausted && agents && unresolved_of(probe) == inc) {
    escalate(*inc, fmt::format("{} failed {} of {} attempts within {}", rem.name, h.attempts.size(),
                               rem.max_attempts, describe(rem.window)));
  }
}

void Engine::attempt_succeeded(const std::string& probe, const probes::ProbeResult& verify) {
  Runtime& r = rt(probe);
  Healing& h = r.heal;
  h.phase = Healing::Phase::idle;
  h.failures_in_row = 0;
  h.healed = true;
  persist(probe, r);
  json extra = outcome_json(probe, h.outcome.detail);
  extra["verify"] = verify.message;
  h.outcome = ActionOutcome{};
  log::info("remediation {} for {} worked (attempt {})", r.remediation->name, probe, h.attempt);
  if (Incident* inc = find_incident(h.incident_uid)) emit(*inc, "remediation_succeeded", extra);
}

void Engine::escalate(Incident& inc, const std::string& reason) {
  if (inc.state == IncidentState::escalated) return;
  inc.state = IncidentState::escalated;
  json extra{{"reason", reason}};
  const auto* r = probes_.contains(inc.probe) ? probes_.at(inc.probe).remediation : nullptr;
  if (r != nullptr && r->escalate_severity &&
      severity_rank(*r->escalate_severity) < severity_rank(inc.severity)) {
    extra["severity_from"] = config::to_string(inc.severity);
    inc.severity = *r->escalate_severity;
  }
  inc.priority = priority_now(inc.severity);
  log::warn("incident {} escalated: {}", inc.uid, reason);
  emit(inc, "escalated", std::move(extra));
}

void Engine::tick_healing(SteadyTime now) {
  for (auto& [name, r] : probes_) {
    if (r.remediation == nullptr) continue;
    Healing& h = r.heal;
    switch (h.phase) {
      case Healing::Phase::verify_wait:
        if (now >= h.deadline) {
          h.phase = Healing::Phase::verifying;
          h.deadline = now + r.config->timeout + kAnswerSlack;
          run_now(name);
        }
        break;
      case Healing::Phase::verifying:
        if (now >= h.deadline) attempt_failed(name, "verify: the probe gave no result in time");
        break;
      case Healing::Phase::precondition:
        if (now >= h.deadline) {
          h.phase = Healing::Phase::idle;
          probes::ProbeResult none;
          none.status = probes::ProbeStatus::unknown;
          none.message = "gave no result in time";
          on_precondition(name, r.remediation->precondition, none);
        }
        break;
      case Healing::Phase::idle:
        if (h.next_try && now >= *h.next_try) maybe_remediate(name);
        break;
      case Healing::Phase::running: break;  // the runner enforces the timeout
    }
  }
}

}  // namespace storewatch::agent
