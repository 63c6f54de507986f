#pragma once
/// \file
/// One check of one probe, now, outside any schedule: `storewatch probe run`
/// and the tests use it. The timeout is enforced here as the scheduler does.

#include <chrono>

#include "probes/probe.h"

namespace storewatch::probes {

/// The result the scheduler and run_once give a check that outlived its
/// timeout (the probe is cancelled first).
ProbeResult timed_out(Millis timeout, std::chrono::microseconds latency);

/// Runs one check of `config` on a private io_context and returns its
/// result; a check still running after config.timeout is cancelled and
/// reported as timed out.
ProbeResult run_once(const config::ProbeConfig& config);

}  // namespace storewatch::probes
