// Engine: the humans' actions on incidents — ack, resolve, close and note — and
// finding an incident by a prefix of its uid.
#include "agent/engine.h"

#include <fmt/format.h>

#include <algorithm>

#include "agent/engine_internal.h"
#include "base/log.h"

namespace storewatch::agent {

using engine_internal::kConditionDown;
using nlohmann::json;

namespace {

/// The event body of a person's action: how the actor came to be, then the
/// action's own fields.
json body_of(const json& provenance) {
  return provenance.is_object() ? provenance : json::object();
}

/// "resolved by cli:dana (via sudo)": what a person's resolve or close
/// records as its message (not the probe's last failure).
json by_person(const json& provenance, const char* what, const std::string& actor) {
  json body = body_of(provenance);
  body["message"] = fmt::format("{} by {}", what, actor_shown(actor, body));
  return body;
}

}  // namespace

std::string actor_shown(const std::string& actor, const json& body) {
  if (!body.is_object() || body.value("via", std::string()) != "sudo") return actor;
  const std::string sudo_user = body.value("sudo_user", std::string());
  if (sudo_user.empty() || actor == "cli:" + sudo_user) return actor + " (via sudo)";
  return fmt::format("{} (via sudo by {})", actor, sudo_user);
}

std::optional<Engine::Action> Engine::parse_action(std::string_view op) {
  if (op == "ack") return Action::ack;
  if (op == "resolve") return Action::resolve;
  if (op == "close") return Action::close;
  if (op == "note") return Action::note;
  return std::nullopt;
}

Result<Incident> Engine::act(Action action, const std::string& uid, const std::string& actor,
                             const std::string& note, const std::optional<Incident>& stored,
                             const json& provenance) {
  Incident* inc = find_incident(uid);
  if (inc == nullptr) {
    // Not held: as it is once what is queued for it is written.
    auto copy = current_copy(uid, stored);
    if (!copy) return Error{fmt::format("no incident {}", uid)};
    return act_on_copy(action, std::move(*copy), actor, note, provenance);
  }
  if (inc->probe == kAgentProbe && inc->condition == kConditionStorage && actor != "agent" &&
      (action == Action::resolve || action == Action::close)) {
    // A person has seen what the storage incident said, dead letters too.
    storage_needs_person_ = false;
  }
  switch (action) {
    case Action::note: {
      json extra = body_of(provenance);
      extra["note"] = note;
      emit(*inc, "note", std::move(extra), actor);
      return *inc;
    }
    case Action::ack: {
      if (!is_unresolved(inc->state)) {
        return Error{
            fmt::format("incident {} is {}; only an unresolved incident can be "
                        "acknowledged",
                        uid, to_string(inc->state))};
      }
      if (inc->state == IncidentState::acknowledged) {
        // control_ops says by whom and when (the events have it).
        return Error{fmt::format("incident {} is already acknowledged", uid), kAlreadyAcknowledged};
      }
      inc->state = IncidentState::acknowledged;
      if (!inc->t_ack) inc->t_ack = clock_.wall_now();
      json extra = body_of(provenance);
      if (!note.empty()) extra["note"] = note;
      log::info("incident {} acknowledged by {}", uid, actor_shown(actor, extra));
      emit(*inc, "acknowledged", std::move(extra), actor);
      if (auto r = probes_.find(inc->probe); inc->t_restored && r != probes_.end() &&
                                             r->second.check.level() == CheckLevel::ok &&
                                             !r->second.flapping) {
        // An escalated incident whose probe recovered meanwhile: the ack was
        // what it waited for.
        const Incident copy = *inc;  // `uid` may name the row resolve() erases
        resolve(copy, "agent", "recovered while escalated; resolved when acknowledged", false);
        if (Incident* after = find_incident(copy.uid)) return *after;
        return current_copy(copy.uid, std::nullopt).value_or(copy);
      }
      return *inc;
    }
    case Action::resolve:
    case Action::close: {
      const auto final_state =
          action == Action::close ? IncidentState::closed : IncidentState::resolved;
      if (inc->state == IncidentState::resolved && action == Action::resolve) {
        return Error{fmt::format("incident {} is already resolved", uid)};
      }
      if (inc->state == IncidentState::resolved) {
        // Closing a resolved incident.
        Incident closed = *inc;
        forget_reopenable(closed.dedup_key);
        return act_on_copy(action, std::move(closed), actor, note, provenance);
      }
      Incident copy = *inc;
      if (auto r = probes_.find(copy.probe);
          r != probes_.end() && copy.condition == kConditionDown) {
        // Someone says it is fixed: detection starts over, so a probe that
        // still fails reopens it after fail_after more failures.
        if (r->second.check.level() == CheckLevel::hard_fail) {
          r->second.check = CheckState{};
          persist(copy.probe, r->second);
        }
      }
      resolve(copy, actor, note, false, final_state,
              by_person(provenance, action == Action::close ? "closed" : "resolved", actor));
      if (Incident* after = find_incident(uid)) return *after;
      return current_copy(uid, std::nullopt).value_or(copy);
    }
  }
  return Error{"unknown action"};
}

Result<Incident> Engine::act_on_copy(Action action, Incident inc, const std::string& actor,
                                     const std::string& note, const json& provenance) {
  const std::string& uid = inc.uid;
  switch (action) {
    case Action::note: {
      json extra = body_of(provenance);
      extra["note"] = note;
      emit(inc, "note", std::move(extra), actor);
      park(inc);
      return inc;
    }
    case Action::ack:
      if (!is_unresolved(inc.state)) {
        return Error{
            fmt::format("incident {} is {}; only an unresolved incident can be acknowledged", uid,
                        to_string(inc.state))};
      }
      break;
    case Action::resolve:
      if (inc.state == IncidentState::resolved) {
        return Error{fmt::format("incident {} is already resolved", uid)};
      }
      break;
    case Action::close:
      if (inc.state == IncidentState::resolved) {
        inc.state = IncidentState::closed;
        inc.t_closed = clock_.wall_now();
        json extra = by_person(provenance, "closed", actor);
        if (!note.empty()) extra["note"] = note;
        log::info("incident {} closed by {}: {}", uid, actor_shown(actor, extra), inc.summary);
        emit(inc, "closed", std::move(extra), actor);
        park(inc);
        return inc;
      }
      break;
  }
  if (inc.state == IncidentState::closed) {
    return Error{fmt::format("incident {} is closed; only a note can be added to it", uid)};
  }
  return Error{
      fmt::format("incident {} is {} but this daemon does not hold it", uid, to_string(inc.state))};
}

std::optional<StillFailing> Engine::still_failing(const std::string& uid) const {
  for (const auto& [key, inc] : unresolved_) {
    if (inc.uid != uid) continue;
    if (inc.condition != kConditionDown) return std::nullopt;
    auto r = probes_.find(inc.probe);
    if (r == probes_.end() || r->second.config == nullptr) return std::nullopt;
    const CheckLevel level = r->second.check.level();
    if (level != CheckLevel::soft_fail && level != CheckLevel::hard_fail) return std::nullopt;
    // act() starts a hard failure's detection over: fail_after more to go.
    const int fail_after = std::max(1, r->second.config->fail_after);
    const int to_go = level == CheckLevel::hard_fail
                          ? fail_after
                          : std::max(1, fail_after - r->second.check.failures());
    return StillFailing{inc.probe, r->second.message, r->second.last_check, to_go,
                        r->second.config->interval};
  }
  return std::nullopt;
}

std::vector<std::string> Engine::uids_with_prefix(const std::string& prefix) const {
  std::vector<std::string> out;
  if (prefix.empty()) return out;
  for (const auto& [key, inc] : unresolved_) {
    if (inc.uid.starts_with(prefix)) out.push_back(inc.uid);
  }
  for (const auto& [uid, key] : reopenable_uids_) {
    if (uid.starts_with(prefix)) out.push_back(uid);
  }
  for (const auto& [uid, parked] : parked_) {
    if (uid.starts_with(prefix) && !reopenable_uids_.contains(uid)) out.push_back(uid);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace storewatch::agent
