#pragma once
/// \file
/// What both backends of HQ's database (hq_store.cpp, pg_store.cpp) take
/// from an event the same way: the row of `incidents` an event's
/// `incident_state` gives, and the small conversions around it. Internal to
/// hq/.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "sync/wire.h"

namespace storewatch::hq::detail {

/// An incident neither resolved nor closed (SQL, both engines).
inline constexpr std::string_view kNotOpen = "COALESCE(state, '') NOT IN ('resolved', 'closed')";

/// Milliseconds since the Unix epoch, as HQ stores times.
inline std::int64_t to_ms(WallTime t) {
  return t.time_since_epoch().count();
}

/// `j[key]` when it is a string.
std::optional<std::string> string_field(const nlohmann::json& j, const char* key);

/// Never throws: the wire decoder already rejected invalid UTF-8, and
/// anything left is replaced rather than allowed to escape as an exception.
std::string dump(const nlohmann::json& j);

/// The columns of `incidents` an event sets from its `incident_state`.
struct IncidentColumns {
  std::optional<std::string> state, probe, severity;
  std::optional<std::int64_t> t_detect_ms;
  /// The snapshot as the store sent it; re-encoded into the caller's
  /// `scratch` only when it is not at hand or lacks its uid. Valid while
  /// the event and `scratch` are.
  std::string_view snapshot;
};

IncidentColumns incident_columns(const wire::Event& e, std::string& scratch);

}  // namespace storewatch::hq::detail
