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

std::optional<Engine::Action> Engine::parse_action(std::string_view op) {
  if (op == "ack") return Action::ack;
  if (op == "resolve") return Action::resolve;
  if (op == "close") return Action::close;
  if (op == "note") return Action::note;
  return std::nullopt;
}

Result<Incident> Engine::act(Action action, const std::string& uid, const std::string& actor,
                             const std::string& note, const std::optional<Incident>& stored) {
  Incident* inc = find_incident(uid);
  if (inc == nullptr) {
    // Not held: as it is once what is queued for it is written.
    auto copy = current_copy(uid, stored);
    if (!copy) return Error{fmt::format("no incident {}", uid)};
    return act_on_copy(action, std::move(*copy), actor, note);
  }
  if (inc->probe == kAgentProbe && inc->condition == kConditionStorage && actor != "agent" &&
      (action == Action::resolve || action == Action::close)) {
    // A person has seen what the storage incident said, dead letters too.
    storage_needs_person_ = false;
  }
  switch (action) {
    case Action::note: {
      emit(*inc, "note", json{{"note", note}}, actor);
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
        return Error{fmt::format("incident {} is already acknowledged", uid)};
      }
      inc->state = IncidentState::acknowledged;
      if (!inc->t_ack) inc->t_ack = clock_.wall_now();
      json extra = json::object();
      if (!note.empty()) extra["note"] = note;
      log::info("incident {} acknowledged by {}", uid, actor);
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
        return act_on_copy(action, std::move(closed), actor, note);
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
      resolve(copy, actor, note, false, final_state);
      if (Incident* after = find_incident(uid)) return *after;
      return current_copy(uid, std::nullopt).value_or(copy);
    }
  }
  return Error{"unknown action"};
}

Result<Incident> Engine::act_on_copy(Action action, Incident inc, const std::string& actor,
                                     const std::string& note) {
  const std::string& uid = inc.uid;
  switch (action) {
    case Action::note:
      emit(inc, "note", json{{"note", note}}, actor);
      park(inc);
      return inc;
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
        json extra = json::object();
        if (!note.empty()) extra["note"] = note;
        log::info("incident {} closed by {}: {}", uid, actor, inc.summary);
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
