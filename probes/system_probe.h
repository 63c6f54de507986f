#pragma once
/// \file
/// `system`: the gateway itself. `check` picks one of disk (statvfs of
/// `path`), memory (/proc/meminfo's MemAvailable), load (1-minute load per
/// online CPU) or clock (offset against `ntp_server` by one SNTP query).

#include "probes/probe.h"

namespace storewatch::probes {

ProbeType system_probe_type();

}  // namespace storewatch::probes
