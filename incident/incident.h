#pragma once
/// \file
/// The incident model of DESIGN §4: one row per incident, its state machine
/// values and flags, and the JSON snapshot that `incidents --json`, the
/// events' `incident_state` and HQ all share.

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "config/config.h"

namespace storewatch {

enum class IncidentState { open, remediating, escalated, acknowledged, resolved, closed };

std::string_view to_string(IncidentState s);
std::optional<IncidentState> parse_incident_state(std::string_view s);

/// resolved and closed incidents are no longer "unresolved".
inline bool is_unresolved(IncidentState s) {
  return s != IncidentState::resolved && s != IncidentState::closed;
}

/// P1–P5 from impact (the severity) × urgency (DESIGN §4): urgent during
/// trading hours, one step lower outside them.
///
///   severity   critical high medium low info
///   trading    P1       P2   P3     P4  P5
///   closed     P2       P3   P4     P5  P5
std::string priority_for(config::Severity severity, bool urgent = true);

struct Incident {
  std::string uid;
  std::string dedup_key;  ///< store:probe:condition
  std::string probe;
  std::string condition;  ///< what failed ("down")
  config::Severity severity = config::Severity::medium;
  std::string priority = "P3";
  IncidentState state = IncidentState::open;
  std::optional<std::string> suppressed_by;  ///< uid of the parent's incident
  bool in_maintenance = false;
  bool flapping = false;
  bool self_healed = false;
  std::optional<WallTime> t_fault;     ///< first failing result
  std::optional<WallTime> t_detect;    ///< the hard transition
  std::optional<WallTime> t_ack;       ///< acknowledged by a human
  std::optional<WallTime> t_restored;  ///< first good result of the recovery
  std::optional<WallTime> t_resolved;
  std::optional<WallTime> t_closed;
  int reopen_count = 0;
  std::string summary;

  /// The DESIGN §7 `incidents --json` object (times RFC 3339 or null).
  nlohmann::json to_json() const;
  /// The same object as JSON text, appended to `out` (the hot path: every
  /// event carries this snapshot).
  void append_json(std::string& out) const;
};

/// An event of DESIGN §6 before it has a seq: what happened to an incident.
struct IncidentEvent {
  std::string uid;
  std::string type;  ///< opened|resolved|…
  WallTime at;
  std::string actor = "agent";
  nlohmann::json extra = nlohmann::json::object();  ///< type-specific fields
};

/// A fresh UUIDv7 (time-ordered, so uids sort by creation).
std::string new_uid(WallTime now);

}  // namespace storewatch
