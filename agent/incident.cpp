#include "agent/incident.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

namespace storewatch::agent {

std::string_view to_string(IncidentState s) {
  switch (s) {
    case IncidentState::open: return "open";
    case IncidentState::remediating: return "remediating";
    case IncidentState::escalated: return "escalated";
    case IncidentState::acknowledged: return "acknowledged";
    case IncidentState::resolved: return "resolved";
    case IncidentState::closed: return "closed";
  }
  return "open";
}

std::optional<IncidentState> parse_incident_state(std::string_view s) {
  for (auto st : {IncidentState::open, IncidentState::remediating, IncidentState::escalated,
                  IncidentState::acknowledged, IncidentState::resolved, IncidentState::closed}) {
    if (to_string(st) == s) return st;
  }
  return std::nullopt;
}

std::string priority_for(config::Severity severity, bool urgent) {
  // critical = 0 … info = 4: P1 … P5 while trading, one step lower outside.
  const int impact = static_cast<int>(severity);
  const int p = std::min(impact + 1 + (urgent ? 0 : 1), 5);
  return fmt::format("P{}", p);
}

namespace {
nlohmann::json time_or_null(const std::optional<WallTime>& t) {
  return t ? nlohmann::json(format_rfc3339(*t)) : nlohmann::json(nullptr);
}
}  // namespace

nlohmann::json Incident::to_json() const {
  return nlohmann::json{
      {"uid", uid},
      {"probe", probe},
      {"state", to_string(state)},
      {"severity", config::to_string(severity)},
      {"priority", priority},
      {"t_fault", time_or_null(t_fault)},
      {"t_detect", time_or_null(t_detect)},
      {"t_ack", time_or_null(t_ack)},
      {"t_restored", time_or_null(t_restored)},
      {"t_resolved", time_or_null(t_resolved)},
      {"t_closed", time_or_null(t_closed)},
      {"self_healed", self_healed},
      {"suppressed_by", suppressed_by ? nlohmann::json(*suppressed_by) : nlohmann::json(nullptr)},
      {"flapping", flapping},
      {"in_maintenance", in_maintenance},
      {"reopen_count", reopen_count},
      {"summary", summary},
      {"dedup_key", dedup_key},
      {"condition", condition},
  };
}

std::string new_uid(WallTime now) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto ms = static_cast<std::uint64_t>(now.time_since_epoch().count()) & 0xFFFFFFFFFFFFull;
  const std::uint64_t r1 = rng();
  const std::uint64_t r2 = rng();
  // 48-bit ms timestamp | version 7 | 12 random bits | variant 10 | 62 random bits
  const std::uint64_t hi = (ms << 16) | 0x7000u | (r1 & 0x0FFFu);
  const std::uint64_t lo = (r2 & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xFFFF,
                     hi & 0xFFFF, lo >> 48, lo & 0xFFFFFFFFFFFFull);
}

}  // namespace storewatch::agent
