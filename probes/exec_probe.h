#pragma once
/// \file
/// `exec`: runs a Monitoring Plugins (Nagios) check — an argv, no shell —
/// and maps its exit code 0/1/2/3 to ok/warn/fail/unknown, its first line to
/// the message and its perfdata to metrics (probes/perfdata.h). The child
/// runs through os/process.h: own process group, bounded output, the
/// whole group killed and reaped on timeout.

#include "os/process.h"
#include "probes/probe.h"

namespace storewatch::probes {

ProbeType exec_probe_type();

/// How a finished plugin run reads as a check result (exposed for tests).
ProbeResult plugin_result(const os::ProcessResult& run);

}  // namespace storewatch::probes
