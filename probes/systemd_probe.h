#pragma once
/// \file
/// `systemd`: a unit's LoadState, ActiveState and SubState (and its type's
/// Result and NRestarts) from systemd over the system bus. Every probe of an
/// io_context shares one connection (os/system_bus.h).

#include "probes/probe.h"

namespace storewatch::probes {

ProbeType systemd_probe_type();

}  // namespace storewatch::probes
