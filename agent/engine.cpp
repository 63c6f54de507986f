#include "agent/engine.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <utility>

#include "agent/engine_internal.h"
#include "base/log.h"

namespace storewatch::agent {

using engine_internal::describe;
using engine_internal::kAnswerSlack;
using engine_internal::kConditionDown;
using nlohmann::json;

namespace {

// A descriptor problem ends once no check has hit it for this long.
constexpr auto kDescriptorQuiet = std::chrono::seconds(60);
// The note of the resolution of a removed probe's incident.
constexpr const char* kProbeRemoved = "the probe was removed from the config";

bool failed_status(probes::ProbeStatus s) {
  return s == probes::ProbeStatus::fail || s == probes::ProbeStatus::unknown;
}

}  // namespace

Engine::Engine(std::shared_ptr<const config::Config> config, const Clock& clock, ChangeSink& sink,
               EngineHooks hooks)
    : config_(std::move(config)),
      clock_(clock),
      sink_(sink),
      hooks_(std::move(hooks)),
      tz_(config::TimeZone::utc()) {
  locate_zone();
  for (const auto& p : config_->probes) probes_[p.name];
  wire();
}

void Engine::locate_zone() {
  if (auto tz = config::TimeZone::locate(config_->store.timezone)) {
    tz_ = *tz;
  } else {
    tz_ = config::TimeZone::utc();
    log::warn("store time zone: {}; using UTC for trading hours and silences", tz.error().message);
  }
}

void Engine::wire() {
  ancestors_.clear();
  descendants_.clear();
  precondition_of_.clear();
  for (const auto& p : config_->probes) {
    Runtime& r = probes_.at(p.name);
    r.config = &p;
    r.remediation = p.remediation.empty() ? nullptr : config_->find_remediation(p.remediation);
  }
  // Ancestors nearest first (breadth first over depends_on); the loader has
  // rejected cycles and unknown names.
  for (const auto& p : config_->probes) {
    std::vector<std::string>& out = ancestors_[p.name];
    std::deque<std::string> queue(p.depends_on.begin(), p.depends_on.end());
    std::set<std::string> seen;
    while (!queue.empty() && seen.size() < config_->probes.size()) {
      std::string a = std::move(queue.front());
      queue.pop_front();
      if (a == p.name || !seen.insert(a).second) continue;
      const config::ProbeConfig* ap = config_->find_probe(a);
      if (ap == nullptr) continue;
      out.push_back(a);
      queue.insert(queue.end(), ap->depends_on.begin(), ap->depends_on.end());
    }
    for (const auto& a : out) descendants_[a].push_back(p.name);
  }
  for (const auto& [name, r] : probes_) {
    if (r.remediation != nullptr && !r.remediation->precondition.empty()) {
      precondition_of_[r.remediation->precondition].push_back(name);
    }
  }
}

void Engine::reconfigure(std::shared_ptr<const config::Config> next, const ConfigChange& change) {
  // The probes point into the old snapshot until wire(): it lives until then.
  const auto old = std::exchange(config_, std::move(next));
  locate_zone();
  // Probes no longer configured: their state goes; an attempt of theirs
  // still running is ignored when it ends (on_action_done finds no probe).
  for (const std::string& name : change.removed) probes_.erase(name);
  for (const auto& p : config_->probes) probes_[p.name];  // new ones start unknown
  for (auto& [name, r] : probes_) {
    // A hold waits for ancestors that may have changed: let the next failed
    // result decide again (on_result holds or raises a hard-failing probe
    // without an incident).
    if (r.held) release_hold(r);
    if (!change.remediation_changed.contains(name)) continue;
    // The attempt in flight (or its precondition) was of the old
    // remediation: drop it; the attempt still counts, and the new
    // remediation may run at the next tick.
    Healing& h = r.heal;
    if (h.phase == Healing::Phase::idle) continue;
    const bool in_flight = h.phase != Healing::Phase::precondition;
    ++h.generation;
    h.phase = Healing::Phase::idle;
    h.healed = false;
    h.next_try = clock_.steady_now();
    if (!in_flight) continue;
    if (Incident* inc = find_incident(h.incident_uid)) {
      json extra{{"detail", "abandoned: the probe's remediation changed in a config reload"}};
      emit(*inc, "remediation_failed", std::move(extra));
    }
    h.outcome = ActionOutcome{};
  }
  wire();
  // A removed probe's unresolved incident: nothing watches the probe any
  // more, so nothing would ever resolve it. Resolve it now, saying why (its
  // children find another root cause or open their own incidents).
  for (const std::string& name : change.removed) {
    if (Incident* inc = unresolved_of(name)) {
      log::info("incident {}: probe {} was removed from the config; resolving it", inc->uid, name);
      resolve(*inc, "agent", kProbeRemoved, false);
    }
  }
  // Silences or trading hours may have changed: apply them now, not in a second.
  tick();
}

void Engine::stop() {
  // Actions cancelled by the shutdown are not failed attempts: the next start
  // records them as interrupted (restore()) and the policy goes on from there.
  stopping_ = true;
}

std::string Engine::dedup_key(const std::string& probe) const {
  return fmt::format("{}:{}:{}", config_->store.id, probe, kConditionDown);
}

Incident* Engine::unresolved_of(const std::string& probe) {
  auto it = unresolved_.find(dedup_key(probe));
  return it == unresolved_.end() ? nullptr : &it->second;
}

Incident* Engine::find_incident(const std::string& uid) {
  for (auto& [key, inc] : unresolved_) {
    if (inc.uid == uid) return &inc;
  }
  if (auto k = reopenable_uids_.find(uid); k != reopenable_uids_.end()) {
    return &reopenable_.at(k->second).incident;
  }
  return nullptr;
}

std::optional<Incident> Engine::current_copy(const std::string& uid,
                                             const std::optional<Incident>& stored) const {
  // What is queued for an incident the engine let go of is in its parked
  // copy; with nothing queued, the database's copy is the incident.
  if (auto p = parked_.find(uid); p != parked_.end()) return p->second.incident;
  if (stored && stored->uid == uid) return stored;
  if (hooks_.stored) return hooks_.stored(uid);
  return std::nullopt;
}

void Engine::park(const Incident& inc) {
  parked_.insert_or_assign(inc.uid, Parked{inc, sink_.ticket()});
}

void Engine::on_committed(std::uint64_t committed) {
  std::erase_if(parked_, [committed](const auto& p) { return p.second.ticket <= committed; });
}

SteadyTime Engine::steady_of(WallTime t) const {
  // A wall time from the database, placed on the monotonic clock as "that
  // long ago"; a time in the future (the clock went back) counts as now.
  const auto ago = std::max(clock_.wall_now() - t, WallTime::duration::zero());
  return clock_.steady_now() - ago;
}

bool Engine::trading_now() const {
  if (config_->store.trading.empty()) return true;
  return config_->store.trading.contains(clock_.wall_now(), tz_);
}

std::string Engine::priority_now(config::Severity severity) const {
  return priority_for(severity, trading_now());
}

void Engine::emit(const Incident& inc, std::string type, json extra, const std::string& actor) {
  const WallTime at = clock_.wall_now();
  if (!clock_.wall_synced()) extra["clock_synced"] = false;
  IncidentChange change{inc,
                        IncidentEvent{new_uid(at), std::move(type), at, actor, std::move(extra)}};
  if (hooks_.notices) change.notices = hooks_.notices(change.incident, change.event);
  sink_.submit(std::move(change));
}

void Engine::run_now(const std::string& probe) {
  if (hooks_.run_now) hooks_.run_now(probe);
}

// --- resuming ----------------------------------------------------------------

void Engine::restore(EngineSnapshot snap) {
  for (const auto& row : snap.probe_states) {
    auto it = probes_.find(row.probe);
    if (it == probes_.end()) continue;  // probe no longer configured
    Runtime& r = it->second;
    r.check = CheckState(row.level, row.failures, row.successes, row.t_fault, row.t_first_ok);
    r.last_check = row.last_check;
    r.last_status = row.last_status;
    r.latency_ms = row.latency_ms;
    r.message = row.message;
    r.flap = FlapHistory::parse(row.flap_history);
    r.flapping = row.flapping;
    r.heal.attempts = row.attempts;
    r.heal.failures_in_row = row.attempt_failures;
    if (r.remediation != nullptr && !row.attempts.empty() && row.attempt_failures > 0) {
      // The backoff after the last failed attempt runs on across a restart.
      auto wait = std::min(r.remediation->backoff * (1 << std::min(row.attempt_failures - 1, 20)),
                           r.remediation->backoff_max);
      r.heal.next_try = steady_of(row.attempts.back()) + wait;
    }
  }
  for (auto& inc : snap.unresolved) {
    if (inc.condition == kConditionDown) {
      if (auto it = probes_.find(inc.probe); it != probes_.end()) {
        // An unresolved incident means its probe was hard-failing, whatever
        // the last periodic flush of probe_state said: it resolves only by
        // recovering.
        it->second.check.assume_hard_fail(inc.t_fault);
        if (inc.flapping) it->second.flapping = true;
      }
    }
    if (inc.state == IncidentState::remediating) {
      // The attempt in flight died with the daemon: say so, and let the
      // policy decide on the next one.
      emit(inc, "remediation_failed", json{{"detail", "interrupted by a restart of the agent"}});
    }
    std::string key = inc.dedup_key;
    unresolved_.emplace(std::move(key), std::move(inc));
  }
  std::sort(snap.resolved.begin(), snap.resolved.end(),
            [](const Incident& a, const Incident& b) { return a.t_resolved < b.t_resolved; });
  for (auto& inc : snap.resolved) {
    if (!inc.t_resolved) inc.t_resolved = clock_.wall_now();
    const SteadyTime at = steady_of(*inc.t_resolved);
    keep_resolved(std::move(inc), at);
  }
  silences_ = std::move(snap.silences);
  // A probe that left the config while the agent was down: as on a reload,
  // nothing watches it any more, so its incident is resolved, saying why.
  std::vector<std::string> gone;
  for (const auto& [key, inc] : unresolved_) {
    if (inc.condition == kConditionDown && !probes_.contains(inc.probe)) gone.push_back(inc.probe);
  }
  for (const std::string& probe : gone) {
    if (Incident* inc = unresolved_of(probe)) {
      log::info("incident {}: probe {} is no longer in the config; resolving it", inc->uid, probe);
      resolve(*inc, "agent", kProbeRemoved, false);
    }
  }
}

// --- results -----------------------------------------------------------------

void Engine::on_result(const std::string& probe, const probes::ProbeResult& res) {
  auto it = probes_.find(probe);
  if (it == probes_.end()) return;
  Runtime& r = it->second;
  const config::ProbeConfig& pc = *r.config;
  const WallTime at = clock_.wall_now();
  r.checked = true;
  if (res.agent_fault) {
    // The agent could not run the check (out of file descriptors): nothing
    // is known of the device, so its check level and incident stay as they
    // are; the agent's own incident says what is wrong.
    r.last_check = at;
    r.last_status = std::string(probes::to_string(probes::ProbeStatus::unknown));
    r.latency_ms = 0;
    r.message = res.message;
    set_descriptor_problem(fmt::format(
        "storewatch is out of file descriptors, so checks cannot run (first seen on probe {}: "
        "{})",
        probe, res.message));
    return;
  }
  const CheckLevel before = r.check.level();
  const bool failed = failed_status(res.status);

  const auto transition = r.check.apply(failed, at, pc.fail_after, pc.recover_after);
  r.last_check = at;
  r.last_status = std::string(probes::to_string(res.status));
  r.latency_ms = static_cast<double>(res.latency.count()) / 1000.0;
  r.message = res.message;
  r.dirty = true;
  r.flap.push(failed);

  // A verify re-run decides its attempt before the result counts for the
  // incident, so a recovery it brings is a self-heal.
  if (r.heal.phase == Healing::Phase::verifying) {
    if (failed) {
      attempt_failed(probe, fmt::format("verify: {} is {}: {}", probe,
                                        probes::to_string(res.status), res.message));
    } else {
      attempt_succeeded(probe, res);
    }
  } else if (r.heal.healed && failed) {
    // Healed, then failing again before it recovered: a new attempt may
    // follow after the first backoff.
    r.heal.healed = false;
    if (r.remediation != nullptr) r.heal.next_try = clock_.steady_now() + r.remediation->backoff;
  }

  update_flapping(probe, r);

  switch (transition) {
    case CheckState::Transition::hard_failed:
      if (Incident* inc = unresolved_of(probe);
          inc != nullptr && inc->state == IncidentState::escalated && inc->t_restored) {
        // Escalated, recovered meanwhile, and failing again.
        inc->t_restored.reset();
        emit(*inc, "updated", json{{"reason", "failing again"}, {"message", res.message}});
      }
      if (!r.flapping) on_hard_fail(probe);
      break;
    case CheckState::Transition::recovered:
      if (r.held) release_hold(r);
      if (r.heal.phase == Healing::Phase::verify_wait) {
        // The action worked and the probe recovered before the verify was
        // due: the recovery is the verify.
        attempt_succeeded(probe, res);
      }
      if (!r.flapping) {
        if (Incident* inc = unresolved_of(probe)) {
          if (inc->state == IncidentState::escalated) {
            // Self-healing gave up and a human has been called: the incident
            // stays escalated until a human or HQ acts (an ack then resolves
            // it at once, a resolve or close as usual). The recovery is on
            // record meanwhile, with its time for MTTR.
            inc->t_restored = r.check.t_first_ok().value_or(at);
            emit(*inc, "updated",
                 json{{"reason", "recovered; stays escalated until a human or HQ acts"},
                      {"message", res.message}});
          } else {
            resolve(*inc, "agent", "", r.heal.healed);
          }
        }
      }
      break;
    case CheckState::Transition::none:
      // Hard-failing with no incident (a restart, or a human resolved it
      // while it still failed and it has failed fail_after times since).
      if (failed && r.check.level() == CheckLevel::hard_fail && !r.held && !r.flapping &&
          unresolved_of(probe) == nullptr) {
        on_hard_fail(probe);
      }
      break;
  }

  if (r.check.level() != before) {
    log::debug("probe {}: {} -> {} ({})", probe, to_string(before), to_string(r.check.level()),
               res.message);
    persist(probe, r);
  }

  // Results others wait for: held descendants, remediation preconditions.
  if (auto d = descendants_.find(probe); d != descendants_.end()) {
    for (const std::string& child : d->second) {
      if (probes_.at(child).held) evaluate_hold(child, probe);
    }
  }
  if (auto p = precondition_of_.find(probe); p != precondition_of_.end()) {
    for (const std::string& waiting : p->second) {
      if (probes_.at(waiting).heal.phase == Healing::Phase::precondition) {
        on_precondition(waiting, probe, res);
      }
    }
  }
  maybe_remediate(probe);
}

void Engine::update_flapping(const std::string& probe, Runtime& r) {
  const double pct = r.flap.percent();
  const bool next =
      next_flapping(r.flapping, pct, config_->incidents.flap_high, config_->incidents.flap_low);
  if (next == r.flapping) return;
  r.flapping = next;
  persist(probe, r);
  const json extra{{"percent", std::round(pct * 10) / 10}};
  if (next) {
    log::warn("probe {} is flapping ({:.1f}% state changes)", probe, pct);
    if (r.held) release_hold(r);
    if (unresolved_of(probe) == nullptr) raise(probe, std::nullopt, /*flapping=*/true);
    Incident* inc = unresolved_of(probe);
    if (inc == nullptr) return;
    inc->flapping = true;
    emit(*inc, "flapping_started", extra);
    return;
  }
  log::info("probe {} stopped flapping ({:.1f}%)", probe, pct);
  Incident* inc = unresolved_of(probe);
  if (inc == nullptr) return;
  inc->flapping = false;
  emit(*inc, "flapping_stopped", extra);
  if (r.check.level() != CheckLevel::hard_fail) {
    resolve(*inc, "agent", "", false);
  }
}

// --- root cause --------------------------------------------------------------

Engine::Ancestry Engine::ancestry(const std::string& probe) const {
  Ancestry out;
  auto it = ancestors_.find(probe);
  if (it == ancestors_.end()) return out;
  for (const std::string& a : it->second) {
    const Runtime& ar = probes_.at(a);
    const CheckLevel level = ar.check.level();
    if (level == CheckLevel::hard_fail) {
      auto inc = unresolved_.find(dedup_key(a));
      if (inc != unresolved_.end() && !out.root) {
        // The nearest failing ancestor with an incident; its root is ours.
        out.root = inc->second.suppressed_by.value_or(inc->second.uid);
      } else if (inc == unresolved_.end()) {
        out.pending.push_back(a);  // hard-failed but held itself
      }
    } else if (level == CheckLevel::soft_fail) {
      out.pending.push_back(a);
    }
  }
  return out;
}

void Engine::on_hard_fail(const std::string& probe) {
  Runtime& r = rt(probe);
  const auto& ancestors = ancestors_.at(probe);
  if (ancestors.empty()) {
    raise(probe, std::nullopt, false);
    return;
  }
  Ancestry a = ancestry(probe);
  if (a.root) {
    raise(probe, a.root, false);
    return;
  }
  // Hold the incident until the ancestors have answered: re-check those in
  // doubt at once (each re-check counts toward their fail_after), or all of
  // them when they look fine.
  r.held = true;
  r.held_since = clock_.steady_now();
  r.awaiting.clear();
  const std::vector<std::string>& recheck = a.pending.empty() ? ancestors : a.pending;
  r.awaiting.insert(recheck.begin(), recheck.end());
  log::debug("probe {} hard-failed; holding its incident while {} re-check", probe,
             fmt::join(recheck, ", "));
  for (const auto& name : recheck) run_now(name);
}

void Engine::release_hold(Runtime& r) {
  r.held = false;
  r.awaiting.clear();
}

void Engine::evaluate_hold(const std::string& probe, const std::string& ancestor) {
  Runtime& r = rt(probe);
  if (r.check.level() != CheckLevel::hard_fail) {
    release_hold(r);
    return;
  }
  r.awaiting.erase(ancestor);
  Ancestry a = ancestry(probe);
  if (a.root) {
    release_hold(r);
    raise(probe, a.root, false);
    return;
  }
  if (!a.pending.empty()) {
    // Still in doubt: chase the ancestor that just answered until it
    // settles one way or the other.
    if (std::find(a.pending.begin(), a.pending.end(), ancestor) != a.pending.end()) {
      r.awaiting.insert(ancestor);
      run_now(ancestor);
    }
    return;
  }
  if (!r.awaiting.empty()) return;
  release_hold(r);
  raise(probe, std::nullopt, false);
}

void Engine::raise(const std::string& probe, const std::optional<std::string>& root,
                   bool flapping) {
  const std::string key = dedup_key(probe);
  if (unresolved_.contains(key)) return;
  Runtime& r = rt(probe);
  const config::ProbeConfig& pc = *r.config;
  const WallTime at = clock_.wall_now();
  const SteadyTime now = clock_.steady_now();
  const auto silence = silenced(probe);

  // The newest resolved incident of this key, if it resolved recently.
  auto held = reopenable_.find(key);
  const bool reopen =
      held != reopenable_.end() && now - held->second.at <= config_->incidents.reopen_window;

  Incident inc;
  std::string type;
  json extra{{"message", r.message}};
  if (reopen) {
    inc = held->second.incident;
    forget_reopenable(key);  // by its uid: not before the copy above
    // The span it was up, for the report's downtime (incident/metrics.h
    // resolved_spans): from the restore that resolved it to the first
    // failing result of this fault.
    if (inc.t_restored) extra["restored_at"] = format_rfc3339(*inc.t_restored);
    extra["fault_at"] = format_rfc3339(r.check.t_fault().value_or(at));
    ++inc.reopen_count;
    inc.t_restored.reset();
    inc.t_resolved.reset();
    inc.self_healed = false;
    inc.severity = pc.severity;
    type = "reopened";
    extra["reopen_count"] = inc.reopen_count;
  } else {
    inc.uid = new_uid(at);
    inc.dedup_key = key;
    inc.probe = probe;
    inc.condition = kConditionDown;
    inc.severity = pc.severity;
    inc.t_fault = r.check.t_fault().value_or(at);
    inc.t_detect = at;
    type = root ? "suppressed" : "opened";
  }
  inc.state = IncidentState::open;
  inc.priority = priority_now(inc.severity);
  inc.suppressed_by = root;
  inc.in_maintenance = silence.has_value();
  inc.flapping = flapping;
  inc.summary = fmt::format("{} is down: {}", probe, r.message);
  if (root) {
    const Incident* parent = find_incident(*root);
    extra["suppressed_by"] = *root;
    if (parent != nullptr) {
      inc.summary += fmt::format(" (root cause: {})", parent->probe);
      extra["root_probe"] = parent->probe;
    }
  }
  if (silence) extra["silence"] = *silence;
  if (flapping) extra["flapping"] = true;
  r.heal.healed = false;
  r.heal.trading_skip_reported = false;

  if (root) {
    log::info("probe {} down, attached to root-cause incident {}", probe, *root);
  } else {
    log::warn("incident {} {}: {} ({}, {}{})", inc.uid, type, inc.summary,
              config::to_string(inc.severity), inc.priority, silence ? ", in maintenance" : "");
  }
  emit(inc, type, std::move(extra));
  unresolved_.emplace(key, std::move(inc));
}

void Engine::resolve(Incident inc_in, const std::string& actor, const std::string& note,
                     bool self_healed, IncidentState final_state, const json& body) {
  const std::string key = inc_in.dedup_key;
  Incident inc = std::move(inc_in);
  unresolved_.erase(key);
  const WallTime at = clock_.wall_now();
  auto r = probes_.find(inc.probe);
  if (!inc.t_restored) {
    const bool by_agent = actor == "agent";
    inc.t_restored =
        by_agent && r != probes_.end() ? r->second.check.t_first_ok().value_or(at) : at;
  }
  inc.t_resolved = inc.t_resolved.value_or(at);
  inc.self_healed = self_healed;
  inc.state = final_state;
  if (final_state == IncidentState::closed) inc.t_closed = at;
  json extra{{"message", r != probes_.end() ? r->second.message : std::string()}};
  if (body.is_object()) extra.update(body);
  if (!note.empty()) extra["note"] = note;
  if (self_healed) extra["self_healed"] = true;
  if (r != probes_.end()) {
    r->second.heal.healed = false;
    r->second.heal.next_try.reset();
    r->second.heal.trading_skip_reported = false;
  }
  log::info("incident {} {} by {}: {}", inc.uid, to_string(final_state), actor, inc.summary);
  emit(inc, final_state == IncidentState::closed ? "closed" : "resolved", std::move(extra), actor);
  const std::string uid = inc.uid;
  if (final_state == IncidentState::resolved) {
    keep_resolved(std::move(inc), clock_.steady_now());
  } else {
    park(inc);
  }
  after_root_gone(uid);
}

void Engine::after_root_gone(const std::string& root_uid) {
  // Children attached to this incident: re-attach them to another failing
  // ancestor, or give them their own incident when they still fail.
  std::vector<std::string> children;
  for (const auto& [key, inc] : unresolved_) {
    if (inc.suppressed_by == root_uid) children.push_back(inc.probe);
  }
  // Nearest the root first, so a middle node is itself again before its
  // own children look for a parent.
  auto depth = [this](const std::string& p) {
    auto it = ancestors_.find(p);
    return it == ancestors_.end() ? std::size_t{0} : it->second.size();
  };
  std::sort(children.begin(), children.end(),
            [&](const std::string& a, const std::string& b) { return depth(a) < depth(b); });
  for (const std::string& child : children) {
    Incident* inc = unresolved_of(child);
    if (inc == nullptr) continue;
    if (!probes_.contains(child)) {
      // Its probe has left the config since: nothing watches it any more.
      resolve(*inc, "agent", "the probe is no longer configured", false);
      continue;
    }
    Ancestry a = ancestry(child);
    if (a.root && *a.root != root_uid) {
      inc->suppressed_by = a.root;
      emit(*inc, "updated", json{{"reason", "root cause moved"}, {"suppressed_by", *a.root}});
      continue;
    }
    Runtime& r = rt(child);
    if (r.check.level() == CheckLevel::hard_fail) {
      inc->suppressed_by.reset();
      inc->priority = priority_now(inc->severity);
      log::warn("incident {} opened: {} still fails after its root cause resolved", inc->uid,
                child);
      emit(*inc, "opened",
           json{{"message", r.message}, {"reason", "still failing after its root cause resolved"}});
      maybe_remediate(child);
    } else {
      resolve(*inc, "agent", "", false);
    }
  }
}

// --- waiting work --------------------------------------------------------------

void Engine::keep_resolved(Incident inc, SteadyTime at) {
  closing_.push_back(Closing{at, inc.t_resolved.value_or(clock_.wall_now()), inc.uid});
  if (clock_.steady_now() - at > config_->incidents.reopen_window) return;
  // The newest of its key is the one a new failure may reopen; an older one
  // only waits in closing_.
  const std::string key = inc.dedup_key;
  forget_reopenable(key);
  reopenable_uids_[inc.uid] = key;
  reopenable_.emplace(key, Resolved{std::move(inc), at});
}

void Engine::forget_reopenable(const std::string& key) {
  auto it = reopenable_.find(key);
  if (it == reopenable_.end()) return;
  reopenable_uids_.erase(it->second.incident.uid);
  reopenable_.erase(it);
}

void Engine::tick() {
  const SteadyTime now = clock_.steady_now();
  tick_closing(now);
  tick_reopenable(now);
  if (last_descriptor_fault_ && now - *last_descriptor_fault_ >= kDescriptorQuiet) {
    last_descriptor_fault_.reset();
    set_own_problem(kConditionDescriptors, config::Severity::critical, std::nullopt);
  }
  tick_holds(now);
  tick_maintenance();
  tick_trading();
  tick_healing(now);
}

void Engine::tick_closing(SteadyTime now) {
  while (!closing_.empty() && now - closing_.front().at >= config_->incidents.close_after) {
    const Closing due = std::move(closing_.front());
    closing_.pop_front();
    // As it is now: held (reopenable), parked, or as committed. One that was
    // reopened, closed by a person, or resolved again since (a later entry
    // of its own) is not this entry's to close.
    std::optional<Incident> inc;
    if (Incident* held = find_incident(due.uid)) {
      inc = *held;
    } else {
      inc = current_copy(due.uid, std::nullopt);
    }
    if (!inc || inc->state != IncidentState::resolved || inc->t_resolved != due.t_resolved) {
      continue;
    }
    forget_reopenable(inc->dedup_key);
    inc->state = IncidentState::closed;
    inc->t_closed = clock_.wall_now();
    emit(
        *inc, "closed",
        json{{"reason", fmt::format("resolved for {}", describe(config_->incidents.close_after))}});
    park(*inc);
  }
}

void Engine::tick_reopenable(SteadyTime now) {
  std::erase_if(reopenable_, [&](const auto& r) {
    if (now - r.second.at <= config_->incidents.reopen_window) return false;
    reopenable_uids_.erase(r.second.incident.uid);
    return true;
  });
}

void Engine::tick_holds(SteadyTime now) {
  for (auto& [name, r] : probes_) {
    if (!r.held) continue;
    Millis limit{0};
    for (const auto& a : ancestors_.at(name)) {
      const config::ProbeConfig& ap = *probes_.at(a).config;
      limit = std::max(limit, (ap.timeout + kAnswerSlack) * (ap.fail_after + 1));
    }
    if (now - r.held_since < limit) continue;
    log::warn("probe {}: its ancestors did not settle within {}; opening its own incident", name,
              describe(limit));
    release_hold(r);
    raise(name, std::nullopt, false);
  }
}

void Engine::tick_trading() {
  const bool trading = trading_now();
  if (trading_ && *trading_ == trading) return;
  const bool changed = trading_.has_value();
  trading_ = trading;
  if (!changed) return;
  for (auto& [key, inc] : unresolved_) {
    const std::string p = priority_now(inc.severity);
    if (p == inc.priority) continue;
    json extra{{"reason", trading ? "trading hours began" : "trading hours ended"},
               {"priority_from", inc.priority}};
    inc.priority = p;
    emit(inc, "updated", std::move(extra));
  }
}

// --- the agent's own condition ----------------------------------------------

void Engine::set_storage_problem(const std::optional<std::string>& problem) {
  if (!problem && storage_needs_person_) return;
  set_own_problem(kConditionStorage, config::Severity::critical, problem);
}

void Engine::dead_letter(const std::string& what, bool record) {
  const std::string key =
      fmt::format("{}:{}:{}", config_->store.id, kAgentProbe, kConditionStorage);
  auto it = unresolved_.find(key);
  if (!record) {
    if (it != unresolved_.end()) storage_needs_person_ = true;
    return;
  }
  storage_needs_person_ = true;
  const std::string problem = fmt::format(
      "a change could not be stored and was kept in the dead_letters table ({}); "
      "`storewatch doctor` lists it. Resolve this incident once it is looked at",
      what);
  if (it == unresolved_.end()) {
    set_own_problem(kConditionStorage, config::Severity::critical, problem);
  } else {
    emit(it->second, "updated", json{{"reason", "dead letter"}, {"message", problem}});
  }
}

void Engine::set_descriptor_problem(const std::optional<std::string>& problem) {
  if (problem) last_descriptor_fault_ = clock_.steady_now();
  set_own_problem(kConditionDescriptors, config::Severity::critical, problem);
}

void Engine::set_client_cert_problem(const std::optional<std::string>& problem,
                                     config::Severity severity) {
  set_own_problem(kConditionClientCert, severity, problem);
}

void Engine::set_own_problem(const char* condition, config::Severity severity,
                             const std::optional<std::string>& problem) {
  const std::string key = fmt::format("{}:{}:{}", config_->store.id, kAgentProbe, condition);
  auto it = unresolved_.find(key);
  if (problem && it == unresolved_.end()) {
    const WallTime at = clock_.wall_now();
    Incident inc;
    inc.uid = new_uid(at);
    inc.dedup_key = key;
    inc.probe = kAgentProbe;
    inc.condition = condition;
    inc.severity = severity;
    inc.priority = priority_now(inc.severity);
    inc.t_fault = at;
    inc.t_detect = at;
    inc.summary = fmt::format("{}: {}", condition, *problem);
    log::error("incident {} opened: {}", inc.uid, inc.summary);
    emit(inc, "opened", json{{"message", *problem}});
    unresolved_.emplace(key, std::move(inc));
  } else if (!problem && it != unresolved_.end()) {
    resolve(it->second, "agent", "", false);
  }
}

// --- persistence and views ------------------------------------------------------

ProbeStateRow Engine::row_of(const std::string& name, const Runtime& r) const {
  ProbeStateRow row;
  row.probe = name;
  row.level = r.check.level();
  row.failures = r.check.failures();
  row.successes = r.check.successes();
  row.t_fault = r.check.t_fault();
  row.t_first_ok = r.check.t_first_ok();
  row.last_check = r.last_check;
  row.last_status = r.last_status;
  row.latency_ms = r.latency_ms;
  row.message = r.message;
  row.flap_history = r.flap.to_string();
  row.flapping = r.flapping;
  row.attempts = r.heal.attempts;
  row.attempt_failures = r.heal.failures_in_row;
  return row;
}

void Engine::persist(const std::string& probe, Runtime& r) {
  sink_.submit(row_of(probe, r));
  r.dirty = false;
}

void Engine::flush_probe_states() {
  for (auto& [name, r] : probes_) {
    if (r.dirty) persist(name, r);
  }
}

std::vector<ProbeView> Engine::probes() const {
  std::vector<ProbeView> out;
  out.reserve(config_->probes.size());
  for (const auto& p : config_->probes) {
    const Runtime& r = probes_.at(p.name);
    // A reset check level (unknown, no result counted) has had no result
    // since the reset: CheckState::apply always counts one.
    const bool reset = r.check.level() == CheckLevel::unknown && r.check.failures() == 0 &&
                       r.check.successes() == 0;
    out.push_back(ProbeView{p.name, p.type, r.check.level(), r.last_check, r.last_status,
                            r.latency_ms, r.message, r.flapping, r.flap.percent(), r.held,
                            !r.checked || reset});
  }
  return out;
}

}  // namespace storewatch::agent
