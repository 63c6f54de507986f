#pragma once
/// \file
/// What the `systemd` probe makes of a unit: its name as systemd spells it,
/// and the status and message its load and active states mean. No D-Bus here,
/// so it can be tested on its own.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "probes/probe.h"

namespace storewatch::probes {

/// The unit a `unit` key names. A name without a unit-type suffix gets
/// `.service` (as systemctl does): `pos-sync` is `pos-sync.service`.
/// Rejects what systemd would: empty names, characters outside
/// [A-Za-z0-9:_.\@-], more than 255 characters, templates without an
/// instance (`pos@.service`).
Result<std::string> unit_name(std::string_view configured);

/// The properties of a unit the probe reads.
struct UnitState {
  std::string load_state;    ///< loaded, not-found, bad-setting, error, masked
  std::string active_state;  ///< active, reloading, inactive, failed, activating, deactivating
  std::string sub_state;     ///< the type's own state: running, exited, dead, listening...
  std::string result;        ///< why it last stopped (exit-code, timeout...); empty if none
  std::optional<std::uint32_t> n_restarts;  ///< automatic restarts (services only)
  std::uint64_t active_enter_usec = 0;      ///< CLOCK_REALTIME µs it became active; 0 = never
};

/// The D-Bus interface of the unit's type that carries `Result`
/// ("org.freedesktop.systemd1.Service"); empty for types without one.
std::string type_interface(std::string_view unit);

/// Status, message and metrics for a unit in state `s`.
ProbeResult assess(std::string_view unit, const UnitState& s,
                   std::chrono::system_clock::time_point now);

/// The result of an error reply from systemd or the bus.
ProbeResult assess_error(std::string_view unit, std::string_view name, std::string_view message);

}  // namespace storewatch::probes
