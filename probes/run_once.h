#pragma once
/// \file
/// Checks run now, outside any schedule: `storewatch probe run` and the
/// tests use them. Timeouts are enforced here as the scheduler does.

#include <chrono>
#include <functional>
#include <vector>

#include "probes/probe.h"

namespace storewatch::probes {

/// The result the scheduler and run_once give a check that outlived its
/// timeout (the probe is cancelled first).
ProbeResult timed_out(Millis timeout, std::chrono::microseconds latency);

/// Runs one check of `config` on a private io_context and returns its
/// result; a check still running after config.timeout is cancelled and
/// reported as timed out.
ProbeResult run_once(const config::ProbeConfig& config);

/// Runs one check of each probe concurrently on one private io_context, at
/// most `max_concurrent` at a time, each with its own timeout. Results come
/// back in the order of `configs`; `on_result` (optional) hears each as it
/// completes, with its index.
std::vector<ProbeResult> run_many(
    const std::vector<const config::ProbeConfig*>& configs, int max_concurrent,
    const std::function<void(std::size_t, const ProbeResult&)>& on_result = {});

}  // namespace storewatch::probes
