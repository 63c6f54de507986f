#include "incident/incident.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "base/json_text.h"

namespace storewatch {

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

void Incident::append_json(std::string& out) const {
  // Written straight into text: the store writer puts this snapshot into
  // every event it commits. to_json() parses it, so the two never differ.
  auto time = [](const std::optional<WallTime>& t) -> std::optional<std::string> {
    if (!t) return std::nullopt;
    return format_rfc3339(*t);
  };
  json_text::Object o(out);
  o.string("uid", uid)
      .string("probe", probe)
      .string("state", to_string(state))
      .string("severity", config::to_string(severity))
      .string("priority", priority)
      .string_or_null("t_fault", time(t_fault))
      .string_or_null("t_detect", time(t_detect))
      .string_or_null("t_ack", time(t_ack))
      .string_or_null("t_restored", time(t_restored))
      .string_or_null("t_resolved", time(t_resolved))
      .string_or_null("t_closed", time(t_closed))
      .boolean("self_healed", self_healed)
      .string_or_null("suppressed_by", suppressed_by)
      .boolean("flapping", flapping)
      .boolean("in_maintenance", in_maintenance)
      .integer("reopen_count", reopen_count)
      .string("summary", summary)
      .string("dedup_key", dedup_key)
      .string("condition", condition)
      .close();
}

nlohmann::json Incident::to_json() const {
  std::string text;
  append_json(text);
  return nlohmann::json::parse(text);
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

}  // namespace storewatch
